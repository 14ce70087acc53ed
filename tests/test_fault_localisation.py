"""Fault localisation: the bisection logic on a fake build, and on real int8 / fp16 builds of a hand-made graph.

The graphs are three convolutions where ``conv2`` is made hostile to one precision, so the
culprit is known by construction:
- int8: ``conv2`` has a weight of 1000 on an input channel that is always 0. It changes nothing in
  fp32, but per-channel int8 gives every output channel a scale of 1000/127, which rounds all
  the real weights of ``conv2`` to zero.
- fp16: ``conv2`` computes 4000*a - 4000*a' + w*a on two identical channels a = a'; fp16 stores
  4000 + w with a step of 2, so the small real weights w are lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.build import precisions
from harness.data.case_bounds import Budget
from harness.diagnose.fault_localisation import bisect, candidate_nodes
from harness.judge.judgement import Comparison

BUDGET = Budget(mae=0.01, mae_worst=0.01, max_abs=0.1, why="test budget")
#: Per precision: healthy int8 of this graph stays near MAE 0.002 / max|d| 0.06, healthy fp16 near 1e-4 / 3e-4.
BUDGETS = {"int8": BUDGET, "fp16": Budget(mae=0.002, mae_worst=0.002, max_abs=0.02, why="test budget")}


def _hostile_model(kind: str) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    initializers, nodes = [], []

    def conv(name: str, source: str, weights: np.ndarray, bias: np.ndarray) -> str:
        initializers.extend([numpy_helper.from_array(weights, f"{name}.w"), numpy_helper.from_array(bias, f"{name}.b")])
        k = weights.shape[-1]
        nodes.append(helper.make_node("Conv", [source, f"{name}.w", f"{name}.b"], [name], name=name, pads=[k // 2] * 4))
        return name

    w1 = rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w1[1], b1[1] = w1[0], b1[0]  # channels 0 and 1 identical (the fp16 cancellation)
    if kind == "int8":
        w1[0], b1[0] = 0.0, -1.0  # channel 0 always 0 after the Relu (the int8 dead channel)
    nodes.append(helper.make_node("Relu", [conv("conv1", "input", w1, b1)], ["relu1"], name="relu1"))
    w2 = rng.normal(0, 1 / np.sqrt(72), (8, 8, 3, 3)).astype(np.float32)
    if kind == "int8":
        w2[:, 0] += 1000.0
    else:
        w2[:, 0] += 4000.0
        w2[:, 1] -= 4000.0
    x = conv("conv2", "relu1", w2, rng.normal(0, 0.1, 8).astype(np.float32))
    x = conv("conv3", x, rng.normal(0, 3 / np.sqrt(72), (1, 8, 3, 3)).astype(np.float32),
             rng.normal(0, 0.1, 1).astype(np.float32))
    nodes.append(helper.make_node("Sigmoid", [x], ["output"], name="sigmoid"))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16])]
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(path: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    # ONNX Runtime's WeightBiasQuantization would re-quantize a float Conv left between DQ and Q,
    # undoing nodes_to_exclude; the harness's onnxruntime session disables it for the same reason.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                   disabled_optimizers=["WeightBiasQuantization"])
    return [session.run(None, {"input": image})[0] for image in images]


def _localise(tmp_path: Path, kind: str, max_builds: int = 8):
    model = _hostile_model(kind)
    source = tmp_path / "fp32.onnx"
    onnx.save(model, str(source))
    rng = np.random.default_rng(1)
    images = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(3)]
    calibration = [rng.random((3, 16, 16), dtype=np.float32) for _ in range(3)]
    reference = _run(source, images)
    built: list[tuple[str, ...]] = []

    def build(excluded: tuple[str, ...]) -> Path:
        target = tmp_path / f"{kind}-{len(built)}.onnx"
        built.append(excluded)
        if kind == "int8":
            precisions.quantize_int8_static(source, target, "max", calibration, ["c0", "c1", "c2"],
                                            nodes_to_exclude=excluded)
        else:
            precisions.convert_fp16(source, target, excluded)
        return target

    def score(path: Path) -> Comparison:
        outputs = _run(path, images)
        return Comparison.of({str(i): o for i, o in enumerate(outputs)}, {str(i): r for i, r in enumerate(reference)},
                             BUDGETS[kind])

    before = score(build(()))
    result = bisect(candidate_nodes(model, kind), build, score, before, max_builds, f"hostile {kind}")
    return result, before, built


@pytest.mark.onnxruntime_kernels
@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_bisection_names_the_hostile_conv_and_excluding_it_conforms(tmp_path: Path, kind: str) -> None:
    result, before, built = _localise(tmp_path, kind)
    assert not before.passed, f"the hostile {kind} build should fail: {before}"
    assert result.culprits == ("conv2",)
    assert result.after is not None and result.after.passed and result.conforms
    assert result.after.stats["mae_worst"] < before.stats["mae_worst"] / 5
    assert result.builds == len(built) - 1  # the baseline build is not counted
    assert result.builds <= 4 and not result.capped
    summary = result.summary()
    assert "conv2" in summary and "within budget" in summary


def test_candidates_are_the_precisions_convertible_nodes() -> None:
    model = _hostile_model("fp16")
    assert candidate_nodes(model, "int8") == ["conv1", "conv2", "conv3"]
    assert candidate_nodes(model, "fp16") == ["conv1", "relu1", "conv2", "conv3", "sigmoid"]
    with pytest.raises(ValueError, match="int8_dynamic"):
        candidate_nodes(model, "int8_dynamic")


# ----------------------------------------------------------------------- the search on a fake build

NAMES = [f"n{i}" for i in range(16)]


def _fake(culprits: set[str]):
    """build() encodes the exclusion set in the path; score() fails by 0.05 MAE per culprit not excluded."""

    def build(excluded: tuple[str, ...]) -> Path:
        return Path(",".join(excluded) or "-")

    def score(path: Path) -> Comparison:
        return _scored(len(culprits - set(path.name.split(","))))

    return build, score


def _scored(missing: int) -> Comparison:
    """Two images, each 0.05 MAE (and max|d|) off per culprit left in the build."""
    return Comparison(BUDGET, {"a": (0.05 * missing, 0.05 * missing), "b": (0.05 * missing, 0.05 * missing)})


def _before(culprits: set[str]) -> Comparison:
    return _scored(len(culprits))


@pytest.mark.parametrize("culprits", [{"n0"}, {"n15"}, {"n3", "n11"}, {"n5", "n6", "n14"}])
def test_bisection_finds_exactly_the_culprits(culprits: set[str]) -> None:
    build, score = _fake(culprits)
    result = bisect(NAMES, build, score, _before(culprits), max_builds=30)
    assert set(result.culprits) == culprits and result.conforms and not result.capped
    assert list(result.culprits) == sorted(culprits, key=NAMES.index)
    assert result.builds <= len(culprits) * 5 + 1  # log2(16) + 1 per culprit, plus the unverified full set once


def test_cap_stops_the_search_and_says_so() -> None:
    culprits = {"n3", "n11"}
    build, score = _fake(culprits)
    result = bisect(NAMES, build, score, _before(culprits), max_builds=2)
    assert result.capped and result.builds == 2
    assert culprits <= set(result.culprits) or not result.culprits
    assert "cap of 2 reached" in result.summary()


def test_nothing_to_do_when_already_conforming() -> None:
    build, score = _fake(set())
    result = bisect(NAMES, build, score, _before(set()))
    assert result.builds == 0 and result.culprits == () and "already within budget" in result.note


def test_unfixable_when_excluding_everything_still_fails() -> None:
    def score(path: Path) -> Comparison:
        return Comparison(BUDGET, {"a": (0.5, 0.5)})

    result = bisect(NAMES, lambda excluded: Path("x"), score, Comparison(BUDGET, {"a": (0.5, 0.5)}))
    assert not result.conforms and result.culprits == tuple(NAMES)
    assert "still fails the budget" in result.note


def test_names_must_be_unique_and_present() -> None:
    build, score = _fake({"a"})
    with pytest.raises(ValueError, match="unique and non-empty"):
        bisect(["a", ""], build, score, _before({"a"}))
