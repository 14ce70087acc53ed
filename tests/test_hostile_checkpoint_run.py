"""The issue's run: a checkpoint in ``--weights-dir`` whose pickle calls ``os.system``. The run executes nothing, and
the item's error is one line naming the file and the global it wanted, not a traceback from inside the harness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_plugin import ADDOPTS, CASE

pytest_plugins = ["pytester"]


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_hostile_checkpoint_in_weights_dir_runs_nothing_and_the_error_names_it(pytester: pytest.Pytester,
                                                                                   tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(CASE), encoding="utf-8")
    (pytester.path / "golden").mkdir()
    pytester.makeini(f"[pytest]\naddopts = {ADDOPTS}\n")
    weights, marker = tmp_path / "weights", tmp_path / "ran"
    weights.mkdir()
    torch.save({"state_dict": {}, "payload": _RunsCommand(marker)}, weights / "mynet.pth")
    result = pytester.runpytest_subprocess(f"--weights-dir={weights}", f"--cache-dir={tmp_path / 'cache'}",
                                           "--benchmark-disable", "-k", "mynet and fp32 and conformance",
                                           timeout=600)
    assert not marker.exists(), "the checkpoint's pickle ran a command"
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert f"{weights / 'mynet.pth'}: refused: the checkpoint asks to run or build posix.system" in out
    assert "Traceback" not in out and "harness/build/weights.py" not in out
