"""The runtime contract: every backend (ONNX Runtime, torch, OpenVINO, the VACC device, vamp files) looks alike.

:class:`Runtime` owns the guards and the lifecycle, in the spirit of Polygraphy's runner base: the
public :meth:`Runtime.load` checks that the runtime is available here, that it supports the item's
precision and that it was handed the artifact it declared (or none, when it brings its own compiled
model), and only then calls the subclass's :meth:`Runtime._load`. :class:`Session` likewise owns
``run`` (refused after ``close``) and gives real defaults for ``covers``, ``notes`` and ``close``, so
callers never probe a session with ``getattr``. A new runtime is one module in this package (or a
third-party module registered under the entry-point group ``segconform.runtimes``) that subclasses
:class:`Runtime` and writes only its own logic.

A runtime either takes model-ready tensors (``takes_images = False``: the host ran the case's
preprocessing) or decoded images at their original size (``takes_images = True``: the VACC device
resizes and normalises itself from its vdsp JSON). The prediction is always the first output.
"""

from __future__ import annotations

import importlib
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Sequence

import numpy as np

from ..build.artifact import Artifact  # a runtime loads what the build stage made; third-party runtimes import it here

if TYPE_CHECKING:
    from ..data.cases import Item, Variant

ArtifactKind = Literal["onnx", "torchscript"]

#: How long asking whether a runtime can be used here may take (its SDK's import, a driver probe): a vendor SDK whose
#: import hangs (a driver that does not answer) makes the runtime unavailable, saying so, instead of hanging the run.
PROBE_S = 120.0
#: The environment variable a session's worker process carries its attempt number in (1, then 2 after a retry, ...):
#: what the fault of a flaky device (``abort_once``) reads.
ATTEMPT_ENV = "SEGCONFORM_ATTEMPT"


@dataclass(frozen=True)
class RunInput:
    """One batch as every runtime may need it: the preprocessed tensor and the decoded images it came from."""

    tensor: np.ndarray | None
    images: Sequence[np.ndarray]
    stems: Sequence[str]


def threads_from_environment() -> int | None:
    """``OMP_NUM_THREADS`` when it is a positive count (its first level, as OpenMP reads ``4,2``), else None: each
    runtime's own default, all cores. It is how a process is given fewer threads than cores when several share them
    (``scripts/segconform test`` runs two test workers on two cores, each spawning runtimes): every runtime then
    takes it, ONNX Runtime and OpenVINO included, which do not read it themselves. Oversubscribed, their spinning
    thread pools burned a third of the CPU (two sensitivity runs side by side: 246 CPU-s with two threads each
    against 175 with one)."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def process_memory() -> dict[str, int | None]:
    """This process's resident bytes now and at their peak (Linux's ``VmRSS`` and ``VmHWM``); elsewhere the peak
    from ``getrusage`` and no current figure."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    except OSError:
        import resource

        return {"rss": None, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    kilobytes = {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM") if key in fields}
    return {"rss": kilobytes.get("VmRSS"), "peak_rss": kilobytes.get("VmHWM")}


@dataclass(frozen=True)
class RuntimeConfig:
    """Command-line settings some runtimes need; each runtime reads only its own."""

    threads: int | None = field(default_factory=threads_from_environment)
    ort_providers: tuple[str, ...] = ()
    ort_optimization: str = "all"
    vacc_device: int = 0
    vacc_models: Path | None = None
    vamp_outputs: Path | None = None


class RuntimeUnavailable(RuntimeError):
    """A runtime that cannot serve this item here (not installed, no compiled model, ...); carries the reason."""


class SessionClosed(RuntimeError):
    """``run`` on a session that was closed."""


class Session(ABC):
    """A loaded model, ready to run batches. Subclasses write :meth:`_run` and, if they hold resources,
    :meth:`_close`."""

    #: What actually executed (an ONNX Runtime execution provider, ``CPU``, the device); shown in every row.
    provider: str = ""
    #: False when ``run`` serves stored outputs (vamp files): its time is file reading, not the model's latency,
    #: which is then measured on the device itself (``vamp -m ... -i 1 p 1 -b 1``).
    live: bool = True

    _closed: bool = False

    def run(self, batch: RunInput) -> list[np.ndarray]:
        """Outputs with the batch dimension first; element 0 is the prediction."""
        if self._closed:
            raise SessionClosed(f"{type(self).__name__}: run() after close()")
        return self._run(batch)

    @abstractmethod
    def _run(self, batch: RunInput) -> list[np.ndarray]: ...

    def covers(self, stem: str) -> bool:
        """Whether this session can produce an output for image ``stem`` (stored device outputs cover only some)."""
        return True

    def notes(self) -> list[str]:
        """Facts a report should show beside the item's row (what precision executed, vdsp disagreements)."""
        return []

    def settings(self) -> dict[str, Any]:
        """The settings this session runs with (threads, optimisation level, ...), recorded in every row."""
        return {}

    def memory(self) -> dict[str, int | None]:
        """Bytes held by the process this session computes in: ``rss`` (resident now), ``peak_rss`` (its high-water
        mark) and ``device`` (memory on the device, where a runtime reports it; None here). What the sustained check
        (``test_sustained``) samples to see a session that keeps a buffer per call; a device runtime overrides it to
        add its card's memory."""
        return {**process_memory(), "device": None}

    @property
    def deployed(self) -> "Session":
        """The session as it is deployed, which latency measures; ``self`` unless this session computes the exact
        arithmetic of a build whose deployed kernels depend on the CPU (static int8 on ONNX Runtime)."""
        return self

    def close(self) -> None:
        """Release what the session holds (and its deployed twin); safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()
            if self.deployed is not self:
                self.deployed.close()

    def _close(self) -> None:
        return None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class Runtime(ABC):
    """A backend the harness can load an item's model into.

    ``artifact`` declares what the harness must build for it: an ONNX file of the item's precision,
    the fp32 TorchScript module, or nothing (``None``: the runtime brings its own compiled model or
    outputs, located from the item and the :class:`RuntimeConfig`, as the VACC device and vamp do).
    """

    name: ClassVar[str]
    takes_images: ClassVar[bool] = False
    artifact: ClassVar[ArtifactKind | None] = "onnx"

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config

    @property
    def brings_own_model(self) -> bool:
        """Whether the runtime runs a model compiled elsewhere (its weights are whatever was compiled)."""
        return self.artifact is None

    # ----------------------------------------------------------------- public: guards and lifecycle

    #: The answer of :attr:`unavailable`, once asked (a tuple: None is an answer).
    _probed: tuple[str | None] | None = None

    @property
    def unavailable(self) -> str | None:
        """Why this runtime cannot be used here (not installed, not configured), or None. Asked once, within
        :data:`PROBE_S` (not a ``functools.cached_property``: its lock, shared by every instance, would deadlock a
        wrapping runtime's probe asking its base's from the probe's thread)."""
        if self._probed is None:
            name = getattr(self, "name", type(self).__name__)
            self._probed = (_bounded(self._unavailable, f"runtime {name}: asking whether it can be used here "
                                                        "(importing its SDK, probing its driver)"),)
        return self._probed[0]

    def unsupported(self, variant: "Variant") -> str | None:
        """Why this runtime cannot run ``variant`` at all, or None."""
        return self.unavailable or self._unsupported(variant)

    def load(self, item: "Item", artifact: Artifact | None = None) -> Session:
        """The item's model in a session; raises :class:`RuntimeUnavailable` with the reason when it cannot be."""
        reason = self.unsupported(item.variant)
        if reason:
            raise RuntimeUnavailable(f"runtime {self.name}: {reason}")
        if self.artifact is not None and artifact is None:
            raise ValueError(f"{item.id}: runtime {self.name} needs the {self.artifact} artifact of the item")
        if self.artifact is None and artifact is not None:
            raise ValueError(f"{item.id}: runtime {self.name} brings its own compiled model; it takes no artifact")
        return self._load(item, artifact)

    def describe(self) -> dict[str, Any]:
        """Name and version of what this runtime runs on, for run records."""
        return {"runtime": self.name}

    # ----------------------------------------------------------------- what a subclass writes

    def _unavailable(self) -> str | None:
        return None

    def _unsupported(self, variant: "Variant") -> str | None:
        return None

    @abstractmethod
    def _load(self, item: "Item", artifact: Artifact | None) -> Session: ...


def _bounded(probe: Callable[[], str | None], what: str) -> str | None:
    """``probe()`` in a thread of its own, awaited :data:`PROBE_S` seconds: its answer, its exception, or the reason
    it did not answer. A probe that hangs is left behind (a thread cannot be killed); its runtime is unavailable."""
    answer: list[str | None] = []
    raised: list[BaseException] = []

    def ask() -> None:
        try:
            answer.append(probe())
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            raised.append(error)

    thread = threading.Thread(target=ask, name="segconform-probe", daemon=True)
    thread.start()
    thread.join(PROBE_S)
    if raised:
        raise raised[0]
    return answer[0] if answer else f"{what} did not finish within {PROBE_S:g} s"


def importable(module: str, install_hint: str = "") -> str | None:
    """``_unavailable()``'s answer for a runtime that needs only a Python module: None, or the reason."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        hint = f"; {install_hint}" if install_hint else ""
        return f"{module} is not installed ({error}){hint}"
    return None
