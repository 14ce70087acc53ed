"""Structure: against fp32, what quantisation noise cannot hide.

A reduced-precision build can stay inside every metric budget and still be wrong in ways a user sees at once: outputs
shifted by a misplaced resize, fine detail (hair, edges) blurred away or invented, the colour channels fed in the
wrong order. Those faults move the mean error little and the metrics less, so conformance and accuracy miss them;
this check compares the item's maps with the fp32 reference's directly (alignment, detail kept and spurious) and
probes the channel order by running the reference on a few images fed every other order. Seeded weights are not
judged: their near-flat outputs have no structure to compare. The measures themselves are
:mod:`harness.judge.structure`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from ..data import datasets as ds
from ..items.handle import ItemHandle
from ..judge.judgement import conformance_budget
from ..record.report import Recorder
from .rows import Property, figure
from .verdicts import judged_datasets

if TYPE_CHECKING:
    from ..judge.structure import ChannelProbe


def test_structure(handle: ItemHandle, recorder: Recorder, figures: Property) -> None:
    """Against fp32, what quantisation noise cannot hide: alignment, detail kept, channel order (any precision)."""
    from ..judge import structure

    item = handle.item
    if handle.is_reference:
        pytest.skip("the fp32 reference is what every other item's structure is compared with")
    if not handle.trained:
        pytest.skip(f"{item.model.name}: {handle.weights_label}: untrained outputs are near-flat noise stretched "
                    "by min-max normalisation, with no edges or detail to compare (measured: seeded deeplab int8 "
                    "offsets of 1.8 px, seeded u2net int8 spurious detail 0.5); the seeded conformance budget is "
                    "what checks such a build")
    bounds = item.model.structure.of(item.variant)
    model_hw = item.model.input_shape[1:]
    failures = []
    datasets = judged_datasets(handle)
    probe_on = next((d for d in datasets if d.name != ds.SYNTHETIC), datasets[0] if datasets else None)
    for dataset in datasets:
        candidate = handle.run(dataset).maps
        reference = handle.reference.run(dataset).maps
        if not candidate.keys() & reference.keys():  # the measures of no image would read as a pass
            failures.append(f"{dataset.name}: no image run by both the item and {item.reference.id}: nothing to "
                            "compare the structure of")
            continue
        aligned = structure.alignment(candidate, reference, model_hw, bounds.alignment_max_px)
        detail = structure.detail_kept(candidate, reference, model_hw, bounds)
        row = recorder.row(item, dataset.name)
        row.structure = {"alignment": aligned.as_dict(), "detail": detail.as_dict()}
        if bounds.not_judged:
            row.structure["not_judged"] = list(bounds.not_judged)
            recorder.note(item, dataset.name, f"structure: {', '.join(bounds.not_judged)} not judged: {bounds.note}")
        if not aligned.passed and "alignment" not in bounds.not_judged:
            worst = aligned.beyond[0]
            dx, dy = aligned.offsets[worst]
            failures.append(f"{dataset.name}: outputs offset against {item.reference.id} by more than "
                            f"{bounds.alignment_max_px} model px on {len(aligned.beyond)} of {len(aligned.offsets)} "
                            f"images (worst {worst}: {dx:+.2f}, {dy:+.2f}): a shifted resize or output")
        if not detail.kept >= bounds.detail_floor:
            failures.append(f"{dataset.name}: keeps {detail.kept:.1%} of the reference's fine detail (floor "
                            f"{bounds.detail_floor:.0%}, {detail.images} images): a blurred, lower-resolution or "
                            "misplaced output")
        if not detail.spurious <= bounds.spurious_ceiling:
            failures.append(f"{dataset.name}: fine detail the reference does not have: {detail.spurious:.3g} of its "
                            f"own (ceiling {bounds.spurious_ceiling:g}, {detail.images} images): a noisy output")
        if dataset is probe_on and item.model.input_shape[0] == 3:
            probe = _channel_probe(handle, dataset, candidate, reference)
            row.structure["channel_order"] = probe.as_dict()
            if not probe.passed and "channel_order" not in bounds.not_judged:
                failures.append(f"{dataset.name}: channel order against {item.reference.id}: {probe.reason}")
        figure(figures, f"structure.{dataset.name}", row.structure)
    assert not failures, "\n".join(failures)


def _channel_probe(handle: ItemHandle, dataset: ds.Dataset, candidate: dict[str, np.ndarray],
                   reference: dict[str, np.ndarray]) -> "ChannelProbe":
    """The candidate as it ran, against the reference run again on a few images fed each other channel order (shared
    by every item of the model: the candidate runs no more)."""
    from ..data.channels import CHANNEL_ORDERS
    from ..judge.structure import PROBE_IMAGES, channel_probe

    stems = [s.stem for s in dataset.samples if s.stem in candidate and s.stem in reference][:PROBE_IMAGES]
    alternatives = {order: handle.reference.reordered(dataset, stems, order) for order in CHANNEL_ORDERS}
    return channel_probe(candidate, reference, alternatives,
                         conformance_budget(handle.item, "fp32", handle.trained).mae)
