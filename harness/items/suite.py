"""The state of one pytest session: the dataset catalogue, the session pool, the builds and every item's handle.

A :class:`Suite` lives for a whole pytest session (one per xdist worker). It holds what every item shares: decoded
images (the catalogue), built artifacts, loaded sessions, the golden stores, the memo of every run's maps; and it
resolves each item to its :class:`~harness.items.handle.ItemHandle` once, which is what the checks get. So the
conformance, regression and accuracy checks of an item, and the fp32 reference several items compare against, are
computed once.
"""

from __future__ import annotations

import numpy as np

from ..build.artifacts import ArtifactBuilder, ArtifactStore
from ..build.networks import Networks
from ..data import datasets as ds
from ..data.cases import Item, Model
from ..data.catalogue import DatasetCatalogue
from ..judge.golden import GoldenStore, Regeneration
from ..run.pipeline import Pipeline
from ..run.sessions import SessionPool
from .handle import ItemHandle, RunMemo
from .settings import Settings


class Suite:
    """The session's shared services, and the items resolved to handles (module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalogue = DatasetCatalogue(settings.data_root, settings.synthetic_count)
        self.networks = Networks(settings.cache_dir, settings.weights_dir)
        self.store = ArtifactStore(settings.cache_dir / "artifacts", shared=settings.shared_caches)
        self.builder = ArtifactBuilder(self.store, self.networks, self.calibration_tensors,
                                       settings.calibration_samples)
        self.sessions = SessionPool(settings.runtime_config, self.builder, self.networks, settings.isolation,
                                    settings.int8_scheme)
        self.golden = GoldenStore(settings.golden_dir)
        self.regeneration = Regeneration(self.golden, settings.update_golden)
        self.runs = RunMemo()
        self._reported: set[tuple[str, ds.DataProblem]] = set()
        self._pipelines: dict[str, Pipeline] = {}
        self._handles: dict[str, ItemHandle] = {}

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

    # ----------------------------------------------------------------- items

    def handle(self, item: Item) -> ItemHandle:
        """The item resolved for its checks (:class:`ItemHandle`), once per session: resolving loads its session.

        Raises what the load raised (:class:`harness.runtimes.RuntimeUnavailable` when its runtime lacks this model); a
        load that failed is not tried again, every later resolution gets the same error at once (the session pool)."""
        if item.id not in self._handles:
            self._handles[item.id] = ItemHandle(self, item, self.sessions.session(item))
        return self._handles[item.id]

    def first_report(self, dataset: str, problem: ds.DataProblem) -> bool:
        """True the first time a data problem is reported this session: each is warned about once."""
        key = (dataset, problem)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True

    def close(self) -> None:
        self.sessions.close()
