"""``--benchmark-only`` says up front how many checks it will time and about how long (issue 27): from the durations
pytest-split stored where there are some, else from each check's time budget (a latency benchmark's
--benchmark-max-time, a ratio gate's 10 s of rounds), and each sustained check's stated time (issue 38). Collection
only: nothing runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from suite_record import subprocess_env

ROOT = Path(__file__).resolve().parent.parent


def _collect(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", "cases", "-p", "no:cacheprovider", "--co", "-q",
                           "--benchmark-only", "-k", "u2netp", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=subprocess_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_gate_announces_its_checks_and_their_time_from_the_budget_or_stored_durations(tmp_path):
    out = _collect("--benchmark-max-time=2")
    found = re.search(r"segconform: --benchmark-only: (\d+) timed checks of (\d+) items, about (\d+) s", out)
    assert found, out
    checks, items, seconds = map(int, found.groups())
    timed = [line for line in out.splitlines()
             if re.search(r"test_(latency|speedup|pipeline_overhead|sustained)\[u2netp", line)]
    sustained = [line for line in timed if "test_sustained" in line]
    gates = [line for line in timed if "test_latency" not in line and line not in sustained]
    assert checks == len(timed) and items == len({line.split("[")[1] for line in timed})
    latency = len(timed) - len(gates) - len(sustained)
    # Each sustained check is announced at its stated time: the case's 60 s (cases/u2net.yaml), or --sustain-seconds.
    assert 0 < len(gates) and 0 < len(sustained) and seconds == 2 * latency + 10 * len(gates) + 60 * len(sustained)
    assert f"{len(sustained)} sustained checks {60 * len(sustained)} s, each its stated time" in out
    shorter = _collect("--benchmark-max-time=2", "--sustain-seconds=5")
    assert f"about {2 * latency + 10 * len(gates) + 5 * len(sustained)} s" in shorter
    durations = tmp_path / "durations.json"
    latency_lines = [line for line in timed if "test_latency" in line]
    durations.write_text(json.dumps({node: 30.0 for node in latency_lines[:2]}), encoding="utf-8")
    stored = _collect(f"--durations-path={durations}", "--benchmark-max-time=2")
    rest = 2 * (latency - 2) + 10 * len(gates) + 60 * len(sustained)
    assert (f"about {60 + rest} s (stored durations of 2; for the other {latency - 2 + len(gates)}: 2 s a latency "
            "benchmark (--benchmark-max-time), 10 s a ratio gate") in stored
