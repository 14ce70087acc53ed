"""VACC runtime: a compiled model on the accelerator, driven through ``vaststreamx`` (vacc-interfaces.md §3).

The device takes decoded images at their original size and resizes and normalises them itself from a
vdsp params JSON, so this runtime ``takes_images`` and the harness builds nothing for it
(``artifact_kind = "none"``). ``vaststreamx`` is imported only when used, so hosts without it (and
tests, which put a fake in ``sys.modules``) can import this module.

Where the compiled model comes from (``--vacc-models DIR``, the vamc workspace)::

    DIR/<name>/mod.*                   the compiled model, prefix ``mod`` (what ``vamc compile`` writes)
    DIR/<name>/*vdsp_params.json       optional: the vdsp params to use (at most one)

``<name>`` is :func:`harness.build.vamc.artifact_name` of the item, e.g. ``isnet_int8_kl_divergence``;
``python -m harness vamc-config`` emits configs with that name and ``workspace.path`` = ``DIR``. Without a
vdsp file the session writes the one :func:`harness.build.vdsp.from_case` emits to a temporary folder. Either
way ``session.findings`` lists how that file's preprocessing differs from the case's recipe.

A session holds a running stream: close it (``close()`` or ``with``) so the device is released. Under the plugin the
session lives in a worker process (:mod:`harness.run.isolation`): closed there when its item is done, and
*abandoned* when a call on it times out (the worker is killed rather than closing a stream whose driver call hung;
the operating system's closing of the process's device handles is what frees its stream on the card, and the next
item opens a fresh process and session).
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..build import vdsp, vdsp_compare
from ..build.vamc import artifact_name, unbuildable
from .base import Artifact, RunInput, Runtime, RuntimeUnavailable, Session

if TYPE_CHECKING:
    from ..data.cases import Item, Model, Variant

MODEL_PREFIX = "mod"
VDSP_GLOB = "*vdsp_params.json"


class VaccError(RuntimeError):
    """The device or its files did something the adapter cannot work with; the message says what and where."""


def _import_vsx() -> ModuleType:
    return importlib.import_module("vaststreamx")


class VaccSession(Session):
    """One model on one device: a stream of the vdsp fusion op followed by the model, run one image at a time."""

    def __init__(self, vsx: ModuleType, prefix: Path, vdsp_json: Path, model: "Model", device_id: int) -> None:
        self._vsx = vsx
        self._device_id = device_id
        self.provider = f"VACC device {device_id}"
        #: How the vdsp file's preprocessing differs from the case's recipe (empty: they agree).
        self.findings = vdsp_compare.check(vdsp.load(vdsp_json), model)
        if vsx.set_device(device_id) != 0:
            raise VaccError(f"vaststreamx could not open device {device_id}")
        self._model = vsx.Model(str(prefix), 1)
        expected = (3, model.input_shape[1], model.input_shape[2])
        compiled = tuple(self._model.input_shape[0][1:])
        if compiled != expected:
            raise VaccError(f"{prefix}: compiled for input (C, H, W) {compiled}, the case {model.name} says {expected}")
        fusion_op = vsx.Operator.load_ops_from_json_file(str(vdsp_json))[0]
        graph = vsx.Graph()
        self._model_op = vsx.ModelOperator(self._model)
        graph.add_operators(fusion_op, self._model_op)
        self._stream = vsx.Stream(graph, vsx.StreamBalanceMode.ONCE)
        self._stream.register_operator_output(self._model_op)
        self._stream.build()

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        """Each image through the device; outputs stacked along a new batch dimension, prediction first."""
        if not batch.images:
            raise ValueError("the VACC runtime needs the decoded images of the batch (RunInput.images)")
        per_image = [self._run_one(image) for image in batch.images]
        return [np.stack([outputs[k] for outputs in per_image]) for k in range(len(per_image[0]))]

    def _run_one(self, image: np.ndarray) -> list[np.ndarray]:
        vsx = self._vsx
        planar = vdsp.rgb_planar(image)
        _, height, width = planar.shape
        device_image = vsx.create_image(planar, vsx.ImageFormat.RGB_PLANAR, width, height, self._device_id)
        out = self._stream.run_sync([device_image])
        return [vsx.as_numpy(tensor)[0].astype(np.float32) for tensor in out[0]]

    def notes(self) -> list[str]:
        return [f"vdsp disagrees with the case: {finding}" for finding in self.findings]

    def settings(self) -> dict[str, Any]:
        return {"device": self._device_id}

    def _close(self) -> None:
        """Stop the stream: no more input, then wait for what is in flight."""
        self._stream.close_input()
        self._stream.wait_until_done()


class VaccRuntime(Runtime):
    name = "vacc"
    takes_images = True
    artifact = None

    def _unavailable(self) -> str | None:
        try:
            _import_vsx()
        except ImportError as error:
            return f"vaststreamx is not installed ({error})"
        if self.config.vacc_models is None:
            return "--vacc-models is not given: point it at the vamc workspace holding <name>/mod"
        if not self.config.vacc_models.is_dir():
            return f"--vacc-models {self.config.vacc_models} is not a folder"
        return None

    def _unsupported(self, variant: "Variant") -> str | None:
        return unbuildable(variant, "the VACC device")

    def _load(self, item: "Item", artifact: Artifact | None) -> VaccSession:
        assert self.config.vacc_models is not None
        folder = self.config.vacc_models / artifact_name(item.model.name, item.variant)
        if not any(folder.glob(f"{MODEL_PREFIX}.*")):
            raise RuntimeUnavailable(
                f"{item.id}: no compiled model {folder / MODEL_PREFIX}; build it from "
                f"`python -m harness vamc-config {item.model.name} --precision {item.variant.precision}"
                + (f" --calibration {item.variant.calibration}" if item.variant.calibration else "")
                + "`"
            )
        return _open(_import_vsx(), folder, item.model, self.config.vacc_device)


def _open(vsx: ModuleType, folder: Path, model: "Model", device_id: int) -> VaccSession:
    """A session on ``folder``'s model with its own vdsp file, or one emitted from the case into a temp folder."""
    found = sorted(folder.glob(VDSP_GLOB))
    if len(found) > 1:
        raise VaccError(f"{folder}: more than one vdsp params file: {', '.join(p.name for p in found)}")
    if found:
        return VaccSession(vsx, folder / MODEL_PREFIX, found[0], model, device_id)
    with tempfile.TemporaryDirectory(prefix="segconform-vdsp-") as scratch:
        emitted = vdsp.write(model, Path(scratch) / f"{model.name}-vdsp_params.json")
        return VaccSession(vsx, folder / MODEL_PREFIX, emitted, model, device_id)
