"""Same-run latency ratios, measured interleaved so that they hold on any machine and do not raise false alarms.

Two figures measured as separate benchmarks drift apart with whatever else the machine does between
them: on a 2-core AVX2 machine ISNet@320's runtime and pipeline benchmarks read 209 vs 240 ms (a "15%
overhead") while the same two calls interleaved in one loop read 225.8 vs 228.0 ms (1.0%). So each
ratio here is measured in one loop that alternates the two sides (A B, then B A, so a trend cancels),
and judged on the medians. A :class:`RatioFloor` is a small parsed object, as pytest-benchmark's
thresholds are: it knows its figure, its bound and how to say why a measurement misses it.

A miss is measured once more before it counts (:meth:`RatioFloor.confirmed`): on a shared 2-core machine a
burst of host load can slow one side of a few seconds of rounds by 1.7x (seen once in ten repeats of the
ISNet gate), while a real regression misses both times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Interleaved:
    """Per-call durations of two callables run alternately; :meth:`round` is one A/B (or B/A) pair."""

    first: Callable[[], object]
    second: Callable[[], object]
    first_seconds: list[float] = field(default_factory=list)
    second_seconds: list[float] = field(default_factory=list)
    #: Duration of the last warm-up round: what one recorded round will cost.
    round_seconds: float = 0.0
    _rounds: int = 0

    def round(self) -> None:
        order = [(self.first, self.first_seconds), (self.second, self.second_seconds)]
        if self._rounds % 2:
            order.reverse()
        for call, sink in order:
            started = time.perf_counter()
            call()
            sink.append(time.perf_counter() - started)
        self._rounds += 1

    def warm_up(self, rounds: int = 2) -> "Interleaved":
        """``rounds`` rounds whose durations are dropped (first calls allocate, load kernels, fill caches)."""
        for _ in range(rounds):
            started = time.perf_counter()
            self.round()
            self.round_seconds = time.perf_counter() - started
        self.first_seconds.clear()
        self.second_seconds.clear()
        return self

    def run(self, rounds: int, warmup: int = 2) -> "Interleaved":
        """``warmup`` unrecorded rounds, then ``rounds`` recorded ones (outside pytest-benchmark)."""
        self.warm_up(warmup)
        for _ in range(rounds):
            self.round()
        return self

    @property
    def medians(self) -> tuple[float, float]:
        return statistics.median(self.first_seconds), statistics.median(self.second_seconds)


#: Time one gate's recorded rounds may take, and the fewest rounds a gate judges. On a model whose call takes seconds
#: (ISNet at 1024: 1 to 3 s a call on 2 cores) 15 rounds were 30 to 90 s per gate; a median of 5 interleaved rounds
#: still catches a 1.5x slowdown (the sensitivity run's slow fault is judged on 5), and a miss is measured again.
ROUND_BUDGET_S = 10.0
LEAST_ROUNDS = 5


def rounds_within(most: int, round_seconds: float, budget_s: float = ROUND_BUDGET_S) -> int:
    """Rounds for a gate: as many as ``budget_s`` allows at ``round_seconds`` each, at least :data:`LEAST_ROUNDS`
    (or ``most`` when that is fewer) and at most ``most`` (``--latency-rounds``)."""
    affordable = int(budget_s / round_seconds) if round_seconds > 0 else most
    return max(min(most, LEAST_ROUNDS), min(most, affordable))


@dataclass(frozen=True)
class RatioFloor:
    """A bound on a same-run latency ratio: ``kind`` is ``speedup`` (at least) or ``overhead`` (at most)."""

    kind: str
    bound: float
    what: str

    def measure(self, timing: Interleaved) -> float:
        """The ratio from an interleaved measurement whose first side is the item and second the baseline.

        speedup: baseline / item (fp32 latency over the item's); overhead: (pipeline - runtime) / runtime,
        with the pipeline first and the bare runtime second.
        """
        first, second = timing.medians
        if self.kind == "speedup":
            return second / first
        return (first - second) / second

    def holds(self, ratio: float) -> bool:
        return ratio >= self.bound if self.kind == "speedup" else ratio <= self.bound

    def confirmed(self, timing: Interleaved, again: Callable[[], Interleaved], first_label: str,
                  second_label: str) -> tuple[bool, float, str]:
        """:meth:`verdict` of ``timing``; when it misses, of a second measurement ``again()``, both named."""
        holds, ratio, text = self.verdict(timing, first_label, second_label)
        if holds:
            return holds, ratio, text
        holds, ratio, retry = self.verdict(again(), first_label, second_label)
        return holds, ratio, f"{text}; measured again: {retry}"

    def verdict(self, timing: Interleaved, first_label: str, second_label: str) -> tuple[bool, float, str]:
        """(holds, ratio, a sentence with both figures)."""
        ratio = self.measure(timing)
        first, second = timing.medians
        figures = (f"{first_label} {1000 * first:.1f} ms vs {second_label} {1000 * second:.1f} ms "
                   f"(medians of {len(timing.first_seconds)} interleaved rounds)")
        if self.kind == "speedup":
            text = f"{self.what}: speed-up {ratio:.2f}x, floor {self.bound:g}x: {figures}"
        else:
            text = f"{self.what}: overhead {ratio:+.1%}, ceiling {self.bound:.0%}: {figures}"
        return self.holds(ratio), ratio, text
