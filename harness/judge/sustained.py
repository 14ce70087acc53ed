"""Latency as a device is used: a session run for a stated time, its tail, its trend, its memory and its outputs.

``test_latency`` and the ratio gates (:mod:`.perf`) time a few seconds of a fresh session, judged on the minimum and
the median: a runtime whose every 10th call takes 3x as long, a device that slows after a minute of work, a driver
that keeps a buffer per call or outputs that change under load all pass them. :func:`run_sustained` runs the item's
session for a stated time over its images, interleaved call by call with the fp32 reference (A B, then B A, as
:class:`.perf.Interleaved` does, so host load falls on both sides alike), samples the resident memory of the
session's process every :data:`MEMORY_EVERY` calls and runs one fixed image (the drift probe) at the start, every
``probe_every`` calls and at the end. :func:`judge` then gives one verdict per gate:

* ``tail``: each declared percentile of the item's calls, each against the median of the :data:`NEIGHBOURHOOD` calls
  around it (so that a run slowing as a whole is the trend gate's alone), over the reference's same figure in the
  same run: host bursts fall on both sides' tails alike, since their calls alternate. Not the percentile of the
  call-by-call ratio: a burst that hits one call of a pair and not the other puts both sides' noise into that ratio
  (a healthy u2netp int8 run's p90 ratio measured 1.93 where its own p90/p50 was 1.28 and the reference's 1.37);
* ``trend``: the median of the last tenth of those ratios over the first tenth's;
* ``memory``: resident-memory growth per 1000 calls (least-squares slope over the run's second half), beyond one
  allocator step (:data:`RSS_STEP_MB`, or :data:`RSS_STEP_SHARE` of the peak) there;
* ``drift``: the probe's outputs against its first run: bit-identical, or within the case's stated noise.

**How many samples a percentile needs.** As MLPerf's early stopping does, a percentile is only judged when the run
holds enough samples for an order statistic of the run to bound it at the run's confidence (``--confidence``, 0.95):
with ``n`` samples the largest is at least the true ``q`` quantile with probability ``1 - q**n``, so ``n`` must be at
least ``ln(1 - c) / ln(q)`` (:func:`samples_needed`: p90 29 samples, p99 299 at 0.95); the tail gate judges that
bound (:func:`percentile_bound`), not the plain percentile, and asks for enough samples that the bound leaves the
:data:`SPARE` largest out (p90 61, p99 628), so that one host hiccup cannot decide it. A run lasts its stated time and, like MLPerf's, until it
holds the calls its gates need, at most :data:`STRETCH` times its stated time; a run still short then fails the gate
saying how many samples it needs and about how long a run would give them. It is never judged on too few.

The fp32 reference itself has no other side to hold its tail and trend against: those two are *not judged* there
(it is the yardstick the others are judged by), while its memory and drift are.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Resident memory is sampled every this many calls (a /proc read, or one request to the session's worker).
MEMORY_EVERY = 5
#: A run stops once its session's process has grown this much since the start (a leak must not take the host's
#: memory down before its verdict); the memory gate then fails saying so, the other gates are not judged.
GUARD_BYTES = 512 * 2**20
#: Calls per tenth the trend gate needs (a median of fewer is one slow call away from anything): 30 calls a run.
LEAST_PER_TENTH = 3
#: Growth of the session's process over the judged half of a run that the memory gate forgives whatever its slope:
#: one step of an allocator (a healthy u2netp session grew 2.8 MB over 19 calls once, 70 MB per 1000 as a slope), or
#: :data:`RSS_STEP_SHARE` of the process's peak where that is larger: an allocator keeps back part of what a call
#: allocated and freed, and a large model allocates more (ISNet at 1024, dynamic int8: 365 MB at rest, 1335 MB at its
#: peak, grew 24.9 MB over the second half of 43 healthy calls, 1.9% of its peak).
RSS_STEP_MB = 16.0
RSS_STEP_SHARE = 0.05
#: RSS samples in the judged half of the run the memory slope needs.
LEAST_MEMORY_SAMPLES = 3
#: Samples the tail gate's percentile bound leaves above it: with the fewest samples a percentile needs, the bound is
#: the run's largest sample, which one host hiccup decides (a healthy u2netp control failed so at 31 samples: one call
#: of 2.2 s against a median of 1.1 s); a run judged on its third largest (p90: 61 samples) shrugs off two.
SPARE = 2
#: Calls made before any is timed (first calls allocate, load kernels, fill caches).
WARM_UP_CALLS = 2
#: A run lasts its stated time and until it holds the calls its gates need (:func:`calls_needed`), but at most this
#: many times its stated time: a run still short then fails saying how long a run it needs.
STRETCH = 3.0
#: Calls around each call whose median the tail gate holds it against (:func:`_detrended`): an every-10th-call tail
#: puts at most two slow calls among eleven, which cannot move their median.
NEIGHBOURHOOD = 11
GATES = ("tail", "trend", "memory", "drift")

Call = Callable[[int], object]


def samples_needed(percentile: float, confidence: float, spare: int = 0) -> int:
    """Fewest samples of which the ``spare + 1``-th largest bounds the ``percentile`` (90, 99) quantile at
    ``confidence``: ``P(Binom(n, q) <= n - 1 - spare) >= c`` (MLPerf's early stopping with ``spare`` samples over the
    bound). With no spare, ``1 - q**n >= c``: p90 29, p99 299 at 0.95; with two, p90 61, p99 628."""
    if spare == 0:
        return math.ceil(math.log(1.0 - confidence) / math.log(percentile / 100.0))
    n = samples_needed(percentile, confidence)
    while _binomial_cdf(n - 1 - spare, n, percentile / 100.0) < confidence:
        n += 1
    return n


def _binomial_cdf(k: int, n: int, share: float) -> float:
    """``P(Binom(n, share) <= k)``, summed in log space (n in the thousands)."""
    log_p, log_q = math.log(share), math.log1p(-share)
    return sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
                        + (n - i) * log_q) for i in range(k + 1))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` percentile as an order statistic of the samples (no interpolation toward a faster neighbour)."""
    return float(np.percentile(np.asarray(values), q, method="higher"))


def percentile_bound(values: list[float], q: float, confidence: float) -> float:
    """The smallest order statistic that is at least the true ``q`` percentile with probability ``confidence``: the
    ``j``-th smallest of ``n`` samples is when fewer than ``j`` samples fall below that percentile, a binomial
    ``P(Binom(n, q/100) <= j - 1) >= confidence`` (MLPerf's early-stopping estimate). It is what the tail gate judges:
    a run whose every 10th call is slow has its p90 right at the border between fast and slow calls, where the plain
    percentile may land on either side; the bound lands among the slow ones. Needs :func:`samples_needed` samples."""
    ordered = sorted(values)
    n, share = len(ordered), q / 100.0
    log_p, log_q = math.log(share), math.log1p(-share)
    cumulative = 0.0
    for below in range(n):  # P(Binom(n, share) == below), summed: the probability that x_(below+1) bounds it
        cumulative += math.exp(math.lgamma(n + 1) - math.lgamma(below + 1) - math.lgamma(n - below + 1)
                               + below * log_p + (n - below) * log_q)
        if cumulative >= confidence:
            return ordered[below]
    if 1.0 - share**n >= confidence:
        return ordered[-1]
    raise ValueError(f"{n} samples cannot bound p{q:g} at {confidence:.0%} confidence; {samples_needed(q, confidence)} "
                     "are needed")


@dataclass
class SustainedRun:
    """What one sustained run measured: per-call seconds of both sides, memory samples and the drift probe."""

    seconds: float
    item_s: list[float] = field(default_factory=list)
    reference_s: list[float] = field(default_factory=list)
    #: (calls of the item so far, resident bytes of the session's process)
    rss: list[tuple[int, int]] = field(default_factory=list)
    peak_rss: int | None = None
    device_bytes: int | None = None
    #: (calls of the item so far, largest |output - first probe output|; NaN when an output was not finite)
    probes: list[tuple[int, float]] = field(default_factory=list)
    #: Why the run ended before its time (the memory guard), or None.
    stopped: str | None = None
    #: How long the loop ran: ``seconds``, longer where the gates needed more calls (at most :data:`STRETCH` times).
    elapsed: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.item_s)


def _difference(first: np.ndarray, now: np.ndarray) -> float:
    if first.shape != now.shape:
        return math.inf
    if not np.all(np.isfinite(now)):
        return math.nan
    return float(np.max(np.abs(now.astype(np.float64) - first.astype(np.float64)))) if now.size else 0.0


def calls_needed(tail: dict[str, float], confidence: float, interleaved: bool) -> int:
    """Fewest calls a run needs for every gate it judges: the declared percentiles (:func:`samples_needed`), ten
    tenths of :data:`LEAST_PER_TENTH` calls (where tail and trend are judged) and the memory slope's samples."""
    memory = 2 * MEMORY_EVERY * LEAST_MEMORY_SAMPLES
    if not interleaved:
        return memory
    return max([memory, 10 * LEAST_PER_TENTH, *(samples_needed(float(q[1:]), confidence, SPARE) for q in tail)])


def run_sustained(item: Call, reference: Call | None, probe: Callable[[], np.ndarray],
                  memory: Callable[[], dict[str, int | None]], seconds: float, probe_every: int,
                  guard_bytes: int = GUARD_BYTES, least_calls: int = 0) -> SustainedRun:
    """Call ``item(i)`` (and ``reference(i)``, alternating which goes first) for ``seconds`` and at least
    ``least_calls`` times (as MLPerf's runs last a minimum time and a minimum query count), but never beyond
    :data:`STRETCH` times ``seconds``; ``i`` counts calls. ``probe()``: the fixed image's prediction; ``memory()``:
    the session process's ``rss`` and ``peak_rss`` bytes (and ``device`` bytes where the runtime reports them)."""
    for index in range(WARM_UP_CALLS):
        item(index)
        if reference is not None:
            reference(index)
    run = SustainedRun(seconds)
    first = np.asarray(probe())
    run.probes.append((0, 0.0))
    start_rss = _sample(run, memory)
    started = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        if (elapsed >= seconds and run.calls >= least_calls) or elapsed >= STRETCH * seconds:
            break
        calls = run.calls
        order: list[tuple[Call, list[float]]] = [(item, run.item_s)]
        if reference is not None:
            order.append((reference, run.reference_s))
            if calls % 2:
                order.reverse()
        for call, sink in order:
            began = time.perf_counter()
            call(calls)
            sink.append(time.perf_counter() - began)
        calls += 1
        if calls % probe_every == 0:
            run.probes.append((calls, _difference(first, np.asarray(probe()))))
        if calls % MEMORY_EVERY == 0:
            grown = _sample(run, memory) - start_rss
            if grown > guard_bytes:
                run.stopped = (f"stopped after {calls} calls: the session's process grew {grown / 2**20:.0f} MB "
                               f"(guard {guard_bytes / 2**20:.0f} MB)")
                break
    run.elapsed = time.perf_counter() - started
    run.probes.append((run.calls, _difference(first, np.asarray(probe()))))
    _sample(run, memory)
    return run


def _sample(run: SustainedRun, memory: Callable[[], dict[str, int | None]]) -> int:
    now = memory()
    rss = int(now["rss"] or 0)
    run.rss.append((run.calls, rss))
    run.peak_rss = now.get("peak_rss") or max(run.peak_rss or 0, rss)
    if now.get("device") is not None:
        run.device_bytes = now["device"]
    return rss


# --------------------------------------------------------------------------- figures and verdicts


@dataclass(frozen=True)
class GateVerdict:
    """One gate of a sustained run: ``passed``, ``failed`` or ``not judged`` (with the reason), and its sentence."""

    gate: str
    status: str
    text: str
    value: float | None = None
    bound: float | None = None


def figures(run: SustainedRun) -> dict[str, object]:
    """What the report, the summary and ``trend`` show of a run (milliseconds, MB)."""
    out: dict[str, object] = {"calls": run.calls, "seconds": run.seconds, "elapsed": run.elapsed,
                              "stopped": run.stopped}
    for side, values in (("item", run.item_s), ("reference", run.reference_s)):
        if values:
            out[side] = {f"p{q}_ms": 1000 * percentile(values, q) for q in (50, 90, 99)} | {
                "samples": len(values), "trend": _trend(values), "per_s": len(values) / sum(values)}
    out["rss_mb"] = {"start": run.rss[0][1] / 2**20 if run.rss else None,
                     "end": run.rss[-1][1] / 2**20 if run.rss else None,
                     "peak": run.peak_rss / 2**20 if run.peak_rss else None,
                     "growth_per_1000": _growth_per_1000(run)}
    if run.device_bytes is not None:
        out["device_mb"] = run.device_bytes / 2**20
    moves = [d for _, d in run.probes]
    out["drift_max_abs"] = math.nan if any(math.isnan(d) for d in moves) else max(moves, default=0.0)
    out["probes"] = len(run.probes)
    return out


def _trend(values: list[float]) -> float | None:
    tenth = len(values) // 10
    if tenth < LEAST_PER_TENTH:
        return None
    return statistics.median(values[-tenth:]) / statistics.median(values[:tenth])


def _judged_memory(run: SustainedRun) -> list[tuple[int, int]]:
    return run.rss if run.stopped else [s for s in run.rss if s[0] >= run.calls / 2]


def _growth_per_1000(run: SustainedRun) -> float | None:
    """MB per 1000 calls: least-squares slope of RSS over calls in the run's second half (all of a stopped run)."""
    judged = _judged_memory(run)
    if len(judged) < LEAST_MEMORY_SAMPLES or judged[-1][0] == judged[0][0]:
        return None
    calls, rss = np.asarray([s[0] for s in judged], float), np.asarray([s[1] for s in judged], float)
    return float(np.polyfit(calls, rss, 1)[0]) * 1000 / 2**20


def judge(run: SustainedRun, tail: dict[str, float], max_trend: float, max_growth_mb: float, drift_max_abs: float,
          confidence: float) -> list[GateVerdict]:
    """One verdict per gate of :data:`GATES` (module docstring)."""
    memory = _memory_gate(run, max_growth_mb)
    drift = _drift_gate(run, drift_max_abs)
    if run.stopped:
        why = f"not judged: {run.stopped}"
        return [GateVerdict("tail", "not judged", why), GateVerdict("trend", "not judged", why), memory, drift]
    if not run.reference_s:
        why = "not judged: this item is the fp32 reference the other items' tails and trends are judged against"
        return [GateVerdict("tail", "not judged", why), GateVerdict("trend", "not judged", why), memory, drift]
    return [_tail_gate(run, tail, confidence), _trend_gate(run, max_trend), memory, drift]


def _longer(run: SustainedRun, needed: int) -> str:
    rate = run.calls / run.elapsed if run.elapsed else 0.0
    estimate = f" (about {math.ceil(needed / rate)} s at this run's {rate:.2f} calls/s)" if rate else ""
    return (f"needs a longer run: {needed} samples, this run of {run.seconds:g} s (stretched to at most "
            f"{STRETCH:g}x) held {run.calls}{estimate}; raise --sustain-seconds or the case's sustained.seconds")


def _tail_gate(run: SustainedRun, tail: dict[str, float], confidence: float) -> GateVerdict:
    if not tail:
        return GateVerdict("tail", "not judged", "not judged: the case declares no percentile ceiling")
    parts, failed, worst, worst_bound = [], False, 0.0, 0.0
    item, reference = _detrended(run.item_s), _detrended(run.reference_s)
    for name, ceiling in sorted(tail.items()):
        q = float(name[1:])
        needed = samples_needed(q, confidence, SPARE)
        if run.calls < needed:
            return GateVerdict("tail", "failed", f"{name} at {confidence:.0%} confidence {_longer(run, needed)}")
        ours, theirs = percentile_bound(item, q, confidence), percentile_bound(reference, q, confidence)
        excess = ours / theirs
        failed |= excess > ceiling
        if excess / ceiling > worst / max(worst_bound, 1e-9):
            worst, worst_bound = excess, ceiling
        parts.append(f"{name}/p50 of the item's calls x{ours:.2f} over the reference's x{theirs:.2f}: x{excess:.2f} "
                     f"(ceiling x{ceiling:g}; each call against its {NEIGHBOURHOOD} neighbours' median, {name} bounded "
                     f"at {confidence:.0%} confidence)")
    text = f"tail over {run.calls} interleaved calls: " + "; ".join(parts)
    return GateVerdict("tail", "failed" if failed else "passed", text, worst, worst_bound)


def _pair_ratios(run: SustainedRun) -> list[float]:
    """The item's time over the reference's, call by call: the two calls of a pair ran back to back, so load that
    lasts longer than a pair (another job on the machine) falls on both and cancels."""
    return [ours / theirs for ours, theirs in zip(run.item_s, run.reference_s)]


def _detrended(times: list[float]) -> list[float]:
    """Each call's time over the median of the :data:`NEIGHBOURHOOD` calls centred on it: what the tail gate judges,
    so that a run that slows as a whole (the trend gate's business) is not also a tail, while one slow call in ten
    stays as slow against its neighbours (at most two of the eleven are slow, and a median shrugs off five). Against
    the run's median a throttle's times spread to a p90 bound of 1.65 (u2netp, 1.0 to 2.2 over 128 s); against the
    median of its tenth of the run, the last tenth of a compounding slowdown still spread (ISNet's throttle 1.45): the
    calls of a tenth span more and more of the run's time as each call slows. Eleven neighbours span a few seconds
    wherever they are."""
    values = np.asarray(times, dtype=float)
    half = NEIGHBOURHOOD // 2
    return [float(value / np.median(values[max(0, i - half):i + half + 1])) for i, value in enumerate(values)]


def _trend_gate(run: SustainedRun, max_trend: float) -> GateVerdict:
    ours, theirs, excess = _trend(run.item_s), _trend(run.reference_s), _trend(_pair_ratios(run))
    if ours is None or theirs is None or excess is None:
        return GateVerdict("trend", "failed", f"trend {_longer(run, 10 * LEAST_PER_TENTH)}")
    text = (f"last tenth over first tenth of the item's time over the reference's, call by call, x{excess:.3f} "
            f"(ceiling x{max_trend:g}; the item's own {ours:.3f}, the reference's {theirs:.3f}) over "
            f"{run.elapsed:.0f} s, {run.calls} calls")
    return GateVerdict("trend", "failed" if excess > max_trend else "passed", text, excess, max_trend)


def _memory_gate(run: SustainedRun, max_growth_mb: float) -> GateVerdict:
    if not any(rss for _, rss in run.rss):  # a platform without /proc: no figure is no pass
        return GateVerdict("memory", "failed", "the session's process reports no resident memory here")
    growth = _growth_per_1000(run)
    if run.stopped:
        return GateVerdict("memory", "failed", f"{run.stopped}; growth {growth or 0:.0f} MB per 1000 calls "
                                               f"(ceiling {max_growth_mb:g})", growth, max_growth_mb)
    if growth is None:
        needed = 2 * MEMORY_EVERY * LEAST_MEMORY_SAMPLES
        return GateVerdict("memory", "failed", f"memory growth {_longer(run, needed)}")
    start, end = run.rss[0][1] / 2**20, run.rss[-1][1] / 2**20
    judged = _judged_memory(run)
    grown = growth * (judged[-1][0] - judged[0][0]) / 1000
    peak = max((run.peak_rss or 0), *(rss for _, rss in run.rss)) / 2**20
    step = max(RSS_STEP_MB, RSS_STEP_SHARE * peak)
    text = (f"resident memory {start:.0f} -> {end:.0f} MB (peak {peak:.0f}) over {run.calls} calls: {growth:+.1f} MB "
            f"per 1000 calls over the second half, {grown:+.1f} MB there (ceiling {max_growth_mb:g} MB per 1000 calls "
            f"beyond one allocator step of {step:.0f} MB: {RSS_STEP_MB:g} MB or {RSS_STEP_SHARE:.0%} of the peak)")
    failed = growth > max_growth_mb and grown > step
    return GateVerdict("memory", "failed" if failed else "passed", text, growth, max_growth_mb)


def _drift_gate(run: SustainedRun, drift_max_abs: float) -> GateVerdict:
    moved = [(call, d) for call, d in run.probes if math.isnan(d) or d > drift_max_abs]
    bound = "bit-identical" if drift_max_abs == 0 else f"within {drift_max_abs:g}"
    if moved:
        call, d = moved[0]
        return GateVerdict("drift", "failed", f"the fixed image's output moved {d:.3g} from its first run by call "
                                              f"{call} ({len(moved)} of {len(run.probes)} probes; must be {bound})",
                           d, drift_max_abs)
    worst = max((d for _, d in run.probes), default=0.0)
    return GateVerdict("drift", "passed", f"the fixed image's output {bound} over {len(run.probes)} probes "
                                          f"(largest move {worst:.3g})", worst, drift_max_abs)
