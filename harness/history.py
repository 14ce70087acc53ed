"""Run records and trends: every run leaves a record, and ``python -m harness trend`` compares night over night.

A record (``reports/history/<UTC time>-<commit>-<machine id>.json``, never overwritten) holds when and
where the run happened (UTC time, git commit, the machine fingerprint with the CPU's int8 instruction
set, tool versions), what it ran (options, selection) and every report row. :func:`trend` compares the
newest record with the previous comparable one (sharing rows measured on the same number of images)
and with the stored baseline (``reports/history/baseline.json``, saved with ``trend --save-baseline``):
new failures, fixed items, metrics that moved beyond their confidence interval, latencies and ratios
that moved; something worse makes the command exit with status 1. It also draws one PNG per model
(metric and latency over runs, precision by precision) and links them from ``summary.md``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cases import LOWER_IS_BETTER
from .machine import fingerprint, tool_versions
from .report import atomic_write

if TYPE_CHECKING:
    import pytest

    from .plugin import State

HISTORY = "history"
BASELINE = "baseline.json"
PLOTS = "plots"
#: A latency median this much slower than the compared run's is reported as a regression (a burst of host load on a
#: shared 2-core machine has slowed a benchmark by 1.7x: smaller moves are left to the same-run ratio gates).
LATENCY_MOVE = 0.75
#: A speed-up ratio this much lower than the compared run's is reported as a regression.
RATIO_MOVE = 0.15
_TREND_START, _TREND_END = "<!-- segconform trend -->", "<!-- /segconform trend -->"
#: Options that do not change what a run measures, left out of the record.
_UNRECORDED = {"file_or_dir", "help", "verbose", "color", "capture", "tbstyle", "showlocals", "reportchars"}


def _git(*args: str, cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def run_record(config: "pytest.Config", state: "State") -> dict[str, Any]:
    """The record of the session that is finishing: the run's description plus every row."""
    from dataclasses import asdict

    root = config.rootpath
    commit = _git("rev-parse", "--short=12", "HEAD", cwd=root)
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=root))
    options = {k: _plain(v) for k, v in sorted(vars(config.option).items()) if k not in _UNRECORDED}
    runtimes = {}
    for name in state.runtimes:
        runtime = state.suite.sessions.runtime(name)
        runtimes[name] = runtime.describe() if not runtime.unavailable else {"runtime": name, "unavailable": runtime.unavailable}
    run = {
        "started": state.started,
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit or "unknown",
        "dirty": dirty,
        "machine": fingerprint().as_dict(),
        "tools": tool_versions(),
        "runtimes": runtimes,
        "selection": {"args": [str(a) for a in config.args], "keyword": config.option.keyword,
                      "markers": config.option.markexpr},
        "options": options,
    }
    return {"run": run, "rows": [asdict(r) for r in state.recorder.sorted_rows()], "work": state.recorder.work}


def save(report_dir: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` under ``reports/history/`` with a name no earlier record has."""
    folder = report_dir / HISTORY
    folder.mkdir(parents=True, exist_ok=True)
    run = record["run"]
    stamp = re.sub(r"[^0-9TZ]", "", run["started"])
    base = f"{stamp}-{run['commit']}-{run['machine']['id']}"
    for attempt in range(1000):
        path = folder / (f"{base}.json" if attempt == 0 else f"{base}-{attempt}.json")
        try:
            with path.open("x", encoding="utf-8") as out:
                json.dump(record, out, indent=1, default=str)
            return path
        except FileExistsError:
            continue
    raise OSError(f"{folder}: could not find a free name for the run record {base}")


def load(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable run record: {error}") from error
    if not isinstance(record, dict) or "run" not in record or "rows" not in record:
        raise ValueError(f"{path}: not a segconform run record (no 'run' and 'rows')")
    return record


def records(report_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every run record, oldest first (by start time, then name)."""
    folder = report_dir / HISTORY
    found = [(p, load(p)) for p in sorted(folder.glob("*.json")) if p.name != BASELINE] if folder.is_dir() else []
    return sorted(found, key=lambda pr: (pr[1]["run"].get("started", ""), pr[0].name))


def _rows(record: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["item"], r["dataset"]): r for r in record["rows"]}


def comparable(newer: dict[str, Any], older: dict[str, Any]) -> bool:
    """Two runs compare when they share a row measured on the same number of images."""
    a, b = _rows(newer), _rows(older)
    return any(a[k].get("images") == b[k].get("images") for k in a.keys() & b.keys())


@dataclass
class Trend:
    """What changed between two runs; ``worse`` decides the exit status."""

    against: str
    worse: list[str] = field(default_factory=list)
    better: list[str] = field(default_factory=list)
    same: int = 0

    def lines(self) -> list[str]:
        out = [f"against {self.against}:"]
        out += [f"  WORSE  {line}" for line in self.worse] + [f"  better {line}" for line in self.better]
        if not self.worse and not self.better:
            out.append(f"  no change beyond intervals and thresholds ({self.same} rows compared)")
        return out


def compare(newer: dict[str, Any], older: dict[str, Any], label: str) -> Trend:
    """Failures, fixes, metric moves beyond the older run's interval, and latency / ratio moves."""
    trend = Trend(label)
    new_rows, old_rows = _rows(newer), _rows(older)
    same_machine = newer["run"]["machine"].get("id") == older["run"]["machine"].get("id")
    seen_outcomes: set[tuple[str, str]] = set()
    for key in sorted(new_rows.keys() & old_rows.keys()):
        new, old = new_rows[key], old_rows[key]
        trend.same += 1
        name = f"{key[0]} on {key[1]}"
        for check, outcome in new.get("outcomes", {}).items():
            before = old.get("outcomes", {}).get(check)
            if (key[0], check) in seen_outcomes or before is None or before == outcome:
                continue
            seen_outcomes.add((key[0], check))
            if outcome in ("failed", "error") and before not in ("failed", "error"):
                trend.worse.append(f"{key[0]} {check}: new failure (was {before})")
            elif before in ("failed", "error") and outcome == "passed":
                trend.better.append(f"{key[0]} {check}: fixed (was {before})")
        if new.get("images") == old.get("images"):
            for metric, value in new.get("metrics", {}).items():
                if metric not in old.get("metrics", {}) or metric not in old.get("ci", {}):
                    continue
                before, (low, high) = old["metrics"][metric], old["ci"][metric]
                if low <= value <= high or value == before:
                    continue
                worse = value > before if metric in LOWER_IS_BETTER else value < before
                text = (f"{name}: {metric} {before:.4f} -> {value:.4f}, outside the previous "
                        f"interval [{low:.4f}, {high:.4f}]")
                (trend.worse if worse else trend.better).append(text)
        if not same_machine:
            continue
        for kind, before in old.get("latency_ms", {}).items():
            value = new.get("latency_ms", {}).get(kind)
            if value is None or kind.endswith("(eval run)"):
                continue
            change = value / before - 1.0
            if abs(change) > LATENCY_MOVE:
                text = f"{name}: {kind} latency {before:.1f} -> {value:.1f} ms ({change:+.0%})"
                (trend.worse if change > 0 else trend.better).append(text)
        for kind, entry in old.get("performance", {}).items():
            value = new.get("performance", {}).get(kind, {}).get("ratio")
            if value is None:
                continue
            before = entry["ratio"]
            change = (value - before) / abs(before) if before else 0.0
            lower_is_worse = kind.startswith("speedup")
            if abs(change) > RATIO_MOVE:
                worse = change < 0 if lower_is_worse else change > 0
                (trend.worse if worse else trend.better).append(f"{name}: {kind} {before:.3g} -> {value:.3g}")
    return trend


def trend(report_dir: Path, draw: bool = True) -> tuple[list[str], bool]:
    """The report of the newest run against the previous comparable one and the baseline; (lines, worse)."""
    found = records(report_dir)
    if not found:
        raise ValueError(f"{report_dir / HISTORY}: no run records yet; run the suite first")
    newest_path, newest = found[-1]
    lines = [f"newest run: {newest_path.name} ({newest['run']['started']}, commit {newest['run']['commit']}, "
             f"machine {newest['run']['machine'].get('id')})"]
    worse = False
    previous = next(((p, r) for p, r in reversed(found[:-1]) if comparable(newest, r)), None)
    if previous is None:
        lines.append("no earlier comparable run (none shares a row measured on the same images)")
    else:
        result = compare(newest, previous[1], f"previous run {previous[0].name}")
        lines += result.lines()
        worse |= bool(result.worse)
    baseline_path = report_dir / HISTORY / BASELINE
    if baseline_path.is_file():
        result = compare(newest, load(baseline_path), f"baseline {baseline_path.name}")
        lines += result.lines()
        worse |= bool(result.worse)
    else:
        lines.append(f"no stored baseline ({baseline_path}; save one with `python -m harness trend --save-baseline`)")
    if draw:
        plots = draw_plots(report_dir, [r for _, r in found])
        lines.append(f"plots: {', '.join(str(p) for p in plots)}" if plots else "plots: none (no rows to draw)")
        link_plots(report_dir, plots)
    return lines, worse


def save_baseline(report_dir: Path) -> Path:
    """Store the newest run record as the baseline later trends compare with."""
    found = records(report_dir)
    if not found:
        raise ValueError(f"{report_dir / HISTORY}: no run records yet; run the suite first")
    return atomic_write(report_dir / HISTORY / BASELINE, found[-1][0].read_text(encoding="utf-8"))


def draw_plots(report_dir: Path, history: list[dict[str, Any]]) -> list[Path]:
    """One PNG per model: its first metric and its runtime latency over runs, one line per precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, dict[str, list[tuple[int, float]]]]] = {}
    for index, record in enumerate(history):
        for row in record["rows"]:
            label = f"{row['precision']} {row['runtime']}"
            model = series.setdefault(row["model"], {"metric": {}, "latency": {}})
            if row.get("metrics") and row["dataset"] != "synthetic":
                metric = next(iter(row["metrics"]))
                model["metric"].setdefault(f"{label} ({metric}, {row['dataset']})", []).append(
                    (index, row["metrics"][metric]))
            if "runtime" in row.get("latency_ms", {}):
                model["latency"].setdefault(label, []).append((index, row["latency_ms"]["runtime"]))
    ticks = list(range(len(history)))  # one tick per run, named by its UTC start
    stamps = [str(record["run"].get("started", ""))[5:16].replace("T", " ") for record in history]
    folder = report_dir / HISTORY / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model, kinds in sorted(series.items()):
        if not kinds["metric"] and not kinds["latency"]:
            continue
        figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
        for axis, kind, title in ((axes[0], "metric", "first metric"), (axes[1], "latency", "runtime latency (ms)")):
            for label, points in sorted(kinds[kind].items()):
                xs, ys = zip(*points)
                axis.plot(xs, ys, marker="o", label=label)
            axis.set_title(f"{model}: {title}")
            axis.set_xticks(ticks, stamps, rotation=30, ha="right", fontsize=7)
            if kinds[kind]:
                axis.legend(fontsize=7)
            else:  # accuracy-only runs measure no latency, benchmark-only runs no metric
                axis.text(0.5, 0.5, f"no {kind} in these runs", ha="center", va="center", transform=axis.transAxes)
        figure.tight_layout()
        path = folder / f"{model}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
    return written


def link_plots(report_dir: Path, plots: list[Path]) -> None:
    """Put (or replace) the links to the trend plots at the end of ``summary.md``."""
    summary = report_dir / "summary.md"
    if not summary.is_file() or not plots:
        return
    text = summary.read_text(encoding="utf-8")
    if _TREND_START in text:
        text = text[: text.index(_TREND_START)].rstrip() + "\n"
    atomic_write(summary, text + "\n" + "\n".join(plot_links(report_dir)) + "\n")


def plot_links(report_dir: Path) -> list[str]:
    """The markdown section linking the trend plots that exist (empty when there are none)."""
    folder = report_dir / HISTORY / PLOTS
    plots = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not plots:
        return []
    return [_TREND_START, "## Trends over runs", "", *[f"- [{p.stem}]({HISTORY}/{PLOTS}/{p.name})" for p in plots],
            _TREND_END]


def main_trend(report_dir: Path, save: bool, out: Any = sys.stdout) -> int:
    if save:
        print(f"baseline saved: {save_baseline(report_dir)}", file=out)
        return 0
    lines, worse = trend(report_dir)
    print("\n".join(lines), file=out)
    return 1 if worse else 0
