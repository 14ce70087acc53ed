"""The torch runtime on a tiny traced network: fp32 is the network itself, fp16 really rounds, int8 is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from harness.data.cases import Variant
from harness.judge.judgement import BACKEND_FP32_BUDGET
from harness.runtimes import RunInput, RuntimeConfig, RuntimeUnavailable, get
from harness.runtimes.base import Artifact


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Artifact]:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid()]
    network = nn.Sequential(*layers).eval()
    path = tmp_path_factory.mktemp("torch") / "model.torchscript.pt"
    torch.jit.trace(network, torch.rand(1, 3, 16, 16)).save(str(path))
    return network, Artifact(path, {})


def _item(precision: str) -> SimpleNamespace:
    return SimpleNamespace(variant=Variant(precision), id=f"tiny-{precision}-torch")


def _batch() -> RunInput:
    tensor = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    return RunInput(tensor, [], ["x"])


@pytest.mark.float_sensitive
def test_fp32_is_the_network(traced: tuple[nn.Module, Artifact]) -> None:
    network, artifact = traced
    outputs = get("torch", RuntimeConfig(threads=1)).load(_item("fp32"), artifact).run(_batch())
    with torch.no_grad():
        expected = network(torch.from_numpy(_batch().tensor)).numpy()
    assert outputs[0].dtype == np.float32
    # fp32 on the torch backend against the eager network: the harness's budget for fp32 on another backend.
    # Measured 0 natively (AVX-512 VNNI) and with PyTorch forced to AVX2: the same kernels in the same order.
    print(f"torch runtime fp32 vs eager: max |diff| {np.abs(outputs[0] - expected).max():.3g}")
    np.testing.assert_allclose(outputs[0], expected, rtol=0, atol=BACKEND_FP32_BUDGET.max_abs)


@pytest.mark.float_sensitive
def test_fp16_runs_in_half_and_returns_float32(traced: tuple[nn.Module, Artifact]) -> None:
    network, artifact = traced
    runtime = get("torch", RuntimeConfig())
    session = runtime.load(_item("fp16"), artifact)
    half = session.run(_batch())[0]
    full = runtime.load(_item("fp32"), artifact).run(_batch())[0]
    assert session.dtype == "float16" and half.dtype == np.float32
    difference = float(np.abs(half - full).max())
    # fp16 rounding happened, and only rounding. The sigmoid's input is a 27- then 72-term sum of O(1) terms, each
    # rounded to fp16 (half an ulp: 4.9e-4 relative), so |error| <= 0.25 (sigmoid's slope) x ~10 x 4.9e-4 ~ 1.2e-3;
    # the CPU's vector width only reorders the fp32 part (~1e-7), which 5e-3 does not notice. Measured 2.5e-4 both
    # natively (AVX-512 VNNI) and with PyTorch forced to AVX2.
    print(f"torch runtime fp16 vs fp32: max |diff| {difference:.3g}")
    assert 0 < difference < 5e-3
    assert next(network.parameters()).dtype == torch.float32  # the fp32 module was not touched


@pytest.mark.parametrize("precision", ["int8", "int8_dynamic"])
def test_int8_is_refused_with_where_it_is_tested(precision: str) -> None:
    reason = get("torch", RuntimeConfig()).unsupported(Variant(precision, "max" if precision == "int8" else None))
    assert reason is not None and "onnxruntime" in reason and "openvino" in reason


def test_load_refuses_int8_and_a_missing_artifact(traced: tuple[nn.Module, Artifact]) -> None:
    runtime = get("torch", RuntimeConfig())
    with pytest.raises(RuntimeUnavailable, match="fp32 and fp16 only"):
        runtime.load(_item("int8_dynamic"), traced[1])
    with pytest.raises(ValueError, match="torchscript artifact"):
        runtime.load(_item("fp32"), None)

