"""Fuzzed inputs: case files, journal lines and run records made from valid ones by mutation (a key removed, a value
of the wrong type, a path-like name, a huge or negative number). Loading each either works or raises the harness's
own error naming the file, no other exception; and what loads never names a path outside its folder. The number of
examples is the hypothesis profile's (``ci`` small, ``nightly`` large: see conftest.py)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.data.case_base import CaseError
from harness.data.cases import load_family
from harness.judge.golden import GoldenStore
from harness.record import run_records
from harness.record.journal import SUFFIX, Progress
from harness.record.schema import RecordError

#: A torn last line is skipped with a JournalWarning by design; the fuzz tears some on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::harness.record.journal.JournalWarning")

ROOT = Path(__file__).resolve().parents[1]
CASE = yaml.safe_load((ROOT / "cases" / "u2net.yaml").read_text(encoding="utf-8"))
MACHINE = {"cpu": "AMD EPYC", "int8": "avx512-vnni", "cores": 2, "id": "avx512-vnni-2c-abc"}
RUN = {"started": "2026-12-01T01:00:00Z", "commit": "abc123", "machine": MACHINE, "complete": True}
ROW = {"item": "u2netp-fp32-onnxruntime", "model": "u2netp", "family": "u2net", "precision": "fp32",
       "runtime": "onnxruntime", "dataset": "ecssd", "images": 4, "metrics": {"mae": 0.05},
       "ci": {"mae": [0.04, 0.06]}, "latency_ms": {"runtime": 12.0}, "outcomes": {"conformance": "passed"}}
RECORD = {"schema": 1, "run": RUN, "rows": [ROW], "work": [],
          "tests": {"selected": 1, "finished": 1, "not_run": [], "runtime_faults": {}}}
NODE = "cases/u2net.yaml::test_conformance[u2netp-fp32-onnxruntime]"
JOURNAL = [{"kind": "run", "schema": 1, "run": RUN, "key": {"commit": "abc123"}},
           {"kind": "selected", "nodeids": [NODE]},
           {"kind": "test", "nodeid": NODE, "outcome": "passed", "fault": None,
            "export": {"rows": [ROW], "outcomes": {ROW["item"]: {"conformance": "passed"}}, "architectures": {}}},
           {"kind": "resumed", "at": "2026-12-01T02:00:00Z"}]

#: What a mutation puts in place of a value: wrong types, path-like names, huge and negative numbers.
REPLACEMENTS = st.sampled_from([None, True, 0, -1, -5, 10**30, -10**30, 1e308, float("nan"), "", "x", "../../x",
                                "/etc/passwd", "a/b", "..", ".hidden", [], {}, [1, "a"], {"k": "v"}])


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a JSON-like tree (the root excluded)."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += [(*prefix, key), *_paths(value, (*prefix, key))]
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += [(*prefix, index), *_paths(value, (*prefix, index))]
    return found


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with one to three mutations: a key or element removed, or a value replaced."""
    tree = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(tree)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = tree
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(REPLACEMENTS))  # never the sampled object itself
    return tree


def _inside(folder: Path, written: list[Path]) -> None:
    root = folder.resolve()
    for path in written:
        assert path.resolve().is_relative_to(root), f"{path} is outside {root}"


FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(mutated(CASE))
def test_a_mutated_case_file_loads_or_is_refused_naming_it(case):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        path = folder / "u2net.yaml"
        path.write_text(yaml.safe_dump(case), encoding="utf-8")
        try:
            family = load_family(path)
        except CaseError as error:
            assert str(path) in str(error)
            return
        store = GoldenStore(folder / "golden")
        _inside(folder / "golden", [store.folder(m.name, d.name) for m in family.models for d in m.datasets])


@FUZZ
@given(mutated(RECORD))
def test_a_mutated_run_record_loads_or_is_refused_naming_it(record):
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        path = folder / "history" / "20261201T010000Z-abc123-m.json"
        path.parent.mkdir()
        path.write_text(json.dumps(record), encoding="utf-8")
        try:
            loaded = run_records.load(path)
        except RecordError as error:
            assert str(path) in str(error)
            return
        out = folder / "out"
        _inside(out, [run_records.save(out, loaded)])


@FUZZ
@given(mutated(JOURNAL), st.integers(0, 3), st.booleans())
def test_mutated_journal_lines_load_or_are_refused_naming_file_and_line(lines, cut, tear):
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"20261201T010000Z-abc123-m{SUFFIX}"
        text = "".join(json.dumps(line) + "\n" for line in lines)
        if tear:  # a kill mid-write: the last line cut short
            text = text[: max(0, len(text) - 1 - cut * 7)]
        path.write_text(text, encoding="utf-8")
        try:
            progress = Progress(path)
        except RecordError as error:
            assert str(path) in str(error)
            return
        progress.record()
        progress.tests()


def test_a_number_beyond_float32_in_a_recipe_is_refused_naming_the_file(tmp_path):
    """What the fuzz found: a normalize mean of 1e308 loaded, and every image became inf."""
    case = copy.deepcopy(CASE)
    model = next(m for m in case["models"] if m["name"] == "u2netp")
    step = next(op for op in model["preprocess"] if op["op"] == "normalize")
    step["mean"] = [1e308, 0.456, 0.406]
    path = tmp_path / "u2net.yaml"
    path.write_text(yaml.safe_dump(case), encoding="utf-8")
    with pytest.raises(CaseError, match=r"u2net\.yaml(.|\n)*preprocess(.|\n)*finite"):
        load_family(path)
