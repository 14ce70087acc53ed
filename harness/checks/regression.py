"""Regression: outputs still match the reviewed golden masks.

Conformance compares an item with fp32 as it runs today, so a change that moves fp32 and every other item together
(a new export path, a runtime upgrade, a changed recipe) passes it. The golden masks pin what fp32 produced when a
person last reviewed it: made from the fp32 reference's maps, stored in the repository and rewritten only with
``--update-golden``. The fp32 item reports whether its maps still match them; every other item is held to its
precision's budget against them (a documented collapse: its stated loss), with the worst image's strip on failure.
Masks made with other weights than the ones running are skipped, not failed (except on a device runtime, which runs
whatever was compiled). The regeneration policy is :class:`harness.judge.golden.Regeneration`.
"""

from __future__ import annotations

import pytest

from ..items.handle import ItemHandle
from ..judge.judgement import QUANTISATION, Comparison, conformance_budget
from ..record.report import Recorder
from .rows import Property, data_failures, figure, strip
from .verdicts import judged_by, judged_datasets, violations


def test_regression(handle: ItemHandle, recorder: Recorder, figures: Property) -> None:
    """Outputs still match the reviewed golden masks (made from fp32; rewritten only with --update-golden)."""
    item = handle.item
    failures, skipped = [], []
    device = handle.runtime.brings_own_model  # its weights are whatever was compiled
    for dataset in judged_datasets(handle):
        settled = handle.golden(dataset)
        row = recorder.row(item, dataset.name)
        failures += data_failures(handle, dataset, recorder)
        if settled.state == "other-weights" and not device:
            skipped.append(f"{dataset.name}: {settled.message}")
            row.regression = {"status": "other weights"}
            continue
        if settled.golden is None:
            failures.append(f"{dataset.name}: {settled.message}")
            row.regression = {"status": settled.state}
            continue
        if handle.is_reference:
            row.regression = {"status": f"{settled.state} ({settled.comparison.images if settled.comparison else 0})",
                              **(settled.comparison.stats if settled.comparison else {})}
            if settled.fails:
                failures.append(f"{dataset.name}: {settled.message}")
            continue
        run = handle.run(dataset)
        golden = settled.golden
        samples = [s for s in dataset.samples if s.stem in golden.stems() and s.stem in run.maps]
        expected = golden.comparable({s.stem: dataset.image(s) for s in samples})
        if len(expected) < len(samples):
            recorder.note(item, dataset.name, f"golden not compared for {len(samples) - len(expected)} images that "
                                              "differ from the golden's inputs")
        budget = conformance_budget(item, "golden", handle.trained)
        comparison = Comparison.of({s: run.maps[s] for s in expected}, expected, budget, QUANTISATION)
        failed = violations(item, comparison, QUANTISATION)
        row.regression = {"status": f"{'fail' if failed else 'ok'} ({comparison.images} images)",
                          **comparison.stats}
        figure(figures, f"regression.{dataset.name}", comparison.stats)
        if settled.fails:
            failures.append(f"{dataset.name}: {settled.message}")
        if comparison.worst is not None and failed:
            worst = comparison.worst
            path = strip(recorder, handle, dataset, worst, expected[worst], run.maps[worst], "golden")
            failures.append(f"{dataset.name}: {'; '.join(failed)} (held to {judged_by(item, budget)}); "
                            f"strip: {path}")
        elif not expected:  # nothing compared: a pass here would have judged nothing
            failures.append(f"{dataset.name}: none of the golden images were run" if not samples else
                            f"{dataset.name}: none of the {len(samples)} golden images run has the golden's inputs: "
                            "nothing compared")
    assert not failures, "\n".join(failures)
    if skipped:
        pytest.skip("golden masks belong to other weights: " + "; ".join(skipped))
