"""Structural checks: a shift, a blur, noise and swapped channels are caught whatever the precision; int8-sized
noise is not. The same checks pass the real healthy fp16 / int8 builds in the suite (``test_structure`` items) and
catch the injected faults there (``python -m harness sensitivity``, run by CI)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data import channels
from harness.data.case_bounds import StructureBounds
from harness.judge import structure

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


def test_a_shift_on_a_minority_of_images_is_caught_per_image():
    """A one-pixel shift on 2 of 8 images (a resize path taken for some image sizes only) leaves the median offset
    at zero: judged per image, it fails, naming those images."""
    def change(map_, i):
        return _int8_like(_shift(map_, 1, 0) if i in (2, 5) else map_, i)

    candidate, reference = _maps(range(8), change)
    aligned = structure.alignment(candidate, reference, MODEL_HW)
    assert aligned.magnitude < StructureBounds().alignment_max_px  # what the median alone saw: a pass
    assert not aligned.passed and sorted(aligned.beyond) == ["s2", "s5"], aligned.as_dict()


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


def _colour_model(image: np.ndarray) -> np.ndarray:
    """A map that depends on colour, each channel weighed differently (a saliency model's learned colour priors)."""
    rgb = image[..., ::-1].astype(np.float32) / 255
    return (1 / (1 + np.exp(-(rgb @ np.array([3.0, -1.0, 0.5], np.float32) - 0.5) * 4))).astype(np.float32)


def _colour_images(count: int = 2) -> dict[str, np.ndarray]:
    """Smooth colour fields as OpenCV decodes images (BGR, uint8)."""
    rng = np.random.default_rng(7)
    fields = [cv2.GaussianBlur(rng.normal(size=(48, 64, 3)), (0, 0), 5) for _ in range(count)]
    return {f"s{i}": np.clip(128 + 50 * field / field.std(axis=(0, 1)), 0, 255).astype(np.uint8)
            for i, field in enumerate(fields)}


INT8_BUDGET = 0.02  # the int8 conformance budget's mean MAE: an order that moves the output less is negligible


def _probe(runtime_order: str | None, noise: float = 0.003) -> structure.ChannelProbe:
    """The probe of a runtime that feeds the channels in ``runtime_order`` (None: as the recipe does), its outputs
    carrying int8-sized noise, against the colour model fed every order."""
    images = _colour_images()
    rng = np.random.default_rng(3)
    fed = {s: channels.reordered(image, runtime_order) if runtime_order else image for s, image in images.items()}
    candidate = {s: _colour_model(image) + rng.normal(0, noise, image.shape[:2]).astype(np.float32)
                 for s, image in fed.items()}
    reference = {s: _colour_model(image) for s, image in images.items()}
    alternatives = {order: {s: _colour_model(channels.reordered(image, order)) for s, image in images.items()}
                    for order in channels.CHANNEL_ORDERS}
    return structure.channel_probe(candidate, reference, alternatives, INT8_BUDGET)


def test_reordered_feeds_the_recipes_rgb_in_each_order_and_keeps_alpha():
    bgra = np.zeros((1, 1, 4), np.uint8)
    bgra[0, 0] = (30, 20, 10, 99)  # B, G, R, alpha: R=10, G=20, B=30
    rgb = {order: channels.reordered(bgra, order)[0, 0, 2::-1].tolist() for order in channels.CHANNEL_ORDERS}
    assert rgb["BGR"] == [30, 20, 10] and rgb["GBR"] == [20, 30, 10] and rgb["RRR"] == [10, 10, 10]
    assert channels.reordered(bgra, "GBR")[0, 0, 3] == 99
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert channels.reordered(gray, "BGR") is gray  # one plane: no order to change


def test_channel_probe_passes_a_healthy_runtime():
    probe = _probe(None)
    assert probe.passed and probe.decisive and not probe.matches and probe.reason == ""
    assert probe.images == 2 and set(probe.as_dict()["alternatives"]) == set(channels.CHANNEL_ORDERS)


@pytest.mark.parametrize("order", ["BGR", "GBR", "RRR"])  # reversed, rotated, one plane fed to all three
def test_channel_probe_names_the_order_a_runtime_feeds(order):
    probe = _probe(order)
    assert not probe.passed and probe.matches[0] == order, probe.as_dict()
    assert f"the runtime feeds the channels as {order}" in probe.reason


def test_channel_probe_with_no_images_is_not_decided_and_fails():
    reference = {"a": _colour_model(_colour_images(1)["s0"])}
    alternatives = {order: {} for order in channels.CHANNEL_ORDERS}  # no stem in common
    probe = structure.channel_probe(reference, reference, alternatives, INT8_BUDGET)
    assert probe.images == 0 and not probe.decisive and not probe.passed
    assert probe.reason.startswith("not decided: no probe image")


def test_channel_probe_fails_when_the_candidates_own_error_hides_every_order():
    """A collapsed build (u2netp's percentile int8: MAE 0.12 against fp32 where the orders move it 0.01-0.06) is
    farther from every reference than the orders are from each other: no decision, so no pass."""
    probe = _probe(None, noise=0.5)
    assert not probe.decisive and not probe.passed and probe.undecided == list(channels.CHANNEL_ORDERS)
    assert probe.reason.startswith("not decided: BGR ")


def test_channel_probe_calls_an_order_that_moves_the_output_less_than_the_budget_negligible():
    """u2netp on the synthetic images: a swap moves its output 0.001, below int8 noise and far below the budget;
    u2net at int8 moves 0.007 under any permutation where its own error is 0.0035: no runtime feeding such an order
    can cost more than conformance allows."""
    reference = {"a": np.zeros((4, 4))}
    alternatives = {"BGR": {"a": reference["a"] + 0.001}, "RRR": {"a": reference["a"] + 0.05}}
    probe = structure.channel_probe({"a": reference["a"] + 0.004}, reference, alternatives, INT8_BUDGET)
    assert probe.negligible_orders == ["BGR"] and not probe.undecided and probe.decisive and probe.passed


def test_channel_probe_fails_an_order_beyond_the_budget_it_cannot_decide_even_beside_decided_ones():
    reference = {"a": np.zeros((4, 4))}
    alternatives = {"GGG": {"a": reference["a"] + 0.05}, "RRR": {"a": reference["a"] + 0.3}}
    probe = structure.channel_probe({"a": reference["a"] + 0.03}, reference, alternatives, INT8_BUDGET)
    assert probe.decided("RRR") and probe.undecided == ["GGG"] and not probe.passed
    assert probe.reason.startswith("not decided: GGG 0.05 move the reference's output beyond the budget (0.02)")


def test_a_model_can_set_its_own_bounds():
    candidate, reference = _maps(range(4), lambda m, i: m + np.random.default_rng(i).normal(0, 0.03, m.shape))
    default = structure.detail_kept(candidate, reference, MODEL_HW)
    loose = structure.detail_kept(candidate, reference, MODEL_HW, StructureBounds(spurious_ceiling=100.0))
    assert not default.passed and loose.passed and loose.as_dict()["ceiling"] == 100.0
    shifted, reference = _maps(range(4), lambda m, i: _shift(m, 1, 0))
    assert structure.alignment(shifted, reference, MODEL_HW, bound_px=2.0).passed
