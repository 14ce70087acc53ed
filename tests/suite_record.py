"""The suite run some tests may read instead of running the same items again.

``scripts/segconform test`` runs the suite's fast pass (``--eval-limit 4 --calibration-samples 8``; its sessions
in-process, which changes no output) before the tests, after deleting the last ``summary.json``, and names its report
folder in ``SEGCONFORM_SUITE_REPORT``. A test that would only run some of those items again, with the same options,
reads their rows from that record; without it (a plain ``pytest tests``) it runs them itself, in a subprocess given
:func:`subprocess_env`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SUITE_REPORT_ENV = "SEGCONFORM_SUITE_REPORT"


def suite_summary() -> dict[str, Any] | None:
    """The ``summary.json`` of the suite run ``SEGCONFORM_SUITE_REPORT`` names, or None when there is none."""
    folder = os.environ.get(SUITE_REPORT_ENV)
    summary = Path(folder) / "summary.json" if folder else None
    if summary is None or not summary.is_file():
        return None
    return json.loads(summary.read_text(encoding="utf-8"))


def subprocess_env() -> dict[str, str]:
    """This environment for a pytest run in a subprocess: without this xdist worker's identity (``PYTEST_XDIST_*``:
    pytest-benchmark would disable itself, the plugin would bind this worker's device) and without the suite record's
    name."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST") and k != SUITE_REPORT_ENV}
