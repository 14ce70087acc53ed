"""Golden masks: the reviewed fp32 reference outputs, committed under ``golden/<model>/<dataset>/``.

Each folder holds 8-bit PNG maps (``<stem>.png``) and ``meta.json`` (which weights and artifact made
them, and the SHA-256 of each input image, so a user's different file with the same stem is not
compared against the wrong golden). A folder is only ever replaced as a whole: written beside the old
one, then swapped in by renames (a crash between the two renames is repaired on the next load).

Regeneration follows pytest-regressions' one policy, decided per (model, dataset) once per session and
from the fp32 reference's maps, whichever item asks first, so it never depends on the order items run:

* no option: a set that is missing or that the reference no longer matches fails; the obtained maps
  are written beside the expected ones (``<stem>.obtained.png``) for review;
* ``--update-golden`` (``failing``): those sets are rewritten, and the items still fail, naming what
  was rewritten, so a regeneration is never mistaken for a pass; matching sets are left alone;
* ``--update-golden=all``: every set is rewritten and the items pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from filelock import FileLock

from ..data.names import checked_name, inside
from .judgement import GOLDEN_FP32_BUDGET, QUANTISATION, Comparison
from .metrics import to_uint8

OBTAINED_SUFFIX = ".obtained.png"
META = "meta.json"


def image_fingerprint(image: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape: a different file with the same stem is not compared."""
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:16]


def _lock_path(target: Path) -> str:
    """A lock file for writers of ``target`` outside the golden tree, which is under version control."""
    digest = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"segconform-golden-{digest}.lock")


@dataclass
class GoldenSet:
    """The golden maps of one model on one dataset."""

    folder: Path
    meta: dict[str, Any]

    def stems(self) -> list[str]:
        return sorted(self.meta.get("images", {}))

    def map(self, stem: str) -> np.ndarray:
        path = inside(self.folder, f"{checked_name(stem, f'{self.folder / META}: image')}.png")
        raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise FileNotFoundError(f"{path}: golden mask missing or unreadable")
        return raw.astype(np.float32) / 255.0

    def matches_image(self, stem: str, image: np.ndarray) -> bool:
        return self.meta.get("images", {}).get(stem) == image_fingerprint(image)

    def comparable(self, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The golden maps of those of ``images`` (by stem) that are the very inputs the set was made from."""
        return {stem: self.map(stem) for stem in self.stems()
                if stem in images and self.matches_image(stem, images[stem])}


class GoldenStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, model: str, dataset: str) -> Path:
        """The set's folder, refused (:class:`~harness.data.names.UnsafePath`) unless both are plain names and it
        resolves inside the golden folder, symbolic links followed: nothing is read or written outside ``golden/``."""
        return inside(self.root, model, dataset)

    def load(self, model: str, dataset: str) -> GoldenSet | None:
        folder = self.folder(model, dataset)
        if not folder.exists():
            with FileLock(_lock_path(folder)):  # a writer may be between its two renames right now
                if not folder.exists():
                    self._restore_retired(folder)
        meta_path = folder / META
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{meta_path}: not valid JSON: {error}") from error
        if not isinstance(meta, dict) or not isinstance(meta.get("images", {}), dict):
            raise ValueError(f"{meta_path}: not a golden set's meta (a mapping with 'images': stem -> fingerprint)")
        for stem in meta.get("images", {}):
            checked_name(stem, f"{meta_path}: image")
        return GoldenSet(folder, meta)

    @staticmethod
    def _restore_retired(folder: Path) -> None:
        """Put back a set that a crash left retired between the two renames of :meth:`write`; called under the
        set's lock, which :meth:`write` holds across its renames."""
        for retired in sorted(folder.parent.glob(f".{folder.name}-old-*/set")):
            os.replace(retired, folder)
            shutil.rmtree(retired.parent, ignore_errors=True)
            return

    def write(
        self, model: str, dataset: str, maps: dict[str, np.ndarray], images: dict[str, np.ndarray], meta: dict[str, Any]
    ) -> Path:
        """Replace the golden set of (model, dataset) with ``maps``, atomically as a folder."""
        target = self.folder(model, dataset)
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(_lock_path(target)):
            staging = Path(tempfile.mkdtemp(prefix=f".{dataset}-new-", dir=target.parent))
            try:
                for stem, map_ in maps.items():
                    if not cv2.imwrite(str(staging / f"{stem}.png"), to_uint8(map_)):
                        raise OSError(f"{staging / stem}.png: could not write golden mask")
                full_meta = {**meta, "images": {stem: image_fingerprint(images[stem]) for stem in maps}}
                (staging / META).write_text(json.dumps(full_meta, indent=2, sort_keys=True), encoding="utf-8")
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

    def write_obtained(self, model: str, dataset: str, maps: dict[str, np.ndarray]) -> list[Path]:
        """The maps a failing set obtained, as ``<stem>.obtained.png`` beside the expected ones, for review."""
        folder = self.folder(model, dataset)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for stem, map_ in maps.items():
            path = folder / f"{stem}{OBTAINED_SUFFIX}"
            if not cv2.imwrite(str(path), to_uint8(map_)):
                raise OSError(f"{path}: could not write obtained mask")
            written.append(path)
        return written

    def clear_obtained(self, model: str, dataset: str) -> None:
        for path in self.folder(model, dataset).glob(f"*{OBTAINED_SUFFIX}"):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Settled:
    """What the session decided for one golden set: its state, and whether the items using it must fail."""

    state: str  # matches | written | rewritten | created | missing | differs | other-weights
    message: str
    golden: GoldenSet | None
    comparison: Comparison | None = None

    @property
    def fails(self) -> bool:
        return self.state in ("missing", "differs", "rewritten", "created")


#: What :class:`Regeneration` needs of the fp32 reference: its maps, their input images, and the set's meta.
Reference = Callable[[], tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]]


class Regeneration:
    """The one regeneration policy (module docstring), applied once per (model, dataset) per session."""

    def __init__(self, store: GoldenStore, mode: str | None) -> None:
        if mode not in (None, "failing", "all"):
            raise ValueError(f"--update-golden: {mode!r} is not 'failing' or 'all'")
        self.store = store
        self.mode = mode
        self._settled: dict[tuple[str, str], Settled] = {}

    def settle(self, model: str, dataset: str, weights: str, reference: Reference) -> Settled:
        key = (model, dataset)
        if key not in self._settled:
            self._settled[key] = self._decide(model, dataset, weights, reference)
        return self._settled[key]

    def _decide(self, model: str, dataset: str, weights: str, reference: Reference) -> Settled:
        folder = self.store.folder(model, dataset)
        golden = self.store.load(model, dataset)
        maps, images, meta = reference()
        if golden is None:
            if self.mode is None:
                return Settled("missing", f"no golden masks at {folder}; review the fp32 outputs and create them "
                                          "with --update-golden", None)
            return self._write(model, dataset, maps, images, meta, "written" if self.mode == "all" else "created")
        if self.mode == "all":
            return self._write(model, dataset, maps, images, meta, "written")
        if golden.meta.get("weights") != weights:
            if self.mode == "failing":
                return self._write(model, dataset, maps, images, meta, "rewritten")
            return Settled("other-weights", f"golden made with '{golden.meta.get('weights')}', now '{weights}': "
                                            "regenerate with --update-golden", golden)
        expected = golden.comparable({s: images[s] for s in maps if s in images})
        reshaped = [f"{golden.folder / f'{s}.png'} is {expected[s].shape[1]}x{expected[s].shape[0]}, the reference's "
                    f"map {maps[s].shape[-1]}x{maps[s].shape[-2]}"
                    for s in expected if expected[s].shape != maps[s].shape]
        if reshaped:  # not comparable pixel by pixel: a difference of the set, which --update-golden rewrites
            if self.mode == "failing":
                return self._write(model, dataset, maps, images, meta, "rewritten")
            return Settled("differs", f"golden masks of another shape: {'; '.join(reshaped)}; review, then "
                                      "--update-golden", golden)
        comparison = Comparison.of({s: maps[s] for s in expected}, expected, GOLDEN_FP32_BUDGET, QUANTISATION)
        if comparison.passed:
            self.store.clear_obtained(model, dataset)
            return Settled("matches", f"fp32 reference matches {comparison.images} golden masks", golden, comparison)
        if self.mode == "failing":
            return self._write(model, dataset, maps, images, meta, "rewritten", comparison)
        if not expected:  # e.g. other files under the same stems: nothing to compare, nothing to write for review
            return Settled("differs", f"none of the golden masks in {folder} was made from these inputs "
                                      f"({', '.join(golden.stems())}); regenerate with --update-golden",
                            golden, comparison)
        obtained = self.store.write_obtained(model, dataset, {s: maps[s] for s in expected})
        return Settled("differs", f"the fp32 reference no longer matches {folder}: {'; '.join(comparison.violations)}; "
                                  f"obtained maps written beside them ({obtained[0].name}, ...); review, then "
                                  "--update-golden", golden, comparison)

    def _write(self, model: str, dataset: str, maps: dict[str, np.ndarray], images: dict[str, np.ndarray],
               meta: dict[str, Any], state: str, comparison: Comparison | None = None) -> Settled:
        folder = self.store.write(model, dataset, maps, images, meta)
        self.store.clear_obtained(model, dataset)
        why = f" (it differed: {'; '.join(comparison.violations)})" if comparison is not None else ""
        message = f"golden masks {state} at {folder} ({len(maps)} images){why}"
        if state in ("rewritten", "created"):
            message += "; review the diff, then run again without --update-golden"
        return Settled(state, message, self.store.load(model, dataset), comparison)
