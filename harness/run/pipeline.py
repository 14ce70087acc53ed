"""The one run path: image -> preprocess -> session -> postprocess -> validated map.

Every place that runs a model goes through :class:`Pipeline`: the items' checks (through
:meth:`harness.items.handle.ItemHandle.run`), the fp32 source runs, fault localisation's candidate builds and the
latency checks' pipeline timing. Validation belongs to the path, so no caller can forget it: an empty,
NaN/inf or constant output is an :class:`OutputError` naming the run and the image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data import datasets as ds
from ..data import recipes
from ..data.cases import Model
from ..runtimes import RunInput, Session


class OutputError(ValueError):
    """A model output that cannot be a valid prediction (NaN, infinite, constant); names the run and image."""


@dataclass
class RunResult:
    """One run's output maps on one dataset, with timing and every per-file problem met."""

    run_id: str
    dataset: str
    maps: dict[str, np.ndarray]
    seconds: dict[str, float]
    problems: list[str] = field(default_factory=list)

    @property
    def mean_seconds(self) -> float:
        return float(np.mean(list(self.seconds.values()))) if self.seconds else float("nan")


class Pipeline:
    """A model's recipe, built once: turns images into maps through any session."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.preprocess = recipes.build_preprocess(model.preprocess, model.input_shape[1:])
        self.postprocess = recipes.build_postprocess(model.postprocess)

    def batch(self, image: np.ndarray, stem: str, takes_images: bool) -> RunInput:
        """What a session takes for one image: the decoded image, and the tensor unless the device preprocesses."""
        return RunInput(None if takes_images else self.preprocess(image)[None], [image], [stem])

    def infer(self, session: Session, image: np.ndarray, stem: str, takes_images: bool, run_id: str = "") -> np.ndarray:
        """The validated map of one image: what every check, every latency figure and every build is made of."""
        outputs = session.run(self.batch(image, stem, takes_images))
        return self.validated(run_id, stem, outputs, image.shape[:2])

    def validated(self, run_id: str, stem: str, outputs: list[np.ndarray], image_hw: tuple[int, int]) -> np.ndarray:
        if not outputs:
            raise OutputError(f"{run_id}: {stem}: the runtime returned no output")
        raw = np.asarray(outputs[0])[0]
        finite = np.isfinite(raw)
        if not finite.all():
            bad = int(raw.size - np.count_nonzero(finite))
            raise OutputError(f"{run_id}: {stem}: model output has {bad} NaN/inf values of {raw.size}")
        if raw.size > 1 and float(raw.max()) == float(raw.min()):
            raise OutputError(f"{run_id}: {stem}: model output is constant ({float(raw.min()):.6g}) over all pixels")
        return self.postprocess(raw, image_hw)

    def run(self, run_id: str, session: Session, takes_images: bool, dataset: ds.Dataset,
            samples: list[ds.Sample]) -> RunResult:
        """Maps of ``samples`` of ``dataset``; images that cannot be used are recorded, not run."""
        result = RunResult(run_id, dataset.name, {}, {})
        for sample in samples:
            if not session.covers(sample.stem):
                continue
            try:
                image = dataset.image(sample)
            except ds.DataError as error:
                result.problems.append(str(error))
                continue
            started = time.perf_counter()
            result.maps[sample.stem] = self.infer(session, image, sample.stem, takes_images, run_id)
            result.seconds[sample.stem] = time.perf_counter() - started
        return result
