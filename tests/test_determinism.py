"""Two runs on the same machine give identical summary.json metrics: one real item (u2netp's official weights,
fp32 and fp16 against it, on ECSSD images and the synthetic set), run in two fresh processes.

Where ``SEGCONFORM_SUITE_REPORT`` names the record of a suite run made with the same options (``scripts/segconform
test`` runs the fast pass, ``--eval-limit 4 --calibration-samples 8``, before the tests), that run is the first of
the two: its rows of these items are compared with one new run's, instead of running the items twice more. The fast
pass runs its sessions in-process (``--isolation none``) and the new run in worker processes (the default), so the
comparison also shows that isolation changes no metric. The new run gets the first run's thread count (its
recorded ``--threads``, through ``OMP_NUM_THREADS`` so that PyTorch's eager source takes it too): the tests run with
one thread per runtime, and PyTorch's float sums differ in their last bits between one thread and two.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from suite_record import subprocess_env, suite_summary

ROOT = Path(__file__).resolve().parents[1]
#: The items compared (the fast pass's record has every item; a run here, these two).
ITEMS = ("u2netp-fp32-onnxruntime", "u2netp-fp16-onnxruntime")


def _run(report_dir: Path, threads: int | None) -> dict:
    command = [sys.executable, "-m", "pytest", "cases/u2net.yaml", "-p", "no:cacheprovider", "-q",
               "-k", "u2netp and (fp32 or fp16) and (accuracy or conformance)", "--eval-limit", "4",
               "--calibration-samples", "8", "--benchmark-disable", "--report-dir", str(report_dir)]
    env = {k: v for k, v in subprocess_env().items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_two_runs_give_identical_metrics_intervals_and_conformance(tmp_path: Path) -> None:
    if not os.environ.get("SEGCONFORM_DATA_ROOT"):
        pytest.skip("SEGCONFORM_DATA_ROOT is not set (the real item runs on ecssd-300)")
    first = suite_summary() or _run(tmp_path / "one", None)
    second = _run(tmp_path / "two", first["run"]["options"]["threads"])

    def measured(summary: dict) -> dict:
        return {(r["item"], r["dataset"]): {k: r[k] for k in ("metrics", "ci", "vs_fp32", "conformance", "images")}
                for r in summary["rows"] if r["item"] in ITEMS}

    rows = measured(first)
    assert {key[0] for key in rows} == set(ITEMS), sorted(rows)
    assert {key[1] for key in rows} == {"ecssd", "synthetic"} and any(r["ci"] for r in rows.values())
    assert any(r["vs_fp32"] for r in rows.values())
    assert measured(second) == rows
