"""Structural checks: faults that hide under quantisation noise, caught by what they are rather than by how big.

A one-pixel shift of the output (an off-by-one in a device resize) or an output computed at half resolution
costs a per-image MAE against fp32 of about 0.01, beside 0.004 for a healthy int8 ISNet build: no MAE budget
separates them. These checks measure the properties such faults change and quantisation does not:

* **alignment**: the offset at which the candidate best matches the fp32 reference (phase correlation, per image,
  in the model's own pixels). Quantisation noise has no direction, so a healthy build's offset is zero within a
  small fraction of a pixel on every precision; a shift of one model pixel is a shift whatever the precision.
* **detail kept**: the share of the reference's high-frequency (Laplacian) content that the candidate reproduces,
  ``<L(c), L(r)> / <L(r), L(r)>`` at the model's resolution. Noise adds uncorrelated detail and does not raise it;
  blur (a lower-resolution path) and misplacement lower it.
* **channel order**: the candidate run on the same images with their colour channels swapped. If that matches the
  reference better than the candidate as it is, the runtime reads the channels in the other order.

Each is judged against the model's :class:`~harness.cases.StructureBounds` (defaults measured on healthy fp16 and
int8 builds of the real models; its docstring gives the figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .cases import StructureBounds

#: Images that pass through the channel-order probe (extra runs of the candidate and the reference, so few).
PROBE_IMAGES = 2
#: The probe decides only where swapping the channels moves the reference's output at least this many times the
#: candidate's own distance from it; closer than that, which run is nearer is noise.
PROBE_MARGIN = 3.0


def _at_model_size(map_: np.ndarray, model_hw: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = model_hw
    if map_.shape[:2] == (height, width):
        return map_.astype(np.float32)
    return cv2.resize(map_.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Alignment:
    """Per-image offsets (dx, dy) in model pixels, and their median."""

    offsets: dict[str, tuple[float, float]]
    bound_px: float = StructureBounds().alignment_max_px

    @property
    def median(self) -> tuple[float, float]:
        if not self.offsets:
            return 0.0, 0.0
        values = np.array(list(self.offsets.values()))
        return float(np.median(values[:, 0])), float(np.median(values[:, 1]))

    @property
    def magnitude(self) -> float:
        return float(np.hypot(*self.median))

    @property
    def passed(self) -> bool:
        return bool(self.magnitude <= self.bound_px)  # a NaN fails

    def as_dict(self) -> dict[str, object]:
        dx, dy = self.median
        return {"offset_px": [round(dx, 4), round(dy, 4)], "magnitude_px": round(self.magnitude, 4),
                "bound_px": self.bound_px, "images": len(self.offsets), "passed": self.passed}


def alignment(candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
              model_hw: tuple[int, int], bound_px: float = StructureBounds().alignment_max_px) -> Alignment:
    """The candidate's offset against the reference on every image both have whose reference map is not flat."""
    import cv2

    offsets = {}
    window = None
    for stem, map_ in candidate.items():
        if stem not in reference:
            continue
        ours, theirs = _at_model_size(map_, model_hw), _at_model_size(reference[stem], model_hw)
        if float(theirs.std()) < 1e-3:  # a flat reference has no position to match
            continue
        if window is None or window.shape != theirs.shape:
            window = cv2.createHanningWindow((theirs.shape[1], theirs.shape[0]), cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(theirs.astype(np.float64), ours.astype(np.float64), window.astype(np.float64))
        offsets[stem] = (float(dx), float(dy))
    return Alignment(offsets, bound_px)


def _laplacian(map_: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Laplacian(map_.astype(np.float64), cv2.CV_64F, ksize=3)


@dataclass(frozen=True)
class Detail:
    """Over all images compared: the share of the reference's Laplacian content the candidate reproduces
    (``kept``), and the Laplacian content of the difference relative to the reference's (``spurious``)."""

    kept: float
    spurious: float
    images: int
    bounds: StructureBounds = StructureBounds()

    @property
    def passed(self) -> bool:
        return bool(self.kept >= self.bounds.detail_floor and self.spurious <= self.bounds.spurious_ceiling)  # NaN fails

    def as_dict(self) -> dict[str, object]:
        return {"kept": round(self.kept, 4), "floor": self.bounds.detail_floor, "spurious": round(self.spurious, 4),
                "ceiling": self.bounds.spurious_ceiling, "images": self.images, "passed": self.passed}


def detail_kept(candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                model_hw: tuple[int, int], bounds: StructureBounds = StructureBounds()) -> Detail:
    """``sum <L(c), L(r)> / sum <L(r), L(r)>`` at the model's resolution, over the images both have."""
    shared, energy, residual, images = 0.0, 0.0, 0.0, 0
    for stem, map_ in candidate.items():
        if stem not in reference:
            continue
        theirs = _laplacian(_at_model_size(reference[stem], model_hw))
        ours = _laplacian(_at_model_size(map_, model_hw))
        shared += float(np.sum(ours * theirs))
        energy += float(np.sum(theirs * theirs))
        residual += float(np.sum((ours - theirs) ** 2))
        images += 1
    if energy <= 0:
        return Detail(1.0, 0.0 if residual == 0 else float("inf"), images, bounds)
    return Detail(shared / energy, residual / energy, images, bounds)


@dataclass(frozen=True)
class ChannelProbe:
    """Mean per-image MAE against the reference of: the candidate as it is (``as_is``), the candidate fed the images
    with their channels swapped (``swapped``), and the reference itself fed them (``sensitivity``: how much the
    model cares about channel order at all)."""

    as_is: float
    swapped: float
    sensitivity: float
    images: int

    @property
    def decisive(self) -> bool:
        """Whether a channel swap moves the model's output well beyond the candidate's own distance from the
        reference (u2netp barely cares about colour on the synthetic images: 0.001, below int8 noise)."""
        return self.sensitivity >= PROBE_MARGIN * min(self.as_is, self.swapped)

    @property
    def passed(self) -> bool:
        """Fails when decisive and the candidate fed swapped channels is the closer one."""
        return not (self.decisive and self.swapped < self.as_is)

    def as_dict(self) -> dict[str, object]:
        return {"mae_as_is": round(self.as_is, 6), "mae_swapped": round(self.swapped, 6),
                "colour_sensitivity": round(self.sensitivity, 6), "decisive": self.decisive, "images": self.images,
                "passed": self.passed}


def channel_probe(as_is: Mapping[str, np.ndarray], swapped: Mapping[str, np.ndarray],
                  reference: Mapping[str, np.ndarray], reference_swapped: Mapping[str, np.ndarray]) -> ChannelProbe:
    """Compare the candidate's two runs, and the reference's swapped run, with the reference, on the probe images."""
    stems = [s for s in swapped if s in as_is and s in reference and s in reference_swapped]

    def mae(maps: Mapping[str, np.ndarray]) -> float:
        return float(np.mean([np.mean(np.abs(maps[s] - reference[s])) for s in stems])) if stems else 0.0

    return ChannelProbe(mae(as_is), mae(swapped), mae(reference_swapped), len(stems))
