"""Bad data files get a data problem naming the file (:mod:`harness.data.datasets`), never an OpenCV traceback or a
silent merge: a zero-byte image, and two images with one stem."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.data.datasets import DataError, open_folder


def _pair(folder: Path, stem: str, suffix: str = ".png") -> None:
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / "images" / f"{stem}{suffix}"), np.full((8, 6, 3), 90, np.uint8))
    assert cv2.imwrite(str(folder / "masks" / f"{stem}.png"), np.full((8, 6), 255, np.uint8))


def test_a_zero_byte_png_is_an_unreadable_image_naming_the_file(tmp_path):
    _pair(tmp_path, "a")
    _pair(tmp_path, "b")
    empty = tmp_path / "images" / "b.png"
    empty.write_bytes(b"")
    dataset = open_folder(tmp_path, "set")
    sample = next(s for s in dataset.samples if s.stem == "b")
    with pytest.raises(DataError, match=r"b\.png: empty file \(0 bytes\)"):
        dataset.image(sample)
    assert [(p.kind, p.file) for p in dataset.problems] == [("unreadable_image", str(empty))]


def test_two_images_with_one_stem_are_both_left_out_and_named(tmp_path):
    _pair(tmp_path, "a", ".png")
    _pair(tmp_path, "a", ".jpg")
    _pair(tmp_path, "b")
    dataset = open_folder(tmp_path, "set")
    assert [s.stem for s in dataset.samples] == ["b"]
    problems = sorted((p.kind, Path(p.file).name) for p in dataset.problems)
    assert problems == [("ambiguous_image", "a.jpg"), ("ambiguous_image", "a.png")]
    assert all("masks/a.png" in p.detail for p in dataset.problems)
    assert dataset.files == 3  # scored 1 of the 3 image files found
