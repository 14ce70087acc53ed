"""Datasets (:mod:`harness.data.datasets`): pairing by stem, per-file problems, mask rules, subsets, synthetic data."""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.data.datasets import DataError, Dataset, Sample, open_folder, synthetic, truncation


def _image(path: Path, height: int, width: int, value: int = 90) -> np.ndarray:
    image = np.full((height, width, 3), value, np.uint8)
    image[: height // 2] = (10, 200, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return image


def _mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """a, b, e paired; c.png has no mask; d.png has no image; e.jpg is garbage bytes."""
    _image(tmp_path / "images" / "a.png", 8, 6)
    _image(tmp_path / "images" / "b.jpg", 8, 6)
    _image(tmp_path / "images" / "c.png", 8, 6)
    (tmp_path / "images" / "e.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg \x00\x01")
    (tmp_path / "images" / "notes.txt").write_text("not an image", encoding="utf-8")
    for stem in ("a", "b", "d", "e"):
        _mask(tmp_path / "masks" / f"{stem}.png", np.full((8, 6), 255))
    return tmp_path


def test_folder_pairs_images_and_masks_by_stem(folder):
    dataset = open_folder(folder, "demo")
    assert [s.stem for s in dataset.samples] == ["a", "b", "e"]
    for sample in dataset.samples:
        assert sample.image_path.stem == sample.mask_path.stem == sample.stem
        assert sample.mask_path.parent.name == "masks"


def test_unpaired_image_and_mask_are_listed_by_name(folder):
    problems = open_folder(folder, "demo").problems
    assert [(p.kind, Path(p.file).name) for p in problems] == [("missing_mask", "c.png"), ("orphan_mask", "d.png")]
    assert "no mask" in str(problems[0]) and "no image" in str(problems[1])
    assert open_folder(folder, "demo").files == 4  # a, b, e paired and c without a mask


def test_corrupt_image_raises_data_error_naming_it_and_the_rest_still_loads(folder):
    dataset = open_folder(folder, "demo")
    by_stem = {s.stem: s for s in dataset.samples}
    with pytest.raises(DataError, match=r"e\.jpg"):
        dataset.image(by_stem["e"])
    assert [p.kind for p in dataset.problems if p.file.endswith("e.jpg")] == ["truncated_image"]
    for stem in ("a", "b"):
        image = dataset.image(by_stem[stem])
        assert image.shape == (8, 6, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(dataset.mask(by_stem[stem], image.shape[:2]), np.ones((8, 6), np.float32))


def test_png_image_decodes_exactly(folder):
    dataset = open_folder(folder, "demo")
    expected = np.full((8, 6, 3), 90, np.uint8)
    expected[:4] = (10, 200, 30)
    np.testing.assert_array_equal(dataset.image(dataset.samples[0]), expected)


def test_folder_without_images_or_pairs_raises(tmp_path):
    with pytest.raises(DataError, match="no images/ folder"):
        open_folder(tmp_path, "demo")
    _image(tmp_path / "images" / "x.png", 4, 4)
    with pytest.raises(DataError, match="no image/mask pairs"):
        open_folder(tmp_path, "demo")


def test_mask_of_another_size_is_resized_with_nearest_and_recorded(tmp_path):
    _image(tmp_path / "images" / "big.png", 40, 60)
    small = np.zeros((20, 30), np.uint8)
    small[3:9, 4:25] = 255
    small[15, 29] = 255
    _mask(tmp_path / "masks" / "big.png", small)
    _image(tmp_path / "images" / "same.png", 20, 30)
    _mask(tmp_path / "masks" / "same.png", small)
    dataset = open_folder(tmp_path, "demo")
    big, same = dataset.samples
    mask = dataset.mask(big, (40, 60))
    expected = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1) >= 128  # exact 2x nearest upsampling
    np.testing.assert_array_equal(mask, expected.astype(np.float32))
    dataset.mask(big, (40, 60))
    dataset.mask(same, (20, 30))
    resized = [p for p in dataset.problems if p.kind == "resized_mask"]
    assert [Path(p.file).name for p in resized] == ["big.png"] and "30x20" in resized[0].detail


def test_masks_binarise_at_128_and_other_values_are_a_problem(tmp_path):
    _image(tmp_path / "images" / "m.png", 1, 6)
    _mask(tmp_path / "masks" / "m.png", np.array([[0, 1, 127, 128, 200, 255]]))
    dataset = open_folder(tmp_path, "demo")
    mask = dataset.mask(dataset.samples[0], (1, 6))
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(mask, [[0, 0, 0, 1, 1, 1]])
    assert [(p.kind, p.detail) for p in dataset.problems] == [
        ("non_binary_mask", "4 of 6 pixels are neither 0 nor 255: binarised at 128")]


def test_alpha_masks_scale_to_0_1_without_binarising(tmp_path):
    _image(tmp_path / "images" / "m.png", 1, 4)
    _mask(tmp_path / "masks" / "m.png", np.array([[0, 51, 127, 255]]))
    dataset = open_folder(tmp_path, "demo", binary_masks=False)
    np.testing.assert_allclose(dataset.mask(dataset.samples[0], (1, 4)), [[0.0, 0.2, 127 / 255, 1.0]], rtol=1e-6)


def _numbered(count: int) -> Dataset:
    return Dataset("demo", [Sample(f"{i:03d}", None, None) for i in range(count)])


@given(st.integers(1, 80), st.integers(0, 90))
def test_limited_spreads_evenly_and_is_deterministic(size, count):
    dataset = _numbered(size)
    chosen = [int(s.stem) for s in dataset.limited(count)]
    assert chosen == [int(s.stem) for s in dataset.limited(count)]
    assert len(chosen) == min(count, size)
    assert chosen == sorted(set(chosen))
    if 2 <= count < size:
        assert chosen[0] == 0 and chosen[-1] == size - 1
        step = (size - 1) / (count - 1)
        assert {b - a for a, b in zip(chosen, chosen[1:])} <= {math.floor(step), math.ceil(step)}


def test_limited_none_gives_everything():
    assert len(_numbered(7).limited(None)) == 7


def test_limited_example():
    assert [s.stem for s in _numbered(10).limited(4)] == ["000", "003", "006", "009"]


def test_synthetic_set_is_the_same_bytes_every_time():
    first, second = synthetic(4), synthetic(4)
    for a, b in zip(first.samples, second.samples, strict=True):
        assert first.image(a).tobytes() == second.image(b).tobytes()
        image_hw = first.image(a).shape[:2]
        assert first.mask(a, image_hw).tobytes() == second.mask(b, image_hw).tobytes()


def test_synthetic_masks_match_their_images_and_are_binary():
    dataset = synthetic(6)
    assert len(dataset.samples) == 6 and len({s.stem for s in dataset.samples}) == 6
    sizes = set()
    for sample in dataset.samples:
        image = dataset.image(sample)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        mask = dataset.mask(sample, image.shape[:2])
        assert mask.shape == image.shape[:2] and mask.dtype == np.float32
        assert set(np.unique(mask)) == {0.0, 1.0}
        sizes.add(image.shape[:2])
    assert len(sizes) > 1  # sizes vary, so resizing is exercised


def test_human_seg_290_has_198_masks_smaller_than_their_images():
    root = os.environ.get("SEGCONFORM_DATA_ROOT")
    if not root or not (Path(root) / "human-seg-290").is_dir():
        pytest.skip(f"SEGCONFORM_DATA_ROOT ({root or 'unset'}) holds no human-seg-290/")
    dataset = open_folder(Path(root) / "human-seg-290", "human_seg")
    assert len(dataset.samples) == 290 and dataset.problems == []
    for sample in dataset.samples:
        dataset.mask(sample, dataset.image(sample).shape[:2])
    assert sorted({p.kind for p in dataset.problems}) == ["resized_mask"]
    assert len(dataset.problems) == 198


def _jpeg_bytes(height: int = 64, width: int = 48) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    ok, encoded = cv2.imencode(".jpg", np.stack([xx * 4, yy * 3, xx + yy], axis=-1).astype(np.uint8))
    assert ok
    return encoded.tobytes()


def test_a_truncated_jpeg_is_caught_although_opencv_reads_it(tmp_path):
    data = _jpeg_bytes()
    cut = data[: len(data) * 2 // 3]
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cut.jpg").write_bytes(cut)
    assert cv2.imread(str(tmp_path / "images" / "cut.jpg")) is not None  # OpenCV fills the missing rows with grey
    (tmp_path / "images" / "whole.jpg").write_bytes(data)
    for stem in ("cut", "whole"):
        _mask(tmp_path / "masks" / f"{stem}.png", np.zeros((64, 48)))
    dataset = open_folder(tmp_path, "demo")
    cut_sample, whole_sample = dataset.samples
    with pytest.raises(DataError, match=r"cut\.jpg.*end-of-image marker"):
        dataset.image(cut_sample)
    assert dataset.image(whole_sample).shape == (64, 48, 3)
    assert [(p.kind, Path(p.file).name) for p in dataset.problems] == [("truncated_image", "cut.jpg")]


def test_truncation_knows_each_format_end():
    png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    webp = cv2.imencode(".webp", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    jpeg = _jpeg_bytes()
    for name, data in (("a.png", png), ("a.bmp", bmp), ("a.webp", webp), ("a.jpg", jpeg)):
        assert truncation(Path(name), data) is None, name
        assert truncation(Path(name), data[:-20]) is not None, name
    assert truncation(Path("padded.jpg"), jpeg + b"\x00" * 10) is None  # writers may pad after the marker
