"""Structural checks: faults that hide under quantisation noise, caught by what they are rather than by how big.

A one-pixel shift of the output (an off-by-one in a device resize) or an output computed at half resolution
costs a per-image MAE against fp32 of about 0.01, beside 0.004 for a healthy int8 ISNet build: no MAE budget
separates them. These checks measure the properties such faults change and quantisation does not:

* **alignment**: the offset at which the candidate best matches the fp32 reference (phase correlation, per image,
  in the model's own pixels). Quantisation noise has no direction, so a healthy build's offset is zero within a
  small fraction of a pixel on every image and precision; a shift of one model pixel is a shift whatever the
  precision. Judged per image: a shift on some images only (a resize path taken for some image sizes) is a shift,
  which a median over images hides.
* **detail kept**: the share of the reference's high-frequency (Laplacian) content that the candidate reproduces,
  ``<L(c), L(r)> / <L(r), L(r)>`` at the model's resolution. Noise adds uncorrelated detail and does not raise it;
  blur (a lower-resolution path) and misplacement lower it.
* **channel order**: the candidate as it is, against the reference fed each other channel order of
  :data:`harness.data.channels.CHANNEL_ORDERS` (the other permutations, and one plane fed to all three). If one of
  them matches the candidate better than the reference fed the recipe's order, the runtime feeds the channels that
  way. Comparing against the reference's alternatives, not the candidate's, is what decides a replicated plane: no
  reordering of the candidate's input undoes a lost plane, but the reference fed that plane reproduces it. A probe
  with no images, or with an order it cannot tell from the candidate's own error that moves the output more than the
  conformance budget allows, fails: it never passes without deciding.

Each is judged against the item's :class:`~harness.data.cases.StructureBounds` (defaults measured on healthy fp16 and
int8 builds of the real models, its docstring gives the figures; a variant's own,
:class:`~harness.data.cases.Structure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..data.case_bounds import StructureBounds

#: Images that pass through the channel-order probe. Each alternative order costs this many runs of the fp32
#: reference, once per model and session (every item of the model, faulty runtimes included, shares them), and no
#: run of the candidate: 16 reference runs for the 8 orders, measured on a shared 2-core machine at about 2 s for
#: ISNet at 320, 8 s for u2netp, 17 s for U2-Net and 21 s for ISNet-1024. The probe it replaced ran each item's
#: candidate on 2 swapped images and the reference on the same 2 once per model.
PROBE_IMAGES = 2
#: An alternative order is decided only where it moves the reference's output at least this many times the
#: candidate's distance from the nearer of the two references; closer than that, which is nearer is noise.
PROBE_MARGIN = 3.0


def _at_model_size(map_: np.ndarray, model_hw: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = model_hw
    if map_.shape[:2] == (height, width):
        return map_.astype(np.float32)
    return cv2.resize(map_.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Alignment:
    """Per-image offsets (dx, dy) in model pixels, judged per image against ``bound_px``."""

    offsets: dict[str, tuple[float, float]]
    bound_px: float = StructureBounds().alignment_max_px

    @property
    def magnitudes(self) -> dict[str, float]:
        return {stem: float(np.hypot(dx, dy)) for stem, (dx, dy) in self.offsets.items()}

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
    def beyond(self) -> list[str]:
        """The images whose offset exceeds the bound, farthest first (a NaN offset is beyond any bound)."""
        magnitudes = self.magnitudes
        over = [stem for stem, value in magnitudes.items() if not value <= self.bound_px]
        return sorted(over, key=lambda stem: -np.nan_to_num(magnitudes[stem], nan=np.inf))

    @property
    def worst(self) -> float:
        return max(self.magnitudes.values(), default=0.0)

    @property
    def passed(self) -> bool:
        return not self.beyond

    def as_dict(self) -> dict[str, object]:
        dx, dy = self.median
        return {"offset_px": [round(dx, 4), round(dy, 4)], "magnitude_px": round(self.magnitude, 4),
                "worst_px": round(self.worst, 4), "beyond": self.beyond, "bound_px": self.bound_px,
                "images": len(self.offsets), "passed": self.passed}


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
        # NaN fails
        return bool(self.kept >= self.bounds.detail_floor and self.spurious <= self.bounds.spurious_ceiling)

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
    """On the probe images, the mean per-image MAE of the candidate as it is against the reference (``as_is``) and
    against the reference fed each alternative order (``alternatives``), how far each order moves the reference's
    own output (``sensitivity``: how much the model cares about it), and ``negligible``: the move no larger than the
    item's conformance budget allows (its mean MAE). NaN where there were no images.

    Each order is decided (it stands out of the candidate's own distance), negligible (undecided, but a runtime
    feeding it moves the output no more than the budget conformance already holds the item to: u2net, nearly blind
    to permutations, at int8) or undecided. The probe passes when it had images, no decided order matches the
    candidate better, and no order is left undecided.
    """

    as_is: float
    alternatives: dict[str, float]
    sensitivity: dict[str, float]
    negligible: float
    images: int

    def decided(self, order: str) -> bool:
        """Whether ``order`` moves the reference well beyond the candidate's distance from the nearer of the two
        references; closer than that (a collapsed build, farther from every reference than the orders move it),
        which is nearer is noise."""
        return bool(self.sensitivity[order] >= PROBE_MARGIN * min(self.as_is, self.alternatives[order]))  # NaN: no

    @property
    def matches(self) -> list[str]:
        """The decided orders that match the candidate better than the recipe's, closest first."""
        closer = [order for order, mae in self.alternatives.items() if self.decided(order) and mae < self.as_is]
        return sorted(closer, key=lambda order: self.alternatives[order])

    @property
    def negligible_orders(self) -> list[str]:
        return [o for o in self.alternatives if not self.decided(o) and self.sensitivity[o] <= self.negligible]

    @property
    def undecided(self) -> list[str]:
        return [o for o in self.alternatives if not self.decided(o) and not self.sensitivity[o] <= self.negligible]

    @property
    def decisive(self) -> bool:
        """Whether every order was decided or is negligible, on at least one image."""
        return self.images > 0 and not self.undecided

    @property
    def passed(self) -> bool:
        return self.decisive and not self.matches

    @property
    def reason(self) -> str:
        """Why it fails ('' when it passes)."""
        if self.images == 0:
            return "not decided: no probe image has the candidate's, the reference's and every reordered output"
        if self.matches:
            order = self.matches[0]
            return (f"the reference fed the channels as {order} matches the candidate better than fed them as the "
                    f"recipe orders them (MAE {self.alternatives[order]:.4g} vs {self.as_is:.4g}, {self.images} "
                    f"images): the runtime feeds the channels as {order}")
        if self.undecided:
            moves = ", ".join(f"{order} {self.sensitivity[order]:.3g}" for order in self.undecided)
            return (f"not decided: {moves} move the reference's output beyond the budget ({self.negligible:g}) but "
                    f"less than {PROBE_MARGIN:g} times the candidate's own distance from it ({self.as_is:.4g}, "
                    f"{self.images} images)")
        return ""

    def as_dict(self) -> dict[str, object]:
        return {"mae_as_is": round(self.as_is, 6),
                "mae_swapped": round(self.alternatives.get("BGR", float("nan")), 6),  # the report's RGB-vs-BGR cell
                "alternatives": {order: {"mae": round(mae, 6), "sensitivity": round(self.sensitivity[order], 6),
                                         "decided": self.decided(order)} for order, mae in self.alternatives.items()},
                "negligible_below": self.negligible, "matches": self.matches, "negligible": self.negligible_orders,
                "undecided": self.undecided, "decisive": self.decisive, "images": self.images, "passed": self.passed}


def channel_probe(candidate: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                  alternatives: Mapping[str, Mapping[str, np.ndarray]], negligible: float) -> ChannelProbe:
    """The candidate against the reference and against the reference fed each order of ``alternatives`` (order ->
    maps), on the images all of them have (the probe images); ``negligible``: the item's conformance budget (mean
    per-image MAE)."""
    stems = [s for s in candidate if s in reference and all(s in maps for maps in alternatives.values())]

    def mae(ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray]) -> float:
        if not stems:
            return float("nan")
        return float(np.mean([np.mean(np.abs(ours[s] - theirs[s])) for s in stems]))

    return ChannelProbe(mae(candidate, reference),
                        {order: mae(candidate, maps) for order, maps in alternatives.items()},
                        {order: mae(maps, reference) for order, maps in alternatives.items()}, negligible, len(stems))
