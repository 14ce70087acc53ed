"""Run records and trends: every run leaves a record, and ``python -m harness trend`` compares night over night.

A record (``reports/history/<UTC time>-<commit>-<machine id>.json``, never overwritten) holds when and
where the run happened (UTC time, git commit, the machine fingerprint with the CPU's int8 instruction
set, tool versions), what it ran (options, selection, case folder) and every report row. An accuracy row
also keeps what a paired comparison of two nights needs (:class:`PerImage`): each scored image's metric
values, a hash and an 8x8 thumbnail of its output map, and the case's reproduction tolerance; a seeded
item's row, whose accuracy is skipped, keeps the hashes and thumbnails alone (:func:`keep_fingerprints`).

:func:`trend` compares the newest record with the previous comparable one (a row of the same item and
dataset, with the same weights, on shared images), with the previous complete run of the same case folder
and machine when that is another, and with the stored baseline (``reports/history/baseline.json``, saved
with ``trend --save-baseline``), in the same way: each check's outcome (a new failure or error, lost
coverage: a check that passed or failed now skipped or xfail; fixes); between runs of one case folder and
machine, every item, row and check the older run had and the newer lacks (vanished); outputs that changed
on the shared images beyond the golden budget; metrics whose *paired* difference between the two runs on
the shared images lies wholly beyond the case's tolerance (the same bootstrap as the paired fp32
comparison; older records without per-image values fall back to the older run's marginal interval, and
say so); the other judged figures (conformance of the build and of the deployed session, paired
differences from fp32, a documented collapse's like any other's); latencies and ratios that moved. An
incomplete newest run, or something worse, makes the command exit with status 1, and with
``--fail-on-change`` any change does. It also draws one PNG per model (metric and latency over runs,
precision by precision, changed nights marked) and links them from ``summary.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.case_base import LOWER_IS_BETTER
from ..judge.judgement import GOLDEN_FP32_BUDGET, Bootstrap
from ..judge.metrics import Scores, to_uint8
from .journal import create, incomplete_record, record_base, unfinished
from .report import Row, atomic_write

HISTORY = "history"
BASELINE = "baseline.json"
PLOTS = "plots"
#: A latency median this much slower than the compared run's is reported as a regression (a burst of host load on a
#: shared 2-core machine has slowed a benchmark by 1.7x: smaller moves are left to the same-run ratio gates).
LATENCY_MOVE = 0.75
#: A speed-up ratio this much lower than the compared run's is reported as a regression.
RATIO_MOVE = 0.15
#: Side of the 8-bit thumbnail (area average) a record keeps of each output map: 64 bytes. Measured on ISNet fp32
#: over 100 ECSSD images + 4 synthetic ones, with the maps' true MAE between runs: a normalisation mean moved by
#: 0.05 changes 81 maps by more than the golden budget, and thumbnails of side 4 / 8 / 16 / 32 show 74 / 76 / 76 / 77
#: of them (none where the maps are within it); ONNX Runtime with graph optimisation off (float noise of 1e-7, the
#: size of a change of CPU kind) changes the 8-bit maps of 65 images (their hashes) and no thumbnail.
THUMBNAIL = 8
#: Bytes of the hash of each 8-bit output map (and its shape) a record keeps: equal hashes, identical 8-bit maps.
HASH_BYTES = 6
#: Two runs' maps of one image differ when their thumbnails do by more than this MAE: the fp32 golden budget (the
#: same network on another machine, stored in 8 bits), which is all that may separate two runs of an unchanged item.
OUTPUTS_BUDGET = GOLDEN_FP32_BUDGET.mae
#: What two runs of an unchanged item's conformance figures (per-image MAE mean and worst, worst max |diff|) may differ
#: by: the fp32 golden budget (the same network on another machine, stored in 8 bits).
FIGURE_MOVE = {"mae_mean": GOLDEN_FP32_BUDGET.mae, "mae_worst": GOLDEN_FP32_BUDGET.mae_worst,
               "max_abs_worst": GOLDEN_FP32_BUDGET.max_abs}
#: The conformance figures a row's checks judge, where they sit and how a trend names them: the build against its
#: reference, the deployed session against fp32 and against the build's exact arithmetic.
CONFORMANCE_FIGURES = ((("conformance",), "conformance"), (("deployment", "conformance"), "deployed conformance"),
                       (("deployment", "vs_exact"), "deployed kernels vs the exact build"))
#: The paired differences from fp32 a row's checks judge: the build's and the deployed session's.
PAIRED_FIGURES = ((("vs_fp32",), "vs fp32"), (("deployment", "vs_fp32"), "deployed vs fp32"))
#: Outcomes of a check that fail the run.
FAILURES = ("failed", "error")
#: Outcomes of a check that judge nothing, or under which a failure no longer fails the run.
UNJUDGED = ("skipped", "xfail", "xpass")
_TREND_START, _TREND_END = "<!-- segconform trend -->", "<!-- /segconform trend -->"


def git_output(*args: str, cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def head_commit(root: Path) -> str:
    """The full commit hash checked out at ``root`` ("unknown" outside git)."""
    return git_output("rev-parse", "HEAD", cwd=root) or "unknown"


def save(report_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` under ``reports/history/`` with a name no earlier record has, whole or not at all."""
    folder = report_dir / HISTORY
    folder.mkdir(parents=True, exist_ok=True)
    base, text = record_base(record["run"]), json.dumps(record, indent=1, default=str)
    for attempt in range(1000):
        path = folder / (f"{base}.json" if attempt == 0 else f"{base}-{attempt}.json")
        if create(path, text):
            return path
    raise OSError(f"{folder}: could not find a free name for the run record {base}")


def load(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable run record: {error}") from error
    if not isinstance(record, dict) or "run" not in record or "rows" not in record:
        raise ValueError(f"{path}: not a segconform run record (no 'run' and 'rows')")
    return record


def records(report_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every run record, oldest first (by start time, then name); a run that never completed is read from its
    journal, as a record marked incomplete (:mod:`harness.record.journal`)."""
    folder = report_dir / HISTORY
    found = [(p, load(p)) for p in sorted(folder.glob("*.json")) if p.name != BASELINE] if folder.is_dir() else []
    for path in unfinished(folder):
        try:
            found.append((path, incomplete_record(path)))
        except (OSError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a readable run journal: {error}") from error
    return sorted(found, key=lambda pr: (pr[1]["run"].get("started", ""), pr[0].name))


def _listed(names: Sequence[str], shown: int = 3) -> str:
    """The first few of ``names`` and how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _incomplete_line(record: Mapping[str, Any], tests: Mapping[str, Any]) -> str:
    """What an incomplete run holds: the checks that finished, the items they left rows of, what did not run."""
    if tests.get("unreadable"):
        return (f"incomplete run (killed, or still running): {tests['unreadable']}; no check finished; trend exits 1 "
                "until a complete run follows")
    items = sorted({row["item"] for row in record["rows"]})
    missing = tests["not_run"]
    return (f"incomplete run (killed, or still running): {tests['finished']} of {tests['selected']} checks finished, "
            f"with rows of {len(items)} item{'s' if len(items) != 1 else ''}{f' ({_listed(items)})' if items else ''}; "
            f"not run: {len(missing)}{f' ({_listed(missing)})' if missing else ''}; compared on what finished only "
            "(what did not run is no change); trend exits 1 until `pytest ... --resume` completes it")


def progress_lines(record: Mapping[str, Any]) -> list[str]:
    """What a record says of its checks: an incomplete run's finished checks, items and missing checks, runtime
    faults."""
    tests = record.get("tests")
    if not tests:
        return []
    lines = [_incomplete_line(record, tests)] if record["run"].get("complete") is False else []
    faults = tests.get("runtime_faults", {})
    if faults:
        lines.append("runtime faults (the check failed; --resume reruns it): " +
                     ", ".join(f"{nodeid.rsplit('::', 1)[-1]} ({kind})" for nodeid, kind in sorted(faults.items())))
    return lines


# --------------------------------------------------------------------------- what a record keeps of each image


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


# --------------------------------------------------------------------------- which runs compare


def _rows(record: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["item"], r["dataset"]): r for r in record["rows"]}


def _name(row: Mapping[str, Any]) -> str:
    return f"{row['item']} on {row['dataset']}"


def not_comparable(new: Mapping[str, Any], old: Mapping[str, Any]) -> str | None:
    """Why two rows of one item and dataset cannot be compared (None when they can): other weights, or no image in
    common (by name where both rows kept per-image records, else by count)."""
    if new.get("weights") and old.get("weights") and new["weights"] != old["weights"]:
        return f"weights changed: {old['weights']} -> {new['weights']}"
    if new.get("per_image") and old.get("per_image"):
        ours, theirs = new["per_image"]["stems"], old["per_image"]["stems"]
        if set(ours).isdisjoint(theirs):
            return f"different images: 0 shared ({len(theirs)} -> {len(ours)} scored)"
        return None
    if new.get("images") != old.get("images"):
        return f"different images: {old.get('images')} -> {new.get('images')} images"
    return None


def comparable(newer: dict[str, Any], older: dict[str, Any]) -> bool:
    """Two runs compare when they share a row of the same item and dataset, with the same weights and images."""
    a, b = _rows(newer), _rows(older)
    return any(not_comparable(a[k], b[k]) is None for k in a.keys() & b.keys())


def _why_not(newer: dict[str, Any], older: dict[str, Any]) -> str:
    """Why no row of two runs compares, in a few examples."""
    a, b = _rows(newer), _rows(older)
    shared = sorted(a.keys() & b.keys())
    if not shared:
        return "no row of the same item and dataset"
    reasons = [f"{_name(a[k])}: {not_comparable(a[k], b[k])}" for k in shared]
    return "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more rows" if len(reasons) > 3 else "")


def _previous(history: Sequence[dict[str, Any]], index: int) -> int | None:
    """The index of the latest run before ``history[index]`` that compares with it."""
    return next((i for i in range(index - 1, -1, -1) if comparable(history[index], history[i])), None)


def _same_setup(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """Whether two runs checked the same case folder on the same machine, so that what the older one checked and the
    newer one lacks vanished (another machine may lack a runtime; another case folder holds other items)."""
    a, b = newer["run"], older["run"]
    return a.get("machine", {}).get("id") == b.get("machine", {}).get("id") and a.get("cases_dir") == b.get("cases_dir")


def _previous_setup(history: Sequence[dict[str, Any]], index: int) -> int | None:
    """The index of the latest complete run before ``history[index]`` of the same case folder and machine, whether
    or not a row of theirs compares: an item gone from the newer run must not hide by leaving no row to compare, nor
    behind a killed run in between that never reached it."""
    return next((i for i in range(index - 1, -1, -1)
                 if history[i]["run"].get("complete") is not False and _same_setup(history[index], history[i])), None)


# --------------------------------------------------------------------------- what changed between two runs


@dataclass(frozen=True)
class Finding:
    """One line of a trend, with the model it concerns (its plot marks the night)."""

    model: str
    text: str


@dataclass
class Trend:
    """What changed between two runs: ``worse`` decides the exit status; with ``--fail-on-change``, ``changes`` do.

    ``changed``: outputs that changed, neither better nor worse by themselves; ``notes``: what is no change
    (paired differences within tolerance, maps that differ within the golden budget) or was not compared, and why.
    """

    against: str
    worse: list[Finding] = field(default_factory=list)
    better: list[Finding] = field(default_factory=list)
    changed: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    same: int = 0
    images: int = 0
    images_changed: int = 0

    @property
    def changes(self) -> list[Finding]:
        return [*self.worse, *self.better, *self.changed]

    def lines(self) -> list[str]:
        out = [f"against {self.against}:"]
        for tag, findings in (("WORSE", self.worse), ("better", self.better), ("change", self.changed),
                              ("note", self.notes)):
            out += [f"  {tag:<6} {finding.text}" for finding in findings]
        outputs = f"outputs of {self.images_changed} of {self.images} images changed" if self.images else ""
        if not self.changes:
            out.append(f"  no change beyond intervals and thresholds ({self.same} rows compared"
                       f"{'; ' + outputs if outputs else ''})")
        elif outputs:
            out.append(f"  {outputs} beyond the golden budget (MAE {OUTPUTS_BUDGET:g})")
        return out


@dataclass(frozen=True)
class Paired:
    """One metric of one row in two runs on the same images: before, after, and the interval of the difference."""

    metric: str
    before: float
    after: float
    interval: tuple[float, float]

    @property
    def delta(self) -> float:
        return self.after - self.before

    def verdict(self, tolerance: float | None) -> str | None:
        """``worse`` / ``better`` when the interval lies wholly beyond ``tolerance`` on that side, as the paired fp32
        comparison judges (both sides here: a night that moves a lot either way changed what the model does)."""
        if tolerance is None:
            return None
        sign = 1.0 if self.metric in LOWER_IS_BETTER else -1.0
        low, high = sorted(sign * bound for bound in self.interval)
        return "worse" if low > tolerance else "better" if high < -tolerance else None

    @property
    def difference(self) -> str:
        """The paired difference with its interval, e.g. ``+0.0033 [+0.0021, +0.0046]``."""
        return f"{self.delta:+.4f} [{self.interval[0]:+.4f}, {self.interval[1]:+.4f}]"


def _differs(ours: PerImage, theirs: PerImage) -> bool:
    """Whether any kept metric value of any image differs (else every paired difference is exactly 0)."""
    values = any(not np.array_equal(v, theirs.values.get(m)) for m, v in ours.values.items())
    return values or (ours.confusion is not None and not np.array_equal(ours.confusion, theirs.confusion))


def _paired_metrics(row: Mapping[str, Any], ours: PerImage, theirs: PerImage) -> dict[str, Paired]:
    """Every metric of the row that both runs kept per image, paired on the same images with the machinery of the
    paired fp32 comparison (95%, 1000 resamples, as the suite's defaults): bootstrap-t of the mean difference, mIoU
    by the percentile interval of its resamples."""
    bootstrap = Bootstrap()
    weights = bootstrap.weights(len(ours.stems), f"trend/{_name(row)}") if _differs(ours, theirs) else None
    paired = {}
    for metric in row.get("metrics", {}):
        if metric in ours.values and metric in theirs.values:
            after, before = ours.values[metric].astype(np.float64), theirs.values[metric].astype(np.float64)
            interval = (0.0, 0.0) if weights is None else bootstrap.studentised(after - before, weights)
            paired[metric] = Paired(metric, float(before.mean()), float(after.mean()), interval)
        elif metric == "miou" and ours.confusion is not None and theirs.confusion is not None:
            new, old = (Scores("segmentation", ours.stems, {"confusion": confusion})
                        for confusion in (ours.confusion, theirs.confusion))
            interval = (0.0, 0.0) if weights is None else bootstrap.percentile(
                new.weighted(weights)["miou"] - old.weighted(weights)["miou"])
            paired[metric] = Paired(metric, old.results()["miou"], new.results()["miou"], interval)
    return paired


def _outputs(trend: Trend, row: Mapping[str, Any], ours: PerImage, theirs: PerImage) -> bool:
    """Whose maps changed on the shared images: beyond the golden budget by their thumbnails' MAE (0 where the 8-bit
    maps are identical). Returns whether any did."""
    differ = np.any(ours.hashes != theirs.hashes, axis=1)
    mae = np.abs(ours.thumbnails.astype(np.float64) - theirs.thumbnails).mean(axis=(1, 2)) / 255.0
    mae = np.where(differ, mae, 0.0)
    changed = mae > OUTPUTS_BUDGET
    count, side = len(ours.stems), ours.thumbnails.shape[-1]
    trend.images += count
    trend.images_changed += int(changed.sum())
    if changed.any():
        worst = int(np.argmax(mae))
        trend.changed.append(Finding(row["model"], (
            f"{_name(row)}: outputs of {int(changed.sum())} of {count} images changed (largest MAE {mae[worst]:.4f} "
            f"on image {ours.stems[worst]}; MAE of {side}x{side} thumbnails, a lower bound of the maps', against the "
            f"golden budget {OUTPUTS_BUDGET:g})")))
    elif differ.any():
        trend.notes.append(Finding(row["model"], (
            f"{_name(row)}: the 8-bit maps of {int(differ.sum())} of {count} images differ, all within the golden "
            f"budget (largest thumbnail MAE {mae.max():.4f}): no change")))
    return bool(changed.any())


def _judge_paired(trend: Trend, row: Mapping[str, Any], paired: dict[str, Paired], images: int,
                  outputs_changed: bool) -> None:
    """Metrics whose paired interval lies wholly beyond the row's tolerance are worse or better; the others' deltas
    are noted when something moved (outputs, another metric, or their own interval excludes 0)."""
    tolerance = row.get("tolerance", {})
    within = []
    for result in paired.values():
        limit = tolerance.get(result.metric)
        verdict = result.verdict(limit)
        if verdict is None:
            within.append(result)
            continue
        text = (f"{_name(row)}: {result.metric} {result.before:.4f} -> {result.after:.4f}, paired difference on "
                f"{images} images {result.difference}, wholly beyond the tolerance {limit:g}")
        (trend.worse if verdict == "worse" else trend.better).append(Finding(row["model"], text))
    shifted = any(low > 0 or high < 0 for low, high in (r.interval for r in within))
    if within and (outputs_changed or shifted or len(within) < len(paired)):
        cells = [f"{r.metric} {r.difference} (" + (f"tolerance {tolerance[r.metric]:g})" if r.metric in tolerance
                                                    else "no tolerance)") for r in within]
        trend.notes.append(Finding(row["model"], f"{_name(row)}: paired differences on {images} images, "
                                                 f"within tolerance: {', '.join(cells)}"))


def _marginal(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any], metrics: Sequence[str], why: str) -> None:
    """Metrics without paired values: moved outside the older run's interval, which the image-to-image spread widens
    far beyond what pairing sees (labelled with ``why``)."""
    for metric in metrics:
        value = new["metrics"][metric]
        if metric not in old.get("metrics", {}) or metric not in old.get("ci", {}):
            continue
        before, (low, high) = old["metrics"][metric], old["ci"][metric]
        if low <= value <= high or value == before:
            continue
        worse = value > before if metric in LOWER_IS_BETTER else value < before
        text = (f"{_name(new)}: {metric} {before:.4f} -> {value:.4f}, outside the previous interval "
                f"[{low:.4f}, {high:.4f}] ({why})")
        (trend.worse if worse else trend.better).append(Finding(new["model"], text))


def _measured(row: Mapping[str, Any]) -> bool:
    """Whether a row has metrics or output fingerprints (a seeded item's row: fingerprints alone)."""
    return bool(row.get("metrics") or row.get("per_image"))


def _accuracy(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """Outputs and metrics of one row against the older run's, paired on the images both scored (a seeded item's
    row: its outputs alone)."""
    if not _measured(new) or not _measured(old):
        return
    reason = not_comparable(new, old)
    if reason is not None:
        trend.notes.append(Finding(new["model"], f"{_name(new)}: metrics and outputs not compared: {reason}"))
        return
    metrics = list(new.get("metrics", {}))
    ours, theirs = PerImage.from_row(new), PerImage.from_row(old)
    if ours is None or theirs is None:
        _marginal(trend, new, old, metrics, "marginal check: a record without per-image values")
        return
    known = set(theirs.stems)
    shared = [stem for stem in ours.stems if stem in known]
    if len(shared) < max(len(ours.stems), len(theirs.stems)):
        trend.notes.append(Finding(new["model"], f"{_name(new)}: compared on the {len(shared)} images both runs "
                                                 f"scored ({len(theirs.stems)} -> {len(ours.stems)})"))
    same_images = len(shared) == len(ours.stems) == len(theirs.stems)
    ours, theirs = ours.subset(shared), theirs.subset(shared)
    outputs_changed = _outputs(trend, new, ours, theirs)
    paired = _paired_metrics(new, ours, theirs)
    _judge_paired(trend, new, paired, len(shared), outputs_changed)
    if same_images:
        _marginal(trend, new, old, [m for m in metrics if m not in paired],
                  "marginal check: no per-image value of this metric")


def _at(row: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    """The section of a row at ``path`` (``("deployment", "conformance")``), empty where the row has none."""
    for key in path:
        row = row.get(key) or {}
    return row


def _moved(before: float, after: float, limit: float) -> bool:
    """Whether a figure moved by more than ``limit``, or became or stopped being a NaN."""
    return math.isnan(before) != math.isnan(after) or abs(after - before) > limit


def _conformance_moves(trend: Trend, row: Mapping[str, Any], label: str, new: Mapping[str, Any],
                       old: Mapping[str, Any]) -> None:
    """Conformance figures that moved by more than two runs of an unchanged item may (:data:`FIGURE_MOVE`): further
    from the reference is worse, nearer better; on the same number of images only."""
    if not new or not old:
        return
    if new.get("images") != old.get("images"):
        trend.notes.append(Finding(row["model"], f"{_name(row)}: {label} not compared: {old.get('images')} -> "
                                                 f"{new.get('images')} images"))
        return
    for figure, limit in FIGURE_MOVE.items():
        before, after = old.get(figure), new.get(figure)
        if before is None or after is None or not _moved(before, after, limit):
            continue
        text = (f"{_name(row)}: {label} {figure} {before:.4g} -> {after:.4g} (moved by more than {limit:g}, what may "
                "separate two runs of an unchanged item)")
        (trend.worse if math.isnan(after) or after > before else trend.better).append(Finding(row["model"], text))


def _paired_moves(trend: Trend, row: Mapping[str, Any], label: str, new: Mapping[str, Any],
                  old: Mapping[str, Any]) -> None:
    """Paired differences from fp32 (metric -> value and interval) that left the older run's interval: towards the
    metric's worse side is worse (a documented collapse deepening too), towards its better side better."""
    for metric, entry in old.items():
        if metric not in new:
            continue
        before, after, (low, high) = entry["value"], new[metric]["value"], entry["ci"]
        if after == before or low <= after <= high:
            continue
        worse = math.isnan(after) or (after > before if metric in LOWER_IS_BETTER else after < before)
        text = (f"{_name(row)}: {label} {metric} {before:+.4f} -> {after:+.4f}, outside the previous interval "
                f"[{low:+.4f}, {high:+.4f}]")
        (trend.worse if worse else trend.better).append(Finding(row["model"], text))


def _judged_figures(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """The figures a row's checks judge besides its metrics (:data:`CONFORMANCE_FIGURES`, :data:`PAIRED_FIGURES`),
    a documented collapse's like any other's. The deployed session's only on the same int8 path: another CPU's fused
    int8 kernels compute otherwise (ISNet: mean MAE 0.0053 on VNNI, 0.0120 on AVX2)."""
    before, after = _at(old, ("deployment",)).get("int8_path"), _at(new, ("deployment",)).get("int8_path")
    deployed = before is None or after is None or before == after
    if not deployed:
        trend.notes.append(Finding(new["model"], f"{_name(new)}: deployed figures not compared: int8 path {before} "
                                                 f"-> {after}"))
    for path, label in CONFORMANCE_FIGURES:
        if deployed or path[0] != "deployment":
            _conformance_moves(trend, new, label, _at(new, path), _at(old, path))
    for path, label in PAIRED_FIGURES:
        if deployed or path[0] != "deployment":
            _paired_moves(trend, new, label, _at(new, path).get("delta", {}), _at(old, path).get("delta", {}))


def _outcome_change(before: str, after: str) -> tuple[str, str]:
    """How one check's outcome moved (``worse``, ``better`` or ``changed``: the :class:`Trend` list) and the words for
    it. A new failure is worse, and so is lost coverage: a check that passed or failed and is now skipped, or whose
    failure an xfail mark hides; a fix, or a check judged again and passing, is better."""
    if after in FAILURES and before not in FAILURES:
        return "worse", f"new {'failure' if after == 'failed' else 'error'} (was {before})"
    if after in UNJUDGED and before not in UNJUDGED:
        return "worse", f"lost coverage: now {after} (was {before})"
    if after == "passed":
        return "better", f"fixed (was {before})" if before in FAILURES else f"judged again: passed (was {before})"
    return "changed", f"outcome {before} -> {after}"


def _outcomes(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any], seen: set[tuple[str, str]]) -> None:
    """Each check's outcome against the older run's (:func:`_outcome_change`), once per item and check (every row
    of an item carries the item's outcomes)."""
    for check, outcome in new.get("outcomes", {}).items():
        before = old.get("outcomes", {}).get(check)
        if (new["item"], check) in seen or before is None or before == outcome:
            continue
        seen.add((new["item"], check))
        kind, text = _outcome_change(before, outcome)
        getattr(trend, kind).append(Finding(new["model"], f"{new['item']} {check}: {text}"))


def _items(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Item -> its model, the datasets of its rows and its checks' outcomes."""
    items: dict[str, dict[str, Any]] = {}
    for row in record["rows"]:
        entry = items.setdefault(row["item"], {"model": row["model"], "datasets": [], "outcomes": {}})
        entry["datasets"].append(row["dataset"])
        entry["outcomes"].update(row.get("outcomes", {}))
    return items


def _pending(record: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(item, check) of each check an incomplete run selected and did not finish: not run yet, not vanished."""
    pending = set()
    for nodeid in record.get("tests", {}).get("not_run", []):
        name = nodeid.rsplit("::", 1)[-1]
        if name.endswith("]") and "[" in name:
            check, item = name[:-1].split("[", 1)
            pending.add((item, check.removeprefix("test_")))
    return pending


def _selected_otherwise(newer: Mapping[str, Any], older: Mapping[str, Any]) -> str | None:
    """How two runs' selections (paths, -k, -m) differ, or None."""
    a, b = newer["run"].get("selection", {}), older["run"].get("selection", {})
    differs = [f"{key} {b.get(key)!r} then, {a.get(key)!r} now" for key in sorted(a.keys() | b.keys())
               if a.get(key) != b.get(key)]
    return f"the runs selected differently ({'; '.join(differs)})" if differs else None


def _vanished(trend: Trend, newer: Mapping[str, Any], older: Mapping[str, Any]) -> None:
    """What the older run checked and the newer one lacks, each worse: an item, a row of it (a dataset), a check of
    it. What an incomplete newer run has still to run has not vanished (it is reported as not run)."""
    pending = _pending(newer)
    waiting = {item for item, _ in pending}
    ours, theirs = _items(newer), _items(older)
    present = ours.keys() | waiting
    found = len(trend.worse)
    for item, was in sorted(theirs.items()):
        if item not in present:
            checks = ", ".join(f"{check} {outcome}" for check, outcome in sorted(was["outcomes"].items()))
            trend.worse.append(Finding(was["model"], f"{item}: vanished (the older run had its rows on "
                                                     f"{', '.join(sorted(was['datasets']))} and its checks "
                                                     f"{checks or 'none recorded'})"))
            continue
        if item not in waiting:
            for dataset in sorted(set(was["datasets"]) - set(ours[item]["datasets"])):
                trend.worse.append(Finding(was["model"], f"{item} on {dataset}: row vanished"))
        for check, outcome in sorted(was["outcomes"].items()):
            if check not in ours.get(item, {}).get("outcomes", {}) and (item, check) not in pending:
                trend.worse.append(Finding(was["model"], f"{item} {check}: vanished (was {outcome})"))
    otherwise = _selected_otherwise(newer, older)
    if len(trend.worse) > found and otherwise:
        trend.notes.append(Finding("", f"{otherwise}: what the newer run did not select counts as vanished"))


def _latencies(trend: Trend, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    """Latency medians and same-run ratios that moved (only ever between runs on the same machine)."""
    name = _name(new)
    for kind, before in old.get("latency_ms", {}).items():
        value = new.get("latency_ms", {}).get(kind)
        if value is None or kind.endswith("(eval run)"):
            continue
        change = value / before - 1.0
        if abs(change) > LATENCY_MOVE:
            text = f"{name}: {kind} latency {before:.1f} -> {value:.1f} ms ({change:+.0%})"
            (trend.worse if change > 0 else trend.better).append(Finding(new["model"], text))
    for kind, entry in old.get("performance", {}).items():
        value = new.get("performance", {}).get(kind, {}).get("ratio")
        if value is None:
            continue
        before = entry["ratio"]
        change = (value - before) / abs(before) if before else 0.0
        lower_is_worse = kind.startswith("speedup")
        if abs(change) > RATIO_MOVE:
            worse = change < 0 if lower_is_worse else change > 0
            text = f"{name}: {kind} {before:.3g} -> {value:.3g}"
            (trend.worse if worse else trend.better).append(Finding(new["model"], text))


def compare(newer: dict[str, Any], older: dict[str, Any], label: str) -> Trend:
    """New failures, lost coverage and fixes; outputs and paired metrics on the shared images; the other judged
    figures; latency and ratio moves; and, between runs of the same case folder and machine, what vanished."""
    trend = Trend(label)
    new_rows, old_rows = _rows(newer), _rows(older)
    same_machine = newer["run"]["machine"].get("id") == older["run"]["machine"].get("id")
    seen_outcomes: set[tuple[str, str]] = set()
    for key in sorted(new_rows.keys() & old_rows.keys()):
        new, old = new_rows[key], old_rows[key]
        trend.same += 1
        _outcomes(trend, new, old, seen_outcomes)
        _accuracy(trend, new, old)
        _judged_figures(trend, new, old)
        if same_machine:
            _latencies(trend, new, old)
    if _same_setup(newer, older):
        _vanished(trend, newer, older)
    return trend


def _against_earlier(found: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[list[Trend], list[str]]:
    """The newest run against the previous comparable run and, when that is another run, the previous complete run
    of the same case folder and machine (what vanished, and what changed in what they share); with the lines that
    say what was compared."""
    history = [record for _, record in found]
    newest, last = history[-1], len(history) - 1
    results, lines = [], []
    previous = _previous(history, last)
    if previous is not None:
        results.append(compare(newest, history[previous], f"previous run {found[previous][0].name}"))
        lines += results[-1].lines()
    elif last > 0:
        lines.append(f"no earlier comparable run (none shares a row of the same item, dataset, weights and images; "
                     f"the previous run {found[-2][0].name}: {_why_not(newest, found[-2][1])})")
    else:
        lines.append("no earlier comparable run (this is the first run)")
    setup = _previous_setup(history, last)
    if setup is not None and setup != previous:
        results.append(compare(newest, history[setup], "the previous complete run of these case files on this "
                                                       f"machine, {found[setup][0].name}"))
        lines += results[-1].lines()
    return results, lines


def _verdict(newest: Mapping[str, Any], results: Sequence[Trend], fail_on_change: bool) -> tuple[bool, str]:
    """Whether the trend fails, and the line that says so and why."""
    reasons = ["the newest run is incomplete"] if newest["run"].get("complete") is False else []
    worse = sum(len(result.worse) for result in results)
    if worse:
        reasons.append(f"{worse} finding{'s' if worse != 1 else ''} worse")
    others = sum(len(result.changes) for result in results) - worse
    if fail_on_change and others:
        reasons.append(f"{others} other change{'s' if others != 1 else ''} (--fail-on-change)")
    return bool(reasons), f"trend fails (exit 1): {'; '.join(reasons)}" if reasons else "trend passes (exit 0)"


def trend(report_dir: Path, draw: bool = True, fail_on_change: bool = False) -> tuple[list[str], bool]:
    """The newest run against the previous comparable one, the previous complete run of the same case folder and
    machine, and the baseline: (lines, failed). Failed on an incomplete newest run, on anything worse (a new failure,
    lost coverage, something vanished, a judged figure, metric or latency gone worse), and with ``fail_on_change``
    on any change; the last line says which."""
    found = records(report_dir)
    if not found:
        raise ValueError(f"{report_dir / HISTORY}: no run records yet; run the suite first")
    newest_path, newest = found[-1]
    lines = [f"newest run: {newest_path.name} ({newest['run']['started']}, commit {newest['run']['commit']}, "
             f"machine {newest['run']['machine'].get('id')})", *progress_lines(newest)]
    results, said = _against_earlier(found)
    lines += said
    baseline_path = report_dir / HISTORY / BASELINE
    if baseline_path.is_file():
        results.append(compare(newest, load(baseline_path), f"baseline {baseline_path.name}"))
        lines += results[-1].lines()
    else:
        lines.append(f"no stored baseline ({baseline_path}; save one with `python -m harness trend --save-baseline`)")
    if draw:
        plots = draw_plots(report_dir, [record for _, record in found])
        lines.append(f"plots: {', '.join(str(p) for p in plots)}" if plots else "plots: none (no rows to draw)")
        link_plots(report_dir, plots)
    failed, verdict = _verdict(newest, results, fail_on_change)
    return [*lines, verdict], failed


def changed_nights(history: Sequence[dict[str, Any]]) -> dict[int, dict[str, bool]]:
    """Run index -> the models whose trend against the previous comparable run found a change (True: a regression)."""
    marks: dict[int, dict[str, bool]] = {}
    for index in range(1, len(history)):
        previous = _previous(history, index)
        if previous is None:
            continue
        result = compare(history[index], history[previous], "")
        for finding in result.changes:
            night = marks.setdefault(index, {})
            night[finding.model] = night.get(finding.model, False) or finding in result.worse
    return marks


def save_baseline(report_dir: Path) -> Path:
    """Store the newest run record as the baseline later trends compare with."""
    found = records(report_dir)
    if not found:
        raise ValueError(f"{report_dir / HISTORY}: no run records yet; run the suite first")
    if found[-1][1]["run"].get("complete") is False:
        raise ValueError(f"{found[-1][0]}: the newest run is incomplete; complete it with `pytest ... --resume` "
                         "before making it the baseline")
    return atomic_write(report_dir / HISTORY / BASELINE, found[-1][0].read_text(encoding="utf-8"))


def _mark(axis: Any, nights: Mapping[int, Mapping[str, bool]], model: str) -> None:
    """A dashed vertical line at each night whose trend found a change of ``model``: red for a regression."""
    labels = {True: "regression vs previous run", False: "change vs previous run"}
    for index, models in sorted(nights.items()):
        if model in models:
            worse = models[model]
            axis.axvline(index, color="red" if worse else "orange", linestyle="--", linewidth=1.2,
                         label=labels.pop(worse, "_nolegend_"))


def draw_plots(report_dir: Path, history: list[dict[str, Any]]) -> list[Path]:
    """One PNG per model: its first metric and its runtime latency over runs, one line per precision; nights that
    changed something of the model (:func:`changed_nights`) are marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = {}
    for index, record in enumerate(history):
        for row in record["rows"]:
            label = f"{row['precision']} {row['runtime']}"
            model = series.setdefault(row["model"], {"metric": {}, "latency": {}})
            if row.get("metrics") and row["dataset"] != "synthetic":
                metric = next(iter(row["metrics"]))
                model["metric"].setdefault(f"{label} ({metric}, {row['dataset']})", []).append(
                    (index, row["metrics"][metric]))
            if "runtime" in row.get("latency_ms", {}):
                model["latency"].setdefault(label, []).append((index, row["latency_ms"]["runtime"]))
    ticks = list(range(len(history)))  # one tick per run, named by its UTC start
    stamps = [str(record["run"].get("started", ""))[5:16].replace("T", " ") for record in history]
    nights = changed_nights(history)
    folder = report_dir / HISTORY / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model, kinds in sorted(series.items()):
        if not kinds["metric"] and not kinds["latency"]:
            continue
        figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
        for axis, kind, title in ((axes[0], "metric", "first metric"), (axes[1], "latency", "runtime latency (ms)")):
            for label, points in sorted(kinds[kind].items()):
                xs, ys = zip(*points)
                axis.plot(xs, ys, marker="o", label=label)
            _mark(axis, nights, model)
            axis.set_title(f"{model}: {title}")
            axis.set_xticks(ticks, stamps, rotation=30, ha="right", fontsize=7)
            if kinds[kind]:
                axis.legend(fontsize=7)
            else:  # accuracy-only runs measure no latency, benchmark-only runs no metric
                axis.text(0.5, 0.5, f"no {kind} in these runs", ha="center", va="center", transform=axis.transAxes)
        figure.tight_layout()
        path = folder / f"{model}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
    return written


def link_plots(report_dir: Path, plots: list[Path]) -> None:
    """Put (or replace) the links to the trend plots at the end of ``summary.md``."""
    summary = report_dir / "summary.md"
    if not summary.is_file() or not plots:
        return
    text = summary.read_text(encoding="utf-8")
    if _TREND_START in text:
        text = text[: text.index(_TREND_START)].rstrip() + "\n"
    atomic_write(summary, text + "\n" + "\n".join(plot_links(report_dir)) + "\n")


def plot_links(report_dir: Path) -> list[str]:
    """The markdown section linking the trend plots that exist (empty when there are none)."""
    folder = report_dir / HISTORY / PLOTS
    plots = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not plots:
        return []
    return [_TREND_START, "## Trends over runs", "", *[f"- [{p.stem}]({HISTORY}/{PLOTS}/{p.name})" for p in plots],
            _TREND_END]


def main_trend(report_dir: Path, save: bool, out: Any = sys.stdout, fail_on_change: bool = False) -> int:
    """``python -m harness trend``: 1 on an incomplete newest run or anything worse (on any change with
    ``fail_on_change``), else 0; no record at all, or an unreadable one, is a ValueError (the command's exit 2)."""
    if save:
        print(f"baseline saved: {save_baseline(report_dir)}", file=out)
        return 0
    lines, failed = trend(report_dir, fail_on_change=fail_on_change)
    print("\n".join(lines), file=out)
    return 1 if failed else 0
