"""Every built-in runtime that is installed runs every precision it supports on one real model (u2netp, official
weights) through conformance, regression, accuracy and structure, judged against fp32 on ONNX Runtime: each item
passes or fails on its merits (the seed's documented percentile collapse is an expected failure), none errors.

Before fp32 on a second runtime had a budget, ``u2netp-fp32-openvino`` raised ValueError in conformance.

Where the same session runs u2netp's case items (``pytest tests cases``) the test skips (they are judged there), and
where ``SEGCONFORM_SUITE_REPORT`` names the record of a suite run that judged them (``scripts/segconform test`` runs
the fast pass first, then the tests), the test judges that record's rows instead of running the items again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from suite_record import subprocess_env, suite_summary

from harness.plugin.collection import case_item_of
from harness.runtimes import RuntimeConfig, get, names

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("conformance", "regression", "accuracy", "structure")
ACCEPTED = {"passed", "xfail", "skipped"}


def _judged_in_this_session(session: pytest.Session, runtime: str) -> bool:
    """Whether this pytest session also runs u2netp's case items on ``runtime`` through every check
    (``pytest tests cases``, as ``scripts/segconform test`` does): they are the same items, judged by the same
    checks, so a second run of them in a subprocess would only repeat them."""
    checks = {node.originalname.removeprefix("test_") for node in session.items
              if (case := case_item_of(node)) is not None and case.model.name == "u2netp" and case.runtime == runtime}
    return checks >= set(CHECKS)


def _suite_rows(runtime: str) -> list[dict] | None:
    """The rows of u2netp's items on ``runtime`` in the fast pass's record (same options as the subprocess below),
    or None when there is no such record."""
    summary = suite_summary()
    rows = [r for r in summary["rows"] if r["runtime"] == runtime and r["item"].startswith("u2netp-")] if summary else []
    return rows or None


@pytest.mark.slow
@pytest.mark.parametrize("runtime", names())
def test_every_precision_of_a_real_model_is_judged_on_each_installed_runtime(runtime, tmp_path, request):
    reason = get(runtime, RuntimeConfig()).unavailable
    if reason:
        pytest.skip(f"runtime {runtime} is not usable here: {reason}")
    if _judged_in_this_session(request.session, runtime):
        pytest.skip(f"u2netp's {runtime} items run in this session from cases/u2net.yaml, judged by the same checks")
    rows = _suite_rows(runtime)
    if rows is None:  # no suite run to read: judge the items here
        report = tmp_path / "report"
        selection = "u2netp- and (" + " or ".join(f"test_{c}" for c in CHECKS) + ")"
        command = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pytest.ini"), str(ROOT / "cases"), "-k",
                   selection, "--runtime", runtime, "--eval-limit", "4", "--calibration-samples", "8",
                   "--benchmark-disable", "--report-dir", str(report), "-p", "no:cacheprovider", "-q", "-rs"]
        done = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
        rows = json.loads((report / "summary.json").read_text())["rows"]
    outcomes = {r["item"]: r["outcomes"] for r in rows if r["runtime"] == runtime}
    assert f"u2netp-fp32-{runtime}" in outcomes
    for item, checks in outcomes.items():
        assert set(checks) >= set(CHECKS) - ({"structure"} if item == "u2netp-fp32-onnxruntime" else set()), item
        assert set(checks.values()) <= ACCEPTED, (item, checks)
    if runtime != "onnxruntime":  # fp32 on a second runtime: judged against the reference, and passed
        fp32 = outcomes[f"u2netp-fp32-{runtime}"]
        assert all(fp32[check] == "passed" for check in ("conformance", "regression", "structure")), fp32
        # Accuracy is judged (paired, as an equivalence) on a real dataset; on the synthetic set alone it is skipped.
        assert fp32["accuracy"] == ("passed" if os.environ.get("SEGCONFORM_DATA_ROOT") else "skipped"), fp32
