"""Which runs the trend compares, and comparing two runs.

The newest run is compared with the previous comparable one (a row of the same item and dataset, with the same
weights, on shared images: :func:`previous_comparable`) and with the previous complete run of the same case folder
(by name, on any machine) when that is another (:func:`against_earlier`). :func:`compare` applies the per-row rules
of :mod:`harness.record.trend_rules` to every row two runs share and, between runs of one case folder, reports every
item, row and check the older run had and the newer lacks (vanished), and a change of machine or runtime as such.
Both the trend (:mod:`harness.record.trend`) and its plots' marks (:mod:`harness.record.plots`) compare through here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .trend_rules import (
    Finding,
    Trend,
    compare_accuracy,
    compare_judged_figures,
    compare_latencies,
    compare_outcomes,
    not_comparable,
    row_name,
)


def _rows(record: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["item"], r["dataset"]): r for r in record["rows"]}


def comparable(newer: dict[str, Any], older: dict[str, Any]) -> bool:
    """Two runs compare when they share a row of the same item and dataset, with the same weights and images."""
    a, b = _rows(newer), _rows(older)
    return any(not_comparable(a[k], b[k]) is None for k in a.keys() & b.keys())


def _why_not(newer: dict[str, Any], older: dict[str, Any]) -> str:
    """Why no row of two runs compares, in a few examples."""
    a, b = _rows(newer), _rows(older)
    shared = sorted(a.keys() & b.keys())
    if not shared:
        return "no row of the same item and dataset"
    reasons = [f"{row_name(a[k])}: {not_comparable(a[k], b[k])}" for k in shared]
    return "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more rows" if len(reasons) > 3 else "")


def previous_comparable(history: Sequence[dict[str, Any]], index: int) -> int | None:
    """The index of the latest run before ``history[index]`` that compares with it."""
    return next((i for i in range(index - 1, -1, -1) if comparable(history[index], history[i])), None)


def _cases_folder(record: Mapping[str, Any]) -> str:
    """The case folder a run checked, by its name: the same folder whether the checkout moved or not."""
    return Path(record["run"].get("cases_dir") or "").name


def _same_setup(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """Whether two runs checked the same case folder (by name, not absolute path), so that what the older one checked
    and the newer one lacks vanished, on whatever machine and runtime versions: an upgrade that loses an item is
    what the trend is for (the change of machine or runtime is reported beside it, :func:`_setup_changed`)."""
    return _cases_folder(newer) == _cases_folder(older)


def _setup_changed(newer: Mapping[str, Any], older: Mapping[str, Any]) -> str | None:
    """How the machine and the tools of two runs differ (its id, which hashes the CPU and ONNX Runtime's version,
    and each tool version), or None."""
    a, b = newer["run"], older["run"]
    changes = []
    if a.get("machine", {}).get("id") != b.get("machine", {}).get("id"):
        changes.append(f"machine {b.get('machine', {}).get('id')} -> {a.get('machine', {}).get('id')}")
    tools_a, tools_b = a.get("tools") or {}, b.get("tools") or {}
    changes += [f"{tool} {tools_b.get(tool)} -> {tools_a.get(tool)}" for tool in sorted(tools_a.keys() | tools_b.keys())
                if tools_a.get(tool) != tools_b.get(tool)]
    return "; ".join(changes) or None


def _previous_setup(history: Sequence[dict[str, Any]], index: int) -> int | None:
    """The index of the latest complete run before ``history[index]`` of the same case folder, on any machine, whether
    or not a row of theirs compares: an item gone from the newer run must not hide by leaving no row to compare, nor
    behind a killed run in between that never reached it, nor behind a runtime upgrade."""
    return next((i for i in range(index - 1, -1, -1)
                 if history[i]["run"].get("complete") is not False and _same_setup(history[index], history[i])), None)


def _items(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Item -> its model, the datasets of its rows and its checks' outcomes."""
    items: dict[str, dict[str, Any]] = {}
    for row in record["rows"]:
        entry = items.setdefault(row["item"], {"model": row["model"], "datasets": [], "outcomes": {}})
        entry["datasets"].append(row["dataset"])
        entry["outcomes"].update(row.get("outcomes", {}))
    return items


def _pending(record: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(item, check) of each check an incomplete run selected and did not finish: not run yet, not vanished."""
    pending = set()
    for nodeid in record.get("tests", {}).get("not_run", []):
        name = nodeid.rsplit("::", 1)[-1]
        if name.endswith("]") and "[" in name:
            check, item = name[:-1].split("[", 1)
            pending.add((item, check.removeprefix("test_")))
    return pending


def _selected_otherwise(newer: Mapping[str, Any], older: Mapping[str, Any]) -> str | None:
    """How two runs' selections (paths, -k, -m) differ, or None."""
    a, b = newer["run"].get("selection", {}), older["run"].get("selection", {})
    differs = [f"{key} {b.get(key)!r} then, {a.get(key)!r} now" for key in sorted(a.keys() | b.keys())
               if a.get(key) != b.get(key)]
    return f"the runs selected differently ({'; '.join(differs)})" if differs else None


def _vanished(trend: Trend, newer: Mapping[str, Any], older: Mapping[str, Any]) -> None:
    """What the older run checked and the newer one lacks, each worse: an item, a row of it (a dataset), a check of
    it. What an incomplete newer run has still to run has not vanished (it is reported as not run)."""
    pending = _pending(newer)
    waiting = {item for item, _ in pending}
    ours, theirs = _items(newer), _items(older)
    present = ours.keys() | waiting
    found = len(trend.worse)
    for item, was in sorted(theirs.items()):
        if item not in present:
            checks = ", ".join(f"{check} {outcome}" for check, outcome in sorted(was["outcomes"].items()))
            trend.worse.append(Finding(was["model"], f"{item}: vanished (the older run had its rows on "
                                                     f"{', '.join(sorted(was['datasets']))} and its checks "
                                                     f"{checks or 'none recorded'})"))
            continue
        if item not in waiting:
            for dataset in sorted(set(was["datasets"]) - set(ours[item]["datasets"])):
                trend.worse.append(Finding(was["model"], f"{item} on {dataset}: row vanished"))
        for check, outcome in sorted(was["outcomes"].items()):
            if check not in ours.get(item, {}).get("outcomes", {}) and (item, check) not in pending:
                trend.worse.append(Finding(was["model"], f"{item} {check}: vanished (was {outcome})"))
    otherwise = _selected_otherwise(newer, older)
    if len(trend.worse) > found and otherwise:
        trend.notes.append(Finding("", f"{otherwise}: what the newer run did not select counts as vanished"))


def compare(newer: dict[str, Any], older: dict[str, Any], label: str) -> Trend:
    """New failures, lost coverage and fixes; outputs and paired metrics on the shared images; the other judged
    figures; latency and ratio moves; and, between runs of the same case folder, what vanished."""
    trend = Trend(label)
    new_rows, old_rows = _rows(newer), _rows(older)
    same_machine = newer["run"]["machine"].get("id") == older["run"]["machine"].get("id")
    seen_outcomes: set[tuple[str, str]] = set()
    for key in sorted(new_rows.keys() & old_rows.keys()):
        new, old = new_rows[key], old_rows[key]
        trend.same += 1
        compare_outcomes(trend, new, old, seen_outcomes)
        compare_accuracy(trend, new, old)
        compare_judged_figures(trend, new, old)
        if same_machine:
            compare_latencies(trend, new, old)
    if _same_setup(newer, older):
        _vanished(trend, newer, older)
        changed = _setup_changed(newer, older)
        if changed:
            trend.notes.append(Finding("", f"machine or runtime changed: {changed} (latencies not compared across "
                                           "machines; what vanished is reported all the same)"))
    return trend


def against_earlier(found: Sequence[tuple[Path, dict[str, Any]]]) -> tuple[list[Trend], list[str]]:
    """The newest run against the previous comparable run and, when that is another run, the previous complete run
    of the same case folder on any machine (what vanished, and what changed in what they share); with the lines that
    say what was compared."""
    history = [record for _, record in found]
    newest, last = history[-1], len(history) - 1
    results, lines = [], []
    previous = previous_comparable(history, last)
    if previous is not None:
        results.append(compare(newest, history[previous], f"previous run {found[previous][0].name}"))
        lines += results[-1].lines()
    elif last > 0:
        lines.append(f"no earlier comparable run (none shares a row of the same item, dataset, weights and images; "
                     f"the previous run {found[-2][0].name}: {_why_not(newest, found[-2][1])})")
    else:
        lines.append("no earlier comparable run (this is the first run)")
    setup = _previous_setup(history, last)
    if setup is not None and setup != previous:
        results.append(compare(newest, history[setup], f"the previous complete run of these case files "
                                                       f"({_cases_folder(newest)}/), {found[setup][0].name}"))
        lines += results[-1].lines()
    return results, lines
