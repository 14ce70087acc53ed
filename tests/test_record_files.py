"""Run records and journals from elsewhere (:mod:`harness.record.schema`): a schema version is written and checked,
a malformed one is refused naming the file (and line), never a ``KeyError`` or ``AttributeError`` from inside; the
names a record gives (commit, machine id, a row's model) never become paths outside the report folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.data.names import UnsafePath
from harness.record import merge, run_records, trend
from harness.record.journal import SUFFIX, Journal, Progress, incomplete_record, record_base, resumable
from harness.record.plots import draw_plots
from harness.record.report import Recorder
from harness.record.schema import SCHEMA_VERSION, RecordError

MACHINE = {"cpu": "AMD EPYC", "int8": "avx512-vnni", "cores": 2, "id": "avx512-vnni-2c-abc"}
ROW = {"item": "u2netp-fp32-onnxruntime", "model": "u2netp", "precision": "fp32", "runtime": "onnxruntime",
       "dataset": "ecssd", "metrics": {"mae": 0.05}, "latency_ms": {"runtime": 12.0}}


def _record(**run) -> dict:
    return {"run": {"started": "2026-12-01T01:00:00Z", "commit": "abc123", "machine": MACHINE, **run},
            "rows": [ROW], "work": []}


def _history(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / "history" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_records_and_journals_are_written_with_the_schema_version(tmp_path):
    record = json.loads(run_records.save(tmp_path, _record()).read_text())
    assert record["schema"] == SCHEMA_VERSION
    journal = Journal.begin(tmp_path / "history", _record()["run"], {"commit": "abc123"})
    assert json.loads(journal.path.read_text().splitlines()[0])["schema"] == SCHEMA_VERSION


def test_a_record_of_another_schema_version_is_refused_naming_both_versions(tmp_path):
    path = _history(tmp_path, "20261201T010000Z-abc123-m.json", {"schema": 7, **_record()})
    with pytest.raises(RecordError, match=rf"{path.name}: schema version 7; this segconform reads version 1"):
        run_records.load(path)


@pytest.mark.parametrize("missing", ["commit", "machine"])
def test_trend_on_a_record_without_commit_or_machine_names_the_file(tmp_path, missing):
    record = _record()
    del record["run"][missing]
    path = _history(tmp_path, "20261201T010000Z-abc123-m.json", record)
    with pytest.raises(ValueError) as refused:
        trend.main_trend(tmp_path, save=False, out=io.StringIO())
    assert str(path) in str(refused.value) and f"run.{missing}" in str(refused.value)


def test_a_journal_whose_first_line_is_a_list_is_refused_naming_file_and_line(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    path = folder / f"20261201T010000Z-abc123-m{SUFFIX}"
    path.write_text("[]\n", encoding="utf-8")
    with pytest.raises(RecordError, match=rf"{path.name}: line 1: not a journal entry"):
        Progress(path)
    assert resumable(folder, {"commit": "abc123"}) is None  # --resume starts a new run instead of crashing
    assert "line 1" in incomplete_record(path)["tests"]["unreadable"]


@pytest.mark.parametrize("line, says", [
    ('{"kind": "test", "outcome": "passed", "export": {}}', "line 2: not a valid 'test' line: nodeid"),
    ('{"kind": "selected", "nodeids": "not-a-list"}', "line 2: not a valid 'selected' line: nodeids"),
    ('{"kind": "surprise"}', "line 2: unknown kind 'surprise'"),
])
def test_a_malformed_journal_line_is_named_by_file_and_line(tmp_path, line, says):
    journal = Journal.begin(tmp_path / "history", _record()["run"], {"commit": "abc123"})
    with journal.path.open("a") as out:
        out.write(line + "\n")
    with pytest.raises(RecordError, match=rf"{journal.path.name}: {says}"):
        Progress(journal.path)


def test_a_journal_of_another_schema_version_is_refused(tmp_path):
    path = tmp_path / f"x{SUFFIX}"
    path.write_text(json.dumps({"kind": "run", "schema": 2, "run": _record()["run"]}) + "\n")
    with pytest.raises(RecordError, match="line 1: schema version 2; this segconform reads version 1"):
        Progress(path)


@pytest.mark.parametrize("where, value", [("machine", {"id": "../../evil"}), ("commit", "../../evil")])
def test_a_record_name_cannot_leave_the_history_folder(tmp_path, where, value):
    run = {**_record()["run"], where: value}
    with pytest.raises(UnsafePath):
        record_base(run)
    path = _history(tmp_path / "shard", "20261201T010000Z-abc123-m.json", {**_record(), "run": run})
    with pytest.raises(RecordError, match=rf"{path.name}: .*run\.{where}"):
        run_records.load(path)


def test_merging_a_shard_whose_record_names_a_path_writes_nothing_outside(tmp_path):
    record = _record(machine={"id": "../../../escaped"})
    _history(tmp_path / "shard", "20261201T010000Z-abc123-m.json", record)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="run.machine.id"):
        merge.merge([tmp_path / "shard"], tmp_path / "out")
    assert sorted(tmp_path.rglob("*")) == before


def test_a_row_whose_model_is_a_path_is_refused_at_load_and_never_plotted_outside(tmp_path):
    record = _record()
    record["rows"] = [{**ROW, "model": "../../../escaped"}]
    path = _history(tmp_path, "20261201T010000Z-abc123-m.json", record)
    with pytest.raises(RecordError, match=rf"{path.name}: .*rows\.0\.model"):
        run_records.load(path)
    with pytest.raises(UnsafePath):
        draw_plots(tmp_path, [record, record])
    assert not (tmp_path.parent / "escaped.png").exists()


def test_a_strip_that_cannot_be_written_is_an_error_naming_it_not_a_listed_file(tmp_path):
    recorder = Recorder(tmp_path)
    (tmp_path / "strips" / "item-set-a-conformance.png").mkdir(parents=True)  # a folder where the file would go
    with pytest.raises(OSError, match=r"item-set-a-conformance\.png: the strip could not be written"):
        recorder.strip("item-set-a-conformance", [("input", np.zeros((8, 8, 3), np.uint8))])
    assert cv2.imread(str(tmp_path / "strips" / "item-set-a-conformance.png")) is None


def test_resume_says_which_journal_cannot_be_resumed_and_why(tmp_path):
    """``--resume`` with a journal whose first line is ``[]``: the run starts afresh and its terminal line names the
    journal's problem, where pytest_configure used to end in an AttributeError."""
    from types import SimpleNamespace

    from harness.plugin.journaling import JournalPlugin

    folder = tmp_path / "history"
    folder.mkdir()
    (folder / f"20261201T010000Z-abc123-m{SUFFIX}").write_text("[]\n", encoding="utf-8")
    plugin = SimpleNamespace(folder=folder, key=lambda: {"commit": "abc123"})
    said = JournalPlugin._unmatched(plugin)  # type: ignore[arg-type]
    assert "1 cannot be resumed" in said and "line 1: not a journal entry" in said
