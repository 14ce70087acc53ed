"""reports/: ``summary.md`` in the seeds' table format, ``summary.json`` for tools, image strips of failures.

Checks record what they measured into a :class:`Recorder` while they run; the session writes the
files once at the end, so a run interrupted half-way still reports what it finished. Under
pytest-xdist each worker's recorder is exported to the controller (:meth:`Recorder.export` /
:meth:`Recorder.merge`), which alone writes the files. Every row of ``summary.json`` carries ``ci``
(bootstrap interval per metric) and ``vs_fp32`` (paired difference from the fp32 item on the same
images), so tools can read them without parsing the markdown; an accuracy row also carries ``per_image`` and
``tolerance``, what ``python -m harness trend`` pairs two nights with (:mod:`harness.record.per_image`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..data.case_base import LOWER_IS_BETTER
from ..data.names import inside
from ..judge.metrics import to_uint8
from ..machine import SATURATING_U8S8

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
    provider: str = ""
    images: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    documented: dict[str, float] = field(default_factory=dict)
    documented_source: str = ""
    accuracy: dict[str, Any] = field(default_factory=dict)
    vs_fp32: dict[str, Any] = field(default_factory=dict)
    comparison: str = ""
    conformance: dict[str, float] = field(default_factory=dict)
    int8_kernels: dict[str, Any] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)
    structure: dict[str, Any] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    artifact: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Accuracy rows: what the next night's trend pairs with (:class:`harness.record.per_image.PerImage`, packed), and
    #: the case's reproduction tolerance per metric that pairing judges with.
    per_image: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)

    def absorb(self, other: "Row") -> None:
        """Take what another process recorded for the same item and dataset (its checks ran in another worker)."""
        for name in (f.name for f in fields(self)):
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, dict):
                mine.update(theirs)
            elif isinstance(mine, list):
                mine.extend(t for t in theirs if t not in mine)
            elif not mine and theirs:
                setattr(self, name, theirs)
            elif name == "images":
                self.images = max(self.images, other.images)


class Recorder:
    def __init__(self, report_dir: Path) -> None:
        self.report_dir = report_dir
        self.rows: dict[tuple[str, str], Row] = {}
        self.outcomes: dict[str, dict[str, str]] = {}
        self.architectures: dict[str, dict[str, Any]] = {}
        self.work: list[dict[str, Any]] = []  # long work done (builds, calibration, localisation) and its duration

    def outcome(self, item_id: str, check: str, outcome: str) -> None:
        """The pytest outcome of one check of one item; shown on every row of that item."""
        self.outcomes.setdefault(item_id, {})[check] = outcome

    def row(self, item: Any, dataset: str) -> Row:
        """The row of (item, dataset), created on first use from the item's identity."""
        key = (item.id, dataset)
        if key not in self.rows:
            self.rows[key] = Row(item=item.id, model=item.model.name, family=item.family.family,
                                 precision=item.variant.label, runtime=item.runtime, dataset=dataset)
        return self.rows[key]

    def note(self, item: Any, dataset: str, text: str) -> None:
        row = self.row(item, dataset)
        if text not in row.notes:
            row.notes.append(text)

    def strip(self, name: str, panels: list[tuple[str, np.ndarray]]) -> Path:
        """An image strip (input, ground truth, reference, candidate, difference heat map) for a failing item; its path
        under ``strips/`` (refused outside it), or an OSError naming it when it could not be written."""
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
        path = inside(folder, f"{name}.png")
        try:
            written = cv2.imwrite(str(path), np.hstack(tiles))
        except cv2.error as error:
            raise OSError(f"{path}: the strip could not be written: {str(error).strip().splitlines()[-1]}") from None
        if not written:
            raise OSError(f"{path}: the strip could not be written")
        return path

    # ----------------------------------------------------------------- xdist: workers hand their rows over

    def export(self, only: str | None = None) -> dict[str, Any]:
        """Everything recorded, as plain JSON-able data (what a worker sends the controller); with ``only``, what
        concerns that item id or model name alone (what the run journal keeps of one finished check)."""
        if only is None:
            exported = {"rows": [asdict(r) for r in self.rows.values()], "outcomes": self.outcomes,
                        "architectures": self.architectures, "work": self.work}
        else:
            exported = {"rows": [asdict(r) for r in self.rows.values() if r.item == only],
                        "outcomes": {only: self.outcomes[only]} if only in self.outcomes else {},
                        "architectures": {only: self.architectures[only]} if only in self.architectures else {}}
        return json.loads(json.dumps(exported, default=_json_default))

    def merge(self, exported: dict[str, Any]) -> None:
        """Add another recorder's export (rows of items this process did not run)."""
        names = {f.name for f in fields(Row)}
        for data in exported.get("rows", []):
            row = Row(**{"family": "", **{k: v for k, v in data.items() if k in names}})  # older rows had none
            key = (row.item, row.dataset)
            if key in self.rows:
                self.rows[key].absorb(row)
            else:
                self.rows[key] = row
        for item, checks in exported.get("outcomes", {}).items():
            self.outcomes.setdefault(item, {}).update(checks)
        self.architectures.update(exported.get("architectures", {}))
        self.work.extend(exported.get("work", []))

    # ----------------------------------------------------------------- writing

    def sorted_rows(self) -> list[Row]:
        rows = sorted(self.rows.values(), key=lambda r: (r.family, r.model, r.dataset, r.precision, r.runtime))
        for row in rows:
            row.outcomes = dict(self.outcomes.get(row.item, {}))
        return rows

    def write(self, run: dict[str, Any] | None = None, extra_markdown: list[str] | None = None) -> list[Path]:
        """``summary.md`` and ``summary.json`` (the latest run; ``run`` describes it), atomically."""
        if not self.rows and not self.architectures:
            return []
        self.report_dir.mkdir(parents=True, exist_ok=True)
        rows = self.sorted_rows()
        payload = {"run": run or {}, "rows": [asdict(row) for row in rows], "architectures": self.architectures,
                   "work": self.work}
        json_path = atomic_write(self.report_dir / "summary.json", json.dumps(payload, indent=2, default=_json_default))
        markdown = render_markdown(rows, self.architectures, run, extra_markdown)
        md_path = atomic_write(self.report_dir / "summary.md", markdown)
        return [md_path, json_path]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, tuple, set)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def synced_scratch(path: Path, text: str) -> str:
    """``text`` in a new scratch file beside ``path``, flushed and fsynced, readable by others: what a final file is
    renamed or linked from, so that a machine that loses power never leaves the name on an empty or partial file."""
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(scratch, 0o644)  # mkstemp creates 0600; a report is meant to be read by others
    except BaseException:
        os.unlink(scratch)
        raise
    return scratch


def atomic_write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a synced scratch file and a rename: readers see the old file or the new one,
    and the folder is fsynced after the rename so that the rename itself survives a power loss."""
    scratch = synced_scratch(path, text)
    try:
        os.replace(scratch, path)
        fsync_folder(path.parent)
    finally:
        if os.path.exists(scratch):  # the rename failed: the previous file stays, the scratch goes
            os.unlink(scratch)
    return path


def fsync_folder(folder: Path) -> None:
    """Make a rename or link in ``folder`` durable (POSIX: the directory entry lives in the folder's own data)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _metric_cell(row: Row, metric: str) -> str:
    measured = row.metrics.get(metric)
    documented = row.documented.get(metric)
    interval = row.ci.get(metric)
    ci = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
    if measured is None:
        return "-" if documented is None else f"- (doc {documented:g})"
    if documented is None:
        return _fmt(measured) + ci
    delta = measured - documented
    better = delta <= 0 if metric in LOWER_IS_BETTER else delta >= 0
    return f"{_fmt(measured)}{ci} (doc {documented:g}, {'+' if delta >= 0 else ''}{delta:.3f}{'' if better else ' ▼'})"


def _paired_cell(row: Row) -> str:
    """The judged deltas against fp32 with their intervals, e.g. ``mae +0.001 [-0.000, +0.002]``."""
    deltas = row.vs_fp32.get("delta", {})
    judged = [(m, d) for m, d in deltas.items() if d.get("expected") is not None]
    cells = [f"{m} {d['value']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]{'' if d['passed'] else ' ✗'}"
             for m, d in judged]
    floors = [f"{m} keeps {f['value']:.1%}{'' if f['passed'] else ' ✗'}"
              for m, f in row.vs_fp32.get("floor", {}).items()]
    return "; ".join(cells + floors) or "-"


def render_architectures(architectures: dict[str, dict[str, Any]]) -> list[str]:
    """Parameter and FLOP counts of each PyTorch reference beside the seed's figures."""
    if not architectures:
        return []
    lines = ["## Architectures (PyTorch references)", "",
             ("| model | architecture | weights | params M | seed params M | GFLOPs (mult-add = 2) | GMACs "
              "| seed FLOPs(G) | note |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for name, a in sorted(architectures.items()):
        lines.append(f"| {name} | {a['architecture']} | {a['weights']} | {a['params_m']:.3f} "
                     f"| {a.get('seed_params_m', '-')} | {a['gflops']:.3f} | {a['gflops'] / 2:.3f} "
                     f"| {a.get('seed_flops_g', '-')} | {a.get('note') or ''} |")
    return [*lines, ""]


def _table_line(cells: list[str]) -> str:
    """One markdown table row; a ``|`` inside a cell (``max|d|``) is escaped so it does not start a new column."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _run_lines(run: dict[str, Any] | None) -> list[str]:
    if not run:
        return []
    machine = run.get("machine", {})
    progress = run.get("progress")
    lines = [f"**Incomplete run** (still running, or stopped): {progress['finished']} of {progress['selected']} "
             "checks finished; the rows below are those that finished.", ""] if progress else []
    lines += [f"Run {run.get('started', '?')} on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores, "
              f"int8 path {machine.get('int8', '?')}), onnxruntime {machine.get('onnxruntime', '?')}, "
              f"commit {run.get('commit', '?')}."]
    if machine.get("int8") in SATURATING_U8S8:
        lines.append("This CPU's U8S8 int8 kernels saturate 16-bit intermediates (vpmaddubsw): static int8 build "
                     "verdicts use the builds' exact arithmetic, the same on every CPU; the deployment verdict "
                     "(deployed column) judges what this CPU's kernels compute.")
    return [*lines, ""]


def _sustained_cell(sustained: dict[str, Any] | None) -> str:
    """The sustained run of an item: its p50 / p90 / p99 (ms, with the sample count), memory growth per 1000 calls,
    the drift probe's largest move, and the gates that failed."""
    if not sustained:
        return "-"
    item = sustained.get("item", {})
    growth = sustained.get("rss_mb", {}).get("growth_per_1000")
    failed = [g for g, v in sustained.get("gates", {}).items() if v.get("status") == "failed"]
    cell = (f"p50 {_fmt(item.get('p50_ms'), 0)} / p90 {_fmt(item.get('p90_ms'), 0)} / p99 {_fmt(item.get('p99_ms'), 0)}"
            f" ms ({item.get('samples', 0)}), {'-' if growth is None else f'{growth:+.1f}'} MB/1000 calls, drift "
            f"{_fmt(sustained.get('drift_max_abs'), 3)}")
    return cell + (f"; failed: {', '.join(failed)}" if failed else "")


def _structure_cell(row: Row) -> str:
    """Offset (model pixels), detail kept / spurious, channel probe: the structural figures against fp32."""
    if not row.structure:
        return "-"
    aligned, detail = row.structure.get("alignment", {}), row.structure.get("detail", {})
    text = (f"{_fmt(aligned.get('magnitude_px'), 2)} px, detail {_fmt(detail.get('kept'), 3)} / "
            f"{_fmt(detail.get('spurious'), 3)}")
    probe = row.structure.get("channel_order")
    if probe:
        text += f", RGB {_fmt(probe.get('mae_as_is'), 4)} vs BGR {_fmt(probe.get('mae_swapped'), 4)}"
    return text


def _deployment_cell(row: Row) -> str:
    """The deployed session's verdict figures: this CPU's int8 path, conformance against fp32, paired deltas."""
    if not row.deployment:
        return "-"
    conf = row.deployment.get("conformance", {})
    text = f"{row.deployment.get('int8_path', '?')}: {_fmt(conf.get('mae_mean'), 4)} / {_fmt(conf.get('mae_worst'), 4)}"
    deltas = row.deployment.get("vs_fp32", {}).get("delta", {})
    if deltas:
        text += "; vs fp32 " + ", ".join(f"{m} {v['value']:+.4f}" for m, v in deltas.items())
    return text


def render_markdown(rows: list[Row], architectures: dict[str, dict[str, Any]] | None = None,
                    run: dict[str, Any] | None = None, extra: list[str] | None = None) -> str:
    lines = [
        "# segconform summary",
        "",
        *_run_lines(run),
        "Measured value with its bootstrap interval, then the seed's documented value and the delta (▼ = worse than "
        "documented). vs fp32: the paired difference from the fp32 item on the same images, with its interval "
        "(✗ = outside what the seed allows). Conformance is per image against the fp32 reference on the same inputs: "
        "mean and worst MAE, worst max |diff|; int8 kernels: the deployed int8 kernels of this CPU against the build's "
        "exact arithmetic; deployed: the int8 item as deployed on this CPU (its int8 path), judged like the build "
        "(conformance MAE mean / worst against fp32, paired differences). Structure: the offset against fp32 in model "
        "pixels, the share of its fine detail kept / the spurious detail added, and the channel-order probe's MAE fed "
        "RGB vs BGR.",
        "",
    ]
    for family in sorted({r.family for r in rows}):
        family_rows = [r for r in rows if r.family == family]
        for dataset in sorted({r.dataset for r in family_rows}):
            subset = [r for r in family_rows if r.dataset == dataset]
            metrics = [m for m in METRIC_ORDER if any(m in r.metrics or m in r.documented for r in subset)]
            lines += [f"## {family} on {dataset}", ""]
            header = ["model", "precision", "runtime", "weights", "images", *metrics]
            header += ["accuracy vs doc", "vs fp32", "conf. MAE mean/worst", "conf. max|d|", "int8 kernels", "deployed",
                       "golden", "structure", "latency ms", "ratios", "sustained", "checks"]
            lines.append(_table_line(header))
            lines.append("|" + "---|" * len(header))
            for r in subset:
                cells = [r.model, r.precision, f"{r.runtime} ({r.provider})" if r.provider else r.runtime, r.weights,
                         str(r.images)]
                cells += [_metric_cell(r, m) for m in metrics]
                cells.append(r.comparison or "-")
                cells.append(_paired_cell(r))
                conf = r.conformance
                cells.append(f"{_fmt(conf.get('mae_mean'), 4)} / {_fmt(conf.get('mae_worst'), 4)}" if conf else "-")
                cells.append(_fmt(conf.get("max_abs_worst"), 3) if conf else "-")
                kernels = r.int8_kernels
                cells.append(f"{kernels.get('path', '?')}: {_fmt(kernels.get('mae_mean'), 4)} / "
                             f"{_fmt(kernels.get('mae_worst'), 4)}" if kernels else "-")
                cells.append(_deployment_cell(r))
                cells.append(str(r.regression.get("status", "-")))
                cells.append(_structure_cell(r))
                cells.append(" / ".join(f"{k} {v:.1f}" for k, v in r.latency_ms.items()) if r.latency_ms else "-")
                cells.append("; ".join(str(p.get("text", "")) for k, p in r.performance.items() if k != "sustained")
                             or "-")
                cells.append(_sustained_cell(r.performance.get("sustained")))
                cells.append(", ".join(f"{k}: {v}" for k, v in sorted(r.outcomes.items())) or "-")
                lines.append(_table_line(cells))
            notes = sorted({f"{r.model} {r.precision}: {n}" for r in subset for n in r.notes})
            if notes:
                lines += ["", *[f"- {n}" for n in notes]]
            lines.append("")
    lines += render_architectures(architectures or {})
    lines += extra or []
    return "\n".join(lines) + "\n"
