"""Dataset metrics, named as the seed tables name them.

Saliency metrics come from pysodmetrics (the library behind PySODEvalToolkit, which the zoo's
eval.py uses), fed 8-bit maps exactly as that toolkit reads PNGs. mIoU (two classes: background
and foreground, from one confusion matrix over the dataset) and the matting errors MSE / MAD
(mean over images of the per-image mean) have no library equivalent here and are written out.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Accumulator(Protocol):
    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None: ...

    def results(self) -> dict[str, float]: ...


def to_uint8(map_: np.ndarray) -> np.ndarray:
    """A [0, 1] map as the 8-bit image an evaluation toolkit would read from disk."""
    return np.clip(np.round(map_ * 255.0), 0, 255).astype(np.uint8)


class SaliencyMetrics:
    """MAE, max/avg/adaptive F-measure, S-measure, max/avg/adaptive E-measure, weighted F (pysodmetrics)."""

    def __init__(self) -> None:
        import py_sod_metrics as sod

        self._mae, self._fm, self._sm = sod.MAE(), sod.Fmeasure(), sod.Smeasure()
        self._em, self._wfm = sod.Emeasure(), sod.WeightedFmeasure()

    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        pred, gt = to_uint8(prediction), to_uint8(truth >= 0.5)
        for metric in (self._mae, self._fm, self._sm, self._em, self._wfm):
            metric.step(pred=pred, gt=gt)

    def results(self) -> dict[str, float]:
        fm = self._fm.get_results()["fm"]
        em = self._em.get_results()["em"]
        return {
            "mae": float(self._mae.get_results()["mae"]),
            "max_f": float(np.max(fm["curve"])),
            "avg_f": float(np.mean(fm["curve"])),
            "adp_f": float(fm["adp"]),
            "sm": float(self._sm.get_results()["sm"]),
            "max_em": float(np.max(em["curve"])),
            "avg_em": float(np.mean(em["curve"])),
            "adp_em": float(em["adp"]),
            "wfm": float(self._wfm.get_results()["wfm"]),
        }


class SegmentationMetrics:
    """Two-class mIoU from a dataset-wide confusion matrix; predictions are thresholded at 0.5."""

    def __init__(self) -> None:
        self._confusion = np.zeros((2, 2), np.int64)

    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        pred = (prediction >= 0.5).ravel().astype(np.int64)
        gt = (truth >= 0.5).ravel().astype(np.int64)
        self._confusion += np.bincount(gt * 2 + pred, minlength=4).reshape(2, 2)

    def results(self) -> dict[str, float]:
        return {"miou": miou(self._confusion)}


def miou(confusion: np.ndarray) -> float:
    """Mean over classes of TP / (TP + FP + FN); a class absent from both prediction and truth is left out."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    present = union > 0
    return float(np.mean(true_positive[present] / union[present])) if present.any() else 1.0


class MattingMetrics:
    """MSE and MAD of the alpha matte (mean of per-image means) and mIoU of the mattes thresholded at 0.5."""

    def __init__(self) -> None:
        self._squared: list[float] = []
        self._absolute: list[float] = []
        self._segmentation = SegmentationMetrics()

    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        difference = prediction.astype(np.float64) - truth.astype(np.float64)
        self._squared.append(float(np.mean(difference**2)))
        self._absolute.append(float(np.mean(np.abs(difference))))
        self._segmentation.add(prediction, truth)

    def results(self) -> dict[str, float]:
        return {
            "mse": float(np.mean(self._squared)),
            "mad": float(np.mean(self._absolute)),
            **self._segmentation.results(),
        }


def for_task(task: str) -> Accumulator:
    """The accumulator whose metric names match the seed tables of ``task``."""
    if task == "saliency":
        return SaliencyMetrics()
    if task == "segmentation":
        return SegmentationMetrics()
    if task == "matting":
        return MattingMetrics()
    raise ValueError(f"unknown task {task!r}")


def conformance(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Per-image (mean |difference|, max |difference|) between two maps of the same size."""
    if candidate.shape != reference.shape:
        raise ValueError(f"maps differ in shape: {candidate.shape} vs {reference.shape}")
    difference = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    return float(difference.mean()), float(difference.max())
