"""What every part of a case file shares: the names of precisions and calibrations, the strict base model that
refuses unknown keys, the error a broken case file raises, and a variant (precision and calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

CALIBRATIONS = ("max", "kl_divergence", "percentile")


PRECISIONS = ("fp32", "fp16", "int8", "int8_dynamic")


TASKS = ("saliency", "matting", "segmentation")


#: Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"mae", "mse", "mad"})


NON_FP32 = PRECISIONS[1:]


def known_keys(mapping: dict[str, Any], known: tuple[str, ...], what: str) -> None:
    """Refuse keys outside ``known``: a typo in a precision name must not remove a check silently."""
    unknown = [key for key in mapping if key not in known]
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}: each must be {what} ({', '.join(known)})")


class CaseError(ValueError):
    """A case file that cannot be used; the message names the file, the key and the reason."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def ordered_bounds(bounds: tuple[float, float], what: str) -> tuple[float, float]:
    """A [low, high] range as given, refused when its ends are swapped (a range that nothing can fall in)."""
    if not bounds[0] <= bounds[1]:
        raise ValueError(f"{what}: [{bounds[0]}, {bounds[1]}] is not a range (low > high)")
    return bounds


@dataclass(frozen=True)
class Variant:
    """A precision and, for static int8, the calibration method (named as the VACC compiler names it)."""

    precision: str
    calibration: str | None = None

    @property
    def label(self) -> str:
        return f"{self.precision}-{self.calibration}" if self.calibration else self.precision
