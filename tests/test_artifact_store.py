"""The content-addressed artifact cache (:class:`harness.build.artifacts.ArtifactStore`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.build.artifacts import ArtifactStore

MATERIAL = {"model": "u2netp", "variant": "fp16", "weights_fingerprint": "abc", "onnx": "1.16"}


class Builder:
    """A build function that writes a small file and counts its calls."""

    def __init__(self, payload: bytes = b"model bytes") -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self, target: Path) -> dict[str, str]:
        self.calls += 1
        target.write_bytes(self.payload)
        return {"fact": "built"}


def _entries(root: Path) -> list[str]:
    """The store's artifacts and leftovers, without its lock files (``.locks/``, kept between builds by design)."""
    return sorted(p.name for p in root.iterdir() if p.name != ".locks") if root.exists() else []


def test_same_material_builds_once(tmp_path):
    store, build = ArtifactStore(tmp_path), Builder()
    first = store.get(dict(MATERIAL), "model.onnx", build)
    second = store.get(dict(reversed(list(MATERIAL.items()))), "model.onnx", build)  # key order does not matter
    assert build.calls == 1 and store.builds == 1
    assert first.path == second.path and second.path.read_bytes() == b"model bytes"


def test_cache_survives_a_new_store_on_the_same_folder(tmp_path):
    build = Builder()
    ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", build)
    again = ArtifactStore(tmp_path)
    again.get(MATERIAL, "model.onnx", build)
    assert build.calls == 1 and again.builds == 0


@pytest.mark.parametrize("change", [{"weights_fingerprint": "abd"}, {"onnx": "1.17"}, {"calibration": "max"}])
def test_different_material_builds_a_new_artifact(tmp_path, change):
    store, build = ArtifactStore(tmp_path), Builder()
    first = store.get(MATERIAL, "model.onnx", build)
    second = store.get({**MATERIAL, **change}, "model.onnx", build)
    assert build.calls == 2 and store.builds == 2
    assert first.path.parent != second.path.parent
    assert first.path.is_file() and second.path.is_file()


def test_manifest_holds_the_material_the_facts_and_the_key(tmp_path):
    artifact = ArtifactStore(tmp_path).get(MATERIAL, "model.onnx", Builder())
    manifest = json.loads((artifact.path.parent / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == artifact.manifest
    assert {k: manifest[k] for k in MATERIAL} == MATERIAL and manifest["fact"] == "built"
    key = manifest["key"]
    assert len(key) >= 16 and all(c in "0123456789abcdef" for c in key)
    assert artifact.key == key and artifact.path.parent.name.endswith(key)
    assert artifact.path.parent.name.startswith("u2netp-fp16-")


def test_a_failing_build_leaves_no_folder_and_no_scratch(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")

    def failing(target: Path) -> dict[str, str]:
        target.write_bytes(b"half a model")
        raise RuntimeError("quantiser crashed")

    with pytest.raises(RuntimeError, match="quantiser crashed"):
        store.get(MATERIAL, "model.onnx", failing)
    assert _entries(tmp_path / "artifacts") == []
    assert store.builds == 0
    build = Builder()
    store.get(MATERIAL, "model.onnx", build)  # the next attempt builds from scratch
    assert build.calls == 1 and len(_entries(tmp_path / "artifacts")) == 1


def test_a_folder_missing_its_file_is_rebuilt(tmp_path):
    store, build = ArtifactStore(tmp_path), Builder()
    artifact = store.get(MATERIAL, "model.onnx", build)
    artifact.path.unlink()
    rebuilt = store.get(MATERIAL, "model.onnx", build)
    assert build.calls == 2 and rebuilt.path.read_bytes() == b"model bytes"
    assert len(_entries(tmp_path)) == 1


def _build_in_another_process(root: str, marker: str) -> str:
    """One worker's view: build MATERIAL slowly, counting builds in ``marker`` (a file appended to per build)."""
    import time

    def slow(target: Path) -> dict[str, str]:
        with open(marker, "a", encoding="utf-8") as out:
            out.write("built\n")
        time.sleep(0.5)  # long enough for the other worker to arrive while this one builds
        target.write_bytes(b"model bytes")
        return {"fact": "built"}

    return str(ArtifactStore(Path(root)).get(MATERIAL, "model.onnx", slow).path)


def test_two_processes_building_the_same_artifact_build_it_once(tmp_path):
    import multiprocessing

    marker = tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        paths = pool.starmap(_build_in_another_process, [(str(tmp_path / "store"), str(marker))] * 2)
    assert paths[0] == paths[1] and Path(paths[0]).read_bytes() == b"model bytes"
    assert marker.read_text(encoding="utf-8").count("built") == 1
    assert len(_entries(tmp_path / "store")) == 1  # no scratch or stale folder left by the waiting process
