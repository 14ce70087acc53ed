"""Run records and trends (:mod:`harness.record.run_records`, :mod:`harness.record.trend`, ``python -m harness trend``):
night over night.

Records with per-image data are made the way the accuracy check makes them (:func:`per_image.keep_per_image` on
pysodmetrics scores of synthetic maps), so no model runs; older records are plain row dicts without it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import asdict
from functools import cache

import numpy as np
import pytest

from harness.judge.judgement import Bootstrap, intervals
from harness.judge.metrics import Scorer
from harness.record import per_image, run_records, trend, trend_rules
from harness.record.plots import changed_nights
from harness.record.report import Row

MACHINE = {"cpu": "AMD EPYC", "int8": "avx512-vnni", "cores": 2, "id": "avx512-vnni-2c-abc"}


def _row(item: str = "isnet-int8-kl_divergence-onnxruntime", dataset: str = "ecssd", **fields) -> dict:
    base = {"item": item, "model": item.split("-")[0], "precision": "int8-kl_divergence", "runtime": "onnxruntime",
            "dataset": dataset, "images": 100, "metrics": {"mae": 0.120, "avg_f": 0.660},
            "ci": {"mae": [0.110, 0.130], "avg_f": [0.640, 0.680]}, "latency_ms": {"runtime": 66.0},
            "performance": {"speedup_vs_fp32": {"ratio": 2.8, "bound": 1.5}},
            "outcomes": {"conformance": "passed", "accuracy": "passed"}}
    return {**base, **fields}


def _record(started: str, rows: list[dict], machine: dict = MACHINE, commit: str = "abc123", **run) -> dict:
    return {"run": {"started": started, "commit": commit, "machine": machine, **run}, "rows": rows, "work": []}


def test_records_accumulate_and_never_overwrite_each_other(tmp_path):
    record = _record("2026-12-01T01:00:00Z", [_row()])
    first, second = run_records.save(tmp_path, record), run_records.save(tmp_path, record)
    assert first != second and first.parent == second.parent == tmp_path / "history"
    assert [r["run"]["started"] for _, r in run_records.records(tmp_path)] == ["2026-12-01T01:00:00Z"] * 2
    assert first.name.startswith("20261201T010000Z-abc123-avx512-vnni-2c-abc")


def test_an_unchanged_night_reports_nothing_and_exits_zero(tmp_path):
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row()]))
    out = io.StringIO()
    assert trend.main_trend(tmp_path, save=False, out=out) == 0
    assert "no change beyond intervals and thresholds (1 rows compared)" in out.getvalue()


def test_a_metric_beyond_its_interval_a_new_failure_and_a_slower_runtime_are_regressions(tmp_path):
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    worse = _row(metrics={"mae": 0.135, "avg_f": 0.662}, latency_ms={"runtime": 125.0},
                 performance={"speedup_vs_fp32": {"ratio": 1.9, "bound": 1.5}},
                 outcomes={"conformance": "failed", "accuracy": "passed"})
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [worse]))
    lines, got_worse = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert got_worse
    assert "WORSE  isnet-int8-kl_divergence-onnxruntime conformance: new failure (was passed)" in text
    assert ("mae 0.1200 -> 0.1350, outside the previous interval [0.1100, 0.1300] (marginal check: a record "
            "without per-image values)") in text
    assert "avg_f" not in text  # moved inside its interval: noise, not news
    assert "runtime latency 66.0 -> 125.0 ms (+89%)" in text and "speedup_vs_fp32 2.8 -> 1.9" in text


def test_latencies_of_another_machine_are_not_compared_but_metrics_are(tmp_path):
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    other = {**MACHINE, "int8": "avx2", "id": "avx2-2c-def"}
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row(latency_ms={"runtime": 125.0},
                                                                 metrics={"mae": 0.1, "avg_f": 0.66})], other))
    text = "\n".join(trend.trend(tmp_path, draw=False)[0])
    assert "latency" not in text
    assert "better isnet-int8-kl_divergence-onnxruntime on ecssd: mae 0.1200 -> 0.1000" in text


def test_only_a_comparable_run_is_compared_and_the_baseline_too(tmp_path):
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row(images=300)]))  # another image count
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row()]))
    assert "no earlier comparable run" in "\n".join(trend.trend(tmp_path, draw=False)[0])
    assert trend.save_baseline(tmp_path).name == "baseline.json"
    run_records.save(tmp_path, _record("2026-12-03T01:00:00Z", [_row(outcomes={"conformance": "failed"})]))
    lines, worse = trend.trend(tmp_path, draw=False)
    assert worse and sum("new failure" in line for line in lines) == 2  # against the previous run and the baseline


def test_plots_are_drawn_per_model_and_linked_from_the_summary(tmp_path):
    (tmp_path / "summary.md").write_text("# segconform summary\n", encoding="utf-8")
    for day in (1, 2, 3):
        run_records.save(tmp_path, _record(f"2026-12-0{day}T01:00:00Z", [_row(), _row("u2netp-fp32-onnxruntime")]))
    trend.trend(tmp_path)
    plots = sorted(p.name for p in (tmp_path / "history" / "plots").iterdir())
    assert plots == ["isnet.png", "u2netp.png"]
    assert (tmp_path / "history" / "plots" / "isnet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "[isnet](history/plots/isnet.png)" in summary
    trend.trend(tmp_path)
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").count("## Trends over runs") == 1


def test_the_command_line_exits_one_when_something_got_worse(tmp_path):
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row()]))
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row(outcomes={"conformance": "failed"})]))
    run = subprocess.run([sys.executable, "-m", "harness", "trend", "--report-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "new failure" in run.stdout
    empty = subprocess.run([sys.executable, "-m", "harness", "trend", "--report-dir", str(tmp_path / "none")],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "no run records yet" in empty.stderr


def test_the_command_line_fails_on_any_change_with_fail_on_change(tmp_path):
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row(outcomes={"conformance": "failed"})]))
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row()]))
    command = [sys.executable, "-m", "harness", "trend", "--report-dir", str(tmp_path)]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert plain.returncode == 0 and "fixed (was failed)" in plain.stdout
    strict = subprocess.run([*command, "--fail-on-change"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert strict.returncode == 1


def test_a_broken_record_is_named(tmp_path):
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "x.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.json: not a segconform run record"):
        run_records.records(tmp_path)


# --------------------------------------------------------------------------- records that keep per-image values

SIDE = 48
TOLERANCE = {"mae": 0.002, "max_f": 0.005, "avg_f": 0.005, "adp_f": 0.005, "sm": 0.005, "max_em": 0.005,
             "avg_em": 0.005, "adp_em": 0.005, "wfm": 0.005, "miou": 0.005}
WEIGHTS = "npm @imgly/background-removal-data@1.4.5/models/medium"


@cache
def _truths(count: int = 100) -> dict[str, np.ndarray]:
    """Ground truths: one disc per image, of random place and size."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    truths = {}
    for index in range(count):
        cy, cx, radius = rng.uniform(14, 34), rng.uniform(14, 34), rng.uniform(6, 14)
        truths[f"{index:04d}"] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.float64)
    return truths


def _pinned(map_: np.ndarray) -> np.ndarray:
    """pysodmetrics min-max normalises each map: pinning a map's range to [0, 1] (two background corners) keeps a
    shift of its values a shift of its metrics."""
    map_ = np.clip(map_, 0.0, 1.0)
    map_[0, 0], map_[-1, -1] = 0.0, 1.0
    return map_


@cache
def _base_maps() -> dict[str, np.ndarray]:
    """Predictions of varied quality (background level 0.05-0.4, noise 0.05-0.3), so a metric's marginal interval
    over the images is wide, as it is on a real dataset."""
    rng = np.random.default_rng(1)
    maps = {}
    for stem, truth in _truths().items():
        level, noise = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.3)
        maps[stem] = _pinned(level + (0.9 - level) * truth + noise * rng.standard_normal(truth.shape))
    return maps


def _accuracy_row(maps: dict[str, np.ndarray], task: str = "saliency", weights: str = WEIGHTS,
                  item: str = "isnet-fp32-onnxruntime") -> dict:
    """A row as test_accuracy records it: metrics, intervals and, through keep_per_image, the per-image record."""
    scorer = Scorer(task)
    truths = _truths()
    for stem, map_ in sorted(maps.items()):
        scorer.add(map_, truths[stem], stem)
    scores = scorer.scores()
    row = Row(item=item, model=item.split("-")[0], family="isnet", precision="fp32", runtime="onnxruntime",
              dataset="ecssd", weights=weights)
    row.metrics, row.images = scores.results(), len(scores)
    row.ci = {m: list(v) for m, v in intervals(scores, Bootstrap(), f"{item}/ecssd").items()}
    per_image.keep_per_image(row, scores, maps, {m: t for m, t in TOLERANCE.items() if m in scores.metrics})
    return asdict(row)


@cache
def _base_row() -> str:
    return json.dumps(_accuracy_row(_base_maps()))


def _nights(tmp_path, *rows: dict) -> None:
    """One record per night, after those already there, each with the given row."""
    for day, row in enumerate(rows, start=len(run_records.records(tmp_path)) + 1):
        run_records.save(tmp_path, _record(f"2026-12-{day:02d}T01:00:00Z", [row]))


def _changed(maps: dict[str, np.ndarray], shifts: dict[str, float]) -> dict[str, np.ndarray]:
    """``maps`` with a quarter of the named images (the top-left block) raised by the given amount."""
    out = dict(maps)
    for stem, shift in shifts.items():
        out[stem] = maps[stem].copy()
        out[stem][: SIDE // 2, : SIDE // 2] += shift
        out[stem] = _pinned(out[stem])
    return out


def test_an_accuracy_row_keeps_each_images_values_hash_and_thumbnail_compactly():
    row = _accuracy_row(_base_maps())
    kept = per_image.PerImage.from_row(row)
    assert kept is not None and kept.stems == tuple(sorted(_truths()))
    assert set(kept.values) == {"mae", "avg_f", "adp_f", "sm", "avg_em", "adp_em", "wfm"}  # the means over images
    assert np.isclose(float(kept.values["mae"].mean(dtype=np.float64)), row["metrics"]["mae"], atol=1e-6)
    assert kept.thumbnails.shape == (100, per_image.THUMBNAIL, per_image.THUMBNAIL) and kept.hashes.shape == (100, 6)
    assert len({h.tobytes() for h in kept.hashes}) == 100
    assert row["tolerance"]["mae"] == 0.002
    stored = len(json.dumps(row["per_image"], indent=1))
    assert stored < 160 * 100, f"{stored / 100:.0f} bytes per image"  # measured: 143 for ISNet's 7 metrics


def test_two_nights_of_unchanged_outputs_report_0_images_changed(tmp_path):
    _nights(tmp_path, json.loads(_base_row()), json.loads(_base_row()))
    out = io.StringIO()
    assert trend.main_trend(tmp_path, save=False, out=out, fail_on_change=True) == 0
    expected = "no change beyond intervals and thresholds (1 rows compared; outputs of 0 of 100 images changed)"
    assert expected in out.getvalue()


def test_float_noise_of_another_cpu_kind_changes_hashes_but_no_image(tmp_path):
    rng = np.random.default_rng(3)
    noisy = {s: _pinned(m + rng.normal(0, 2e-4, m.shape)) for s, m in _base_maps().items()}
    _nights(tmp_path, json.loads(_base_row()), _accuracy_row(noisy))
    lines, failed = trend.trend(tmp_path, draw=False, fail_on_change=True)
    text = "\n".join(lines)
    assert not failed and "outputs of 0 of 100 images changed" in text
    assert "images differ, all within the golden budget" in text  # the 8-bit maps did differ


def test_outputs_that_changed_are_named_and_fail_only_with_fail_on_change(tmp_path):
    changed = _changed(_base_maps(), {"0011": 0.1, "0042": 0.4, "0077": 0.1})
    _nights(tmp_path, json.loads(_base_row()), _accuracy_row(changed))
    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert not failed and "WORSE" not in text
    assert "change isnet-fp32-onnxruntime on ecssd: outputs of 3 of 100 images changed (largest MAE" in text
    assert "on image 0042;" in text
    assert "paired differences on 100 images, within tolerance: mae +0.00" in text  # the deltas, reported
    assert trend.trend(tmp_path, draw=False, fail_on_change=True)[1]


def _worsened(maps: dict[str, np.ndarray], amount: float) -> dict[str, np.ndarray]:
    """Every image's background raised by ``amount``: MAE worse by about 0.8 x amount on every image."""
    return {s: _pinned(m + amount * (1 - _truths()[s])) for s, m in maps.items()}


def test_a_paired_worsening_inside_the_marginal_interval_is_a_regression(tmp_path):
    old, new = json.loads(_base_row()), _accuracy_row(_worsened(_base_maps(), 0.006))
    low, high = old["ci"]["mae"]
    assert low <= new["metrics"]["mae"] <= high  # what the marginal check saw: nothing
    _nights(tmp_path, old, new)
    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert failed
    assert (f"WORSE  isnet-fp32-onnxruntime on ecssd: mae {old['metrics']['mae']:.4f} -> {new['metrics']['mae']:.4f}, "
            "paired difference on 100 images +0.00") in text
    assert "wholly beyond the tolerance 0.002" in text and "outputs of 100 of 100 images changed" in text


def test_a_paired_improvement_is_a_change_not_a_regression(tmp_path):
    _nights(tmp_path, _accuracy_row(_worsened(_base_maps(), 0.006)), json.loads(_base_row()))
    out = io.StringIO()
    assert trend.main_trend(tmp_path, save=False, out=out) == 0
    assert "better isnet-fp32-onnxruntime on ecssd: mae" in out.getvalue() and "WORSE" not in out.getvalue()
    assert trend.main_trend(tmp_path, save=False, out=io.StringIO(), fail_on_change=True) == 1


def test_miou_is_paired_through_each_images_confusion_matrix(tmp_path):
    rng = np.random.default_rng(5)
    flipped = {s: np.where(rng.random(m.shape) < 0.05, 1.0 - m, m) for s, m in _base_maps().items()}
    _nights(tmp_path, _accuracy_row(_base_maps(), "segmentation"), _accuracy_row(flipped, "segmentation"))
    lines, failed = trend.trend(tmp_path, draw=False)
    assert failed and any(line.startswith("  WORSE  isnet-fp32-onnxruntime on ecssd: miou") for line in lines)


def test_rows_of_other_weights_or_other_images_are_not_compared_and_say_why(tmp_path):
    base = json.loads(_base_row())
    _nights(tmp_path, base, _accuracy_row(_worsened(_base_maps(), 0.006), weights="seeded"))
    lines, failed = trend.trend(tmp_path, draw=False)
    assert not failed and ("no earlier comparable run (none shares a row of the same item, dataset, weights and "
                           "images; the previous run") in "\n".join(lines)
    assert f"isnet-fp32-onnxruntime on ecssd: weights changed: {WEIGHTS} -> seeded)" in "\n".join(lines)
    trend.save_baseline(tmp_path)
    _nights(tmp_path, base)
    assert (f"metrics and outputs not compared: weights changed: seeded -> {WEIGHTS}"
            in "\n".join(trend.trend(tmp_path, draw=False)[0]))  # against that baseline
    elsewhere = json.loads(_base_row())
    elsewhere["per_image"]["stems"] = [f"x{stem}" for stem in elsewhere["per_image"]["stems"]]
    assert trend_rules.not_comparable(elsewhere, base) == "different images: 0 shared (100 -> 100 scored)"
    assert trend_rules.not_comparable(json.loads(_base_row()), base) is None


def test_runs_that_share_some_images_are_compared_on_those(tmp_path):
    half = {stem: map_ for stem, map_ in _changed(_base_maps(), {"0042": 0.4}).items() if int(stem) < 50}
    _nights(tmp_path, json.loads(_base_row()), _accuracy_row(half))
    text = "\n".join(trend.trend(tmp_path, draw=False)[0])
    assert "compared on the 50 images both runs scored (100 -> 50)" in text
    assert "outputs of 1 of 50 images changed" in text


def test_an_older_record_without_per_image_values_is_compared_by_the_marginal_interval(tmp_path):
    old = {k: v for k, v in json.loads(_base_row()).items() if k not in ("per_image", "tolerance")}
    worse = _accuracy_row(_worsened(_base_maps(), 0.05))
    _nights(tmp_path, old, worse)
    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert failed and "outside the previous interval" in text
    assert "marginal check: a record without per-image values" in text
    assert "outputs of" not in text


def test_the_baseline_is_compared_the_same_way(tmp_path):
    _nights(tmp_path, json.loads(_base_row()))
    trend.save_baseline(tmp_path)
    _nights(tmp_path, json.loads(_base_row()), _accuracy_row(_changed(_base_maps(), {"0042": 0.4})))
    lines, _ = trend.trend(tmp_path, draw=False)
    assert sum(line.startswith("  change isnet-fp32-onnxruntime on ecssd: outputs of 1 of 100 images changed")
               for line in lines) == 2  # against the previous run and against the baseline


def test_plots_mark_the_nights_that_changed(tmp_path):
    base = json.loads(_base_row())
    _nights(tmp_path, base, base, _accuracy_row(_changed(_base_maps(), {"0042": 0.4})), base,
            _accuracy_row(_worsened(_base_maps(), 0.006)))
    assert changed_nights([r for _, r in run_records.records(tmp_path)]) == {2: {"isnet": False},
                                                                                 3: {"isnet": False},
                                                                                 4: {"isnet": True}}
    trend.trend(tmp_path)
    assert (tmp_path / "history" / "plots" / "isnet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- lost coverage, vanished items, judged rows


def _two_nights(tmp_path, before: list[dict], after: list[dict], **run) -> tuple[str, int]:
    """Two records of the same case folder and machine; the trend's text and the command's exit status."""
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", before, **run))
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", after, **run))
    out = io.StringIO()
    status = trend.main_trend(tmp_path, save=False, out=out)
    return out.getvalue(), status


@pytest.mark.parametrize(("outcome", "said"), [("skipped", "lost coverage: now skipped (was passed)"),
                                               ("xfail", "lost coverage: now xfail (was passed)"),
                                               ("error", "new error (was passed)"),
                                               ("failed", "new failure (was passed)")])
def test_a_check_that_passed_and_no_longer_does_exits_one(tmp_path, outcome, said):
    text, status = _two_nights(tmp_path, [_row()], [_row(outcomes={"conformance": outcome, "accuracy": "passed"})])
    assert status == 1 and f"WORSE  isnet-int8-kl_divergence-onnxruntime conformance: {said}" in text, text


def test_a_failure_hidden_by_a_skip_is_lost_coverage_and_a_skip_judged_again_is_better(tmp_path):
    failing = _row(outcomes={"conformance": "failed", "accuracy": "skipped"})
    text, status = _two_nights(tmp_path, [failing], [_row(outcomes={"conformance": "skipped", "accuracy": "passed"})])
    assert status == 1 and "conformance: lost coverage: now skipped (was failed)" in text
    assert "better isnet-int8-kl_divergence-onnxruntime accuracy: judged again: passed (was skipped)" in text


def test_an_item_or_a_check_that_vanished_exits_one(tmp_path):
    other = _row("u2netp-fp32-onnxruntime")
    text, status = _two_nights(tmp_path, [_row(), other], [_row(outcomes={"conformance": "passed"})])
    assert status == 1, text
    assert ("WORSE  u2netp-fp32-onnxruntime: vanished (the older run had its rows on ecssd and its checks "
            "accuracy passed, conformance passed)") in text
    assert "WORSE  isnet-int8-kl_divergence-onnxruntime accuracy: vanished (was passed)" in text


def test_a_row_of_an_item_that_vanished_on_one_dataset_exits_one(tmp_path):
    text, status = _two_nights(tmp_path, [_row(), _row(dataset="dis5k")], [_row()])
    assert status == 1 and "WORSE  isnet-int8-kl_divergence-onnxruntime on dis5k: row vanished" in text, text


def test_vanished_items_are_found_against_the_previous_run_of_these_case_files_even_when_no_row_compares(tmp_path):
    run = {"cases_dir": "/repo/cases", "complete": True}
    text, status = _two_nights(tmp_path, [_row(), _row("u2netp-fp32-onnxruntime")], [_row(images=300)], **run)
    assert status == 1, text
    assert "no earlier comparable run" in text  # by rows: other images
    assert "against the previous complete run of these case files (cases/)" in text
    assert "WORSE  u2netp-fp32-onnxruntime: vanished" in text


def test_what_another_case_folder_ran_does_not_vanish(tmp_path):
    both = [_row(), _row("u2netp-fp32-onnxruntime")]
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", both, cases_dir="/repo/cases"))
    run_records.save(tmp_path, _record("2026-12-03T01:00:00Z", [_row()], {**MACHINE, "id": "avx2-2c-def"},
                                   cases_dir="/elsewhere"))
    lines, failed = trend.trend(tmp_path, draw=False)
    assert not failed and "vanished" not in "\n".join(lines)


def test_an_item_that_vanished_across_a_runtime_upgrade_and_a_moved_checkout_is_still_reported(tmp_path):
    """The machine id hashes ONNX Runtime's version: after an upgrade, in a checkout moved elsewhere, the trend still
    compares with the last complete run of the same case folder, says what changed, and reports what vanished."""
    before = _record("2026-12-01T01:00:00Z", [_row(), _row("u2netp-fp32-onnxruntime")], cases_dir="/old/repo/cases",
                     tools={"onnxruntime": "1.22.0", "torch": "2.13.0"}, complete=True)
    after = _record("2026-12-02T01:00:00Z", [_row(images=300)], {**MACHINE, "id": "avx512-vnni-2c-new"},
                    cases_dir="/new/checkout/cases", tools={"onnxruntime": "1.23.0", "torch": "2.13.0"}, complete=True)
    run_records.save(tmp_path, before)
    run_records.save(tmp_path, after)
    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert failed, text
    assert "WORSE  u2netp-fp32-onnxruntime: vanished" in text
    assert ("machine or runtime changed: machine avx512-vnni-2c-abc -> avx512-vnni-2c-new; onnxruntime 1.22.0 -> "
            "1.23.0") in text


def test_a_narrower_selection_is_named_beside_what_vanished(tmp_path):
    selection = {"args": ["cases"], "keyword": "", "markers": ""}
    run_records.save(tmp_path, _record("2026-12-01T01:00:00Z", [_row(), _row("u2netp-fp32-onnxruntime")],
                                   selection=selection))
    run_records.save(tmp_path, _record("2026-12-02T01:00:00Z", [_row()], selection={**selection, "keyword": "isnet"}))
    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert failed and "u2netp-fp32-onnxruntime: vanished" in text
    assert "the runs selected differently (keyword '' then, 'isnet' now)" in text


DEPLOYED = {"int8_path": "avx512-vnni", "saturating_u8s8": False, "scheme": "U8S8", "stated_loss": False,
            "conformance": {"images": 100, "mae_mean": 0.0053, "mae_worst": 0.0146, "max_abs_worst": 0.31},
            "vs_exact": {"images": 100, "mae_mean": 0.0021, "mae_worst": 0.006, "max_abs_worst": 0.2},
            "vs_fp32": {"images": 100, "floor": {}, "delta": {
                "avg_f": {"value": 0.0017, "ci": [-0.0011, 0.0045], "expected": -0.0003, "passed": True}}}}


def _deployed(**changes) -> dict:
    deployment = json.loads(json.dumps(DEPLOYED))
    for path, value in changes.items():
        *outer, last = path.split("__")
        place = deployment
        for key in outer:
            place = place[key]
        place[last] = value
    return _row(conformance={"images": 100, "mae_mean": 0.0049, "mae_worst": 0.013, "max_abs_worst": 0.3},
                deployment=deployment)


def test_a_deployment_row_whose_conformance_or_paired_deltas_worsened_exits_one(tmp_path):
    worse = _deployed(conformance__mae_mean=0.0120, vs_fp32__delta__avg_f={"value": -0.0200, "ci": [-0.024, -0.016],
                                                                           "expected": -0.0003, "passed": True})
    text, status = _two_nights(tmp_path, [_deployed()], [worse])
    assert status == 1, text
    assert ("WORSE  isnet-int8-kl_divergence-onnxruntime on ecssd: deployed conformance mae_mean 0.0053 -> 0.012 "
            "(moved by more than 0.003, what may separate two runs of an unchanged item)") in text
    assert ("WORSE  isnet-int8-kl_divergence-onnxruntime on ecssd: deployed vs fp32 avg_f +0.0017 -> -0.0200, "
            "outside the previous interval [-0.0011, +0.0045]") in text


def test_a_better_build_conformance_is_a_change_and_another_int8_path_is_not_compared(tmp_path):
    better = _deployed(int8_path="avx2", conformance__mae_mean=0.02)
    better["conformance"]["mae_worst"] = 0.007
    text, status = _two_nights(tmp_path, [_deployed()], [better])
    assert status == 0, text
    assert "better isnet-int8-kl_divergence-onnxruntime on ecssd: conformance mae_worst 0.013 -> 0.007" in text
    assert "deployed figures not compared: int8 path avx512-vnni -> avx2" in text
    assert trend.trend(tmp_path, draw=False, fail_on_change=True)[1]


def test_an_expected_loss_is_judged_like_any_row_its_outcome_and_its_figures(tmp_path):
    collapse = {"images": 100, "floor": {}, "delta": {"mae": {"value": 0.146, "ci": [0.139, 0.153],
                                                               "expected": [0.10, 0.20], "passed": True}}}
    healthy = _row("u2netp-int8-percentile-onnxruntime", vs_fp32=collapse,
                   conformance={"images": 100, "mae_mean": 0.47, "mae_worst": 0.6, "max_abs_worst": 1.0})
    deeper = json.loads(json.dumps(healthy))
    deeper["vs_fp32"]["delta"]["mae"].update(value=0.19, ci=[0.18, 0.2])
    deeper["conformance"]["mae_mean"] = 0.52
    deeper["outcomes"] = {"conformance": "xfail", "accuracy": "passed"}
    text, status = _two_nights(tmp_path, [healthy], [deeper])
    assert status == 1, text
    assert "WORSE  u2netp-int8-percentile-onnxruntime conformance: lost coverage: now xfail (was passed)" in text
    assert "u2netp-int8-percentile-onnxruntime on ecssd: conformance mae_mean 0.47 -> 0.52" in text
    assert "u2netp-int8-percentile-onnxruntime on ecssd: vs fp32 mae +0.1460 -> +0.1900" in text


def test_a_nan_where_a_figure_was_is_worse(tmp_path):
    text, status = _two_nights(tmp_path, [_deployed()], [_deployed(vs_exact__mae_mean=float("nan"))])
    assert status == 1 and "deployed kernels vs the exact build mae_mean 0.0021 -> nan" in text, text


# --------------------------------------------------------------------------- seeded items keep fingerprints too


def _seeded_row(maps: dict[str, np.ndarray]) -> dict:
    """A seeded item's row as test_conformance leaves it: no metrics, the fingerprints of its candidate maps."""
    row = Row(item="isnet-fp32-onnxruntime", model="isnet", family="isnet", precision="fp32", runtime="onnxruntime",
              dataset="ecssd", weights="seeded (seed 0)", images=len(maps))
    per_image.keep_fingerprints(row, maps)
    return asdict(row)


def test_a_seeded_row_keeps_each_images_hash_and_thumbnail_without_metric_values():
    row = _seeded_row(_base_maps())
    kept = per_image.PerImage.from_row(row)
    assert kept is not None and kept.stems == tuple(sorted(_base_maps())) and kept.values == {}
    reference = per_image.PerImage.from_row(json.loads(_base_row()))
    assert np.array_equal(kept.hashes, reference.hashes) and np.array_equal(kept.thumbnails, reference.thumbnails)
    assert not row["metrics"] and not row["tolerance"]


def test_seeded_outputs_that_changed_beyond_the_golden_budget_are_a_change(tmp_path):
    _nights(tmp_path, _seeded_row(_base_maps()), _seeded_row(_base_maps()))
    lines, failed = trend.trend(tmp_path, draw=False, fail_on_change=True)
    assert not failed and "outputs of 0 of 100 images changed" in "\n".join(lines)
    _nights(tmp_path, _seeded_row(_changed(_base_maps(), {"0011": 0.1, "0042": 0.4, "0077": 0.1})))
    lines, failed = trend.trend(tmp_path, draw=False)
    text = "\n".join(lines)
    assert not failed and "change isnet-fp32-onnxruntime on ecssd: outputs of 3 of 100 images changed" in text
    assert trend.trend(tmp_path, draw=False, fail_on_change=True)[1]
