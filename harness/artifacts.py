"""Built artifacts (exported fp32 reference, fp16, int8 builds, TorchScript) in a content-addressed cache.

The cache key is a hash of everything that determines the bytes: weight fingerprint, architecture
source code, input shape, opset, transform parameters, calibration image list and tool versions.
Same inputs -> same key -> no rebuild; a changed architecture file or tool version rebuilds.
Builds happen in a scratch folder that is renamed into place, so an interrupted build never
leaves a half-written artifact behind.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import precisions
from .cases import Model, Variant
from .runtimes.base import Artifact
from .weights import WeightSource, WeightsUnavailable, checkpoint_state_dict, resolve

#: (model, count) -> (preprocessed calibration tensors, their image names)
CalibrationSource = Callable[[Model, int], tuple[list[np.ndarray], list[str]]]

ONNX_OPSET = 17


class BuildError(RuntimeError):
    """An artifact could not be built; the message says which and why."""


@functools.cache
def code_fingerprint(module: Any) -> str:
    """Hash of one of our modules' source: editing the code that makes an artifact rebuilds it.

    Cached: every artifact lookup asks for it, and the source cannot change within one process.
    """
    return hashlib.sha256(inspect.getsource(module).encode("utf-8")).hexdigest()[:16]


def tool_versions() -> dict[str, str]:
    """Versions of the tools that shape the bytes of every artifact."""
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


class ArtifactStore:
    """A folder of artifacts, one sub-folder per cache key, each with the file and ``manifest.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.builds = 0  # how many artifacts this process actually built (tests use it to prove cache hits)

    def get(self, material: dict[str, Any], filename: str, build: Callable[[Path], dict[str, Any]]) -> Artifact:
        """The artifact for ``material``, built with ``build(target_path) -> manifest facts`` only if not cached."""
        canonical = json.dumps(material, sort_keys=True, default=str)
        key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
        folder = self.root / f"{material.get('model', 'artifact')}-{material.get('variant', '')}-{key}"
        if (folder / "manifest.json").is_file() and (folder / filename).exists():
            return Artifact.from_dir(folder, filename)
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=self.root))
        try:
            started = time.perf_counter()
            facts = build(scratch / filename)
            manifest = {**material, **facts, "key": key, "build_seconds": round(time.perf_counter() - started, 2)}
            (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            if folder.exists():  # a stale or partial folder from an older layout: replace it
                shutil.rmtree(folder)
            os.replace(scratch, folder)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        self.builds += 1
        return Artifact.from_dir(folder, filename)


@functools.cache
def _models_package_fingerprint() -> str:
    """Hash of every module of the models package, read once per process."""
    from . import models

    folder = Path(inspect.getfile(models)).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _architecture_fingerprint(architecture: str) -> str:
    """Hash of the family module and every model module it may import (ISNet reuses U2-Net's blocks).

    Hashing the whole models package is the simple rule that cannot miss a dependency; a change
    anywhere in it re-exports every model, which costs seconds each.
    """
    from . import models

    models.get(architecture)  # an unknown name fails here, with the registered ones listed
    return _models_package_fingerprint()


class ArtifactBuilder:
    """Turns a model and a variant into the artifact a runtime needs, through the store."""

    def __init__(
        self,
        store: ArtifactStore,
        cache_dir: Path,
        weights_dir: Path | None,
        calibration: CalibrationSource,
        calibration_samples: int,
    ) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.weights_dir = weights_dir
        self.calibration = calibration
        self.calibration_samples = calibration_samples
        self._weights: dict[str, WeightSource] = {}

    # ----------------------------------------------------------------- weights and the torch reference

    def weights(self, model: Model) -> WeightSource:
        if model.name not in self._weights:
            self._weights[model.name] = resolve(model, self.weights_dir, self.cache_dir)
        return self._weights[model.name]

    def runnable(self, model: Model) -> tuple[bool, str]:
        """Whether a reference can be built for ``model`` at all, with the reason when not."""
        if model.architecture is None and model.weights.npm is None:
            return False, f"{model.name}: no architecture and no graph to run"
        if model.architecture is not None:
            from . import models

            if model.architecture not in models.names():
                return False, f"{model.name}: architecture {model.architecture!r} is not implemented yet"
        try:
            self.weights(model)
        except WeightsUnavailable as error:
            return False, str(error)
        return True, ""

    def torch_module(self, model: Model) -> Any:
        """The fp32 PyTorch network of ``model`` with its weights, returning only the prediction."""
        import torch

        from . import models
        from .export import PredictionHead

        if model.architecture is None:
            raise BuildError(f"{model.name} has no PyTorch architecture")
        source = self.weights(model)
        if source.kind == "seeded":
            torch.manual_seed(source.seed or 0)
        network = models.build(model.architecture)
        if source.kind == "checkpoint":
            state = checkpoint_state_dict(source.path)
        elif source.kind == "npm":
            from .isnet_graph_import import isnet_state_dict_from_onnx

            state = isnet_state_dict_from_onnx(source.path)
        else:
            state = None
        if state is not None:
            try:
                network.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise BuildError(f"{source.label}: does not fit architecture {model.architecture}: {error}") from error
        return PredictionHead(network, model.output).eval()

    def _reference_material(self, model: Model) -> dict[str, Any]:
        source = self.weights(model)
        material: dict[str, Any] = {
            "model": model.name,
            "weights": source.label,
            "weights_fingerprint": source.fingerprint,
            **tool_versions(),
        }
        if model.architecture is not None:
            import torch

            from . import isnet_graph_import

            material.update(
                architecture=model.architecture,
                architecture_fingerprint=_architecture_fingerprint(model.architecture),
                weights_import=code_fingerprint(isnet_graph_import) if source.kind == "npm" else None,
                input_shape=list(model.input_shape),
                opset=ONNX_OPSET,
                torch=torch.__version__,
            )
        return material

    def _probe(self, model: Model) -> np.ndarray:
        """One real preprocessed image, to check an export numerically on real input."""
        tensors, _ = self.calibration(model, 1)
        return tensors[0]

    # ----------------------------------------------------------------- artifacts

    def fp32_onnx(self, model: Model) -> Artifact:
        from . import export

        code = export if model.architecture is not None else precisions
        material = {**self._reference_material(model), "variant": "fp32", "format": "onnx", "code": code_fingerprint(code)}

        def build(target: Path) -> dict[str, Any]:
            if model.architecture is None:
                return precisions.upcast_fp16_weights(self.weights(model).path, target)
            from .export import export_onnx

            return export_onnx(self.torch_module(model), model.input_shape, target, ONNX_OPSET, self._probe(model))

        return self.store.get(material, "model.onnx", build)

    def torchscript(self, model: Model) -> Artifact:
        from . import export

        material = {**self._reference_material(model), "variant": "fp32", "format": "torchscript",
                    "code": code_fingerprint(export)}

        def build(target: Path) -> dict[str, Any]:
            from .export import export_torchscript

            return export_torchscript(self.torch_module(model), model.input_shape, target, self._probe(model))

        return self.store.get(material, "model.torchscript.pt", build)

    def onnx(self, model: Model, variant: Variant, nodes_to_exclude: tuple[str, ...] = ()) -> Artifact:
        """The ONNX artifact of ``variant``; ``nodes_to_exclude`` keeps those nodes in fp32 (fault localisation)."""
        if variant.precision == "fp32":
            return self.fp32_onnx(model)
        prebuilt = model.prebuilt.get(variant.precision)  # type: ignore[call-overload]
        if prebuilt is not None and prebuilt.npm:
            from .weights import NpmWeights

            path = NpmWeights(self.cache_dir).resource(prebuilt.npm)
            manifest: dict[str, Any] = {"model": model.name, "variant": variant.label, "prebuilt": f"npm {prebuilt.npm}"}
            if variant.precision == "fp16":
                import onnx

                manifest.update(precisions.fp16_compute_share(onnx.load(str(path), load_external_data=False)))
            return Artifact(path, manifest)
        reference = self.fp32_onnx(model)
        material: dict[str, Any] = {
            "model": model.name,
            "variant": variant.label,
            "reference_key": reference.key,
            "code": code_fingerprint(precisions),
            **tool_versions(),
        }
        if variant.precision == "fp16":
            import onnxconverter_common

            material.update(
                onnxconverter_common=onnxconverter_common.__version__, nodes_to_exclude=sorted(nodes_to_exclude)
            )
            return self.store.get(
                material, "model.onnx", lambda t: precisions.convert_fp16(reference.path, t, nodes_to_exclude)
            )
        if variant.precision == "int8_dynamic":
            return self.store.get(material, "model.onnx", lambda t: precisions.quantize_int8_dynamic(reference.path, t))
        if variant.precision == "int8" and variant.calibration:
            tensors, names = self.calibration(model, self.calibration_samples)
            images_hash = hashlib.sha256("\n".join(names).encode()).hexdigest()
            material.update(
                calibration=variant.calibration,
                calibration_samples=len(names),
                calibration_images=images_hash,
                nodes_to_exclude=sorted(nodes_to_exclude),
            )
            ranges = self.cache_dir / "calibration" / f"{reference.key}-{variant.calibration}-{images_hash[:16]}.json"
            ranges.parent.mkdir(parents=True, exist_ok=True)
            return self.store.get(
                material,
                "model.onnx",
                lambda t: precisions.quantize_int8_static(
                    reference.path, t, variant.calibration or "", tensors, names, nodes_to_exclude, ranges
                ),
            )
        raise BuildError(f"{model.name}: no way to build precision {variant.label}")
