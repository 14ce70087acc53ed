"""Case files: a family and its models, loading with precise errors, and the items they expand into.

A case file (``cases/<family>.yaml``) is data only: per model, its input shape, recipe, datasets,
weights and every documented result row of its seed document. Validation happens at collection,
so a malformed file fails the run with the file, the key path and the reason, before any model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from .case_base import NON_FP32, CaseError, Strict, Variant, known_keys
from .case_bounds import (
    Acceptance,
    Budget,
    DeployedInt8,
    Documented,
    ModelFloors,
    Performance,
    ResultRow,
    Structure,
    Sustained,
)
from .case_inputs import Dataset, Int8Scheme, Op, Weights
from .names import PlainName


class Model(Strict):
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
                                "10 s; see harness/run/bounds.py)")
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
    floors: dict[str, ModelFloors] = Field(
        default_factory=dict, description="precision -> this model's own accuracy floors against fp32, replacing the "
                                          "family's acceptance.floors for it, with what they were measured on")
    sustained: Sustained | None = Field(None, description="overrides the family's sustained-load bounds")
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
        known_keys(budgets, NON_FP32, "a non-fp32 precision; fp32 is held to the harness's own budgets")
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
                raise ValueError(f"skip_variants names {label!r}, which is not one of this model's variants "
                                 f"{sorted(labels)}")
        for where, named in (("structure.variants", self.structure.variants),
                             ("sustained.variants", self.sustained.variants if self.sustained else {})):
            for label in named:
                if label not in labels:
                    raise ValueError(f"{where} names {label!r}, which is not a variant of model {self.name!r} (its "
                                     f"variants: {sorted(labels)})")
        for precision in self.floors:
            if precision not in {v.precision for v in self.variants()} - {"fp32"}:
                raise ValueError(f"floors names {precision!r}, which is not a non-fp32 precision of model "
                                 f"{self.name!r}")
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

    def floors_for(self, acceptance: Acceptance, precision: str) -> dict[str, float]:
        """The accuracy floors this model's ``precision`` is held to against fp32: its own where it states them,
        else its family's (:meth:`Acceptance.floors_for`)."""
        own = self.floors.get(precision)
        return dict(own.keeps) if own is not None else acceptance.floors_for(precision, self.task)

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


class Family(Strict):
    """One case file: a seed document's model family."""

    family: PlainName
    seed: str
    source: str
    acceptance: Acceptance
    performance: Performance = Performance()
    sustained: Sustained | None = Field(None, description="bounds of the sustained check; none: it is not run")
    int8: Int8Scheme = Int8Scheme()
    models: tuple[Model, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> "Family":
        names = [m.name for m in self.models]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"model names repeated: {sorted(duplicates)}")
        inheriting = {v.label for m in self.models if m.sustained is None for v in m.variants()}
        for label in (self.sustained.variants if self.sustained else {}):
            if label not in inheriting:
                raise ValueError(f"sustained.variants names {label!r}, which is not a variant of any model held to "
                                 f"the family's sustained bounds ({sorted(inheriting)})")
        for model_index, model in enumerate(self.models):
            for precision, own in model.floors.items():
                # A misspelt metric would be silently skipped by the paired rule: refuse it.
                unknown = set(own.keeps) - set(self.acceptance.reproduction)
                if unknown:
                    raise ValueError(f"models.{model_index}.floors.{precision}.keeps ({model.name}): metrics "
                                     f"{sorted(unknown)} are not among the family's judged metrics "
                                     f"{sorted(self.acceptance.reproduction)} (acceptance.reproduction)")
            for row_index, row in enumerate(model.results):
                untolerated = set(row.metrics) - set(self.acceptance.reproduction)
                if untolerated:
                    raise ValueError(
                        f"models.{model_index}.results.{row_index}.metrics ({model.name}): "
                        f"metrics {sorted(untolerated)} have no entry in 'acceptance.reproduction'"
                    )
            self._saturating_bounds_stated(model_index, model)
        return self

    def _saturating_bounds_stated(self, index: int, model: "Model") -> None:
        """A model whose trained weights are published (npm, wheel) runs them on every machine, and its full-range U8S8
        static int8 builds compute apart from their exact arithmetic on CPUs whose U8S8 kernels saturate (every AVX2
        host): without a measured bound for such CPUs its deployment verdict there is the healthy int8 budget, a
        false alarm on a healthy build (U2-Net and u2netp percentile, a real AVX2 CPU, 100 images). So each such
        variant must state one (``deployed_int8.saturating_u8s8``), measured with ``python -m harness emulate-int8``;
        a variant the case skips (``skip_variants``) runs nowhere and needs none.
        """
        if model.weights.npm is None and model.weights.wheel is None or not self.int8_of(model).saturates_u8s8:
            return
        stated = model.deployed_int8.saturating_u8s8
        missing = [v.label for v in model.variants()
                   if v.precision == "int8" and v.label not in stated and v.label not in model.skip_variants]
        if missing:
            raise ValueError(
                f"models.{index}.deployed_int8.saturating_u8s8 ({model.name}): no bound for "
                f"{', '.join(missing)}, a full-range U8S8 static int8 variant of published trained weights; measure "
                f"it as deployed on an AVX2 CPU (python -m harness emulate-int8 {model.name}-{missing[0]}-onnxruntime) "
                f"and state it, with the figures, the image count and the CPU")

    def performance_of(self, model: "Model") -> Performance:
        """The model's own performance floors, else the family's."""
        return model.performance or self.performance

    def sustained_of(self, model: "Model", variant: "Variant") -> Sustained | None:
        """The sustained-load bounds of ``model`` at ``variant``: the model's own, else the family's, with the
        variant's own length and tail where they state them; None where neither declares any."""
        bounds = model.sustained or self.sustained
        return None if bounds is None else bounds.of_variant(variant.label)

    def int8_of(self, model: "Model") -> Int8Scheme:
        """The model's own static int8 scheme, else the family's."""
        return model.int8 or self.int8


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
