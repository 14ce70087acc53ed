"""The one pipeline every item runs through: dataset -> preprocess -> runtime -> postprocess -> maps.

A :class:`Harness` lives for a whole pytest session. It caches decoded images, built artifacts,
loaded sessions and each item's output maps, so the conformance, regression and accuracy checks
of an item, and the fp32 reference that several items compare against, are computed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import datasets as ds
from . import recipes
from .artifacts import ArtifactBuilder, ArtifactStore
from .cases import Item, Model
from .golden import GoldenStore
from .runtimes import RunInput, Runtime, RuntimeConfig, Session
from .runtimes import get as get_runtime


class OutputError(ValueError):
    """A model output that cannot be a valid prediction (NaN, infinite, constant); names the item and image."""


@dataclass(frozen=True)
class Settings:
    data_root: Path | None
    weights_dir: Path | None
    cache_dir: Path
    golden_dir: Path
    report_dir: Path
    eval_limit: int | None
    golden_limit: int = 4
    conformance_limit: int = 4
    synthetic_count: int = 4
    calibration_samples: int = 50
    localise_builds: int = 8
    update_golden: bool = False
    runtime_config: RuntimeConfig = RuntimeConfig()


@dataclass
class RunResult:
    """An item's output maps on one dataset, with timing and every per-file problem met."""

    item_id: str
    dataset: str
    maps: dict[str, np.ndarray]
    seconds: dict[str, float]
    problems: list[str] = field(default_factory=list)

    @property
    def mean_seconds(self) -> float:
        return float(np.mean(list(self.seconds.values()))) if self.seconds else float("nan")


class EagerTorchSession:
    """The PyTorch network itself, eager, fp32: the source every fp32 export is checked against."""

    def __init__(self, module: object) -> None:
        self._module = module

    def run(self, batch: RunInput) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            return [self._module(torch.from_numpy(batch.tensor)).numpy()]


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.golden = GoldenStore(settings.golden_dir)
        self.builder = ArtifactBuilder(
            ArtifactStore(settings.cache_dir / "artifacts"),
            settings.cache_dir,
            settings.weights_dir,
            self.calibration_tensors,
            settings.calibration_samples,
        )
        self._runtimes: dict[str, Runtime] = {}
        self._sessions: dict[str, Session] = {}
        self._datasets: dict[str, ds.Dataset] = {}
        self._missing_datasets: dict[str, str] = {}
        self._runs: dict[tuple[str, str], RunResult] = {}

    # ----------------------------------------------------------------- data

    def datasets_for(self, model: Model) -> list[ds.Dataset]:
        """The synthetic set always, plus each of the model's datasets found under the data root."""
        found = [self._dataset(ds.SYNTHETIC, None, True)]
        for spec in model.datasets:
            dataset = self._dataset(spec.name, spec.folder, model.task != "matting")
            if dataset is not None:
                found.append(dataset)
        return found

    def datasets_for_item(self, item: Item) -> list[ds.Dataset]:
        """The model's datasets that this item's session can serve (vamp outputs exist only for some images)."""
        covers = getattr(self.session(item), "covers", None)
        if covers is None:
            return self.datasets_for(item.model)
        return [d for d in self.datasets_for(item.model) if any(covers(s.stem) for s in d.samples)]

    def missing_dataset_reason(self, name: str) -> str | None:
        return self._missing_datasets.get(name)

    def _dataset(self, name: str, folder: str | None, binary: bool) -> ds.Dataset | None:
        if name in self._datasets:
            return self._datasets[name]
        if folder is None:
            dataset = ds.synthetic(self.settings.synthetic_count)
        elif self.settings.data_root is None:
            self._missing_datasets[name] = "no data root given (--data-root or SEGCONFORM_DATA_ROOT)"
            return None
        else:
            try:
                dataset = ds.open_folder(self.settings.data_root / folder, name, binary_masks=binary)
            except ds.DataError as error:
                self._missing_datasets[name] = str(error)
                return None
        self._datasets[name] = dataset
        return dataset

    def calibration_tensors(self, model: Model, count: int) -> tuple[list[np.ndarray], list[str]]:
        """``count`` preprocessed images of the model's calibration set (synthetic when it is absent)."""
        real = [d for d in self.datasets_for(model) if d.name == model.calibration_dataset]
        dataset = real[0] if real else self._dataset(ds.SYNTHETIC, None, True)
        preprocess = self.preprocess(model)
        tensors, names = [], []
        for sample in dataset.limited(count):
            try:
                tensors.append(preprocess(dataset.image(sample)))
            except ds.DataError:
                continue
            names.append(f"{dataset.name}/{sample.stem}")
        return tensors, names

    def preprocess(self, model: Model) -> recipes.ImageFn:
        return recipes.build_preprocess(model.preprocess, model.input_shape[1:])

    # ----------------------------------------------------------------- runtimes and sessions

    def runtime(self, name: str) -> Runtime:
        if name not in self._runtimes:
            self._runtimes[name] = get_runtime(name, self.settings.runtime_config)
        return self._runtimes[name]

    def unavailable_reason(self, item: Item) -> str | None:
        """Why ``item`` cannot run here, or None. Every skip the suite prints comes from here."""
        reason = item.model.skip_variants.get(item.variant.label)
        if reason:
            return reason
        runtime = self.runtime(item.runtime)
        ok, why = runtime.available()
        if not ok:
            return f"runtime {item.runtime}: {why}"
        ok, why = runtime.supports(item.variant)
        if not ok:
            return f"runtime {item.runtime}: {why}"
        if runtime.artifact_kind != "none":
            ok, why = self.builder.runnable(item.model)
            if not ok:
                return why
        return None

    def session(self, item: Item) -> Session:
        """The loaded session of ``item``; raises :class:`RuntimeUnavailable` when its runtime lacks this model."""
        if item.id not in self._sessions:
            runtime = self.runtime(item.runtime)
            artifact = None
            if runtime.artifact_kind == "onnx":
                artifact = self.builder.onnx(item.model, item.variant)
            elif runtime.artifact_kind == "torchscript":
                artifact = self.builder.torchscript(item.model)
            self._sessions[item.id] = runtime.load(artifact, item)
        return self._sessions[item.id]

    def close(self) -> None:
        """Release every session that holds a device or files (the VACC stream must be shut down)."""
        for session in self._sessions.values():
            close = getattr(session, "close", None)
            if callable(close):
                close()
        self._sessions.clear()

    # ----------------------------------------------------------------- running

    def samples_for(self, item: Item, dataset: ds.Dataset) -> list[ds.Sample]:
        """The eval subset (or just a few images when accuracy cannot be judged), plus the golden images."""
        # A device runtime brings its own compiled (trained) model; otherwise the weight source decides.
        trained = self.runtime(item.runtime).artifact_kind == "none" or self.builder.weights(item.model).trained
        limit = self.settings.eval_limit if trained and dataset.name != ds.SYNTHETIC else self.settings.conformance_limit
        if dataset.name == ds.SYNTHETIC:
            limit = None
        chosen = {s.stem: s for s in dataset.limited(limit)}
        for sample in dataset.limited(self.settings.golden_limit):
            chosen.setdefault(sample.stem, sample)
        return sorted(chosen.values(), key=lambda s: s.stem)

    def run(self, item: Item, dataset: ds.Dataset) -> RunResult:
        """The item's maps on its samples of ``dataset``."""
        return self._run(item, item.id, self.session(item), self.runtime(item.runtime).takes_images, dataset)

    def run_source(self, item: Item, dataset: ds.Dataset) -> RunResult:
        """What the model's source (PyTorch eager, or the graph as shipped) gives on the same samples as ``item``."""
        if item.model.name not in self._sessions:
            self._sessions[item.model.name] = self._source_session(item.model)
        return self._run(item, f"{item.model.name}-source", self._sessions[item.model.name], False, dataset)

    def _source_session(self, model: Model) -> Session:
        if model.architecture is not None:
            return EagerTorchSession(self.builder.torch_module(model))
        from .runtimes.base import Artifact
        from .runtimes.onnxruntime import OnnxRuntimeSession

        return OnnxRuntimeSession(Artifact(self.builder.weights(model).path, {}), ["CPUExecutionProvider"], None)

    def _run(self, item: Item, run_id: str, session: Session, takes_images: bool, dataset: ds.Dataset) -> RunResult:
        key = (run_id, dataset.name)
        if key in self._runs:
            return self._runs[key]
        preprocess = self.preprocess(item.model)
        postprocess = recipes.build_postprocess(item.model.postprocess)
        result = RunResult(run_id, dataset.name, {}, {})
        covers = getattr(session, "covers", lambda stem: True)
        for sample in self.samples_for(item, dataset):
            if not covers(sample.stem):
                continue
            try:
                image = dataset.image(sample)
            except ds.DataError as error:
                result.problems.append(str(error))
                continue
            tensor = None if takes_images else preprocess(image)[None]
            started = time.perf_counter()
            outputs = session.run(RunInput(tensor, [image], [sample.stem]))
            result.seconds[sample.stem] = time.perf_counter() - started
            result.maps[sample.stem] = self._checked_map(run_id, sample.stem, outputs, postprocess, image.shape[:2])
        result.problems.extend(dataset.problems)
        self._runs[key] = result
        return result

    @staticmethod
    def _checked_map(
        run_id: str, stem: str, outputs: list[np.ndarray], postprocess: recipes.MapFn, image_hw: tuple[int, int]
    ) -> np.ndarray:
        if not outputs:
            raise OutputError(f"{run_id}: {stem}: the runtime returned no output")
        raw = np.asarray(outputs[0])[0]
        if not np.all(np.isfinite(raw)):
            bad = int(np.size(raw) - np.count_nonzero(np.isfinite(raw)))
            raise OutputError(f"{run_id}: {stem}: model output has {bad} NaN/inf values of {raw.size}")
        if raw.size > 1 and float(raw.max()) == float(raw.min()):
            raise OutputError(f"{run_id}: {stem}: model output is constant ({float(raw.min()):.6g}) over all pixels")
        return postprocess(raw, image_hw)
