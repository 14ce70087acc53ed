"""What a run record keeps of each image of a row, so that two nights compare image by image.

An accuracy row keeps what a paired comparison of two nights needs (:class:`PerImage`, put on the row by
:func:`keep_per_image`): each scored image's metric values, a hash and an 8x8 thumbnail of its output map, and
the case's reproduction tolerance; a seeded item's row, whose accuracy is skipped, keeps the hashes and thumbnails
alone (:func:`keep_fingerprints`). The checks write these while they run; the trend
(:mod:`harness.record.trend_rules`) reads them back. Packed as base64 so a record stays one JSON file of lines.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..judge.metrics import Scores, to_uint8
from .report import Row

#: Side of the 8-bit thumbnail (area average) a record keeps of each output map: 64 bytes. Measured on ISNet fp32
#: over 100 ECSSD images + 4 synthetic ones, with the maps' true MAE between runs: a normalisation mean moved by
#: 0.05 changes 81 maps by more than the golden budget, and thumbnails of side 4 / 8 / 16 / 32 show 74 / 76 / 76 / 77
#: of them (none where the maps are within it); ONNX Runtime with graph optimisation off (float noise of 1e-7, the
#: size of a change of CPU kind) changes the 8-bit maps of 65 images (their hashes) and no thumbnail.
THUMBNAIL = 8
#: Bytes of the hash of each 8-bit output map (and its shape) a record keeps: equal hashes, identical 8-bit maps.
HASH_BYTES = 6


def _pack(array: np.ndarray, dtype: str) -> str:
    """An array as base64 of its bytes (``dtype`` little-endian): one line of the record, a third of a JSON list."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unpack(text: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).reshape(shape)


def _hash(map_: np.ndarray) -> np.ndarray:
    """The first :data:`HASH_BYTES` of the BLAKE2b digest of a map's shape and 8-bit image."""
    digest = hashlib.blake2b(str(map_.shape).encode("ascii") + to_uint8(map_).tobytes(), digest_size=HASH_BYTES)
    return np.frombuffer(digest.digest(), np.uint8)


def _thumbnail(map_: np.ndarray) -> np.ndarray:
    """The map's :data:`THUMBNAIL`-sided area average in 8 bits (any map size: the area weights handle the rest)."""
    import cv2

    return to_uint8(cv2.resize(map_.astype(np.float32), (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA))


def _fingerprints(stems: Sequence[str], maps: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The hash and the thumbnail of each of ``stems``' maps, in that order."""
    hashes = np.array([_hash(maps[s]) for s in stems], np.uint8).reshape(-1, HASH_BYTES)
    thumbnails = np.array([_thumbnail(maps[s]) for s in stems], np.uint8).reshape(-1, THUMBNAIL, THUMBNAIL)
    return hashes, thumbnails


@dataclass(frozen=True)
class PerImage:
    """What a run record keeps of each scored image of a row, so that two nights compare image by image.

    ``values``: each image's value of every metric that is a mean over images; ``confusion``: each image's
    [tn, fp, fn, tp] where the task has mIoU (a ratio of summed matrices, not a mean); ``hashes``: of each 8-bit
    output map (equal: identical 8-bit maps); ``thumbnails``: an area average of each map, since a record cannot keep
    maps: the MAE between two runs' thumbnails bounds the maps' MAE from below, up to 8-bit rounding. Max F and max E
    (maxima over thresholds of a mean curve) have no per-image value short of the 256-point curves: not kept. An item
    whose metrics are not scored (seeded weights) keeps the fingerprints alone, no value.
    """

    stems: tuple[str, ...]
    values: dict[str, np.ndarray]
    confusion: np.ndarray | None
    hashes: np.ndarray
    thumbnails: np.ndarray

    @classmethod
    def of(cls, scores: Scores, maps: Mapping[str, np.ndarray]) -> PerImage:
        """The record of ``scores`` and the maps they were computed from (``maps`` may hold more images)."""
        values = {m: v.astype(np.float32) for m in scores.metrics if (v := scores.per_image(m)) is not None}
        return cls(scores.stems, values, scores.parts.get("confusion"), *_fingerprints(scores.stems, maps))

    @classmethod
    def of_maps(cls, maps: Mapping[str, np.ndarray]) -> PerImage:
        """The fingerprints alone of every map in ``maps`` (stems in order), for an item whose metrics mean nothing."""
        stems = tuple(sorted(maps))
        return cls(stems, {}, None, *_fingerprints(stems, maps))

    def as_dict(self) -> dict[str, Any]:
        packed: dict[str, Any] = {
            "stems": list(self.stems), "values": {m: _pack(v, "<f4") for m, v in self.values.items()},
            "hash": _pack(self.hashes, "u1"), "thumbnail_side": self.thumbnails.shape[-1],
            "thumbnail": _pack(self.thumbnails, "u1")}
        if self.confusion is not None:
            packed["confusion"] = _pack(self.confusion, "<u4")
        return packed

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PerImage | None:
        """The per-image record of a row; None for a row without one (an older record, or a row with no metrics)."""
        packed = row.get("per_image")
        if not packed:
            return None
        count, side = len(packed["stems"]), packed["thumbnail_side"]
        confusion = _unpack(packed["confusion"], "<u4", (count, 4)).astype(np.int64) if "confusion" in packed else None
        return cls(tuple(packed["stems"]), {m: _unpack(v, "<f4", (count,)) for m, v in packed["values"].items()},
                   confusion, _unpack(packed["hash"], "u1", (count, -1)),
                   _unpack(packed["thumbnail"], "u1", (count, side, side)))

    def subset(self, stems: Sequence[str]) -> PerImage:
        """The same record restricted to ``stems``, in that order (to pair two runs image by image)."""
        index = {stem: i for i, stem in enumerate(self.stems)}
        rows = np.array([index[s] for s in stems], dtype=np.int64)
        confusion = None if self.confusion is None else self.confusion[rows]
        return PerImage(tuple(stems), {m: v[rows] for m, v in self.values.items()}, confusion, self.hashes[rows],
                        self.thumbnails[rows])


def keep_per_image(row: Row, scores: Scores, maps: Mapping[str, np.ndarray], tolerance: Mapping[str, float]) -> None:
    """Put on an accuracy row what the next night's trend needs to pair with it: the per-image record, and the
    tolerance its metrics are judged with (the case's ``acceptance.reproduction``), so trend reads no case file."""
    row.per_image = PerImage.of(scores, maps).as_dict()
    row.tolerance = {metric: float(value) for metric, value in tolerance.items()}


def keep_fingerprints(row: Row, maps: Mapping[str, np.ndarray]) -> None:
    """Put on the row of an item whose accuracy check is skipped (seeded weights) the fingerprint of each output map,
    the hash and thumbnail :func:`keep_per_image` keeps, so that trend sees its outputs change night over night like
    a trained item's. For such items only: a trained item's accuracy row keeps the same fingerprints beside its
    metric values, which a second record on the row would mix with."""
    row.per_image = PerImage.of_maps(maps).as_dict()
