"""Dataset metrics, named as the seed tables name them, kept per image so intervals cost nothing to compute.

Saliency metrics come from pysodmetrics (the library behind PySODEvalToolkit, which the zoo's
eval.py uses), fed 8-bit maps exactly as that toolkit reads PNGs. Every one of its dataset metrics is
a mean over images of a per-image value or a per-image curve over 256 thresholds (max/avg F and E
take the max/mean over thresholds of the mean curve), so the per-image values pysodmetrics keeps are
stored as :class:`Scores`: the dataset value, a bootstrap resample of it and a paired difference with
another run on the same images are then one weighted mean each, never a second pass over the images.
mIoU (two classes, one confusion matrix over the dataset) and the matting errors MSE / MAD (mean of
per-image means) have no library equivalent here and are written out the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Metric -> (per-image part it is computed from, reduction of the part's weighted mean).
#: ``mean``: the mean itself; ``curve_max`` / ``curve_mean``: max / mean over thresholds of the mean curve;
#: ``miou``: mIoU of the summed confusion matrix.
METRICS: dict[str, tuple[str, str]] = {
    "mae": ("mae", "mean"), "max_f": ("f_curve", "curve_max"), "avg_f": ("f_curve", "curve_mean"),
    "adp_f": ("adp_f", "mean"), "sm": ("sm", "mean"), "max_em": ("em_curve", "curve_max"),
    "avg_em": ("em_curve", "curve_mean"), "adp_em": ("adp_em", "mean"), "wfm": ("wfm", "mean"),
    "miou": ("confusion", "miou"), "mse": ("squared", "mean"), "mad": ("absolute", "mean"),
}

#: The metrics of each task, in the seed tables' order.
TASK_METRICS = {
    "saliency": ("mae", "max_f", "avg_f", "adp_f", "sm", "max_em", "avg_em", "adp_em", "wfm"),
    "segmentation": ("miou",),
    "matting": ("mse", "mad", "miou"),
}


def to_uint8(map_: np.ndarray) -> np.ndarray:
    """A [0, 1] map as the 8-bit image an evaluation toolkit would read from disk."""
    return np.clip(np.round(map_ * 255.0), 0, 255).astype(np.uint8)


def miou(confusion: np.ndarray) -> float:
    """Mean over classes of TP / (TP + FP + FN) of a square confusion matrix (rows: truth, columns: prediction);
    a class absent from both prediction and truth is left out."""
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    present = union > 0
    return float(np.mean(true_positive[present] / union[present])) if present.any() else 1.0


def _miou_rows(confusion: np.ndarray) -> np.ndarray:
    """:func:`miou` of each row of flattened two-class confusion matrices [tn, fp, fn, tp], vectorised."""
    tn, fp, fn, tp = confusion.T
    unions = np.stack([tn + fp + fn, tp + fp + fn], axis=1)  # background, foreground
    hits = np.stack([tn, tp], axis=1)
    present = unions > 0
    ratios = np.divide(hits, unions, out=np.zeros_like(hits, dtype=np.float64), where=present)
    counts = present.sum(axis=1)
    return np.where(counts > 0, ratios.sum(axis=1) / np.maximum(counts, 1), 1.0)


_REDUCE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda means: means,
    "curve_max": lambda means: means.max(axis=-1),
    "curve_mean": lambda means: means.mean(axis=-1),
    "miou": _miou_rows,
}


@dataclass(frozen=True)
class Scores:
    """Per-image parts of one run on one dataset, in ``stems`` order; every dataset metric follows from them."""

    task: str
    stems: tuple[str, ...]
    parts: dict[str, np.ndarray]

    @property
    def metrics(self) -> tuple[str, ...]:
        return TASK_METRICS[self.task]

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, stems: Sequence[str]) -> "Scores":
        """The same scores restricted to ``stems``, in that order (for pairing two runs image by image)."""
        index = {stem: i for i, stem in enumerate(self.stems)}
        rows = np.array([index[s] for s in stems], dtype=np.int64)
        return Scores(self.task, tuple(stems), {k: v[rows] for k, v in self.parts.items()})

    def per_image(self, metric: str) -> np.ndarray | None:
        """The per-image values whose mean is ``metric`` (None for a metric that is not such a mean)."""
        part, reduction = METRICS[metric]
        if reduction == "mean":
            return self.parts[part].astype(np.float64)
        if reduction == "curve_mean":  # the mean over thresholds of a mean curve is the mean of per-image means
            return self.parts[part].mean(axis=1).astype(np.float64)
        return None

    def results(self) -> dict[str, float]:
        """The dataset metrics over all images."""
        if not self.stems:
            return {}
        uniform = np.ones((1, len(self.stems)))
        return {name: float(values[0]) for name, values in self.weighted(uniform).items()}

    def weighted(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric under each row of ``weights`` (R x images, e.g. bootstrap counts): R values per metric."""
        total = weights.sum(axis=1, keepdims=True)
        means: dict[str, np.ndarray] = {}
        out = {}
        for name in self.metrics:
            part, reduction = METRICS[name]
            if part not in means:
                values = self.parts[part].reshape(len(self.stems), -1).astype(np.float64)
                means[part] = (weights @ values) / total
                if self.parts[part].ndim == 1:
                    means[part] = means[part][:, 0]
            out[name] = _REDUCE[reduction](means[part])
        return out


class Scorer:
    """Collects per-image parts for one task; ``add`` one image at a time, then :meth:`scores`."""

    def __init__(self, task: str) -> None:
        if task not in TASK_METRICS:
            raise ValueError(f"unknown task {task!r}")
        self.task = task
        self._stems: list[str] = []
        self._parts: dict[str, list[np.ndarray]] = {}

    def add(self, prediction: np.ndarray, truth: np.ndarray, stem: str | None = None) -> None:
        for name, value in score_image(self.task, prediction, truth).items():
            self._parts.setdefault(name, []).append(value)
        self._stems.append(stem if stem is not None else str(len(self._stems)))

    def scores(self) -> Scores:
        return Scores(self.task, tuple(self._stems), {k: np.asarray(v) for k, v in self._parts.items()})

    def results(self) -> dict[str, float]:
        return self.scores().results()


def score_image(task: str, prediction: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """The per-image parts of one prediction against its ground truth (both float in [0, 1], same size)."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {truth.shape} differ in size")
    if task == "saliency":
        return _saliency_parts(prediction, truth)
    parts = {"confusion": _confusion(prediction, truth)}
    if task == "matting":
        difference = prediction.astype(np.float64) - truth.astype(np.float64)
        parts.update(squared=np.float64(np.mean(difference**2)), absolute=np.float64(np.mean(np.abs(difference))))
    return parts


def _confusion(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[tn, fp, fn, tp] of the maps thresholded at 0.5."""
    pred = (prediction >= 0.5).ravel().astype(np.int64)
    gt = (truth >= 0.5).ravel().astype(np.int64)
    return np.bincount(gt * 2 + pred, minlength=4).astype(np.int64)


def _saliency_parts(prediction: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    import py_sod_metrics as sod

    pred, gt = to_uint8(prediction), to_uint8(truth >= 0.5)
    mae, fm, sm, em, wfm = sod.MAE(), sod.Fmeasure(), sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure()
    for metric in (mae, fm, sm, em, wfm):
        metric.step(pred=pred, gt=gt)
    return {
        "mae": np.float64(mae.maes[0]),
        "f_curve": np.asarray(fm.changeable_fms[0], np.float64),
        "adp_f": np.float64(fm.adaptive_fms[0]),
        "sm": np.float64(sm.sms[0]),
        "em_curve": np.asarray(em.changeable_ems[0], np.float64),
        "adp_em": np.float64(em.adaptive_ems[0]),
        "wfm": np.float64(wfm.weighted_fms[0]),
    }


def conformance(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Per-image (mean |difference|, max |difference|) between two maps of the same size."""
    if candidate.shape != reference.shape:
        raise ValueError(f"maps differ in shape: {candidate.shape} vs {reference.shape}")
    difference = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    return float(difference.mean()), float(difference.max())
