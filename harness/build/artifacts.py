"""Built artifacts (exported fp32 reference, fp16, int8 builds, TorchScript) in a content-addressed cache.

The cache key is a hash of everything that determines the bytes: weight fingerprint, architecture
source code, input shape, opset, transform parameters, the calibration images' pixels and tool versions.
Same inputs -> same key -> no rebuild; a changed architecture file or tool version rebuilds. Each manifest
records the hash and size of every file of its artifact, verified whenever the artifact is taken from the
cache (:mod:`harness.build.verified`): a corrupt entry is rebuilt with a warning naming it.

The store is safe under parallel builders (pytest-xdist workers, two suites sharing a cache): a build
holds a file lock on its key, re-checks the cache once it has the lock, builds in a scratch folder and
renames it into place, so an interrupted build never leaves a half-written artifact and a finished
artifact is never deleted or rewritten under a reader.

:class:`ArtifactBuilder` is a table from precision to the function that builds it, fed by
:class:`harness.build.networks.Networks` (weights and the fp32 network).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from filelock import FileLock

from .. import machine
from . import precisions
from ..data.case_inputs import Int8Scheme
from ..data.cases import Model, Variant
from .networks import BuildError, Networks
from .artifact import Artifact
from .shared_cache import SharedCache
from .verified import (
    MANIFEST,
    CacheWarning,
    Verified,
    artifact_problem,
    file_records,
    moved_aside,
    remember_verified,
)



class Bound(Protocol):
    """What bounds a build: the run stage's watchdog (:class:`harness.run.watchdog.Watchdog`), handed down by
    whoever owns it, so the build stage needs no import of the run stage."""

    def bounded(self, seconds: float, what: str) -> contextlib.AbstractContextManager[None]: ...

log = logging.getLogger("segconform.artifacts")

#: (model, count) -> (preprocessed calibration tensors, their image names)
CalibrationSource = Callable[[Model, int], tuple[list[np.ndarray], list[str]]]

ONNX_OPSET = 17


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

    def __init__(self, root: Path, shared: Sequence[Path] = ()) -> None:
        self.root = root
        self.shared = [SharedCache(path) for path in shared]  # read first, never written
        self.builds = 0  # how many artifacts this process actually built (tests use it to prove cache hits)
        self.timings: list[dict[str, Any]] = []  # what this process built and how long each took
        self.reused: list[dict[str, str]] = []  # what it took from a shared cache instead of building
        self._bound: tuple[float, "Bound"] | None = None
        self._verified: Verified = {}  # the artifacts this store verified (or built) and their files' stat

    def bound_builds(self, seconds: float, watchdog: Bound) -> None:
        """Bound each build by ``seconds`` under ``watchdog``: an exporter or quantiser that hangs ends the run with
        an error naming the artifact (a build runs in this process, where nothing else could stop it)."""
        self._bound = (seconds, watchdog)

    def _bounded(self, what: str) -> contextlib.AbstractContextManager[None]:
        if self._bound is None:
            return contextlib.nullcontext()
        seconds, watchdog = self._bound
        return watchdog.bounded(seconds, what)

    def get(self, material: dict[str, Any], filename: str, build: Callable[[Path], dict[str, Any]]) -> Artifact:
        """The artifact for ``material``, built with ``build(target_path) -> manifest facts`` only if not cached."""
        canonical = json.dumps(material, sort_keys=True, default=str)
        key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
        folder = self.root / f"{material.get('model', 'artifact')}-{material.get('variant', '')}-{key}"
        found = self._verified_artifact(folder, filename, warn=True)
        if found is not None:
            return found
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        # Under the key's lock: an extraction from a shared archive writes this folder as a build does, and two
        # workers extracting one entry at once would race for its rename.
        with FileLock(str(self.root / ".locks" / f"{folder.name}.lock")):
            # another process may have built or extracted it while this one waited
            found = self._verified_artifact(folder, filename, warn=False)
            if found is not None:
                return found
            if folder.exists():  # corrupt: set aside before anything (an archive's copy, a build) takes its place
                moved_aside(folder)
            for cache in self.shared:  # another shard's (or last night's) build of the same content, verified there
                found = cache.find(folder.name, filename, self.root)
                if found is not None:
                    self.reused.append({"what": folder.name, "from": str(cache.path)})
                    return found
            self._build(folder, filename, material, key, build)
        return Artifact.from_dir(folder, filename)

    def _verified_artifact(self, folder: Path, filename: str, warn: bool) -> Artifact | None:
        """The artifact stored in ``folder`` when every file is the one its manifest records (hash and size), else
        None: absent, or corrupt, which is then rebuilt (with a :class:`CacheWarning` naming the folder and the file,
        ``warn``). What a runtime loads, TorchScript code included, is only ever a file whose recorded hash matched."""
        if not folder.exists():
            return None
        problem = artifact_problem(folder, filename, self._verified)
        if problem is None:
            return Artifact.from_dir(folder, filename)
        if warn:
            message = f"{folder}: cached artifact failed verification: {problem}; building it again"
            log.warning(message)
            warnings.warn(CacheWarning(message), stacklevel=3)
        return None

    def _build(self, folder: Path, filename: str, material: dict[str, Any], key: str,
               build: Callable[[Path], dict[str, Any]]) -> None:
        what = f"{material.get('model', 'artifact')} {material.get('variant', '')} {material.get('format', 'onnx')}"
        log.info("building %s (key %s)", what, key)
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=self.root))
        try:
            started = time.perf_counter()
            with self._bounded(f"building the artifact {what} (key {key})"):
                facts = build(scratch / filename)
            seconds = round(time.perf_counter() - started, 2)
            manifest = {**material, **facts, "key": key, "build_seconds": seconds,
                        "built_on": machine.fingerprint().as_dict(), "files": file_records(scratch)}
            (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
            moved_aside(folder)  # incomplete or corrupt (it failed verification): set aside, never used again
            os.replace(scratch, folder)
            remember_verified(folder, self._verified)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        self.builds += 1
        self.timings.append({"what": what, "seconds": seconds})
        log.info("built %s in %.1f s", what, seconds)


@functools.cache
def _models_package_fingerprint() -> str:
    """Hash of every module of the models package, read once per process.

    Hashing the whole package is the simple rule that cannot miss a dependency (ISNet reuses U2-Net's
    blocks); a change anywhere in it re-exports every model, which costs seconds each.
    """
    from .. import models

    folder = Path(inspect.getfile(models)).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: A precision's builder: (builder, model, variant, nodes kept in fp32) -> artifact.
PrecisionBuild = Callable[["ArtifactBuilder", Model, Variant, tuple[str, ...], Int8Scheme], Artifact]


class ArtifactBuilder:
    """Turns a model and a variant into the artifact a runtime needs, through the store."""

    def __init__(self, store: ArtifactStore, networks: Networks, calibration: CalibrationSource,
                 calibration_samples: int) -> None:
        self.store = store
        self.networks = networks
        self.calibration = calibration
        self.calibration_samples = calibration_samples

    # ----------------------------------------------------------------- the fp32 references

    def _reference_material(self, model: Model) -> dict[str, Any]:
        source = self.networks.weights(model)
        material: dict[str, Any] = {
            "model": model.name,
            "weights": source.label,
            "weights_fingerprint": source.fingerprint,
            **tool_versions(),
        }
        if model.architecture is not None:
            import torch

            from . import graph_import
            from .. import models

            models.get(model.architecture)  # an unknown name fails here, with the registered ones listed
            material.update(
                architecture=model.architecture,
                architecture_fingerprint=_models_package_fingerprint(),
                weights_import=code_fingerprint(graph_import) if source.graph else None,
                input_shape=list(model.input_shape),
                opset=ONNX_OPSET,
                torch=torch.__version__,
            )
        return material

    def _probe(self, model: Model) -> np.ndarray:
        """One real preprocessed image, to check an export numerically on real input."""
        tensors, _ = self.calibration(model, 1)
        return tensors[0]

    def fp32_onnx(self, model: Model) -> Artifact:
        from . import export

        code = export if model.architecture is not None else precisions
        material = {**self._reference_material(model), "variant": "fp32", "format": "onnx",
                    "code": code_fingerprint(code)}

        def build(target: Path) -> dict[str, Any]:
            if model.architecture is None:
                path = self.networks.weights(model).path
                assert path is not None
                return precisions.upcast_fp16_weights(path, target)
            from .export import export_onnx

            network = self.networks.torch_module(model)
            return export_onnx(network, model.input_shape, target, ONNX_OPSET, self._probe(model))

        return self.store.get(material, "model.onnx", build)

    def torchscript(self, model: Model) -> Artifact:
        from . import export

        material = {**self._reference_material(model), "variant": "fp32", "format": "torchscript",
                    "code": code_fingerprint(export)}

        def build(target: Path) -> dict[str, Any]:
            from .export import export_torchscript

            return export_torchscript(self.networks.torch_module(model), model.input_shape, target, self._probe(model))

        return self.store.get(material, "model.torchscript.pt", build)

    # ----------------------------------------------------------------- one builder per precision

    def onnx(self, model: Model, variant: Variant, scheme: Int8Scheme = Int8Scheme(),
             nodes_to_exclude: tuple[str, ...] = ()) -> Artifact:
        """The ONNX artifact of ``variant``; ``nodes_to_exclude`` keeps those nodes in fp32 (fault localisation)."""
        prebuilt = model.prebuilt.get(variant.precision)  # type: ignore[call-overload]
        if prebuilt is not None and prebuilt.npm:
            return self._prebuilt(model, variant, prebuilt.npm)
        try:
            build = PRECISION_BUILDERS[variant.precision]
        except KeyError:
            raise BuildError(f"{model.name}: no way to build precision {variant.label}") from None
        return build(self, model, variant, tuple(sorted(nodes_to_exclude)), scheme)

    def _prebuilt(self, model: Model, variant: Variant, resource: str) -> Artifact:
        from .weights import NpmWeights

        path = NpmWeights(self.networks.cache_dir).resource(resource)
        manifest: dict[str, Any] = {"model": model.name, "variant": variant.label, "prebuilt": f"npm {resource}"}
        if variant.precision == "fp16":
            import onnx

            manifest.update(precisions.fp16_compute_share(onnx.load(str(path), load_external_data=False)))
        return Artifact(path, manifest)

    def _derived_material(self, model: Model, variant: Variant, reference: Artifact) -> dict[str, Any]:
        return {"model": model.name, "variant": variant.label, "reference_key": reference.key,
                "code": code_fingerprint(precisions), **tool_versions()}

    def _fp32(self, model: Model, variant: Variant, excluded: tuple[str, ...], scheme: Int8Scheme) -> Artifact:
        return self.fp32_onnx(model)

    def _fp16(self, model: Model, variant: Variant, excluded: tuple[str, ...], scheme: Int8Scheme) -> Artifact:
        import onnxconverter_common

        reference = self.fp32_onnx(model)
        material = {**self._derived_material(model, variant, reference),
                    "onnxconverter_common": onnxconverter_common.__version__, "nodes_to_exclude": list(excluded)}
        return self.store.get(material, "model.onnx", lambda t: precisions.convert_fp16(reference.path, t, excluded))

    def _int8_dynamic(self, model: Model, variant: Variant, excluded: tuple[str, ...], scheme: Int8Scheme) -> Artifact:
        reference = self.fp32_onnx(model)
        material = self._derived_material(model, variant, reference)
        return self.store.get(material, "model.onnx", lambda t: precisions.quantize_int8_dynamic(reference.path, t))

    def _int8_static(self, model: Model, variant: Variant, excluded: tuple[str, ...], scheme: Int8Scheme) -> Artifact:
        if not variant.calibration:
            raise BuildError(f"{model.name}: static int8 needs a calibration method")
        reference = self.fp32_onnx(model)
        tensors, names = self.calibration(model, self.calibration_samples)
        images_hash = calibration_images_hash(tensors, names)
        material = {**self._derived_material(model, variant, reference),
                    "calibration": variant.calibration, "calibration_samples": len(names),
                    "calibration_images": images_hash, "scheme": scheme.model_dump(exclude={"note"}),
                    "nodes_to_exclude": list(excluded)}
        # Ranges depend on the calibration images and method only: every scheme and exclusion list reuses them.
        ranges = (self.networks.cache_dir / "calibration"
                  / f"{reference.key}-{variant.calibration}-{images_hash[:16]}.json")
        ranges.parent.mkdir(parents=True, exist_ok=True)

        def build(target: Path) -> dict[str, Any]:
            with FileLock(str(ranges) + ".lock"):
                return precisions.quantize_int8_static(reference.path, target, variant.calibration or "", tensors,
                                                       names, scheme, excluded, ranges, model.name)

        return self.store.get(material, "model.onnx", build)


def calibration_images_hash(tensors: Sequence[np.ndarray], names: Sequence[str]) -> str:
    """What identifies a calibration set: each image's name and its preprocessed pixels, so another data root with
    the same file names (or an image replaced under its name) calibrates anew instead of reusing the ranges."""
    digest = hashlib.sha256()
    for name, tensor in zip(names, tensors, strict=True):
        array = np.ascontiguousarray(tensor)
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


PRECISION_BUILDERS: dict[str, PrecisionBuild] = {
    "fp32": ArtifactBuilder._fp32,
    "fp16": ArtifactBuilder._fp16,
    "int8": ArtifactBuilder._int8_static,
    "int8_dynamic": ArtifactBuilder._int8_dynamic,
}
