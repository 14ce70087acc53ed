"""Cached files verified at use (:mod:`harness.build.verified`): artifacts against the hashes their manifests record,
TorchScript code included, in the local store and in a read-only shared cache; weight files against their pinned
hashes (a sidecar keeps the hash with the size and mtime it was computed at); int8 calibration keyed by pixels."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest

from harness.build.artifacts import ArtifactStore, calibration_images_hash
from harness.build.verified import CacheWarning, sha256_of
from test_artifact_store import Builder

MATERIAL = {"model": "u2netp", "variant": "fp32", "weights_fingerprint": "abc", "onnx": "1.16"}


PAYLOAD = b"model bytes " * 100  # long enough to truncate and to flip a byte in the middle of


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_keeping_size_and_mtime(path: Path) -> None:
    """One byte changed, the size and modification time put back: only the hash can tell."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


# --------------------------------------------------------------------------- the local artifact store


@pytest.mark.parametrize("damage", [_truncate, _flip_keeping_size_and_mtime])
def test_a_corrupted_cached_artifact_is_rebuilt_with_a_warning_naming_it(tmp_path, damage):
    build = Builder(PAYLOAD)
    artifact = ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", build)
    assert artifact.manifest["files"]["model.onnx"]["size"] == len(build.payload)
    damage(artifact.path)
    store = ArtifactStore(tmp_path)  # a later run
    with pytest.warns(CacheWarning, match=rf"{artifact.path.parent}: cached artifact failed verification: "
                                          r"model\.onnx has (\d+ bytes|SHA-256 [0-9a-f]{64}), manifest\.json records"):
        rebuilt = store.get(MATERIAL, "model.onnx", build)
    assert build.calls == 2 and store.builds == 1
    assert rebuilt.path == artifact.path and rebuilt.path.read_bytes() == build.payload


def test_a_corrupt_manifest_is_rebuilt_naming_it_not_a_json_traceback(tmp_path):
    build = Builder(PAYLOAD)
    artifact = ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", build)
    (artifact.path.parent / "manifest.json").write_text('{"model": "u2n', encoding="utf-8")
    with pytest.warns(CacheWarning, match=r"manifest\.json is unreadable"):
        rebuilt = ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", build)
    assert build.calls == 2 and rebuilt.manifest["fact"] == "built"


def test_an_intact_artifact_is_not_rebuilt_and_warns_nothing(tmp_path, recwarn):
    build = Builder(PAYLOAD)
    ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", build)
    ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", build)
    assert build.calls == 1 and not [w for w in recwarn if issubclass(w.category, CacheWarning)]


# --------------------------------------------------------------------------- TorchScript: code, loaded only verified


def _scripted(offset: float) -> bytes:
    """A TorchScript file (code as well as weights) whose module adds ``offset``."""
    import io

    import torch

    class AddOffset(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.offset = offset

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.offset

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(AddOffset()), buffer)
    return buffer.getvalue()


def _loaded_offset(path: Path) -> float:
    import torch

    return float(torch.jit.load(str(path))(torch.zeros(1)).item())


TORCHSCRIPT = {**MATERIAL, "format": "torchscript"}


def test_a_tampered_torchscript_artifact_is_never_loaded(tmp_path):
    """Another TorchScript program in place of the built one: refused by its hash, rebuilt, and what a runtime loads
    is the program that was built."""
    build = Builder(_scripted(1.0))
    artifact = ArtifactStore(tmp_path).get(TORCHSCRIPT, "model.torchscript.pt", build)
    artifact.path.write_bytes(_scripted(666.0))  # what an attacker or a stray tool left in the cache
    with pytest.warns(CacheWarning, match=r"model\.torchscript\.pt has"):
        taken = ArtifactStore(tmp_path).get(TORCHSCRIPT, "model.torchscript.pt", build)
    assert build.calls == 2 and _loaded_offset(taken.path) == 1.0


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chmod(path, stat.S_IREAD | stat.S_IEXEC if path.is_dir() else stat.S_IREAD)


def _writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chmod(path, stat.S_IRWXU)


def test_a_tampered_torchscript_in_a_read_only_shared_cache_is_refused_naming_it_and_built_locally(tmp_path):
    shared = ArtifactStore(tmp_path / "shard1" / "artifacts")
    original = shared.get(TORCHSCRIPT, "model.torchscript.pt", Builder(_scripted(1.0)))
    original.path.write_bytes(_scripted(666.0))
    tampered = original.path.read_bytes()
    _read_only(shared.root)
    try:
        store, build = ArtifactStore(tmp_path / "shard2" / "artifacts", shared=[shared.root]), Builder(_scripted(1.0))
        with pytest.warns(CacheWarning, match=rf"{original.path.parent}: artifact in the read-only shared cache "
                                              rf"{shared.root} refused: model\.torchscript\.pt has"):
            taken = store.get(TORCHSCRIPT, "model.torchscript.pt", build)
        assert build.calls == 1 and store.reused == [] and taken.path.is_relative_to(store.root)
        assert _loaded_offset(taken.path) == 1.0
        assert original.path.read_bytes() == tampered  # read-only: left as it was
    finally:
        _writable(shared.root)


def test_a_corrupt_artifact_in_a_shared_archive_is_refused(tmp_path):
    shared = ArtifactStore(tmp_path / "shard1" / "artifacts")
    original = shared.get(MATERIAL, "model.onnx", Builder(PAYLOAD))
    _truncate(original.path)
    archive = tmp_path / "artifacts.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(original.path.parent, arcname=original.path.parent.name)
    store, build = ArtifactStore(tmp_path / "shard2" / "artifacts", shared=[archive]), Builder(PAYLOAD)
    with pytest.warns(CacheWarning, match=rf"{archive}:{original.path.parent.name}: artifact in the read-only "
                                          r"shared cache .* refused: model\.onnx has \d+ bytes"):
        taken = store.get(MATERIAL, "model.onnx", build)
    assert build.calls == 1 and taken.path.read_bytes() == build.payload


# --------------------------------------------------------------------------- calibration keyed by pixels


def test_the_same_calibration_names_with_other_pixels_calibrate_anew(tmp_path, monkeypatch):
    """Another data root with the same file names: a new static int8 build, not the other images' ranges."""
    from types import SimpleNamespace

    from harness.build import precisions
    from harness.build.artifact import Artifact
    from harness.build.artifacts import ArtifactBuilder
    from harness.data.cases import Variant, load_all

    model = next(m for f in load_all(Path(__file__).resolve().parents[1] / "cases") for m in f.models
                 if m.name == "u2netp")
    names = ["ecssd/0001", "ecssd/0002"]
    pixels = {"root": [np.zeros((3, 4, 4), np.float32), np.ones((3, 4, 4), np.float32)]}
    calibrated: list[list[float]] = []

    def quantize(source, target, calibration, tensors, image_names, *args, **kwargs):
        calibrated.append([float(t.mean()) for t in tensors])
        target.write_bytes(b"int8 build")
        return {}

    monkeypatch.setattr(precisions, "quantize_int8_static", quantize)
    networks = SimpleNamespace(cache_dir=tmp_path)  # where the calibration ranges go
    builder = ArtifactBuilder(ArtifactStore(tmp_path / "artifacts"), networks,  # type: ignore[arg-type]
                              lambda model, count: (pixels["root"], names), 2)
    monkeypatch.setattr(builder, "fp32_onnx", lambda model: Artifact(tmp_path / "fp32.onnx", {"key": "fp32"}))
    first = builder.onnx(model, Variant("int8", "percentile"))
    pixels["root"] = [pixels["root"][0], pixels["root"][1] * 0.5]  # the same names under another data root
    second = builder.onnx(model, Variant("int8", "percentile"))
    assert calibrated == [[0.0, 1.0], [0.0, 0.5]] and first.path != second.path


def test_the_calibration_key_is_the_names_and_the_pixels():
    names = ["ecssd/0001", "ecssd/0002"]
    ours = [np.zeros((3, 4, 4), np.float32), np.ones((3, 4, 4), np.float32)]
    theirs = [ours[0], ours[1] * 0.5]  # another data root: the same file names, another image
    assert calibration_images_hash(ours, names) == calibration_images_hash([t.copy() for t in ours], names)
    assert calibration_images_hash(ours, names) != calibration_images_hash(theirs, names)
    assert calibration_images_hash(ours, names) != calibration_images_hash(ours, ["ecssd/0001", "ecssd/0003"])


# --------------------------------------------------------------------------- the sidecar of a weight file


def test_a_weight_file_s_hash_is_kept_beside_it_and_recomputed_when_its_size_or_mtime_change(tmp_path):
    weights = tmp_path / "u2netp.onnx"
    weights.write_bytes(b"graph" * 1000)
    first = sha256_of(weights)
    sidecar = json.loads((tmp_path / "u2netp.onnx.sha256.json").read_text())
    assert sidecar["sha256"] == first and sidecar["size"] == 5000
    weights.write_bytes(b"other" * 1001)
    assert sha256_of(weights) != first
