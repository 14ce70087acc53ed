"""Pre- and post-processing ops (:mod:`harness.data.recipes`), one by one and as the real case files compose them.

Expected values are computed here with plain numpy / OpenCV calls (or by hand), never by the
recipe code; hypothesis drives shapes (1xN, odd sizes, extreme aspect ratios), channel layouts
(HxW, HxWx1, BGR, BGRA) and values (constant, all-0, all-255, huge logits).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.data.cases import load_family
from harness.data.recipes import (
    POSTPROCESS_OPS,
    PREPROCESS_OPS,
    RecipeError,
    _Args,
    build_postprocess,
    build_preprocess,
    validate_ops,
)

CASES = Path(__file__).resolve().parents[1] / "cases"
class Op:
    """A recipe op as a case file gives it: a name and keyword arguments."""

    def __init__(self, op: str, **args: Any) -> None:
        self.op = op
        self.args = args


def pre(op: str, input_hw: tuple[int, int] = (16, 16), **args: Any):
    """One preprocessing op on its own."""
    return PREPROCESS_OPS[op](_Args(op, args), input_hw)


def post(op: str, **args: Any):
    """One postprocessing op that does not resize, as a function of the output alone."""
    fn = POSTPROCESS_OPS[op](_Args(op, args))
    return lambda x: fn(x, x.shape[-2:])


def _model(family: str, name: str):
    return next(m for m in load_family(CASES / f"{family}.yaml").models if m.name == name)


# --------------------------------------------------------------------------- strategies

ODD_SIZES = st.sampled_from([(1, 1), (1, 37), (37, 1), (3, 7), (2, 300), (300, 2), (5, 5)])
SIZES = st.one_of(ODD_SIZES, st.tuples(st.integers(1, 48), st.integers(1, 48)))
PIXELS = st.one_of(st.just(0), st.just(255), st.integers(0, 255))


@st.composite
def images(draw, layouts=("gray", "gray1", "bgr", "bgra")) -> np.ndarray:
    """uint8 images as cv2.imread returns them: HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)."""
    height, width = draw(SIZES)
    layout = draw(st.sampled_from(layouts))
    channels = {"gray": (), "gray1": (1,), "bgr": (3,), "bgra": (4,)}[layout]
    return draw(hnp.arrays(np.uint8, (height, width, *channels), elements=PIXELS))


UNIT = st.floats(0, 1, width=32)
INTERPOLATION_NAMES = st.sampled_from(["nearest", "linear", "area", "cubic"])
F32_MAX = float(np.finfo(np.float32).max)
HUGE_LOGITS = st.one_of(
    st.floats(width=32, allow_nan=False, allow_infinity=False),  # every finite float32
    st.sampled_from([float(np.float32(v)) for v in (-F32_MAX, -1e30, -1e4, -88.8, 0.0, 88.8, 1e4, 1e30, F32_MAX)]),
)


# --------------------------------------------------------------------------- to_rgb


@given(images(layouts=("gray", "gray1")))
def test_to_rgb_replicates_grayscale_into_three_equal_channels(image):
    rgb = pre("to_rgb")(image)
    gray = image.reshape(image.shape[:2])
    assert rgb.shape == (*gray.shape, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


@given(images(layouts=("bgr",)))
def test_to_rgb_reverses_bgr_channel_order(image):
    np.testing.assert_array_equal(pre("to_rgb")(image), image[..., ::-1])


@given(images(layouts=("bgra",)))
def test_to_rgb_drops_alpha_of_bgra_and_reverses_colour(image):
    np.testing.assert_array_equal(pre("to_rgb")(image), image[..., 2::-1])


def test_to_rgb_rejects_two_channel_image_naming_the_op():
    with pytest.raises(RecipeError, match="to_rgb"):
        pre("to_rgb")(np.zeros((4, 4, 2), np.uint8))


# --------------------------------------------------------------------------- resize


@given(images(), INTERPOLATION_NAMES, SIZES)
def test_resize_gives_model_size_and_keeps_layout_dtype_and_range(image, interpolation, input_hw):
    out = pre("resize", input_hw, interpolation=interpolation)(image)
    assert out.shape == (*input_hw, *image.shape[2:])
    assert out.dtype == np.uint8
    if interpolation != "cubic":  # cubic may overshoot (and saturate), the others interpolate within the range
        assert image.min() <= out.min() and out.max() <= image.max()
    if interpolation == "nearest":
        assert set(np.unique(out)) <= set(np.unique(image))


@given(SIZES, SIZES, st.sampled_from([0, 255, 77]), INTERPOLATION_NAMES)
def test_resize_keeps_a_constant_image_constant(size, input_hw, value, interpolation):
    image = np.full((*size, 3), value, np.uint8)
    out = pre("resize", input_hw, interpolation=interpolation)(image)
    assert out.shape == (*input_hw, 3)
    assert np.all(out == value)


def test_resize_rejects_unknown_interpolation_naming_op_and_choices():
    with pytest.raises(RecipeError, match=r"op 'resize'.*'bicubic'.*area"):
        pre("resize", interpolation="bicubic")


# --------------------------------------------------------------------------- to_float, normalize, to_chw


@given(images(), st.sampled_from([1, 255, 127.5, 1000.0]))
def test_to_float_divides_into_float32(image, divide):
    out = pre("to_float", divide=divide)(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, image.astype(np.float64) / divide, rtol=1e-6)
    assert 0.0 <= out.min() and out.max() <= 255.0 / divide * (1 + 1e-6)


@pytest.mark.parametrize("divide", [0, -255])
def test_to_float_rejects_non_positive_divisor(divide):
    with pytest.raises(RecipeError, match="to_float"):
        pre("to_float", divide=divide)


def test_to_float_rejects_non_numeric_divisor_naming_op_and_argument():
    with pytest.raises(RecipeError, match=r"op 'to_float'.*'divide'"):
        pre("to_float", divide="255")


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3)), elements=UNIT))
def test_normalize_subtracts_mean_and_divides_by_std_per_channel(image):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = pre("normalize", mean=mean, std=std)(image)
    assert out.dtype == np.float32
    for c in range(3):
        expected = (image[..., c].astype(np.float64) - mean[c]) / std[c]
        np.testing.assert_allclose(out[..., c], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "args, reason",
    [
        ({"mean": [0.5, 0.5], "std": [1, 1, 1]}, "'mean' must be 3 numbers"),
        ({"mean": [0.5, 0.5, "a"], "std": [1, 1, 1]}, "'mean' must be 3 numbers"),
        ({"mean": [0.5, 0.5, 0.5], "std": [1, 0, 1]}, "std must be positive"),
        ({"mean": [0.5, 0.5, 0.5]}, "needs argument 'std'"),
        ({"mean": 0.5, "std": [1, 1, 1]}, "'mean' must be"),
    ],
)
def test_normalize_rejects_bad_arguments_naming_the_op(args, reason):
    with pytest.raises(RecipeError, match="normalize") as error:
        pre("normalize", **args)
    assert reason in str(error.value)


def test_normalize_rejects_a_non_three_channel_image():
    with pytest.raises(RecipeError, match="normalize"):
        pre("normalize", mean=[0, 0, 0], std=[1, 1, 1])(np.zeros((4, 4), np.float32))


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4))))
def test_to_chw_moves_channels_first(image):
    out = pre("to_chw")(image)
    assert out.shape == (image.shape[2], *image.shape[:2]) and out.flags.c_contiguous
    for c in range(image.shape[2]):
        np.testing.assert_array_equal(out[c], image[..., c])


def test_to_chw_gives_one_channel_for_a_2d_image():
    image = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(pre("to_chw")(image), image[None])


# --------------------------------------------------------------------------- full preprocessing of the real cases

ISNET = _model("isnet", "isnet")
U2NET = _model("u2net", "u2net")
REAL_MEAN_STD = {
    "isnet": ([0.5, 0.5, 0.5], [1.0, 1.0, 1.0]),  # seed isnet.md: /255, mean 0.5, std 1.0
    "u2net": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),  # seed u2net.md: ImageNet mean/std
}


@given(images(), st.sampled_from([ISNET, U2NET]))
def test_real_preprocess_gives_3x320x320_float32_in_normalised_range(image, model):
    tensor = build_preprocess(model.preprocess, model.input_shape[1:])(image)
    mean, std = (np.asarray(v) for v in REAL_MEAN_STD[model.name])
    assert tensor.shape == (3, 320, 320) and tensor.dtype == np.float32
    assert np.isfinite(tensor).all()
    low, high = (0 - mean) / std, (1 - mean) / std
    for c in range(3):
        assert low[c] - 1e-5 <= tensor[c].min() and tensor[c].max() <= high[c] + 1e-5


@given(images(layouts=("gray",)), st.sampled_from([ISNET, U2NET]))
def test_real_preprocess_treats_hxw_and_hxwx1_grayscale_alike_with_equal_channels(gray, model):
    run = build_preprocess(model.preprocess, model.input_shape[1:])
    tensor = run(gray)
    np.testing.assert_array_equal(tensor, run(gray[..., None]))
    mean, std = REAL_MEAN_STD[model.name]
    unnormalised = [tensor[c] * std[c] + mean[c] for c in range(3)]  # back to the gray value / 255
    np.testing.assert_allclose(unnormalised[0], unnormalised[1], atol=1e-5)
    np.testing.assert_allclose(unnormalised[0], unnormalised[2], atol=1e-5)


@given(images(layouts=("bgra",)), st.sampled_from([ISNET, U2NET]))
def test_real_preprocess_ignores_the_alpha_channel_of_bgra(image, model):
    run = build_preprocess(model.preprocess, model.input_shape[1:])
    np.testing.assert_allclose(run(image), run(np.ascontiguousarray(image[..., :3])), atol=1e-6)


@pytest.mark.parametrize("value", [0, 255])
def test_real_isnet_preprocess_of_all_0_and_all_255_images(value):
    tensor = build_preprocess(ISNET.preprocess, (320, 320))(np.full((7, 3, 3), value, np.uint8))
    np.testing.assert_allclose(tensor, np.full((3, 320, 320), value / 255 - 0.5), atol=1e-7)


def test_isnet_preprocess_of_a_2x2_image_matches_hand_values():
    # BGR pixels; the seed: RGB = BGR reversed, then (x / 255 - 0.5) / 1.0, channels first.
    image = np.array([[[0, 128, 255], [10, 20, 30]], [[255, 255, 255], [0, 0, 0]]], np.uint8)
    tensor = build_preprocess(ISNET.preprocess, (2, 2))(image)  # same size: resize is the identity
    expected = np.array(
        [
            [[0.5, 30 / 255 - 0.5], [0.5, -0.5]],  # R
            [[128 / 255 - 0.5, 20 / 255 - 0.5], [0.5, -0.5]],  # G
            [[-0.5, 10 / 255 - 0.5], [0.5, -0.5]],  # B
        ]
    )
    np.testing.assert_allclose(tensor, expected, atol=1e-7)
    assert tensor[1, 0, 0] == pytest.approx(0.0019608, abs=1e-6)  # 128/255 - 0.5 by hand


@given(images(layouts=("bgr",)), st.sampled_from([ISNET, U2NET]))
def test_real_preprocess_matches_the_seed_formula_written_with_cv2(image, model):
    mean, std = (np.asarray(v, np.float64) for v in REAL_MEAN_STD[model.name])
    resized = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float64)
    expected = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)
    tensor = build_preprocess(model.preprocess, (320, 320))(image)
    np.testing.assert_allclose(tensor, expected, atol=1e-5)


def test_preprocess_without_to_chw_is_rejected():
    run = build_preprocess([Op("to_rgb"), Op("to_float")], (4, 4))
    with pytest.raises(RecipeError, match="to_chw"):
        run(np.zeros((4, 4, 3), np.uint8))


# --------------------------------------------------------------------------- postprocessing ops


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=HUGE_LOGITS))
def test_sigmoid_stays_finite_in_0_1_for_huge_logits(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        out = post("sigmoid")(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    expected = 0.5 * (1.0 + np.tanh(x.astype(np.float64) / 2.0))  # an overflow-free identity
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_sigmoid_of_extremes_and_zero():
    out = post("sigmoid")(np.array([-3.4e38, -1000.0, 0.0, 1000.0, 3.4e38], np.float32))
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 1.0, 1.0])


@given(hnp.arrays(np.float32, st.tuples(st.integers(2, 4), st.integers(1, 5), st.integers(1, 5)), elements=HUGE_LOGITS))
def test_softmax_sums_to_one_over_channels_and_matches_float64(x):
    with np.errstate(over="ignore"):  # x - max may pass -FLT_MAX: -inf, whose exp is the exact 0
        out = post("softmax")(x)
    assert out.shape == x.shape and np.isfinite(out).all()
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=0))
    np.testing.assert_allclose(out, e / e.sum(axis=0), atol=1e-6)


def test_softmax_of_opposite_huge_logits_is_one_hot():
    x = np.array([[[3e38]], [[-3e38]]], np.float32)
    with np.errstate(over="ignore"):
        out = post("softmax")(x)
    np.testing.assert_array_equal(out[:, 0, 0], [1.0, 0.0])


def test_softmax_of_equal_logits_is_uniform():
    np.testing.assert_allclose(post("softmax")(np.full((4, 2, 3), 1e30, np.float32)), 0.25)


def test_select_channel_picks_the_index_and_passes_a_2d_map():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(post("select_channel", index=1)(x), x[1])
    np.testing.assert_array_equal(post("select_channel", index=-1)(x), x[1])
    np.testing.assert_array_equal(post("select_channel")(x[0]), x[0])


@pytest.mark.parametrize("index, output", [(2, np.zeros((2, 3, 3))), (1, np.zeros((3, 3)))])
def test_select_channel_out_of_range_raises_naming_the_op(index, output):
    with pytest.raises(RecipeError, match="select_channel"):
        post("select_channel", index=index)(output)


def test_select_channel_rejects_a_non_integer_index_at_build():
    with pytest.raises(RecipeError, match=r"op 'select_channel'.*'index'"):
        post("select_channel", index="1")


@given(hnp.arrays(np.float32, st.tuples(st.just(2), st.integers(1, 6), st.integers(1, 6)), elements=HUGE_LOGITS))
def test_argmax_of_two_classes_is_the_foreground_mask(x):
    out = post("argmax")(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.where(x[1] > x[0], 1.0, 0.0))  # ties go to class 0, the first


def test_argmax_rejects_a_2d_output():
    with pytest.raises(RecipeError, match="argmax"):
        post("argmax")(np.zeros((3, 3), np.float32))


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=HUGE_LOGITS))
def test_minmax_spans_0_to_1_even_for_ranges_beyond_float32(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        out = post("minmax")(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    if x.max() > x.min():
        assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
        x64 = x.astype(np.float64)
        np.testing.assert_allclose(out, (x64 - x64.min()) / (x64.max() - x64.min()), atol=1e-6)
    else:
        np.testing.assert_array_equal(out, 0.0)


def test_minmax_of_the_full_float32_range_has_no_nan():
    out = post("minmax")(np.array([-F32_MAX, 0.0, F32_MAX], np.float32))
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("value", [0.0, 1.0, -5.0, 3e38])
def test_minmax_of_a_constant_map_is_zeros_without_division_warning(value):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = post("minmax")(np.full((3, 5), value, np.float32))
    np.testing.assert_array_equal(out, np.zeros((3, 5), np.float32))


@given(hnp.arrays(np.float32, st.integers(1, 20), elements=st.floats(-10, 10, width=32)))
def test_clip_bounds_values_to_the_interval(x):
    out = post("clip", low=0, high=1)(x)
    np.testing.assert_array_equal(out, np.minimum(np.maximum(x, 0), 1))


def test_clip_rejects_empty_interval():
    with pytest.raises(RecipeError, match="clip"):
        post("clip", low=1, high=1)


MAPS = hnp.arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(1, 40)),
                  elements=st.floats(0, 1, width=32))


@given(MAPS, SIZES, INTERPOLATION_NAMES)
def test_resize_to_image_gives_the_image_size_within_the_map_s_range(map_, image_hw, interpolation):
    fn = POSTPROCESS_OPS["resize_to_image"](_Args("resize_to_image", {"interpolation": interpolation}))
    out = fn(map_, image_hw)
    assert out.shape == tuple(image_hw) and out.dtype == np.float32
    if interpolation != "cubic":  # cubic interpolation overshoots at edges; the recipe's clip op follows it
        assert map_.min() - 1e-6 <= out.min() and out.max() <= map_.max() + 1e-6
    if interpolation == "nearest":
        assert set(np.unique(out)) <= set(np.unique(map_))
    if tuple(image_hw) == map_.shape:
        np.testing.assert_array_equal(out, map_)


@given(MAPS, st.integers(1, 4), st.integers(1, 4))
def test_resize_to_image_by_whole_factors_with_nearest_repeats_every_pixel(map_, fy, fx):
    fn = POSTPROCESS_OPS["resize_to_image"](_Args("resize_to_image", {"interpolation": "nearest"}))
    out = fn(map_, (map_.shape[0] * fy, map_.shape[1] * fx))
    np.testing.assert_array_equal(out, np.repeat(np.repeat(map_, fy, axis=0), fx, axis=1))


def test_resize_to_image_rejects_a_multi_channel_output():
    fn = POSTPROCESS_OPS["resize_to_image"](_Args("resize_to_image", {}))
    with pytest.raises(RecipeError, match="resize_to_image"):
        fn(np.zeros((2, 4, 4), np.float32), (4, 4))


def test_threshold_is_inclusive_at_the_value():
    out = post("threshold", value=0.5)(np.array([0.0, 0.4999, 0.5, 0.7, 1.0], np.float32))
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 1])
    assert out.dtype == np.float32


@given(st.sampled_from([_model("u2net", "u2netp"), ISNET, _model("unet3p", "unet3p")]), SIZES, st.data())
def test_real_postprocess_gives_a_0_1_map_at_the_image_size(model, image_hw, data):
    raw = data.draw(hnp.arrays(np.float32, (1, *model.input_shape[1:]), elements=st.floats(-5, 5, width=32)))
    out = build_postprocess(model.postprocess)(raw, image_hw)
    assert out.shape == tuple(image_hw) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


@given(SIZES, st.sampled_from([3e38, -3e38, 1e30, 0.0]))
def test_real_human_seg_postprocess_survives_huge_two_class_logits(image_hw, foreground):
    model = _model("human_seg", "unet_resnet18")
    raw = np.zeros((2, 320, 320), np.float32)
    raw[1] = foreground
    with np.errstate(over="ignore"):
        out = build_postprocess(model.postprocess)(raw, image_hw)
    assert out.shape == tuple(image_hw) and np.isfinite(out).all()
    expected = 0.5 if foreground == 0 else float(foreground > 0)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_postprocess_that_does_not_reach_the_image_size_is_rejected():
    run = build_postprocess([Op("select_channel")])
    with pytest.raises(RecipeError, match="expected the image's"):
        run(np.zeros((1, 8, 8), np.float32), (4, 4))


# --------------------------------------------------------------------------- errors in recipes


def test_unknown_op_raises_naming_it():
    with pytest.raises(RecipeError, match="unknown op 'blur'"):
        validate_ops([Op("to_rgb"), Op("blur", radius=3)])


@pytest.mark.parametrize(
    "build, op",
    [
        (lambda: build_preprocess([Op("sigmoid")], (4, 4)), "sigmoid"),
        (lambda: build_postprocess([Op("to_rgb")]), "to_rgb"),
    ],
)
def test_op_in_the_wrong_stage_raises_naming_it(build, op):
    with pytest.raises(RecipeError, match=f"op '{op}' is not a"):
        build()


@pytest.mark.parametrize(
    "op, args",
    [
        ("to_rgb", {"order": "bgr"}),
        ("resize", {"size": 3}),
        ("threshold", {"value": "half"}),
        ("clip", {"low": [0]}),
        ("minmax", {"axis": 0}),
    ],
)
def test_bad_arguments_raise_naming_the_op(op, args):
    with pytest.raises(RecipeError, match=f"op '{op}'"):
        validate_ops([Op(op, **args)])
