"""The pipeline's layers hold (issue 28): import-linter's contracts in pyproject.toml pass on this checkout, and fail,
naming the import, on a copy with one import that runs back up (a judge module importing the plugin)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(checkout: Path) -> subprocess.CompletedProcess:
    """lint-imports on ``checkout``'s harness (found first on the path, ahead of the installed one)."""
    return subprocess.run([str(LINT), "--config", str(checkout / "pyproject.toml"), "--no-cache"], cwd=checkout,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(checkout)})


def _copy(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "harness", checkout / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    return checkout


def test_the_layers_hold_on_this_checkout(tmp_path):
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_an_import_that_runs_back_up_breaks_the_contract_naming_it(tmp_path):
    checkout = _copy(tmp_path)
    metrics = checkout / "harness" / "judge" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n\ndef _planted() -> None:\n    from ..plugin import reporting  # noqa\n")
    done = _lint(checkout)
    assert done.returncode == 1, done.stdout
    assert "harness.judge is not allowed to import harness.plugin" in done.stdout
    assert "harness.judge.metrics -> harness.plugin.reporting" in done.stdout


def test_an_import_cycle_inside_a_stage_breaks_the_contract(tmp_path):
    checkout = _copy(tmp_path)
    channels = checkout / "harness" / "data" / "channels.py"  # cases imports nothing of channels' dependants: a cycle
    channels.write_text(channels.read_text() + "\n\ndef _planted() -> None:\n    from . import cases  # noqa\n")
    cases = checkout / "harness" / "data" / "cases.py"
    cases.write_text(cases.read_text() + "\n\ndef _planted() -> None:\n    from . import channels  # noqa\n")
    done = _lint(checkout)
    assert done.returncode == 1, done.stdout
    assert "No import cycles" in done.stdout and "BROKEN" in done.stdout
