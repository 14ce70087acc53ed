"""The runtime contract (:mod:`harness.runtimes.base`): guards and lifecycle owned once, a registry that finds
runtimes in this package and through the ``segconform.runtimes`` entry-point group, and ONNX Runtime's two
sessions for static int8 (exact arithmetic for verdicts, the deployed kernels for latency)."""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from harness import runtimes
from harness.build import precisions
from harness.data.cases import Variant
from harness.runtimes import RunInput, Runtime, RuntimeConfig, RuntimeUnavailable, Session, SessionClosed, get
from harness.runtimes.base import Artifact


class EchoSession(Session):
    provider = "echo"

    def __init__(self) -> None:
        self.closed_count = 0

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        return [np.asarray(batch.tensor)]

    def _close(self) -> None:
        self.closed_count += 1


class EchoRuntime(Runtime):
    """A third-party runtime: only its own logic, everything else from the base."""

    name = "echo"
    artifact = None
    broken: str | None = None

    def _unavailable(self) -> str | None:
        return self.broken

    def _unsupported(self, variant: Variant) -> str | None:
        return "echo runs fp32 only" if variant.precision != "fp32" else None

    def _load(self, item, artifact) -> Session:
        return EchoSession()


def _item(precision: str = "fp32") -> SimpleNamespace:
    return SimpleNamespace(variant=Variant(precision, "max" if precision == "int8" else None), id=f"tiny-{precision}")


def test_the_base_guards_availability_support_and_the_declared_artifact():
    runtime = EchoRuntime(RuntimeConfig())
    assert runtime.brings_own_model and runtime.unavailable is None
    session = runtime.load(_item())
    assert session.run(RunInput(np.ones(2), [], ["a"]))[0].tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeUnavailable, match="runtime echo: echo runs fp32 only"):
        runtime.load(_item("fp16"))
    with pytest.raises(ValueError, match="brings its own compiled model; it takes no artifact"):
        runtime.load(_item(), Artifact(Path("x.onnx"), {}))
    broken = EchoRuntime(RuntimeConfig())
    broken.broken = "the echo device is unplugged"
    with pytest.raises(RuntimeUnavailable, match="unplugged"):
        broken.load(_item())


def test_a_session_has_real_defaults_and_owns_its_lifecycle():
    session = EchoSession()
    assert session.covers("anything") and session.notes() == [] and session.settings() == {}
    assert session.deployed is session and session.live
    with session:
        pass
    session.close()
    assert session.closed_count == 1
    with pytest.raises(SessionClosed, match="after close"):
        session.run(RunInput(np.ones(1), [], ["a"]))


def test_the_registry_finds_the_built_in_runtimes_reference_first():
    assert runtimes.names()[0] == "onnxruntime"
    assert set(runtimes.names()) >= {"onnxruntime", "torch", "openvino", "vacc", "vamp"}
    with pytest.raises(ValueError, match="unknown runtime 'nope'; known runtimes: onnxruntime"):
        get("nope", RuntimeConfig())


def test_a_third_party_runtime_registers_through_the_entry_point_group(monkeypatch):
    entry = SimpleNamespace(name="echo", value="tests.runtimes.test_contract:EchoRuntime", load=lambda: EchoRuntime)
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: [entry] if kw.get("group") == runtimes.ENTRY_POINT_GROUP else real(**kw))
    runtimes._registry.cache_clear()
    try:
        assert "echo" in runtimes.names()
        assert isinstance(get("echo", RuntimeConfig()), EchoRuntime)
    finally:
        monkeypatch.undo()
        runtimes._registry.cache_clear()
    assert "echo" not in runtimes.names()


# --------------------------------------------------------------------------- ONNX Runtime


@pytest.fixture(scope="module")
def int8_build(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    folder = tmp_path_factory.mktemp("ort")
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.rand(1, 3, 16, 16),), str(folder / "fp32.onnx"), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    facts = precisions.quantize_int8_static(folder / "fp32.onnx", folder / "int8.onnx", "max",
                                            [rng.random((3, 16, 16), dtype=np.float32) for _ in range(4)], ["a"] * 4)
    return Artifact(folder / "int8.onnx", facts)


@pytest.mark.onnxruntime_kernels
def test_static_int8_verdicts_use_the_exact_qdq_arithmetic_and_latency_the_deployed_kernels(int8_build):
    session = get("onnxruntime", RuntimeConfig(threads=1)).load(_item("int8"), int8_build)
    assert session.deployed is not session
    assert session.settings()["verdicts"]["graph_optimization"] == "basic"
    assert session.settings()["verdicts"]["quant_qdq"].startswith("off")  # nothing rewritten, weights folded once
    assert session.settings()["deployed"]["graph_optimization"] == "all"
    image = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the QDQ graph as the spec says
    unfused = ort.InferenceSession(str(int8_build.path), options, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(RunInput(image, [], ["x"]))[0], unfused.run(None, {"input": image})[0])
    assert session.deployed.run(RunInput(image, [], ["x"]))[0].shape == (1, 1, 16, 16)
    session.close()
    with pytest.raises(SessionClosed):
        session.deployed.run(RunInput(image, [], ["x"]))


def test_float_builds_get_one_session_with_the_settings_recorded(int8_build):
    fp32 = Artifact(int8_build.path.with_name("fp32.onnx"), {"variant": "fp32"})
    session = get("onnxruntime", RuntimeConfig(threads=1, ort_optimization="extended")).load(_item(), fp32)
    assert session.deployed is session and session.provider == "CPUExecutionProvider"
    assert session.settings() == {"intra_op_threads": 1, "inter_op_threads": 1, "execution_mode": "sequential",
                                  "graph_optimization": "extended", "cpu_mem_arena": False,
                                  "providers": ["CPUExecutionProvider"]}


@pytest.mark.parametrize("value, threads", [("1", 1), ("4,2", 4), (" 3 ", 3), ("0", None), ("many", None), ("", None)])
def test_omp_num_threads_is_the_default_thread_count_of_every_session(int8_build, monkeypatch, value, threads):
    """Two test workers on two cores run with OMP_NUM_THREADS=1 (scripts/segconform): ONNX Runtime, which does not
    read it, must get it from the harness, and a value that is no positive count leaves the default (all cores)."""
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert RuntimeConfig().threads == threads
    assert RuntimeConfig(threads=2).threads == 2  # --threads wins
    fp32 = Artifact(int8_build.path.with_name("fp32.onnx"), {"variant": "fp32"})
    session = get("onnxruntime", RuntimeConfig()).load(_item(), fp32)
    assert session.settings()["intra_op_threads"] == (threads or os.cpu_count())
    session.close()


def test_providers_are_chosen_explicitly_and_a_missing_one_is_a_reason_not_a_crash():
    assert get("onnxruntime", RuntimeConfig()).providers() == ["CPUExecutionProvider"]
    runtime = get("onnxruntime", RuntimeConfig(ort_providers=("tensorrt", "cuda")))
    assert runtime.providers() == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "CUDAExecutionProvider" in runtime.unavailable and "not in this onnxruntime" in runtime.unavailable
    with pytest.raises(ValueError, match="unknown provider"):
        get("onnxruntime", RuntimeConfig(ort_providers=("rocm-ish",)))


def test_a_graph_without_manifest_is_recognised_as_static_int8(int8_build):
    from harness.runtimes.onnxruntime import is_static_int8

    assert is_static_int8(int8_build) and is_static_int8(Artifact(int8_build.path, {}))
    assert not is_static_int8(Artifact(int8_build.path.with_name("fp32.onnx"), {}))
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(int8_build.path)).graph.node)
