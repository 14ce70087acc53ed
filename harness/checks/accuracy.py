"""Accuracy: the item's dataset metrics reproduce the seed's documented values, and hold against fp32.

Conformance says an item computes what fp32 computes, within a budget; it cannot say that fp32 itself is the model
the case documents. This check scores the item's maps against ground truth and judges the metrics two ways: against
the seed's documented row for its precision (a reproduction on the full documented set, a bootstrap interval on a
subset), and paired against the fp32 item on the same images, so a reduced precision's loss is measured where the
seed states one. A documented collapse has no row to reproduce: the loss its case states against fp32 is its verdict.
Untrained (seeded) weights are skipped: their metrics mean nothing. It also keeps the per-image figures the next
night's trend pairs with. The rules are :mod:`harness.judge.judgement` and :mod:`harness.judge.paired`.
"""

from __future__ import annotations

import pytest

from ..data import datasets as ds
from ..data.cases import Item, Model
from ..items.handle import ItemHandle
from ..judge.judgement import intervals, judge_documented
from ..record.per_image import keep_per_image
from ..record.report import Recorder, Row
from .rows import Property, data_failures, describe_session, figure
from .verdicts import judged_datasets, vs_fp32


def _judged_row(model: Model, item: Item, dataset: str):
    """The seed's row this item's metrics are judged against on ``dataset`` (its precision's summary row, else
    fp32's), and the row shown beside the measurement.

    A documented collapse has no row to reproduce value by value (ONNX Runtime's collapse need not be the seed's
    device's): its case states the range of its loss against fp32, which :func:`_paired` judges; the seed's own
    values stay in the report beside the measurement.
    """
    rows = model.documented_rows(item.variant, dataset)
    fp32 = model.documented_rows(item.reference.variant, dataset)
    if rows and rows[0].expected_failure:
        return None, rows[0]
    if rows:
        return rows[0], rows[0]
    return (fp32[0] if fp32 else None), (fp32[0] if fp32 else None)


def test_accuracy(handle: ItemHandle, recorder: Recorder, figures: Property) -> None:
    """Dataset metrics against the seed's values with a bootstrap interval, and against fp32 on the same images."""
    item, source = handle.item, handle.source_weights
    if not handle.trained:
        for dataset in handle.model_datasets:
            row = recorder.row(item, dataset.name)
            row.comparison = "skipped: seeded weights"
            _, shown = _judged_row(item.model, item, dataset.name)
            row.documented = dict(shown.metrics) if shown else {}
        pytest.skip(f"{item.model.name}: {source.label}: accuracy of untrained weights means nothing; "
                    f"put {item.model.weights.checkpoint or 'the checkpoint'} in --weights-dir")
    bootstrap = handle.settings.bootstrap
    tolerance = item.family.acceptance.reproduction
    failures, not_applicable, compared = [], [], 0
    for dataset in judged_datasets(handle):
        run = handle.run(dataset)
        scores = handle.scores(dataset)
        row = recorder.row(item, dataset.name)
        failures += data_failures(handle, dataset, recorder)
        key = f"{item.id}/{dataset.name}"
        row.metrics, row.images = scores.results(), len(scores)
        if not len(scores):  # every mask unreadable, or no output of the item beside a mask: nothing was judged
            row.comparison = "fail: no image scored"
            failures.append(f"{dataset.name}: no image scored for accuracy: none of its {dataset.files} files gave "
                            f"an output of this item beside a readable mask ({_problems(dataset)})")
            continue
        row.ci = {m: list(v) for m, v in intervals(scores, bootstrap, key).items()}
        keep_per_image(row, scores, run.maps, tolerance)  # what the next night's trend pairs with
        row.latency_ms.setdefault("pipeline (eval run)", 1000 * run.mean_seconds)
        describe_session(handle, row)
        figure(figures, f"metrics.{dataset.name}", row.metrics)
        for problem in run.problems:
            recorder.note(item, dataset.name, problem)
        if dataset.name == ds.SYNTHETIC:
            row.comparison = "no documented values"
            continue
        spec = next(d for d in item.model.datasets if d.name == dataset.name)
        if spec.ground_truth == "pseudo":
            recorder.note(item, dataset.name, "ground truth is machine-made pseudo ground truth")
        judged, shown = _judged_row(item.model, item, dataset.name)
        if shown is not None:
            row.documented = dict(shown.metrics)
            row.documented_source = f"{shown.precision} {shown.calibration or ''} ({shown.runtime}, {shown.table})"
            if shown.note:  # what the case file found out about this row, e.g. why a calibration holds here
                recorder.note(item, dataset.name, shown.note)
        elsewhere = None
        if item.model.documented_shape and item.model.documented_shape != item.model.input_shape:
            elsewhere = (f"documented at {'x'.join(map(str, item.model.documented_shape))}, "
                         f"run at {'x'.join(map(str, item.model.input_shape))}")
            judged = None  # the seed's values are of another input size; the paired rule still holds
        collapse = item.model.expected_loss(item.variant)
        # The fp32 item ran on the same images: the paired rule (its floors) applies, with a documented row or none.
        paired = not handle.is_reference and handle.reference.trained
        if not handle.is_reference and not paired:
            row.notes.append("no paired comparison: the fp32 reference runs seeded weights")
        if judged is None and collapse is None and not paired:
            row.comparison = f"n/a: {elsewhere}" if elsewhere else "no documented values"
            not_applicable.append(f"{dataset.name}: {row.comparison}")
            continue
        compared += 1
        full = spec.documented_size is not None and len(scores) >= spec.documented_size
        verdicts = [] if judged is None else judge_documented(scores, judged.metrics, tolerance, bootstrap, key, full,
                                                              item.family.acceptance.min_images)
        row.accuracy = {v.metric: v.as_dict() for v in verdicts}
        shortfalls = [v.reason for v in verdicts if not v.passed]
        unjudged = next((v.allowed for v in verdicts if not v.judged), None)
        if paired:
            shortfalls += _paired(handle, dataset, row, key, figures)
        if collapse is not None and collapse.expected_loss is not None:
            recorder.note(item, dataset.name, f"documented collapse ({collapse.expected_failure}); judged by the loss "
                                              f"its case states against fp32 ({collapse.expected_loss.why}): "
                                              f"{'not reproduced' if shortfalls else 'reproduced'}")
            how = "paired against fp32, the stated loss"
        elif judged is None:
            how = f"paired against fp32 only: {elsewhere or 'no documented row'}"
        else:
            how = "reproduction" if full else \
                (f"vs documented {unjudged}" if unjudged else f"{bootstrap.confidence:.0%} CI")
        row.comparison = ("fail: " + "; ".join(shortfalls)) if shortfalls else f"pass ({len(scores)} images, {how})"
        if shortfalls:
            documented_on = f"; documented on {spec.documented_as}" if spec.documented_as else ""
            failures.append(f"{dataset.name} ({len(scores)} of {dataset.files} images{documented_on}): "
                            + "; ".join(shortfalls))
    assert not failures, "\n".join(failures)
    if compared == 0:
        missing = [f"{d.name}: {handle.missing_reason(d.name)}" for d in item.model.datasets
                   if handle.missing_reason(d.name)]
        pytest.skip("no documented comparison possible: " + "; ".join(not_applicable + missing) +
                    " (measured values are in the report)")


def _problems(dataset: ds.Dataset) -> str:
    """The dataset's data problems in a few words, for a dataset that left nothing to score."""
    counts: dict[str, int] = {}
    for problem in dataset.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    listed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(counts.items()))
    return f"data problems: {listed}" if listed else "no data problem found: no output of the item matched a mask"


def _paired(handle: ItemHandle, dataset: ds.Dataset, row: Row, key: str, figures: Property) -> list[str]:
    """The item against the fp32 item on the same images (:func:`harness.checks.verdicts.vs_fp32`), on its row and in
    JUnit."""
    row.vs_fp32, failures = vs_fp32(handle, dataset, key)
    figure(figures, f"vs_fp32.{dataset.name}", {m: v["value"] for m, v in row.vs_fp32["delta"].items()})
    return failures
