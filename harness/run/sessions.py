"""The session pool: one runtime instance per name and one loaded session per item, for the whole pytest session.

Under the plugin each item's session lives in a worker process of its own, every call bounded in time
(:mod:`harness.run.isolation`); the fp32 sources, which check the harness's own exports, stay in this process. A load
that fails (hangs, crashes, raises) is tried once per item: the item's later checks get its error at once.
It also answers, in one place, why an item cannot run here (the reason every skip prints), and holds
the fp32 *source* sessions (PyTorch eager, or the graph as shipped) the fp32 items are checked against.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..build.artifacts import ArtifactBuilder
from ..build.networks import Networks
from ..data.case_inputs import Int8Scheme
from ..data.cases import Item, Model
from ..runtimes import RunInput, Runtime, RuntimeConfig, Session
from ..runtimes import get as get_runtime
from ..runtimes.base import Artifact
from .bounds import RuntimeFault
from .isolation import IsolatedSession, Isolation
from .watchdog import Watchdog, WatchedSession


class EagerTorchSession(Session):
    """The PyTorch network itself, eager, fp32: the source every fp32 export is checked against."""

    provider = "CPU (PyTorch eager)"

    def __init__(self, module: Any) -> None:
        self._module = module

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        import torch

        assert batch.tensor is not None
        with torch.no_grad():
            return [self._module(torch.from_numpy(batch.tensor)).numpy()]


class SessionPool:
    def __init__(self, config: RuntimeConfig, builder: ArtifactBuilder, networks: Networks,
                 isolation: Isolation = Isolation(), int8_scheme: str = "case") -> None:
        self.config = config
        self.isolation = isolation
        self.builder = builder
        self.networks = networks
        self.int8_choice = int8_scheme
        self.watchdog = Watchdog(isolation.on_hang)
        builder.store.bound_builds(isolation.build_timeout, self.watchdog)  # the store is the suite's; the bound ours
        self._runtimes: dict[str, Runtime] = {}
        self._sessions: dict[str, Session] = {}
        self._failed: dict[str, Exception] = {}
        self._artifacts: dict[str, Artifact | None] = {}

    def runtime(self, name: str) -> Runtime:
        if name not in self._runtimes:
            self._runtimes[name] = get_runtime(name, self.config)
        return self._runtimes[name]

    def unavailable(self, item: Item) -> str | None:
        """Why ``item`` cannot run here, or None. Every skip the suite prints comes from here; weights that cannot be
        had are not such a reason (:meth:`weights_missing`)."""
        reason = item.model.skip_variants.get(item.variant.label)
        if reason:
            return reason
        runtime = self.runtime(item.runtime)
        reason = runtime.unsupported(item.variant)
        if reason:
            return f"runtime {item.runtime}: {reason}"
        if not runtime.brings_own_model:
            return self.networks.architecture_missing(item.model)
        return None

    def weights_missing(self, item: Item) -> str | None:
        """Why the weights ``item`` runs cannot be had here (a device runtime brings its own), or None: a failure of
        the item's checks unless the user opted out (``--allow-unavailable-weights``), never a silent skip."""
        if self.runtime(item.runtime).brings_own_model:
            return None
        return self.networks.weights_missing(item.model)

    def int8_scheme(self, item: Item) -> Int8Scheme:
        """The static int8 scheme the item is built with: its case's, or the ``--int8-scheme`` remedy."""
        return item.int8_scheme.chosen(self.int8_choice)

    def artifact(self, item: Item) -> Artifact | None:
        """What the item's runtime declared it needs, built (or found in the cache); looked up once per session,
        since even a cache hit of static int8 preprocesses its calibration images to know its key."""
        if item.id not in self._artifacts:
            kind = self.runtime(item.runtime).artifact
            if kind == "onnx":
                self._artifacts[item.id] = self.builder.onnx(item.model, item.variant, self.int8_scheme(item))
            elif kind == "torchscript":
                self._artifacts[item.id] = self.builder.torchscript(item.model)
            else:
                self._artifacts[item.id] = None
        return self._artifacts[item.id]

    def session(self, item: Item) -> Session:
        """The loaded session of ``item``; raises :class:`RuntimeUnavailable` when its runtime lacks this model.

        A load that failed is not tried again: every later check of the item gets the same error at once, so an item
        whose load hangs costs one bound, not one per check."""
        if item.id in self._failed:
            raise _again(item, self._failed[item.id])
        if item.id not in self._sessions:
            try:
                self._sessions[item.id] = self._load(item)
            except Exception as error:
                self._failed[item.id] = error
                raise
        return self._sessions[item.id]

    def _load(self, item: Item) -> Session:
        runtime, artifact, policy = self.runtime(item.runtime), self.artifact(item), self.isolation.policy(item)
        if self.isolation.enabled:
            return IsolatedSession.start(runtime, item, artifact, policy, self.isolation.retries)
        if self.isolation.watchdog:
            return WatchedSession.load(runtime, item, artifact, policy, self.watchdog)
        return runtime.load(item, artifact)

    def attempts(self, item: Item) -> list[str]:
        """Notes on the item's runtime attempts that met a timeout or a crash and were retried (``--retries``)."""
        session = self._sessions.get(item.id)
        return session.attempts() if isinstance(session, IsolatedSession) else []

    def loaded(self, item: Item) -> Session | None:
        """The item's session if it was loaded, without loading it."""
        return self._sessions.get(item.id)

    def source(self, model: Model) -> Session:
        """The fp32 source of ``model``: PyTorch eager, or the shipped graph on plain ONNX Runtime."""
        key = f"{model.name}-source"
        if key not in self._sessions:
            if model.architecture is not None:
                self._sessions[key] = EagerTorchSession(self.networks.torch_module(model))
            else:
                from ..runtimes.onnxruntime import OnnxRuntimeSession

                path = self.networks.weights(model).path
                assert path is not None
                self._sessions[key] = OnnxRuntimeSession(Artifact(path, {}), RuntimeConfig(), ["CPUExecutionProvider"])
        return self._sessions[key]

    def close(self) -> None:
        """Release every session that holds a device or files (the VACC stream must be shut down)."""
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


def _again(item: Item, error: Exception) -> Exception:
    """The error a later check of an item whose load failed gets: a runtime fault again, of the same kind (so
    ``--resume`` reruns the item) and said not to have run; any other error itself, with a note saying so."""
    if isinstance(error, RuntimeFault):
        reason = f"not run: the session's load failed earlier: {error.reason}"
        return type(error)(f"{item.id}: {reason}", reason)
    note = "not run again: the item's session failed to load when an earlier check asked for it"
    if note not in getattr(error, "__notes__", []):
        error.add_note(note)
    return error.with_traceback(None)
