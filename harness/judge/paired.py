"""Paired verdicts: a build judged against the fp32 reference on the same images, by the bootstrap of the per-image
differences, and a documented collapse judged by the range of loss its case states."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..data.case_base import LOWER_IS_BETTER
from ..data.cases import Item, Model
from .judgement import Bootstrap, MetricVerdict, allowed_worsening, metric_interval, worse_by
from .metrics import Scores


@dataclass(frozen=True)
class PairedResult:
    """The item minus fp32 on the same images: per-metric deltas, their intervals, and the verdicts."""

    images: int
    deltas: dict[str, MetricVerdict] = field(default_factory=dict)
    floors: dict[str, MetricVerdict] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        return [v.reason for v in [*self.deltas.values(), *self.floors.values()] if not v.passed]

    def as_dict(self) -> dict[str, object]:
        return {"images": self.images, "delta": {m: v.as_dict() for m, v in self.deltas.items()},
                "floor": {m: v.as_dict() for m, v in self.floors.items()}}


def _range_verdict(metric: str, delta: float, interval: tuple[float, float], expected: tuple[float, float],
                   tolerance: float, confidence: float) -> MetricVerdict:
    """One paired metric of a documented collapse: its interval must reach the stated range widened by the
    tolerance. Wholly on the worse side, the collapse deepened; wholly on the better side, it is gone."""
    (low, high), (first, last) = interval, expected
    floor, ceiling = first - tolerance, last + tolerance
    allowed = f"stated loss {first:+g} to {last:+g} (+- {tolerance:g})"
    text = f"{metric}: {delta:+.4f} vs fp32, {confidence:.0%} CI [{low:+.4f}, {high:+.4f}]"
    if not (np.isfinite(delta) and np.isfinite(low) and np.isfinite(high)):
        return MetricVerdict(metric, delta, interval, None, allowed, False, f"{text}: not a number")
    if low <= ceiling and high >= floor:
        return MetricVerdict(metric, delta, interval, None, allowed, True)
    beyond_high = low > ceiling
    worse = beyond_high == (metric in LOWER_IS_BETTER)
    why = "worse than the stated loss: the collapse deepened" if worse else \
        "better than the stated loss: the collapse is gone; update the case's expected_loss"
    reason = f"{text} lies wholly outside the {allowed}: {why}"
    return MetricVerdict(metric, delta, interval, None, allowed, False, reason)


def judge_paired(candidate: Scores, reference: Scores, documented_delta: Mapping[str, float],
                 tolerance: Mapping[str, float], floors: Mapping[str, float], bootstrap: Bootstrap,
                 key: str, equivalence: bool = False,
                 expected: Mapping[str, tuple[float, float]] | None = None) -> PairedResult:
    """The candidate's paired difference from fp32 on their common images.

    ``expected``: a documented collapse's stated ranges of the difference per metric (:func:`_range_verdict`),
    judged instead of the documented delta, two-sided, with no floors (a collapse keeps less than any floor).

    Deltas are judged for every metric the seed documents a delta for (one-sided: fail when the interval
    lies wholly beyond ``max(documented worsening, 0) + tolerance``); floors say which share of fp32's
    value each metric must keep (fail when the interval of that share lies wholly below the floor).

    ``equivalence``: for an item that should compute the same thing as the reference (fp32 on another
    runtime), the burden of proof is reversed, as in an equivalence test (TOST): it passes only when the whole
    interval lies within ``+- tolerance``. A fault that hurts a few images badly and most not at all (RGB read
    as BGR: ISNet dMAE +0.0079, CI [+0.0006, +0.0163] on 100 ECSSD images) never gets its interval wholly
    beyond the allowance, but its interval does leave the equivalence band. A healthy backend's per-image
    differences are float reassociation (below 1e-6 in MAE), so its interval is a point at 0 on any number
    of images: the rule has no false alarm to trade against.
    """
    common = [stem for stem in candidate.stems if stem in set(reference.stems)]
    if not common:
        return PairedResult(0)
    ours, theirs = candidate.subset(common), reference.subset(common)
    weights = bootstrap.weights(len(common), key)
    ours_draws, theirs_draws = ours.weighted(weights), theirs.weighted(weights)
    ours_value, theirs_value = ours.results(), theirs.results()
    deltas = {}
    for metric in ours.metrics:
        delta = ours_value[metric] - theirs_value[metric]
        low, high = metric_interval(metric, ours, weights, bootstrap, ours_draws[metric] - theirs_draws[metric], theirs)
        documented = documented_delta.get(metric)
        if expected is not None and metric in expected and metric in tolerance:
            deltas[metric] = _range_verdict(metric, float(delta), (float(low), float(high)), expected[metric],
                                            tolerance[metric], bootstrap.confidence)
            continue
        if documented is None or metric not in tolerance:
            deltas[metric] = MetricVerdict(metric, delta, (low, high), None, "not judged (no documented delta)", True)
            continue
        if equivalence:
            allowance = tolerance[metric]
            passed = bool(-allowance <= low and high <= allowance)
            allowed = f"equivalent to fp32: the whole interval within +-{allowance:.4g}"
            reason = "" if passed else (f"{metric}: {delta:+.4f} vs fp32, {bootstrap.confidence:.0%} CI "
                                        f"[{low:+.4f}, {high:+.4f}] is not within +-{allowance:g} of the same "
                                        "model on the reference runtime")
            deltas[metric] = MetricVerdict(metric, delta, (low, high), documented, allowed, passed, reason)
            continue
        allowance = allowed_worsening(metric, documented, tolerance)
        worse_low = min(float(worse_by(metric, low)), float(worse_by(metric, high)))
        passed = bool(worse_low <= allowance)
        direction = "+" if metric in LOWER_IS_BETTER else "-"
        allowed = f"worse than fp32 by at most {allowance:.4g} ({direction} is worse; seed: {documented:+g})"
        reason = "" if passed else (f"{metric}: {delta:+.4f} vs fp32, {bootstrap.confidence:.0%} CI "
                                    f"[{low:+.4f}, {high:+.4f}] is wholly worse than the seed's {documented:+g} "
                                    f"+ tolerance {tolerance[metric]:g}")
        deltas[metric] = MetricVerdict(metric, delta, (low, high), documented, allowed, passed, reason)
    kept = {}
    for metric, floor in floors.items():
        if metric not in ours_value:
            continue
        if metric in LOWER_IS_BETTER:  # the share kept of a lower-is-better metric is fp32 / item
            share, draws = theirs_value[metric] / ours_value[metric], theirs_draws[metric] / ours_draws[metric]
        else:
            share, draws = ours_value[metric] / theirs_value[metric], ours_draws[metric] / theirs_draws[metric]
        low, high = bootstrap.percentile(draws)
        passed = bool(high >= floor)
        reason = "" if passed else (f"{metric}: keeps {share:.2%} of fp32 ({bootstrap.confidence:.0%} CI "
                                    f"[{low:.2%}, {high:.2%}]), floor {floor:.0%}")
        kept[metric] = MetricVerdict(metric, float(share), (float(low), float(high)), floor,
                                     f"keeps >= {floor:.0%} of fp32", passed, reason)
    return PairedResult(len(common), deltas, kept)


def documented_delta(model: Model, item: Item, dataset: str) -> dict[str, float]:
    """The seed's difference between this precision's row and the fp32 row (summary tables), per metric.

    A precision the seed has no row for (int8_dynamic), a documented collapse (``expected_failure``, judged by its
    own stated ranges instead) and an fp32 row measured elsewhere (``paired_baseline: false``, e.g. a training
    repository's own mIoU) document no acceptable loss: 0 is expected.
    """
    rows = [r for r in model.documented_rows(item.variant, dataset) if r.table == "summary"]
    fp32 = [r for r in model.documented_rows(item.reference.variant, dataset) if r.table == "summary"]
    if not fp32:
        return {}
    base = fp32[0]
    if not rows or rows[0].expected_failure or not base.paired_baseline:
        return {metric: 0.0 for metric in base.metrics}
    row = rows[0]
    return {metric: value - base.metrics[metric] for metric, value in row.metrics.items() if metric in base.metrics}
