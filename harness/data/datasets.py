"""Evaluation data: folder datasets (``images/`` + ``masks/`` by stem) and a synthetic set that needs nothing.

A problem with one file never stops a run, and never passes quietly either. Each is recorded as a
:class:`DataProblem` naming the file (unreadable or truncated image, missing or orphan mask, a mask
of another size than its image, a mask with values other than 0/255 where binary ground truth is
expected); the checks turn every problem into a pytest warning (:class:`DataWarning`), count them in
the report, and fail under ``--strict-data``. An image that cannot be trusted (unreadable, truncated)
is left out of scoring; a resized mask is still scored (resized with nearest, as the data's own
instructions say) but reported, unless the case file accepts that kind for that dataset.

Truncated files matter because OpenCV decodes a JPEG cut short without an error, filling the missing
rows with grey: they are caught by the format's end marker (JPEG EOI, PNG IEND, RIFF/BMP sizes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SYNTHETIC = "synthetic"

#: Problem kinds and what each means, as a report explains them.
PROBLEM_KINDS = {
    "unreadable_image": "image that does not decode (left out)",
    "truncated_image": "image file cut short; decoders fill the rest with grey (left out)",
    "ambiguous_image": "two image files with one stem (a.jpg and a.png): which one the mask is of is unknown (both "
                       "left out)",
    "missing_mask": "image without a mask (left out)",
    "orphan_mask": "mask without an image (ignored)",
    "unreadable_mask": "mask that does not decode (image left out)",
    "resized_mask": "mask of another size than its image (resized with nearest, scored)",
    "non_binary_mask": "binary mask with values other than 0 and 255 (binarised at 128, scored)",
}

#: How far before the end of a JPEG file its end-of-image marker may sit (some writers pad).
_JPEG_TAIL = 64


class DataError(ValueError):
    """One file that cannot be used; the message names it and says why."""


class DataWarning(UserWarning):
    """A data problem with one file; ``--strict-data`` turns it into a failure of the check that met it."""


@dataclass(frozen=True)
class DataProblem:
    kind: str
    file: str
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown data problem kind {self.kind!r}")

    def __str__(self) -> str:
        return f"{self.file}: {self.detail}"


@dataclass(frozen=True)
class Sample:
    stem: str
    image_path: Path | None
    mask_path: Path | None


def truncation(path: Path, data: bytes) -> str | None:
    """Why ``data`` (the bytes of ``path``) is a truncated image file, or None when its format's end is there."""
    suffix = path.suffix.lower()
    if data[:3] == b"\xff\xd8\xff" or suffix in (".jpg", ".jpeg"):
        if b"\xff\xd9" not in data[-_JPEG_TAIL:]:
            return f"no JPEG end-of-image marker (FFD9) in its last {_JPEG_TAIL} bytes: the file is cut short"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            return "no PNG IEND chunk at its end: the file is cut short"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            return f"{len(data)} bytes, its RIFF header declares {declared}"
    elif data[:2] == b"BM" and len(data) >= 6:
        declared = int.from_bytes(data[2:6], "little")
        if len(data) < declared:
            return f"{len(data)} bytes, its BMP header declares {declared}"
    return None


@dataclass
class Dataset:
    """A list of samples with lazy, cached decoding and a record of every data problem met."""

    name: str
    samples: list[Sample]
    binary_masks: bool = True
    problems: list[DataProblem] = field(default_factory=list)
    _images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def problem(self, kind: str, file: Path | str, detail: str) -> DataProblem:
        """Record a problem once (decoding the same file again does not repeat it)."""
        shown = str(file)
        found = DataProblem(kind, shown, detail)
        if found not in self.problems:
            self.problems.append(found)
        return found

    def image(self, sample: Sample) -> np.ndarray:
        """The decoded image (OpenCV BGR, or as stored for grayscale/alpha files); raises :class:`DataError`."""
        if sample.stem not in self._images:
            if sample.image_path is None:
                raise DataError(f"{self.name}/{sample.stem}: no image")
            self._images[sample.stem] = self._decode_image(sample.image_path)
        return self._images[sample.stem]

    def _decode_image(self, path: Path) -> np.ndarray:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DataError(str(self.problem("unreadable_image", path, f"cannot read: {error.strerror}"))) from error
        if not data:
            raise DataError(str(self.problem("unreadable_image", path, "empty file (0 bytes)")))
        cut = truncation(path, data)
        if cut:
            raise DataError(str(self.problem("truncated_image", path, cut)))
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as error:  # OpenCV asserts on some malformed headers instead of returning None
            raise DataError(str(self.problem("unreadable_image", path, f"cannot decode image: "
                                                                       f"{str(error).strip().splitlines()[-1]}")))
        if image is None or image.size == 0:
            raise DataError(str(self.problem("unreadable_image", path,
                                             "cannot decode image (corrupt or not an image)")))
        if image.dtype != np.uint8:
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
        return image

    def mask(self, sample: Sample, image_hw: tuple[int, int]) -> np.ndarray:
        """Ground truth as float32 in [0, 1] at the image's size: binarised at >= 128 unless matting alpha."""
        if sample.stem in self._masks:
            return self._masks[sample.stem]
        if sample.mask_path is None:
            raise DataError(f"{self.name}/{sample.stem}: no mask")
        raw = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise DataError(str(self.problem("unreadable_mask", sample.mask_path, "cannot decode mask")))
        if raw.shape != tuple(image_hw):
            self.problem("resized_mask", sample.mask_path,
                         f"mask is {raw.shape[1]}x{raw.shape[0]}, its image {image_hw[1]}x{image_hw[0]}: "
                         "resized (nearest)")
            raw = cv2.resize(raw, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_NEAREST)
        if self.binary_masks:
            other = np.count_nonzero((raw != 0) & (raw != 255))
            if other:
                self.problem("non_binary_mask", sample.mask_path,
                             f"{other} of {raw.size} pixels are neither 0 nor 255: binarised at 128")
            mask = (raw >= 128).astype(np.float32)
        else:
            mask = raw.astype(np.float32) / 255.0
        self._masks[sample.stem] = mask
        return mask

    def limited(self, count: int | None) -> list[Sample]:
        """At most ``count`` samples, evenly spread over the sorted list so a subset still covers the set."""
        if count is None or count >= len(self.samples):
            return list(self.samples)
        if count <= 0:
            return []
        indices = np.linspace(0, len(self.samples) - 1, count).round().astype(int)
        return [self.samples[i] for i in sorted(set(indices.tolist()))]

    @property
    def files(self) -> int:
        """Images found in the folder, paired or not: what "scored N of M" counts against."""
        return len(self.samples) + sum(p.kind in ("missing_mask", "ambiguous_image") for p in self.problems)


def open_folder(root: Path, name: str, binary_masks: bool = True) -> Dataset:
    """The dataset in ``root`` (``images/<stem>.<ext>`` and ``masks/<stem>.png``); raises if the folder is absent."""
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise DataError(f"{root}: no images/ folder (expected images/<stem>.<ext> and masks/<stem>.png)")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, []).append(path)
    masks = {p.stem: p for p in sorted(masks_dir.glob("*.png"))} if masks_dir.is_dir() else {}
    dataset = Dataset(name, [], binary_masks=binary_masks)
    images = {}
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            images[stem] = paths[0]
            continue
        for path in paths:
            others = ", ".join(p.name for p in paths if p != path)
            dataset.problem("ambiguous_image", path, f"another image has the stem {stem!r} ({others}); which one "
                                                     f"masks/{stem}.png is of is unknown: both left out")
    for stem, image_path in images.items():
        if stem not in masks:
            dataset.problem("missing_mask", image_path, f"no mask masks/{stem}.png; image left out")
            continue
        dataset.samples.append(Sample(stem, image_path, masks[stem]))
    for stem in sorted(set(masks) - set(by_stem)):
        dataset.problem("orphan_mask", masks[stem], f"no image with stem {stem!r}; mask ignored")
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
        dataset._masks[stem] = (mask >= 128).astype(np.float32)
    return dataset
