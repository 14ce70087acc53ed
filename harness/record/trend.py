"""``python -m harness trend``: every run leaves a record, and the trend compares night over night.

:func:`trend` compares the newest record (:mod:`harness.record.run_records`) with the previous comparable one,
with the previous complete run of the same case folder (by name, on any machine) when that is another
(:mod:`harness.record.comparison`), and with the stored baseline (``reports/history/baseline.json``, saved with
``trend --save-baseline``, :func:`save_baseline`), in the same way (the rules: :mod:`harness.record.trend_rules`).
An incomplete newest run, or something worse, makes the command exit with status 1, and with ``--fail-on-change``
any change does. It also draws one PNG per model and links them from ``summary.md`` (:mod:`harness.record.plots`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .comparison import against_earlier, compare
from .plots import draw_plots, link_plots
from .report import atomic_write
from .run_records import BASELINE, HISTORY, load, progress_lines, records
from .trend_rules import Trend


def _verdict(newest: Mapping[str, Any], results: Sequence[Trend], fail_on_change: bool) -> tuple[bool, str]:
    """Whether the trend fails, and the line that says so and why."""
    reasons = ["the newest run is incomplete"] if newest["run"].get("complete") is False else []
    worse = sum(len(result.worse) for result in results)
    if worse:
        reasons.append(f"{worse} finding{'s' if worse != 1 else ''} worse")
    others = sum(len(result.changes) for result in results) - worse
    if fail_on_change and others:
        reasons.append(f"{others} other change{'s' if others != 1 else ''} (--fail-on-change)")
    return bool(reasons), f"trend fails (exit 1): {'; '.join(reasons)}" if reasons else "trend passes (exit 0)"


def trend(report_dir: Path, draw: bool = True, fail_on_change: bool = False) -> tuple[list[str], bool]:
    """The newest run against the previous comparable one, the previous complete run of the same case folder (on any
    machine), and the baseline: (lines, failed). Failed on an incomplete newest run, on anything worse (a new failure,
    lost coverage, something vanished, a judged figure, metric or latency gone worse), and with ``fail_on_change``
    on any change; the last line says which."""
    found = records(report_dir)
    if not found:
        raise ValueError(f"{report_dir / HISTORY}: no run records yet; run the suite first")
    newest_path, newest = found[-1]
    lines = [f"newest run: {newest_path.name} ({newest['run']['started']}, commit {newest['run']['commit']}, "
             f"machine {newest['run']['machine'].get('id')})", *progress_lines(newest)]
    results, said = against_earlier(found)
    lines += said
    baseline_path = report_dir / HISTORY / BASELINE
    if baseline_path.is_file():
        results.append(compare(newest, load(baseline_path), f"baseline {baseline_path.name}"))
        lines += results[-1].lines()
    else:
        lines.append(f"no stored baseline ({baseline_path}; save one with `python -m harness trend --save-baseline`)")
    if draw:
        plots = draw_plots(report_dir, [record for _, record in found])
        lines.append(f"plots: {', '.join(str(p) for p in plots)}" if plots else "plots: none (no rows to draw)")
        link_plots(report_dir, plots)
    failed, verdict = _verdict(newest, results, fail_on_change)
    return [*lines, verdict], failed


def save_baseline(report_dir: Path) -> Path:
    """Store the newest run record as the baseline later trends compare with."""
    found = records(report_dir)
    if not found:
        raise ValueError(f"{report_dir / HISTORY}: no run records yet; run the suite first")
    if found[-1][1]["run"].get("complete") is False:
        raise ValueError(f"{found[-1][0]}: the newest run is incomplete; complete it with `pytest ... --resume` "
                         "before making it the baseline")
    return atomic_write(report_dir / HISTORY / BASELINE, found[-1][0].read_text(encoding="utf-8"))


def main_trend(report_dir: Path, save: bool, out: Any = sys.stdout, fail_on_change: bool = False) -> int:
    """``python -m harness trend``: 1 on an incomplete newest run or anything worse (on any change with
    ``fail_on_change``), else 0; no record at all, or an unreadable one, is a ValueError (the command's exit 2)."""
    if save:
        print(f"baseline saved: {save_baseline(report_dir)}", file=out)
        return 0
    lines, failed = trend(report_dir, fail_on_change=fail_on_change)
    print("\n".join(lines), file=out)
    return 1 if failed else 0
