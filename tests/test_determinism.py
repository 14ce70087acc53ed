"""Two runs on the same machine give identical summary.json metrics: one real item (u2netp's official weights,
fp32 and int8 against it, on ECSSD images and the synthetic set), run twice in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(report_dir: Path) -> dict:
    command = [sys.executable, "-m", "pytest", "cases/u2net.yaml", "-p", "no:cacheprovider", "-q",
               "-k", "u2netp and (fp32 or fp16) and (accuracy or conformance)", "--eval-limit", "6",
               "--benchmark-disable", "--report-dir", str(report_dir)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_two_runs_give_identical_metrics_intervals_and_conformance(tmp_path: Path) -> None:
    if not os.environ.get("SEGCONFORM_DATA_ROOT"):
        pytest.skip("SEGCONFORM_DATA_ROOT is not set (the real item runs on ecssd-300)")
    first, second = _run(tmp_path / "one"), _run(tmp_path / "two")

    def measured(summary: dict) -> dict:
        return {(r["item"], r["dataset"]): {k: r[k] for k in ("metrics", "ci", "vs_fp32", "conformance", "images")}
                for r in summary["rows"]}

    rows = measured(first)
    assert {key[1] for key in rows} == {"ecssd", "synthetic"} and any(r["ci"] for r in rows.values())
    assert any(r["vs_fp32"] for r in rows.values())
    assert measured(second) == rows
