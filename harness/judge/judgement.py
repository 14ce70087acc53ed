"""Every verdict the checks give, decided in one place.

* :class:`Comparison`: maps + budget -> per-image stats, violations, worst image, verdict. Conformance
  (an item against fp32 or its source), regression (against golden masks) and fault localisation
  (each candidate build) all judge with it.
* :func:`conformance_budget`: which budget applies, for every pairing the checks make.
* Accuracy acceptance with intervals (:func:`judge_documented`, :func:`judge_paired`): a metric is
  judged against the seed's value with a bootstrap interval over images (:class:`Bootstrap`), and every non-fp32
  item also by its *paired* difference from the fp32 item on exactly the same images (the same
  resamples for both), against the seed's documented difference for that precision and against
  MLPerf-style floors. Pairing removes the image-to-image spread that a subset brings (u2netp's MAE
  is 0.027 on every 10th ECSSD image and 0.041 on all of them), which is what lets a bad int8 build
  be caught on any subset size while a subset alone never fails.

Sidedness: against the documented value the check is two-sided (a reproduction that lands far on
the good side is as suspect as one on the bad side); against fp32 it is one-sided, failing only when
the item is confidently *worse* than the seed says the precision costs, plus the tolerance, since an
int8 build that happens to score better than fp32 on a subset is no regression. A documented collapse
(``expected_failure``) is judged by the bounds its case states (``expected_loss``: :func:`loss_violations`, the
``expected`` ranges of :func:`judge_paired`), two-sided: it passes where it reproduces the stated loss and fails
when the loss deepens or vanishes. No verdict here is an expected failure: every one can fail.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..data.case_base import LOWER_IS_BETTER
from ..data.case_bounds import Budget
from ..data.cases import Item
from .metrics import Scores, conformance

#: fp32 against its own source (PyTorch eager or the graph as shipped): float reassociation only.
SOURCE_BUDGET = Budget(mae=1e-4, mae_worst=1e-4, max_abs=5e-3,
                       why="the same fp32 network; only float summation order may differ")
#: fp32 on another backend (OpenVINO, PyTorch, a device, a wrapped runtime) against the fp32 reference on ONNX
#: Runtime: the same fp32 graph, so only float reassociation and each backend's own exp / sigmoid / resize kernels.
#: That is the difference SOURCE_BUDGET bounds, and it gets the same figures. Measured on 4 ECSSD / portrait and 4
#: synthetic images (AVX-512 VNNI): OpenVINO and torch against ONNX Runtime, per-image MAE <= 5e-7 and max|d|
#: <= 4.6e-5 (u2netp, OpenVINO) for isnet, u2netp, unet3p and seeded modnet (5.6e-5, the largest). An AVX2 CPU
#: halves the vector width, which changes the summation order, not its error's size (float32 epsilon 1.2e-7 times
#: the square root of a few thousand terms per output): the budget is a hundred times the largest measurement,
#: while a real fault (channels swapped, a one-pixel shift) costs a per-image MAE of 0.005 or more.
BACKEND_FP32_BUDGET = Budget(mae=SOURCE_BUDGET.mae, mae_worst=SOURCE_BUDGET.mae_worst, max_abs=SOURCE_BUDGET.max_abs,
                             why="the same fp32 graph on another backend: float reassociation and kernel "
                                 "approximations")
#: The fp32 reference against its golden masks: 8-bit storage plus CPU-kernel differences between machines.
GOLDEN_FP32_BUDGET = Budget(mae=3e-3, mae_worst=3e-3, max_abs=0.05,
                            why="8-bit golden storage and cross-machine float differences")
#: 8-bit storage rounds a golden map by at most half a level; every bound against golden masks is widened by it.
QUANTISATION = 0.5 / 255.0


class BudgetError(LookupError):
    """No budget is defined for a pairing the checks need; the message says where to add it."""


def conformance_budget(item: Item, against: str, trained: bool) -> Budget:
    """The budget for comparing ``item``'s maps with ``against`` (``source``, ``fp32`` or ``golden``).

    ``trained``: whether the item runs trained weights (a device runtime's compiled model counts as
    trained). Seeded weights magnify quantisation error through min-max normalisation of near-flat maps,
    so their fp16 / int8 items take the model's ``seeded_budgets``, measured with exact int8 arithmetic
    (the same on every instruction set).
    """
    precision = item.variant.precision
    if precision == "fp32":
        if against == "source":
            return SOURCE_BUDGET
        if against == "golden":
            return GOLDEN_FP32_BUDGET
        if against == "fp32":
            return BACKEND_FP32_BUDGET
        raise ValueError(f"{item.id}: an fp32 item is compared with its source, fp32 or golden masks, not {against!r}")
    if against not in ("fp32", "golden"):
        raise ValueError(f"{item.id}: a {precision} item is compared with fp32 or golden masks, not {against!r}")
    budgets = item.model.budgets if trained else item.model.seeded_budgets
    if precision not in budgets:
        which = "budgets" if trained else "seeded_budgets"
        raise BudgetError(f"{item.id}: the case file gives no {which}.{precision} for model {item.model.name}")
    return budgets[precision]


@dataclass(frozen=True)
class Comparison:
    """Candidate maps against reference maps under a budget (widened by ``slack``), image by image.

    ``mean_interval``: judge the mean per-image MAE by its bootstrap-t interval over the compared images, failing only
    when the whole interval lies above the budget, as the paired verdicts do. Where the per-image error is
    heavy-tailed (saturating int8 kernels: a few images carry most of it), a subset's plain mean can exceed a bound
    that the full set's mean keeps (u2netp on an AVX2 CPU: 0.0209 on 10 images, 0.0144 on 100), so a plain mean bound
    would hold at one size and not another. A fault that moves every image (kernel noise) keeps a narrow interval
    and still fails on 4 images. The worst image and max|d| are judged per image either way, which holds on every
    subset of the images a bound was measured on.
    """

    budget: Budget
    per_image: dict[str, tuple[float, float]]
    slack: float = 0.0
    mean_interval: "Bootstrap | None" = None

    @classmethod
    def of(cls, candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], budget: Budget,
           slack: float = 0.0, mean_interval: "Bootstrap | None" = None) -> "Comparison":
        """Compare every image both sides have (by stem)."""
        per_image = {stem: conformance(map_, reference[stem]) for stem, map_ in candidate.items() if stem in reference}
        return cls(budget, per_image, slack, mean_interval)

    @cached_property
    def mean_ci(self) -> tuple[float, float] | None:
        """The interval of the mean per-image MAE that the mean is judged by (None: the plain mean is)."""
        if self.mean_interval is None or not self.per_image:
            return None
        stems = sorted(self.per_image)
        values = np.array([self.per_image[s][0] for s in stems], dtype=np.float64)
        weights = self.mean_interval.weights(len(values), "mean-mae|" + "|".join(stems))
        return self.mean_interval.studentised(values, weights)

    @property
    def images(self) -> int:
        return len(self.per_image)

    @property
    def worst(self) -> str | None:
        """The image with the largest MAE (None when no image was compared)."""
        return max(self.per_image, key=lambda s: self.per_image[s][0]) if self.per_image else None

    @property
    def stats(self) -> dict[str, float]:
        if not self.per_image:
            return {}
        maes = [mae for mae, _ in self.per_image.values()]
        stats = {"images": len(maes), "mae_mean": float(np.mean(maes)), "mae_worst": float(max(maes)),
                 "max_abs_worst": float(max(m for _, m in self.per_image.values()))}
        interval = self.mean_ci
        if interval is not None:
            stats["mae_mean_ci_low"], stats["mae_mean_ci_high"] = float(interval[0]), float(interval[1])
        return stats

    @property
    def violations(self) -> list[str]:
        if not self.per_image:
            return ["no image was run by both"]
        stats, budget, slack = self.stats, self.budget, self.slack
        found = []
        if "mae_mean_ci_low" in stats:
            if not stats["mae_mean_ci_low"] <= budget.mae + slack:  # written so that a NaN violates
                found.append(f"mean per-image MAE {stats['mae_mean']:.4g}, its whole "
                             f"{self.mean_interval.confidence:.0%} interval [{stats['mae_mean_ci_low']:.4g}, "
                             f"{stats['mae_mean_ci_high']:.4g}] above the budget {budget.mae}")
        elif not stats["mae_mean"] <= budget.mae + slack:  # written so that a NaN violates
            found.append(f"mean per-image MAE {stats['mae_mean']:.4g} > budget {budget.mae}")
        if not stats["mae_worst"] <= budget.mae_worst + slack:
            found.append(f"worst image {self.worst}: MAE {stats['mae_worst']:.4g} > budget {budget.mae_worst}")
        over = [stem for stem, (_, max_abs) in self.per_image.items() if not max_abs <= budget.max_abs + slack]
        if over:
            found.append(f"{len(over)} images with max|d| > {budget.max_abs} (worst {stats['max_abs_worst']:.4g}: "
                         f"{', '.join(over[:5])})")
        return found

    @property
    def passed(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        if not self.per_image:
            return "no image compared"
        s = self.stats
        return (f"MAE mean {s['mae_mean']:.4g}, worst {s['mae_worst']:.4g}; max|d| {s['max_abs_worst']:.4g} "
                f"({s['images']} images)")


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap intervals over images: ``resamples`` draws, two-sided ``confidence``.

    Per-image metric values are strongly skewed (most images are easy, a few very hard: u2netp's per-image
    MAE on ECSSD has skewness 5.7), and a subset that misses the hard ones gets a narrow, optimistic
    percentile interval. Measured on ECSSD-300 (200 random subsets each, any of MAE / avg F / S missing
    the full set's value by more than the tolerance), percentile bootstrap: 15% of subsets of 30 (u2netp)
    and 6% (ISNet); the studentised bootstrap (bootstrap-t) used here for every metric that is a mean of
    per-image values: 8.5% / 3.5% at 30 images, 4% / 3% at 50 and 2.5% / 2% at 100, and the evenly
    spread subset of 50 the harness would pick still misses u2netp's avg F. Metrics that are not such a
    mean (max F, max E, mIoU) take the percentile interval. Fewer images than ``Acceptance.min_images``
    (100) make no interval honest: such a row is reported, not judged against the seed's value.
    """

    confidence: float = 0.95
    resamples: int = 1000

    def weights(self, images: int, key: str) -> np.ndarray:
        """Resample counts (resamples x images), seeded from ``key`` so a run is repeatable bit for bit."""
        rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
        return rng.multinomial(images, np.full(images, 1.0 / images), size=self.resamples).astype(np.float64)

    @property
    def _tails(self) -> tuple[float, float]:
        tail = (1.0 - self.confidence) / 2.0
        return tail, 1.0 - tail

    def percentile(self, samples: np.ndarray) -> tuple[float, float]:
        """The percentile interval of resampled statistics."""
        finite = samples[np.isfinite(samples)]
        if finite.size == 0:
            return float("nan"), float("nan")
        low, high = np.quantile(finite, self._tails)
        return float(low), float(high)

    def studentised(self, values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
        """The bootstrap-t interval of the mean of per-image ``values`` under resample ``weights``."""
        n = len(values)
        mean = float(values.mean())
        if n < 2:
            return mean, mean
        se = float(values.std(ddof=1)) / np.sqrt(n)
        if se == 0.0:
            return mean, mean
        means = weights @ values / n
        variances = np.maximum(weights @ (values * values) / n - means * means, 0.0) * n / (n - 1)
        ses = np.sqrt(variances / n)
        ses = np.where(ses > 0, ses, se * 1e-3)  # a resample of one repeated image has no spread: a large t
        t_low, t_high = np.quantile((means - mean) / ses, self._tails)
        # On a handful of images the t statistic is erratic (4 synthetic images gave avg F [-2.7, 2.0]); no
        # resampled mean can leave the range of the per-image values, so neither does the interval.
        lowest, highest = float(values.min()), float(values.max())
        return max(mean - float(t_high) * se, lowest), min(mean - float(t_low) * se, highest)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one accuracy row: what was measured, its interval, what it was judged against, the verdict."""

    metric: str
    value: float
    interval: tuple[float, float]
    expected: float | None
    allowed: str
    passed: bool
    reason: str = ""
    judged: bool = True

    def as_dict(self) -> dict[str, object]:
        # Plain Python types: the bootstrap's numpy scalars (np.bool_ above all) are not JSON.
        return {"value": float(self.value), "ci": [float(x) for x in self.interval],
                "expected": None if self.expected is None else float(self.expected), "allowed": self.allowed,
                "passed": bool(self.passed), "judged": bool(self.judged),
                **({"reason": self.reason} if self.reason else {})}


def worse_by(metric: str, value: float | np.ndarray) -> float | np.ndarray:
    """``value`` oriented so that positive means worse."""
    return value if metric in LOWER_IS_BETTER else -value


def allowed_worsening(metric: str, documented: float, tolerance: Mapping[str, float]) -> float:
    """How much worse than fp32 ``metric`` may be: the seed's documented loss (none if it documents a gain) plus
    the case's tolerance. The paired verdict and the sensitivity report's allowance both use it."""
    return max(float(worse_by(metric, documented)), 0.0) + tolerance[metric]


def metric_interval(metric: str, ours: Scores, weights: np.ndarray, bootstrap: Bootstrap, draws: np.ndarray,
              theirs: Scores | None = None) -> tuple[float, float]:
    """The interval of ``metric`` (of ``ours`` minus ``theirs`` when given, image by image)."""
    values = ours.per_image(metric)
    if values is not None and theirs is not None:
        values = values - theirs.per_image(metric)
    if values is not None:
        return bootstrap.studentised(values, weights)
    return bootstrap.percentile(draws)


def intervals(scores: Scores, bootstrap: Bootstrap, key: str) -> dict[str, tuple[float, float]]:
    """A bootstrap interval of every metric of ``scores``."""
    if len(scores) == 0:
        return {}
    weights = bootstrap.weights(len(scores), key)
    draws = scores.weighted(weights)
    return {metric: metric_interval(metric, scores, weights, bootstrap, values) for metric, values in draws.items()}


def judge_documented(scores: Scores, documented: Mapping[str, float], tolerance: Mapping[str, float],
                     bootstrap: Bootstrap, key: str, full_set: bool, min_images: int = 0) -> list[MetricVerdict]:
    """Each documented metric against the measurement: within ``tolerance`` on the full documented set,
    else inside the bootstrap interval widened by ``tolerance`` (two-sided); a subset of fewer than
    ``min_images`` images is reported with its interval but not judged (no interval is honest there)."""
    measured = scores.results()
    bounds = intervals(scores, bootstrap, key)
    verdicts = []
    for metric, expected in documented.items():
        if metric not in measured:
            continue
        value, tol, (low, high) = measured[metric], tolerance[metric], bounds[metric]
        if not full_set and len(scores) < min_images:
            allowed = f"not judged: {len(scores)} images, an interval needs at least {min_images}"
            verdicts.append(MetricVerdict(metric, value, (low, high), expected, allowed, True, judged=False))
            continue
        if full_set:
            passed = bool(abs(value - expected) <= tol)
            allowed = f"{expected:g} +- {tol:g} (whole documented set: reproduction)"
            reason = "" if passed else f"{metric} {value:.4f} differs from documented {expected:g} by more than {tol:g}"
        else:
            passed = bool(low - tol <= expected <= high + tol)
            allowed = f"documented {expected:g} within [{low - tol:.4f}, {high + tol:.4f}] (CI widened by {tol:g})"
            reason = "" if passed else (f"{metric} {value:.4f}, {bootstrap.confidence:.0%} CI [{low:.4f}, {high:.4f}] "
                                        f"+- {tol:g} excludes documented {expected:g}")
        verdicts.append(MetricVerdict(metric, value, (low, high), expected, allowed, passed, reason))
    return verdicts


def loss_violations(comparison: Comparison, bounds: tuple[float, float], slack: float = 0.0) -> list[str]:
    """A documented collapse's conformance (:class:`harness.data.cases.ExpectedLoss`): the mean per-image MAE against
    fp32 within its stated range (widened by ``slack``), so a deeper collapse fails, and so does its absence."""
    if not comparison.per_image:
        return ["no image was run by both"]
    mean, (low, high) = comparison.stats["mae_mean"], bounds
    if not np.isfinite(mean):
        return [f"mean per-image MAE is {mean}: not a number"]
    if mean > high + slack:
        return [f"mean per-image MAE {mean:.4g} is worse than the stated loss ({low:g} to {high:g}): the collapse "
                "deepened"]
    if mean < low - slack:
        return [f"mean per-image MAE {mean:.4g} is better than the stated loss ({low:g} to {high:g}): the collapse is "
                "gone; update the case's expected_loss (or drop the documented collapse)"]
    return []


