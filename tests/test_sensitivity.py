"""The checks fail broken runtimes: ``python -m harness sensitivity`` on the real ISNet and u2netp, as CI runs it.

Each run puts the healthy item, the control (``+identity``) and every fault of ``harness/runtimes/faults.py`` (one
of each kind on u2netp's int8 collapse) through the normal checks on the synthetic set plus a few images of the data
root's ECSSD (only the synthetic set without one). It must exit 0: the control passes every check, and no fault
whose effect exceeds the allowance slips through. The structural faults (one-pixel shift, half resolution) must be
caught at int8, where no metric budget can see them.

The runs are ISNet's static int8 (the one trained, non-collapsing static int8 build: every int8 check), u2netp's
int8 collapse and u2netp's fp32 (the fp32 path: conformance against golden masks, no deployment verdict). ISNet's
fp32 run was dropped from CI (46 s): its checks and faults are u2netp's fp32 ones on another network, and ISNet's
faults are caught at int8 here; ``python -m harness sensitivity isnet`` runs it on demand. The runs go in-process
(``--isolation none``, 11% less time): no fault here crashes or hangs a worker, and the outcomes are the same
(ISNet int8: identical verdicts and checks caught-by, both ways).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from suite_record import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
RUNS = [("isnet", "int8"), ("u2netp", "fp32"), ("u2netp", "int8")]
#: u2netp's only static int8 item is the seed's documented percentile collapse, judged by the loss its case states.
COLLAPSE = ("u2netp", "int8")
#: The faults run on the collapse: one each of output, input, latency, deployed-kernel and dropped-output faults. A
#: fault whose effect stays inside the stated loss is a miss within the allowance (listed, exit 0), one that takes
#: the item beyond it must be caught. The other faults would take the same branches at about 10 s each.
COLLAPSE_FAULTS = ("shift", "bgr", "slow", "kernels", "nan")


@pytest.mark.slow
@pytest.mark.parametrize("model, precision", RUNS, ids=[f"{m}-{p}" for m, p in RUNS])
def test_sensitivity_catches_every_fault_that_matters_and_no_false_alarm(model, precision, tmp_path):
    report = tmp_path / "report"
    faults = ["--faults", ",".join(COLLAPSE_FAULTS)] if (model, precision) == COLLAPSE else []
    command = [sys.executable, "-m", "harness", "sensitivity", model, "--precision", precision, *faults,
               "--report-dir", str(report), "--", "--eval-limit", "4", "--calibration-samples", "8",
               "--latency-rounds", "5", "--bootstrap-resamples", "200", "--isolation", "none", "-q"]
    done = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=1200)
    rows = {r["fault"]: r for r in json.loads((report / "sensitivity.json").read_text())}
    table = (report / "sensitivity.md").read_text()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert rows["identity"]["verdict"] == "control passes", table
    faults = {name: row for name, row in rows.items() if name != "identity"}
    assert {row["verdict"] for row in faults.values()} <= {"caught", "missed"}, table  # two outcomes, no third
    assert not [r for r in faults.values() if r["verdict"] == "missed" and r["exceeds"]], table
    assert all(r["effect"] for r in faults.values() if r["verdict"] == "missed"), table  # a miss shows its effect
    if (model, precision) == COLLAPSE:
        assert set(rows) == {"identity", *COLLAPSE_FAULTS}, table
        # The slow fault (int8 2.5x slower) falls below the case's speed-up floor only where the healthy speed-up is
        # under 2.5x the floor: 1.81x on an Intel VNNI CPU (caught), 2.26-2.39x on an AMD EPYC VNNI CPU, where it lands
        # at 0.90-0.98x against the 0.9 floor, where timing noise decides either way (both seen in CI). Caught where
        # its effect exceeds the floor, and only ever by the speed-up gate.
        slow = rows["slow"]
        assert slow["verdict"] == "caught" or not slow["exceeds"], table
        assert slow["caught_by"] in ([], ["speedup"]), table
        # NaN outputs fail every check that runs the item, the accuracy verdict included, never an expected failure.
        assert {"conformance", "accuracy", "regression", "deployment"} <= set(rows["nan"]["caught_by"]), table
        return
    for fault in ("bgr", "gbr", "replicate", "stale", "zero", "nan", "batch_reverse"):
        assert rows[fault]["verdict"] == "caught", table
    if precision != "fp32":
        for fault in ("shift", "half_res"):
            assert "structure" in rows[fault]["caught_by"], table
        # Noise on the deployed kernels alone (the build's exact arithmetic untouched): only the deployment verdict
        # sees it, on every CPU (where the case states a loss for saturating kernels, that bound is half its effect).
        assert rows["kernels"]["verdict"] == "caught" and rows["kernels"]["caught_by"] == ["deployment"], table
    else:  # fp32: the deployed session is the judged one, so the fault does nothing there
        assert rows["kernels"]["verdict"] == "missed" and not rows["kernels"]["exceeds"], table
    summary = json.loads((report / "summary.json").read_text())
    assert [r["fault"] for r in summary["sensitivity"]] == list(rows)
