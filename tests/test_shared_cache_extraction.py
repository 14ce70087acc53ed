"""Two workers extracting one entry of a ``--shared-cache`` archive at once: both get the artifact, neither errors
(the extraction runs under the artifact key's lock, like a build)."""

from __future__ import annotations

import os
import tarfile
import threading
from pathlib import Path

from harness.build import shared_cache
from harness.build.artifacts import ArtifactStore

MATERIAL = {"model": "u2netp", "variant": "int8-kl_divergence", "weights_fingerprint": "abc", "onnx": "1.16"}


def _build(target: Path) -> dict[str, str]:
    target.write_bytes(b"int8 model")
    return {"fact": "built"}


def test_two_workers_extract_one_archive_entry_without_an_error(tmp_path, monkeypatch):
    built = ArtifactStore(tmp_path / "night1" / "artifacts")
    built.get(dict(MATERIAL), "model.onnx", _build)
    archive = tmp_path / "artifacts.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(built.root, arcname="artifacts")
    # Both extractions reach their rename together when nothing keeps them apart: the race of two xdist workers.
    together = threading.Barrier(2, timeout=2)
    real_replace = os.replace

    def replace(source, target):
        try:
            together.wait()
        except threading.BrokenBarrierError:  # the other worker is (rightly) waiting for the lock
            pass
        return real_replace(source, target)

    monkeypatch.setattr(shared_cache.os, "replace", replace)
    local = tmp_path / "worker-cache" / "artifacts"
    results: dict[int, object] = {}

    def worker(index: int) -> None:
        try:
            store = ArtifactStore(local, shared=[archive])
            results[index] = store.get(dict(MATERIAL), "model.onnx", _build).path.read_bytes()
        except Exception as error:  # noqa: BLE001 - what the test looks for
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {0: b"int8 model", 1: b"int8 model"}
    assert not [p.name for p in local.iterdir() if p.name.startswith(".shared-")]
