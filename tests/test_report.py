"""Reports (:mod:`harness.record.report`): markdown cells with documented value and signed delta, JSON, image strips."""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from harness.record import report
from harness.record.report import Recorder, Row, render_markdown


def _row(**fields) -> Row:
    base = dict(item="isnet-fp16-onnxruntime", model="isnet", family="isnet", precision="fp16",
                runtime="onnxruntime", dataset="ecssd")
    return Row(**{**base, **fields})


def _split(line: str) -> list[str]:
    """The cells of a markdown table line, as GitHub reads them: an escaped \\| stays inside its cell."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def _cells(markdown: str, model: str) -> dict[str, str]:
    """Header -> cell of the table row of ``model``."""
    lines = markdown.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    row = next(line for line in lines if line.startswith(f"| {model} |"))
    names, separator, cells = _split(lines[at]), _split(lines[at + 1]), _split(row)
    assert len(names) == len(separator) == len(cells)
    return dict(zip(names, cells))


@pytest.mark.parametrize(
    "metric, measured, documented, cell",
    [
        ("mae", 0.120, 0.114, "0.120 (doc 0.114, +0.006 ▼)"),  # MAE: higher is worse
        ("mae", 0.110, 0.114, "0.110 (doc 0.114, -0.004)"),
        ("avg_f", 0.680, 0.672, "0.680 (doc 0.672, +0.008)"),
        ("sm", 0.780, 0.789, "0.780 (doc 0.789, -0.009 ▼)"),  # S-measure: lower is worse
        ("miou", 0.8556, 0.8556, "0.856 (doc 0.8556, +0.000)"),
        ("mse", 0.01915, 0.00945, "0.019 (doc 0.00945, +0.010 ▼)"),
        ("mad", 0.01378, 0.01456, "0.014 (doc 0.01456, -0.001)"),
    ],
)
def test_metric_cell_shows_measured_documented_and_signed_delta(metric, measured, documented, cell):
    markdown = render_markdown([_row(metrics={metric: measured}, documented={metric: documented})])
    assert _cells(markdown, "isnet")[metric] == cell


def test_table_keeps_its_columns_when_a_header_or_cell_holds_a_pipe():
    markdown = render_markdown([_row(metrics={"mae": 0.1}, comparison="a|b", conformance={"max_abs_worst": 0.25})])
    cells = _cells(markdown, "isnet")
    assert cells["conf. max|d|"] == "0.250"
    assert cells["accuracy vs doc"] == "a|b"


def test_metric_cell_with_only_one_side():
    markdown = render_markdown([_row(metrics={"mae": 0.05}, documented={"avg_f": 0.672})])
    cells = _cells(markdown, "isnet")
    assert cells["mae"] == "0.050"
    assert cells["avg_f"] == "- (doc 0.672)"
    assert "max_f" not in cells  # columns only for metrics some row has


def test_markdown_groups_by_family_and_dataset_with_columns_in_seed_order():
    rows = [
        _row(metrics={"sm": 0.8, "mae": 0.1}),
        _row(item="unet3p-fp32-onnxruntime", model="unet3p", family="unet3p", precision="fp32",
             dataset="portrait", metrics={"miou": 0.8}),
    ]
    markdown = render_markdown(rows)
    assert markdown.index("## isnet on ecssd") < markdown.index("## unet3p on portrait")
    header = next(line for line in markdown.splitlines() if line.startswith("| model |"))
    assert header.index("| mae |") < header.index("| sm |")


def _item(model: str, precision: str = "fp32") -> SimpleNamespace:
    return SimpleNamespace(
        id=f"{model}-{precision}-onnxruntime",
        model=SimpleNamespace(name=model),
        family=SimpleNamespace(family="u2net"),
        variant=SimpleNamespace(label=precision),
        runtime="onnxruntime",
    )


def test_summary_json_is_written_and_parseable_with_numpy_values(tmp_path):
    recorder = Recorder(tmp_path / "reports")
    row = recorder.row(_item("u2netp"), "ecssd")
    row.metrics = {"mae": np.float32(0.25), "avg_f": np.float64(0.5)}
    row.images = 3
    recorder.note(_item("u2netp"), "ecssd", "seeded weights")
    recorder.note(_item("u2netp"), "ecssd", "seeded weights")
    recorder.outcome("u2netp-fp32-onnxruntime", "accuracy", "passed")
    written = recorder.write()
    assert sorted(p.name for p in written) == ["summary.json", "summary.md"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["summary.json", "summary.md"]
    payload = json.loads((tmp_path / "reports" / "summary.json").read_text(encoding="utf-8"))
    [saved] = payload["rows"]
    assert saved["item"] == "u2netp-fp32-onnxruntime" and saved["images"] == 3
    assert saved["metrics"] == {"mae": 0.25, "avg_f": 0.5}
    assert saved["notes"] == ["seeded weights"] and saved["outcomes"] == {"accuracy": "passed"}
    assert "u2netp" in (tmp_path / "reports" / "summary.md").read_text(encoding="utf-8")


def test_a_failed_report_write_keeps_the_previous_file_and_leaves_no_scratch(tmp_path, monkeypatch):
    recorder = Recorder(tmp_path)
    recorder.row(_item("u2netp"), "ecssd").metrics = {"mae": 0.1}
    recorder.write()
    before = (tmp_path / "summary.json").read_bytes()
    recorder.row(_item("u2netp"), "ecssd").metrics = {"mae": 0.2}

    def replace_fails(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", replace_fails)
    with pytest.raises(OSError, match="disk full"):
        recorder.write()
    monkeypatch.undo()
    assert (tmp_path / "summary.json").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["summary.json", "summary.md"]


def test_nothing_recorded_writes_nothing(tmp_path):
    assert Recorder(tmp_path / "reports").write() == []
    assert not (tmp_path / "reports").exists()


def test_strip_is_a_png_240_high_with_each_panel_scaled_to_that_height(tmp_path):
    rng = np.random.default_rng(0)
    panels = [
        ("input", rng.integers(0, 256, (100, 50, 3), dtype=np.uint8)),  # BGR: width 50 * 2.4 = 120
        ("truth", rng.random((60, 60)).astype(np.float32)),  # [0, 1] map: 240
        ("gray", rng.integers(0, 256, (30, 90), dtype=np.uint8)),  # 90 * 8 = 720
        ("bgra", rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)),  # 240
        ("sliver", np.zeros((480, 1), np.uint8)),  # 0.5 rounds to at least 1
    ]
    path = Recorder(tmp_path).strip("u2netp-int8-percentile-onnxruntime", panels)
    assert path == tmp_path / "strips" / "u2netp-int8-percentile-onnxruntime.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strip = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert strip.shape == (240, 120 + 240 + 720 + 240 + 1, 3)


def test_rows_of_one_item_from_two_workers_merge_into_one(tmp_path):
    """Under pytest-xdist without grouping, an item's checks can run in two workers: each brings its part."""
    first, second = Recorder(tmp_path), Recorder(tmp_path)
    item = SimpleNamespace(id="isnet-int8-kl_divergence-onnxruntime", model=SimpleNamespace(name="isnet"),
                           family=SimpleNamespace(family="isnet"), variant=SimpleNamespace(label="int8-kl_divergence"),
                           runtime="onnxruntime")
    first.row(item, "ecssd").conformance = {"mae_mean": 0.003}
    first.note(item, "ecssd", "seen by the first worker")
    first.outcome(item.id, "conformance", "passed")
    second.row(item, "ecssd").metrics = {"mae": 0.12}
    second.row(item, "ecssd").images = 100
    second.outcome(item.id, "accuracy", "failed")
    merged = Recorder(tmp_path)
    merged.merge(first.export())
    merged.merge(second.export())
    row = merged.sorted_rows()[0]
    assert (row.conformance, row.metrics, row.images) == ({"mae_mean": 0.003}, {"mae": 0.12}, 100)
    assert row.notes == ["seen by the first worker"]
    assert row.outcomes == {"conformance": "passed", "accuracy": "failed"}


def test_structure_figures_are_shown_beside_the_golden_status():
    row = _row(structure={"alignment": {"magnitude_px": 1.18}, "detail": {"kept": 0.55, "spurious": 0.4},
                          "channel_order": {"mae_as_is": 0.036, "mae_swapped": 0.0039}})
    line = next(line for line in render_markdown([row]).splitlines() if line.startswith("| isnet"))
    assert "1.18 px, detail 0.550 / 0.400, RGB 0.0360 vs BGR 0.0039" in line
    assert "| - |" in next(line for line in render_markdown([_row()]).splitlines() if line.startswith("| isnet"))


def test_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    """A final record must be on disk before it is renamed into place, and the rename itself durable."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append("fsync folder" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "fsync file")
        real_fsync(descriptor)

    def replace(source, target) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(report.os, "fsync", fsync)
    monkeypatch.setattr(report.os, "replace", replace)
    target = report.atomic_write(tmp_path / "record.json", "{}")
    assert events == ["fsync file", "rename", "fsync folder"] and target.read_text() == "{}"
