"""A night that is bounded and resumable, through the installed plugin in a repository of its own (pytester): a load
that hangs costs one bound per item and every check of the item says so; a crash retried with ``--retries`` passes
and is noted; under ``--isolation none`` a hang ends the run through the watchdog, leaving its journal; ``--resume``
after a verdict-changing option changed starts afresh and says what differs.

The repository is test_plugin.py's: one small model (unet_mobilenetv2 at 96x96) with the user's checkpoint.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from test_plugin import _run, repository  # noqa: F401  (the fixture, used by name)

from harness.record import run_records
from harness.record.journal import SUFFIX
from harness.run.watchdog import HUNG_EXIT

pytest_plugins = ["pytester"]


def _record(repo: pytest.Pytester) -> dict:
    [(_, record)] = run_records.records(repo.path / "reports")
    return record


@pytest.mark.slow
def test_a_load_that_hangs_costs_one_bound_and_every_check_of_the_item_reports_it(repository: pytest.Pytester):
    started = time.monotonic()
    result = _run(repository, "--runtime", "onnxruntime+load_hang", "--load-timeout", "3", "-k", "fp32")
    elapsed = time.monotonic() - started
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    checks = outcomes.get("failed", 0) + outcomes.get("errors", 0)
    reasons = re.findall(r"RuntimeTimeout: mynet-fp32-onnxruntime\+load_hang: (.*)", out)
    assert checks >= 4 and not outcomes.get("passed"), out[-3000:]
    assert reasons == ["loading its session did not return within 3 s; its process was killed and the session "
                       "abandoned"] + ["not run: the session's load failed earlier: loading its session did not "
                                       "return within 3 s; its process was killed and the session abandoned"] * (
                                           checks - 1), out[-3000:]  # every check of the item, with the reason
    record = _record(repository)
    faults = record["tests"]["runtime_faults"]
    assert len(faults) == checks and set(faults.values()) == {"timeout"}  # --resume reruns them
    assert elapsed < 3 * 2 + 120, elapsed  # one bound, not one per check (the rest: start, build, imports)


@pytest.mark.slow
def test_a_crash_retried_in_a_new_worker_passes_and_the_attempts_are_on_the_rows(repository: pytest.Pytester):
    result = _run(repository, "--runtime", "onnxruntime+abort_once@1", "--retries", "1", "-k", "fp32 and conformance")
    result.assert_outcomes(passed=1)
    record = _record(repository)
    assert record["run"]["complete"] is True and not record["tests"]["runtime_faults"]
    notes = {note for row in record["rows"] if row["item"] == "mynet-fp32-onnxruntime+abort_once@1"
             for note in row["notes"]}
    retried = (r"runtime attempt 1: crash: the runtime's process was killed by SIGABRT during runtime call on image "
               r"\S+; retried in a new worker process as attempt 2")
    assert any(re.fullmatch(retried, n) for n in notes), notes
    assert "runtime attempt 2" not in " ".join(notes)  # attempt 2 counted
    assert "runtime attempt 1: crash" in (repository.path / "reports" / "summary.md").read_text()


@pytest.mark.slow
def test_under_isolation_none_a_hang_ends_the_run_through_the_watchdog_and_leaves_its_journal(
        repository: pytest.Pytester):
    started = time.monotonic()
    result = _run(repository, "--isolation", "none", "--runtime", "onnxruntime", "--runtime", "onnxruntime+hang",
                  "--item-timeout", "2", "-k", "fp32 and conformance")
    assert result.ret == HUNG_EXIT, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    assert time.monotonic() - started < 300
    message = re.search(r"segconform: mynet-fp32-onnxruntime\+hang: runtime call on image \S+ did not finish within "
                        r"2 s; ending the run \(exit status 124\)", result.stderr.str())
    assert message, result.stderr.str()[-2000:]
    [journal] = (repository.path / "reports" / run_records.HISTORY).glob(f"*{SUFFIX}")
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [line["outcome"] for line in lines if line["kind"] == "test"] == ["passed"]  # the healthy item's check
    [ended] = [line for line in lines if line["kind"] == "ended"]
    assert "did not finish within 2 s" in ended["reason"]
    assert "**Incomplete run**" in (repository.path / "reports" / "summary.md").read_text()


@pytest.mark.slow
def test_resume_after_a_verdict_changing_option_changed_starts_afresh_and_says_what_differs(
        repository: pytest.Pytester):
    selection = ["-k", "fp32 and (conformance or accuracy)", "--runtime", "onnxruntime+raise@1", "-x"]
    _run(repository, "--eval-limit", "2", *selection).assert_outcomes(failed=1)  # -x: an unfinished run
    history_dir = repository.path / "reports" / run_records.HISTORY
    [first] = history_dir.glob(f"*{SUFFIX}")

    changed = _run(repository, "--resume", "--eval-limit", "3", *selection)
    assert (f"segconform: --resume: the newest unfinished run, {first.name}, differs from this one in eval_limit "
            "(2 then, 3 now); starting a new run") in changed.stdout.str(), changed.stdout.str()[-2000:]
    [second] = set(history_dir.glob(f"*{SUFFIX}")) - {first}

    same = _run(repository, "--resume", "--eval-limit", "3", *selection)
    assert f"segconform: resuming {second.name}" in same.stdout.str(), same.stdout.str()[-2000:]
