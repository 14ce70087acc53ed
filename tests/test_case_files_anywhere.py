"""Case files kept outside the rootdir (``scripts/segconform suite --cases-dir /elsewhere`` runs
``pytest -c pytest.ini /elsewhere --cases-dir /elsewhere``): pytest names their checks relative to the path it was
handed, not to the rootdir, and the run must still write its record and summary like any other.

The repository is test_plugin.py's: one small model (unet_mobilenetv2 at 96x96) with the user's checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_plugin import CASE, _run, repository  # noqa: F401  (the fixture, used by name)

from harness.plugin.journaling import is_case
from harness.record import run_records

pytest_plugins = ["pytester"]

FAMILY = Path("/elsewhere/cases/demo.yaml")


@pytest.mark.parametrize(("nodeid", "bases"), [
    ("cases/demo.yaml::test_conformance[mynet-fp32-onnxruntime]", [Path("/elsewhere")]),  # inside the rootdir
    ("demo.yaml::test_conformance[mynet-fp32-onnxruntime]", [Path("/repo"), Path("/elsewhere/cases")]),  # a folder
    ("::test_conformance[mynet-fp32-onnxruntime]", [Path("/repo"), FAMILY]),  # the case file itself was handed
])
def test_a_check_is_a_case_files_wherever_pytest_names_it_from(nodeid: str, bases: list[Path]):
    assert is_case(nodeid, bases, {FAMILY})


def test_a_test_module_beside_the_case_files_is_not_a_case_files_check():
    assert not is_case("tests/test_x.py::test_a", [Path("/elsewhere")], {FAMILY})
    assert not is_case("demo.yaml::test_conformance[mynet-fp32-onnxruntime]", [Path("/repo")], {FAMILY})


@pytest.mark.slow
def test_case_files_outside_the_rootdir_write_the_run_record_and_the_summary(repository: pytest.Pytester,
                                                                              tmp_path_factory: pytest.TempPathFactory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "demo.yaml").write_text(yaml.safe_dump(CASE), encoding="utf-8")
    (repository.path / "cases" / "demo.yaml").unlink()  # nothing to collect inside the rootdir
    reports = repository.path / "reports"
    for handed in (elsewhere, elsewhere / "demo.yaml"):  # checks named demo.yaml::test_..., then ::test_...
        # -c keeps the repository's ini file (pytester's is tox.ini) and rootdir, as scripts/segconform does.
        result = _run(repository, "-c", "tox.ini", str(handed), "--cases-dir", str(elsewhere),
                      "-k", "fp32 and conformance")
        result.assert_outcomes(passed=1)
        assert f"rootdir: {repository.path}" in result.stdout.str()  # outside it
        assert "segconform: report written to" in result.stdout.str(), result.stdout.str()[-2000:]
        record = run_records.records(reports)[-1][1]
        assert record["run"]["complete"] is True and record["run"]["cases_dir"] == str(elsewhere.resolve())
        assert record["tests"]["finished"] == 1 and record["tests"]["not_run"] == []
        assert [row["item"] for row in record["rows"]] == ["mynet-fp32-onnxruntime"] * 2  # people and synthetic
        summary = json.loads((reports / "summary.json").read_text())
        assert summary["run"]["complete"] is True and len(summary["rows"]) == 2
        assert "mynet" in (reports / "summary.md").read_text()
    assert len(run_records.records(reports)) == 2
