"""What the plugin reports as checks finish: each outcome onto the item's rows, runtime faults as their reason,
xdist workers' rows to the controller, the end-of-run lines, and the per-model xdist scheduler and per-machine
benchmark baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..build.networks import BuildError
from ..build.weights import WeightsUnavailable
from ..data.cases import Item
from ..data.names import UnsafePath
from ..items.state import State, state_of
from ..judge.perf import ROUND_BUDGET_S
from ..judge.sustained import STRETCH
from ..run.bounds import RuntimeFault
from .collection import case_item_of

#: Errors whose message names the file a user gave and what is wrong with it: shown as that message, since a
#: traceback through the harness adds nothing a user can act on.
FILE_ERRORS = (WeightsUnavailable, BuildError, UnsafePath)


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
            noted(state, case_item, f"{check}: {error.kind}: {error.reason}")
            benchmark = getattr(item, "funcargs", {}).get("benchmark")
            if benchmark is not None:  # it never timed anything: its "fixture was not used" warning would be noise
                benchmark.skipped = True
            report.longrepr = f"{call.excinfo.typename}: {error}"  # the reason; a traceback adds nothing
        elif error is not None and not any(row.item == case_item.id for row in state.recorder.rows.values()):
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            noted(state, case_item, f"{check}: {call.excinfo.typename}: {first}")
        if isinstance(error, FILE_ERRORS):  # a file given to the harness cannot be used: its message names it
            report.longrepr = f"{call.excinfo.typename}: {error}"
    if state is not None and case_item is not None:
        for text in state.suite.sessions.attempts(case_item):  # --retries: a flaky device shows on its rows
            noted(state, case_item, text)
    return report


def noted(state: State, item: Item, text: str) -> None:
    """A check that failed before it recorded anything (a runtime that hung, crashed or raised): the item's rows
    say why, so the report and the run record hold a row for every item."""
    for dataset in state.suite.catalogue.for_model(item.model):
        state.recorder.note(item, dataset.name, text)


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: take over a finished worker's report rows."""
    state = state_of(node.config)
    exported = getattr(node, "workeroutput", {}).get("segconform")
    if state is not None and exported:
        state.recorder.merge(exported)


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
        terminalreporter.write_line(f"segconform: {name}: {entry['scored']} of {entry['files']} images scored "
                                    "for accuracy"
                                    + unscored + (f"; data problems: {problems}" if problems else ""))
    deployed = {row.item: row.deployment for row in state.recorder.rows.values() if row.deployment}
    for item_id, verdict in sorted(deployed.items()):
        kernels = "saturating" if verdict.get("saturating_u8s8") else "non-saturating"
        outcome = state.recorder.outcomes.get(item_id, {}).get("deployment", "not run")
        terminalreporter.write_line(f"segconform: {item_id} as deployed on this CPU ({verdict.get('int8_path')}, "
                                    f"{kernels} U8S8 kernels, {verdict.get('scheme')}): {outcome}")


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``--benchmark-only`` (the performance gate), say up front how many checks will be timed and about how
    long that takes: from each check's duration stored by pytest-split (``--store-durations``, the file of
    ``--durations-path``) where there is one, else from the benchmark's time budget (``--benchmark-max-time``)."""
    config = session.config
    state = state_of(config)
    if state is None or not getattr(config.option, "benchmark_only", False) or hasattr(config, "workerinput"):
        return
    timed = [item for item in session.items if case_item_of(item) is not None and "benchmark" in item.fixturenames]
    stored = _stored_durations(config)
    known = [stored[item.nodeid] for item in timed if item.nodeid in stored]
    unknown = [item for item in timed if item.nodeid not in stored]
    # Without stored durations, each check's own budget: a latency benchmark's --benchmark-max-time, a ratio gate's
    # rounds (up to ROUND_BUDGET_S); measured on the real models' gate (39 checks), 254 s of budgets for 283 s run.
    # A sustained check's is its stated time (--sustain-seconds, else its case's), whether or not durations are stored.
    budget = float(getattr(config.option, "benchmark_max_time", 1.0) or 1.0)
    sustained = [item for item in timed if item.name.split("[")[0] == SUSTAINED]
    sustained_s = sum(_sustain_seconds(state, item) for item in sustained)
    unknown = [item for item in unknown if item not in sustained]
    known = [stored[item.nodeid] for item in timed if item.nodeid in stored and item not in sustained]
    gates = sum(1 for item in unknown if item.name.split("[")[0] in RATIO_GATES)
    seconds = sum(known) + budget * (len(unknown) - gates) + ROUND_BUDGET_S * gates + sustained_s
    default = f"{budget:g} s a latency benchmark (--benchmark-max-time), {ROUND_BUDGET_S:g} s a ratio gate"
    source = (f"stored durations of {len(known)}" + (f"; for the other {len(unknown)}: {default}" if unknown else "")
              if known else f"{default}; store durations with --store-durations")
    if sustained:
        source += (f"; {len(sustained)} sustained checks {sustained_s:.0f} s, each its stated time (up to "
                   f"{STRETCH:g}x where its gates need more calls)")
    items = len({case_item_of(item).id for item in timed})  # type: ignore[union-attr]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"segconform: --benchmark-only: {len(timed)} timed checks of {items} items, about "
                            f"{seconds:.0f} s ({source})")


#: The check that runs each item's session for a stated time (:mod:`harness.checks.sustained`).
SUSTAINED = "test_sustained"


def _sustain_seconds(state: State, node: pytest.Item) -> float:
    """A sustained check's stated time: ``--sustain-seconds`` (or the ini's), else its case's."""
    item = case_item_of(node)
    bounds = item.family.sustained_of(item.model, item.variant) if item is not None else None
    return state.suite.settings.sustain_seconds or (bounds.seconds if bounds is not None else 0.0)


#: The checks that time two sides interleaved, each within :data:`ROUND_BUDGET_S` of recorded rounds.
RATIO_GATES = ("test_speedup", "test_pipeline_overhead")


def _stored_durations(config: pytest.Config) -> dict[str, float]:
    path = getattr(config.option, "durations_path", None)
    if not path:
        return {}
    try:
        durations = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in (durations.items() if isinstance(durations, dict) else durations)}
