"""Golden masks: the reviewed fp32 reference outputs, committed under ``golden/<model>/<dataset>/``.

Each folder holds 8-bit PNG maps (``<stem>.png``) and ``meta.json`` (which weights and artifact
made them, and the SHA-256 of each input image, so a user's different file with the same stem is
not compared against the wrong golden). A folder is only ever replaced as a whole, with
``--update-golden``: written beside the old one, then swapped in by renames.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .metrics import to_uint8

#: 8-bit storage rounds by at most half a level.
QUANTISATION = 0.5 / 255.0


def image_fingerprint(image: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape: a different file with the same stem is not compared."""
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class GoldenSet:
    """The golden maps of one model on one dataset."""

    folder: Path
    meta: dict[str, Any]

    def stems(self) -> list[str]:
        return sorted(self.meta.get("images", {}))

    def map(self, stem: str) -> np.ndarray:
        path = self.folder / f"{stem}.png"
        raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise FileNotFoundError(f"{path}: golden mask missing or unreadable")
        return raw.astype(np.float32) / 255.0

    def matches_image(self, stem: str, image: np.ndarray) -> bool:
        return self.meta.get("images", {}).get(stem) == image_fingerprint(image)


class GoldenStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, model: str, dataset: str) -> Path:
        return self.root / model / dataset

    def load(self, model: str, dataset: str) -> GoldenSet | None:
        folder = self.folder(model, dataset)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{meta_path}: not valid JSON: {error}") from error
        return GoldenSet(folder, meta)

    def write(
        self, model: str, dataset: str, maps: dict[str, np.ndarray], images: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> Path:
        """Replace the golden set of (model, dataset) with ``maps``, atomically as a folder."""
        target = self.folder(model, dataset)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dataset}-new-", dir=target.parent))
        try:
            for stem, map_ in maps.items():
                if not cv2.imwrite(str(staging / f"{stem}.png"), to_uint8(map_)):
                    raise OSError(f"{staging / stem}.png: could not write golden mask")
            full_meta = {**meta, "images": {stem: image_fingerprint(images[stem]) for stem in maps}}
            (staging / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True), encoding="utf-8")
            retired = None
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{dataset}-old-", dir=target.parent))
                os.replace(target, retired / "set")
            os.replace(staging, target)
            if retired is not None:
                shutil.rmtree(retired, ignore_errors=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target
