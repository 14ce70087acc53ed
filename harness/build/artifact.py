"""What a build hands to a runtime: the built file and the manifest that says what it was built from.

Third-party runtimes name it as ``harness.runtimes.base.Artifact`` (re-exported there), the path it had before the
build stage had a package of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
