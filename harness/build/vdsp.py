"""The device's preprocessing (vdsp params JSON): parse it, express it as recipe ops, emit the one a case implies.

The VACC device resizes and normalises each image itself, following a JSON file with one fusion op
(``FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR``). When that file and the case's recipe disagree the
deployed model silently sees other inputs than it was trained on (for ISNet the zoo's file resizes
bilinearly where the seed says INTER_AREA). This module reads, interprets and writes the file; comparing one
with a case is :func:`harness.build.vdsp_compare.check`'s, in terms this module provides:

* :func:`load` parses and validates a file; anything unknown is an error naming the file.
* :func:`preprocess_ops` gives the equivalent CPU recipe ops (for :func:`harness.data.recipes.build_preprocess`),
  so the device's preprocessing can be run and compared on the host.
* :func:`summarise` reduces a recipe (a case's, or a file's :func:`preprocess_ops`) to what the device can express:
  colour order, resize and normalisation (:class:`Preprocessing`); the comparison and ``vamc`` read that.
* :func:`from_case` emits the file a case implies, for users who have none.
* :func:`rgb_planar` turns a decoded OpenCV image into the device's input layout, RGB planar uint8 (3, H, W).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.case_inputs import Op
from ..data.cases import Model
from ..data.recipes import OpSpec

FUSION_OP = "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"
CONFIG_KEYS = (
    "IimageFormat",
    "IimageWidth",
    "IimageHeight",
    "OimageWidth",
    "OimageHeight",
    "IimageWidthPitch",
    "IimageHeightPitch",
    "Mean",
    "Std",
    "NormaType",
    "ColorCvtCode",
    "ResizeType",
)
#: The harness always feeds the device RGB planar images (vacc-interfaces.md §3, step 6).
IMAGE_FORMATS = ("RGB_PLANAR",)
#: ResizeType -> the recipe interpolation it equals. Only OpenCV-compatible types have a known CPU twin.
RESIZE_TYPES = {"BILINEAR_CV": "linear"}
#: ColorCvtCode -> whether it swaps the first and last channel of the RGB planar input.
COLOR_CVT_CODES = {"NO_CHANGE": False, "RGB2BGR": True, "BGR2RGB": True}
#: NormaType -> (divisor, uses Mean, uses Std): the device computes (x / divisor - mean) / std per channel.
NORMA_TYPES: dict[str, tuple[float, bool, bool]] = {
    "EQUAL": (1.0, False, False),
    "MINUSMEAN": (1.0, True, False),
    "MINUSMEAN_DIVSTD": (1.0, True, True),
    "DIV255_MINUSMEAN_DIVSTD": (255.0, True, True),
    "DIV255": (255.0, False, False),
    "DIV1275_MINUSONE": (127.5, False, False),
}
#: The recipes' defaults when an op leaves the argument out (see harness.data.recipes).
_RECIPE_DEFAULT_INTERPOLATION = "linear"
_RECIPE_DEFAULT_DIVIDE = 255.0


class VdspError(ValueError):
    """A vdsp params file that cannot be used, or a case that cannot be expressed as one."""


@dataclass(frozen=True)
class VdspParams:
    """One validated fusion op, as the device will run it."""

    source: str
    image_format: str
    output_hw: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    norma_type: str
    color_cvt_code: str
    resize_type: str

    @property
    def name(self) -> str:
        return Path(self.source).name


@dataclass(frozen=True)
class Preprocessing:
    """What a recipe does to an image, reduced to the properties the device can express."""

    colour_order: str  # "RGB" or "BGR": channel order of the tensor
    size: tuple[int, int] | None  # (H, W) the image is resized to; None: not resized
    interpolation: str | None  # recipe interpolation name of the resize
    divide: float  # to_float's divisor (1 without to_float)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: tuple[float, float, float]  # the whole normalisation as y = scale * x + offset, per channel
    offset: tuple[float, float, float]

    def div255_mean_std(self) -> tuple[list[float], list[float]]:
        """Mean and std such that ``(x / 255 - mean) / std`` is this normalisation (the vdsp and vamc form)."""
        std = [1.0 / (255.0 * a) for a in self.scale]
        mean = [-b * s for b, s in zip(self.offset, std)]
        return [tidy(m) for m in mean], [tidy(s) for s in std]


# --------------------------------------------------------------------------- parsing


def load(path: Path) -> VdspParams:
    """Read and validate a vdsp params file; every problem is a :class:`VdspError` naming ``path``."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise VdspError(f"{path}: cannot read vdsp params file: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise VdspError(f"{path}: not valid JSON: {error}") from error
    return parse(raw, str(path))


def parse(raw: Any, source: str) -> VdspParams:
    """Validate a decoded vdsp params document; ``source`` names it in errors."""
    if not isinstance(raw, dict):
        raise VdspError(f"{source}: expected a JSON object with OpType and OpConfig, got {type(raw).__name__}")
    _exact_keys(raw, ("OpType", "OpConfig"), source, "top level")
    if raw["OpType"] != FUSION_OP:
        raise VdspError(f"{source}: unknown OpType {raw['OpType']!r}; the harness understands {FUSION_OP}")
    config = raw["OpConfig"]
    if not isinstance(config, dict):
        raise VdspError(f"{source}: OpConfig must be a JSON object, got {type(config).__name__}")
    _exact_keys(config, CONFIG_KEYS, source, "OpConfig")
    for key in ("IimageWidth", "IimageHeight", "OimageWidth", "OimageHeight", "IimageWidthPitch", "IimageHeightPitch"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise VdspError(f"{source}: OpConfig.{key} must be a positive integer, got {value!r}")
    choices = {
        "IimageFormat": IMAGE_FORMATS,
        "NormaType": tuple(NORMA_TYPES),
        "ColorCvtCode": tuple(COLOR_CVT_CODES),
        "ResizeType": tuple(RESIZE_TYPES),
    }
    for key, known in choices.items():
        if config[key] not in known:
            raise VdspError(f"{source}: unknown OpConfig.{key} {config[key]!r}; known: {', '.join(known)}")
    mean, std = _triple(config, "Mean", source), _triple(config, "Std", source)
    if NORMA_TYPES[config["NormaType"]][2] and min(std) <= 0:
        raise VdspError(f"{source}: OpConfig.Std must be positive, got {list(std)}")
    return VdspParams(
        source=source,
        image_format=config["IimageFormat"],
        output_hw=(config["OimageHeight"], config["OimageWidth"]),
        mean=mean,
        std=std,
        norma_type=config["NormaType"],
        color_cvt_code=config["ColorCvtCode"],
        resize_type=config["ResizeType"],
    )


def _exact_keys(mapping: dict[str, Any], expected: Sequence[str], source: str, where: str) -> None:
    missing = [key for key in expected if key not in mapping]
    unknown = sorted(set(mapping) - set(expected))
    if missing or unknown:
        parts = [f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else ""]
        raise VdspError(f"{source}: {where} keys: {'; '.join(p for p in parts if p)}")


def _triple(config: dict[str, Any], key: str, source: str) -> tuple[float, float, float]:
    value = config[key]
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise VdspError(f"{source}: OpConfig.{key} must be a list of 3 numbers, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


# --------------------------------------------------------------------------- as recipe ops


def preprocess_ops(params: VdspParams) -> tuple[Op, ...]:
    """The CPU recipe that computes what the device computes, from an OpenCV-decoded (BGR) image.

    The adapter converts each image to RGB planar before the device sees it, so ``to_rgb`` comes first;
    a ColorCvtCode that swaps channels then means the tensor stays in BGR order (no ``to_rgb``).
    """
    divisor, uses_mean, uses_std = NORMA_TYPES[params.norma_type]
    if params.norma_type == "DIV1275_MINUSONE":
        mean, std = [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]
    else:
        mean = list(params.mean) if uses_mean else [0.0, 0.0, 0.0]
        std = list(params.std) if uses_std else [1.0, 1.0, 1.0]
    ops = [] if COLOR_CVT_CODES[params.color_cvt_code] else [Op(op="to_rgb")]
    ops += [
        Op(op="resize", interpolation=RESIZE_TYPES[params.resize_type]),
        Op(op="to_float", divide=divisor),
        Op(op="normalize", mean=mean, std=std),
        Op(op="to_chw"),
    ]
    return tuple(ops)


def summarise(ops: Iterable[OpSpec], input_hw: tuple[int, int]) -> Preprocessing:
    """Reduce a recipe to colour order, resize and normalisation, following the ops in order."""
    colour, size, interpolation = "BGR", None, None
    divide, mean, std = 1.0, np.zeros(3), np.ones(3)
    scale, offset = np.ones(3), np.zeros(3)
    for op in ops:
        args = op.args
        if op.op == "to_rgb":
            colour = "RGB"
        elif op.op == "resize":
            size, interpolation = (input_hw[0], input_hw[1]), args.get("interpolation", _RECIPE_DEFAULT_INTERPOLATION)
        elif op.op == "to_float":
            divide = float(args.get("divide", _RECIPE_DEFAULT_DIVIDE))
            scale, offset = scale / divide, offset / divide
        elif op.op == "normalize":
            mean, std = np.asarray(args["mean"], dtype=float), np.asarray(args["std"], dtype=float)
            scale, offset = scale / std, (offset - mean) / std
    return Preprocessing(colour, size, interpolation, divide, _t3(mean), _t3(std), _t3(scale), _t3(offset))


def _t3(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def tidy(value: float) -> float:
    """Round away float noise so emitted files read like hand-written ones (0.5, not 0.49999999999999994)."""
    return float(f"{value:.10g}") + 0.0  # + 0.0 turns -0.0 into 0.0


# --------------------------------------------------------------------------- emission


def from_case(model: Model) -> dict[str, Any]:
    """The vdsp params a case implies, in the zoo's format.

    The device has one OpenCV-compatible resize (bilinear), so a case that resizes otherwise (INTER_AREA
    for ISNet) gets BILINEAR_CV; :func:`harness.build.vdsp_compare.check` on the result reports that difference.
    The normalisation is always written as DIV255_MINUSMEAN_DIVSTD, which expresses any per-channel affine map
    exactly.
    Input sizes are placeholders: the adapter passes each image's own size with the image.
    """
    channels, height, width = model.input_shape
    if channels != 3:
        raise VdspError(f"case {model.name}: the device's fusion op makes 3 channels, the model takes {channels}")
    summary = summarise(model.preprocess, (height, width))
    if min(summary.scale) <= 0:
        raise VdspError(f"case {model.name}: a normalisation with a non-positive scale cannot be a vdsp op")
    mean, std = summary.div255_mean_std()
    return {
        "OpType": FUSION_OP,
        "OpConfig": {
            "IimageFormat": "RGB_PLANAR",
            "IimageWidth": width,
            "IimageHeight": height,
            "OimageWidth": width,
            "OimageHeight": height,
            "IimageWidthPitch": width,
            "IimageHeightPitch": height,
            "Mean": mean,
            "Std": std,
            "NormaType": "DIV255_MINUSMEAN_DIVSTD",
            "ColorCvtCode": "NO_CHANGE" if summary.colour_order == "RGB" else "RGB2BGR",
            "ResizeType": "BILINEAR_CV",
        },
    }


def write(model: Model, path: Path) -> Path:
    """Write :func:`from_case`'s JSON to ``path`` and return it."""
    path.write_text(json.dumps(from_case(model), indent=2) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- device input layout


def rgb_planar(image: np.ndarray) -> np.ndarray:
    """An OpenCV-decoded image (HxW gray, HxWx3 BGR or HxWx4 BGRA, uint8) as RGB planar uint8 (3, H, W)."""
    if image.dtype != np.uint8:
        raise VdspError(f"the device takes uint8 images, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        rgb = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[:, :, 2::-1]
    else:
        raise VdspError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))
