"""Structural checks: a shift, a blur, noise and swapped channels are caught whatever the precision; int8-sized
noise is not. The same checks pass the real healthy fp16 / int8 builds in the suite (``test_structure`` items) and
catch the injected faults there (``python -m harness sensitivity``, run by CI)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import structure
from harness.cases import StructureBounds

MODEL_HW = (64, 64)


def _saliency_map(seed: int, hw: tuple[int, int] = MODEL_HW) -> np.ndarray:
    """Smooth blobs with soft edges, like a saliency model's output."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.normal(size=hw).astype(np.float32), (0, 0), 4)
    return (1 / (1 + np.exp(-field / (field.std() + 1e-6) * 4))).astype(np.float32)


def _maps(seeds, change=lambda m, s: m):
    reference = {f"s{s}": _saliency_map(s) for s in seeds}
    return {k: change(v.copy(), i) for i, (k, v) in enumerate(reference.items())}, reference


def _int8_like(map_: np.ndarray, seed: int) -> np.ndarray:
    """What int8 does to a map: 8-bit levels, small unbiased noise, and a few flipped edge pixels."""
    rng = np.random.default_rng(seed + 100)
    noisy = np.round(map_ * 255) / 255 + rng.normal(0, 0.004, map_.shape)
    edges = (np.abs(map_ - 0.5) < 0.05) & (rng.random(map_.shape) < 0.1)
    noisy[edges] = 1.0 - noisy[edges]
    return np.clip(noisy, 0, 1).astype(np.float32)


def _shift(map_: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(np.roll(map_, dx, axis=1), dy, axis=0)


@settings(deadline=None, max_examples=20)
@given(st.integers(0, 10_000))
def test_int8_sized_noise_passes_alignment_and_detail(seed):
    candidate, reference = _maps(range(seed, seed + 4), lambda m, i: _int8_like(m, seed + i))
    aligned = structure.alignment(candidate, reference, MODEL_HW)
    detail = structure.detail_kept(candidate, reference, MODEL_HW)
    assert aligned.passed, aligned.as_dict()
    assert detail.passed, detail.as_dict()


@settings(deadline=None, max_examples=20)
@given(st.integers(0, 10_000), st.sampled_from([(1, 0), (-1, 0), (0, 1), (1, 1), (2, 0)]))
def test_a_shift_of_a_pixel_fails_alignment_even_under_int8_noise(seed, offset):
    dx, dy = offset
    candidate, reference = _maps(range(seed, seed + 4), lambda m, i: _int8_like(_shift(m, dx, dy), seed + i))
    aligned = structure.alignment(candidate, reference, MODEL_HW)
    assert not aligned.passed
    assert aligned.median == pytest.approx((dx, dy), abs=0.3)


def test_offsets_are_in_model_pixels_whatever_the_image_size():
    reference = {"a": cv2.resize(_saliency_map(3, (80, 80)), (100, 75))}  # an image of 100x75 from an 80x80 model
    shifted = {"a": cv2.resize(_shift(_saliency_map(3, (80, 80)), 1, 0), (100, 75))}
    # Resampling twice (model -> image -> model size) blurs the peak: 1.0-1.4 px, as on the real models' maps.
    assert structure.alignment(shifted, reference, (80, 80)).median[0] == pytest.approx(1.0, abs=0.4)


def test_half_resolution_and_noise_fail_detail_int8_does_not():
    def half(m, i):
        low = cv2.resize(m, (32, 32), interpolation=cv2.INTER_AREA)
        return cv2.resize(low, (64, 64), interpolation=cv2.INTER_LINEAR)

    def noise(m, i):
        return m + np.random.default_rng(i).normal(0, 0.03, m.shape).astype(np.float32)

    blurred = structure.detail_kept(*_maps(range(6), half), MODEL_HW)
    noisy = structure.detail_kept(*_maps(range(6), noise), MODEL_HW)
    healthy = structure.detail_kept(*_maps(range(6), _int8_like), MODEL_HW)
    assert blurred.kept < StructureBounds().detail_floor and not blurred.passed
    assert noisy.spurious > StructureBounds().spurious_ceiling and not noisy.passed
    assert healthy.passed and healthy.kept > 0.9


def test_flat_references_and_nan_candidates():
    flat = {"a": np.full(MODEL_HW, 0.5, np.float32)}
    assert structure.alignment(flat, flat, MODEL_HW).offsets == {}  # nothing to align on: no verdict from it
    nan = {"a": np.full(MODEL_HW, np.nan, np.float32)}
    assert not structure.detail_kept(nan, {"a": _saliency_map(1)}, MODEL_HW).passed


def test_channel_probe_fails_a_runtime_that_swaps_and_passes_a_healthy_one():
    reference = {"a": np.zeros((4, 4)), "b": np.zeros((4, 4))}
    colour = {k: v + 0.05 for k, v in reference.items()}  # what the model gives fed the other channel order
    noise = {k: v + 0.004 for k, v in reference.items()}
    healthy = structure.channel_probe(noise, colour, reference, colour)
    swapping = structure.channel_probe(colour, noise, reference, colour)
    assert healthy.passed and healthy.decisive
    assert swapping.decisive and not swapping.passed


def test_channel_probe_does_not_decide_where_colour_hardly_matters():
    reference = {"a": np.zeros((4, 4))}
    barely = {"a": reference["a"] + 0.001}  # u2netp on the synthetic images
    noisy = {"a": reference["a"] + 0.08}  # a collapsed int8 build
    probe = structure.channel_probe(noisy, {"a": reference["a"] + 0.078}, reference, barely)
    assert not probe.decisive and probe.passed


def test_a_model_can_set_its_own_bounds():
    candidate, reference = _maps(range(4), lambda m, i: m + np.random.default_rng(i).normal(0, 0.03, m.shape))
    default = structure.detail_kept(candidate, reference, MODEL_HW)
    loose = structure.detail_kept(candidate, reference, MODEL_HW, StructureBounds(spurious_ceiling=100.0))
    assert not default.passed and loose.passed and loose.as_dict()["ceiling"] == 100.0
    shifted, reference = _maps(range(4), lambda m, i: _shift(m, 1, 0))
    assert structure.alignment(shifted, reference, MODEL_HW, bound_px=2.0).passed
