"""What one pytest session holds, in one place every layer below the plugin can read without importing it.

The plugin creates the :class:`State` at configure time and keeps it in the config's stash under
:data:`STATE`; checks reach it through fixtures, and diagnostics (``python -m harness sensitivity``) read it
from the stash of the session they run. It holds the session's suite (built artifacts, loaded sessions, golden
stores: :class:`harness.items.suite.Suite`) and its recorder (report rows: :class:`harness.record.report.Recorder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ..data.cases import Family
from ..record.report import Recorder
from .suite import Suite


@dataclass
class State:
    """What the plugin holds for one pytest session."""

    cases_dir: Path
    families: dict[Path, Family]
    runtimes: list[str]
    suite: Suite
    recorder: Recorder
    started: str


STATE = pytest.StashKey["State | None"]()


def state_of(config: pytest.Config) -> State | None:
    """The session's state, None where the run has no segconform case files."""
    return config.stash.get(STATE, None)
