"""Evaluation data: folder datasets (``images/`` + ``masks/`` by stem) and a synthetic set that needs nothing.

Problems with individual files never stop a run: a missing mask, an unreadable image or a mask of
the wrong size is recorded by file name in ``Dataset.problems`` / ``Dataset.resized_masks`` and
shows up in the report, while every other sample is still evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SYNTHETIC = "synthetic"


class DataError(ValueError):
    """One file that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Sample:
    stem: str
    image_path: Path | None
    mask_path: Path | None


@dataclass
class Dataset:
    """A list of samples with lazy, cached decoding and a record of every problem met."""

    name: str
    samples: list[Sample]
    binary_masks: bool = True
    problems: list[str] = field(default_factory=list)
    resized_masks: list[str] = field(default_factory=list)
    _images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _synthetic_masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def image(self, sample: Sample) -> np.ndarray:
        """The decoded image (OpenCV BGR, or as stored for grayscale/alpha files); raises :class:`DataError`."""
        if sample.stem not in self._images:
            if sample.image_path is None:
                raise DataError(f"{self.name}/{sample.stem}: no image")
            image = cv2.imread(str(sample.image_path), cv2.IMREAD_UNCHANGED)
            if image is None or image.size == 0:
                raise DataError(f"{sample.image_path}: cannot decode image (missing, corrupt or not an image)")
            if image.dtype != np.uint8:
                image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
            self._images[sample.stem] = image
        return self._images[sample.stem]

    def mask(self, sample: Sample, image_hw: tuple[int, int]) -> np.ndarray:
        """Ground truth as float32 in [0, 1] at the image's size: binarised at >= 128 unless matting alpha."""
        if sample.stem in self._synthetic_masks:
            return self._synthetic_masks[sample.stem]
        if sample.mask_path is None:
            raise DataError(f"{self.name}/{sample.stem}: no mask")
        raw = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise DataError(f"{sample.mask_path}: cannot decode mask")
        if raw.shape != tuple(image_hw):
            if sample.mask_path.name not in self.resized_masks:
                self.resized_masks.append(sample.mask_path.name)
            raw = cv2.resize(raw, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_NEAREST)
        if self.binary_masks:
            return (raw >= 128).astype(np.float32)
        return raw.astype(np.float32) / 255.0

    def limited(self, count: int | None) -> list[Sample]:
        """At most ``count`` samples, evenly spread over the sorted list so a subset still covers the set."""
        if count is None or count >= len(self.samples):
            return list(self.samples)
        if count <= 0:
            return []
        indices = np.linspace(0, len(self.samples) - 1, count).round().astype(int)
        return [self.samples[i] for i in sorted(set(indices.tolist()))]


def open_folder(root: Path, name: str, binary_masks: bool = True) -> Dataset:
    """The dataset in ``root`` (``images/<stem>.<ext>`` and ``masks/<stem>.png``); raises if the folder is absent."""
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise DataError(f"{root}: no images/ folder (expected images/<stem>.<ext> and masks/<stem>.png)")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(masks_dir.glob("*.png"))} if masks_dir.is_dir() else {}
    dataset = Dataset(name, [], binary_masks=binary_masks)
    for stem, image_path in images.items():
        if stem not in masks:
            dataset.problems.append(f"{image_path.name}: no mask masks/{stem}.png; image skipped")
            continue
        dataset.samples.append(Sample(stem, image_path, masks[stem]))
    for stem in sorted(set(masks) - set(images)):
        dataset.problems.append(f"masks/{masks[stem].name}: no image with stem {stem!r}; mask ignored")
    if not dataset.samples:
        raise DataError(f"{root}: no image/mask pairs found")
    return dataset


def synthetic(count: int = 8, seed: int = 20261121) -> Dataset:
    """Deterministic images of textured shapes on textured backgrounds, with their exact masks.

    Sizes, aspect ratios and shape kinds vary so resizing and resizing back are exercised; the
    set is the same on every machine, which is what golden masks need.
    """
    rng = np.random.default_rng(seed)
    dataset = Dataset(SYNTHETIC, [])
    for index in range(count):
        height, width = int(rng.integers(180, 420)), int(rng.integers(180, 420))
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        background = np.stack(
            [
                120 + 60 * np.sin(xx / rng.uniform(10, 40) + c) * np.cos(yy / rng.uniform(10, 40))
                + rng.normal(0, 12, (height, width))
                for c in range(3)
            ],
            axis=-1,
        )
        mask = np.zeros((height, width), np.uint8)
        centre = (int(width * rng.uniform(0.35, 0.65)), int(height * rng.uniform(0.35, 0.65)))
        if index % 2 == 0:
            axes = (int(width * rng.uniform(0.15, 0.3)), int(height * rng.uniform(0.15, 0.3)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            points = rng.uniform([0.2 * width, 0.2 * height], [0.8 * width, 0.8 * height], (6, 2)).astype(np.int32)
            cv2.fillPoly(mask, [cv2.convexHull(points)], 255)
        colour = rng.uniform(0, 255, 3)
        foreground = colour + rng.normal(0, 20, (height, width, 3))
        image = np.where(mask[..., None] > 0, foreground, background)
        stem = f"synthetic_{index:02d}"
        dataset.samples.append(Sample(stem, None, None))
        dataset._images[stem] = np.clip(image, 0, 255).astype(np.uint8)
        dataset._synthetic_masks[stem] = (mask >= 128).astype(np.float32)
    return dataset
