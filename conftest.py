"""pytest entry point: segconform's command-line options, and the expansion of case files into items.

Every test function that takes an ``item`` argument is parametrised over all items
(model x precision[-calibration] x runtime), with ids such as ``isnet-int8-kl_divergence-onnxruntime``
and markers for family, model, precision, calibration and runtime, so both
``pytest -k "isnet and int8"`` and ``pytest -m fp16`` select what a user expects.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import runtimes
from harness.cases import CALIBRATIONS, PRECISIONS, CaseError, Item, expand, load_all
from harness.pipeline import Harness, Settings
from harness.report import Recorder
from harness.runtimes import RuntimeConfig, RuntimeUnavailable
from harness.weights import default_cache_dir

ROOT = Path(__file__).resolve().parent
HARNESS = pytest.StashKey[Harness]()
RECORDER = pytest.StashKey[Recorder]()
ITEMS = pytest.StashKey[list[Item]]()

#: Checks that a documented collapse (a seed row with ``expected_failure``) turns into an xfail.
CHECKS_EXPECTED_TO_FAIL = {"test_accuracy", "test_conformance"}


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("segconform", "segconform conformance harness")
    group.addoption("--data-root", type=Path, default=None,
                    help="folder holding the datasets (ecssd-300/, human-seg-290/, ...); env SEGCONFORM_DATA_ROOT. "
                         "Without it only the synthetic set runs.")
    group.addoption("--weights-dir", type=Path, default=None,
                    help="folder with official checkpoints (u2net.pth, ...); env SEGCONFORM_WEIGHTS_DIR")
    group.addoption("--cache-dir", type=Path, default=None,
                    help="artifact and weight cache; env SEGCONFORM_CACHE_DIR, default the user cache dir")
    group.addoption("--runtime", action="append", default=None, choices=runtimes.names(),
                    help="runtime(s) to test; repeat for several (default: onnxruntime)")
    group.addoption("--update-golden", action="store_true",
                    help="rewrite golden masks from the fp32 reference (review the diff before committing)")
    group.addoption("--report-dir", type=Path, default=None, help="where summary.md/json go (default reports/)")
    group.addoption("--eval-limit", type=int, default=None,
                    help="images per real dataset for accuracy (default from pytest.ini); 0 = the full set")
    group.addoption("--full", action="store_true", help="evaluate every image of every dataset")
    group.addoption("--calibration-samples", type=int, default=None,
                    help="images for static int8 calibration (default 50, like the VACC compiler's sampler)")
    group.addoption("--localise-builds", type=int, default=8,
                    help="builds fault localisation may spend on a failing fp16/int8 item (0: do not localise)")
    group.addoption("--vacc-models", type=Path, default=None, help="folder of vamc-compiled models for --runtime vacc")
    group.addoption("--vacc-device", type=int, default=0, help="VACC device id")
    group.addoption("--vamp-outputs", type=Path, default=None, help="folder of vamp npz outputs for --runtime vamp")
    group.addoption("--threads", type=int, default=None, help="intra-op threads for CPU runtimes")
    parser.addini("segconform_eval_limit", "default --eval-limit", default="20")
    parser.addini("segconform_calibration_samples", "default --calibration-samples", default="50")


def _settings(config: pytest.Config) -> Settings:
    option = config.option
    if option.full:
        eval_limit = None
    else:
        limit = option.eval_limit if option.eval_limit is not None else int(config.getini("segconform_eval_limit"))
        eval_limit = None if limit == 0 else limit
    cache_dir = option.cache_dir or default_cache_dir()
    data_root = option.data_root or _env_path("SEGCONFORM_DATA_ROOT")
    if data_root is not None and not data_root.is_dir():
        raise pytest.UsageError(f"--data-root {data_root}: not a folder")
    return Settings(
        data_root=data_root,
        weights_dir=option.weights_dir or _env_path("SEGCONFORM_WEIGHTS_DIR"),
        cache_dir=cache_dir,
        golden_dir=ROOT / "golden",
        report_dir=option.report_dir or ROOT / "reports",
        eval_limit=eval_limit,
        calibration_samples=option.calibration_samples or int(config.getini("segconform_calibration_samples")),
        localise_builds=option.localise_builds,
        update_golden=option.update_golden,
        runtime_config=RuntimeConfig(
            threads=option.threads,
            vacc_device=option.vacc_device,
            vacc_models=option.vacc_models,
            vamp_outputs=option.vamp_outputs,
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        families = load_all(ROOT / "cases")
    except CaseError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[ITEMS] = expand(families, config.option.runtime or ["onnxruntime"])
    markers = {f.family for f in families} | {m.name for f in families for m in f.models}
    markers |= set(PRECISIONS) | set(CALIBRATIONS) | set(runtimes.names())
    for name in sorted(markers):
        config.addinivalue_line("markers", f"{name}: segconform items of {name}")
    settings = _settings(config)
    config.stash[HARNESS] = Harness(settings)
    config.stash[RECORDER] = Recorder(settings.report_dir)


def _marks(item: Item, check: str) -> list[pytest.MarkDecorator]:
    names = [item.family.family, item.model.name, item.variant.precision, item.runtime]
    if item.variant.calibration:
        names.append(item.variant.calibration)
    marks = [getattr(pytest.mark, name) for name in dict.fromkeys(names)]
    if check in CHECKS_EXPECTED_TO_FAIL:
        for row in item.model.documented_rows(item.variant, item.model.datasets[0].name):
            if row.expected_failure:
                marks.append(pytest.mark.xfail(reason=f"documented failure: {row.expected_failure}", strict=False))
    return marks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    items = metafunc.config.stash[ITEMS]
    if "item" in metafunc.fixturenames:
        check = metafunc.function.__name__
        metafunc.parametrize("item", [pytest.param(i, id=i.id, marks=_marks(i, check)) for i in items])
    elif "case_model" in metafunc.fixturenames:
        # Per-model checks (architecture size): one parameter per model that has a PyTorch architecture.
        models = {i.model.name: i for i in items if i.model.architecture}
        metafunc.parametrize(
            "case_model",
            [pytest.param(i.model, id=name, marks=[getattr(pytest.mark, i.family.family), getattr(pytest.mark, name)])
             for name, i in models.items()],
        )


@pytest.fixture(scope="session")
def harness(pytestconfig: pytest.Config) -> Harness:
    return pytestconfig.stash[HARNESS]


@pytest.fixture(scope="session")
def recorder(pytestconfig: pytest.Config) -> Recorder:
    return pytestconfig.stash[RECORDER]


@pytest.fixture
def runnable(item: Item, harness: Harness) -> Item:
    """The item, or a skip that says exactly why it cannot run here."""
    reason = harness.unavailable_reason(item)
    if reason:
        pytest.skip(reason)
    try:
        harness.session(item)
    except RuntimeUnavailable as error:  # e.g. no compiled VACC model or vamp outputs for this item
        pytest.skip(f"runtime {item.runtime}: {error}")
    return item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    callspec = getattr(item, "callspec", None)
    case_item = callspec.params.get("item") if callspec else None
    if isinstance(case_item, Item) and (report.when == "call" or report.outcome != "passed"):
        outcome = report.outcome
        if hasattr(report, "wasxfail"):  # a documented failure: say whether it happened
            outcome = "xpass" if report.passed else "xfail"
        check = item.originalname.removeprefix("test_")
        item.config.stash[RECORDER].outcome(case_item.id, check, outcome)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if HARNESS in session.config.stash:
        session.config.stash[HARNESS].close()
    recorder = session.config.stash.get(RECORDER, None)
    if recorder is None or not recorder.rows:
        return
    written = recorder.write()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and written:
        reporter.write_line(f"segconform: report written to {', '.join(str(p) for p in written)}")
