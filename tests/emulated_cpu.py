"""Running a snippet of Python natively or on an emulated AVX2 CPU (``qemu-x86_64 -cpu EPYC-Milan``: AVX2 without
AVX-512 or VNNI, as the AVX2 machines of this workplace are), for tests whose bounds depend on ONNX Runtime's kernels,
which follow the CPU alone. The snippet writes its arrays to an npz file and prints, last, a JSON object with the int8
path its CPU reports (``harness.machine.int8_path``), so a test can tell the emulation really is an AVX2 CPU."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
QEMU = shutil.which("qemu-x86_64")
needs_qemu = pytest.mark.skipif(
    QEMU is None or platform.machine() != "x86_64",
    reason="needs qemu-x86_64 (Debian package qemu-user; .ci/run installs it) on an x86_64 host to emulate an AVX2 CPU")


def run_snippet(snippet: str, args: list[str], out: Path, emulate: bool) -> tuple[dict[str, np.ndarray], str]:
    """The arrays ``snippet`` saved to ``out`` and the int8 path it reported, run here or on the emulated CPU."""
    command = [sys.executable, "-c", snippet, *args]
    if emulate:
        assert QEMU is not None
        command = [QEMU, "-cpu", "EPYC-Milan", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(out) as npz:
        return {k: npz[k] for k in npz.files}, json.loads(result.stdout.strip().splitlines()[-1])["int8"]
