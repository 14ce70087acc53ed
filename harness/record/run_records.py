"""Run records: every run leaves one, what later runs are compared with.

A record (``reports/history/<UTC time>-<commit>-<machine id>.json``, never overwritten) holds when and
where the run happened (UTC time, git commit, the machine fingerprint with the CPU's int8 instruction
set, tool versions), what it ran (options, selection, case folder) and every report row; an accuracy row's
per-image part is :mod:`harness.record.per_image`'s. This module stores and reads records (a run that never
completed is read from its journal, :mod:`harness.record.journal`) and says what a record holds of its checks
(:func:`progress_lines`); comparing them night over night is :mod:`harness.record.trend`'s.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .journal import create, incomplete_record, record_base, unfinished
from .schema import SCHEMA_VERSION, RecordError, check_record

HISTORY = "history"
BASELINE = "baseline.json"


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
    base = record_base(record["run"])
    text = json.dumps({"schema": SCHEMA_VERSION, **record}, indent=1, default=str)
    for attempt in range(1000):
        path = folder / (f"{base}.json" if attempt == 0 else f"{base}-{attempt}.json")
        if create(path, text):
            return path
    raise OSError(f"{folder}: could not find a free name for the run record {base}")


def load(path: Path) -> dict[str, Any]:
    """The run record in ``path``, checked against the schema (:mod:`harness.record.schema`); a
    :class:`~harness.record.schema.RecordError` naming the file and what is wrong otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: not a readable run record: {error}") from None
    return check_record(record, path)


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
