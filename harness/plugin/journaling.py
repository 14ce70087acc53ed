"""The pytest side of the run journal (:mod:`harness.record.journal`): each finished check appended, ``--resume``.

Registered by :mod:`harness.plugin` once the session's :class:`~harness.plugin.State` exists. In a serial run
this process journals its own checks; under pytest-xdist each worker attaches the rows of the item it just
checked to the check's teardown report (a report attribute, which xdist carries to the controller), and the
controller, which alone writes, merges them and journals the check. A worker that dies mid-check (its item is
reported by xdist as crashed) is journaled as a runtime crash, so ``--resume`` reruns it.

``summary.md`` / ``summary.json`` are rewritten as the run goes too, at most every :data:`SUMMARY_EVERY_S`
seconds (each rewrite renders every row), and once at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import subprocess
import time
from collections.abc import Collection, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..judge.golden import OBTAINED_SUFFIX
from ..record.journal import Journal, JournalBusy, Progress, cases_digest, resumable, tests, unfinished
from ..record.plots import plot_links
from ..record.run_records import HISTORY, head_commit
from ..run.bounds import RuntimeFault
from .run_record import run_record
from .sharding import SHARD_NAME

if TYPE_CHECKING:
    from ..items.settings import Settings
    from ..items.state import State

#: The name the journal plugin is registered under (the plugin reaches it by this name at the end of the run).
JOURNAL = "segconform-journal"
#: Seconds between two rewrites of summary.md / summary.json while the run goes on.
SUMMARY_EVERY_S = 10.0
#: Report attributes xdist carries from a worker to the controller.
FAULT_ATTR, EXPORT_ATTR = "segconform_fault", "segconform_export"


def _param(nodeid: str) -> str:
    """The parametrisation of a check's node id: the item id (or model name) inside the brackets."""
    return nodeid[nodeid.index("[") + 1:-1] if nodeid.endswith("]") and "[" in nodeid else ""


class JournalPlugin:
    """Keeps the run's record on disk as checks finish, and resumes an unfinished one with ``--resume``."""

    def __init__(self, config: pytest.Config, state: "State") -> None:
        self.config, self.state = config, state
        self.worker = hasattr(config, "workerinput")
        self.journal: Journal | None = None
        self.resumed: Progress | None = None
        self.done: set[str] = set()
        self.running: dict[str, dict[str, Any]] = {}  # node id -> outcome and fault so far, until its teardown
        self.selected: list[str] = []  # the journal's, over every session of the run (as Progress reads them)
        self.finished: dict[str, dict[str, Any]] = {}
        self.announced = False  # the selection of this session is in the journal (xdist: every worker reports one)
        self.last_summary = 0.0
        self._key: dict[str, str] | None = None
        self.bases = collection_bases(config)
        if self.worker:
            self.done = set(config.workerinput.get("segconform_done", ()))  # type: ignore[attr-defined]
        elif config.option.resume:
            self.resumed = resumable(self.folder, self.key())
            if self.resumed is not None:
                self.done = self.resumed.done
                self.selected, self.finished = list(self.resumed.selected), dict(self.resumed.finished)
                state.started = self.resumed.run["started"]
                state.recorder.merge(self.resumed.recorder.export())
                try:
                    self.journal = Journal.resume(self.resumed.path)
                except JournalBusy as error:
                    raise pytest.UsageError(f"--resume: {error}") from None

    @property
    def folder(self) -> Path:
        return self.state.recorder.report_dir / HISTORY

    def key(self) -> dict[str, str]:
        """What a resumed run must share with the run it continues: the code (commit, uncommitted changes, the
        harness's own source), the case files, the golden masks, the machine, the runtimes and every setting that
        can change a verdict (data root, eval limit, calibration samples, int8 scheme, intervals, ...). Computed once:
        the run writes files (reports, review masks) that must not change it."""
        from ..machine import fingerprint

        if self._key is None:
            settings, root = self.state.suite.settings, self.config.rootpath
            self._key = {"commit": head_commit(root), "tree": tree_digest(root), "harness": harness_digest(),
                         "cases": cases_digest(self.state.families), "golden": golden_digest(settings.golden_dir),
                         "machine": fingerprint().id, "runtimes": ",".join(self.state.runtimes),
                         **verdict_settings(settings)}
        return self._key

    def _unmatched(self) -> str:
        """Why ``--resume`` found no run to continue: how the newest unfinished run differs from this one, or that
        there is none."""
        unreadable = []
        for path in reversed(unfinished(self.folder)):
            try:
                theirs = Progress(path).key
            except (OSError, ValueError) as error:
                unreadable.append(str(error))
                continue
            return f"the newest unfinished run, {path.name}, differs from this one in {differences(theirs, self.key())}"
        cannot = f" ({len(unreadable)} cannot be resumed: {'; '.join(unreadable[:3])})" if unreadable else ""
        return f"no unfinished run under {self.folder} that could be resumed{cannot}"

    def _is_case(self, nodeid: str) -> bool:
        return is_case(nodeid, self.bases, self.state.families)

    # ----------------------------------------------------------------- which checks run

    def _say_resume(self) -> None:
        """What ``--resume`` found, on the terminal even under ``-q`` (a nightly's log must show it)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if not self.config.option.resume or reporter is None:
            return
        if self.resumed is None:
            reporter.write_line(f"segconform: --resume: {self._unmatched()}; starting a new run")
            return
        progress = self.resumed.tests()
        previous = self.journal.took_over if self.journal is not None else {}
        taken = (f" (taken over from pid {previous.get('pid')} on host {previous.get('host')}, which no longer holds "
                 "it)" if previous else "")
        reporter.write_line(f"segconform: resuming {self.resumed.path.name}{taken}: {len(self.done)} checks done, "
                            f"{len(progress['runtime_faults'])} that met a runtime fault run again, "
                            f"{len(progress['not_run'])} not run yet")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller: every worker deselects the same finished checks (they collect, the controller not)."""
        node.workerinput["segconform_done"] = sorted(self.done)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> Generator[None]:
        """Deselect the checks a resumed run finished, after every other plugin chose (a shard is split from the
        same whole selection as the run it resumes, so it keeps its group)."""
        yield
        finished = [item for item in items if item.nodeid in self.done]
        if finished:
            config.hook.pytest_deselected(items=finished)
            items[:] = [item for item in items if item.nodeid not in self.done]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.worker:
            self._selected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self._selected(list(ids))

    def _selected(self, nodeids: list[str]) -> None:
        """The journal's list of checks to run (a new journal on the first non-empty selection)."""
        cases = [n for n in nodeids if self._is_case(n)]
        if self.config.option.collectonly or not cases or self.announced:
            return
        self.announced = True
        self._say_resume()
        if self.journal is None:
            run = run_record(self.config, self.state)["run"]
            del run["finished"]
            self.journal = Journal.begin(self.folder, run, self.key())
        elif self.resumed is not None:
            self.journal.append({"kind": "resumed", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.journal.selected(cases)
        self.selected += [n for n in cases if n not in self.selected]

    # ----------------------------------------------------------------- each check as it finishes

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.excinfo is not None and isinstance(call.excinfo.value, RuntimeFault):
            setattr(report, FAULT_ATTR, call.excinfo.value.kind)
        if self.worker and call.when == "teardown" and self._is_case(item.nodeid):
            setattr(report, EXPORT_ATTR, self.state.recorder.export(_param(item.nodeid)))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.worker or self.journal is None or not self._is_case(report.nodeid):
            return
        entry = self.running.setdefault(report.nodeid, {"outcome": "passed", "fault": None})
        if report.when == "call":
            xfail = hasattr(report, "wasxfail")  # a documented failure: whether it happened
            entry["outcome"] = ("xpass" if report.passed else "xfail") if xfail else report.outcome
        elif report.when == "???":  # xdist: the worker died running it
            entry.update(outcome="failed", fault="crash")
        elif report.outcome != "passed":
            entry["outcome"] = "skipped" if report.skipped else "error"
        entry["fault"] = getattr(report, FAULT_ATTR, None) or entry["fault"]
        if report.when not in ("teardown", "???"):
            return
        exported = getattr(report, EXPORT_ATTR, None)
        if exported:
            self.state.recorder.merge(exported)
        self.journal.finished(report.nodeid, entry["outcome"], entry["fault"],
                              self.state.recorder.export(_param(report.nodeid)))
        self.finished[report.nodeid] = {"outcome": entry["outcome"], "fault": entry["fault"]}
        if time.monotonic() - self.last_summary >= SUMMARY_EVERY_S:
            self.write_summary(complete=False)

    # ----------------------------------------------------------------- the end

    def write_summary(self, complete: bool) -> list[Any]:
        self.last_summary = time.monotonic()
        record = run_record(self.config, self.state)
        run = {**record["run"], "complete": complete}
        if not complete:
            run["progress"] = tests(self.selected, self.finished)
        return self.state.recorder.write(run, plot_links(self.state.recorder.report_dir))

    def finish(self, exitstatus: int) -> list[Any]:
        """The session's end: the complete record when every selected check finished, else the journal stays as
        the incomplete record; the summary either way. Returns the files written."""
        if self.journal is None:
            return []
        progress = tests(self.selected, self.finished)
        complete = not progress["not_run"] and exitstatus != pytest.ExitCode.INTERRUPTED
        written = self.write_summary(complete)
        if not complete:
            return [*written, self.journal.path]
        record = run_record(self.config, self.state)
        record["run"]["complete"] = True
        record["tests"] = {**progress, "outcomes": {n: e["outcome"] for n, e in self.finished.items()}}
        sharding = self.config.pluginmanager.get_plugin(SHARD_NAME)
        shard = sharding.describe() if sharding is not None else None
        if shard is not None:
            record["tests"]["shard"] = shard
        return [*written, self.journal.complete(record)]


def collection_bases(config: pytest.Config) -> list[Path]:
    """The folders pytest names a collected file from: the rootdir, and each path it was handed. A file outside the
    rootdir is named relative to the handed path that holds it (``pytest -c pytest.ini /elsewhere`` names
    ``/elsewhere/demo.yaml`` ``demo.yaml``; handed the file itself, it names it by the empty name). Taken from the
    command line, not from the collection: the xdist controller, which alone journals, collects nothing."""
    handed = [config.invocation_params.dir / arg.split("::")[0] for arg in config.args]
    return [config.rootpath, *handed]


def is_case(nodeid: str, bases: Sequence[Path], families: Collection[Path]) -> bool:
    """Whether ``nodeid`` is a check of one of the case files ``families`` (resolved paths), wherever the file lies:
    its node id's file part is looked up from each of ``bases`` (:func:`collection_bases`)."""
    part = nodeid.split("::")[0]
    return any((base / part).resolve() in families for base in bases)


# --------------------------------------------------------------------------- the resume key

#: Settings that cannot change a verdict, left out of the resume key: bounds and isolation change no output, the
#: artifact cache is content-addressed, the golden masks count by their contents (``golden``), reports go anywhere,
#: fault localisation only explains a failure.
NOT_VERDICTS = {"cache_dir", "shared_caches", "report_dir", "golden_dir", "isolation", "localise_builds"}
#: Key parts that are digests: a difference is named, not shown.
DIGESTS = {"tree", "harness", "cases", "golden"}
#: The most a git command of the key may take (a repository on a hung network file system must not hang the run).
GIT_S = 60.0


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False, timeout=GIT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def tree_digest(root: Path) -> str:
    """A digest of the uncommitted state of the git tree at ``root`` ("" outside git): tracked files' changes, staged
    or not, and the untracked Python files (name, size, modification time). Other untracked files are left out: a run
    writes some itself (reports, review masks, caches), and the case files and golden masks have parts of their own."""
    diff = _git(root, "diff", "HEAD", "--binary")
    if diff is None:
        return ""
    digest = hashlib.sha256(diff)
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", "*.py") or b""
    for name in sorted(filter(None, untracked.split(b"\0"))):
        stat = (root / os.fsdecode(name)).stat()
        digest.update(name + f"\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


@functools.cache
def harness_digest() -> str:
    """A digest of the harness's own source (the plugin may be installed outside the repository being tested)."""
    folder = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def golden_digest(folder: Path) -> str:
    """A digest of the golden masks (every file's path and contents), without the review masks a failing check
    writes beside them (``<stem>.obtained.png``) or hidden staging folders."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        relative = path.relative_to(folder)
        if path.is_file() and not path.name.endswith(OBTAINED_SUFFIX) and not any(
                part.startswith(".") for part in relative.parts):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def verdict_settings(settings: "Settings") -> dict[str, str]:
    """Every setting of the run but :data:`NOT_VERDICTS`, as text (nested settings as ``outer.inner``): a setting
    added later counts unless it is said not to."""
    parts: dict[str, str] = {}
    for field in dataclasses.fields(settings):
        if field.name in NOT_VERDICTS:
            continue
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value):
            parts.update({f"{field.name}.{inner.name}": _text(getattr(value, inner.name))
                          for inner in dataclasses.fields(value)})
        else:
            parts[field.name] = _text(value)
    return parts


def _text(value: Any) -> str:
    return str(value.resolve()) if isinstance(value, Path) else str(value)


def differences(theirs: dict[str, str], ours: dict[str, str]) -> str:
    """What differs between two resume keys, each part named (with both values, unless it is a digest)."""
    parts = []
    for name in sorted(set(theirs) | set(ours)):
        old, new = theirs.get(name), ours.get(name)
        if old != new:
            parts.append(name if name in DIGESTS else f"{name} ({old} then, {new} now)")
    return ", ".join(parts)
