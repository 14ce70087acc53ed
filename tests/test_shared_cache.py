"""A shard reads another shard's artifacts from a shared, read-only cache (:mod:`harness.build.shared_cache`)."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from harness.build.artifacts import ArtifactStore
from harness.build.shared_cache import SharedCache, SharedCacheError

MATERIAL = {"model": "u2netp", "variant": "int8-kl_divergence", "weights_fingerprint": "abc", "onnx": "1.16"}


class Builder:
    """A build function that writes a small file and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, target: Path) -> dict[str, str]:
        self.calls += 1
        target.write_bytes(b"int8 model")
        return {"fact": "built"}


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*")}


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chmod(path, stat.S_IREAD | stat.S_IEXEC if path.is_dir() else stat.S_IREAD)


@pytest.fixture
def shared(tmp_path) -> Path:
    """A store another shard filled: one artifact, then made read-only."""
    store = ArtifactStore(tmp_path / "shard1" / "artifacts")
    store.get(dict(MATERIAL), "model.onnx", Builder())
    return store.root


def test_an_artifact_another_shard_built_is_used_not_rebuilt_and_the_shared_folder_is_left_as_it_was(tmp_path,
                                                                                                      shared):
    before = _tree(shared)
    _read_only(shared)
    try:
        store, build = ArtifactStore(tmp_path / "shard2" / "artifacts", shared=[shared]), Builder()
        artifact = store.get(dict(MATERIAL), "model.onnx", build)
        assert build.calls == 0 and store.builds == 0
        assert artifact.path.read_bytes() == b"int8 model" and artifact.path.is_relative_to(shared)
        assert store.reused == [{"what": artifact.path.parent.name, "from": str(shared)}]
        # Other content is not in the shared cache: built locally, never into the shared folder.
        other = store.get({**MATERIAL, "weights_fingerprint": "def"}, "model.onnx", build)
        assert build.calls == 1 and other.path.is_relative_to(store.root)
        assert _tree(shared) == before
    finally:
        for path in [shared, *shared.rglob("*")]:
            os.chmod(path, stat.S_IRWXU)


@pytest.mark.parametrize("under", ["", "artifacts/"])
def test_an_archive_of_the_cache_gives_its_artifact_to_the_local_store_once(tmp_path, shared, under):
    archive = tmp_path / "cache.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for folder in shared.iterdir():
            if not folder.name.startswith("."):
                tar.add(folder, arcname=under + folder.name)
    store, build = ArtifactStore(tmp_path / "shard2" / "artifacts", shared=[archive]), Builder()
    first = store.get(dict(MATERIAL), "model.onnx", build)
    again = ArtifactStore(store.root).get(dict(MATERIAL), "model.onnx", build)  # now in the local store
    assert build.calls == 0 and first.path.is_relative_to(store.root) and again.path == first.path
    assert first.manifest["fact"] == "built" and not [p for p in store.root.iterdir() if p.name.startswith(".shared")]


def test_a_shared_cache_that_is_not_one_is_refused_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("not an archive")
    for path in (tmp_path / "missing", tmp_path / "notes.txt"):
        with pytest.raises(SharedCacheError, match=str(path)):
            SharedCache(path)
