"""Fault injection: each fault does to a run exactly what its description says, deterministically, on any runtime."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from harness.data.cases import Item, Variant, load_all
from harness.run.pipeline import Pipeline
from harness.runtimes import RunInput, Runtime, RuntimeConfig, Session, get, validated
from harness.runtimes.faults import (
    DROPOUT_EVERY,
    FAULTS,
    KERNEL_NOISE_SHARE,
    MEAN_OFFSET,
    SLOW_SHARE,
    STALE_EVERY,
    FaultyRuntime,
    FaultySession,
    _Context,
    _ExactOutputs,
)

ROOT = Path(__file__).resolve().parents[2]


class EchoSession(Session):
    """Output = the input's channel mean (1 x 1 x H x W per batch row), optionally after a fixed sleep."""

    provider = "echo"

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep
        self.inputs: list[RunInput] = []

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        self.inputs.append(batch)
        time.sleep(self.sleep)
        return [batch.tensor.mean(axis=1, keepdims=True).astype(np.float32)]


class EchoRuntime(Runtime):
    name = "echo"
    artifact = None
    sleep = 0.0

    def _load(self, item, artifact):
        return EchoSession(self.sleep)


class TwinSession(EchoSession):
    """An echo session with a separate deployed twin, as ONNX Runtime's static int8 (exact path + fused kernels)."""

    def __init__(self) -> None:
        super().__init__()
        self._deployed = EchoSession()

    @property
    def deployed(self) -> Session:
        return self._deployed


def _item(model: str = "u2netp", variant: Variant = Variant("fp32")) -> Item:
    for family in load_all(ROOT / "cases"):
        for case_model in family.models:
            if case_model.name == model:
                return Item(family, case_model, variant, "echo")
    raise LookupError(model)


def _faulty(fault: str, item: Item | None = None, sleep: float = 0.0) -> tuple[Session, Item]:
    runtime = EchoRuntime(RuntimeConfig())
    runtime.sleep = sleep
    item = item or _item()
    return FaultyRuntime(runtime, FAULTS[fault]).load(item), item


def _batch(seed: int, size: int = 1) -> RunInput:
    tensor = np.random.default_rng(seed).normal(size=(size, 3, 8, 10)).astype(np.float32)
    return RunInput(tensor, [], [f"s{seed}"])


def _clean(batch: RunInput) -> np.ndarray:
    return EchoSession()._run(batch)[0]


def test_identity_is_the_runtime_as_it_is_and_says_it_is_wrapped():
    session, _ = _faulty("identity")
    for seed in range(6):
        np.testing.assert_array_equal(session.run(_batch(seed))[0], _clean(_batch(seed)))
    assert session.provider == "echo + fault identity" and session.settings()["fault"] == "identity"
    assert any("fault injected: identity" in note for note in session.notes())


CHANNEL_FAULTS = {"bgr": "BGR", "gbr": "GBR", "replicate": "RRR"}  # fault -> the channel order it feeds


@pytest.mark.parametrize("fault", CHANNEL_FAULTS)
@pytest.mark.parametrize("model", ["u2netp", "isnet"])  # ImageNet mean/std, and mean 0.5 / std 1
def test_channel_faults_feed_the_image_in_their_order_before_normalisation(model, fault):
    item = _item(model)
    pipeline = Pipeline(item.model)
    image = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    # The decoded image's planes are B, G, R: GBR (the model's R, G, B = G, B, R) is R, B, G there.
    expected = {"bgr": image[..., ::-1], "gbr": image[..., [2, 0, 1]],
                "replicate": np.repeat(image[..., 2:], 3, axis=2)}[fault]  # R in all three
    session, _ = _faulty(fault, item)
    session.run(pipeline.batch(image, "x", False))
    seen = session._inner.inputs[-1].tensor  # what the wrapped runtime was handed
    np.testing.assert_allclose(seen, pipeline.preprocess(np.ascontiguousarray(expected))[None], atol=1e-5)
    # A runtime that takes the decoded image (a device that preprocesses itself) gets it reordered the same way.
    decoded = FAULTS[fault].on_input(pipeline.batch(image, "x", True), session._context)
    np.testing.assert_array_equal(decoded.images[0], expected)


class ColourSession(Session):
    """Output = a logistic of the channels weighed differently: a model that cares about colour, as trained ones do."""

    provider = "colour"

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        weights = np.array([3.0, -1.0, 0.5], np.float32)[None, :, None, None]
        return [1 / (1 + np.exp(-(batch.tensor * weights).sum(axis=1, keepdims=True)))]


class ColourRuntime(EchoRuntime):
    name = "colour"

    def _load(self, item, artifact):
        return ColourSession()


@pytest.mark.parametrize("fault", [None, *CHANNEL_FAULTS])
def test_the_channel_probe_names_each_channel_fault_and_passes_the_control(fault):
    """Through the fault wrappers and the pipeline: the probe compares the candidate with the reference fed every
    order of harness.data.channels.CHANNEL_ORDERS, and names the one the faulty runtime feeds."""
    from harness.data import channels
    from harness.judge import structure

    item = _item("u2netp")
    pipeline = Pipeline(item.model)
    healthy = ColourRuntime(RuntimeConfig()).load(item)
    candidate = FaultyRuntime(ColourRuntime(RuntimeConfig()), FAULTS[fault or "identity"]).load(item)
    rng = np.random.default_rng(2)
    images = {f"s{i}": rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for i in range(structure.PROBE_IMAGES)}

    def maps(session: Session, order: str | None = None) -> dict[str, np.ndarray]:
        return {s: pipeline.infer(session, channels.reordered(image, order) if order else image, s, False)
                for s, image in images.items()}

    alternatives = {order: maps(healthy, order) for order in channels.CHANNEL_ORDERS}
    probe = structure.channel_probe(maps(candidate), maps(healthy), alternatives, item.model.budgets["fp16"].mae)
    if fault is None:
        assert probe.passed, probe.as_dict()
    else:
        assert not probe.passed and probe.matches[0] == CHANNEL_FAULTS[fault], probe.as_dict()


def test_mean_offset_is_normalisation_with_a_mean_0015_lower():
    item = _item("u2netp")
    session, _ = _faulty("mean_offset", item)
    batch = _batch(2)
    session.run(batch)
    std = np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]
    np.testing.assert_allclose(session._inner.inputs[-1].tensor - batch.tensor, np.broadcast_to(MEAN_OFFSET / std,
                               batch.tensor.shape), rtol=1e-5)


def test_shift_moves_the_prediction_one_column_right():
    session, _ = _faulty("shift")
    out, clean = session.run(_batch(3))[0], _clean(_batch(3))
    np.testing.assert_array_equal(out[..., 1:], clean[..., :-1])
    np.testing.assert_array_equal(out[..., 0], clean[..., 0])


def test_half_resolution_keeps_the_shape_and_loses_the_finest_detail():
    session, _ = _faulty("half_res")
    out, clean = session.run(_batch(4))[0], _clean(_batch(4))
    assert out.shape == clean.shape and not np.allclose(out, clean)
    assert np.abs(np.diff(out, axis=-1)).mean() < 0.8 * np.abs(np.diff(clean, axis=-1)).mean()


def test_noise_and_saturation_are_deterministic():
    for fault in ("noise", "saturate"):
        first = [_faulty(fault)[0].run(_batch(s))[0] for s in range(3)]
        again = [_faulty(fault)[0].run(_batch(s))[0] for s in range(3)]
        assert all(np.array_equal(a, b) for a, b in zip(first, again))
        assert not np.allclose(first[0], _clean(_batch(0)))
    saturated = _faulty("saturate")[0].run(_batch(5))[0]
    clean = _clean(_batch(5))
    assert saturated.max() == pytest.approx(clean.min() + 0.8 * (clean.max() - clean.min()), rel=1e-5)


def test_stale_hands_every_kth_call_the_previous_calls_output():
    session, _ = _faulty("stale")
    outputs = [session.run(_batch(s))[0] for s in range(2 * STALE_EVERY)]
    for index, out in enumerate(outputs):
        expected = _clean(_batch(index - 1 if (index + 1) % STALE_EVERY == 0 else index))
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("fault, check", [("zero", lambda o: np.all(o == 0)), ("nan", lambda o: np.all(np.isnan(o)))])
def test_dropout_hits_one_call_in_n(fault, check):
    session, _ = _faulty(fault)
    hit = [bool(check(session.run(_batch(s))[0])) for s in range(2 * DROPOUT_EVERY)]
    assert hit == [(i + 1) % DROPOUT_EVERY == 0 for i in range(2 * DROPOUT_EVERY)]


def test_batch_reverse_reverses_rows_and_pairs_single_requests_with_the_previous_one():
    session, _ = _faulty("batch_reverse")
    pair = _batch(6, size=2)
    np.testing.assert_array_equal(session.run(pair)[0], _clean(pair)[::-1])
    session, _ = _faulty("batch_reverse")
    first, second = session.run(_batch(7))[0], session.run(_batch(8))[0]
    np.testing.assert_array_equal(first, _clean(_batch(7)))
    np.testing.assert_array_equal(second, _clean(_batch(7)))


def test_slow_delays_only_the_int8_path_by_its_share():
    sleep = 0.02
    fp32, _ = _faulty("slow", _item("isnet", Variant("fp32")), sleep)
    int8, _ = _faulty("slow", _item("isnet", Variant("int8", "kl_divergence")), sleep)
    timings = {}
    for name, session in (("fp32", fp32), ("int8", int8)):
        started = time.perf_counter()
        session.run(_batch(0))
        timings[name] = time.perf_counter() - started
    assert timings["int8"] >= (1 + SLOW_SHARE) * sleep * 0.95  # sleep() waits at least as long as it is asked
    np.testing.assert_array_equal(int8.run(_batch(1))[0], _clean(_batch(1)))


def test_the_deployed_twin_carries_the_same_fault():
    runtime = EchoRuntime(RuntimeConfig())
    runtime._load = lambda item, artifact: TwinSession()
    session = FaultyRuntime(runtime, FAULTS["shift"]).load(_item())
    assert session.deployed is not session
    np.testing.assert_array_equal(session.deployed.run(_batch(3))[0][..., 1:], _clean(_batch(3))[..., :-1])
    session.close()
    assert session._inner._closed and session._inner.deployed._closed


def test_kernels_changes_only_a_deployed_twin_that_computes_apart():
    runtime = EchoRuntime(RuntimeConfig())
    runtime._load = lambda item, artifact: TwinSession()
    session = FaultyRuntime(runtime, FAULTS["kernels"]).load(_item("isnet", Variant("int8", "kl_divergence")))
    np.testing.assert_array_equal(session.run(_batch(4))[0], _clean(_batch(4)))  # the build's exact path: untouched
    deployed, clean = session.deployed.run(_batch(4))[0], _clean(_batch(4))
    spread = float(clean.max() - clean.min())
    assert np.std(deployed - clean) == pytest.approx(KERNEL_NOISE_SHARE * spread, rel=0.3)
    alone, _ = _faulty("kernels")  # no twin: the session is the deployed one, and the fault has nothing to act on
    assert alone.deployed is alone
    np.testing.assert_array_equal(alone.run(_batch(5))[0], _clean(_batch(5)))


def test_exact_twins_of_one_build_run_each_input_once_for_every_wrapper_and_deployed_twins_always_run(request):
    """``harness sensitivity`` wraps one build up to 16 times: the exact-arithmetic twin (never timed) runs once per
    input for all of them; an input fault feeds it another input, which runs; the deployed twins (timed) always run."""
    build = f"echo {request.node.name}"  # this test's own entries in the process-wide store
    item = _item("isnet", Variant("int8", "kl_divergence"))
    sessions = {}
    for fault in ("identity", "shift", "kernels", "bgr"):
        inner = TwinSession()
        sessions[fault] = (FaultySession(inner, FAULTS[fault], _Context("int8", np.zeros(3), np.ones(3)),
                                         active=not FAULTS[fault].deployed_only, build=build), inner)
    clean = _clean(_batch(6))
    first = sessions["identity"][0].run(_batch(6))[0]
    np.testing.assert_array_equal(first, clean)
    first[...] = 7.0  # a check (or a fault) changing what it got changes nobody else's copy
    shifted = sessions["shift"][0].run(_batch(6))[0]
    np.testing.assert_array_equal(shifted[..., 1:], clean[..., :-1])
    kept = sessions["kernels"][0].run(_batch(6))[0]
    np.testing.assert_array_equal(kept, clean)
    kept[...] = 7.0  # the same for what the store hands out
    np.testing.assert_array_equal(sessions["identity"][0].run(_batch(6))[0], clean)
    sessions["bgr"][0].run(_batch(6))
    assert [len(inner.inputs) for _, inner in sessions.values()] == [1, 0, 0, 1]  # identity's run, and bgr's own
    for session, inner in sessions.values():
        session.deployed.run(_batch(6))
    assert [len(inner.deployed.inputs) for _, inner in sessions.values()] == [1, 1, 1, 1]
    plain = FaultySession(EchoSession(), FAULTS["identity"], _Context("fp32", np.zeros(3), np.ones(3)), build=build)
    plain.run(_batch(6))
    assert len(plain._inner.inputs) == 1  # no twin: the session is the timed one, and always runs


def test_the_exact_outputs_keep_to_their_bound_dropping_the_oldest():
    store, inner = _ExactOutputs(limit_bytes=2 * 8 * 10 * 4), EchoSession()  # room for two 1x1x8x10 float32 outputs
    for seed in (1, 2, 3, 1):
        store.run("b", inner, _batch(seed))
    assert [b.stems[0] for b in inner.inputs] == ["s1", "s2", "s3", "s1"]  # s1 was dropped when s3 came


def test_any_runtime_is_wrapped_by_name_and_unknown_names_list_what_is_known():
    runtime = get("onnxruntime+shift", RuntimeConfig())
    assert isinstance(runtime, FaultyRuntime) and runtime.name == "onnxruntime+shift"
    assert runtime.artifact == "onnx" and validated("openvino+bgr") == "openvino+bgr"
    with pytest.raises(ValueError, match="unknown fault 'typo'; known faults: identity, bgr"):
        get("onnxruntime+typo", RuntimeConfig())
    with pytest.raises(ValueError, match="unknown runtime 'nope'.*NAME\\+FAULT"):
        validated("nope+shift")


def test_every_fault_travels_pickled_to_a_session_worker():
    """Sessions run in worker processes (harness.run.isolation), which receive the fault-wrapped runtime pickled: a fault
    built from a closure could not be sent, and every item on that runtime would fail before its first image."""
    import pickle

    from harness.runtimes.faults import PROCESS_FAULTS

    for name, fault in {**FAULTS, **PROCESS_FAULTS}.items():
        assert pickle.loads(pickle.dumps(fault)).name == name
    zero = pickle.loads(pickle.dumps(FAULTS["zero"]))
    session = FaultyRuntime(EchoRuntime(RuntimeConfig()), zero).load(_item())
    outputs = [session.run(_batch(i))[0] for i in range(DROPOUT_EVERY)]
    assert np.all(outputs[-1] == 0) and np.any(outputs[0] != 0)
