"""Exports through the artifact cache: ONNX (opset 17, dynamic batch/height/width) and TorchScript.

Uses unet_mobilenetv2 (4.7 M parameters, seeded weights, 3 GFLOPs) so each export takes seconds. What is checked comes
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

from harness.build.export import EXPORT_TOLERANCE
from harness.data.cases import Variant, load_all
from harness.items.settings import Settings
from harness.items.suite import Suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    cache = tmp_path_factory.mktemp("cache")
    return Suite(Settings(data_root=None, weights_dir=None, cache_dir=cache, golden_dir=ROOT / "golden",
                          report_dir=cache / "reports", eval_limit=None))


@pytest.fixture(scope="module")
def model():
    return next(m for f in load_all(ROOT / "cases") for m in f.models if m.name == "unet_mobilenetv2")


#: The export checks compare an export with its eager source: the harness's own bound for that, EXPORT_TOLERANCE
#: (float reassociation only; its summation order follows the CPU's vector width, AVX2 or AVX-512). Measured max |diff|
#: of the logits: export check 9.1e-7 / 9.2e-7, batch of 2 3.1e-7 / 3.2e-7, TorchScript 0 / 0, natively (AVX-512 VNNI) /
#: with PyTorch forced to AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2). ONNX Runtime's AVX2 kernels hold
#: the same bound on this export in tests/test_export_bound_on_avx2.py.
@pytest.mark.float_sensitive
def test_onnx_export_is_opset_17_with_dynamic_axes_and_checked(suite: Suite, model) -> None:
    import onnxruntime as ort

    artifact = suite.builder.fp32_onnx(model)
    graph = onnx.load(str(artifact.path))
    assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    print(f"unet_mobilenetv2 export vs eager: max |diff| {artifact.manifest['export_max_abs_diff']:.3g}")
    assert artifact.manifest["export_max_abs_diff"] <= EXPORT_TOLERANCE
    assert artifact.manifest["weights"].startswith("seeded")
    for tool in ("torch", "onnx", "onnxruntime"):
        assert artifact.manifest[tool]

    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).random((2, 3, 96, 160), dtype=np.float32)
    output = session.run(None, {"input": batch})[0]
    assert output.shape == (2, 2, 96, 160)
    with torch.no_grad():
        expected = suite.networks.torch_module(model)(torch.from_numpy(batch)).numpy()
    print(f"unet_mobilenetv2 ONNX Runtime batch of 2 vs eager: max |diff| {np.abs(output - expected).max():.3g}")
    assert np.abs(output - expected).max() < EXPORT_TOLERANCE


def test_same_source_is_not_rebuilt(suite: Suite, model) -> None:
    first = suite.builder.fp32_onnx(model)
    builds = suite.builder.store.builds
    again = suite.builder.fp32_onnx(model)
    assert again.path == first.path
    assert suite.builder.store.builds == builds
    fp16 = suite.builder.onnx(model, Variant("fp16"))
    assert suite.builder.store.builds == builds + 1
    assert suite.builder.onnx(model, Variant("fp16")).path == fp16.path
    assert suite.builder.store.builds == builds + 1
    assert fp16.manifest["fp16_compute_ops"] == fp16.manifest["compute_ops"] > 0
    assert "Resize" in fp16.manifest["kept_fp32_ops"]


@pytest.mark.float_sensitive
def test_torchscript_export_matches_eager_and_is_cached(suite: Suite, model) -> None:
    artifact = suite.builder.torchscript(model)
    builds = suite.builder.store.builds
    assert suite.builder.torchscript(model).path == artifact.path
    assert suite.builder.store.builds == builds
    scripted = torch.jit.load(str(artifact.path))
    probe = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        difference = (scripted(probe) - suite.networks.torch_module(model)(probe)).abs().max().item()
    print(f"unet_mobilenetv2 TorchScript vs eager: max |diff| {difference:.3g}")
    assert difference < EXPORT_TOLERANCE
    assert artifact.manifest["exporter"].startswith("torch.jit.trace")
