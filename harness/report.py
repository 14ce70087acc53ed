"""reports/: ``summary.md`` in the seeds' table format, ``summary.json`` for trend tracking, image strips.

Tests record what they measured into a :class:`Recorder` while they run; the session writes the
files once at the end, so a run interrupted half-way still reports what it finished.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .cases import LOWER_IS_BETTER
from .metrics import to_uint8

#: Column order of the metric columns, as the seed tables order them.
METRIC_ORDER = ("mae", "max_f", "avg_f", "adp_f", "sm", "max_em", "avg_em", "adp_em", "wfm", "miou", "mse", "mad")


@dataclass
class Row:
    """Everything measured for one item on one dataset."""

    item: str
    model: str
    family: str
    precision: str
    runtime: str
    dataset: str
    weights: str = ""
    images: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    documented: dict[str, float] = field(default_factory=dict)
    documented_source: str = ""
    comparison: str = ""
    conformance: dict[str, float] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Recorder:
    def __init__(self, report_dir: Path) -> None:
        self.report_dir = report_dir
        self.rows: dict[tuple[str, str], Row] = {}
        self.outcomes: dict[str, dict[str, str]] = {}
        self.architectures: dict[str, dict[str, Any]] = {}

    def outcome(self, item_id: str, check: str, outcome: str) -> None:
        """The pytest outcome of one check of one item; shown on every row of that item."""
        self.outcomes.setdefault(item_id, {})[check] = outcome

    def row(self, item: Any, dataset: str) -> Row:
        """The row of (item, dataset), created on first use from the item's identity."""
        key = (item.id, dataset)
        if key not in self.rows:
            self.rows[key] = Row(
                item=item.id,
                model=item.model.name,
                family=item.family.family,
                precision=item.variant.label,
                runtime=item.runtime,
                dataset=dataset,
            )
        return self.rows[key]

    def note(self, item: Any, dataset: str, text: str) -> None:
        row = self.row(item, dataset)
        if text not in row.notes:
            row.notes.append(text)

    def strip(self, name: str, panels: list[tuple[str, np.ndarray]]) -> Path:
        """An image strip (input, ground truth, reference, candidate, difference heat map) for a failing item."""
        height = 240
        tiles = []
        for title, panel in panels:
            if panel.dtype != np.uint8:
                panel = to_uint8(panel)
            if panel.ndim == 2:
                panel = cv2.cvtColor(panel, cv2.COLOR_GRAY2BGR)
            elif panel.shape[2] == 4:
                panel = cv2.cvtColor(panel, cv2.COLOR_BGRA2BGR)
            width = max(1, round(panel.shape[1] * height / panel.shape[0]))
            tile = cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA)
            cv2.putText(tile, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        folder = self.report_dir / "strips"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), np.hstack(tiles))
        return path

    # ----------------------------------------------------------------- writing

    def write(self) -> list[Path]:
        if not self.rows and not self.architectures:
            return []
        self.report_dir.mkdir(parents=True, exist_ok=True)
        rows = sorted(self.rows.values(), key=lambda r: (r.family, r.model, r.dataset, r.precision, r.runtime))
        for row in rows:
            row.outcomes = dict(self.outcomes.get(row.item, {}))
        payload = {"rows": [row.__dict__ for row in rows], "architectures": self.architectures}
        json_path = _atomic_write(self.report_dir / "summary.json", json.dumps(payload, indent=2, default=_json_default))
        md_path = _atomic_write(self.report_dir / "summary.md", render_markdown(rows, self.architectures))
        return [md_path, json_path]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _atomic_write(path: Path, text: str) -> Path:
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(scratch, 0o644)  # mkstemp creates 0600; a report is meant to be read by others
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):  # the write or the rename failed: the previous file stays, the scratch goes
            os.unlink(scratch)
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _metric_cell(row: Row, metric: str) -> str:
    measured = row.metrics.get(metric)
    documented = row.documented.get(metric)
    if measured is None:
        return "-" if documented is None else f"- (doc {documented:g})"
    if documented is None:
        return _fmt(measured)
    delta = measured - documented
    better = delta <= 0 if metric in LOWER_IS_BETTER else delta >= 0
    return f"{_fmt(measured)} (doc {documented:g}, {'+' if delta >= 0 else ''}{delta:.3f}{'' if better else ' ▼'})"


def render_architectures(architectures: dict[str, dict[str, Any]]) -> list[str]:
    """Parameter and FLOP counts of each PyTorch reference beside the seed's figures."""
    if not architectures:
        return []
    lines = ["## Architectures (PyTorch references)", "",
             "| model | architecture | weights | params M | seed params M | GFLOPs (mult-add = 2) | GMACs | seed FLOPs(G) | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, a in sorted(architectures.items()):
        lines.append(f"| {name} | {a['architecture']} | {a['weights']} | {a['params_m']:.3f} | {a.get('seed_params_m', '-')} | "
                     f"{a['gflops']:.3f} | {a['gflops'] / 2:.3f} | {a.get('seed_flops_g', '-')} | {a.get('note') or ''} |")
    return [*lines, ""]


def _table_line(cells: list[str]) -> str:
    """One markdown table row; a ``|`` inside a cell (``max|d|``) is escaped so it does not start a new column."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_markdown(rows: list[Row], architectures: dict[str, dict[str, Any]] | None = None) -> str:
    lines = [
        "# segconform summary",
        "",
        "Measured value, then the seed's documented value and the delta (▼ = worse than documented).",
        "Conformance is per image against the fp32 reference on the same inputs: mean and worst MAE, worst max |diff|.",
        "",
    ]
    for family in sorted({r.family for r in rows}):
        family_rows = [r for r in rows if r.family == family]
        for dataset in sorted({r.dataset for r in family_rows}):
            subset = [r for r in family_rows if r.dataset == dataset]
            metrics = [m for m in METRIC_ORDER if any(m in r.metrics or m in r.documented for r in subset)]
            lines += [f"## {family} on {dataset}", ""]
            header = ["model", "precision", "runtime", "weights", "images", *metrics]
            header += ["accuracy vs doc", "conf. MAE mean/worst", "conf. max|d|", "golden", "latency ms", "checks"]
            lines.append(_table_line(header))
            lines.append("|" + "---|" * len(header))
            for r in subset:
                cells = [r.model, r.precision, r.runtime, r.weights, str(r.images)]
                cells += [_metric_cell(r, m) for m in metrics]
                cells.append(r.comparison or "-")
                conf = r.conformance
                cells.append(f"{_fmt(conf.get('mae_mean'), 4)} / {_fmt(conf.get('mae_worst'), 4)}" if conf else "-")
                cells.append(_fmt(conf.get("max_abs_worst"), 3) if conf else "-")
                cells.append(str(r.regression.get("status", "-")))
                latency = r.latency_ms
                cells.append(
                    " / ".join(f"{k} {v:.1f}" for k, v in latency.items()) if latency else "-"
                )
                cells.append(", ".join(f"{k}: {v}" for k, v in sorted(r.outcomes.items())) or "-")
                lines.append(_table_line(cells))
            notes = sorted({f"{r.model} {r.precision}: {n}" for r in subset for n in r.notes})
            if notes:
                lines += ["", *[f"- {n}" for n in notes]]
            lines.append("")
    lines += render_architectures(architectures or {})
    return "\n".join(lines) + "\n"
