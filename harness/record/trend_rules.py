"""The trend's rules for one row (an item on a dataset) in two runs: what changed, and whether for the worse.

:func:`harness.record.comparison.compare` applies them to every row two runs share, each adding
:class:`Finding` s to a :class:`Trend`: each check's outcome (a new failure or error, lost coverage: a check that
passed or failed now skipped or xfail; fixes; :func:`compare_outcomes`); outputs that changed on the shared
images beyond the golden budget, and metrics whose *paired* difference between the two runs on the shared images
lies wholly beyond the case's tolerance (the same bootstrap as the paired fp32 comparison; older records without
per-image values fall back to the older run's marginal interval, and say so; :func:`compare_accuracy`); the other
judged figures (conformance of the build and of the deployed session, paired differences from fp32, a documented
collapse's like any other's; :func:`compare_judged_figures`); latencies and ratios that moved
(:func:`compare_latencies`). The run-level questions (which runs compare, what vanished) are
:mod:`harness.record.comparison`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.case_base import LOWER_IS_BETTER
from ..judge.judgement import GOLDEN_FP32_BUDGET, Bootstrap
from ..judge.metrics import Scores
from .per_image import PerImage

#: A latency median this much slower than the compared run's is reported as a regression (a burst of host load on a
#: shared 2-core machine has slowed a benchmark by 1.7x: smaller moves are left to the same-run ratio gates).
LATENCY_MOVE = 0.75
#: A speed-up ratio this much lower than the compared run's is reported as a regression.
RATIO_MOVE = 0.15
#: Two runs' maps of one image differ when their thumbnails do by more than this MAE: the fp32 golden budget (the
#: same network on another machine, stored in 8 bits), which is all that may separate two runs of an unchanged item.
OUTPUTS_BUDGET = GOLDEN_FP32_BUDGET.mae
#: What two runs of an unchanged item's conformance figures (per-image MAE mean and worst, worst max |diff|) may differ
#: by: the fp32 golden budget (the same network on another machine, stored in 8 bits).
FIGURE_MOVE = {"mae_mean": GOLDEN_FP32_BUDGET.mae, "mae_worst": GOLDEN_FP32_BUDGET.mae_worst,
               "max_abs_worst": GOLDEN_FP32_BUDGET.max_abs}
#: The conformance figures a row's checks judge, where they sit and how a trend names them: the build against its
#: reference, the deployed session against fp32 and against the build's exact arithmetic.
CONFORMANCE_FIGURES = ((("conformance",), "conformance"), (("deployment", "conformance"), "deployed conformance"),
                       (("deployment", "vs_exact"), "deployed kernels vs the exact build"))
#: The paired differences from fp32 a row's checks judge: the build's and the deployed session's.
PAIRED_FIGURES = ((("vs_fp32",), "vs fp32"), (("deployment", "vs_fp32"), "deployed vs fp32"))
#: Outcomes of a check that fail the run.
FAILURES = ("failed", "error")
#: Outcomes of a check that judge nothing, or under which a failure no longer fails the run.
UNJUDGED = ("skipped", "xfail", "xpass")


def row_name(row: Mapping[str, Any]) -> str:
    """How a finding names a row: ``<item> on <dataset>``."""
    return f"{row['item']} on {row['dataset']}"


def not_comparable(new: Mapping[str, Any], old: Mapping[str, Any]) -> str | None:
    """Why two rows of one item and dataset cannot be compared (None when they can): other weights, or no image in
    common (by name where both rows kept per-image records, else by count)."""
    if new.get("weights") and old.get("weights") and new["weights"] != old["weights"]:
        return f"weights changed: {old['weights']} -> {new['weights']}"
    if new.get("per_image") and old.get("per_image"):
        ours, theirs = new["per_image"]["stems"], old["per_image"]["stems"]
        if set(ours).isdisjoint(theirs):
            return f"different images: 0 shared ({len(theirs)} -> {len(ours)} scored)"
        return None
    if new.get("images") != old.get("images"):
        return f"different images: {old.get('images')} -> {new.get('images')} images"
    return None


@dataclass(frozen=True)
class Finding:
    """One line of a trend, with the model it concerns (its plot marks the night)."""

    model: str
    text: str


@dataclass
class Trend:
    """What changed between two runs: ``worse`` decides the exit status; with ``--fail-on-change``, ``changes`` do.

    ``changed``: outputs that changed, neither better nor worse by themselves; ``notes``: what is no change
    (paired differences within tolerance, maps that differ within the golden budget) or was not compared, and why.
    """

    against: str
    worse: list[Finding] = field(default_factory=list)
    better: list[Finding] = field(default_factory=list)
    changed: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    same: int = 0
    images: int = 0
    images_changed: int = 0

    @property
    def changes(self) -> list[Finding]:
        return [*self.worse, *self.better, *self.changed]

    def lines(self) -> list[str]:
        out = [f"against {self.against}:"]
        for tag, findings in (("WORSE", self.worse), ("better", self.better), ("change", self.changed),
                              ("note", self.notes)):
            out += [f"  {tag:<6} {finding.text}" for finding in findings]
        outputs = f"outputs of {self.images_changed} of {self.images} images changed" if self.images else ""
        if not self.changes:
            out.append(f"  no change beyond intervals and thresholds ({self.same} rows compared"
                       f"{'; ' + outputs if outputs else ''})")
        elif outputs:
            out.append(f"  {outputs} beyond the golden budget (MAE {OUTPUTS_BUDGET:g})")
        return out


@dataclass(frozen=True)
class Paired:
    """One metric of one row in two runs on the same images: before, after, and the interval of the difference."""

    metric: str
    before: float
    after: float
    interval: tuple[float, float]

    @property
    def delta(self) -> float:
        return self.after - self.before

    def verdict(self, tolerance: float | None) -> str | None:
        """``worse`` / ``better`` when the interval lies wholly beyond ``tolerance`` on that side, as the paired fp32
        comparison judges (both sides here: a night that moves a lot either way changed what the model does)."""
        if tolerance is None:
            return None
        sign = 1.0 if self.metric in LOWER_IS_BETTER else -1.0
        low, high = sorted(sign * bound for bound in self.interval)
        return "worse" if low > tolerance else "better" if high < -tolerance else None

    @property
    def difference(self) -> str:
        """The paired difference with its interval, e.g. ``+0.0033 [+0.0021, +0.0046]``."""
        return f"{self.delta:+.4f} [{self.interval[0]:+.4f}, {self.interval[1]:+.4f}]"


def _differs(ours: PerImage, theirs: PerImage) -> bool:
    """Whether any kept metric value of any image differs (else every paired difference is exactly 0)."""
    values = any(not np.array_equal(v, theirs.values.get(m)) for m, v in ours.values.items())
    return values or (ours.confusion is not None and not np.array_equal(ours.confusion, theirs.confusion))


def _paired_metrics(row: Mapping[str, Any], ours: PerImage, theirs: PerImage) -> dict[str, Paired]:
    """Every metric of the row that both runs kept per image, paired on the same images with the machinery of the
    paired fp32 comparison (95%, 1000 resamples, as the suite's defaults): bootstrap-t of the mean difference, mIoU
    by the percentile interval of its resamples."""
    bootstrap = Bootstrap()
    weights = bootstrap.weights(len(ours.stems), f"trend/{row_name(row)}") if _differs(ours, theirs) else None
    paired = {}
    for metric in row.get("metrics", {}):
        if metric in ours.values and metric in theirs.values:
            after, before = ours.values[metric].astype(np.float64), theirs.values[metric].astype(np.float64)
            interval = (0.0, 0.0) if weights is None else bootstrap.studentised(after - before, weights)
            paired[metric] = Paired(metric, float(before.mean()), float(after.mean()), interval)
        elif metric == "miou" and ours.confusion is not None and theirs.confusion is not None:
            new, old = (Scores("segmentation", ours.stems, {"confusion": confusion})
                        for confusion in (ours.confusion, theirs.confusion))
            interval = (0.0, 0.0) if weights is None else bootstrap.percentile(
                new.weighted(weights)["miou"] - old.weighted(weights)["miou"])
            paired[metric] = Paired(metric, old.results()["miou"], new.results()["miou"], interval)
    return paired


def _outputs(trend: Trend, row: Mapping[str, Any], ours: PerImage, theirs: PerImage) -> bool:
    """Whose maps changed on the shared images: beyond the golden budget by their thumbnails' MAE (0 where the 8-bit
    maps are identical). Returns whether any did."""
    differ = np.any(ours.hashes != theirs.hashes, axis=1)
    mae = np.abs(ours.thumbnails.astype(np.float64) - theirs.thumbnails).mean(axis=(1, 2)) / 255.0
    mae = np.where(differ, mae, 0.0)
    changed = mae > OUTPUTS_BUDGET
    count, side = len(ours.stems), ours.thumbnails.shape[-1]
    trend.images += count
    trend.images_changed += int(changed.sum())
    if changed.any():
        worst = int(np.argmax(mae))
        trend.changed.append(Finding(row["model"], (
            f"{row_name(row)}: outputs of {int(changed.sum())} of {count} images changed (largest MAE {mae[worst]:.4f} "
            f"on image {ours.stems[worst]}; MAE of {side}x{side} thumbnails, a lower bound of the maps', against the "
            f"golden budget {OUTPUTS_BUDGET:g})")))
    elif differ.any():
        trend.notes.append(Finding(row["model"], (
            f"{row_name(row)}: the 8-bit maps of {int(differ.sum())} of {count} images differ, all within the golden "
            f"budget (largest thumbnail MAE {mae.max():.4f}): no change")))
    return bool(changed.any())


def _judge_paired(trend: Trend, row: Mapping[str, Any], paired: dict[str, Paired], images: int,
                  outputs_changed: bool) -> None:
    """Metrics whose paired interval lies wholly beyond the row's tolerance are worse or better; the others' deltas
    are noted when something moved (outputs, another metric, or their own interval excludes 0)."""
    tolerance = row.get("tolerance", {})
    within = []
    for result in paired.values():
        limit = tolerance.get(result.metric)
        verdict = result.verdict(limit)
        if verdict is None:
            within.append(result)
            continue
        text = (f"{row_name(row)}: {result.metric} {result.before:.4f} -> {result.after:.4f}, paired difference on "
                f"{images} images {result.difference}, wholly beyond the tolerance {limit:g}")
        (trend.worse if verdict == "worse" else trend.better).append(Finding(row["model"], text))
    shifted = any(low > 0 or high < 0 for low, high in (r.interval for r in within))
    if within and (outputs_changed or shifted or len(within) < len(paired)):
        cells = [f"{r.metric} {r.difference} (" + (f"tolerance {tolerance[r.metric]:g})" if r.metric in tolerance
                                                    else "no tolerance)") for r in within]
        trend.notes.append(Finding(row["model"], f"{row_name(row)}: paired differences on {images} images, "
                                                 f"within tolerance: {', '.join(cells)}"))


def _marginal(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any], metrics: Sequence[str], why: str) -> None:
    """Metrics without paired values: moved outside the older run's interval, which the image-to-image spread widens
    far beyond what pairing sees (labelled with ``why``)."""
    for metric in metrics:
        value = new["metrics"][metric]
        if metric not in old.get("metrics", {}) or metric not in old.get("ci", {}):
            continue
        before, (low, high) = old["metrics"][metric], old["ci"][metric]
        if low <= value <= high or value == before:
            continue
        worse = value > before if metric in LOWER_IS_BETTER else value < before
        text = (f"{row_name(new)}: {metric} {before:.4f} -> {value:.4f}, outside the previous interval "
                f"[{low:.4f}, {high:.4f}] ({why})")
        (trend.worse if worse else trend.better).append(Finding(new["model"], text))


def _measured(row: Mapping[str, Any]) -> bool:
    """Whether a row has metrics or output fingerprints (a seeded item's row: fingerprints alone)."""
    return bool(row.get("metrics") or row.get("per_image"))


def compare_accuracy(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """Outputs and metrics of one row against the older run's, paired on the images both scored (a seeded item's
    row: its outputs alone)."""
    if not _measured(new) or not _measured(old):
        return
    reason = not_comparable(new, old)
    if reason is not None:
        trend.notes.append(Finding(new["model"], f"{row_name(new)}: metrics and outputs not compared: {reason}"))
        return
    metrics = list(new.get("metrics", {}))
    ours, theirs = PerImage.from_row(new), PerImage.from_row(old)
    if ours is None or theirs is None:
        _marginal(trend, new, old, metrics, "marginal check: a record without per-image values")
        return
    known = set(theirs.stems)
    shared = [stem for stem in ours.stems if stem in known]
    if len(shared) < max(len(ours.stems), len(theirs.stems)):
        trend.notes.append(Finding(new["model"], f"{row_name(new)}: compared on the {len(shared)} images both runs "
                                                 f"scored ({len(theirs.stems)} -> {len(ours.stems)})"))
    same_images = len(shared) == len(ours.stems) == len(theirs.stems)
    ours, theirs = ours.subset(shared), theirs.subset(shared)
    outputs_changed = _outputs(trend, new, ours, theirs)
    paired = _paired_metrics(new, ours, theirs)
    _judge_paired(trend, new, paired, len(shared), outputs_changed)
    if same_images:
        _marginal(trend, new, old, [m for m in metrics if m not in paired],
                  "marginal check: no per-image value of this metric")


def _at(row: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    """The section of a row at ``path`` (``("deployment", "conformance")``), empty where the row has none."""
    for key in path:
        row = row.get(key) or {}
    return row


def _moved(before: float, after: float, limit: float) -> bool:
    """Whether a figure moved by more than ``limit``, or became or stopped being a NaN."""
    return math.isnan(before) != math.isnan(after) or abs(after - before) > limit


def _conformance_moves(trend: Trend, row: Mapping[str, Any], label: str, new: Mapping[str, Any],
                       old: Mapping[str, Any]) -> None:
    """Conformance figures that moved by more than two runs of an unchanged item may (:data:`FIGURE_MOVE`): further
    from the reference is worse, nearer better; on the same number of images only."""
    if not new or not old:
        return
    if new.get("images") != old.get("images"):
        trend.notes.append(Finding(row["model"], f"{row_name(row)}: {label} not compared: {old.get('images')} -> "
                                                 f"{new.get('images')} images"))
        return
    for figure, limit in FIGURE_MOVE.items():
        before, after = old.get(figure), new.get(figure)
        if before is None or after is None or not _moved(before, after, limit):
            continue
        text = (f"{row_name(row)}: {label} {figure} {before:.4g} -> {after:.4g} (moved by more than {limit:g}, "
                "what may separate two runs of an unchanged item)")
        (trend.worse if math.isnan(after) or after > before else trend.better).append(Finding(row["model"], text))


def _paired_moves(trend: Trend, row: Mapping[str, Any], label: str, new: Mapping[str, Any],
                  old: Mapping[str, Any]) -> None:
    """Paired differences from fp32 (metric -> value and interval) that left the older run's interval: towards the
    metric's worse side is worse (a documented collapse deepening too), towards its better side better."""
    for metric, entry in old.items():
        if metric not in new:
            continue
        before, after, (low, high) = entry["value"], new[metric]["value"], entry["ci"]
        if after == before or low <= after <= high:
            continue
        worse = math.isnan(after) or (after > before if metric in LOWER_IS_BETTER else after < before)
        text = (f"{row_name(row)}: {label} {metric} {before:+.4f} -> {after:+.4f}, outside the previous interval "
                f"[{low:+.4f}, {high:+.4f}]")
        (trend.worse if worse else trend.better).append(Finding(row["model"], text))


def compare_judged_figures(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """The figures a row's checks judge besides its metrics (:data:`CONFORMANCE_FIGURES`, :data:`PAIRED_FIGURES`),
    a documented collapse's like any other's. The deployed session's only on the same int8 path: another CPU's fused
    int8 kernels compute otherwise (ISNet: mean MAE 0.0053 on VNNI, 0.0120 on AVX2)."""
    before, after = _at(old, ("deployment",)).get("int8_path"), _at(new, ("deployment",)).get("int8_path")
    deployed = before is None or after is None or before == after
    if not deployed:
        trend.notes.append(Finding(new["model"], f"{row_name(new)}: deployed figures not compared: int8 path {before} "
                                                 f"-> {after}"))
    for path, label in CONFORMANCE_FIGURES:
        if deployed or path[0] != "deployment":
            _conformance_moves(trend, new, label, _at(new, path), _at(old, path))
    for path, label in PAIRED_FIGURES:
        if deployed or path[0] != "deployment":
            _paired_moves(trend, new, label, _at(new, path).get("delta", {}), _at(old, path).get("delta", {}))


def _outcome_change(before: str, after: str) -> tuple[str, str]:
    """How one check's outcome moved (``worse``, ``better`` or ``changed``: the :class:`Trend` list) and the words for
    it. A new failure is worse, and so is lost coverage: a check that passed or failed and is now skipped, or whose
    failure an xfail mark hides; a fix, or a check judged again and passing, is better."""
    if after in FAILURES and before not in FAILURES:
        return "worse", f"new {'failure' if after == 'failed' else 'error'} (was {before})"
    if after in UNJUDGED and before not in UNJUDGED:
        return "worse", f"lost coverage: now {after} (was {before})"
    if after == "passed":
        return "better", f"fixed (was {before})" if before in FAILURES else f"judged again: passed (was {before})"
    return "changed", f"outcome {before} -> {after}"


def compare_outcomes(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any], seen: set[tuple[str, str]]) -> None:
    """Each check's outcome against the older run's (:func:`_outcome_change`), once per item and check (every row
    of an item carries the item's outcomes)."""
    for check, outcome in new.get("outcomes", {}).items():
        before = old.get("outcomes", {}).get(check)
        if (new["item"], check) in seen or before is None or before == outcome:
            continue
        seen.add((new["item"], check))
        kind, text = _outcome_change(before, outcome)
        getattr(trend, kind).append(Finding(new["model"], f"{new['item']} {check}: {text}"))


def compare_latencies(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """Latency medians and same-run ratios that moved (only ever between runs on the same machine)."""
    name = row_name(new)
    for kind, before in old.get("latency_ms", {}).items():
        value = new.get("latency_ms", {}).get(kind)
        if value is None or kind.endswith("(eval run)"):
            continue
        change = value / before - 1.0
        if abs(change) > LATENCY_MOVE:
            text = f"{name}: {kind} latency {before:.1f} -> {value:.1f} ms ({change:+.0%})"
            (trend.worse if change > 0 else trend.better).append(Finding(new["model"], text))
    for kind, entry in old.get("performance", {}).items():
        value = new.get("performance", {}).get(kind, {}).get("ratio")
        if value is None:
            continue
        before = entry["ratio"]
        change = (value - before) / abs(before) if before else 0.0
        lower_is_worse = kind.startswith("speedup")
        if abs(change) > RATIO_MOVE:
            worse = change < 0 if lower_is_worse else change > 0
            text = f"{name}: {kind} {before:.3g} -> {value:.3g}"
            (trend.worse if worse else trend.better).append(Finding(new["model"], text))
    compare_sustained(trend, new, old)


def compare_sustained(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """The sustained runs' judged figures night over night: the item's p50 / p90 / p99 moved like a latency median
    (:data:`LATENCY_MOVE`), memory growth per 1000 calls or the drift probe's move by more than half the gate's bound
    (or to a NaN)."""
    before, after = old.get("performance", {}).get("sustained"), new.get("performance", {}).get("sustained")
    if not before or not after:
        return
    name, model = row_name(new), new["model"]
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        was, now = before.get("item", {}).get(key), after.get("item", {}).get(key)
        if was and now and abs(now / was - 1.0) > LATENCY_MOVE:
            text = f"{name}: sustained {key[:3]} {was:.1f} -> {now:.1f} ms ({now / was - 1.0:+.0%})"
            (trend.worse if now > was else trend.better).append(Finding(model, text))
    for gate, was, now in (("memory", before.get("rss_mb", {}).get("growth_per_1000"),
                            after.get("rss_mb", {}).get("growth_per_1000")),
                           ("drift", before.get("drift_max_abs"), after.get("drift_max_abs"))):
        bound = after.get("gates", {}).get(gate, {}).get("bound")
        if was is None or now is None or bound is None:
            continue
        what = "memory growth per 1000 calls (MB)" if gate == "memory" else "drift of the fixed image's output"
        if math.isnan(now) and not math.isnan(was):
            trend.worse.append(Finding(model, f"{name}: sustained {what} {was:.3g} -> NaN"))
        elif not math.isnan(was) and abs(now - was) > max(bound, 1e-12) / 2:
            text = f"{name}: sustained {what} {was:.3g} -> {now:.3g} (bound {bound:g})"
            (trend.worse if now > was else trend.better).append(Finding(model, text))
