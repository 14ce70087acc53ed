"""segconform's pytest plugin, registered as ``segconform`` under the ``pytest11`` entry point.

Installed, it works in any repository: the case files in the ``cases`` folder of the rootdir (ini
``segconform_cases`` or ``--cases-dir``) are collected as test files, each running the checks of
:mod:`harness.checks` parametrised over its items, with ids such as
``isnet-int8-kl_divergence-onnxruntime`` and markers for family, model, precision, calibration and
runtime, so ``pytest -k "isnet and int8"`` and ``pytest -m fp16`` select what a user expects. Golden
masks and reports are read and written under the rootdir too (``segconform_golden``,
``segconform_reports``). Without a cases folder the plugin does nothing.

Under pytest-xdist (``-n 2 --dist loadgroup``) a model's items, and the fp32 reference they share, stay in
one worker; workers hand their report rows to the controller, which alone writes the report and the run
record. The grouping is done by this plugin's scheduler (:func:`pytest_xdist_make_scheduler`), which reads
the model from each item's id: pytest-xdist's own ``xdist_group`` marks (still set on every item) stopped
taking effect with pytest 9.2, which no longer lets xdist rewrite node ids (pytest-xdist issue 1386).

A night survives its device: each item's runtime session lives in a worker process with every call bounded
(:mod:`harness.run.isolation`, ``--isolation``, ``--load-timeout``, ``--first-call-timeout``, ``--item-timeout``,
``--retries``, ``--build-timeout``), and the run record is journaled as checks finish and resumable
(:mod:`harness.plugin.journaling`, ``--resume``).
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from .. import runtimes
from ..build.weights import default_cache_dir
from ..data.cases import CALIBRATIONS, INT8_SCHEME_CHOICES, PRECISIONS, CaseError, Item, expand, load_all
from ..items.settings import Settings
from ..items.state import STATE, State, state_of
from ..items.suite import Suite
from ..judge.judgement import Bootstrap
from ..record.report import Recorder
from ..run import isolation
from ..run.isolation import Isolation, RuntimeFault
from ..runtimes import RuntimeConfig, RuntimeUnavailable
from .journaling import JOURNAL, JournalPlugin


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _runtime_name(value: str) -> str:
    """argparse type of ``--runtime``: a known runtime or ``NAME+FAULT``; argparse shows the message of the error."""
    import argparse

    try:
        return runtimes.validated(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("segconform", "segconform conformance harness")
    group.addoption("--cases-dir", type=Path, default=None, help="folder of case files (default: ini segconform_cases)")
    group.addoption("--golden-dir", type=Path, default=None, help="golden masks (default: ini segconform_golden)")
    group.addoption("--report-dir", type=Path, default=None, help="where reports go (default: ini segconform_reports)")
    group.addoption("--data-root", type=Path, default=None,
                    help="folder holding the datasets (ecssd-300/, human-seg-290/, ...); env SEGCONFORM_DATA_ROOT. "
                         "Without it only the synthetic set runs.")
    group.addoption("--weights-dir", type=Path, default=None,
                    help="folder with official checkpoints (u2net.pth, ...); env SEGCONFORM_WEIGHTS_DIR")
    group.addoption("--cache-dir", type=Path, default=None,
                    help="artifact and weight cache; env SEGCONFORM_CACHE_DIR, default the user cache dir")
    group.addoption("--runtime", action="append", default=None, type=_runtime_name,
                    help=f"runtime(s) to test; repeat for several (default: onnxruntime). Known: "
                         f"{', '.join(runtimes.names())}; NAME+FAULT wraps one with an injected fault "
                         f"(e.g. onnxruntime+shift; see harness/runtimes/faults.py)")
    group.addoption("--allow-unavailable-runtime", action="append", default=None, metavar="NAME",
                    help="run even though --runtime NAME cannot be used here (not installed, not configured): its "
                         "items are skipped, each saying why. Without it an unavailable runtime is a usage error, "
                         "since a night that silently skips a runtime has lost its coverage")
    group.addoption("--update-golden", nargs="?", const="failing", default=None, choices=("failing", "all"),
                    help="rewrite golden sets that fail or are missing (those items still fail); =all rewrites every set")
    group.addoption("--strict-data", action="store_true",
                    help="a data problem (unreadable, truncated, unpaired, resized or non-binary mask) fails the check")
    group.addoption("--eval-limit", type=int, default=None,
                    help="images per real dataset for accuracy (default from ini); 0 = the full set")
    group.addoption("--full", action="store_true", help="evaluate every image of every dataset")
    group.addoption("--calibration-samples", type=int, default=None,
                    help="images for static int8 calibration (default 50, like the VACC compiler's sampler)")
    group.addoption("--confidence", type=float, default=None, help="bootstrap interval level (default from ini: 0.95)")
    group.addoption("--bootstrap-resamples", type=int, default=None, help="bootstrap resamples (default from ini: 1000)")
    group.addoption("--localise-builds", type=int, default=8,
                    help="builds fault localisation may spend on a failing fp16/int8 item (0: do not localise)")
    group.addoption("--latency-rounds", type=int, default=15, help="interleaved rounds per latency ratio gate")
    group.addoption("--ort-providers", default="cpu",
                    help="ONNX Runtime execution providers in order, comma-separated: tensorrt, cuda, openvino, dml, cpu")
    group.addoption("--ort-optimization", default="all", choices=("disable", "basic", "extended", "all"),
                    help="ONNX Runtime graph optimisation level of the deployed sessions")
    group.addoption("--vacc-models", type=Path, default=None, help="folder of vamc-compiled models for --runtime vacc")
    group.addoption("--vacc-device", default="0",
                    help="VACC device id, or 'auto': the pytest-xdist worker's index (one card per worker)")
    group.addoption("--vamp-outputs", type=Path, default=None, help="folder of vamp npz outputs for --runtime vamp")
    group.addoption("--int8-scheme", default="case", choices=INT8_SCHEME_CHOICES,
                    help="static int8 builds: each case's scheme (default), or ONNX Runtime's remedy for CPUs whose "
                         "U8S8 kernels saturate: 7-bit weights (reduce_range) or u8 weights (u8u8)")
    group.addoption("--threads", type=int, default=None, help="intra-op threads for CPU runtimes (default: all cores)")
    group.addoption("--isolation", default="process", choices=("process", "none"),
                    help="process (default): each item's session in a worker process, every call bounded, a crash "
                         "fails the item only; none: in pytest's own process, each call under a watchdog that ends "
                         f"the run (exit status {isolation.HUNG_EXIT}) past its bound (see harness/isolation.py)")
    group.addoption("--load-timeout", type=float, default=None, metavar="SECONDS",
                    help="bound of loading (compiling) an item's session, seconds (default: the case's "
                         f"load_timeout_s, else {isolation.LOAD_S:g} s); a load that fails is tried once per item")
    group.addoption("--first-call-timeout", type=float, default=None, metavar="SECONDS",
                    help="bound of a session's first call (warm-up), seconds (default: the case's "
                         f"first_call_timeout_s, else {isolation.FIRST_CALL_S:g} s)")
    group.addoption("--item-timeout", type=float, default=None, metavar="SECONDS",
                    help="bound of every later runtime call, seconds (default: the case's timeout_s, else "
                         f"{isolation.TIMEOUT_FACTOR:g}x the session's fastest call after the first, at least "
                         f"{isolation.TIMEOUT_FLOOR_S:g} s)")
    group.addoption("--retries", type=int, default=0, metavar="N",
                    help="make a runtime call killed by a timeout or a crash again in a new worker process and "
                         "session, up to N times (default 0; --isolation process only); each retried attempt is noted "
                         "on the item's rows")
    group.addoption("--build-timeout", type=float, default=isolation.BUILD_S, metavar="SECONDS",
                    help="bound of one artifact build (export, conversion, calibration), seconds; past it the run "
                         f"ends naming the artifact (default {isolation.BUILD_S:g})")
    group.addoption("--resume", action="store_true",
                    help="continue the last incomplete run of the same code (commit and uncommitted changes), case "
                         "files, golden masks, data root, machine and verdict-changing options: skip the checks that "
                         "finished, rerun the rest, complete the same run record; a run that differs is named, with "
                         "what differs, and a new run starts")
    parser.addini("segconform_cases", "folder of case files, relative to the rootdir", default="cases")
    parser.addini("segconform_golden", "folder of golden masks, relative to the rootdir", default="golden")
    parser.addini("segconform_reports", "folder of reports, relative to the rootdir", default="reports")
    parser.addini("segconform_eval_limit", "default --eval-limit", default="100")
    parser.addini("segconform_calibration_samples", "default --calibration-samples", default="50")
    parser.addini("segconform_confidence", "default --confidence", default="0.95")
    parser.addini("segconform_bootstrap_resamples", "default --bootstrap-resamples", default="1000")


def _folder(config: pytest.Config, option: str, ini: str) -> Path:
    """A folder option: as given on the command line (relative to where pytest was started), else the ini value
    relative to the ini file's folder (the rootdir), or to where pytest was started when there is no ini file.

    Not ``config.rootpath`` itself: pytest works the rootdir out before plugins add their options, so the value
    of ``--weights-dir /elsewhere`` (without ``=``) counts as a path there and can move the rootdir above the
    repository.
    """
    given = config.getoption(option)
    if given is not None:
        return given if given.is_absolute() else config.invocation_params.dir / given
    base = config.inipath.parent if config.inipath is not None else config.invocation_params.dir
    path = Path(config.getini(ini))
    return path if path.is_absolute() else base / path


def worker_index() -> int:
    """This pytest-xdist worker's index (``gw3`` -> 3), 0 outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def _settings(config: pytest.Config, cases_dir: Path) -> Settings:
    option = config.option
    if option.full:
        eval_limit = None
    else:
        limit = option.eval_limit if option.eval_limit is not None else int(config.getini("segconform_eval_limit"))
        eval_limit = None if limit == 0 else limit
    data_root = option.data_root or _env_path("SEGCONFORM_DATA_ROOT")
    if data_root is not None and not data_root.is_dir():
        raise pytest.UsageError(f"--data-root {data_root}: not a folder")
    device = option.vacc_device
    if device != "auto" and not device.isdigit():
        raise pytest.UsageError(f"--vacc-device {device!r}: a device id or 'auto'")
    for name in ("load_timeout", "first_call_timeout", "item_timeout", "build_timeout"):
        value = getattr(option, name)
        if value is not None and not value > 0:
            raise pytest.UsageError(f"--{name.replace('_', '-')} {value}: a number of seconds above 0")
    if option.retries < 0:
        raise pytest.UsageError(f"--retries {option.retries}: a number of retries, 0 or more")
    confidence = option.confidence or float(config.getini("segconform_confidence"))
    if not 0 < confidence < 1:
        raise pytest.UsageError(f"--confidence {confidence}: a level between 0 and 1, e.g. 0.95")
    return Settings(
        data_root=data_root,
        weights_dir=option.weights_dir or _env_path("SEGCONFORM_WEIGHTS_DIR"),
        cache_dir=option.cache_dir or default_cache_dir(),
        golden_dir=_folder(config, "golden_dir", "segconform_golden"),
        report_dir=_folder(config, "report_dir", "segconform_reports"),
        eval_limit=eval_limit,
        calibration_samples=option.calibration_samples or int(config.getini("segconform_calibration_samples")),
        localise_builds=option.localise_builds,
        update_golden=option.update_golden,
        strict_data=option.strict_data,
        bootstrap=Bootstrap(confidence, option.bootstrap_resamples or int(config.getini("segconform_bootstrap_resamples"))),
        latency_rounds=option.latency_rounds,
        int8_scheme=option.int8_scheme,
        runtime_config=RuntimeConfig(
            threads=option.threads,
            ort_providers=tuple(p.strip() for p in option.ort_providers.split(",") if p.strip()),
            ort_optimization=option.ort_optimization,
            vacc_device=worker_index() if device == "auto" else int(device),
            vacc_models=option.vacc_models,
            vamp_outputs=option.vamp_outputs,
        ),
        isolation=Isolation(option.isolation == "process", option.item_timeout, option.load_timeout,
                            option.first_call_timeout, option.retries, option.build_timeout,
                            watchdog=option.isolation == "none", on_hang=functools.partial(_end_run, config)),
    )


def _end_run(config: pytest.Config, message: str) -> None:
    """The watchdog's action past a bound in pytest's own process (``--isolation none``, a build): the terminal shows
    the message (capture suspended), the run journal gets an ``ended`` line saying why and the summary is rewritten
    as an incomplete run's; then the process ends (:func:`harness.run.isolation.end_run`). Runs in the watchdog's thread
    while the main thread is stuck."""
    try:
        capture = config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)
        journal = config.pluginmanager.get_plugin(JOURNAL)
        if journal is not None and journal.journal is not None:
            journal.journal.append({"kind": "ended", "reason": message,
                                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            journal.write_summary(complete=False)
    finally:
        isolation.end_run(message)


def pytest_configure(config: pytest.Config) -> None:
    cases_dir = _folder(config, "cases_dir", "segconform_cases")
    if not cases_dir.is_dir() or not any(cases_dir.glob("*.yaml")):
        config.stash[STATE] = None
        if config.getoption("cases_dir") is not None:
            raise pytest.UsageError(f"--cases-dir {cases_dir}: no case files (*.yaml) there")
        return
    try:
        families = {path.resolve(): family for path, family in
                    zip(sorted(cases_dir.glob("*.yaml")), load_all(cases_dir))}
    except CaseError as error:
        raise pytest.UsageError(str(error)) from None
    names = {f.family for f in families.values()} | {m.name for f in families.values() for m in f.models}
    chosen = set(config.option.runtime or [])
    for name in sorted(names | set(PRECISIONS) | set(CALIBRATIONS) | set(runtimes.names()) | chosen):
        config.addinivalue_line("markers", f"{name}: segconform items of {name}")
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist keeps a group's items in one worker")
    try:
        settings = _settings(config, cases_dir)
    except ValueError as error:  # e.g. an unknown --ort-providers name
        raise pytest.UsageError(str(error)) from None
    from datetime import datetime, timezone

    chosen_runtimes = config.option.runtime or ["onnxruntime"]
    _refuse_unavailable(chosen_runtimes, set(config.option.allow_unavailable_runtime or []), settings)
    state = State(cases_dir.resolve(), families, chosen_runtimes, Suite(settings),
                  Recorder(settings.report_dir), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    config.pluginmanager.register(JournalPlugin(config, state), JOURNAL)
    config.stash[STATE] = state


def _refuse_unavailable(chosen: list[str], allowed: set[str], settings: Settings) -> None:
    """A requested runtime that cannot be used here ends the run before it starts, naming it and why, unless the user
    opted out for it (``--allow-unavailable-runtime NAME``): every item of it skipped is coverage lost."""
    unknown = allowed - set(chosen)
    if unknown:
        raise pytest.UsageError(f"--allow-unavailable-runtime {', '.join(sorted(unknown))}: not a --runtime of this "
                                f"run ({', '.join(chosen)})")
    for name in chosen:
        reason = runtimes.get(name, settings.runtime_config).unavailable
        if reason and name not in allowed:
            raise pytest.UsageError(f"--runtime {name} is unavailable here: {reason}. Its items would all be skipped; "
                                    f"pass --allow-unavailable-runtime {name} to run without it on purpose")


class CaseFile(pytest.Module):
    """A case file collected as a test module whose tests are the checks of :mod:`harness.checks`."""

    def _getobj(self) -> Any:
        return importlib.import_module("harness.checks")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = state_of(parent.config)
    if state is not None and file_path.suffix == ".yaml" and file_path.resolve() in state.families:
        return CaseFile.from_parent(parent, path=file_path)
    return None


def _marks(item: Item) -> list[pytest.MarkDecorator]:
    """Selection marks only: no item is an expected failure (a documented collapse is judged by its stated loss).
    """
    names = [item.family.family, item.model.name, item.variant.precision, item.runtime]
    if item.variant.calibration:
        names.append(item.variant.calibration)
    marks = [getattr(pytest.mark, name) for name in dict.fromkeys(names)]
    marks.append(pytest.mark.xdist_group(item.model.name))
    return marks


def _gated(item: Item, check: str) -> bool:
    """Whether ``check`` applies to ``item``: the ratio gates only where the case declares a bound."""
    performance = item.family.performance_of(item.model)
    if check == "test_speedup":
        return item.variant.precision in performance.min_speedup_vs_fp32
    if check == "test_pipeline_overhead":
        return performance.max_pipeline_overhead is not None
    if check == "test_deployment":  # only static int8 has an exact-arithmetic build verdict beside the deployed one
        return item.variant.precision == "int8"
    return True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    module = metafunc.definition.parent
    if state is None or not isinstance(module, CaseFile):
        return
    family = state.families[module.path.resolve()]
    items = expand([family], state.runtimes)
    check = metafunc.function.__name__
    if "item" in metafunc.fixturenames:
        params = [pytest.param(i, id=i.id, marks=_marks(i)) for i in items if _gated(i, check)]
        if not params:  # no item of this file has the bound the check gates on: say so instead of NOTSET
            why = f"{module.path.name} declares no performance bound for {check.removeprefix('test_')}"
            params = [pytest.param(None, id="not-declared", marks=pytest.mark.skip(reason=why))]
        metafunc.parametrize("item", params)
    elif "case_model" in metafunc.fixturenames:
        models = [m for m in family.models if m.architecture]
        metafunc.parametrize("case_model", [
            pytest.param(m, id=m.name, marks=[getattr(pytest.mark, family.family), getattr(pytest.mark, m.name),
                                              pytest.mark.xdist_group(m.name)])
            for m in models])


def _state_or_skip(config: pytest.Config) -> State:
    state = state_of(config)
    if state is None:
        pytest.skip("no segconform case files in this run")
    return state


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> Suite:
    return _state_or_skip(pytestconfig).suite


@pytest.fixture(scope="session")
def recorder(pytestconfig: pytest.Config) -> Recorder:
    return _state_or_skip(pytestconfig).recorder


def _junit_family(config: pytest.Config) -> str | None:
    """The JUnit family of this run's ``--junitxml`` file, None without one."""
    return config.getini("junit_family") if getattr(config.option, "xmlpath", None) else None


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Any:
    """A check's headline figures as JUnit properties of its test case (pytest's ``record_property`` without its
    warning). Per-test properties exist in junit_family xunit1 (this repository's pytest.ini); xunit2's schema has
    none, so there they are left out (summary.json has them), which the header says once."""
    if _junit_family(request.config) not in (None, "xunit1", "legacy"):
        return lambda name, value: None
    return lambda name, value: request.node.user_properties.append((name, value))


def pytest_report_header(config: pytest.Config) -> list[str]:
    family = _junit_family(config)
    if state_of(config) is None or family in (None, "xunit1", "legacy"):
        return []
    return [f"segconform: --junitxml in junit_family {family} has no per-test properties: the checks' figures are "
            "left out of it (they are in summary.json); set junit_family = xunit1 to have them there"]


@pytest.fixture
def runnable(item: Item, suite: Suite) -> Item:
    """The item, or a skip that says exactly why it cannot run here."""
    reason = suite.sessions.unavailable(item)
    if reason:
        pytest.skip(reason)
    try:
        suite.sessions.session(item)
    except RuntimeUnavailable as error:  # e.g. no compiled VACC model or vamp outputs for this item
        pytest.skip(str(error))
    return item


def case_item_of(node: pytest.Item) -> Item | None:
    """The case item a collected check runs on, or None for a node that is not a case file's check."""
    callspec = getattr(node, "callspec", None)
    case_item = callspec.params.get("item") if callspec else None
    return case_item if isinstance(case_item, Item) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    state = state_of(item.config)
    case_item = case_item_of(item)
    if state is not None and case_item is not None and (report.when == "call" or report.outcome != "passed"):
        outcome = report.outcome
        if hasattr(report, "wasxfail"):  # a user's own xfail mark (segconform marks none): say whether it happened
            outcome = "xpass" if report.passed else "xfail"
        check = item.originalname.removeprefix("test_")
        state.recorder.outcome(case_item.id, check, outcome)
        error = call.excinfo.value if call.excinfo is not None and report.failed else None
        if isinstance(error, RuntimeFault):
            _noted(state, case_item, f"{check}: {error.kind}: {error.reason}")
            benchmark = getattr(item, "funcargs", {}).get("benchmark")
            if benchmark is not None:  # it never timed anything: its "fixture was not used" warning would be noise
                benchmark.skipped = True
            report.longrepr = f"{call.excinfo.typename}: {error}"  # the reason; a traceback adds nothing
        elif error is not None and not any(row.item == case_item.id for row in state.recorder.rows.values()):
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            _noted(state, case_item, f"{check}: {call.excinfo.typename}: {first}")
    if state is not None and case_item is not None:
        for text in state.suite.sessions.attempts(case_item):  # --retries: a flaky device shows on its rows
            _noted(state, case_item, text)
    return report


def _noted(state: State, item: Item, text: str) -> None:
    """A check that failed before it recorded anything (a runtime that hung, crashed or raised): the item's rows
    say why, so the report and the run record hold a row for every item."""
    for dataset in state.suite.catalogue.for_model(item.model):
        state.recorder.note(item, dataset.name, text)


# --------------------------------------------------------------------------- end of session: report and record


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: take over a finished worker's report rows."""
    state = state_of(node.config)
    exported = getattr(node, "workeroutput", {}).get("segconform")
    if state is not None and exported:
        state.recorder.merge(exported)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = state_of(session.config)
    if state is None:
        return
    state.suite.close()
    state.recorder.work.extend(state.suite.store.timings)
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes the report
        session.config.workeroutput["segconform"] = state.recorder.export()  # type: ignore[attr-defined]
        return
    written = session.config.pluginmanager.get_plugin(JOURNAL).finish(exitstatus)
    if not written:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"segconform: report written to {', '.join(str(p) for p in written)}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line per dataset: how many of its images were scored, and its data problems."""
    state = state_of(config)
    if state is None or hasattr(config, "workerinput"):
        return
    by_dataset: dict[str, dict[str, Any]] = {}
    for row in state.recorder.rows.values():
        if not row.data:
            continue
        entry = by_dataset.setdefault(row.dataset, {"scored": 0, "files": row.data.get("files", 0), "problems": {}})
        if row.metrics:
            entry["scored"] = max(entry["scored"], row.images)
        for kind, count in row.data.get("problems", {}).items():
            entry["problems"][kind] = max(entry["problems"].get(kind, 0), count)
    for name, entry in sorted(by_dataset.items()):
        problems = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in sorted(entry["problems"].items()))
        unscored = " (no accuracy item scored it: seeded weights or not selected)" if not entry["scored"] else ""
        terminalreporter.write_line(f"segconform: {name}: {entry['scored']} of {entry['files']} images scored for accuracy"
                                    + unscored + (f"; data problems: {problems}" if problems else ""))
    deployed = {row.item: row.deployment for row in state.recorder.rows.values() if row.deployment}
    for item_id, verdict in sorted(deployed.items()):
        kernels = "saturating" if verdict.get("saturating_u8s8") else "non-saturating"
        outcome = state.recorder.outcomes.get(item_id, {}).get("deployment", "not run")
        terminalreporter.write_line(f"segconform: {item_id} as deployed on this CPU ({verdict.get('int8_path')}, "
                                    f"{kernels} U8S8 kernels, {verdict.get('scheme')}): {outcome}")


# --------------------------------------------------------------------------- pytest-xdist: one model, one worker


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """For ``--dist loadgroup``: schedule by model (segconform items), by ``@group`` suffix or test (the rest)."""
    state = state_of(config)
    if state is None or config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    models = {m.name for family in state.families.values() for m in family.models}

    class ModelScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):  # an xdist_group suffix, where pytest still allows it
                return nodeid.rsplit("@", 1)[-1]
            if nodeid.endswith("]") and "[" in nodeid:
                model = nodeid[nodeid.index("[") + 1:-1].split("-", 1)[0]
                if model in models:
                    return f"segconform model {model}"
            return nodeid

    return ModelScheduling(config, log)


# --------------------------------------------------------------------------- pytest-benchmark: baselines per machine


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from ..machine import fingerprint

    machine_info["segconform"] = fingerprint().as_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any,
                                          machine_info: dict[str, Any], compared_benchmark: dict[str, Any]) -> None:
    """Refuse to compare latencies with a baseline saved on another machine: the figures would not mean anything."""
    from ..machine import fingerprint

    theirs = compared_benchmark.get("machine_info", {}).get("segconform")
    if theirs is None:
        raise pytest.UsageError("--benchmark-compare: the baseline carries no segconform machine fingerprint "
                                "(saved by another tool); save a baseline on this machine with --benchmark-autosave")
    differences = fingerprint().differences(theirs)
    if differences:
        raise pytest.UsageError("--benchmark-compare: the baseline was saved on another machine, its latencies do "
                                f"not compare with this one's ({'; '.join(differences)})")
