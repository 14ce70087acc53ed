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

from datetime import datetime, timezone
from typing import Any

import pytest

from .. import runtimes
from ..data.case_base import CALIBRATIONS, PRECISIONS, CaseError
from ..data.cases import Item, load_all
from ..items.handle import ItemHandle
from ..items.state import STATE, State, state_of
from ..items.suite import Suite
from ..record.report import Recorder
from ..runtimes import RuntimeUnavailable
from .collection import pytest_collect_file, pytest_generate_tests
from .journaling import JOURNAL, JournalPlugin
from .options import folder, pytest_addoption, refuse_unavailable, settings_from
from .reporting import (
    pytest_benchmark_compare_machine_info,
    pytest_benchmark_update_machine_info,
    pytest_collection_finish,
    pytest_runtest_makereport,
    pytest_terminal_summary,
    pytest_testnodedown,
    pytest_xdist_make_scheduler,
)
from .sharding import SHARD_NAME, Sharding

#: The hooks defined beside their job (options, collection, reporting), registered through this module.
__all__ = ["pytest_addoption", "pytest_benchmark_compare_machine_info", "pytest_benchmark_update_machine_info",
           "pytest_collect_file", "pytest_collection_finish", "pytest_configure", "pytest_generate_tests",
           "pytest_report_header",
           "pytest_runtest_makereport", "pytest_sessionfinish", "pytest_terminal_summary", "pytest_testnodedown",
           "pytest_xdist_make_scheduler"]


# tryfirst: the sharding plugin registered here must be registered before pytest-split's (its pytest_configure):
# trylast hooks run in the order their plugins were registered, and the selection is ordered before it is split.
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    cases_dir = folder(config, "cases_dir", "segconform_cases")
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
        settings = settings_from(config, cases_dir)
    except ValueError as error:  # e.g. an unknown --ort-providers name
        raise pytest.UsageError(str(error)) from None
    chosen_runtimes = config.option.runtime or ["onnxruntime"]
    refuse_unavailable(chosen_runtimes, set(config.option.allow_unavailable_runtime or []), settings)
    state = State(cases_dir.resolve(), families, chosen_runtimes, Suite(settings),
                  Recorder(settings.report_dir), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    config.pluginmanager.register(JournalPlugin(config, state), JOURNAL)
    config.pluginmanager.register(Sharding(config), SHARD_NAME)
    config.stash[STATE] = state


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
def handle(item: Item, suite: Suite) -> ItemHandle:
    """The item resolved for its checks (its session loaded, once per session), or a skip that says exactly why it
    cannot run here. Weights that cannot be had are the check's error, naming the model, the source and the reason
    (a skip only with ``--allow-unavailable-weights``). A load that fails otherwise is the check's error (every later
    check of the item gets it too)."""
    reason = suite.sessions.unavailable(item)
    if reason:
        pytest.skip(reason)
    missing = suite.sessions.weights_missing(item)
    if missing and suite.settings.allow_unavailable_weights:
        pytest.skip(f"weights unavailable (--allow-unavailable-weights): {missing}")
    if missing:
        pytest.fail(f"weights unavailable: {missing}; pass --allow-unavailable-weights to skip such a model's checks "
                    "on purpose", pytrace=False)
    try:
        return suite.handle(item)
    except RuntimeUnavailable as error:  # e.g. no compiled VACC model or vamp outputs for this item
        pytest.skip(str(error))


# --------------------------------------------------------------------------- end of session: report and record


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


# --------------------------------------------------------------------------- pytest-xdist: one model, one worker


# --------------------------------------------------------------------------- pytest-benchmark: baselines per machine


