"""Run records and trends (:mod:`harness.history`, ``python -m harness trend``): night over night."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from harness import history

MACHINE = {"cpu": "AMD EPYC", "int8": "avx512-vnni", "cores": 2, "id": "avx512-vnni-2c-abc"}


def _row(item: str = "isnet-int8-kl_divergence-onnxruntime", dataset: str = "ecssd", **fields) -> dict:
    base = {"item": item, "model": item.split("-")[0], "precision": "int8-kl_divergence", "runtime": "onnxruntime",
            "dataset": dataset, "images": 100, "metrics": {"mae": 0.120, "avg_f": 0.660},
            "ci": {"mae": [0.110, 0.130], "avg_f": [0.640, 0.680]}, "latency_ms": {"runtime": 66.0},
            "performance": {"speedup_vs_fp32": {"ratio": 2.8, "bound": 1.5}},
            "outcomes": {"conformance": "passed", "accuracy": "passed"}}
    return {**base, **fields}


def _record(started: str, rows: list[dict], machine: dict = MACHINE, commit: str = "abc123") -> dict:
    return {"run": {"started": started, "commit": commit, "machine": machine}, "rows": rows, "work": []}


def test_records_accumulate_and_never_overwrite_each_other(tmp_path):
    record = _record("2026-12-01T01:00:00Z", [_row()])
    first, second = history.save(tmp_path, record), history.save(tmp_path, record)
    assert first != second and first.parent == second.parent == tmp_path / "history"
    assert [r["run"]["started"] for _, r in history.records(tmp_path)] == ["2026-12-01T01:00:00Z"] * 2
    assert first.name.startswith("20261201T010000Z-abc123-avx512-vnni-2c-abc")


def test_an_unchanged_night_reports_nothing_and_exits_zero(tmp_path):
    history.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    history.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row()]))
    out = io.StringIO()
    assert history.main_trend(tmp_path, save=False, out=out) == 0
    assert "no change beyond intervals and thresholds (1 rows compared)" in out.getvalue()


def test_a_metric_beyond_its_interval_a_new_failure_and_a_slower_runtime_are_regressions(tmp_path):
    history.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    worse = _row(metrics={"mae": 0.135, "avg_f": 0.662}, latency_ms={"runtime": 125.0},
                 performance={"speedup_vs_fp32": {"ratio": 1.9, "bound": 1.5}},
                 outcomes={"conformance": "failed", "accuracy": "passed"})
    history.save(tmp_path, _record("2026-12-02T01:00:00Z", [worse]))
    lines, got_worse = history.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert got_worse
    assert "WORSE  isnet-int8-kl_divergence-onnxruntime conformance: new failure (was passed)" in text
    assert "mae 0.1200 -> 0.1350, outside the previous interval [0.1100, 0.1300]" in text
    assert "avg_f" not in text  # moved inside its interval: noise, not news
    assert "runtime latency 66.0 -> 125.0 ms (+89%)" in text and "speedup_vs_fp32 2.8 -> 1.9" in text


def test_latencies_of_another_machine_are_not_compared_but_metrics_are(tmp_path):
    history.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    other = {**MACHINE, "int8": "avx2", "id": "avx2-2c-def"}
    history.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row(latency_ms={"runtime": 125.0},
                                                                 metrics={"mae": 0.1, "avg_f": 0.66})], other))
    text = "\n".join(history.trend(tmp_path, draw=False)[0])
    assert "latency" not in text and "better isnet-int8-kl_divergence-onnxruntime on ecssd: mae 0.1200 -> 0.1000" in text


def test_only_a_comparable_run_is_compared_and_the_baseline_too(tmp_path):
    history.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row(images=300)]))  # another image count
    history.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row()]))
    assert "no earlier comparable run" in "\n".join(history.trend(tmp_path, draw=False)[0])
    assert history.save_baseline(tmp_path).name == "baseline.json"
    history.save(tmp_path, _record("2026-12-03T01:00:00Z", [_row(outcomes={"conformance": "failed"})]))
    lines, worse = history.trend(tmp_path, draw=False)
    assert worse and sum("new failure" in line for line in lines) == 2  # against the previous run and the baseline


def test_plots_are_drawn_per_model_and_linked_from_the_summary(tmp_path):
    (tmp_path / "summary.md").write_text("# segconform summary\n", encoding="utf-8")
    for day in (1, 2, 3):
        history.save(tmp_path, _record(f"2026-12-0{day}T01:00:00Z", [_row(), _row("u2netp-fp32-onnxruntime")]))
    history.trend(tmp_path)
    plots = sorted(p.name for p in (tmp_path / "history" / "plots").iterdir())
    assert plots == ["isnet.png", "u2netp.png"]
    assert (tmp_path / "history" / "plots" / "isnet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "[isnet](history/plots/isnet.png)" in summary
    history.trend(tmp_path)
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").count("## Trends over runs") == 1


def test_the_command_line_exits_one_when_something_got_worse(tmp_path):
    history.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    history.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row(outcomes={"conformance": "failed"})]))
    run = subprocess.run([sys.executable, "-m", "harness", "trend", "--report-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "new failure" in run.stdout
    empty = subprocess.run([sys.executable, "-m", "harness", "trend", "--report-dir", str(tmp_path / "none")],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "no run records yet" in empty.stderr


def test_a_broken_record_is_named(tmp_path):
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "x.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.json: not a segconform run record"):
        history.records(tmp_path)
