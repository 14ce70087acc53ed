"""One writer at a time: a run journal is owned by one live run (:func:`harness.record.journal.own`): a second
``--resume`` of it refuses naming the owner's pid and host, and a dead owner's journal is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.record.journal import Journal, JournalBusy

ROOT = Path(__file__).resolve().parents[1]
MACHINE = {"cpu": "AMD EPYC", "int8": "avx512-vnni", "cores": 2, "id": "avx512-vnni-2c-abc"}
RUN = {"started": "2026-12-01T01:00:00Z", "commit": "abc123", "machine": MACHINE}

#: A run that resumes the journal and keeps writing it until killed.
LIVE_RUN = """
import sys, time
from pathlib import Path
from harness.record.journal import Journal
journal = Journal.resume(Path(sys.argv[1]))
print("owned", flush=True)
while True:
    journal.append({"kind": "resumed", "at": "now"})
    time.sleep(0.05)
"""


def _live_run(path: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", LIVE_RUN, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout is not None and child.stdout.readline().strip() == "owned"
    return child


def test_a_second_resume_of_a_live_runs_journal_refuses_naming_pid_and_host(tmp_path):
    first = Journal.begin(tmp_path / "history", RUN, {"commit": "abc123"})
    first.release()  # that run was killed; another one resumes it and is still alive
    child = _live_run(first.path)
    try:
        with pytest.raises(JournalBusy) as refused:
            Journal.resume(first.path)
        message = str(refused.value)
        assert str(first.path) in message and f"pid {child.pid}" in message
        assert f"host {socket.gethostname()}" in message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lines = first.path.read_text().splitlines()
    time.sleep(0.1)
    taken = Journal.resume(first.path)  # the owner is dead: its lock went with it
    assert taken.took_over["pid"] == child.pid
    assert first.path.read_text().splitlines()[: len(lines)] == lines  # nothing the live run wrote was cut
    taken.release()


def test_two_journals_of_one_process_cannot_both_write_one_file(tmp_path):
    journal = Journal.begin(tmp_path / "history", RUN, {"commit": "abc123"})
    with pytest.raises(JournalBusy, match=f"pid {os.getpid()}"):
        Journal.resume(journal.path)
    journal.complete({"run": RUN, "rows": []})
    assert sorted(p.name for p in journal.path.parent.iterdir()) == [journal.record_path.name]


def test_pytest_resume_of_a_journal_a_live_run_writes_is_a_usage_error_naming_it(tmp_path, monkeypatch):
    """The plugin's side: ``--resume`` picks the journal (same key), finds it owned by a live run, and stops with a
    usage error (pytest exits 4) naming the journal, the pid and the host."""
    from types import SimpleNamespace

    from harness.plugin import journaling
    from harness.record.report import Recorder

    report_dir = tmp_path / "reports"
    first = Journal.begin(report_dir / "history", RUN, {"commit": "abc123"})
    first.release()
    child = _live_run(first.path)
    try:
        monkeypatch.setattr(journaling.JournalPlugin, "key", lambda self: {"commit": "abc123"})
        config = SimpleNamespace(option=SimpleNamespace(resume=True), rootpath=tmp_path, args=[],
                                 invocation_params=SimpleNamespace(dir=tmp_path))
        state = SimpleNamespace(recorder=Recorder(report_dir), started=None)
        with pytest.raises(pytest.UsageError) as refused:
            journaling.JournalPlugin(config, state)  # type: ignore[arg-type]
        message = str(refused.value)
        assert message.startswith("--resume: ") and str(first.path) in message and f"pid {child.pid}" in message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
