"""The OpenVINO runtime on a tiny ONNX network: what each precision executes in, measured from the compiled model."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from harness.build import precisions
from harness.data.cases import Variant
from harness.judge.judgement import BACKEND_FP32_BUDGET
from harness.runtimes import RunInput, RuntimeConfig, RuntimeUnavailable, get
from harness.runtimes.base import Artifact


def test_unavailable_without_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes ``import openvino`` raise ImportError
    reason = get("openvino", RuntimeConfig()).unavailable
    assert reason.startswith("openvino is not installed") and reason.endswith("; pip install .[openvino]")


needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install .[openvino])")
RNG = np.random.default_rng(0)
IMAGE = RNG.random((1, 3, 16, 16), dtype=np.float32)
CALIBRATION = [RNG.random((3, 16, 16), dtype=np.float32) for _ in range(3)]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fp32 export of a two-conv network and its fp16, static int8 and dynamic int8 builds."""
    folder = tmp_path_factory.mktemp("openvino")
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid()]
    network = nn.Sequential(*layers).eval()
    paths = {name: folder / f"{name}.onnx" for name in ("fp32", "fp16", "int8", "int8_dynamic")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.from_numpy(IMAGE),), str(paths["fp32"]), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False)
    precisions.convert_fp16(paths["fp32"], paths["fp16"])
    precisions.quantize_int8_static(paths["fp32"], paths["int8"], "max", CALIBRATION, ["a", "b", "c"])
    precisions.quantize_int8_dynamic(paths["fp32"], paths["int8_dynamic"])
    return paths


def _item(precision: str) -> SimpleNamespace:
    variant = Variant(precision, "max" if precision == "int8" else None)
    return SimpleNamespace(variant=variant, id=f"tiny-{precision}-openvino")


def _ort(path: Path) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": IMAGE})[0]


@needs_openvino
@pytest.mark.float_sensitive
@pytest.mark.onnxruntime_kernels
def test_fp32_executes_in_f32_not_the_cpu_default(builds: dict[str, Path]) -> None:
    session = get("openvino", RuntimeConfig(threads=1)).load(_item("fp32"), Artifact(builds["fp32"], {}))
    assert session.inference_precision == "f32"
    assert session.compute_precisions == {"f32": 2}
    # fp32 on OpenVINO against ONNX Runtime: the harness's budget for fp32 on another backend. Measured 6.0e-8
    # natively (AVX-512 VNNI) and on an emulated AVX2 CPU (qemu-x86_64 -cpu EPYC-Milan).
    output, reference = session.run(RunInput(IMAGE, [], ["x"]))[0], _ort(builds["fp32"])
    print(f"OpenVINO fp32 vs ONNX Runtime: max |diff| {np.abs(output - reference).max():.3g}")
    np.testing.assert_allclose(output, reference, rtol=0, atol=BACKEND_FP32_BUDGET.max_abs)


@needs_openvino
def test_static_int8_executes_in_int8(builds: dict[str, Path]) -> None:
    session = get("openvino", RuntimeConfig()).load(_item("int8"), Artifact(builds["int8"], {}))
    assert set(session.compute_precisions) <= {"u8", "i8"} and sum(session.compute_precisions.values()) == 2
    output = session.run(RunInput(IMAGE, [], ["x"]))[0]
    assert float(np.abs(output - _ort(builds["int8"])).max()) < 0.02  # the same quantized graph
    assert float(np.abs(output - _ort(builds["fp32"])).max()) > 0  # and not the float one


@needs_openvino
@pytest.mark.float_sensitive
@pytest.mark.onnxruntime_kernels
def test_dynamic_int8_runs_and_matches_onnxruntime(builds: dict[str, Path]) -> None:
    runtime = get("openvino", RuntimeConfig())
    assert runtime.unsupported(Variant("int8_dynamic")) is None
    session = runtime.load(_item("int8_dynamic"), Artifact(builds["int8_dynamic"], {}))
    assert sum(session.compute_precisions.values()) == 2
    output, reference = session.run(RunInput(IMAGE, [], ["x"]))[0], _ort(builds["int8_dynamic"])
    print(f"OpenVINO dynamic int8 vs ONNX Runtime: max |diff| {np.abs(output - reference).max():.3g}")
    # The same dynamic-int8 graph: the integer products are exact on every instruction set, and what differs is the
    # float dequantisation and the order of the second convolution's 72-term fp32 sum (|terms| <= ~1): <= 72 x 1.2e-7
    # (float32 epsilon) ~ 1e-5 before the sigmoid (slope <= 0.25). 1e-4 leaves 10x for that; a runtime that rounded an
    # activation to the neighbouring uint8 level (0.004 x a weight) would exceed it. Measured 6.0e-8 natively
    # (AVX-512 VNNI) and on an emulated AVX2 CPU (qemu-x86_64 -cpu EPYC-Milan).
    np.testing.assert_allclose(output, reference, rtol=0, atol=1e-4)


@needs_openvino
def test_fp16_offered_only_where_the_cpu_executes_fp16(builds: dict[str, Path]) -> None:
    import openvino

    capabilities = [str(c) for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    runtime = get("openvino", RuntimeConfig())
    reason = runtime.unsupported(Variant("fp16"))
    ok = reason is None
    if "FP16" not in capabilities:
        assert not ok and "no native fp16" in reason
        with pytest.raises(RuntimeUnavailable, match="no native fp16"):
            runtime.load(_item("fp16"), Artifact(builds["fp16"], {}))
    else:
        session = runtime.load(_item("fp16"), Artifact(builds["fp16"], {}))
        assert ok and session.inference_precision == "f16" and "f16" in session.compute_precisions
