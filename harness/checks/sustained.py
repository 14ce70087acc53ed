"""The sustained check: the deployed session run for a stated time, as a device is used through a night.

``test_sustained`` runs the item's deployed session at batch 1 over its images in a loop for ``--sustain-seconds``
(else the ini's ``segconform_sustain_seconds``, else the case's ``sustained.seconds``), interleaved call by call with
the fp32 reference, and judges four gates (:mod:`harness.judge.sustained`): the tail (p90 and p99 over the median,
against the reference's in the same run), the trend (last tenth against first tenth, against the reference's), the
resident-memory growth of the session's process per 1000 calls, and the drift of one fixed image's output. The
check fails when any gate fails, and names each; every gate's verdict and figures go on the item's row whatever the
outcome. Like the ratio gates it runs where the case declares its bounds, and is skipped under
``--benchmark-disable`` (CI's fast pass), saying why: it is part of ``pytest --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import datasets as ds
from ..items.handle import ItemHandle
from ..judge.sustained import figures as run_figures
from ..judge.sustained import GUARD_BYTES, calls_needed, judge, run_sustained
from ..record.report import Recorder
from ..runtimes import RunInput
from .latency import _LatencyInput, _live_session, _ratio_skip
from .rows import Property, figure

#: Images of each dataset the loop goes over (preprocessed once, before the clock starts).
IMAGES_PER_DATASET = 8


def _batches(handle: ItemHandle, takes_images: bool) -> list[RunInput]:
    """The item's images (the first few of each of its datasets) as batches of one, preprocessed once."""
    batches = []
    for dataset in handle.datasets:
        for sample in handle.samples(dataset)[:IMAGES_PER_DATASET]:
            image = dataset.image(sample)
            batches.append(handle.pipeline.batch(image, sample.stem, takes_images))
    return batches


def sustain_seconds(handle: ItemHandle) -> float:
    """The run's length: ``--sustain-seconds`` or the ini's, else the case's ``sustained.seconds``."""
    bounds = handle.item.family.sustained_of(handle.item.model, handle.item.variant)
    assert bounds is not None, "collected only where the case declares sustained bounds"
    return handle.settings.sustain_seconds or bounds.seconds


def test_sustained(handle: ItemHandle, recorder: Recorder, benchmark: Any, figures: Property) -> None:
    """The deployed session over a stated time: tail, trend, memory growth and output drift (module docstring)."""
    item = handle.item
    _ratio_skip(benchmark)
    bounds = item.family.sustained_of(item.model, item.variant)
    assert bounds is not None
    session = _live_session(handle).deployed
    ours = _batches(handle, handle.takes_images)
    reference_session = None if handle.is_reference else handle.reference.session()
    theirs = _batches(handle, False) if reference_session is not None else []
    probe = _LatencyInput.of(handle).batch

    def item_call(index: int) -> object:
        return session.run(ours[index % len(ours)])

    def reference_call(index: int) -> object:
        assert reference_session is not None
        return reference_session.run(theirs[index % len(theirs)])

    def probe_call() -> np.ndarray:
        return np.asarray(session.run(probe)[0])

    seconds = sustain_seconds(handle)
    benchmark.group = f"{item.model.name} sustained"
    benchmark.extra_info.update(item=item.id, precision=item.variant.label, runtime=item.runtime, seconds=seconds)
    confidence = handle.settings.bootstrap.confidence
    least = calls_needed(bounds.tail, confidence, reference_session is not None)
    run = benchmark.pedantic(run_sustained, args=(item_call, reference_call if reference_session else None,
                                                  probe_call, session.memory, seconds, bounds.probe_every,
                                                  GUARD_BYTES, least), rounds=1, iterations=1)
    verdicts = judge(run, bounds.tail, bounds.max_trend, bounds.max_rss_growth_mb_per_1000, bounds.drift_max_abs,
                     confidence)
    measured = run_figures(run) | {"gates": {v.gate: {"status": v.status, "text": v.text, "value": v.value,
                                                      "bound": v.bound} for v in verdicts}}
    recorder.row(item, ds.SYNTHETIC).performance["sustained"] = measured
    benchmark.extra_info.update(sustained=measured)
    figure(figures, "sustained", measured)
    failed = [v for v in verdicts if v.status == "failed"]
    assert not failed, f"{item.id}: sustained for {seconds:g} s: " + "; ".join(f"{v.gate}: {v.text}" for v in failed)
