"""The run journal (harness/record/journal.py): a run's record as it goes, read back as an incomplete record after a kill,
compared by ``harness trend`` on what finished only, resumed by the run of the same commit, cases and machine.

Journals are written the way the plugin writes them (:class:`Journal`), with rows as the recorder exports them; no
model runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.record import run_records, trend
from harness.record.journal import SUFFIX, Journal, JournalWarning, Progress, resumable, unfinished

MACHINE = {"cpu": "AMD EPYC", "int8": "avx512-vnni", "cores": 2, "id": "avx512-vnni-2c-abc"}
KEY = {"commit": "abc123", "cases": "c0ffee", "machine": MACHINE["id"]}
ITEMS = ("u2netp-fp32-onnxruntime", "u2netp-int8-percentile-onnxruntime")


def _run(started: str) -> dict:
    return {"started": started, "commit": "abc123", "machine": MACHINE}


def _export(item: str, check: str, outcome: str = "passed", mae: float = 0.05) -> dict:
    row = {"item": item, "model": "u2netp", "family": "u2net", "precision": item.split("-")[1],
           "runtime": "onnxruntime", "dataset": "ecssd", "images": 4, "metrics": {"mae": mae},
           "ci": {"mae": [mae - 0.01, mae + 0.01]}}
    return {"rows": [row], "outcomes": {item: {check: outcome}}, "architectures": {}}


def _node(check: str, item: str) -> str:
    return f"cases/u2net.yaml::test_{check}[{item}]"


def _journal(folder: Path, started: str = "2026-12-02T01:00:00Z", key: dict = KEY) -> Journal:
    journal = Journal.begin(folder, _run(started), key)
    journal.selected([_node(check, item) for check in ("conformance", "accuracy") for item in ITEMS])
    return journal


def test_a_killed_run_is_an_incomplete_record_with_every_finished_row(tmp_path: Path):
    journal = _journal(tmp_path / "history")
    journal.finished(_node("conformance", ITEMS[0]), "passed", None, _export(ITEMS[0], "conformance"))
    journal.finished(_node("conformance", ITEMS[1]), "failed", "timeout", _export(ITEMS[1], "conformance", "failed"))
    with journal.path.open("a", encoding="utf-8") as out:
        out.write('{"kind": "test", "nodeid": "cases/u2net.yaml::test_accu')  # the kill came mid-line

    with pytest.warns(JournalWarning, match=r"its last line \(line 5\) was cut short .*: skipped"):
        [(path, record)] = run_records.records(tmp_path)
    assert path == journal.path and record["run"]["complete"] is False
    assert {(r["item"], r["outcomes"]["conformance"]) for r in record["rows"]} == {(ITEMS[0], "passed"),
                                                                                  (ITEMS[1], "failed")}
    tests = record["tests"]
    assert tests["selected"] == 4 and tests["finished"] == 2
    assert tests["not_run"] == [_node("accuracy", item) for item in ITEMS]
    assert tests["runtime_faults"] == {_node("conformance", ITEMS[1]): "timeout"}
    lines = run_records.progress_lines(record)
    assert lines[0].startswith("incomplete run (killed, or still running): 2 of 4 checks finished, with rows of 2 "
                               f"items ({ITEMS[0]}, {ITEMS[1]}); not run: 2")
    assert "test_conformance[u2netp-int8-percentile-onnxruntime] (timeout)" in lines[1]


def test_trend_of_an_incomplete_run_says_so_exits_one_and_finds_no_regression_in_what_did_not_run(tmp_path: Path):
    complete = _journal(tmp_path / "history", "2026-12-01T01:00:00Z")
    for check in ("conformance", "accuracy"):
        for item in ITEMS:
            complete.finished(_node(check, item), "passed", None, _export(item, check))
    record = Progress(complete.path).record()
    record["run"]["complete"] = True
    complete.complete(record)
    killed = _journal(tmp_path / "history", "2026-12-02T01:00:00Z")
    killed.finished(_node("conformance", ITEMS[0]), "passed", None, _export(ITEMS[0], "conformance"))

    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert failed, text
    assert (f"incomplete run (killed, or still running): 1 of 4 checks finished, with rows of 1 item ({ITEMS[0]}); "
            "not run: 3") in text
    assert "no change beyond intervals and thresholds" in text and "WORSE" not in text  # nothing vanished
    assert lines[-1] == "trend fails (exit 1): the newest run is incomplete"
    with pytest.raises(ValueError, match="the newest run is incomplete"):
        trend.save_baseline(tmp_path)


def test_completing_a_journal_leaves_one_record_under_the_same_name(tmp_path: Path):
    journal = _journal(tmp_path / "history")
    assert journal.path.name == f"20261202T010000Z-abc123-{MACHINE['id']}{SUFFIX}"
    assert unfinished(tmp_path / "history") == [journal.path]
    path = journal.complete({"run": {**_run("2026-12-02T01:00:00Z"), "complete": True}, "rows": []})
    assert path.name == f"20261202T010000Z-abc123-{MACHINE['id']}.json" and not journal.path.exists()
    assert unfinished(tmp_path / "history") == []
    again = Journal.begin(tmp_path / "history", _run("2026-12-02T01:00:00Z"), KEY)  # same second: another name
    assert again.path.name.endswith(f"-1{SUFFIX}")


def test_only_a_run_of_the_same_commit_cases_and_machine_is_resumed_and_faulted_checks_run_again(tmp_path: Path):
    folder = tmp_path / "history"
    mine = _journal(folder, "2026-12-02T01:00:00Z")
    mine.finished(_node("conformance", ITEMS[0]), "passed", None, _export(ITEMS[0], "conformance"))
    mine.finished(_node("conformance", ITEMS[1]), "failed", "crash", _export(ITEMS[1], "conformance", "failed"))
    _journal(folder, "2026-12-02T02:00:00Z", {**KEY, "cases": "edited"})  # newer, other case files

    found = resumable(folder, KEY)
    assert found is not None and found.path == mine.path
    assert found.done == {_node("conformance", ITEMS[0])}
    assert resumable(folder, {**KEY, "machine": "elsewhere"}) is None


def test_an_empty_journal_is_an_incomplete_run_with_no_item_and_the_command_exits_one(tmp_path: Path):
    import subprocess
    import sys

    folder = tmp_path / "history"
    folder.mkdir()
    (folder / f"20261202T010000Z-abc123-{MACHINE['id']}{SUFFIX}").write_bytes(b"")  # killed as it began
    run = subprocess.run([sys.executable, "-m", "harness", "trend", "--report-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert ("incomplete run (killed, or still running): its journal has no run line (empty: the run was killed as it "
            "began); no check finished") in run.stdout
    assert "newest run: 20261202T010000Z-abc123" in run.stdout and "2026-12-02T01:00:00Z" in run.stdout


def test_a_journal_torn_mid_line_is_resumed_and_the_next_line_starts_on_its_own(tmp_path: Path):
    journal = _journal(tmp_path / "history")
    journal.finished(_node("conformance", ITEMS[0]), "passed", None, _export(ITEMS[0], "conformance"))
    with journal.path.open("a", encoding="utf-8") as out:
        out.write('{"kind": "test", "nodeid": "cases/u2net.yaml::test_conform')  # killed mid-line
    journal.release()  # the operating system drops a killed run's lock
    with pytest.warns(JournalWarning, match="cut short"):
        found = resumable(tmp_path / "history", KEY)
    assert found is not None and found.done == {_node("conformance", ITEMS[0])}

    resumed = Journal.resume(found.path)
    resumed.finished(_node("conformance", ITEMS[1]), "passed", None, _export(ITEMS[1], "conformance"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fragment is gone: nothing to skip
        again = Progress(journal.path)
    assert set(again.finished) == {_node("conformance", item) for item in ITEMS}


def _durable_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every fsync (of a file or a folder), link and rename, in order, as the writers make them."""
    import os
    import stat

    events: list[str] = []
    fsync, link, replace = os.fsync, os.link, os.replace

    def fsynced(descriptor: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "fsync file")
        fsync(descriptor)

    def linked(source, target, *args, **kwargs) -> None:
        events.append("link")
        link(source, target, *args, **kwargs)

    def renamed(source, target, *args, **kwargs) -> None:
        events.append("rename")
        replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsynced)
    monkeypatch.setattr(os, "link", linked)
    monkeypatch.setattr(os, "replace", renamed)
    return events


def test_a_record_is_flushed_and_fsynced_before_it_takes_its_name_and_its_folder_after(tmp_path: Path,
                                                                                       monkeypatch: pytest.MonkeyPatch):
    events = _durable_writes(monkeypatch)
    journal = _journal(tmp_path / "history")
    assert events[:3] == ["fsync file", "link", "fsync folder"]  # the journal appears with its run line, never empty
    del events[:]
    journal.complete({"run": {**_run("2026-12-02T01:00:00Z"), "complete": True}, "rows": []})
    assert events == ["fsync file", "rename", "fsync folder"]
    del events[:]
    run_records.save(tmp_path, {"run": {**_run("2026-12-03T01:00:00Z"), "complete": True}, "rows": []})
    assert events == ["fsync file", "link", "fsync folder"]


# --------------------------------------------------------------------------- the resume key (harness/plugin/journaling.py)


def test_a_key_difference_names_each_part_that_differs_with_both_values_unless_a_digest():
    from harness.plugin.journaling import differences

    theirs = {**KEY, "tree": "aaaa", "eval_limit": "2", "strict_data": "False"}
    ours = {**KEY, "tree": "bbbb", "eval_limit": "3", "strict_data": "False", "full": "True"}
    assert differences(theirs, ours) == "eval_limit (2 then, 3 now), full (None then, True now), tree"


def test_every_setting_that_can_change_a_verdict_is_in_the_key_and_bounds_are_not(tmp_path: Path):
    from dataclasses import replace

    from harness.items.settings import Settings
    from harness.judge.judgement import Bootstrap
    from harness.plugin.journaling import verdict_settings
    from harness.run.isolation import Isolation

    settings = Settings(tmp_path / "data", None, tmp_path / "cache", tmp_path / "golden", tmp_path / "reports", 4)
    parts = verdict_settings(settings)
    assert parts["eval_limit"] == "4" and parts["data_root"] == str((tmp_path / "data").resolve())
    for name in ("calibration_samples", "int8_scheme", "strict_data", "update_golden", "bootstrap.confidence",
                 "bootstrap.resamples", "runtime_config.threads", "runtime_config.ort_providers", "latency_rounds"):
        assert name in parts, name
    for changed in (replace(settings, eval_limit=None), replace(settings, calibration_samples=8),
                    replace(settings, int8_scheme="u8u8"), replace(settings, strict_data=True),
                    replace(settings, bootstrap=Bootstrap(0.9, 1000)), replace(settings, data_root=tmp_path)):
        assert verdict_settings(changed) != parts
    bounded = replace(settings, isolation=Isolation(True, item_timeout=3.0, retries=2), cache_dir=tmp_path / "other",
                      report_dir=tmp_path / "elsewhere")
    assert verdict_settings(bounded) == parts


def test_the_tree_digest_covers_uncommitted_changes_and_untracked_code_not_what_a_run_writes(tmp_path: Path):
    import subprocess

    from harness.plugin.journaling import tree_digest

    assert tree_digest(tmp_path) == ""  # outside git
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    clean = tree_digest(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.md").write_text("a run's output\n")
    assert tree_digest(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    edited = tree_digest(tmp_path)
    assert edited != clean
    subprocess.run([*git, "add", "code.py"], check=True)  # staged: still uncommitted
    assert tree_digest(tmp_path) == edited
    (tmp_path / "new_module.py").write_text("y = 1\n")
    assert tree_digest(tmp_path) not in (clean, edited)


def test_the_golden_digest_follows_the_masks_not_the_review_files_a_failing_check_writes(tmp_path: Path):
    from harness.judge.golden import OBTAINED_SUFFIX
    from harness.plugin.journaling import golden_digest

    folder = tmp_path / "golden" / "u2netp" / "ecssd"
    folder.mkdir(parents=True)
    (folder / "0001.png").write_bytes(b"mask")
    (folder / "meta.json").write_text("{}")
    before = golden_digest(tmp_path / "golden")
    (folder / f"0001{OBTAINED_SUFFIX}").write_bytes(b"what a failing run obtained")
    assert golden_digest(tmp_path / "golden") == before
    (folder / "0001.png").write_bytes(b"another mask")
    assert golden_digest(tmp_path / "golden") != before
    assert golden_digest(tmp_path / "absent") != before
