"""Runtime sessions in worker processes (harness/isolation.py): a hang, a native crash and an error each fail the
call that met them, with the image and the reason, and outputs are the same as in-process.

The runtimes here are tiny: a fake whose "model" is a mean over channels, wrapped with the process faults of
harness/runtimes/faults.py, and ONNX Runtime on a one-convolution graph; no real model runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cases import Item, Variant, load_all
from harness.isolation import (
    FIRST_CALL_S,
    TIMEOUT_FACTOR,
    TIMEOUT_FLOOR_S,
    IsolatedSession,
    RuntimeCrash,
    RuntimeTimeout,
    TimeoutPolicy,
)
from harness.runtimes import RunInput, Runtime, RuntimeConfig, Session
from harness.runtimes.base import Artifact
from harness.runtimes.faults import FaultyRuntime, InjectedRuntimeError, split

ROOT = Path(__file__).resolve().parent.parent


class MeanSession(Session):
    provider = "CPU (mean over channels)"

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        assert batch.tensor is not None
        return [batch.tensor.mean(axis=1, keepdims=True)]


class MeanRuntime(Runtime):
    """Not registered by name (tests only): it reaches the worker pickled, as any runtime object does."""

    artifact = None

    def _load(self, item: Item, artifact: Artifact | None) -> Session:
        return MeanSession()


class SegfaultSession(MeanSession):
    def _run(self, batch: RunInput) -> list[np.ndarray]:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a bad pointer in native code does
        raise AssertionError("unreachable")


class SegfaultRuntime(MeanRuntime):
    def _load(self, item: Item, artifact: Artifact | None) -> Session:
        return SegfaultSession()


@pytest.fixture(scope="module")
def item() -> Item:
    family = next(f for f in load_all(ROOT / "cases") if any(m.name == "u2netp" for m in f.models))
    return Item(family, next(m for m in family.models if m.name == "u2netp"), Variant("fp32"), "mean")


def _runtime(fault: str | None = None) -> Runtime:
    base = MeanRuntime(RuntimeConfig())
    base.name = "mean"  # type: ignore[misc]
    return base if fault is None else FaultyRuntime(base, split(f"mean+{fault}")[1])  # type: ignore[arg-type]


def _batch(stem: str) -> RunInput:
    tensor = np.random.default_rng(len(stem)).random((1, 3, 8, 8), dtype=np.float32)
    return RunInput(tensor, [], [stem])


def test_a_hung_call_fails_naming_the_image_and_the_bound_and_the_item_costs_one_timeout(item: Item):
    session = IsolatedSession.start(_runtime("hang"), item, None, TimeoutPolicy(fixed=1.0))
    assert session.run(_batch("first"))[0].shape == (1, 1, 8, 8)
    started = time.perf_counter()
    with pytest.raises(RuntimeTimeout, match=r"u2netp-fp32-mean: runtime call on image second did not return "
                                             r"within 1 s; its process was killed"):
        session.run(_batch("second"))
    assert time.perf_counter() - started < 6  # the bound, plus reaping the killed worker
    started = time.perf_counter()
    with pytest.raises(RuntimeTimeout, match="not run: an earlier call of this session failed: runtime call on image "
                                             "second"):
        session.run(_batch("third"))  # every later call of the item fails at once, with the first reason
    assert time.perf_counter() - started < 0.5
    assert not session._worker._process.is_alive()
    session.close()


@pytest.mark.parametrize("runtime, signal_name", [(_runtime("abort@1"), "SIGABRT"),
                                                  (SegfaultRuntime(RuntimeConfig()), "SIGSEGV")])
def test_a_native_crash_fails_the_call_with_the_signal_named(item: Item, runtime: Runtime, signal_name: str):
    session = IsolatedSession.start(runtime, item, None, TimeoutPolicy(fixed=30.0))
    with pytest.raises(RuntimeCrash, match=f"process was killed by {signal_name} during runtime call on image a"):
        session.run(_batch("a"))
    with pytest.raises(RuntimeCrash, match="not run"):
        session.covers("b")


def test_a_raising_call_is_the_runtime_s_own_error_and_the_session_goes_on(item: Item):
    session = IsolatedSession.start(_runtime("raise@1"), item, None, TimeoutPolicy(fixed=30.0))
    with pytest.raises(InjectedRuntimeError, match="returned an error on call 1") as raised:
        session.run(_batch("a"))
    assert any("worker process" in note for note in raised.value.__notes__)
    assert session.run(_batch("b"))[0].shape == (1, 1, 8, 8)
    assert session.notes() == ["fault injected: raise@1 (a call that raises (a driver returning an error code))"]
    session.close()
    assert not session._worker._process.is_alive()


def test_the_bound_scales_with_the_session_s_fastest_call_above_a_floor():
    derived = TimeoutPolicy()
    assert derived.bound(None) == FIRST_CALL_S
    assert derived.bound(0.05) == TIMEOUT_FLOOR_S
    assert derived.bound(2.0) == TIMEOUT_FACTOR * 2.0
    assert TimeoutPolicy(fixed=7.0).bound(None) == TimeoutPolicy(fixed=7.0).bound(100.0) == 7.0


def test_the_command_line_bound_wins_over_the_case_s_which_wins_over_the_derived_one(item: Item):
    from dataclasses import replace

    from harness.isolation import Isolation

    timed = replace(item, model=item.model.model_copy(update={"timeout_s": 42.0}))
    assert Isolation(True).policy(item) == TimeoutPolicy()
    assert Isolation(True).policy(timed) == TimeoutPolicy(fixed=42.0)
    assert Isolation(True, item_timeout=5.0).policy(timed) == TimeoutPolicy(fixed=5.0)


def test_a_fault_name_takes_the_call_it_names_and_rejects_nonsense():
    assert split("onnxruntime+hang")[1].at_call == 2 and split("onnxruntime+abort")[1].at_call == 3
    assert split("onnxruntime+hang@5")[1].at_call == 5
    for wrong in ("onnxruntime+hang@0", "onnxruntime+hang@x", "onnxruntime+freeze"):
        with pytest.raises(ValueError, match="unknown fault"):
            split(wrong)


def test_isolated_outputs_are_identical_to_in_process_ones(item: Item, tmp_path: Path):
    """ONNX Runtime on a small convolution: the worker's outputs are bit for bit those of this process."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from harness.runtimes.onnxruntime import OnnxRuntime

    weights = np.random.default_rng(3).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Sigmoid", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
        [numpy_helper.from_array(weights, "w")])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    artifact, runtime = Artifact(path, {}), OnnxRuntime(RuntimeConfig(threads=1))
    onnx_item = Item(item.family, item.model, Variant("fp32"), "onnxruntime")
    batches = [RunInput(np.random.default_rng(i).standard_normal((1, 3, 32, 32)).astype(np.float32), [], [str(i)])
               for i in range(3)]
    here = runtime.load(onnx_item, artifact)
    isolated = IsolatedSession.start(runtime, onnx_item, artifact, TimeoutPolicy())
    try:
        assert isolated.provider == here.provider and isolated.settings() == here.settings()
        for batch in batches:
            ours, theirs = here.run(batch), isolated.run(batch)
            assert len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    finally:
        isolated.close()
        here.close()


# --------------------------------------------------------------------------- what isolation costs (benchmarks)


def _conv_session(item: Item, tmp_path: Path, side: int, isolated: bool) -> Session:
    """ONNX Runtime on one 3->1 convolution at ``side`` x ``side``: the arrays of u2netp (320) or ISNet (1024) cross
    the pipe, while the model itself costs next to nothing, so the time measured is what isolation adds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from harness.runtimes.onnxruntime import OnnxRuntime

    weights = np.full((1, 3, 1, 1), 1 / 3, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, side, side])],
        [numpy_helper.from_array(weights, "w")])
    path = tmp_path / f"conv{side}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    runtime, artifact = OnnxRuntime(RuntimeConfig(threads=1)), Artifact(path, {})
    onnx_item = Item(item.family, item.model, Variant("fp32"), "onnxruntime")
    return IsolatedSession.start(runtime, onnx_item, artifact, TimeoutPolicy()) if isolated else runtime.load(
        onnx_item, artifact)


@pytest.mark.parametrize("side", [320, 1024], ids=["u2netp-320", "isnet-1024"])
@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
def test_benchmark_a_call_isolated_and_in_process(benchmark, item: Item, tmp_path: Path, side: int, isolated: bool):
    """Per call, isolation adds two copies of the input and output through a pipe; compare the groups' medians."""
    session = _conv_session(item, tmp_path, side, isolated)
    batch = RunInput(np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32), [], ["x"])
    benchmark.group = f"isolation per call, {side}x{side}"
    try:
        assert benchmark(session.run, batch)[0].shape == (1, 1, side, side)
    finally:
        session.close()


def test_benchmark_starting_and_closing_a_worker(benchmark, item: Item):
    """Per session, isolation adds a process start (spawn, imports, the runtime's load) and its exit."""
    benchmark.group = "isolation per session"
    benchmark.pedantic(lambda: IsolatedSession.start(_runtime(), item, None, TimeoutPolicy()).close(), rounds=3,
                       iterations=1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal and /proc are Linux's")
def test_a_worker_stuck_in_a_call_dies_with_its_parent(tmp_path: Path):
    """A run killed with SIGKILL must not leave a hung worker behind (it would hold its device)."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[str(Path(__file__).parent), str(ROOT)]!r}
        from harness.cases import Item, Variant, load_all
        from harness.isolation import IsolatedSession, TimeoutPolicy
        from test_isolation import _batch, _runtime

        if __name__ == "__main__":
            family = next(f for f in load_all(ROOT) if any(m.name == "u2netp" for m in f.models))
            item = Item(family, next(m for m in family.models if m.name == "u2netp"), Variant("fp32"), "mean")
            session = IsolatedSession.start(_runtime("hang@1"), item, None, TimeoutPolicy(fixed=600))
            print(session._worker._process.pid, flush=True)
            session.run(_batch("x"))
        """).replace("load_all(ROOT)", f"load_all(__import__('pathlib').Path({str(ROOT / 'cases')!r}))"),
        encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    time.sleep(0.5)  # into the hanging call
    parent.kill()
    parent.wait()

    def alive() -> bool:
        stat = Path(f"/proc/{worker}/stat")
        return stat.exists() and stat.read_text().split()[2] != "Z"

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
    survived = alive()
    if survived:
        os.kill(worker, signal.SIGKILL)  # the test's own leftover
    assert not survived
