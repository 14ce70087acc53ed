"""The dataset catalogue: which datasets a model is run on here, opened once per session.

The synthetic set is always there; each of a model's datasets is opened from the data root when it
is given and holds the folder, and is otherwise missing with the reason (shown by the skips that
depend on it). Calibration images come from the model's calibration set, else from the synthetic one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import datasets as ds
from .cases import Model
from .recipes import ImageFn


class DatasetCatalogue:
    def __init__(self, data_root: Path | None, synthetic_count: int) -> None:
        self.data_root = data_root
        self.synthetic_count = synthetic_count
        self._open: dict[str, ds.Dataset] = {}
        self._missing: dict[str, str] = {}

    def for_model(self, model: Model) -> list[ds.Dataset]:
        """The synthetic set, plus each of the model's datasets found under the data root."""
        found = [self._dataset(ds.SYNTHETIC, None, True)]
        for spec in model.datasets:
            dataset = self._dataset(spec.name, spec.folder, model.task != "matting")
            if dataset is not None:
                found.append(dataset)
        return found

    def missing_reason(self, name: str) -> str | None:
        return self._missing.get(name)

    def _dataset(self, name: str, folder: str | None, binary: bool) -> ds.Dataset | None:
        if name in self._open:
            return self._open[name]
        if folder is None:
            dataset = ds.synthetic(self.synthetic_count)
        elif self.data_root is None:
            self._missing[name] = "no data root given (--data-root or SEGCONFORM_DATA_ROOT)"
            return None
        else:
            try:
                dataset = ds.open_folder(self.data_root / folder, name, binary_masks=binary)
            except ds.DataError as error:
                self._missing[name] = str(error)
                return None
        self._open[name] = dataset
        return dataset

    def calibration_tensors(self, model: Model, count: int, preprocess: ImageFn) -> tuple[list[np.ndarray], list[str]]:
        """``count`` preprocessed images of the model's calibration set (synthetic when it is absent).

        The images are spread evenly over the set; one that cannot be used (truncated, unreadable) is replaced
        by the next usable one, so a data problem costs the calibration nothing but that image.
        """
        real = [d for d in self.for_model(model) if d.name == model.calibration_dataset]
        dataset = real[0] if real else self._dataset(ds.SYNTHETIC, None, True)
        assert dataset is not None
        spread = dataset.limited(count)
        candidates = spread + [s for s in dataset.samples if s not in spread]
        tensors, names = [], []
        for sample in candidates:
            if len(tensors) == count:
                break
            try:
                tensors.append(preprocess(dataset.image(sample)))
            except ds.DataError:
                continue
            names.append(f"{dataset.name}/{sample.stem}")
        if not tensors:
            raise ds.DataError(f"{dataset.name}: no usable image for calibration ({len(dataset.samples)} tried)")
        return tensors, names
