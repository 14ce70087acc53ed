"""``python -m harness merge`` on hand-made shard records (:mod:`harness.record.merge`): what it refuses, and what it
reports as lost. The end-to-end merge of real shards is tests/test_shards.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.record import run_records
from harness.record.merge import MergeError, merge, verdict

NODES = [f"cases/demo.yaml::test_conformance[{m}-fp32-onnxruntime]" for m in ("a", "b", "c", "d")]


def _shard(folder: Path, group: int, ran: list[str], machine: str = "amx-2c-1", commit: str = "abc",
           complete: bool = True, splits: int = 2, night: str | None = "pipeline-7", outcome: str = "passed",
           day: str = "04") -> Path:
    run = {"started": f"2026-12-{day}T0{group}:00:00Z", "finished": f"2026-12-{day}T0{group}:10:00Z",
           "commit": commit, "dirty": False, "machine": {"id": machine}, "selection": {"args": ["cases"]},
           "cases_dir": "/x/cases", "night": night,
           "options": {"group": group, "report_dir": str(folder), "eval_limit": 4, "night": night},
           "complete": complete}
    tests = {"selected": len(ran), "finished": len(ran), "not_run": [], "runtime_faults": {},
             "outcomes": {n: outcome for n in ran},
             "shard": {"splits": splits, "group": group, "algorithm": "duration_based_chunks", "selection": NODES}}
    run_records.save(folder, {"run": run, "rows": [], "work": [], "tests": tests})
    return folder


def test_two_shards_that_ran_everything_merge_into_one_complete_night(tmp_path):
    shards = [_shard(tmp_path / "1", 1, NODES[:2]), _shard(tmp_path / "2", 2, NODES[2:], machine="vnni-2c-2")]
    record, written = merge(shards, tmp_path / "out")
    status, lines = verdict(record)
    assert status == 0 and record["run"]["complete"] and record["tests"]["not_run"] == []
    assert record["run"]["machine"]["id"] == "mixed-amx-2c-1+vnni-2c-2"  # trend compares it with nights on these hosts
    assert [s["group"] for s in record["run"]["shards"]] == [1, 2]
    assert "merged 2 shard(s) (groups 1, 2): 4 of 4 checks finished: 4 passed" in lines[0]
    assert written[0].parent == tmp_path / "out" / "history"


def test_a_check_no_shard_ran_and_a_group_not_merged_are_lost_coverage_named(tmp_path):
    record, _ = merge([_shard(tmp_path / "1", 1, NODES[:1])], tmp_path / "out")
    status, lines = verdict(record)
    assert status == 1 and not record["run"]["complete"]
    assert "lost coverage: group 2 of the split was not merged" in lines
    assert [line for line in lines if line.endswith(NODES[3])] == [f"lost coverage: no shard ran {NODES[3]}"]


@pytest.mark.parametrize("second, why", [
    ({"commit": "def"}, "its commit differ"),
    ({"complete": False}, "is incomplete"),
    ({"splits": 3}, "split differently"),
])
def test_shards_of_different_nights_or_an_unfinished_shard_are_refused(tmp_path, second, why):
    first = _shard(tmp_path / "1", 1, NODES[:2])
    other = _shard(tmp_path / "2", 2, NODES[2:], **second)
    with pytest.raises(MergeError, match=why):
        merge([first, other], tmp_path / "out")


def test_the_command_exits_2_naming_a_folder_without_a_record(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'nothing'}: no run record" in capsys.readouterr().err


def test_a_shard_of_another_night_is_refused_naming_its_folder_even_at_the_same_commit_and_options(tmp_path, capsys):
    """A host that did not run tonight: its folder's newest record is last night's, same commit, same options."""
    tonight = _shard(tmp_path / "1", 1, NODES[:2], night="pipeline-8", day="05")
    stale = _shard(tmp_path / "2", 2, NODES[2:], night="pipeline-7", day="04")
    with pytest.raises(MergeError, match=rf"{tmp_path / '2'}: its newest shard run is of night 'pipeline-7', not "
                                         r"tonight's 'pipeline-8'"):
        merge([tonight, stale], tmp_path / "out")
    assert main(["merge", str(tonight), str(stale), "--out", str(tmp_path / "out")]) == 2
    assert str(tmp_path / "2") in capsys.readouterr().err
    # Told tonight's identity (what the merge job of the same pipeline has in SEGCONFORM_NIGHT), even the first
    # folder is checked.
    with pytest.raises(MergeError, match=rf"{tmp_path / '2'}: .* of night 'pipeline-7', not tonight's 'pipeline-8'"):
        merge([stale, tonight], tmp_path / "out", night="pipeline-8")
    with pytest.raises(MergeError, match=rf"{tmp_path / '3'}: .* of no night identity"):
        merge([tonight, _shard(tmp_path / "3", 2, NODES[2:], night=None, day="05")], tmp_path / "out")


def test_shards_without_a_night_identity_merge_and_say_a_stale_one_could_not_be_told(tmp_path):
    shards = [_shard(tmp_path / "1", 1, NODES[:2], night=None), _shard(tmp_path / "2", 2, NODES[2:], night=None)]
    status, lines = verdict(merge(shards, tmp_path / "out")[0])
    assert status == 0 and any(line.startswith("no night identity (--night / SEGCONFORM_NIGHT") for line in lines)


def test_a_shard_whose_every_check_skipped_is_lost_coverage_not_coverage(tmp_path):
    shards = [_shard(tmp_path / "1", 1, NODES[:2]), _shard(tmp_path / "2", 2, NODES[2:], outcome="skipped")]
    status, lines = verdict(merge(shards, tmp_path / "out")[0])
    assert status == 1
    assert [line for line in lines if line.startswith("lost coverage")] == [
        f"lost coverage: no shard judged {node} (skipped in a shard whose every check skipped)" for node in NODES[2:]]
