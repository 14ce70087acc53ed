"""Colour-channel orders of a decoded image: the structure check's channel probe feeds the fp32 reference each of
them, and the ``bgr`` / ``gbr`` / ``replicate`` faults feed a runtime one, so both stages share this one table."""

from __future__ import annotations

import numpy as np

#: Channel orders a runtime may feed the model instead of the recipe's, as indices into the recipe's (R, G, B): the
#: five other permutations (BGR: a colour conversion missed or done twice; GBR, BRG: planes read from the wrong
#: offset; RBG, GRB: two planes swapped) and one plane fed to all three (a driver handing a single plane to a
#: three-plane input).
CHANNEL_ORDERS: dict[str, tuple[int, int, int]] = {
    "BGR": (2, 1, 0), "GBR": (1, 2, 0), "BRG": (2, 0, 1), "RBG": (0, 2, 1), "GRB": (1, 0, 2),
    "RRR": (0, 0, 0), "GGG": (1, 1, 1), "BBB": (2, 2, 2),
}


def reordered(image: np.ndarray, order: str) -> np.ndarray:
    """``image`` as the datasets decode it (OpenCV BGR, BGRA or one plane) with its colour channels in ``order``
    (:data:`CHANNEL_ORDERS`) of the RGB the recipe makes of it; an alpha plane stays, one plane has no order."""
    if image.ndim < 3 or image.shape[-1] < 3:
        return image
    changed = image.copy()
    changed[..., :3] = image[..., 2::-1][..., list(CHANNEL_ORDERS[order])][..., ::-1]
    return changed
