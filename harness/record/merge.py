"""Shards of one night merged into one run: one record, one summary, one JUnit file, with coverage checked.

A sharded nightly is N independent pytest runs (CI matrix jobs, or hosts with a card each), each choosing its part
with pytest-split (``--splits N --group i``) and writing its own report folder. Each shard's record keeps the whole
selection it was split from (:mod:`harness.plugin.journaling`), so the merge knows what the night was meant to run:
a check in that selection that no shard finished is lost coverage, reported by name, and fails the merge, as does
every check of a shard that skipped them all, and a shard that is missing, incomplete, of another night (its
``--night`` / ``SEGCONFORM_NIGHT``), or ran other code or other case files than the rest.

The merged record is the shards' rows put together the way pytest-xdist's workers' rows are (an item whose checks
fell into two shards has one row, with both shards' figures), so ``harness trend`` and the summary read it like a
single run's.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .report import Recorder, atomic_write
from .run_records import HISTORY, records, save

#: Run facts every shard of one night must share; anything else (machine, start time, report folder) may differ.
SHARED = ("commit", "dirty", "cases_dir_name", "selection", "settings")
#: Options each shard sets for itself (its group, its folders, its host's cache and card).
PER_SHARD = frozenset({"group", "report_dir", "xmlpath", "basetemp", "durations_path", "store_durations", "cache_dir",
                       "shared_cache", "vacc_device"})
JUNIT = "junit.xml"
#: JUnit counters of a ``<testsuite>`` that add up over shards.
COUNTERS = ("tests", "errors", "failures", "skipped")


class MergeError(ValueError):
    """Shards that cannot be merged; the message names the shard folder and the problem."""


def _newest_complete(folder: Path) -> tuple[Path, dict[str, Any]]:
    found = records(folder) if (folder / HISTORY).is_dir() else []
    if not found:
        raise MergeError(f"{folder}: no run record under {folder / HISTORY} (the shard did not run, or wrote no "
                         "record)")
    path, record = found[-1]
    if record["run"].get("complete") is False:
        raise MergeError(f"{folder}: its newest run ({path.name}) is incomplete; finish it with `pytest ... --resume` "
                         "and the same options, then merge")
    if "shard" not in record.get("tests", {}):
        raise MergeError(f"{folder}: its newest run ({path.name}) was not a shard (run with --splits N --group I)")
    return path, record


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    run = record["run"]
    options = {k: v for k, v in run.get("options", {}).items()
               if k not in PER_SHARD and k != "night"}  # the night is checked on its own (_check_night)
    return {"commit": run.get("commit"), "dirty": run.get("dirty"),
            "cases_dir_name": Path(run.get("cases_dir", "")).name, "selection": run.get("selection"),
            "settings": options}


def _check_night(shards: Sequence[tuple[Path, dict[str, Any]]], night: str | None) -> None:
    """Every shard carries tonight's identity (``--night`` / ``SEGCONFORM_NIGHT`` of its run): ``night`` when the
    merge is given one, else the first shard's. A shard of another night (a host that did not run tonight leaves last
    night's record as its newest) is refused naming its folder, even at the same commit and options."""
    first_folder, first = shards[0]
    expected = night if night is not None else first["run"].get("night")
    source = "this merge's --night / SEGCONFORM_NIGHT" if night is not None else f"{first_folder}'s"
    for folder, record in shards:
        theirs = record["run"].get("night")
        if theirs != expected:
            shown = f"night {theirs!r}" if theirs is not None else "no night identity (--night / SEGCONFORM_NIGHT)"
            raise MergeError(f"{folder}: its newest shard run is of {shown}, not tonight's {expected!r} "
                             f"({source}): a shard of another night (did that host run tonight?)")


def _check_same_night(shards: Sequence[tuple[Path, dict[str, Any]]]) -> None:
    first_folder, first = shards[0]
    ours = _identity(first)
    for folder, record in shards[1:]:
        theirs = _identity(record)
        differing = sorted(k for k in SHARED if ours[k] != theirs[k])
        if "settings" in differing:
            keys = sorted(k for k in set(ours["settings"]) | set(theirs["settings"])
                          if ours["settings"].get(k) != theirs["settings"].get(k))
            differing[differing.index("settings")] = f"options ({', '.join(keys)})"
        if differing:
            raise MergeError(f"{folder}: not the same night as {first_folder}: its {', '.join(differing)} differ")
    splits = {r["tests"]["shard"]["splits"] for _, r in shards}
    groups = sorted(r["tests"]["shard"]["group"] for _, r in shards)
    if len(splits) != 1:
        raise MergeError(f"shards split differently (--splits {', '.join(map(str, sorted(splits)))})")
    if len(set(groups)) != len(groups):
        twice = sorted({g for g in groups if groups.count(g) > 1})
        raise MergeError(f"group {', '.join(map(str, twice))} given twice")


def coverage(shards: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The night's checks: the whole selection the shards were split from, which shard ran each, and the checks of
    that selection no shard finished (``missing``) or whose group was not merged (``groups_missing``)."""
    expected: list[str] = []
    for _, record in shards:
        expected += [n for n in record["tests"]["shard"]["selection"] if n not in expected]
    outcomes: dict[str, str] = {}
    ran_by: dict[str, int] = {}
    for _, record in shards:
        for nodeid, outcome in record["tests"]["outcomes"].items():
            outcomes[nodeid] = outcome
            ran_by[nodeid] = record["tests"]["shard"]["group"]
    splits = shards[0][1]["tests"]["shard"]["splits"]
    merged_groups = {r["tests"]["shard"]["group"] for _, r in shards}
    # A shard whose every check skipped judged nothing (a host without the runtime or the weights, opted out): its
    # checks are coverage lost like checks no shard ran, not coverage.
    judged_nothing = [n for _, r in shards if r["tests"]["outcomes"]
                      and set(r["tests"]["outcomes"].values()) == {"skipped"} for n in r["tests"]["outcomes"]]
    return {"selected": len(expected), "finished": len([n for n in expected if n in outcomes]),
            "missing": [n for n in expected if n not in outcomes],
            "groups_missing": sorted(set(range(1, splits + 1)) - merged_groups),
            "skipped_only": judged_nothing, "outcomes": outcomes, "shard_of": ran_by}


def _merged_junit(files: Sequence[Path]) -> ElementTree.ElementTree:
    """One ``<testsuites>`` with one ``<testsuite>`` holding every shard's test cases, its counters summed and its
    time the longest shard's (the shards ran side by side)."""
    suites = []
    for path in files:
        try:
            root = ElementTree.parse(path).getroot()
        except (OSError, ElementTree.ParseError) as error:
            raise MergeError(f"{path}: not a readable JUnit file ({error})") from None
        suites += [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    merged = copy.deepcopy(suites[0])
    for child in list(merged):
        merged.remove(child)
    for counter in COUNTERS:
        merged.set(counter, str(sum(int(s.get(counter, "0")) for s in suites)))
    merged.set("time", f"{max(float(s.get('time', '0')) for s in suites):.3f}")
    merged.set("name", "segconform")
    for suite in suites:
        for case in suite.iter("testcase"):
            merged.append(copy.deepcopy(case))
    root = ElementTree.Element("testsuites")
    root.append(merged)
    return ElementTree.ElementTree(root)


def merge(folders: Sequence[Path], out: Path, night: str | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Merge the newest complete shard run of each folder into ``out``: its run record (under ``out/history``), its
    summary and, where every shard wrote ``junit.xml``, one JUnit file. Returns the merged record and the files.
    ``night``: tonight's identity, which every shard's run must carry (without it, the first shard's)."""
    if not folders:
        raise MergeError("no shard report folders given")
    shards = [(folder, _newest_complete(folder)[1]) for folder in folders]
    _check_night(shards, night)
    _check_same_night(shards)
    covered = coverage(shards)
    recorder = Recorder(out)
    for folder, record in shards:
        outcomes: dict[str, dict[str, str]] = {}
        for row in record["rows"]:
            outcomes.setdefault(row["item"], {}).update(row.get("outcomes", {}))
        recorder.merge({"rows": record["rows"], "outcomes": outcomes, "work": record.get("work", []),
                        "architectures": _architectures(folder)})
    first = shards[0][1]["run"]
    run = {**first, "started": min(r["run"]["started"] for _, r in shards),
           "finished": max(r["run"].get("finished") or "" for _, r in shards),
           "complete": not covered["missing"] and not covered["groups_missing"],
           "machine": _machine(shards),
           "shards": [{"report_dir": str(folder), "group": r["tests"]["shard"]["group"],
                       "machine": r["run"]["machine"], "started": r["run"]["started"],
                       "finished": r["run"].get("finished"), "checks": len(r["tests"]["outcomes"])}
                      for folder, r in shards]}
    tests = {"selected": covered["selected"], "finished": covered["finished"], "not_run": covered["missing"],
             "runtime_faults": {k: v for _, r in shards for k, v in r["tests"].get("runtime_faults", {}).items()},
             "outcomes": covered["outcomes"], "groups_missing": covered["groups_missing"],
             "skipped_only": covered["skipped_only"]}
    record = {"run": run, "rows": [asdict(row) for row in recorder.sorted_rows()], "work": recorder.work,
              "tests": tests}
    written = [save(out, record), *recorder.write(run)]
    junit_files = [folder / JUNIT for folder, _ in shards]
    if all(path.is_file() for path in junit_files):
        tree = _merged_junit(junit_files)
        text = ElementTree.tostring(tree.getroot(), encoding="unicode", xml_declaration=True)
        written.append(atomic_write(out / JUNIT, text))
    return record, written


def _machine(shards: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The merged night's machine: the shards' own when they ran on one kind, else the first shard's facts under an id
    naming every kind (``mixed-<id>+<id>``), so that trend compares the night with nights on the same hosts."""
    ids = sorted({r["run"]["machine"]["id"] for _, r in shards})
    first = dict(shards[0][1]["run"]["machine"])
    return first if len(ids) == 1 else {**first, "id": "mixed-" + "+".join(ids)}


def _architectures(folder: Path) -> dict[str, Any]:
    """The shard's architecture checks (parameter counts), kept in its summary, not in its run record."""
    summary = folder / "summary.json"
    try:
        return json.loads(summary.read_text(encoding="utf-8")).get("architectures", {})
    except (OSError, ValueError):
        return {}


def verdict(record: dict[str, Any]) -> tuple[int, list[str]]:
    """The merged night's exit status and the lines that say why: 1 when a check failed or errored, or the night
    lost coverage (a check of the selection no shard ran, a group not merged); 0 otherwise."""
    tests = record["tests"]
    counts: dict[str, int] = {}
    for outcome in tests["outcomes"].values():
        counts[outcome] = counts.get(outcome, 0) + 1
    shards = record["run"]["shards"]
    lines = [f"merged {len(shards)} shard(s) (groups {', '.join(str(s['group']) for s in shards)}): "
             f"{tests['finished']} of {tests['selected']} checks finished: "
             + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))]
    lost = [f"group {g} of the split was not merged" for g in tests["groups_missing"]]
    lost += [f"no shard ran {nodeid}" for nodeid in tests["not_run"]]
    lost += [f"no shard judged {nodeid} (skipped in a shard whose every check skipped)"
             for nodeid in tests.get("skipped_only", [])]
    lines += [f"lost coverage: {line}" for line in lost]
    if record["run"].get("night") is None:
        lines.append("no night identity (--night / SEGCONFORM_NIGHT on every shard): a stale shard of the same code "
                     "and options could not be told from tonight's")
    failed = counts.get("failed", 0) + counts.get("error", 0)
    return (1 if lost or failed else 0), lines
