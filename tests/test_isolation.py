"""Runtime sessions in worker processes (harness/run/isolation.py): a hang, a native crash and an error each fail the
call that met them, with the image and the reason, and outputs are the same as in-process. The load, the first call
and the later calls have bounds of their own; a crash can be retried in a new worker; replies are matched to their
requests; a runtime reaches its worker by its registered name when pickle cannot send it; what runs in pytest's own
process (--isolation none, builds, a runtime's SDK probe) is bounded too.

The runtimes here are tiny: a fake whose "model" is a mean over channels, wrapped with the process faults of
harness/runtimes/faults.py, and ONNX Runtime on a one-convolution graph; no real model runs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.data.cases import Item, Variant, load_all
from harness.run.bounds import (
    FIRST_CALL_S,
    LOAD_S,
    TIMEOUT_FACTOR,
    TIMEOUT_FLOOR_S,
    CallTimes,
    RuntimeCrash,
    RuntimeTimeout,
    TimeoutPolicy,
)
from harness.run.isolation import IsolatedSession
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
    session = IsolatedSession.start(_runtime("hang"), item, None, TimeoutPolicy(later=1.0))
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
    assert session._supervisor._worker is None  # killed
    session.close()


@pytest.mark.parametrize("runtime, signal_name", [(_runtime("abort@1"), "SIGABRT"),
                                                  (SegfaultRuntime(RuntimeConfig()), "SIGSEGV")])
def test_a_native_crash_fails_the_call_with_the_signal_named(item: Item, runtime: Runtime, signal_name: str):
    session = IsolatedSession.start(runtime, item, None, TimeoutPolicy(later=30.0))
    with pytest.raises(RuntimeCrash, match=f"process was killed by {signal_name} during runtime call on image a"):
        session.run(_batch("a"))
    with pytest.raises(RuntimeCrash, match="not run"):
        session.covers("b")


def test_a_raising_call_is_the_runtime_s_own_error_and_the_session_goes_on(item: Item):
    session = IsolatedSession.start(_runtime("raise@1"), item, None, TimeoutPolicy(later=30.0))
    with pytest.raises(InjectedRuntimeError, match="returned an error on call 1") as raised:
        session.run(_batch("a"))
    assert any("worker process" in note for note in raised.value.__notes__)
    assert session.run(_batch("b"))[0].shape == (1, 1, 8, 8)
    assert session.notes() == ["fault injected: raise@1 (a call that raises (a driver returning an error code))"]
    process = session._supervisor._worker._process
    session.close()
    assert not process.is_alive()


def test_the_later_bound_scales_with_the_fastest_later_call_above_a_floor_and_the_first_call_is_not_one():
    derived = TimeoutPolicy()
    assert derived.bound(CallTimes()) == FIRST_CALL_S and derived.load == LOAD_S
    assert derived.bound(CallTimes(first=9.0, fastest_later=0.05)) == TIMEOUT_FLOOR_S
    assert derived.bound(CallTimes(first=9.0, fastest_later=2.0)) == TIMEOUT_FACTOR * 2.0
    # a first call faster than the later ones (the old min over every call) must not shrink the bound
    assert derived.bound(CallTimes(first=0.1, fastest_later=2.0)) == TIMEOUT_FACTOR * 2.0
    # only the first call timed: it stands in (a warm call is no slower), never beyond the first call's own bound
    assert derived.bound(CallTimes(first=2.0)) == TIMEOUT_FACTOR * 2.0
    assert derived.bound(CallTimes(first=100.0)) == FIRST_CALL_S
    fixed = TimeoutPolicy(later=7.0)
    assert fixed.bound(CallTimes()) == FIRST_CALL_S  # a fixed later bound leaves the first call its own
    assert fixed.bound(CallTimes(first=1.0)) == fixed.bound(CallTimes(first=1.0, fastest_later=100.0)) == 7.0
    times = CallTimes()
    for seconds in (5.0, 0.3, 0.2, 0.4):
        times.add(seconds)
    assert (times.first, times.fastest_later) == (5.0, 0.2)


def test_each_command_line_bound_wins_over_the_case_s_which_wins_over_the_default(item: Item):
    from dataclasses import replace

    from harness.run.isolation import Isolation

    timed = replace(item, model=item.model.model_copy(
        update={"timeout_s": 42.0, "load_timeout_s": 43.0, "first_call_timeout_s": 44.0}))
    assert Isolation(True).policy(item) == TimeoutPolicy(LOAD_S, FIRST_CALL_S, None)
    assert Isolation(True).policy(timed) == TimeoutPolicy(load=43.0, first_call=44.0, later=42.0)
    assert Isolation(True, item_timeout=5.0, load_timeout=6.0, first_call_timeout=7.0).policy(timed) == TimeoutPolicy(
        load=6.0, first_call=7.0, later=5.0)


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
        from harness.data.cases import Item, Variant, load_all
        from harness.run.bounds import TimeoutPolicy
        from harness.run.isolation import IsolatedSession
        from test_isolation import _batch, _runtime

        if __name__ == "__main__":
            family = next(f for f in load_all(ROOT) if any(m.name == "u2netp" for m in f.models))
            item = Item(family, next(m for m in family.models if m.name == "u2netp"), Variant("fp32"), "mean")
            session = IsolatedSession.start(_runtime("hang@1"), item, None, TimeoutPolicy(later=600))
            print(session._supervisor._worker._process.pid, flush=True)
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


# --------------------------------------------------------------------------- bounds of their own, retries, protocol


def test_a_slow_first_call_has_its_own_bound_and_a_later_hang_is_killed_within_the_later_one(item: Item):
    """warmup_hang: a first call 1.5 s slower (a compile on first run), then a hang. A later-call bound of 1 s must
    not kill the first call, and must kill the hang within about that second."""
    session = IsolatedSession.start(_runtime("warmup_hang"), item, None, TimeoutPolicy(later=1.0))
    started = time.perf_counter()
    assert session.run(_batch("first"))[0].shape == (1, 1, 8, 8)
    assert time.perf_counter() - started > 1.4
    started = time.perf_counter()
    with pytest.raises(RuntimeTimeout, match="runtime call on image second did not return within 1 s"):
        session.run(_batch("second"))
    assert time.perf_counter() - started < 5  # the bound, plus reaping the killed worker
    session.close()


def test_a_hung_load_costs_the_load_bound_and_the_worker_start_is_not_counted_in_it(item: Item):
    started = time.perf_counter()
    with pytest.raises(RuntimeTimeout, match=r"u2netp-fp32-mean: loading its session did not return within 1 s"):
        IsolatedSession.start(_runtime("load_hang"), item, None, TimeoutPolicy(load=1.0))
    assert time.perf_counter() - started < 1.0 + 10  # the bound, plus the worker's start and reaping


def test_a_crash_is_retried_in_a_new_worker_and_every_failed_attempt_is_noted(item: Item):
    session = IsolatedSession.start(_runtime("abort_once@1"), item, None, TimeoutPolicy(later=30.0), retries=1)
    assert session.run(_batch("a"))[0].shape == (1, 1, 8, 8)  # attempt 1 aborted; attempt 2, a new worker, counted
    assert session.run(_batch("b"))[0].shape == (1, 1, 8, 8)
    [note] = session.attempts()
    assert re.fullmatch(r"runtime attempt 1: crash: the runtime's process was killed by SIGABRT during runtime call "
                        r"on image a; retried in a new worker process as attempt 2", note), note
    session.close()


def test_retries_spent_the_fault_sticks_and_says_which_attempt_it_was(item: Item):
    session = IsolatedSession.start(_runtime("abort@1"), item, None, TimeoutPolicy(later=30.0), retries=1)
    with pytest.raises(RuntimeCrash, match=r"killed by SIGABRT during runtime call on image a \(attempt 2 of 2\)"):
        session.run(_batch("a"))
    with pytest.raises(RuntimeCrash, match="not run: an earlier call of this session failed"):
        session.run(_batch("b"))
    assert len(session.attempts()) == 1
    without = IsolatedSession.start(_runtime("abort_once@1"), item, None, TimeoutPolicy(later=30.0))
    with pytest.raises(RuntimeCrash, match=r"SIGABRT during runtime call on image a$"):  # --retries 0: no retry
        without.run(_batch("a"))


def test_a_stale_reply_is_discarded_and_logged_never_read_as_the_next_call_s_answer(caplog: pytest.LogCaptureFixture):
    from multiprocessing import Pipe

    from harness.run.isolation import _Channel

    ours, worker = Pipe()
    channel = _Channel(ours, "u2netp-fp32-mean")
    late = channel.send("main", "run", ())
    assert channel.receive(late, 0.05) is None  # this call timed out...
    current = channel.send("main", "run", ())
    worker.send((late, "ok", "the late answer"))  # ...and its answer comes while the next call waits
    worker.send((current, "ok", "the answer"))
    with caplog.at_level("WARNING", logger="segconform.isolation"):
        assert channel.receive(current, 5) == ("ok", "the answer")
    assert f"discarded a stale reply to request {late} while awaiting request {current}" in caplog.text
    assert [worker.recv()[0], worker.recv()[0]] == [late, current]  # requests carry their numbers too


FACTORY_MODULE = '''
import numpy as np
from harness.runtimes import Runtime, Session


class _Mean(Session):
    provider = "CPU (made by a factory)"

    def _run(self, batch):
        return [batch.tensor.mean(axis=1, keepdims=True)]


def make(runtime_name):
    class Made(Runtime):  # pickle cannot find make.<locals>.Made by its qualified name
        name = runtime_name
        artifact = None

        def _load(self, item, artifact):
            return _Mean()

    return Made


MADE = make("made")
'''


@pytest.fixture
def registered_by_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Runtime]]:
    """A runtime class made by a class factory, registered under the entry-point group by a distribution on sys.path
    (the worker, spawned with this sys.path, finds it the same way)."""
    from harness.runtimes import _registry

    (tmp_path / "made_runtimes.py").write_text(FACTORY_MODULE, encoding="utf-8")
    info = tmp_path / "made_runtimes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: made-runtimes\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[segconform.runtimes]\nmade = made_runtimes:MADE\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry.cache_clear()
    yield __import__("made_runtimes").MADE
    _registry.cache_clear()


def test_a_runtime_pickle_cannot_send_reaches_its_worker_by_its_registered_name(item: Item, registered_by_factory):
    import pickle

    from harness.runtimes import get

    runtime = get("made+raise@1", RuntimeConfig())
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(runtime)
    made = Item(item.family, item.model, Variant("fp32"), "made+raise@1")
    session = IsolatedSession.start(runtime, made, None, TimeoutPolicy(later=30.0))
    assert session.provider == "CPU (made by a factory) + fault raise@1"
    with pytest.raises(InjectedRuntimeError):
        session.run(_batch("a"))
    assert session.run(_batch("b"))[0].shape == (1, 1, 8, 8)
    session.close()


def test_a_runtime_neither_registered_nor_picklable_is_one_clear_error(item: Item, registered_by_factory):
    from harness.run.bounds import RuntimeNotIsolable

    unregistered = __import__("made_runtimes").make("elsewhere")(RuntimeConfig())
    with pytest.raises(RuntimeNotIsolable, match=r"runtime elsewhere cannot run in a worker process: it is not "
                                                 r"registered by name .* and pickle cannot send it .*; register it, "
                                                 r"or run with --isolation none"):
        IsolatedSession.start(unregistered, item, None, TimeoutPolicy())


# --------------------------------------------------------------------------- what runs in pytest's own process


class _Releasable:
    """A stand-in for a call that hangs: it waits until the watchdog's expiry releases it (instead of ending the run),
    and keeps the message the run would have ended with."""

    def __init__(self) -> None:
        import threading

        self.released, self.messages = threading.Event(), []

    def expire(self, message: str) -> None:
        self.messages.append(message)
        self.released.set()


class _HangingSession(MeanSession):
    def __init__(self, hang: _Releasable) -> None:
        self._hang, self.calls = hang, 0

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        self.calls += 1
        if self.calls == 2:
            self._hang.released.wait()
        return super()._run(batch)


def test_under_isolation_none_a_call_past_its_bound_ends_the_run_through_the_watchdog_naming_the_call(item: Item):
    from harness.run.watchdog import Watchdog, WatchedSession

    hang = _Releasable()
    session = WatchedSession(_HangingSession(hang), item.id, TimeoutPolicy(later=0.5), Watchdog(hang.expire))
    assert session.run(_batch("first"))[0].shape == (1, 1, 8, 8)
    started = time.perf_counter()
    session.run(_batch("second"))
    assert 0.4 < time.perf_counter() - started < 3
    assert hang.messages == ["u2netp-fp32-mean: runtime call on image second did not finish within 0.5 s"]
    session.run(_batch("third"))  # a call within its bound: the watchdog stays quiet
    assert len(hang.messages) == 1


def test_a_build_that_hangs_ends_the_run_naming_the_artifact(tmp_path: Path):
    from harness.build.artifacts import ArtifactStore
    from harness.run.watchdog import Watchdog

    hang = _Releasable()
    store = ArtifactStore(tmp_path)
    store.bound_builds(0.3, Watchdog(hang.expire))

    def build(target: Path) -> dict:
        hang.released.wait()
        target.write_bytes(b"onnx")
        return {}

    store.get({"model": "u2netp", "variant": "int8-percentile", "format": "onnx"}, "model.onnx", build)
    [message] = hang.messages
    assert re.fullmatch(r"building the artifact u2netp int8-percentile onnx \(key [0-9a-f]{24}\) did not finish "
                        r"within 0.3 s", message), message


def test_a_runtime_whose_sdk_probe_hangs_is_unavailable_saying_so(monkeypatch: pytest.MonkeyPatch):
    """vaststreamx (runtimes/vacc.py) is imported when the runtime is asked whether it can be used: an import that
    hangs on a driver that does not answer must not hang the run's start."""
    import threading

    from harness.runtimes import base

    class HangingSdk(MeanRuntime):
        name = "sdk"

        def _unavailable(self) -> str | None:
            threading.Event().wait(30)  # a vendor SDK's import waiting on its driver
            return None

    monkeypatch.setattr(base, "PROBE_S", 0.3)
    started = time.perf_counter()
    runtime = FaultyRuntime(HangingSdk(RuntimeConfig()), split("mean+identity")[1])  # a wrapper asks its base
    assert re.fullmatch(r"runtime sdk(\+identity)?: asking whether it can be used here \(importing its SDK, probing "
                        r"its driver\) did not finish within 0.3 s", runtime.unavailable)
    assert time.perf_counter() - started < 2 and runtime.unavailable is runtime.unavailable  # asked once


def test_an_item_whose_load_failed_is_not_loaded_again_every_check_gets_the_error(item: Item, tmp_path: Path):
    from dataclasses import replace
    from types import SimpleNamespace

    from harness.build.artifacts import ArtifactStore
    from harness.run.isolation import Isolation
    from harness.run.sessions import SessionPool

    builder = SimpleNamespace(store=ArtifactStore(tmp_path))
    pool = SessionPool(RuntimeConfig(), builder, None, Isolation(True, load_timeout=1.0))  # type: ignore[arg-type]
    hung = replace(item, runtime="mean+load_hang")
    pool._runtimes[hung.runtime] = _runtime("load_hang")
    started = time.perf_counter()
    with pytest.raises(RuntimeTimeout, match="loading its session did not return within 1 s"):
        pool.session(hung)
    first = time.perf_counter() - started
    for _ in range(3):  # the item's other checks
        started = time.perf_counter()
        with pytest.raises(RuntimeTimeout, match="not run: the session's load failed earlier: loading its session "
                                                 "did not return within 1 s"):
            pool.session(hung)
        assert time.perf_counter() - started < 0.1 < first
