"""Conformance: the same inputs give the same outputs, within the precision's budget.

This is the check every other one leans on, so the plugin collects it first: the fp32 item against the model's source
(PyTorch eager, or the graph as shipped), proving the export and the runtime compute the network it claims; every
other item against that fp32 item, proving a reduced precision or another runtime changes the outputs by no more than
its budget allows (a documented collapse: by no more, and no less, than its stated loss). A failure draws the worst
image's strip and, for an fp16 or static int8 build, bisects which nodes kept in fp32 make it conform. Beside the
verdict it records what a later reader needs: the per-image statistics, the session's facts, the data problems,
what this CPU's deployed int8 kernels do to the build, and proof that an fp16 item really computed in fp16.
"""

from __future__ import annotations

import numpy as np

from ..data import datasets as ds
from ..items.handle import ItemHandle
from ..judge.judgement import Comparison, conformance_budget
from ..record.per_image import keep_fingerprints
from ..record.report import Recorder, Row
from .rows import Property, data_failures, describe_session, figure, strip
from .verdicts import comparison_failures, judged_by, judged_datasets, violations


def test_conformance(handle: ItemHandle, recorder: Recorder, figures: Property) -> None:
    """Same inputs, same outputs within the budget: fp32 against its source, every other item against fp32."""
    item = handle.item
    against = "source" if handle.is_reference else "fp32"
    budget = conformance_budget(item, against, handle.trained)
    failures = []
    for dataset in judged_datasets(handle):
        candidate = handle.run(dataset)
        reference = handle.source_run(dataset) if handle.is_reference else handle.reference.run(dataset)
        comparison = Comparison.of(candidate.maps, reference.maps, budget)
        row = recorder.row(item, dataset.name)
        if not handle.trained:  # accuracy is skipped for seeded weights; the trend compares their outputs by these
            keep_fingerprints(row, candidate.maps)
        row.conformance = comparison.stats
        row.images = max(row.images, len(candidate.maps))
        describe_session(handle, row)
        failures += data_failures(handle, dataset, recorder)
        _int8_kernels(handle, dataset, row, candidate.maps)
        if not handle.trained and not handle.is_reference:
            recorder.note(item, dataset.name, f"seeded weights: budget {budget.mae:g} / {budget.mae_worst:g} / "
                          f"{budget.max_abs:g} measured for them ({budget.why}); it catches a broken build, "
                          "not an accuracy regression of the seed tables' size")
        figure(figures, f"conformance.{dataset.name}", comparison.stats)
        target = "its source" if handle.is_reference else item.reference.id
        outside = comparison_failures(
            dataset, comparison, violations(item, comparison), judged_by(item, budget), target,
            lambda worst: strip(recorder, handle, dataset, worst, reference.maps[worst], candidate.maps[worst],
                                "conformance"))
        failures += outside
        if outside and comparison.worst is not None:
            failures.extend(_localise(handle, recorder, dataset))
        if item.variant.precision == "fp16" and comparison.per_image:
            failures += _fp16_evidence(handle, dataset, comparison, recorder)
    assert not failures, "\n".join(failures)


def _int8_kernels(handle: ItemHandle, dataset: ds.Dataset, row: Row, exact: dict[str, np.ndarray]) -> None:
    """What this CPU's deployed int8 kernels do to the build, against its exact arithmetic (a finding, not a
    verdict)."""
    from ..machine import int8_path

    if handle.session.deployed is handle.session:
        return
    deployed = handle.run_deployed(dataset)
    comparison = Comparison.of(deployed.maps, exact, conformance_budget(handle.item, "fp32", handle.trained))
    path = int8_path()
    row.int8_kernels = {"path": path.name, "saturating_u8s8": path.saturates_u8s8, **comparison.stats}
    kind = "saturating U8S8 kernels (vpmaddubsw)" if path.saturates_u8s8 else "non-saturating int8 kernels"
    row.notes.append(f"int8 kernels on this CPU ({path.name}, {kind}) vs the build's exact arithmetic: {comparison}")


def _fp16_evidence(handle: ItemHandle, dataset: ds.Dataset, comparison: Comparison, recorder: Recorder) -> list[str]:
    """An fp16 item must really have computed in fp16: some compute op on fp16 weights, outputs not bit-identical."""
    failures = []
    if handle.runtime.artifact == "onnx":
        artifact = handle.artifact
        if artifact is not None and artifact.manifest.get("fp16_compute_ops", 0) == 0:
            failures.append(f"{artifact.path}: no compute op takes fp16 weights; this graph is not an fp16 test")
    worst = comparison.stats["max_abs_worst"]
    if worst == 0.0:
        failures.append(f"{dataset.name}: fp16 outputs are bit-identical to fp32; fp16 numerics did not run")
    recorder.note(handle.item, dataset.name, f"fp16 numerics observed: worst max|d| {worst:.3g} vs fp32")
    return failures


def _localise(handle: ItemHandle, recorder: Recorder, dataset: ds.Dataset) -> list[str]:
    """For a failing fp16 / static int8 build: which nodes kept in fp32 make it conform (bisection)."""
    from ..diagnose.fault_localisation import LOCALISABLE, localise

    item = handle.item
    builds = handle.settings.localise_builds
    if builds <= 0 or item.variant.precision not in LOCALISABLE or item.model.prebuilt.get(item.variant.precision):
        return []
    if handle.runtime.artifact != "onnx":
        return []
    result = localise(handle, dataset, max_builds=builds)
    recorder.note(item, dataset.name, "fault localisation: " + " ".join(result.summary().split()))
    recorder.work.append({"what": f"fault localisation of {item.id} on {dataset.name}", "builds": result.builds,
                          "seconds": round(result.seconds, 1)})
    return [result.summary()]
