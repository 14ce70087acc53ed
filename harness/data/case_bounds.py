"""What a case judges by: conformance budgets, the seed's documented result rows and a documented collapse's stated
loss, acceptance rules, performance floors, structure bounds and the deployed-int8 loss per instruction set.

Each relaxation carries its why (with the image count it was measured on) and each range is refused when reversed,
so no bound can be loosened silently."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .case_base import NON_FP32, PRECISIONS, Strict, Variant, known_keys, ordered_bounds


class ExpectedLoss(Strict):
    """A documented collapse as a stated bound, judged pass/fail like any other verdict (never a pytest xfail).

    The collapsed item is judged by these ranges instead of the healthy budgets: it passes when its figures fall
    within them, fails when they are materially worse (the collapse deepened) or materially better (the collapse is
    gone, so the case must be updated), and an exception, a timeout or a NaN fails it as it fails any item.

    ``conformance_mae``: [low, high] of the mean per-image MAE against fp32 on every dataset (against the golden
    masks, made from fp32, too, widened by their 8-bit rounding). ``vs_fp32``: per metric, [low, high] of the paired
    difference item - fp32 on the same images, judged with the bootstrap interval of every paired verdict: it fails
    when that interval lies wholly outside the range widened by the case's tolerance. ``why``: what was measured,
    on how many images, and how the range was derived from it.
    """

    conformance_mae: tuple[float, float]
    vs_fp32: dict[str, tuple[float, float]]
    why: str

    @field_validator("conformance_mae")
    @classmethod
    def _conformance_range(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        return ordered_bounds(bounds, "conformance_mae")

    @field_validator("vs_fp32")
    @classmethod
    def _metric_ranges(cls, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not ranges:
            raise ValueError("vs_fp32: state the paired range of at least one documented metric")
        for metric, bounds in ranges.items():
            ordered_bounds(bounds, f"vs_fp32.{metric}")
        return ranges


class ResultRow(Strict):
    """One documented result row of a seed table."""

    precision: Literal["fp32", "fp16", "int8", "int8_dynamic"]
    calibration: Literal["max", "kl_divergence", "percentile"] | None = None
    runtime: str = Field(description="where the seed measured it: 'source' (the original code) or 'vacc'")
    dataset: str
    metrics: dict[str, float]
    table: str = "summary"
    note: str | None = None
    expected_failure: str | None = Field(
        None, description="a documented collapse, with its reason; judged by its expected_loss, never an xfail")
    expected_loss: ExpectedLoss | None = Field(
        None, description="the bounds a documented collapse is judged by (required with expected_failure)")
    paired_baseline: bool = Field(
        True, description="fp32 rows: whether it was measured like the precision rows (same data, same toolkit), so a "
                          "precision row's difference from it is that precision's documented cost")

    @model_validator(mode="after")
    def _calibration_only_for_int8(self) -> "ResultRow":
        if self.precision == "int8" and self.calibration is None:
            raise ValueError("an int8 row needs a calibration (max, kl_divergence or percentile)")
        if self.precision != "int8" and self.calibration is not None:
            raise ValueError(f"calibration {self.calibration!r} given for precision {self.precision!r}")
        if self.expected_failure and self.expected_loss is None:
            raise ValueError("expected_failure: a documented collapse needs expected_loss, the measured bounds it is "
                             "judged by (conformance_mae, vs_fp32, why): an expected loss without a bound cannot fail")
        if self.expected_loss is not None and not self.expected_failure:
            raise ValueError("expected_loss is given without expected_failure, the documented collapse it bounds")
        return self


class Budget(Strict):
    """Conformance budget of one precision against the fp32 reference on the same images.

    ``mae`` bounds the mean over images of the per-image MAE (what a seed row's dataset-level delta
    constrains); ``mae_worst`` and ``max_abs`` bound the single worst image, so one outlier is caught
    without a budget so tight that ordinary edge flips of int8 fail it.
    """

    mae: float = Field(gt=0, le=1)
    mae_worst: float = Field(gt=0, le=1)
    max_abs: float = Field(gt=0, le=1)
    why: str

    @model_validator(mode="after")
    def _worst_at_least_mean(self) -> "Budget":
        if self.mae_worst < self.mae:
            raise ValueError(f"mae_worst {self.mae_worst} is below the mean budget mae {self.mae}")
        return self


class Documented(Strict):
    """The seed's size figures; ``params_m_official`` when the official network really differs (with a note why)."""

    params_m: float | None = None
    flops_g: float | None = None
    params_m_official: float | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _override_explained(self) -> "Documented":
        if self.params_m_official is not None and not self.note:
            raise ValueError("params_m_official overrides the seed's figure and needs a note explaining why")
        return self


#: MLPerf's convention, where a case states no floors for a precision: the share of fp32's value a reduced precision
#: keeps on the same images (the shipped cases state the same: 0.995 for fp16, 0.99 for int8).
DEFAULT_FLOORS = {"fp16": 0.995, "int8": 0.99}
#: The metrics those default floors apply to, per task: the ones the shipped cases' floors name.
HEADLINE_METRICS = {"saliency": ("avg_f", "sm"), "segmentation": ("miou",), "matting": ("miou",)}


def _shares(metrics: dict[str, float], where: str) -> dict[str, float]:
    """Floors are shares of fp32's value: each in (0, 1], or the floor judges nothing (0) or fails every run (> 1)."""
    for metric, fraction in metrics.items():
        if not 0 < fraction <= 1:
            raise ValueError(f"{where}.{metric}: {fraction} is not a fraction in (0, 1]")
    return metrics


class Acceptance(Strict):
    """How accuracy rows are judged against the seed's values and against fp32 (see :mod:`harness.judge.judgement`).

    ``reproduction`` is the tolerance per metric for recipe rounding only: a run on the whole documented
    set must land within it; on a subset it widens the bootstrap interval. ``floors`` are MLPerf-style
    floors per precision: the share of the fp32 item's value a metric must keep on the same images.
    ``min_images``: a smaller subset is reported with its interval but not judged against the seed's value
    (the paired comparison with fp32 is judged at any size).
    """

    reproduction: dict[str, float]
    floors: dict[str, dict[str, float]] = Field(default_factory=dict)
    min_images: int = Field(100, ge=2,
                            description="fewest images a subset needs to be judged against documented values")

    def floors_for(self, precision: str, task: str) -> dict[str, float]:
        """The floors of ``precision``: the case's, else :data:`DEFAULT_FLOORS` on the task's headline metrics, so an
        item without a documented row is still judged against fp32 (fp32 itself has none)."""
        if precision == "fp32":
            return {}
        if precision in self.floors:
            return self.floors[precision]
        share = DEFAULT_FLOORS["fp16" if precision == "fp16" else "int8"]
        return {metric: share for metric in HEADLINE_METRICS[task]}

    @field_validator("floors")
    @classmethod
    def _fractions(cls, floors: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for precision, metrics in floors.items():
            if precision not in PRECISIONS or precision == "fp32":
                raise ValueError(f"floors: {precision!r} is not a non-fp32 precision ({', '.join(PRECISIONS[1:])})")
            _shares(metrics, f"floors.{precision}")
        return floors


class Performance(Strict):
    """Same-run latency ratios a model must meet (``pytest --benchmark-only`` fails an item that misses one).

    ``min_speedup_vs_fp32``: per precision, the least fp32-latency / item-latency ratio, both measured
    interleaved in one loop on the same runtime. ``max_pipeline_overhead``: the most the whole pipeline
    (preprocess, run, postprocess) may add over the bare runtime, as a fraction of the runtime's latency.
    """

    min_speedup_vs_fp32: dict[str, float] = Field(default_factory=dict)
    max_pipeline_overhead: float | None = Field(None, gt=0)
    note: str | None = None

    @field_validator("min_speedup_vs_fp32")
    @classmethod
    def _known_precisions(cls, floors: dict[str, float]) -> dict[str, float]:
        # A misspelt key would silently drop its gate from the collection: refuse it instead.
        known_keys(floors, NON_FP32, "a non-fp32 precision")
        return floors



def _percentile_ceilings(ceilings: dict[str, float]) -> dict[str, float]:
    """A misspelt percentile would silently drop its gate: refuse it, and a ceiling that passes nothing."""
    known_keys(ceilings, ("p90", "p99"), "a gated percentile")
    for name, ceiling in ceilings.items():
        if not ceiling > 1:
            raise ValueError(f"tail.{name}: {ceiling} is not a ceiling above 1 (a ratio of ratios)")
    return ceilings


class SustainedVariant(Strict):
    """One variant's own length and tail ceilings, replacing its model's: where its calls are so much slower than
    its model's others that the percentiles they gate would need a run of another length (ISNet's dynamic int8 at
    1.6 s a call cannot give p99's 628 pairs in a night's stated time). ``why``: what was measured."""

    seconds: float | None = Field(None, gt=0)
    tail: dict[str, float] | None = None
    why: str

    @field_validator("tail")
    @classmethod
    def _percentiles(cls, ceilings: dict[str, float] | None) -> dict[str, float] | None:
        return None if ceilings is None else _percentile_ceilings(ceilings)


class Sustained(Strict):
    """Bounds of the sustained check (``test_sustained``, :mod:`harness.judge.sustained`): the deployed session run
    for ``seconds`` over the item's images at batch 1, interleaved call by call with the fp32 reference.

    ``tail``: per percentile (``p90``, ``p99``), the most the item's percentile over its median may exceed the
    reference's same ratio, measured in the same run (the item's ratio divided by the reference's): host load falls on
    both sides alike. ``max_trend``: the most the item's median of the last tenth of its calls over that of the first
    tenth may exceed the reference's same ratio. ``max_rss_growth_mb_per_1000``: the most the resident memory of the
    session's process may grow per 1000 calls (least-squares slope over the run's second half: allocators' arenas
    fill in the first). ``drift_max_abs``: the most a fixed image's output may move between its first run and any
    later one, every ``probe_every`` calls and at the end (0: bit-identical, for deterministic runtimes).
    ``seconds``: the run's length unless ``--sustain-seconds`` says otherwise; ``why``: what was measured, on what.
    ``variants``: variant label -> its own length and tail ceilings (:class:`SustainedVariant`).
    """

    seconds: float = Field(60.0, gt=0)
    tail: dict[str, float] = Field(default_factory=dict)
    max_trend: float = Field(gt=1)
    max_rss_growth_mb_per_1000: float = Field(gt=0)
    drift_max_abs: float = Field(0.0, ge=0)
    probe_every: int = Field(50, gt=0)
    why: str
    variants: dict[str, SustainedVariant] = Field(default_factory=dict)

    @field_validator("tail")
    @classmethod
    def _percentiles(cls, ceilings: dict[str, float]) -> dict[str, float]:
        return _percentile_ceilings(ceilings)

    def of_variant(self, label: str) -> "Sustained":
        """These bounds as ``label`` is held to them: its own length and tail where it states them."""
        own = self.variants.get(label)
        if own is None:
            return self
        return self.model_copy(update={"seconds": own.seconds or self.seconds,
                                       "tail": self.tail if own.tail is None else own.tail,
                                       "why": f"{self.why}; {label}: {own.why}", "variants": {}})


#: Structural checks a variant may state its outputs cannot be judged by (``structure.variants.<label>.not_judged``).
StructureCheck = Literal["alignment", "channel_order"]


#: What a relaxation's ``why`` must name: how many images its figures were measured on ("on 22 ECSSD images").
_IMAGE_COUNT = re.compile(r"\b\d+ (?:[\w-]+ ){0,2}images?\b")


class MeasuredOnImages(Strict):
    """A relaxation with its reason: ``why`` must say on how many images its figures were measured, since a bound
    measured on 4 images is not one measured on 100 (:data:`_IMAGE_COUNT`)."""

    why: str

    @field_validator("why")
    @classmethod
    def _measured(cls, why: str) -> str:
        if not _IMAGE_COUNT.search(why):
            raise ValueError(f"why {why!r} does not say on how many images its figures were measured "
                             "(e.g. 'keeps 92.5% on 22 ECSSD images')")
        return why


class ModelFloors(MeasuredOnImages):
    """One model's own floors for one precision, replacing the family's (``acceptance.floors``) for that model alone:
    where its graph is not one the harness builds (a shipped dynamic-int8 graph) and keeps measurably less of fp32's
    value than the family's floor. ``keeps``: metric -> the share of fp32's value the item must keep on the same
    images (judged, as every floor, by its interval); ``why``: what was measured, on how many images."""

    keeps: dict[str, float]

    @field_validator("keeps")
    @classmethod
    def _fractions(cls, keeps: dict[str, float]) -> dict[str, float]:
        if not keeps:
            raise ValueError("keeps: no metric: a floor that judges nothing")
        return _shares(keeps, "keeps")


class StructureBounds(Strict):
    """Bounds of the structural checks (:mod:`harness.judge.structure`) of one item against fp32.

    The defaults were measured with the int8 items judged by their builds' exact arithmetic (the same on every CPU),
    healthy builds against the injected faults of :mod:`harness.runtimes.faults`. First on 4 ECSSD / human-seg /
    portrait and 4 synthetic images: fp16, int8 and int8_dynamic builds of ISNet, u2netp, u2net, unet3p and the
    human_seg UNets (trained or official weights). Then per image on the trained models (official weights, 8
    calibration images as CI builds them), 100 ECSSD and 4 synthetic images each: ISNet int8 kl_divergence and
    int8_dynamic, u2net fp16 and percentile int8, u2netp fp16.

    * ``alignment_max_px``: the most any one image's output may be offset. Healthy, per image on those 100 ECSSD
      images: at most 0.31 px (u2net int8, 2 images above 0.25; ISNet int8_dynamic 0.23, int8 0.12, u2netp fp16
      0.09, u2net fp16 0.04), at most 0.18 px on the synthetic images. The `shift` fault: 1.08-1.34 px on each of
      the 4 ECSSD images CI runs (5 builds), 0.86-1.41 px on each of the 100 (simulated at model size); on the
      synthetic images 0.93-1.44 px, except one map that changes little along x (0.38-0.50 px). 0.4 px: 1.3 times
      the healthy maximum, and below every shifted ECSSD image by 2x or more.
    * ``detail_floor``: healthy 0.95-1.02 of the reference's Laplacian content kept (u2net int8 1.07-1.10); half
      resolution 0.48-0.58, one-pixel shift 0.51-0.72. The floor leaves 0.1 below the lowest healthy figure. On 25
      disjoint 4-image subsets of the 100 ECSSD images: 0.97-1.08 (u2net int8 0.87-1.00).
    * ``spurious_ceiling``: healthy 0.000-0.020 of the reference's Laplacian content added by the difference (int8
      flips edge pixels); Gaussian noise of 3% of the output's range 0.40-0.84 at 320x320. Five times the healthy
      maximum. On the 100 ECSSD images: 0.025 at most (ISNet int8), 0.079 on the worst of its 25 4-image subsets.
    * ``not_judged``: checks (:data:`StructureCheck`) whose figures are recorded but give no verdict.

    A model may tighten these for all its variants (``structure:``); a variant whose healthy build measures beyond
    them states its own under ``structure.variants`` (:class:`VariantStructure`), never for the whole model.
    """

    alignment_max_px: float = Field(0.4, gt=0)
    detail_floor: float = Field(0.85, gt=0, le=1)
    spurious_ceiling: float = Field(0.1, gt=0)
    not_judged: tuple[StructureCheck, ...] = ()
    note: str | None = None

    def looser_than(self, other: "StructureBounds") -> list[str]:
        """The bounds of this set that let through what ``other`` would fail."""
        loose = [name for name in ("alignment_max_px", "spurious_ceiling")
                 if getattr(self, name) > getattr(other, name)]
        if self.detail_floor < other.detail_floor:
            loose.append("detail_floor")
        return loose + [f"not_judged: {check}" for check in self.not_judged if check not in other.not_judged]


class VariantStructure(MeasuredOnImages):
    """One variant's own structural bounds, where its healthy build measures beyond its model's (a shipped graph
    quantised at another resolution, near-binary maps whose int8 edges flip, a documented collapse).

    Each bound given replaces the model's for this variant alone; the others keep the model's. ``not_judged``: checks
    whose figures this variant's outputs cannot be judged by (a collapse has no stable position or colour response).
    ``why``: what was measured for this variant, on how many images, and the margin.
    """

    alignment_max_px: float | None = Field(None, gt=0)
    detail_floor: float | None = Field(None, gt=0, le=1)
    spurious_ceiling: float | None = Field(None, gt=0)
    not_judged: tuple[StructureCheck, ...] = ()


class Structure(StructureBounds):
    """A model's structural bounds: the defaults, tightened where all its variants allow, and ``variants``: variant
    label -> the bounds measured for that variant alone (:class:`VariantStructure`).

    A bound looser than the default for the whole model is refused: a relaxation measured on one precision would
    silently switch the check off for the others (ISNet-1024's dynamic-int8 ceiling of 2.0 once applied to its fp16).
    """

    variants: dict[str, VariantStructure] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_model_wide_relaxation(self) -> "Structure":
        loose = self.looser_than(StructureBounds())
        if loose:
            raise ValueError(f"{', '.join(loose)}: looser than the default for every variant of the model; state a "
                             "relaxation under structure.variants.<variant label>, with its why, for the variants it "
                             "was measured on")
        return self

    def of(self, variant: "Variant") -> StructureBounds:
        """The bounds ``variant``'s items are judged by: the model's, with the variant's own where it states them."""
        model = StructureBounds(**self.model_dump(exclude={"variants"}))
        own = self.variants.get(variant.label)
        if own is None:
            return model
        return model.model_copy(update={**own.model_dump(exclude_none=True, exclude={"why"}), "note": own.why})


class IsaLoss(Strict):
    """What a static int8 build loses as deployed on a kind of CPU, stated as the bound its deployment verdict
    (:func:`harness.checks.test_deployment`) is judged by there, instead of the precision's budget.

    ``kernels``: the deployed session against the build's exact arithmetic on the same images (what the CPU's kernels
    alone change). ``budget``: the deployed session against fp32; left out, the variant's own rule applies (its
    precision's budget, or a documented collapse's stated loss, which already spans what the kernels add). ``vs_fp32``:
    per metric, the most the paired difference from fp32 may be worse (a positive number; it fails when the whole
    interval is worse); left out, the variant's own paired rule applies. Every mean of these budgets is judged by its
    interval over the images of the run (:attr:`harness.judge.judgement.Comparison.mean_interval`), so a bound holds
    on 4 images as on 100; worst image and max|d| per image. ``why``: what was measured on such a CPU (the figures,
    the number of images, the calibration, the CPU) and the margin. ``remedy``: the build that was measured to pass
    there (``--int8-scheme reduce_range`` where it does), named by the failure message.
    """

    kernels: Budget
    budget: Budget | None = None
    vs_fp32: dict[str, float] = Field(default_factory=dict)
    why: str
    remedy: str | None = Field(None, description="what keeps this variant within its healthy budget on such a CPU, "
                                                 "as measured there; named when its deployment verdict fails")

    @field_validator("vs_fp32")
    @classmethod
    def _worsenings(cls, allowed: dict[str, float]) -> dict[str, float]:
        for metric, worsening in allowed.items():
            if not worsening >= 0:
                raise ValueError(f"vs_fp32.{metric}: {worsening} is not a worsening (a number >= 0)")
        return allowed


class DeployedInt8(Strict):
    """What a static int8 build is known to lose as deployed on a kind of CPU.

    ``saturating_u8s8``: variant label (``int8-kl_divergence``) -> the stated loss, for CPUs whose U8S8 kernels
    saturate a 16-bit sum (AVX2, AVX-512 without VNNI) when the item's scheme is full-range U8S8. There the
    deployment verdict is judged by that bound; elsewhere, and with a scheme that cannot saturate (``--int8-scheme
    reduce_range`` or ``u8u8``), by the precision's own budget and the seed's documented loss. A family refuses a
    model of published weights whose full-range static int8 variant states none (:class:`harness.data.cases.Family`).
    """

    saturating_u8s8: dict[str, IsaLoss] = Field(default_factory=dict)
