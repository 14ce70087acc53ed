"""The run record of the session that is finishing: where and how it ran, plus every report row.

It reads the pytest config and the session's state, so it belongs to the plugin; the record's storage and its
progress lines are :mod:`harness.record.run_records`'s, the trend over records :mod:`harness.record.trend`'s.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from ..items.state import State
from ..machine import fingerprint, tool_versions
from ..record.run_records import git_output

#: Options that do not change what a run measures, left out of the record.
_UNRECORDED = {"file_or_dir", "help", "verbose", "color", "capture", "tbstyle", "showlocals", "reportchars"}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def run_record(config: "pytest.Config", state: "State") -> dict[str, Any]:
    """The record of the session that is finishing: the run's description plus every row."""
    from dataclasses import asdict

    root = config.rootpath
    commit = git_output("rev-parse", "--short=12", "HEAD", cwd=root)
    dirty = bool(git_output("status", "--porcelain", "--untracked-files=no", cwd=root))
    options = {k: _plain(v) for k, v in sorted(vars(config.option).items()) if k not in _UNRECORDED}
    runtimes = {}
    for name in state.runtimes:
        runtime = state.suite.sessions.runtime(name)
        runtimes[name] = (runtime.describe() if not runtime.unavailable
                          else {"runtime": name, "unavailable": runtime.unavailable})
    run = {
        "started": state.started,
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit or "unknown",
        "dirty": dirty,
        "machine": fingerprint().as_dict(),
        "tools": tool_versions(),
        "runtimes": runtimes,
        "selection": {"args": [str(a) for a in config.args], "keyword": config.option.keyword,
                      "markers": config.option.markexpr},
        "cases_dir": str(state.cases_dir),
        "night": config.option.night,  # --night / SEGCONFORM_NIGHT: which night's shards merge together
        "options": options,
    }
    return {"run": run, "rows": [asdict(r) for r in state.recorder.sorted_rows()], "work": state.recorder.work}
