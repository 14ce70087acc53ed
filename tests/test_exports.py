"""Exports through the artifact cache: ONNX (opset 17, dynamic batch/height/width) and TorchScript.

Uses u2netp (1.1 M parameters, seeded weights) so each export takes seconds. What is checked comes
from the issue, not from the code: the opset, symbolic axes that really accept another size, the
numerical check against PyTorch recorded in the manifest, the tool versions and weight source in the
manifest, and no rebuild for the same source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from harness.cases import Variant, load_all
from harness.pipeline import Harness, Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    cache = tmp_path_factory.mktemp("cache")
    return Harness(Settings(data_root=None, weights_dir=None, cache_dir=cache, golden_dir=ROOT / "golden",
                            report_dir=cache / "reports", eval_limit=None))


@pytest.fixture(scope="module")
def u2netp():
    return next(m for f in load_all(ROOT / "cases") for m in f.models if m.name == "u2netp")


def test_onnx_export_is_opset_17_with_dynamic_axes_and_checked(harness: Harness, u2netp) -> None:
    import onnxruntime as ort

    artifact = harness.builder.fp32_onnx(u2netp)
    graph = onnx.load(str(artifact.path))
    assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    assert artifact.manifest["export_max_abs_diff"] <= 1e-3
    assert artifact.manifest["weights"].startswith("seeded")
    for tool in ("torch", "onnx", "onnxruntime"):
        assert artifact.manifest[tool]

    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).random((2, 3, 96, 160), dtype=np.float32)
    output = session.run(None, {"input": batch})[0]
    assert output.shape == (2, 1, 96, 160)
    with torch.no_grad():
        expected = harness.builder.torch_module(u2netp)(torch.from_numpy(batch)).numpy()
    assert np.abs(output - expected).max() < 1e-3


def test_same_source_is_not_rebuilt(harness: Harness, u2netp) -> None:
    first = harness.builder.fp32_onnx(u2netp)
    builds = harness.builder.store.builds
    again = harness.builder.fp32_onnx(u2netp)
    assert again.path == first.path
    assert harness.builder.store.builds == builds
    fp16 = harness.builder.onnx(u2netp, Variant("fp16"))
    assert harness.builder.store.builds == builds + 1
    assert harness.builder.onnx(u2netp, Variant("fp16")).path == fp16.path
    assert harness.builder.store.builds == builds + 1
    assert fp16.manifest["fp16_compute_ops"] == fp16.manifest["compute_ops"] > 0
    assert "Resize" in fp16.manifest["kept_fp32_ops"]


def test_torchscript_export_matches_eager_and_is_cached(harness: Harness, u2netp) -> None:
    artifact = harness.builder.torchscript(u2netp)
    builds = harness.builder.store.builds
    assert harness.builder.torchscript(u2netp).path == artifact.path
    assert harness.builder.store.builds == builds
    scripted = torch.jit.load(str(artifact.path))
    probe = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        difference = (scripted(probe) - harness.builder.torch_module(u2netp)(probe)).abs().max().item()
    assert difference < 1e-4
    assert artifact.manifest["exporter"].startswith("torch.jit.trace")
