"""What the checks put on an item's report rows and in JUnit XML, whatever their verdict.

Every check records what it measured (the report's rows, the strips of its worst images, the session's facts) and
hands its headline figures to JUnit XML as properties (the plugin's ``figures`` fixture), so a failing check still
leaves its evidence, and nightly CI dashboards can chart the figures. Shared by the check modules beside it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import datasets as ds
from ..data.names import UnsafePath
from ..items.handle import ItemHandle
from ..judge import metrics
from ..record.report import Recorder, Row

#: The plugin's ``figures`` fixture: records one JUnit property of the running check.
Property = Callable[[str, Any], None]


def figure(figures: Property, name: str, value: Any) -> None:
    """One headline figure as the JUnit property ``segconform.<name>`` (a structure as JSON)."""
    figures(f"segconform.{name}", value if isinstance(value, (str, int, float)) else json.dumps(value))


def strip(recorder: Recorder, handle: ItemHandle, dataset: ds.Dataset, stem: str,
          reference: np.ndarray, candidate: np.ndarray, what: str) -> str:
    """The image strip of one failing image (input, truth, reference, candidate, difference): its path, or, when it
    could not be written, why (a failing check lists no file that is not there)."""
    sample = next(s for s in dataset.samples if s.stem == stem)
    image = dataset.image(sample)
    truth = dataset.mask(sample, image.shape[:2])
    try:
        path = recorder.strip(
            f"{handle.item.id}-{dataset.name}-{stem}-{what}",
            [("input", image), ("ground truth", truth), ("reference", reference), ("candidate", candidate),
             ("|diff|", _heat_map(np.abs(candidate - reference)))],
        )
    except (OSError, UnsafePath) as error:
        return f"not written ({error})"
    return str(path)


def _heat_map(difference: np.ndarray) -> np.ndarray:
    import cv2

    scaled = metrics.to_uint8(difference / max(float(difference.max()), 1e-6))
    return cv2.applyColorMap(scaled, cv2.COLORMAP_JET)


def describe_session(handle: ItemHandle, row: Row) -> None:
    """Provider, settings, artifact facts and the session's own notes, on the item's row."""
    session = handle.session
    row.weights = handle.weights_label
    row.provider = session.provider
    row.settings = session.settings()
    for note in session.notes():
        if note not in row.notes:
            row.notes.append(note)
    artifact = handle.artifact if not handle.runtime.brings_own_model else None
    if artifact is not None:
        keep = ("key", "method", "calibration", "calibration_samples", "scheme", "exporter", "tool", "built_on",
                "prebuilt", "nodes_excluded", "fp16_compute_ops")
        row.artifact = {k: artifact.manifest[k] for k in keep if k in artifact.manifest}


def data_failures(handle: ItemHandle, dataset: ds.Dataset, recorder: Recorder) -> list[str]:
    """Warn once per data problem of ``dataset`` (a failure of this check under --strict-data), count them in the
    row."""
    item = handle.item
    spec = next((d for d in item.model.datasets if d.name == dataset.name), None)
    accepted = spec.accepted_problems if spec is not None else {}
    row = recorder.row(item, dataset.name)
    counts: dict[str, int] = {}
    failures = []
    for problem in dataset.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
        if problem.kind in accepted:
            continue
        if handle.first_report(dataset.name, problem):
            warnings.warn(ds.DataWarning(f"{dataset.name}: {problem}"), stacklevel=2)
        if handle.settings.strict_data:
            failures.append(f"--strict-data: {dataset.name}: {problem}")
    for kind, reason in accepted.items():
        if counts.get(kind):
            text = f"{counts[kind]} {kind.replace('_', ' ')} problems accepted by the case: {reason}"
            if text not in row.notes:
                row.notes.append(text)
    row.data = {"problems": counts, "files": dataset.files}
    return failures
