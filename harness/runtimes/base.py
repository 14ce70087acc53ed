"""The Runtime protocol: every backend (ONNX Runtime, torch, OpenVINO, VACC, vamp files) looks the same to the harness.

A runtime either takes model-ready tensors (``takes_images = False``: the host ran the case's
preprocessing) or decoded images at their original size (``takes_images = True``: the VACC
device resizes and normalises itself from its vdsp JSON). The harness feeds each the right kind.
The prediction is always the first output a session returns.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..cases import Item, Variant


@dataclass(frozen=True)
class Artifact:
    """A built model plus its manifest (what it was built from, how, with which tool versions)."""

    path: Path
    manifest: dict[str, Any] = field(hash=False, compare=False)

    @property
    def key(self) -> str:
        return str(self.manifest.get("key", self.path))

    @classmethod
    def from_dir(cls, folder: Path, filename: str) -> "Artifact":
        """An artifact stored as ``folder/filename`` with ``folder/manifest.json`` beside it."""
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return cls(folder / filename, manifest)


@dataclass(frozen=True)
class RunInput:
    """One batch as every runtime may need it: the preprocessed tensor and the decoded images it came from."""

    tensor: np.ndarray | None
    images: Sequence[np.ndarray]
    stems: Sequence[str]


class Session(Protocol):
    """A loaded model, ready to run batches."""

    def run(self, batch: RunInput) -> list[np.ndarray]:
        """Outputs with the batch dimension first; element 0 is the prediction."""
        ...


@dataclass(frozen=True)
class RuntimeConfig:
    """Command-line settings some runtimes need; each runtime reads only its own."""

    threads: int | None = None
    vacc_device: int = 0
    vacc_models: Path | None = None
    vamp_outputs: Path | None = None


class Runtime(Protocol):
    """A backend the harness can load artifacts into.

    ``artifact_kind`` says what the harness must build for it: an ONNX file of the item's
    precision, the fp32 TorchScript module, or nothing (the VACC device and vamp bring their own
    compiled model or outputs, located from the item and the :class:`RuntimeConfig`).
    """

    name: ClassVar[str]
    takes_images: ClassVar[bool]
    artifact_kind: ClassVar[Literal["onnx", "torchscript", "none"]]

    def available(self) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, a reason a user can act on)."""
        ...

    def supports(self, variant: "Variant") -> tuple[bool, str]:
        """Whether this runtime can run ``variant`` at all, with the reason when it cannot."""
        ...

    def load(self, artifact: Artifact | None, item: "Item") -> Session:
        """Load the model of ``item`` (``artifact`` is what ``artifact_kind`` asked for) into a session."""
        ...


def importable(module: str, install_hint: str = "") -> tuple[bool, str]:
    """``available()``'s answer for a runtime that needs only a Python module: (True, "") or the reason."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        hint = f"; {install_hint}" if install_hint else ""
        return False, f"{module} is not installed ({error}){hint}"
    return True, ""


class RuntimeUnavailable(RuntimeError):
    """Raised when a runtime that reported itself unavailable is used anyway; carries the reason."""
