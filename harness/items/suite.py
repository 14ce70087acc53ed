"""The state of one pytest session: the dataset catalogue, the session pool, the builds and every run's maps.

A :class:`Suite` lives for a whole pytest session (one per xdist worker). It caches decoded images,
built artifacts, loaded sessions, each item's output maps and their per-image metric scores, so the
conformance, regression and accuracy checks of an item, and the fp32 reference several items compare
against, are computed once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..build.artifacts import ArtifactBuilder, ArtifactStore
from ..build.networks import Networks
from ..data import datasets as ds
from ..data.cases import Item, Model
from ..data.catalogue import DatasetCatalogue
from ..judge.golden import GoldenStore, Regeneration
from ..judge.metrics import Scorer, Scores
from ..run.pipeline import OutputError, Pipeline, RunResult
from ..run.sessions import SessionPool
from .settings import Settings


class Suite:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = DatasetCatalogue(settings.data_root, settings.synthetic_count)
        self.networks = Networks(settings.cache_dir, settings.weights_dir)
        self.store = ArtifactStore(settings.cache_dir / "artifacts")
        self.builder = ArtifactBuilder(self.store, self.networks, self.calibration_tensors,
                                       settings.calibration_samples)
        self.sessions = SessionPool(settings.runtime_config, self.builder, self.networks, settings.isolation,
                                    settings.int8_scheme)
        self.golden = GoldenStore(settings.golden_dir)
        self.regeneration = Regeneration(self.golden, settings.update_golden)
        self._reported: set[tuple[str, ds.DataProblem]] = set()
        self._pipelines: dict[str, Pipeline] = {}
        self._runs: dict[tuple[str, str], RunResult] = {}
        self._refused: dict[tuple[str, str], OutputError] = {}
        self._scores: dict[tuple[str, str], Scores] = {}

    # ----------------------------------------------------------------- models and data

    def pipeline(self, model: Model) -> Pipeline:
        if model.name not in self._pipelines:
            self._pipelines[model.name] = Pipeline(model)
        return self._pipelines[model.name]

    def calibration_tensors(self, model: Model, count: int) -> tuple[list[np.ndarray], list[str]]:
        return self.catalogue.calibration_tensors(model, count, self.pipeline(model).preprocess)

    def trained(self, item: Item) -> bool:
        """Whether the item runs trained weights: a device brings its own compiled (trained) model."""
        return self.sessions.runtime(item.runtime).brings_own_model or self.networks.weights(item.model).trained

    def weights_label(self, item: Item) -> str:
        """What the report says the weights are: a device runtime runs its own compiled model."""
        if self.sessions.runtime(item.runtime).brings_own_model:
            return f"compiled model on {item.runtime}"
        return self.networks.weights(item.model).label

    def datasets_for(self, item: Item) -> list[ds.Dataset]:
        """The model's datasets that this item's session can serve (vamp outputs exist only for some images)."""
        session = self.sessions.session(item)
        return [d for d in self.catalogue.for_model(item.model) if any(session.covers(s.stem) for s in d.samples)]

    def samples_for(self, item: Item, dataset: ds.Dataset) -> list[ds.Sample]:
        """The eval subset (or just a few images when accuracy cannot be judged), plus the golden images."""
        if dataset.name == ds.SYNTHETIC:
            return list(dataset.samples)
        limit = self.settings.eval_limit if self.trained(item) else self.settings.conformance_limit
        if item.model.eval_limit is not None:
            limit = item.model.eval_limit if limit is None else min(limit, item.model.eval_limit)
        chosen = {s.stem: s for s in dataset.limited(limit)}
        for sample in dataset.limited(self.settings.golden_limit):
            chosen.setdefault(sample.stem, sample)
        return sorted(chosen.values(), key=lambda s: s.stem)

    # ----------------------------------------------------------------- running

    def _once(self, key: tuple[str, str], compute: Callable[[], RunResult]) -> RunResult:
        """A run computed once per session. A run whose output was refused (NaN, constant) fails every later check
        that asks for it with that error instead of running again: a fault that shows on some calls only must not
        pass a later check whose own rerun happened to miss it."""
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

    def run(self, item: Item, dataset: ds.Dataset) -> RunResult:
        """The item's maps on its samples of ``dataset`` (computed once per session)."""
        session = self.sessions.session(item)
        takes_images = self.sessions.runtime(item.runtime).takes_images
        return self._once((item.id, dataset.name), lambda: self.pipeline(item.model).run(
            item.id, session, takes_images, dataset, self.samples_for(item, dataset)))

    def run_deployed(self, item: Item, dataset: ds.Dataset) -> RunResult:
        """The item's maps from its session as deployed (on CPU int8: this CPU's fused kernels), same samples as run().

        Only a session with a separate exact-arithmetic path has a deployed twin that computes differently; for
        every other session this is the item's own run.
        """
        session = self.sessions.session(item)
        if session.deployed is session:
            return self.run(item, dataset)
        key = (f"{item.id}-deployed", dataset.name)
        takes_images = self.sessions.runtime(item.runtime).takes_images
        return self._once(key, lambda: self.pipeline(item.model).run(key[0], session.deployed, takes_images, dataset,
                                                                     self.samples_for(item, dataset)))

    def run_source(self, item: Item, dataset: ds.Dataset) -> RunResult:
        """What the model's source (PyTorch eager, or the graph as shipped) gives on the same samples as ``item``."""
        key = (f"{item.model.name}-source", dataset.name)
        return self._once(key, lambda: self.pipeline(item.model).run(key[0], self.sessions.source(item.model), False,
                                                                     dataset, self.samples_for(item, dataset)))

    def run_reordered(self, item: Item, dataset: ds.Dataset, stems: list[str], order: str) -> dict[str, np.ndarray]:
        """The item's maps of ``stems`` fed each image with its colour channels in ``order`` (one of
        :data:`harness.data.channels.CHANNEL_ORDERS`): the channel-order probe's alternatives, computed once per session."""
        from ..data.channels import reordered

        key = (f"{item.id}-{order}-{','.join(stems)}", dataset.name)  # a session may cover other stems
        session = self.sessions.session(item)
        takes_images = self.sessions.runtime(item.runtime).takes_images

        def run() -> RunResult:
            maps = {sample.stem: self.pipeline(item.model).infer(session, reordered(dataset.image(sample), order),
                                                                 sample.stem, takes_images, key[0])
                    for sample in dataset.samples if sample.stem in stems}
            return RunResult(key[0], dataset.name, maps, {})

        return self._once(key, run).maps

    def scores(self, item: Item, dataset: ds.Dataset, deployed: bool = False) -> Scores:
        """Per-image metric parts of the item's maps (``deployed``: its deployed session's) against the ground truth
        (computed once per session)."""
        key = (item.id + ("-deployed" if deployed else ""), dataset.name)
        if key not in self._scores:
            run = self.run_deployed(item, dataset) if deployed else self.run(item, dataset)
            scorer = Scorer(item.model.task)
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

    def first_report(self, dataset: str, problem: ds.DataProblem) -> bool:
        """True the first time a data problem is reported this session: each is warned about once."""
        key = (dataset, problem)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True

    def close(self) -> None:
        self.sessions.close()
