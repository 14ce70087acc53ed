"""The run record as the run goes: one line per finished check, so a run killed from outside leaves its rows.

While a run is under way its record is a JSON-lines journal,
``reports/history/<UTC start>-<commit>-<machine id>.running.jsonl``, in the manner of MLPerf LoadGen's logs
written as the run goes: a ``run`` line (when, where, which commit and case files), a ``selected`` line
(the node ids the run is to check), then one ``test`` line per check as it finishes (its outcome; whether a
runtime timed out or crashed in it; the item's report rows and outcomes as they stand), each flushed and
synced to disk. When every selected check has finished, the complete record is written beside it under the
same name with ``.json`` and the journal is removed; until then (a SIGKILL, a SIGTERM, the machine going away,
``-x``) the journal *is* the run's record, read by :func:`read` as an incomplete one, which
``python -m harness trend`` reports as such.

``pytest --resume`` (:func:`resumable`) continues the newest journal of the same commit, case files and
machine: the checks with a ``test`` line and no runtime fault are not run again, their rows are taken from
the journal, and the same record is completed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .report import Recorder

SUFFIX = ".running.jsonl"


def record_base(run: dict[str, Any]) -> str:
    """``<UTC start>-<commit>-<machine id>``: the name of a run's journal and of its complete record."""
    return f"{re.sub(r'[^0-9TZ]', '', run['started'])}-{run['commit']}-{run['machine']['id']}"


def cases_digest(paths: Iterable[Path]) -> str:
    """A digest of the case files' names and contents: a resumed run must judge by the same cases."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class Journal:
    """Appends to one run's journal; every line reaches the disk before the next check starts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def begin(cls, folder: Path, run: dict[str, Any], key: dict[str, str]) -> "Journal":
        """A new journal under ``folder`` whose first line describes the run; never overwrites another run's."""
        folder.mkdir(parents=True, exist_ok=True)
        base = record_base(run)
        for attempt in range(1000):
            stem = base if attempt == 0 else f"{base}-{attempt}"
            path = folder / f"{stem}{SUFFIX}"
            if (folder / f"{stem}.json").exists():
                continue
            try:
                with path.open("x", encoding="utf-8"):
                    pass
            except FileExistsError:
                continue
            journal = cls(path)
            journal.append({"kind": "run", "run": run, "key": key})
            return journal
        raise OSError(f"{folder}: could not find a free name for the run record {base}")

    @property
    def record_path(self) -> Path:
        """Where the complete record goes: the journal's name with ``.json``."""
        return self.path.with_name(self.path.name.removesuffix(SUFFIX) + ".json")

    def append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def selected(self, nodeids: list[str]) -> None:
        self.append({"kind": "selected", "nodeids": nodeids})

    def finished(self, nodeid: str, outcome: str, fault: str | None, export: dict[str, Any]) -> None:
        self.append({"kind": "test", "nodeid": nodeid, "outcome": outcome, "fault": fault, "export": export})

    def complete(self, record: dict[str, Any]) -> Path:
        """Write the complete record and remove the journal (the record first: one of them always exists)."""
        from .report import atomic_write

        path = atomic_write(self.record_path, json.dumps(record, indent=1, default=str))
        self.path.unlink(missing_ok=True)
        return path


# --------------------------------------------------------------------------- reading a journal back


def _lines(path: Path) -> list[dict[str, Any]]:
    """The journal's entries; a last line cut short by a kill is left out."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if not entries or entries[0].get("kind") != "run":
        raise ValueError(f"{path}: not a segconform run journal (no 'run' line first)")
    return entries


def tests(selected: list[str], finished: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A record's ``tests`` entry: how many checks were selected and finished, which did not run, which met a
    runtime fault (``finished``: node id -> its ``outcome`` and ``fault``)."""
    return {"selected": len(selected), "finished": len(finished),
            "not_run": [nodeid for nodeid in selected if nodeid not in finished],
            "runtime_faults": {nodeid: entry["fault"] for nodeid, entry in finished.items() if entry["fault"]}}


class Progress:
    """What a journal says: the run, the checks selected, those finished (outcome and fault) and the rows."""

    def __init__(self, path: Path) -> None:
        entries = _lines(path)
        self.path = path
        self.run: dict[str, Any] = entries[0]["run"]
        self.key: dict[str, str] = entries[0].get("key", {})
        self.selected: list[str] = []
        self.finished: dict[str, dict[str, Any]] = {}
        self.recorder = Recorder(path.parent)
        for entry in entries[1:]:
            if entry["kind"] == "selected":
                self.selected += [n for n in entry["nodeids"] if n not in self.selected]
            elif entry["kind"] == "test":
                self.finished[entry["nodeid"]] = {"outcome": entry["outcome"], "fault": entry.get("fault")}
                self.recorder.merge(entry["export"])

    @property
    def done(self) -> set[str]:
        """Checks that need not run again: finished, and not failed by a runtime that timed out or crashed."""
        return {nodeid for nodeid, entry in self.finished.items() if not entry["fault"]}

    def tests(self) -> dict[str, Any]:
        return tests(self.selected, self.finished)

    def record(self) -> dict[str, Any]:
        """The journal as a run record marked incomplete (what ``harness trend`` reads)."""
        run = {**self.run, "complete": False, "finished": None}
        return {"run": run, "rows": [asdict(r) for r in self.recorder.sorted_rows()], "work": [],
                "tests": self.tests()}


def unfinished(folder: Path) -> list[Path]:
    """Journals under ``folder`` whose run never completed, oldest name first."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob(f"*{SUFFIX}"))
            if not p.with_name(p.name.removesuffix(SUFFIX) + ".json").exists()]


def resumable(folder: Path, key: dict[str, str]) -> Progress | None:
    """The newest unfinished run under ``folder`` with the same commit, case files and machine, or None."""
    for path in reversed(unfinished(folder)):
        try:
            progress = Progress(path)
        except (OSError, ValueError):
            continue
        if progress.key == key:
            return progress
    return None
