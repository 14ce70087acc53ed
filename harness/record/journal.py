"""The run record as the run goes: one line per finished check, so a run killed from outside leaves its rows.

While a run is under way its record is a JSON-lines journal,
``reports/history/<UTC start>-<commit>-<machine id>.running.jsonl``, in the manner of MLPerf LoadGen's logs
written as the run goes: a ``run`` line (when, where, which commit and case files), a ``selected`` line
(the node ids the run is to check), then one ``test`` line per check as it finishes (its outcome; whether a
runtime timed out or crashed in it; the item's report rows and outcomes as they stand), each flushed and
synced to disk. The journal appears with its ``run`` line already on disk (:func:`create`), never empty. When
every selected check has finished, the complete record is written beside it under the same name with ``.json``
(synced, renamed into place, its folder synced) and the journal is removed; until then (a SIGKILL, a SIGTERM,
the machine going away, ``-x``) the journal *is* the run's record, read by :func:`incomplete_record` as an
incomplete one, which ``python -m harness trend`` reports as such. A line the kill cut short is skipped with a
:class:`JournalWarning`, never fatal; a journal with no ``run`` line at all is an incomplete run without rows.

``pytest --resume`` (:func:`resumable`) continues the newest journal of the same commit, case files and
machine: the checks with a ``test`` line and no runtime fault are not run again, their rows are taken from
the journal, and the same record is completed (:meth:`Journal.resume` first cuts a torn last line off).

One live run writes a journal (:func:`own`): a lock held for the run's life (the operating system drops it with a
dead process, so a killed run's journal can be resumed) and ``<journal>.owner`` naming the owner's pid and host, so
a second ``--resume`` of a journal still being written is refused, naming them. Every line read back is checked
against the schema (:mod:`harness.record.schema`): a line of the wrong shape is an error naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..data.names import checked_name
from .report import Recorder, fsync_folder, synced_scratch
from .schema import SCHEMA_VERSION, RecordError, check_line

SUFFIX = ".running.jsonl"
#: The UTC start at the head of a record's name (:func:`record_base`).
STAMP = "%Y%m%dT%H%M%SZ"


class JournalWarning(UserWarning):
    """A journal line that is not JSON (cut short by a kill mid-write) was skipped."""


def record_base(run: dict[str, Any]) -> str:
    """``<UTC start>-<commit>-<machine id>``: the name of a run's journal and of its complete record; the commit and
    the machine id (which a merge takes from shards' records) must be names, so the record stays in its folder."""
    commit = checked_name(run.get("commit"), "the run's commit")
    machine = checked_name((run.get("machine") or {}).get("id"), "the run's machine id")
    return f"{re.sub(r'[^0-9TZ]', '', str(run.get('started', '')))}-{commit}-{machine}"


def cases_digest(paths: Iterable[Path]) -> str:
    """A digest of the case files' names and contents: a resumed run must judge by the same cases."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def create(path: Path, text: str) -> bool:
    """Write ``text`` as the new file ``path``, whole or not at all: a scratch file flushed and fsynced, hard-linked
    to ``path`` (a rename would replace a file of that name; a link fails instead, so no record is overwritten), then
    the folder fsynced, so that a machine that loses power never leaves the name on an empty or partial file.
    False when the name is taken."""
    scratch = synced_scratch(path, text)
    try:
        try:
            os.link(scratch, path)
        except FileExistsError:
            return False
        fsync_folder(path.parent)
        return True
    finally:
        os.unlink(scratch)


class JournalBusy(RuntimeError):
    """The journal is being written by another live run; the message names it (pid and host)."""


def _owner_path(path: Path) -> Path:
    return path.with_name(path.name + ".owner")


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(_owner_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def own(path: Path) -> tuple[FileLock, dict[str, Any]]:
    """Take ``path`` (a journal) for this process: an exclusive lock held until the run ends (the operating system
    drops it when the process dies, so a killed run's lock is taken over), and ``<journal>.owner`` saying whose it is
    (pid, host, since). Returns the lock and the previous owner ({} if none); :class:`JournalBusy` naming the owner when
    a live run holds it."""
    previous = _read_owner(path)
    lock = FileLock(str(path) + ".lock", timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        owner = _read_owner(path)
        who = (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} (since {owner.get('since', '?')})"
               if owner else "another run (its owner file is not written yet)")
        raise JournalBusy(f"{path}: being written by {who}; one run at a time writes a journal: wait for it to end, "
                          "or end it") from None
    mine = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    _owner_path(path).write_text(json.dumps(mine), encoding="utf-8")
    return lock, previous


class Journal:
    """Appends to one run's journal; every line reaches the disk before the next check starts. The journal is owned
    by one live run at a time (:func:`own`)."""

    def __init__(self, path: Path, lock: FileLock | None = None, took_over: dict[str, Any] | None = None) -> None:
        self.path = path
        self.lock = lock
        #: The previous owner of a resumed journal (a run that died holding it), {} if none.
        self.took_over = took_over or {}

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
            head = {"kind": "run", "schema": SCHEMA_VERSION, "run": run, "key": key}
            if create(path, json.dumps(head, default=str) + "\n"):
                return cls(path, own(path)[0])
        raise OSError(f"{folder}: could not find a free name for the run record {base}")

    @classmethod
    def resume(cls, path: Path) -> "Journal":
        """The journal of a run being resumed, taken for this run first (:class:`JournalBusy` while its run is
        alive), then its torn last line (a kill mid-write) cut off: the next line would otherwise be glued to the
        fragment and lost with it."""
        lock, previous = own(path)
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as out:
                out.truncate(data.rfind(b"\n") + 1)
                out.flush()
                os.fsync(out.fileno())
        return cls(path, lock, previous)

    def release(self) -> None:
        """Give the journal up (the run ended); its owner file goes with the lock."""
        if self.lock is not None:
            _owner_path(self.path).unlink(missing_ok=True)
            self.lock.release()
            self.lock = None

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

        path = atomic_write(self.record_path, json.dumps({"schema": SCHEMA_VERSION, **record}, indent=1, default=str))
        self.path.unlink(missing_ok=True)
        self.release()
        Path(str(self.path) + ".lock").unlink(missing_ok=True)  # the journal is gone; so is what guarded it
        return path


# --------------------------------------------------------------------------- reading a journal back


def _lines(path: Path) -> list[dict[str, Any]]:
    """The journal's entries. A line that is not JSON is skipped with a :class:`JournalWarning`: the last one was cut
    short by a kill mid-write (its check did not finish, so ``--resume`` runs it again); what finished before it
    counts. Bytes a kill cut inside a character are read as a replacement character, so they cannot stop the read."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            where = (f"its last line (line {number}) was cut short (the run was killed mid-write)"
                     if number == len(lines) else f"line {number} is not JSON")
            warnings.warn(f"{path}: {where}: skipped", JournalWarning, stacklevel=3)
            continue
        entries.append(check_line(entry, path, number))
    if not entries or entries[0].get("kind") != "run":
        why = "empty: the run was killed as it began" if not lines else "its first line is cut short or another kind"
        raise RecordError(f"{path}: its journal has no run line ({why})")
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


def incomplete_record(path: Path) -> dict[str, Any]:
    """The journal at ``path`` as a run record marked incomplete. A journal without its run line (a kill as the run
    began, or a disk that lost it) is an incomplete run with no row and no check finished, started when its name
    says (else when the file was last written), so that trend reports it as the newest run instead of failing on
    it; ``tests["unreadable"]`` says why."""
    try:
        return Progress(path).record()
    except ValueError as error:
        unreadable = str(error).removeprefix(f"{path}: ")
    try:
        started = datetime.strptime(path.name.split("-", 1)[0], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        started = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    run = {"started": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": "unknown", "machine": {}, "complete": False,
           "finished": None}
    return {"run": run, "rows": [], "work": [], "tests": {**tests([], {}), "unreadable": unreadable}}


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
