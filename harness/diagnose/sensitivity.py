"""``python -m harness sensitivity MODEL``: which check catches which injected fault, and does any slip through.

One pytest session runs the item (a model at one precision) on the healthy runtime, on the control
(``RUNTIME+identity``) and on ``RUNTIME+FAULT`` for every fault of :mod:`harness.runtimes.faults`, through the
normal checks (conformance, regression, accuracy, structure and, for static int8, the deployment verdict and the
speed-up gate). Each fault's *effect* is measured against the healthy item on the same images: paired deltas of
MAE / avg F / S with their intervals and the per-image MAE between the two maps. Then, per fault:

* **caught**: some check fails on it that passes on the control;
* **missed**: no check failed on it. The row shows the fault's measured effect and whether it *exceeds* what the
  checks allow: the seed's documented loss for the precision plus the case's tolerance, on any of the documented
  metrics; for a documented collapse, what is left of its stated range (``expected_loss``) beyond the healthy
  collapse's own loss; for seeded weights, the conformance budget's mean MAE. The one-pixel shift and the
  half-resolution output always exceed on a healthy item: they are the structural faults quantisation noise hides
  from every metric budget. A miss within the allowance is listed too, so a reader sees what the suite cannot catch;
* on the control (``identity``): **control passes**, or **false alarm** when it fails a check.

A documented collapse is judged by its stated bounds like any item (no check is an expected failure), so a fault
on it is caught or missed like anywhere else. A miss that exceeds the allowance, or a false alarm, makes the command
exit 1. The table goes to the terminal and, with one JSON row per fault, to ``sensitivity.md`` /
``sensitivity.json`` in the run's report folder (whose ``summary.json`` also gets the rows, under ``sensitivity``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..data import datasets as ds
from ..data.case_base import LOWER_IS_BETTER
from ..data.cases import Item, Variant
from ..items.handle import ItemHandle
from ..items.suite import Suite
from ..judge.judgement import Comparison, allowed_worsening, conformance_budget
from ..judge.paired import documented_delta, judge_paired
from ..record.report import atomic_write
from ..run.pipeline import OutputError, RunResult
from ..runtimes.faults import FAULTS, INT8_PRECISIONS, SEPARATOR, SLOW_SHARE, SUSTAINED_FAULTS, Fault

#: Checks whose verdicts the table shows (latency and pipeline overhead time a wrapper, not a model). The sustained
#: check shows as its gates (``sustained:tail``, ...), each a verdict of its own.
CHECKS = ("conformance", "regression", "accuracy", "structure", "deployment", "speedup", "sustained")
#: Paired metrics shown as the effect of a fault.
EFFECT_METRICS = ("mae", "avg_f", "sm")
#: Faults that must be caught whatever their metric effect (see the module docstring).
STRUCTURAL = ("shift", "half_res")
#: Outcomes of a check that failed (no segconform check is an expected failure, so there is no xfail to read).
FAILING = ("failed", "error")


@dataclass
class FaultRow:
    """One fault's effect and the checks that caught it."""

    fault: str
    models: str
    dataset: str = ""
    images: int = 0
    deltas: dict[str, dict[str, float]] = field(default_factory=dict)
    mae_vs_healthy: dict[str, float] = field(default_factory=dict)
    effect: str = ""
    exceeds: bool = False
    outcomes: dict[str, str] = field(default_factory=dict)
    caught_by: list[str] = field(default_factory=list)
    verdict: str = ""


class _Collector:
    """A pytest plugin object that takes the items' outcomes and effects before the session closes its runtimes."""

    def __init__(self, base: Item, runtimes: list[str], dataset: str | None) -> None:
        self.base, self.runtimes, self.dataset = base, runtimes, dataset
        self.rows: list[FaultRow] = []
        self.summary_path: Path | None = None
        self.rejected: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Remember items whose outputs the run path rejected (zero / NaN): running them again afterwards would
        count the fault's calls differently, so the checks' own runs are the evidence."""
        if report.failed and "OutputError" in report.longreprtext and "[" in report.nodeid:
            item_id = report.nodeid[report.nodeid.index("[") + 1:report.nodeid.rindex("]")]
            lines = [line for line in report.longreprtext.splitlines() if "OutputError: " in line]
            self.rejected.setdefault(item_id, lines[-1].split("OutputError: ", 1)[-1].strip() if lines else "")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from ..items.state import STATE

        state = session.config.stash.get(STATE, None)
        if state is None:
            return
        self.summary_path = state.recorder.report_dir / "summary.json"
        suite, outcomes = state.suite, state.recorder.outcomes
        healthy = _item_on(self.base, self.base.runtime)
        datasets = suite.catalogue.for_model(healthy.model)
        chosen = [d for d in datasets if d.name == self.dataset] if self.dataset else \
            [d for d in datasets if d.name != ds.SYNTHETIC] or datasets
        if not chosen:
            raise pytest.UsageError(f"sensitivity: no dataset {self.dataset!r} for {healthy.model.name}; "
                                    f"available: {', '.join(d.name for d in datasets)}")
        dataset = chosen[0]
        control_outcomes = outcomes.get(_item_on(self.base, _with_fault(self.base.runtime, "identity")).id, {})
        for name in self.runtimes:
            fault = name.split(SEPARATOR, 1)[1]
            item = _item_on(self.base, name)
            row = FaultRow(fault, _fault(fault).models, dataset.name,
                           outcomes={c: outcomes.get(item.id, {}).get(c, "not run") for c in CHECKS})
            _measure(suite, item, healthy, dataset, row, self.rejected.get(item.id))
            _settle(row, control_outcomes, state.recorder, healthy, item)
            self.rows.append(row)


def _fault(name: str) -> Fault:
    return FAULTS.get(name) or SUSTAINED_FAULTS[name]


def _item_on(base: Item, runtime: str) -> Item:
    return Item(base.family, base.model, base.variant, runtime)


def _with_fault(runtime: str, fault: str) -> str:
    return f"{runtime}{SEPARATOR}{fault}"


def _measure(suite: Suite, item: Item, healthy: Item, dataset: ds.Dataset, row: FaultRow,
             rejected: str | None) -> None:
    """The fault's effect against the healthy item on the same images of ``dataset``; ``rejected``: why the run
    path refused one of its outputs during the checks (zero / NaN), which is an effect of any size."""
    if rejected is not None:
        row.effect, row.exceeds = f"output rejected: {rejected}", True
        return
    if row.fault in SUSTAINED_FAULTS:  # its effect is what the sustained run measured (_sustained_effect)
        return
    # A deployed-only fault changes what this CPU's deployed session computes: its effect is measured there.
    deployed = _fault(row.fault).deployed_only

    def run(handle: ItemHandle) -> RunResult:
        return handle.run_deployed(dataset) if deployed else handle.run(dataset)

    try:
        faulty = suite.handle(item)
        faulty_maps = run(faulty).maps
    except OutputError as error:
        row.effect, row.exceeds = f"output rejected: {error}", True
        return
    sound = suite.handle(healthy)
    healthy_maps = run(sound).maps
    budget = conformance_budget(item, "fp32", faulty.trained)
    stats = Comparison.of(faulty_maps, healthy_maps, budget).stats
    row.images = int(stats.get("images", 0))
    row.mae_vs_healthy = {"mean": stats.get("mae_mean", 0.0), "worst": stats.get("mae_worst", 0.0)}
    family = item.family
    if faulty.trained:  # any dataset with masks, the synthetic one included (no documented delta there)
        paired = judge_paired(faulty.scores(dataset, deployed), sound.scores(dataset, deployed), {},
                              family.acceptance.reproduction, {}, suite.settings.bootstrap,
                              f"sensitivity/{item.id}/{dataset.name}")
        allowances = _allowances(sound, dataset, deployed)
        for metric in EFFECT_METRICS:
            verdict = paired.deltas.get(metric)
            if verdict is None:
                continue
            allowance = allowances.get(metric)
            row.deltas[metric] = {"delta": verdict.value, "ci": list(verdict.interval), "allowance": allowance}
            if allowance is not None and abs(verdict.value) > allowance:
                row.exceeds = True
    else:  # seeded weights: metrics mean nothing; the precision's conformance budget is the allowance
        row.exceeds = row.mae_vs_healthy["mean"] > budget.mae
    if row.fault in STRUCTURAL and healthy.model.expected_loss(healthy.variant) is None:
        row.exceeds = True  # a documented collapse allows what its stated range allows, structural faults included
    row.effect = _effect_text(row)


def _allowances(sound: ItemHandle, dataset: ds.Dataset, deployed: bool) -> dict[str, float]:
    """How far a fault may move each metric before the checks must see it: the seed's documented loss plus the
    tolerance, or, for a documented collapse, what its stated range leaves beyond the healthy collapse's own loss
    against fp32 (a fault inside the stated range is, by that statement, no worse than the collapse)."""
    healthy = sound.item
    tolerance = healthy.family.acceptance.reproduction
    collapse = healthy.model.expected_loss(healthy.variant)
    if collapse is None or collapse.expected_loss is None:
        documented = documented_delta(healthy.model, healthy, dataset.name)
        return {m: allowed_worsening(m, documented.get(m, 0.0), tolerance) for m in EFFECT_METRICS if m in tolerance}
    own = judge_paired(sound.scores(dataset, deployed), sound.reference.scores(dataset), {},
                       tolerance, {}, sound.settings.bootstrap, f"sensitivity/{healthy.id}/{dataset.name}/collapse")
    allowances = {}
    for metric, (low, high) in collapse.expected_loss.vs_fp32.items():
        if metric in EFFECT_METRICS and metric in own.deltas and metric in tolerance:
            measured = own.deltas[metric].value
            room = (high - measured) if metric in LOWER_IS_BETTER else (measured - low)
            allowances[metric] = max(room, 0.0) + tolerance[metric]
    return allowances


def _effect_text(row: FaultRow) -> str:
    parts = [f"d{m} {v['delta']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for m, v in row.deltas.items()]
    parts.append(f"MAE vs healthy {row.mae_vs_healthy['mean']:.4f} (worst {row.mae_vs_healthy['worst']:.4f})")
    return "; ".join(parts)


def _settle(row: FaultRow, control: dict[str, str], recorder: Any, healthy: Item, item: Item) -> None:
    """Which checks caught the fault, and the verdict."""
    if row.fault == "slow":
        _slow_effect(row, recorder, healthy, item)
    if row.fault in SUSTAINED_FAULTS:
        _sustained_effect(row, recorder, item)
    failing = _failing(row.outcomes, recorder, item)
    if row.fault == "identity":
        row.caught_by = failing
        row.verdict = "false alarm" if failing else "control passes"
        return
    control_failing = _failing(control, recorder, _item_on(item, _with_fault(healthy.runtime, "identity")))
    row.caught_by = [c for c in failing if c not in control_failing]
    row.verdict = "caught" if row.caught_by else "missed"


def _sustained_gates(recorder: Any, item: Item) -> dict[str, dict[str, Any]]:
    measured = recorder.rows.get((item.id, ds.SYNTHETIC))
    return measured.performance.get("sustained", {}).get("gates", {}) if measured is not None else {}


def _failing(outcomes: dict[str, str], recorder: Any, item: Item) -> list[str]:
    """The checks that failed; the sustained check as the gates of it that failed (``sustained:tail``), or as
    ``sustained`` itself where it failed before judging any."""
    failing = []
    for check, outcome in outcomes.items():
        if outcome not in FAILING:
            continue
        gates = [g for g, v in _sustained_gates(recorder, item).items() if v["status"] == "failed"] \
            if check == "sustained" else []
        failing.extend(f"sustained:{g}" for g in gates) if gates else failing.append(check)
    return failing


def _sustained_effect(row: FaultRow, recorder: Any, item: Item) -> None:
    """A sustained fault's effect is what its run measured, gate by gate; it exceeds what the checks allow wherever
    its gate's figure is beyond the bound (a tail, a trend, a growth, a drift the case does not allow)."""
    gates = _sustained_gates(recorder, item)
    if not gates:
        row.effect, row.exceeds = "no sustained run (see the check's outcome)", True
        return
    parts = [f"{name} {round(gate['value'], 6) + 0.0:.3g} (bound {gate['bound']:g})" for name, gate in gates.items()
             if gate.get("value") is not None and gate.get("bound") is not None]
    row.effect = "; ".join(parts) or "; ".join(f"{name}: {gate['text']}" for name, gate in gates.items())
    row.exceeds = any(gate["value"] > gate["bound"] for gate in gates.values()
                      if gate.get("value") is not None and gate.get("bound") is not None)


def _slow_effect(row: FaultRow, recorder: Any, healthy: Item, item: Item) -> None:
    """The slow fault's effect is on latency: it matters when the healthy speed-up divided by the slow-down falls
    below the case's floor."""
    floor = item.family.performance_of(item.model).min_speedup_vs_fp32.get(item.variant.precision)
    measured = recorder.rows.get((healthy.id, ds.SYNTHETIC))
    ratio = measured.performance.get("speedup_vs_fp32", {}).get("ratio") if measured is not None else None
    if item.variant.precision not in INT8_PRECISIONS:
        row.effect, row.exceeds = "none (only the int8 path is slowed)", False
    elif floor is None or ratio is None:
        row.effect = f"latency x{1 + SLOW_SHARE:g} (no speed-up floor or no measured speed-up to judge it by)"
        row.exceeds = False
    else:
        slowed = ratio / (1.0 + SLOW_SHARE)
        row.effect = f"speed-up {ratio:.2f}x -> {slowed:.2f}x expected (floor {floor}x)"
        row.exceeds = slowed < floor


def render(base: Item, rows: list[FaultRow]) -> str:
    """The table, one line per fault."""
    lines = [f"# Fault sensitivity of {base.model.name} {base.variant.label} on {base.runtime}", "",
             "| fault | models | effect against the healthy item | exceeds | caught by | verdict |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.fault} | {row.models} | {row.effect} | {'yes' if row.exceeds else 'no'} | "
                     f"{', '.join(row.caught_by) or '-'} | {row.verdict} |")
    return "\n".join(lines) + "\n"


def run(model: str, precision: str, calibration: str | None, dataset: str | None, runtime: str, faults: list[str],
        cases: Path, report_dir: Path | None, pytest_args: list[str]) -> int:
    """Run the checks on the healthy runtime, the control and every fault; write and print the table."""
    from ..data.cases import load_all

    families = load_all(cases)
    found = [(f, m) for f in families for m in f.models if m.name == model]
    if not found:
        raise ValueError(f"no model {model!r} in {cases}")
    family, case_model = found[0]
    labels = {v.label: v for v in case_model.variants()}
    if precision == "int8" and calibration is None:
        calibration = next((v.calibration for v in case_model.variants() if v.precision == "int8"), None)
    variant = Variant(precision, calibration if precision == "int8" else None)
    if variant.label not in labels:
        raise ValueError(f"{model} has no variant {variant.label}; it has {', '.join(labels)}")
    unknown = [f for f in faults if f not in FAULTS and f not in SUSTAINED_FAULTS]
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join([*FAULTS, *SUSTAINED_FAULTS])}")
    base = Item(family, case_model, variant, runtime)
    faulty = [_with_fault(runtime, f) for f in ["identity", *[f for f in faults if f != "identity"]]]
    out = report_dir or Path("reports") / "sensitivity" / f"{model}-{variant.label}-{runtime}"
    selection = f"{model}-{variant.label}-{runtime}"
    # The speed-up gate (interleaved timing rounds, the costliest check) runs where latency is what the fault
    # changes, and on the healthy item and the control, which prove it raises no false alarm; a fault that leaves
    # the timing alone cannot make it fail, so its outcome there is "not run" instead.
    timed = [runtime, *[r for r in faulty if r.endswith("+identity") or _fault(r.split(SEPARATOR, 1)[1]).slows_int8]]
    # A sustained fault goes through the sustained check alone (no other check can see it); that check then runs on
    # the healthy item and the control too, which prove its gates raise no false alarm.
    sustained = [r for r in faulty if r.split(SEPARATOR, 1)[1] in SUSTAINED_FAULTS]
    plain = [r for r in faulty if r not in sustained]
    untimed = " or ".join(f"test_{c}[{model}-{variant.label}-{r}]" for c in CHECKS if c not in ("speedup", "sustained")
                          for r in [runtime, *plain])
    speedup = " or ".join(f"test_speedup[{model}-{variant.label}-{r}]" for r in timed)
    checks = f"{untimed} or {speedup}"
    if sustained:
        checks += " or " + " or ".join(f"test_sustained[{model}-{variant.label}-{r}]"
                                       for r in [runtime, f"{runtime}{SEPARATOR}identity", *sustained])
    # No fault localisation: rebuilding a faulty runtime's model in parts says nothing about the runtime.
    args = [str(cases), "-k", f"{selection} and ({checks})", "--runtime", runtime,
            *[a for r in faulty for a in ("--runtime", r)], "--report-dir", str(out), "-p", "no:cacheprovider",
            "--localise-builds", "0", *pytest_args]
    collector = _Collector(base, faulty, dataset)
    print(f"sensitivity: pytest {' '.join(args)}", flush=True)
    pytest.main(args, plugins=[collector])
    if not collector.rows:
        raise ValueError("sensitivity: the pytest run collected nothing to judge (see its output above)")
    table = render(base, collector.rows)
    print("\n" + table)
    payload = [asdict(r) for r in collector.rows]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "sensitivity.md", table)
    atomic_write(out / "sensitivity.json", json.dumps(payload, indent=2))
    if collector.summary_path is not None and collector.summary_path.exists():
        summary = json.loads(collector.summary_path.read_text(encoding="utf-8"))
        summary["sensitivity"] = payload
        atomic_write(collector.summary_path, json.dumps(summary, indent=2))
    bad = [r for r in collector.rows if r.verdict == "false alarm" or (r.verdict == "missed" and r.exceeds)]
    for row in (r for r in collector.rows if r.verdict in ("missed", "false alarm")):
        matters = "beyond the allowance" if row.exceeds or row.verdict == "false alarm" else "within the allowance"
        print(f"sensitivity: {row.verdict} ({matters}): {row.fault} ({row.effect})")
    print(f"sensitivity: {len(collector.rows)} runs, {sum(r.verdict == 'caught' for r in collector.rows)} caught, "
          f"{sum(r.verdict == 'missed' for r in collector.rows)} missed, {len(bad)} misses beyond the allowance or "
          f"false alarms; table in {out / 'sensitivity.md'}")
    return 1 if bad else 0
