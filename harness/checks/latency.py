"""Latency: how long one image takes through the deployed session, and the same-run ratios the case bounds.

A model that conforms but runs no faster than fp32 fails the reason it was quantised; a pipeline whose pre- and
postprocessing dwarf the model hides what the runtime gains. ``test_latency`` times one image through the bare runtime
session as deployed (pytest-benchmark's table and storage, compared per machine); ``test_speedup`` and
``test_pipeline_overhead`` gate ratios measured in the same run, interleaved round by round so the machine's load
falls on both sides alike, and confirmed by a second measurement before they fail (:mod:`harness.judge.perf`). The
ratio gates run only where the case declares a bound and only under ``--benchmark-only``; a runtime that reads stored
device outputs is timed on the device, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ..data import datasets as ds
from ..items.handle import ItemHandle
from ..judge.perf import Interleaved, RatioFloor, rounds_within
from ..record.report import Recorder
from ..runtimes import RunInput, Session
from .rows import Property, figure


def _live_session(handle: ItemHandle) -> Session:
    session = handle.session
    if not session.live:
        pytest.skip(f"runtime {handle.item.runtime} reads stored device outputs: its latency is measured on the device "
                    "(vamp -m ... -i 1 p 1 -b 1), not here")
    return session


@dataclass(frozen=True)
class _LatencyInput:
    """The image every latency check times (the first synthetic one: the same on every machine), and its batch."""

    image: np.ndarray
    stem: str
    takes_images: bool
    batch: RunInput

    @classmethod
    def of(cls, handle: ItemHandle) -> "_LatencyInput":
        dataset = handle.model_datasets[0]
        sample = dataset.samples[0]
        image = dataset.image(sample)
        takes_images = handle.takes_images
        return cls(image, sample.stem, takes_images, handle.pipeline.batch(image, sample.stem, takes_images))


def _benchmark_group(benchmark: Any, handle: ItemHandle, kind: str) -> None:
    item = handle.item
    benchmark.group = f"{item.model.name} {kind}"
    benchmark.extra_info.update(item=item.id, precision=item.variant.label, runtime=item.runtime)


def test_latency(handle: ItemHandle, recorder: Recorder, benchmark: Any, figures: Property) -> None:
    """Latency of one image through the bare runtime session as deployed (preprocessing excluded)."""
    item = handle.item
    session = _live_session(handle).deployed
    latency = _LatencyInput.of(handle)
    _benchmark_group(benchmark, handle, "runtime")
    benchmark.extra_info.update(provider=session.provider, settings=session.settings())
    outputs = benchmark(session.run, latency.batch)
    assert outputs and np.all(np.isfinite(outputs[0])), f"{item.id}: non-finite output in the latency run"
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        median = 1000 * stats.stats.median
        recorder.row(item, ds.SYNTHETIC).latency_ms["runtime"] = median
        figure(figures, "latency_ms", median)


def _ratio_skip(benchmark: Any) -> None:
    if getattr(benchmark, "disabled", False):
        pytest.skip("benchmarks are disabled in this run (--benchmark-disable): latency ratios are gated under "
                    "`pytest --benchmark-only` (scripts/segconform suite --benchmark-only)")


def test_speedup(handle: ItemHandle, recorder: Recorder, benchmark: Any, figures: Property) -> None:
    """The item is at least the case's floor faster than fp32 on the same runtime, measured interleaved."""
    item = handle.item
    _ratio_skip(benchmark)
    floor = item.family.performance_of(item.model).min_speedup_vs_fp32[item.variant.precision]
    reason = handle.fp32_here_unavailable()
    if reason:
        pytest.skip(f"no fp32 item on {item.runtime} to compare with: {reason}")
    ours = _live_session(handle).deployed
    fp32 = _live_session(handle.fp32_here()).deployed
    batch = _LatencyInput.of(handle).batch

    def timing() -> Interleaved:
        return Interleaved(lambda: ours.run(batch), lambda: fp32.run(batch))

    gate = RatioFloor("speedup", floor, f"{item.id} vs {item.fp32_here.id}")
    holds, ratio, text = _interleaved_gate(benchmark, handle, timing, gate, item.variant.label, "fp32")
    _record_ratio(recorder, handle, benchmark, figures, "speedup_vs_fp32", ratio, floor, text)
    assert holds, text


def test_pipeline_overhead(handle: ItemHandle, recorder: Recorder, benchmark: Any, figures: Property) -> None:
    """The whole pipeline adds at most the case's share over the bare runtime, measured interleaved."""
    item = handle.item
    _ratio_skip(benchmark)
    ceiling = item.family.performance_of(item.model).max_pipeline_overhead
    assert ceiling is not None
    session = _live_session(handle).deployed
    latency, pipeline = _LatencyInput.of(handle), handle.pipeline

    def timing() -> Interleaved:
        return Interleaved(lambda: pipeline.infer(session, latency.image, latency.stem, latency.takes_images, item.id),
                           lambda: session.run(latency.batch))

    gate = RatioFloor("overhead", ceiling, f"{item.id} pipeline vs bare runtime")
    holds, ratio, text = _interleaved_gate(benchmark, handle, timing, gate, "pipeline", "runtime")
    _record_ratio(recorder, handle, benchmark, figures, "pipeline_overhead", ratio, ceiling, text)
    recorder.row(item, ds.SYNTHETIC).latency_ms["pipeline"] = benchmark.extra_info["pipeline_ms"]
    assert holds, text


def _interleaved_gate(benchmark: Any, handle: ItemHandle, timing: Callable[[], Interleaved], gate: RatioFloor,
                      first: str, second: str) -> tuple[bool, float, str]:
    """One interleaved measurement through pytest-benchmark (its table and storage), confirmed when it misses.

    The warm-up happens before pytest-benchmark's rounds, so the medians judged are those of the recorded
    rounds only (pytest-benchmark's own warm-up rounds would still call ``round`` and be counted). Its last round's
    time sets how many rounds are recorded (:func:`~harness.judge.perf.rounds_within`): slow models get fewer.
    """
    measured = timing().warm_up()
    rounds = rounds_within(handle.settings.latency_rounds, measured.round_seconds)
    _benchmark_group(benchmark, handle, "ratios")
    benchmark.pedantic(measured.round, rounds=rounds, iterations=1)
    benchmark.extra_info.update({f"{first}_ms": 1000 * measured.medians[0], f"{second}_ms": 1000 * measured.medians[1]})
    return gate.confirmed(measured, lambda: timing().run(rounds), first, second)


def _record_ratio(recorder: Recorder, handle: ItemHandle, benchmark: Any, figures: Property, name: str,
                  ratio: float, bound: float, text: str) -> None:
    benchmark.extra_info.update({name: ratio, f"{name}_bound": bound})
    recorder.row(handle.item, ds.SYNTHETIC).performance[name] = {"ratio": ratio, "bound": bound, "text": text}
    figure(figures, name, ratio)
