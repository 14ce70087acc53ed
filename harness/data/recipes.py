"""Pre- and post-processing ops, composed from a case's recipe.

Preprocessing turns one decoded image (OpenCV's HxW, HxWx3 BGR or HxWx4 BGRA, uint8) into a
model-ready float32 tensor (C, H, W); the pipeline stacks tensors into a batch. Postprocessing
turns one image's raw network output into a float32 map in [0, 1] at the image's own size,
which is what metrics, golden masks and conformance budgets are defined on.

Each op is a small factory: it checks its arguments when the recipe is built (so a bad case file
fails at collection), and returns the function that does the work.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}

ImageFn = Callable[[np.ndarray], np.ndarray]
MapFn = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


class RecipeError(ValueError):
    """A recipe op that is unknown or has bad arguments."""


class OpSpec(Protocol):
    """What a case file's op looks like to this module: a name and its keyword arguments."""

    op: str

    @property
    def args(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Args:
    """Typed access to an op's arguments with errors that name the op and the argument."""

    op: str
    values: Mapping[str, Any]

    def take(self, name: str, default: Any = ..., kind: type | tuple[type, ...] = object) -> Any:
        if name not in self.values:
            if default is ...:
                raise RecipeError(f"op {self.op!r} needs argument {name!r}")
            return default
        value = self.values[name]
        if not isinstance(value, kind):
            raise RecipeError(f"op {self.op!r}: argument {name!r} must be {kind}, got {value!r}")
        return value

    def interpolation(self, default: str) -> int:
        name = self.take("interpolation", default, str)
        if name not in INTERPOLATIONS:
            raise RecipeError(f"op {self.op!r}: interpolation {name!r} is not one of {sorted(INTERPOLATIONS)}")
        return INTERPOLATIONS[name]

    def triple(self, name: str) -> np.ndarray:
        value = self.take(name, kind=(list, tuple))
        if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise RecipeError(f"op {self.op!r}: argument {name!r} must be 3 numbers, got {value!r}")
        # a number beyond float32's range (1e308 in a case file) would become inf and poison every image
        if not all(math.isfinite(v) and abs(v) < float(np.finfo(np.float32).max) for v in value):
            raise RecipeError(f"op {self.op!r}: argument {name!r} must be 3 finite numbers within float32's range, "
                              f"got {value!r}")
        return np.asarray(value, dtype=np.float32)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        unknown = set(self.values) - set(allowed)
        if unknown:
            raise RecipeError(f"op {self.op!r}: unknown argument(s) {sorted(unknown)}")


# --------------------------------------------------------------------------- preprocessing


def _to_rgb(args: _Args, input_hw: tuple[int, int]) -> ImageFn:
    """Colour order the networks were trained with; grayscale and BGRA inputs become RGB too."""
    args.reject_unknown(())

    def run(image: np.ndarray) -> np.ndarray:
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        if image.ndim == 3 and image.shape[2] == 3:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        raise RecipeError(f"to_rgb: expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")

    return run


def _resize(args: _Args, input_hw: tuple[int, int]) -> ImageFn:
    """Resize to the model's input size (cv2 takes width first; the case gives H, W)."""
    args.reject_unknown(("interpolation",))
    flag = args.interpolation("linear")
    height, width = input_hw

    def run(image: np.ndarray) -> np.ndarray:
        resized = cv2.resize(image, (width, height), interpolation=flag)
        return resized if resized.ndim == image.ndim else resized[..., None]

    return run


def _to_float(args: _Args, input_hw: tuple[int, int]) -> ImageFn:
    args.reject_unknown(("divide",))
    divisor = float(args.take("divide", 255.0, (int, float)))
    if divisor <= 0:
        raise RecipeError(f"op 'to_float': divide must be positive, got {divisor}")

    def run(image: np.ndarray) -> np.ndarray:
        return image.astype(np.float32) / np.float32(divisor)

    return run


def _normalize(args: _Args, input_hw: tuple[int, int]) -> ImageFn:
    args.reject_unknown(("mean", "std"))
    mean, std = args.triple("mean"), args.triple("std")
    if np.any(std <= 0):
        raise RecipeError(f"op 'normalize': std must be positive, got {std.tolist()}")

    def run(image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise RecipeError(f"normalize: expected an HxWx3 image, got shape {image.shape}")
        return ((image - mean) / std).astype(np.float32)

    return run


def _to_chw(args: _Args, input_hw: tuple[int, int]) -> ImageFn:
    args.reject_unknown(())

    def run(image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[..., None]
        return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)

    return run


PREPROCESS_OPS: dict[str, Callable[[_Args, tuple[int, int]], ImageFn]] = {
    "to_rgb": _to_rgb,
    "resize": _resize,
    "to_float": _to_float,
    "normalize": _normalize,
    "to_chw": _to_chw,
}

# --------------------------------------------------------------------------- postprocessing


def _as_map_fn(fn: Callable[[np.ndarray], np.ndarray]) -> MapFn:
    return lambda output, image_hw: fn(output)


def _sigmoid(args: _Args) -> MapFn:
    """For graphs that end in logits; written to stay finite for large |x|."""
    args.reject_unknown(())

    def run(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        out = np.empty_like(x)
        positive = x >= 0
        out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
        e = np.exp(x[~positive])
        out[~positive] = e / (1.0 + e)
        return out

    return _as_map_fn(run)


def _softmax(args: _Args) -> MapFn:
    args.reject_unknown(())

    def run(x: np.ndarray) -> np.ndarray:
        shifted = x.astype(np.float32) - x.max(axis=0, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=0, keepdims=True)

    return _as_map_fn(run)


def _select_channel(args: _Args) -> MapFn:
    args.reject_unknown(("index",))
    index = args.take("index", 0, int)

    def run(x: np.ndarray) -> np.ndarray:
        if x.ndim == 2:
            if index != 0:
                raise RecipeError(f"select_channel: index {index} on a single-channel output")
            return x
        if not -x.shape[0] <= index < x.shape[0]:
            raise RecipeError(f"select_channel: index {index} out of range for {x.shape[0]} channels")
        return x[index]

    return _as_map_fn(run)


def _argmax(args: _Args) -> MapFn:
    """Class map of a multi-channel output; with two classes it is the foreground mask."""
    args.reject_unknown(())

    def run(x: np.ndarray) -> np.ndarray:
        if x.ndim != 3:
            raise RecipeError(f"argmax: expected a CxHxW output, got shape {x.shape}")
        return x.argmax(axis=0).astype(np.float32)

    return _as_map_fn(run)


def _minmax(args: _Args) -> MapFn:
    """Min-max normalisation; a constant map becomes zeros instead of a division by zero."""
    args.reject_unknown(())

    def run(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)  # a float32 range wider than FLT_MAX would overflow to inf and give NaN
        low, high = float(x.min()), float(x.max())
        if not high > low:
            return np.zeros(x.shape, np.float32)
        return ((x - low) / (high - low)).astype(np.float32)

    return _as_map_fn(run)


def _clip(args: _Args) -> MapFn:
    args.reject_unknown(("low", "high"))
    low = float(args.take("low", 0.0, (int, float)))
    high = float(args.take("high", 1.0, (int, float)))
    if not low < high:
        raise RecipeError(f"op 'clip': low {low} must be below high {high}")
    return _as_map_fn(lambda x: np.clip(x, low, high).astype(np.float32))


def _resize_to_image(args: _Args) -> MapFn:
    args.reject_unknown(("interpolation",))
    flag = args.interpolation("linear")

    def run(x: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        if x.ndim != 2:
            raise RecipeError(f"resize_to_image: expected a single HxW map, got shape {x.shape}")
        height, width = image_hw
        return cv2.resize(x.astype(np.float32), (width, height), interpolation=flag)

    return run


def _threshold(args: _Args) -> MapFn:
    args.reject_unknown(("value",))
    value = float(args.take("value", 0.5, (int, float)))
    return _as_map_fn(lambda x: (x >= value).astype(np.float32))


POSTPROCESS_OPS: dict[str, Callable[[_Args], MapFn]] = {
    "sigmoid": _sigmoid,
    "softmax": _softmax,
    "select_channel": _select_channel,
    "argmax": _argmax,
    "minmax": _minmax,
    "clip": _clip,
    "resize_to_image": _resize_to_image,
    "threshold": _threshold,
}

# --------------------------------------------------------------------------- composition


def build_preprocess(ops: Iterable[OpSpec], input_hw: tuple[int, int]) -> ImageFn:
    """One function image -> (C, H, W) float32 tensor, running ``ops`` in order."""
    steps = [_factory(PREPROCESS_OPS, op, "preprocess")(_Args(op.op, op.args), input_hw) for op in ops]

    def run(image: np.ndarray) -> np.ndarray:
        for step in steps:
            image = step(image)
        # An HxWxC image is 3-D too: only the model's (H, W) in the last two axes shows the channels came first.
        if image.ndim != 3 or image.dtype != np.float32 or image.shape[1:] != tuple(input_hw):
            raise RecipeError(
                f"preprocessing must end in a CxHxW float32 tensor with (H, W) = {tuple(input_hw)} "
                f"(add resize / to_chw), got {image.dtype} {image.shape}"
            )
        return image

    return run


def build_postprocess(ops: Iterable[OpSpec]) -> MapFn:
    """One function (raw output of one image, image (H, W)) -> float32 map in [0, 1] of that size."""
    steps = [_factory(POSTPROCESS_OPS, op, "postprocess")(_Args(op.op, op.args)) for op in ops]

    def run(output: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        for step in steps:
            output = step(output, image_hw)
        if output.shape != tuple(image_hw):
            raise RecipeError(f"postprocessing gave shape {output.shape}, expected the image's {tuple(image_hw)}")
        return output.astype(np.float32, copy=False)

    return run


def validate_ops(ops: Iterable[OpSpec]) -> None:
    """Raise :class:`RecipeError` for an unknown op or bad arguments, without running anything."""
    for op in ops:
        if op.op in PREPROCESS_OPS:
            PREPROCESS_OPS[op.op](_Args(op.op, op.args), (32, 32))
        elif op.op in POSTPROCESS_OPS:
            POSTPROCESS_OPS[op.op](_Args(op.op, op.args))
        else:
            known = sorted(PREPROCESS_OPS) + sorted(POSTPROCESS_OPS)
            raise RecipeError(f"unknown op {op.op!r}; known ops: {', '.join(known)}")


def _factory(table: Mapping[str, Any], op: OpSpec, stage: str) -> Any:
    try:
        return table[op.op]
    except KeyError:
        raise RecipeError(f"op {op.op!r} is not a {stage} op; {stage} ops: {', '.join(sorted(table))}") from None
