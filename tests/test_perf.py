"""Same-run latency ratios (:mod:`harness.judge.perf`): interleaved measurement and the floors that judge it.

The sides are callables that sleep for known times, so the expected ratios are known without a model.
"""

from __future__ import annotations

import time

import pytest

from harness.judge.perf import LEAST_ROUNDS, ROUND_BUDGET_S, Interleaved, RatioFloor, rounds_within


def _sleeper(seconds: float, log: list[str], name: str):
    def call() -> None:
        log.append(name)
        time.sleep(seconds)

    return call


def test_rounds_alternate_the_order_so_a_drift_cancels():
    log: list[str] = []
    timing = Interleaved(_sleeper(0, log, "a"), _sleeper(0, log, "b")).run(rounds=4, warmup=1)
    assert log == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert len(timing.first_seconds) == len(timing.second_seconds) == 4  # warm-up rounds are not recorded


def test_speedup_floor_passes_a_fast_build_and_fails_a_slowed_one():
    gate = RatioFloor("speedup", 1.5, "demo int8 vs fp32")
    fast = Interleaved(_sleeper(0.01, [], "int8"), _sleeper(0.03, [], "fp32")).run(rounds=5)
    holds, ratio, text = gate.verdict(fast, "int8", "fp32")
    assert holds and ratio == pytest.approx(3.0, rel=0.3)
    assert "speed-up" in text and "int8" in text and "fp32" in text and "ms" in text
    slowed = Interleaved(_sleeper(0.03, [], "int8"), _sleeper(0.03, [], "fp32")).run(rounds=5)
    holds, ratio, text = gate.verdict(slowed, "int8", "fp32")
    assert not holds and ratio == pytest.approx(1.0, rel=0.3) and "floor 1.5x" in text


def test_overhead_ceiling_is_the_share_the_pipeline_adds():
    gate = RatioFloor("overhead", 0.05, "demo pipeline vs runtime")
    timing = Interleaved(_sleeper(0.022, [], "pipeline"), _sleeper(0.020, [], "runtime")).run(rounds=5)
    holds, ratio, text = gate.verdict(timing, "pipeline", "runtime")
    assert not holds and ratio == pytest.approx(0.1, abs=0.06) and "ceiling 5%" in text
    assert RatioFloor("overhead", 0.5, "x").holds(0.1) and not RatioFloor("speedup", 1.2, "x").holds(1.1)


def test_a_miss_is_measured_again_before_it_counts():
    gate = RatioFloor("speedup", 1.5, "demo")
    slowed = Interleaved(_sleeper(0.03, [], "int8"), _sleeper(0.03, [], "fp32")).run(rounds=3)
    fast = Interleaved(_sleeper(0.01, [], "int8"), _sleeper(0.03, [], "fp32"))
    holds, ratio, text = gate.confirmed(slowed, lambda: fast.run(rounds=3), "int8", "fp32")
    assert holds and ratio > 1.5 and "measured again" in text  # a burst of load: the second measurement clears it
    again = Interleaved(_sleeper(0.03, [], "int8"), _sleeper(0.03, [], "fp32"))
    holds, _, text = gate.confirmed(slowed, lambda: again.run(rounds=3), "int8", "fp32")
    assert not holds and text.count("floor 1.5x") == 2  # a real regression misses both times
    calls = []
    gate.confirmed(fast.run(rounds=3), lambda: calls.append(1) or fast, "int8", "fp32")
    assert calls == []  # a pass is not measured twice


def test_warm_up_rounds_are_not_counted_and_the_order_keeps_alternating():
    calls = []
    timing = Interleaved(_sleeper(0.0, calls, "a"), _sleeper(0.0, calls, "b")).warm_up(2)
    assert timing.first_seconds == [] and timing.second_seconds == [] and calls == ["a", "b", "b", "a"]
    timing.round()
    assert len(timing.first_seconds) == 1 and calls[-2:] == ["a", "b"]


def test_rounds_fit_the_budget_between_the_least_and_the_most():
    """ISNet at 320 (0.2 s a round) keeps its 15 rounds; ISNet at 1024 (2 to 6 s a round) gets the least, 5."""
    assert rounds_within(15, 0.2) == 15
    assert rounds_within(15, ROUND_BUDGET_S / 8) == 8
    assert rounds_within(15, 2.0) == rounds_within(15, 6.0) == LEAST_ROUNDS == 5
    assert rounds_within(3, 6.0) == 3  # --latency-rounds below the least is obeyed
    assert rounds_within(15, 0.0) == 15


def test_the_warm_up_measures_what_a_round_costs():
    timing = Interleaved(_sleeper(0.02, [], "a"), _sleeper(0.01, [], "b")).warm_up()
    assert 0.03 <= timing.round_seconds < 0.3
    assert not timing.first_seconds and not timing.second_seconds
