"""A night that survives its device (issue 15), through the installed plugin in a repository of its own (pytester):
runtimes that hang, abort and raise fail their own items with the reason while the others are judged as in a healthy
run, serially and under ``-n 2``; a run killed with SIGKILL leaves an incomplete record that ``--resume`` completes
into the record an uninterrupted run writes.

The repository is test_plugin.py's: one small model (unet_mobilenetv2 at 96x96) with the user's checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from test_plugin import _run, repository  # noqa: F401  (the fixture, used by name)

from harness.record import run_records
from harness.record.journal import SUFFIX

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
FAULTY = ("--runtime", "onnxruntime", "--runtime", "onnxruntime+hang", "--runtime", "onnxruntime+abort@1",
          "--runtime", "onnxruntime+raise@1", "--item-timeout", "3")


def _record(repo: pytest.Pytester, report_dir: str = "reports") -> dict:
    [(_, record)] = run_records.records(repo.path / report_dir)
    return record


def _check_faulty_run(repo: pytest.Pytester, result: pytest.RunResult) -> None:
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert re.search(r"runtime call on image \S+ did not return within 3 s; its process was killed", out)
    assert re.search(r"killed by SIGABRT during runtime call on image \S+", out)
    assert "InjectedRuntimeError: injected fault: the runtime returned an error on call 1" in out
    record = _record(repo)
    assert record["run"]["complete"] is True
    outcomes = {row["item"]: row["outcomes"]["conformance"] for row in record["rows"]}
    assert outcomes == {"mynet-fp32-onnxruntime": "passed", "mynet-fp32-onnxruntime+hang": "failed",
                        "mynet-fp32-onnxruntime+abort@1": "failed", "mynet-fp32-onnxruntime+raise@1": "failed"}
    assert record["tests"]["runtime_faults"] == {
        "cases/demo.yaml::test_conformance[mynet-fp32-onnxruntime+hang]": "timeout",
        "cases/demo.yaml::test_conformance[mynet-fp32-onnxruntime+abort@1]": "crash"}
    notes = [n for row in record["rows"] if row["item"] == "mynet-fp32-onnxruntime+hang" for n in row["notes"]]
    assert any(re.match(r"conformance: timeout: runtime call on image \S+ did not return", n) for n in notes), notes
    summary = (repo.path / "reports" / "summary.md").read_text()
    assert "onnxruntime+abort@1" in summary and "SIGABRT" in summary
    healthy = next(r for r in record["rows"] if r["item"] == "mynet-fp32-onnxruntime" and r["dataset"] == "people")
    assert healthy["conformance"]["images"] == 3


@pytest.mark.slow
def test_a_hang_an_abort_and_an_error_fail_their_own_items_and_the_run_goes_on(repository: pytest.Pytester):
    started = time.monotonic()
    result = _run(repository, *FAULTY, "-k", "fp32 and conformance", "--junitxml=night.xml")
    _check_faulty_run(repository, result)
    assert time.monotonic() - started < 300
    assert "record_property is incompatible" not in result.stdout.str()
    assert "junit_family xunit2 has no per-test properties" in result.stdout.str()  # the figures: said once
    failures = {case.get("name"): case.find("failure") for case in
                ElementTree.parse(repository.path / "night.xml").getroot().iter("testcase")}
    assert failures["test_conformance[mynet-fp32-onnxruntime]"] is None
    assert "did not return within 3 s" in failures["test_conformance[mynet-fp32-onnxruntime+hang]"].get("message")
    assert "SIGABRT" in failures["test_conformance[mynet-fp32-onnxruntime+abort@1]"].get("message")


@pytest.mark.slow
def test_the_same_faults_under_two_workers_give_the_same_verdicts_and_record(repository: pytest.Pytester):
    result = _run(repository, *FAULTY, "-k", "fp32 and conformance", "-n", "2")
    _check_faulty_run(repository, result)
    assert "crashed while running" not in result.stdout.str()  # no xdist worker died


def _metrics(record: dict) -> dict:
    return {(r["item"], r["dataset"]): (r["metrics"], r["ci"], r["conformance"], r["outcomes"]) for r in record["rows"]}


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_resumed_into_the_record_of_an_uninterrupted_run(repository: pytest.Pytester):
    """The kill lands while the hanging runtime's check runs (a window of its 5 s bound), after the first check."""
    outside: Path = repository._outside  # type: ignore[attr-defined]
    selection = ["-k", "conformance or accuracy", "--runtime", "onnxruntime", "--runtime", "onnxruntime+hang",
                 "--item-timeout", "5"]
    _run(repository, "--report-dir=whole", *selection).assert_outcomes(passed=4, failed=4)
    whole = _record(repository, "whole")

    history_dir = repository.path / "reports" / run_records.HISTORY
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *selection, f"--weights-dir={outside}",
         f"--data-root={outside / 'data'}", f"--cache-dir={repository._cache}",  # type: ignore[attr-defined]
         "--calibration-samples=3",
         "--benchmark-disable"], cwd=repository.path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        journals = list(history_dir.glob(f"*{SUFFIX}"))
        if journals and '"kind": "test"' in journals[0].read_text():
            break
        time.sleep(0.1)
    time.sleep(2.0)  # into the hanging check: its worker's start, a call, then the 5 s bound
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = _record(repository)
    assert killed["run"]["complete"] is False and killed["tests"]["finished"] == 1, killed["tests"]
    assert "incomplete run (killed, or still running): 1 of 8 checks finished" in run_records.progress_lines(killed)[0]

    resumed = _run(repository, "--resume", *selection)
    assert "segconform: resuming" in resumed.stdout.str(), resumed.stdout.str()[-2000:]
    resumed.assert_outcomes(passed=3, failed=4)
    record = _record(repository)
    assert record["run"]["complete"] is True and record["run"]["started"] == killed["run"]["started"]
    assert record["tests"]["finished"] == 8 and not list(history_dir.glob(f"*{SUFFIX}"))
    assert _metrics(record) == _metrics(whole)
