"""A night split into shards (issue 27): two pytest-split groups, run as separate processes with separate report
folders and a shared read-only artifact cache, merged by ``python -m harness merge`` into the record, summary and
JUnit file a single run writes; and a merge that lost a check says which.

The repository is test_plugin.py's, with a second model, so that the split falls between models.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml
from test_plugin import CASE, _run, repository  # noqa: F401  (the fixture, used by name)

from harness.record import run_records

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
SPLIT = ("--splits", "2", "--splitting-algorithm", "duration_based_chunks")
#: Figures that are timings: they differ between any two runs, sharded or not.
TIMED = ("latency_ms", "performance", "notes")


def _two_models(repo: pytest.Pytester) -> None:
    case = copy.deepcopy(CASE)
    other = copy.deepcopy(case["models"][0])
    other["name"] = "othernet"
    case["models"].append(other)
    (repo.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")


def _merge(repo: pytest.Pytester, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "merge", *args], cwd=repo.path, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def _rows(record: dict) -> dict:
    return {(r["item"], r["dataset"]): {k: v for k, v in r.items() if k not in TIMED} for r in record["rows"]}


def _junit(path: Path) -> dict:
    """Each test case: its outcome and its figures (timings left out)."""
    cases = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        figures = {p.get("name"): p.get("value") for p in case.iter("property")
                   if not any(word in p.get("name", "") for word in ("latency", "ms", "speedup", "overhead"))}
        cases[(case.get("classname"), case.get("name"))] = (outcome, figures)
    return cases


@pytest.mark.slow
def test_two_shards_merged_give_the_single_run_s_verdicts_metrics_and_junit(repository: pytest.Pytester, tmp_path):
    _two_models(repository)
    outside: Path = repository._outside  # type: ignore[attr-defined]
    setup = _run(repository, "--update-golden=all", "--report-dir=setup")  # golden sets for both models
    assert setup.ret == 0, setup.stdout.str()[-3000:]
    single = _run(repository, "--report-dir=single", "--junitxml=single/junit.xml")
    assert single.ret == 0, single.stdout.str()[-3000:]

    # The single run's artifacts (the session's cache, see test_plugin.repository): handed to the shards, read-only.
    shared = repository._cache / "artifacts"  # type: ignore[attr-defined]
    before = sorted(p.name for p in shared.iterdir())
    for group in ("1", "2"):
        shard = repository.runpytest_subprocess(
            f"--weights-dir={outside}", f"--data-root={outside / 'data'}", f"--cache-dir={tmp_path / group}",
            f"--shared-cache={shared}", "--calibration-samples=3", "--benchmark-disable", *SPLIT, "--group", group,
            f"--report-dir=shard{group}", f"--junitxml=shard{group}/junit.xml", timeout=900)
        assert shard.ret == 0, shard.stdout.str()[-3000:]
        assert "Running group" in shard.stdout.str()
        built = tmp_path / group / "artifacts"  # the shard's own store: nothing built there
        assert not built.exists() or not [p for p in built.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in shared.iterdir()) == before

    merged = _merge(repository, "shard1", "shard2", "--out", "merged")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    [(_, one)] = run_records.records(repository.path / "single")
    [(_, both)] = run_records.records(repository.path / "merged")
    shards = [json.loads(path.read_text()) for n in "12" for path in (repository.path / f"shard{n}" / "history").glob("*.json")]
    # The checks went to the shards model by model (pytest-split cuts the model-ordered selection in consecutive
    # chunks): the first shard began with mynet, the second ended with othernet, and at most the model at the cut
    # is in both.
    models = [[row["model"] for row in sorted(shard["rows"], key=lambda r: r["item"])] for shard in shards]
    assert models[0][0] == "mynet" and models[1][-1] == "othernet" and len(set(models[0]) & set(models[1])) <= 1
    order = [n for shard in shards for n in shard["tests"]["outcomes"]]
    firsts = [n for n in order if "othernet" in n]
    assert all("mynet" not in n for n in order[order.index(firsts[0]):] if "[" in n), order
    assert both["tests"]["outcomes"] == one["tests"]["outcomes"] and both["tests"]["not_run"] == []
    assert _rows(both) == _rows(one)
    assert _junit(repository.path / "merged" / "junit.xml") == _junit(repository.path / "single" / "junit.xml")
    assert both["run"]["complete"] is True and [s["group"] for s in both["run"]["shards"]] == [1, 2]
    assert "merged 2 shard(s)" in merged.stdout and "lost coverage" not in merged.stdout

    # One shard alone has lost the other's checks: named, exit 1.
    alone = _merge(repository, "shard1", "--out", "alone")
    assert alone.returncode == 1 and "group 2 of the split was not merged" in alone.stdout
    assert "no shard ran cases/demo.yaml::test_conformance[othernet-fp32-onnxruntime]" in alone.stdout
    # A shard whose record lacks a check it was meant to run (a vanished item): named, exit 1.
    [path] = (repository.path / "shard2" / "history").glob("*.json")
    record = json.loads(path.read_text())
    lost = "cases/demo.yaml::test_regression[othernet-int8-max-onnxruntime]"
    del record["tests"]["outcomes"][lost]
    path.write_text(json.dumps(record))
    vanished = _merge(repository, "shard1", "shard2", "--out", "vanished")
    assert vanished.returncode == 1 and f"no shard ran {lost}" in vanished.stdout
    # Not a night's shards: a report folder without a shard record is refused, naming it.
    refused = _merge(repository, "shard1", "single", "--out", "refused")
    assert refused.returncode == 2 and "single" in refused.stderr and "not a shard" in refused.stderr
