"""The trend's plots: one PNG per model (metric and latency over runs, precision by precision, changed nights
marked), linked from ``summary.md``.

Drawn by ``python -m harness trend`` (:func:`harness.record.trend.trend`) under ``reports/history/plots/``; the
session's summary links them again when it rewrites ``summary.md`` (:func:`plot_links`). A night is marked where
its comparison with the previous comparable run (:mod:`harness.record.comparison`) found a change of the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.names import inside
from .comparison import compare, previous_comparable
from .report import atomic_write
from .run_records import HISTORY

PLOTS = "plots"
_TREND_START, _TREND_END = "<!-- segconform trend -->", "<!-- /segconform trend -->"


def changed_nights(history: Sequence[dict[str, Any]]) -> dict[int, dict[str, bool]]:
    """Run index -> the models whose trend against the previous comparable run found a change (True: a regression)."""
    marks: dict[int, dict[str, bool]] = {}
    for index in range(1, len(history)):
        previous = previous_comparable(history, index)
        if previous is None:
            continue
        result = compare(history[index], history[previous], "")
        for finding in result.changes:
            night = marks.setdefault(index, {})
            night[finding.model] = night.get(finding.model, False) or finding in result.worse
    return marks


def _mark(axis: Any, nights: Mapping[int, Mapping[str, bool]], model: str) -> None:
    """A dashed vertical line at each night whose trend found a change of ``model``: red for a regression."""
    labels = {True: "regression vs previous run", False: "change vs previous run"}
    for index, models in sorted(nights.items()):
        if model in models:
            worse = models[model]
            axis.axvline(index, color="red" if worse else "orange", linestyle="--", linewidth=1.2,
                         label=labels.pop(worse, "_nolegend_"))


def draw_plots(report_dir: Path, history: list[dict[str, Any]]) -> list[Path]:
    """One PNG per model: its first metric and its runtime latency over runs, one line per precision; nights that
    changed something of the model (:func:`changed_nights`) are marked."""
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
    nights = changed_nights(history)
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
            _mark(axis, nights, model)
            axis.set_title(f"{model}: {title}")
            axis.set_xticks(ticks, stamps, rotation=30, ha="right", fontsize=7)
            if kinds[kind]:
                axis.legend(fontsize=7)
            else:  # accuracy-only runs measure no latency, benchmark-only runs no metric
                axis.text(0.5, 0.5, f"no {kind} in these runs", ha="center", va="center", transform=axis.transAxes)
        figure.tight_layout()
        path = inside(folder, f"{model}.png")
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
