"""vamc build configs emitted from a case, so the case file stays the single source of truth.

The VACC compiler (``vamc compile <yaml>``) takes one YAML per model and precision
(vacc-interfaces.md §1). Everything in it is already in the case: the input shape, the calibration
dataset, and the recipe that becomes the calibration preprocessing (``process_ops``). Writing these
by hand is how a compiled model ends up calibrated on other inputs than it is evaluated on.

Names: :func:`artifact_name` is both the config's ``name`` and the folder the compiler writes,
``<workspace>/<name>/mod``. The VACC runtime and the vamp outputs folder use the same name, so one
name follows an item from build to evaluation: ``<model>_<precision>[_<calibration>]``, e.g.
``isnet_int8_kl_divergence`` or ``isnet_fp16``.

Resize ``size`` in ``process_ops`` is written ``[H, W]``, the order of ``frontend.shape.input``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from ..data.case_base import CALIBRATIONS

from ..data.cases import Model, Variant
from .vdsp import summarise

PRECISIONS = ("fp16", "int8")
DEFAULT_SAMPLES = 50
DEFAULT_WORKSPACE = "./deploy_weights/"
DEFAULT_SUFFIX = "jpg"
_IMAGE_SUFFIXES = {"jpg", "jpeg", "png", "bmp"}


class VamcError(ValueError):
    """A request the compiler config cannot express (precision, calibration, recipe)."""


def artifact_name(model_name: str, variant: Variant) -> str:
    """``<model>_<precision>[_<calibration>]``: the compiled model's folder under the vamc workspace."""
    return "_".join([model_name, variant.precision] + ([variant.calibration] if variant.calibration else []))


def check_variant(variant: Variant) -> None:
    """Raise :class:`VamcError` unless the compiler can build ``variant`` (fp16, or int8 with a calibration)."""
    if variant.precision not in PRECISIONS:
        raise VamcError(f"vamc builds {' and '.join(PRECISIONS)} models, not {variant.precision!r}")
    if variant.precision == "int8" and variant.calibration not in CALIBRATIONS:
        raise VamcError(f"int8 needs a calibration, one of {', '.join(CALIBRATIONS)}; got {variant.calibration!r}")
    if variant.precision == "fp16" and variant.calibration is not None:
        raise VamcError(f"fp16 takes no calibration, got {variant.calibration!r}")


def unbuildable(variant: Variant, who: str) -> str | None:
    """A runtime's ``_unsupported`` answer for devices that run what vamc compiles: None, or why not."""
    try:
        check_variant(variant)
    except VamcError as error:
        return f"{who} runs models vamc builds ({'/'.join(PRECISIONS)}): {error}"
    return None


def default_data(model: Model) -> str:
    """The case's calibration images, relative to the data root (``<set>/images``, see the data README)."""
    dataset = next(d for d in model.datasets if d.name == model.calibration_dataset)
    return f"{dataset.folder}/images"


def image_suffix(folder: Path) -> str:
    """The most common image suffix in ``folder`` (the compiler samples files by suffix); jpg when unknown."""
    if not folder.is_dir():
        return DEFAULT_SUFFIX
    counts = Counter(p.suffix.lower().lstrip(".") for p in folder.iterdir() if p.is_file())
    images = [(n, s) for s, n in counts.items() if s in _IMAGE_SUFFIXES]
    return max(images)[1] if images else DEFAULT_SUFFIX


def process_ops(model: Model) -> list[dict[str, Any]]:
    """The recipe as the compiler's calibration preprocessing: decode, resize, normalise (x/255 form), to tensor."""
    height, width = model.input_shape[1], model.input_shape[2]
    summary = summarise(model.preprocess, (height, width))
    if summary.colour_order != "RGB":
        raise VamcError(
            f"case {model.name}: its recipe feeds BGR tensors; the compiler's process_ops have no colour-order "
            "setting the harness knows of, so calibration would see other inputs than evaluation"
        )
    mean, std = summary.div255_mean_std()
    ops: list[dict[str, Any]] = [{"type": "DecodeImage"}]
    if summary.size is not None:
        ops.append({"type": "Resize", "size": [height, width]})
    ops += [{"type": "Normalize", "mean": mean, "std": std}, {"type": "ToTensor"}]
    return ops


def build_config(
    model: Model,
    variant: Variant,
    *,
    onnx: str,
    data: str,
    suffix: str = DEFAULT_SUFFIX,
    samples: int = DEFAULT_SAMPLES,
    workspace: str = DEFAULT_WORKSPACE,
) -> dict[str, Any]:
    """The build YAML (as a mapping) for ``model`` at ``variant``; int8 adds quantisation and its dataset."""
    check_variant(variant)
    if samples <= 0:
        raise VamcError(f"the calibration sample count must be positive, got {samples}")
    backend: dict[str, Any] = {"type": "tvm_vacc", "dtype": variant.precision}
    config: dict[str, Any] = {
        "name": artifact_name(model.name, variant),
        "frontend": {
            "shape": {"input": [1, *model.input_shape]},
            "type": "onnx",
            "checkpoint": onnx,
            "dtype": "fp32",
        },
        "backend": backend,
    }
    if variant.precision == "int8":
        backend["quantize"] = {"calibrate_mode": variant.calibration, "quantize_per_channel": True}
        config["dataset"] = {
            "path": data,
            "sampler": {"suffix": suffix, "get_data_num": samples},
            "process_ops": process_ops(model),
        }
    config["workspace"] = {"path": workspace}
    return config


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, one-line lists for lists of numbers and words (``[1, 3, 320, 320]``)."""


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flat = all(not isinstance(v, (dict, list)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def dump(config: dict[str, Any]) -> str:
    """YAML text in the key order the zoo's configs use."""
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
