"""Fault localisation: which nodes must stay in fp32 for a failing fp16 or int8 item to conform.

A failing precision usually has a few culprits (a layer with an outlier weight, a tensor whose
range int8 cannot hold, an activation that overflows fp16), and the fix a deployment engineer
applies is to keep those nodes in float. Finding them by hand means rebuilding the artifact
many times; this module does it by bisection over the graph's candidate nodes in topological
order, rebuilding with a growing exclusion list and scoring each build on the item's worst
images against the fp32 reference maps, with the item's own conformance budget.

The search assumes that keeping more nodes in fp32 never makes the output worse (true up to
noise). Under it, the smallest conforming prefix of the topological order ends at a node that
must stay in fp32; that node is added to the culprits and the search repeats on the nodes
before it until the culprits alone conform. One culprit costs about log2(candidates) + 1 builds.

The core, :func:`bisect`, takes two callables (``build(excluded) -> path`` and
``score(path) -> Stats``) so it can be tested on a hand-made graph; :func:`localise` wires it to
the harness: builds through ``ArtifactBuilder.onnx(model, variant, nodes_to_exclude=...)``, runs
on the item's runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from . import metrics, recipes
from .cases import Budget
from .runtimes.base import Artifact, RunInput

if TYPE_CHECKING:
    from .cases import Item
    from .datasets import Dataset
    from .pipeline import Harness

#: int8 candidates: ops ONNX Runtime's QDQ quantizer quantizes that compute new values. Layout ops
#: (Reshape, Slice, ...) and removable activations (Relu, Clip) only pass their input's
#: quantization through, so keeping them in fp32 cannot fix anything on its own.
INT8_CANDIDATE_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Resize", "AveragePool",
    "InstanceNormalization", "LayerNormalization", "BatchNormalization",
})

#: Precisions whose builds take an exclusion list (static int8: ``nodes_to_exclude``; fp16: the block list).
LOCALISABLE = ("int8", "fp16")


@dataclass(frozen=True)
class Stats:
    """Conformance of one build on the scored images: per-image MAE (mean and worst) and worst max |d|."""

    images: int
    mae_mean: float
    mae_worst: float
    max_abs_worst: float

    @classmethod
    def of(cls, per_image: Mapping[str, tuple[float, float]]) -> "Stats":
        """From ``stem -> (mae, max_abs)``."""
        if not per_image:
            raise ValueError("no image was scored")
        maes = [mae for mae, _ in per_image.values()]
        return cls(len(maes), float(np.mean(maes)), float(max(maes)), float(max(m for _, m in per_image.values())))

    def within(self, budget: Budget) -> bool:
        """Inside the budget the way a conformance check judges it (a NaN never is)."""
        return (self.mae_mean <= budget.mae and self.mae_worst <= budget.mae_worst
                and self.max_abs_worst <= budget.max_abs)

    def __str__(self) -> str:
        return (f"MAE mean {self.mae_mean:.4g}, worst {self.mae_worst:.4g}; max|d| {self.max_abs_worst:.4g} "
                f"({self.images} images)")


@dataclass(frozen=True)
class Step:
    """One build of the search: how many nodes it kept in fp32, what it scored, whether that conforms."""

    excluded: int
    stats: Stats
    conforms: bool


@dataclass
class Localisation:
    """What the search found. ``culprits`` are in topological order; ``after`` is measured, not assumed.

    ``capped``: the build cap stopped the search; ``culprits`` is then the smallest exclusion set
    seen to conform (an over-approximation), or empty when none was seen.
    """

    label: str
    budget: Budget
    candidates: int
    before: Stats
    culprits: tuple[str, ...] = ()
    after: Stats | None = None
    builds: int = 0
    max_builds: int = 0
    capped: bool = False
    note: str = ""
    steps: list[Step] = field(default_factory=list)

    @property
    def conforms(self) -> bool:
        """Whether the build with the culprits in fp32 was measured inside the budget."""
        return self.after is not None and self.after.within(self.budget)

    def summary(self) -> str:
        lines = [f"fault localisation of {self.label}: budget MAE mean {self.budget.mae:g}, worst "
                 f"{self.budget.mae_worst:g}, max|d| {self.budget.max_abs:g}",
                 f"  as built:            {self.before}"]
        if self.culprits:
            lines.append(f"  keep in fp32 ({len(self.culprits)} of {self.candidates} candidates): "
                         + ", ".join(self.culprits))
        if self.after is not None:
            verdict = "within budget" if self.conforms else "STILL OUTSIDE the budget"
            lines.append(f"  with those in fp32:  {self.after} -> {verdict}")
        cap = f"; cap of {self.max_builds} reached, the search stopped early" if self.capped else ""
        lines.append(f"  {self.builds} builds{cap}")
        if self.note:
            lines.append(f"  {self.note}")
        return "\n".join(lines)


class _Capped(Exception):
    """The build cap was reached before the search finished."""


class _Unfixable(Exception):
    """Even excluding every candidate does not conform."""


class _Search:
    """Builds and scores exclusion sets, each set at most once, up to ``max_builds``."""

    def __init__(self, build: Callable[[tuple[str, ...]], Path], score: Callable[[Path], Stats],
                 budget: Budget, max_builds: int) -> None:
        self._build, self._score, self._budget, self._max = build, score, budget, max_builds
        self.seen: dict[frozenset[str], Step] = {}
        self.trail: list[Step] = []

    def conforms(self, excluded: Iterable[str]) -> bool:
        key = frozenset(excluded)
        if key not in self.seen:
            if len(self.trail) >= self._max:
                raise _Capped
            stats = self._score(self._build(tuple(sorted(key))))
            step = Step(len(key), stats, stats.within(self._budget))
            self.seen[key] = step
            self.trail.append(step)
        return self.seen[key].conforms

    def smallest_conforming(self) -> frozenset[str] | None:
        passing = [key for key, step in self.seen.items() if step.conforms]
        return min(passing, key=len) if passing else None


def bisect(
    candidates: Sequence[str],
    build: Callable[[tuple[str, ...]], Path],
    score: Callable[[Path], Stats],
    budget: Budget,
    before: Stats,
    max_builds: int = 8,
    label: str = "",
) -> Localisation:
    """The nodes of ``candidates`` (topological order) to keep in fp32 so that ``score(build(excluded))`` conforms.

    ``before`` is the score of the build that excludes nothing (the failing artifact, already
    built; it is not counted). ``max_builds`` caps the builds this search makes.
    """
    if len(set(candidates)) != len(candidates) or not all(candidates):
        raise ValueError("candidate node names must be unique and non-empty (the builds exclude nodes by name)")
    result = Localisation(label, budget, len(candidates), before, max_builds=max_builds)
    if before.within(budget):
        result.note = "already within budget: nothing to localise"
        return result
    if not candidates:
        result.note = "the graph has no candidate nodes for this precision"
        return result
    search = _Search(build, score, budget, max_builds)
    order = {name: index for index, name in enumerate(candidates)}
    found: list[str] = []
    try:
        found = _culprits(list(candidates), search)
    except _Capped:
        result.capped = True
        known = search.smallest_conforming()
        found = sorted(known, key=order.__getitem__) if known is not None else []
        result.note = ("the culprits are the smallest exclusion set seen to conform, an over-approximation"
                       if known is not None else "no build within the cap conformed")
    except _Unfixable:
        found = list(candidates)
        result.note = (f"keeping all {len(candidates)} candidate nodes in fp32 still fails the budget: the error "
                       "comes from elsewhere (graph input/output casts or quantization, ops outside the candidates)")
    result.culprits = tuple(sorted(found, key=order.__getitem__))
    if found:
        result.after = search.seen[frozenset(found)].stats
    result.builds, result.steps = len(search.trail), search.trail
    return result


def _culprits(candidates: list[str], search: _Search) -> list[str]:
    """Repeated bisection for the smallest conforming prefix; its last node is a culprit (see the module doc)."""
    found: list[str] = []
    high = len(candidates)  # excluding candidates[:high] + found conforms (assumed until measured, first round)
    while high > 0:
        if found and search.conforms(found):
            break
        low = 0  # excluding candidates[:low] + found fails: the baseline, or ``found`` alone just above
        while high - low > 1:
            middle = (low + high) // 2
            if search.conforms(candidates[:middle] + found):
                high = middle
            else:
                low = middle
        if not search.conforms(candidates[:high] + found):
            raise _Unfixable
        found.append(candidates[high - 1])
        high -= 1
    return found


def candidate_nodes(model: onnx.ModelProto, precision: str) -> list[str]:
    """Names of the nodes worth keeping in fp32 for ``precision``, in graph (topological) order.

    int8: the value-computing ops the QDQ quantizer handles. fp16: every node that the
    converter turns to fp16 (float outputs, not in onnxconverter-common's default block list),
    since an fp16 overflow can start in any op, an Add or an Exp as much as a Conv.
    """
    if precision == "int8":
        return [node.name for node in model.graph.node if node.op_type in INT8_CANDIDATE_OPS]
    if precision != "fp16":
        raise ValueError(f"no exclusion list for precision {precision!r}; localisable: {', '.join(LOCALISABLE)}")
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    floats = {v.name for v in [*graph.input, *graph.value_info, *graph.output]
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return [node.name for node in graph.node
            if node.op_type not in DEFAULT_OP_BLOCK_LIST and node.op_type != "Constant"
            and any(output in floats for output in node.output)]


def localise(
    harness: "Harness", item: "Item", dataset: "Dataset", max_builds: int = 8, images: int = 3,
    budget: Budget | None = None,
) -> Localisation:
    """Which nodes of ``item`` (fp16 or static int8, on an ONNX runtime) to keep in fp32 so that it conforms.

    Scores each build on the ``images`` images of ``dataset`` that conform worst, against the
    fp32 reference maps, with the item's budget; builds through the harness's artifact cache.
    """
    precision = item.variant.precision
    if precision not in LOCALISABLE:
        raise ValueError(f"{item.id}: fault localisation rebuilds {' or '.join(LOCALISABLE)} artifacts, "
                         f"not {item.variant.label}")
    runtime = harness.runtime(item.runtime)
    if runtime.artifact_kind != "onnx":
        raise ValueError(f"{item.id}: runtime {item.runtime} does not load ONNX builds; localise on onnxruntime")
    if item.model.prebuilt.get(precision) is not None:
        raise ValueError(f"{item.id}: the {precision} model is shipped prebuilt, there is nothing to rebuild")
    budget = budget or item.model.budgets[precision]
    reference = harness.run(item.reference, dataset).maps
    current = harness.run(item, dataset).maps
    per_image = {stem: metrics.conformance(current[stem], reference[stem]) for stem in current if stem in reference}
    worst = sorted(per_image, key=lambda stem: _excess(per_image[stem], budget), reverse=True)[:images]
    if not worst:
        raise ValueError(f"{item.id}: no image of {dataset.name} was run by both the item and its reference")
    scorer = _Scorer(harness, item, dataset, worst, {stem: reference[stem] for stem in worst})

    def build(excluded: tuple[str, ...]) -> Path:
        return harness.builder.onnx(item.model, item.variant, nodes_to_exclude=excluded).path

    graph = onnx.load(str(harness.builder.fp32_onnx(item.model).path), load_external_data=False)
    return bisect(candidate_nodes(graph, precision), build, scorer, budget, Stats.of({s: per_image[s] for s in worst}),
                  max_builds, f"{item.id} on {dataset.name}")


def _excess(stats: tuple[float, float], budget: Budget) -> float:
    """How far past its budget an image is (the larger of the two ratios): the worst images come first."""
    mae, max_abs = stats
    return max(mae / budget.mae_worst, max_abs / budget.max_abs)


class _Scorer:
    """Runs one candidate build on the chosen images through the item's runtime and compares with fp32."""

    def __init__(self, harness: "Harness", item: "Item", dataset: "Dataset", stems: list[str],
                 reference: dict[str, np.ndarray]) -> None:
        self._runtime = harness.runtime(item.runtime)
        self._item = item
        self._reference = reference
        self._postprocess = recipes.build_postprocess(item.model.postprocess)
        preprocess = harness.preprocess(item.model)
        samples = {s.stem: s for s in dataset.samples}
        self._inputs = {}
        for stem in stems:
            image = dataset.image(samples[stem])
            self._inputs[stem] = (image, preprocess(image)[None])

    def __call__(self, path: Path) -> Stats:
        session = self._runtime.load(Artifact(path, {}), self._item)
        per_image = {}
        for stem, (image, tensor) in self._inputs.items():
            raw = np.asarray(session.run(RunInput(tensor, [image], [stem]))[0])[0]
            if not np.all(np.isfinite(raw)):
                per_image[stem] = (float("inf"), float("inf"))
                continue
            per_image[stem] = metrics.conformance(self._postprocess(raw, image.shape[:2]), self._reference[stem])
        return Stats.of(per_image)
