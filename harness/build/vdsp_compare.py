"""A vdsp params file against a case: every way the device's preprocessing differs from the case's recipe.

When the device's preprocessing (:mod:`harness.build.vdsp`) and the case's recipe disagree, the deployed model
silently sees other inputs than it was trained on (for ISNet the zoo's file resizes bilinearly where the seed says
INTER_AREA). :func:`check` makes that explicit: both are reduced to the same terms
(:func:`harness.build.vdsp.summarise` of the file's :func:`~harness.build.vdsp.preprocess_ops` and of the recipe)
and each difference becomes a :class:`Finding` naming the file, the case and both values (size, interpolation,
colour order, scale, mean, std, or the order of the normalisation). Equivalent normalisations agree, within the
tolerance of the device's fp16 mean and std.

Kept apart from :mod:`harness.build.vdsp`, which reads, interprets and writes the file itself: this is a judgement of
one file against one case, made by the ``vdsp-check`` and ``vdsp-json`` commands (:mod:`harness.cli`) and by the VACC
runtime's load (:mod:`harness.runtimes.vacc`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.cases import Model
from .vdsp import Preprocessing, VdspParams, preprocess_ops, summarise, tidy

#: Relative tolerance for mean/std: the device stores them as fp16 (about 3 decimal digits).
_RTOL = 1e-3

_CV2_NAMES = {"nearest": "INTER_NEAREST", "linear": "INTER_LINEAR", "area": "INTER_AREA", "cubic": "INTER_CUBIC"}


@dataclass(frozen=True)
class Finding:
    """One disagreement between a vdsp file and a case; ``text`` is what a user reads."""

    field: str  # size, interpolation, colour_order, scale, mean, std, normalisation
    vdsp: Any
    case: Any
    text: str

    def __str__(self) -> str:
        return self.text


def check(params: VdspParams, model: Model) -> list[Finding]:
    """Every way the device's preprocessing differs from ``model``'s recipe, most visible first."""
    input_hw = (model.input_shape[1], model.input_shape[2])
    device = summarise(preprocess_ops(params), params.output_hw)
    case = summarise(model.preprocess, input_hw)
    where = f"{params.name} vs case {model.name}"
    findings: list[Finding] = []
    if case.size != device.size:
        said = f"{case.size[0]}x{case.size[1]} (HxW)" if case.size else "no resize"
        findings.append(
            Finding(
                "size",
                device.size,
                case.size,
                f"{where}: size: the device resizes to {params.output_hw[0]}x{params.output_hw[1]} (HxW, "
                f"OimageHeight x OimageWidth), the case's recipe gives {said}",
            )
        )
    if case.size is not None and case.interpolation != device.interpolation:
        findings.append(
            Finding(
                "interpolation",
                params.resize_type,
                case.interpolation,
                f"{where}: interpolation: ResizeType {params.resize_type} resizes like cv2."
                f"{_CV2_NAMES[str(device.interpolation)]}, the case's recipe uses cv2."
                f"{_CV2_NAMES.get(str(case.interpolation), case.interpolation)}",
            )
        )
    if case.colour_order != device.colour_order:
        findings.append(
            Finding(
                "colour_order",
                device.colour_order,
                case.colour_order,
                f"{where}: colour order: the device's tensor is {device.colour_order} (IimageFormat "
                f"{params.image_format}, ColorCvtCode {params.color_cvt_code}), the case's recipe gives "
                f"{case.colour_order}",
            )
        )
    findings += _normalisation_findings(params, device, case, where)
    return findings


def _normalisation_findings(
    params: VdspParams, device: Preprocessing, case: Preprocessing, where: str
) -> list[Finding]:
    """Equivalent normalisations agree (x/127.5 - 1 equals (x/255 - 0.5)/0.5); otherwise name each part that differs."""
    if _close(device.scale, case.scale) and _close(device.offset, case.offset):
        return []
    formula = f"(x / {tidy(device.divide):g} - mean) / std"
    findings = []
    if not _close((device.divide,), (case.divide,)):
        findings.append(
            Finding(
                "scale",
                device.divide,
                case.divide,
                f"{where}: scale: NormaType {params.norma_type} divides by {tidy(device.divide):g}, "
                f"the case's to_float divides by {tidy(case.divide):g}",
            )
        )
    for field, ours, theirs in (("mean", device.mean, case.mean), ("std", device.std, case.std)):
        if not _close(ours, theirs):
            findings.append(
                Finding(
                    field,
                    list(ours),
                    list(theirs),
                    f"{where}: {field}: the device uses {field} {_fmt(ours)} in {formula} "
                    f"(NormaType {params.norma_type}), the case's recipe uses {_fmt(theirs)}",
                )
            )
    if not findings:
        findings.append(
            Finding(
                "normalisation",
                [device.scale, device.offset],
                [case.scale, case.offset],
                f"{where}: normalisation: same divisor, mean and std but applied in another order: the device "
                f"maps x to {_fmt(device.scale)} * x + {_fmt(device.offset)}, the case to "
                f"{_fmt(case.scale)} * x + {_fmt(case.offset)}",
            )
        )
    return findings


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return bool(np.allclose(a, b, rtol=_RTOL, atol=1e-6))


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{tidy(v):g}" for v in values) + "]"
