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
``score(path) -> Comparison``) so it can be tested on a hand-made graph; :func:`localise` wires it to
the harness through the item's handle: builds through ``ArtifactBuilder.onnx(..., nodes_to_exclude=...)``
(:meth:`harness.items.handle.ItemHandle.rebuild`), runs each build on the item's runtime through the
one pipeline, and judges it with the same :class:`Comparison` and budget as the item's conformance check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from ..data.case_bounds import Budget
from ..judge.judgement import Comparison, conformance_budget
from ..runtimes.base import Artifact

if TYPE_CHECKING:
    from ..data.datasets import Dataset
    from ..items.handle import ItemHandle

log = logging.getLogger("segconform.fault_localisation")

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
class Step:
    """One build of the search: how many nodes it kept in fp32, what it scored, whether that conforms."""

    excluded: int
    comparison: Comparison

    @property
    def conforms(self) -> bool:
        return self.comparison.passed


@dataclass
class Localisation:
    """What the search found. ``culprits`` are in topological order; ``after`` is measured, not assumed.

    ``capped``: the build cap stopped the search; ``culprits`` is then the smallest exclusion set
    seen to conform (an over-approximation), or empty when none was seen.
    """

    label: str
    candidates: int
    before: Comparison
    culprits: tuple[str, ...] = ()
    after: Comparison | None = None
    builds: int = 0
    max_builds: int = 0
    capped: bool = False
    note: str = ""
    seconds: float = 0.0
    steps: list[Step] = field(default_factory=list)

    @property
    def budget(self) -> Budget:
        return self.before.budget

    @property
    def conforms(self) -> bool:
        """Whether the build with the culprits in fp32 was measured inside the budget."""
        return self.after is not None and self.after.passed

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

    def __init__(self, build: Callable[[tuple[str, ...]], Path], score: Callable[[Path], Comparison],
                 max_builds: int) -> None:
        self._build, self._score, self._max = build, score, max_builds
        self.seen: dict[frozenset[str], Step] = {}
        self.trail: list[Step] = []

    def conforms(self, excluded: Iterable[str]) -> bool:
        key = frozenset(excluded)
        if key not in self.seen:
            if len(self.trail) >= self._max:
                raise _Capped
            step = Step(len(key), self._score(self._build(tuple(sorted(key)))))
            log.info("fault localisation build %d/%d: %d nodes in fp32 -> %s", len(self.trail) + 1, self._max,
                     len(key), step.comparison)
            self.seen[key] = step
            self.trail.append(step)
        return self.seen[key].conforms

    def smallest_conforming(self) -> frozenset[str] | None:
        passing = [key for key, step in self.seen.items() if step.conforms]
        return min(passing, key=len) if passing else None


def bisect(
    candidates: Sequence[str],
    build: Callable[[tuple[str, ...]], Path],
    score: Callable[[Path], Comparison],
    before: Comparison,
    max_builds: int = 8,
    label: str = "",
) -> Localisation:
    """The nodes of ``candidates`` (topological order) to keep in fp32 so that ``score(build(excluded))`` conforms.

    ``before`` is the comparison of the build that excludes nothing (the failing artifact, already
    built; it is not counted) and carries the budget. ``max_builds`` caps the builds this search makes.
    """
    if len(set(candidates)) != len(candidates) or not all(candidates):
        raise ValueError("candidate node names must be unique and non-empty (the builds exclude nodes by name)")
    started = time.perf_counter()
    result = Localisation(label, len(candidates), before, max_builds=max_builds)
    if before.passed:
        result.note = "already within budget: nothing to localise"
        return result
    if not candidates:
        result.note = "the graph has no candidate nodes for this precision"
        return result
    search = _Search(build, score, max_builds)
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
        result.after = search.seen[frozenset(found)].comparison
    result.builds, result.steps = len(search.trail), search.trail
    result.seconds = time.perf_counter() - started
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


def localise(handle: "ItemHandle", dataset: "Dataset", max_builds: int = 8, images: int = 3) -> Localisation:
    """Which nodes of an item (fp16 or static int8, on an ONNX runtime) to keep in fp32 so that it conforms.

    Scores each build on the ``images`` images of ``dataset`` that conform worst, against the fp32
    reference maps, with the item's own conformance budget; builds through the artifact cache.
    """
    item = handle.item
    precision = item.variant.precision
    if precision not in LOCALISABLE:
        raise ValueError(f"{item.id}: fault localisation rebuilds {' or '.join(LOCALISABLE)} artifacts, "
                         f"not {item.variant.label}")
    runtime = handle.runtime
    if runtime.artifact != "onnx":
        raise ValueError(f"{item.id}: runtime {item.runtime} does not load ONNX builds; localise on onnxruntime")
    if item.model.prebuilt.get(precision) is not None:
        raise ValueError(f"{item.id}: the {precision} model is shipped prebuilt, there is nothing to rebuild")
    budget = conformance_budget(item, "fp32", handle.trained)
    reference = handle.reference.run(dataset).maps
    current = Comparison.of(handle.run(dataset).maps, reference, budget)
    worst = sorted(current.per_image, key=lambda stem: _excess(current.per_image[stem], budget), reverse=True)[:images]
    if not worst:
        raise ValueError(f"{item.id}: no image of {dataset.name} was run by both the item and its reference")
    samples = [s for s in dataset.samples if s.stem in worst]
    pipeline = handle.pipeline
    takes_images = runtime.takes_images

    def build(excluded: tuple[str, ...]) -> Path:
        return handle.rebuild(excluded).path

    def score(path: Path) -> Comparison:
        session = runtime.load(item, Artifact(path, {}))
        try:
            run = pipeline.run(f"{item.id} candidate", session, takes_images, dataset, samples)
        except ValueError:  # a NaN or constant output: this build is as far outside the budget as it gets
            return Comparison(budget, {stem: (float("inf"), float("inf")) for stem in worst})
        finally:
            session.close()
        return Comparison.of(run.maps, reference, budget)

    graph = onnx.load(str(handle.fp32_export().path), load_external_data=False)
    before = Comparison(budget, {stem: current.per_image[stem] for stem in worst})
    return bisect(candidate_nodes(graph, precision), build, score, before, max_builds, f"{item.id} on {dataset.name}")


def _excess(stats: tuple[float, float], budget: Budget) -> float:
    """How far past its budget an image is (the larger of the two ratios): the worst images come first."""
    mae, max_abs = stats
    return max(mae / budget.mae_worst, max_abs / budget.max_abs)
