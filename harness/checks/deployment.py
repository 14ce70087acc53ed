"""Deployment: static int8 as this CPU runs it, judged like the build.

The build verdict of a static int8 item (conformance, accuracy) uses its exact QDQ arithmetic, the same on every CPU;
what a user of this machine gets is the deployed session, whose fused kernels depend on the CPU (some saturate U8S8
products). This check holds the deployed outputs to what the build is held to, so a kernel path that breaks the model
fails here instead of hiding behind the exact arithmetic: conformance against fp32 within the same budget, the same
paired accuracy rule against fp32, and the kernels against the build's exact arithmetic on the same images. Where the
case states a loss for CPUs whose U8S8 kernels saturate, that stated bound is the budget on such a CPU.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..data import datasets as ds
from ..items.handle import ItemHandle
from ..judge.deployed import REMEDY, deployed_bounds
from ..judge.judgement import Comparison
from ..record.report import Recorder
from .rows import Property, figure
from .verdicts import comparison_failures, deployed_vs_fp32, judged_datasets, vs_fp32


def test_deployment(handle: ItemHandle, recorder: Recorder, figures: Property) -> None:
    """Static int8 as deployed on this CPU (its fused kernels), judged like the build: conformance against fp32
    within the same budget (a documented collapse: its stated loss), the same paired accuracy rule, and the kernels
    against the build's exact arithmetic on the same images within that budget.

    The build verdict (conformance, accuracy) uses the exact QDQ arithmetic, the same on every CPU; this one is what
    a user of this machine gets. It reuses the deployed run the conformance check already made for the ``int8
    kernels`` column, so it costs only the scoring. Where the case states a loss on CPUs whose U8S8 kernels saturate
    (``deployed_int8.saturating_u8s8``) and the build's scheme can saturate, that stated bound is the budget there
    (:func:`harness.judge.deployed.deployed_bounds`; its means judged by their interval over the run's images, so it
    holds on 4 images as on 100): the verdict still fails beyond it, and then names the remedy.
    """
    from ..machine import int8_path

    item, session = handle.item, handle.session
    if session.deployed is session:
        pytest.skip(f"{item.runtime} ({session.provider}): the session judged is the one deployed, so the build "
                    "verdict is already the deployment verdict")
    if not handle.trained:
        pytest.skip(f"{item.model.name}: {handle.weights_label}: seeded weights' budgets were measured on the "
                    "exact arithmetic and their accuracy means nothing; the deployed kernels' effect is in the "
                    "int8 kernels column")
    path, scheme = int8_path(), handle.int8_scheme
    saturating = path.saturates_u8s8 and scheme.saturates_u8s8
    label = f"deployed on {path.name} ({'saturating' if path.saturates_u8s8 else 'non-saturating'} U8S8 kernels), " \
            f"{scheme.label}"
    bounds = deployed_bounds(item, saturating, handle.trained, handle.settings.bootstrap)
    stated = bounds.stated
    if stated is not None:
        label += f", judged by the loss the case states for such CPUs ({stated.why})"
    failures = []
    for dataset in judged_datasets(handle):
        deployed, reference = handle.run_deployed(dataset), handle.reference.run(dataset)
        comparison, failed, held_to = deployed_vs_fp32(item, bounds, deployed.maps, reference.maps)
        row = recorder.row(item, dataset.name)
        verdict: dict[str, Any] = {"int8_path": path.name, "saturating_u8s8": path.saturates_u8s8,
                                   "scheme": scheme.label, "stated_loss": stated is not None,
                                   "conformance": comparison.stats}
        failures += comparison_failures(dataset, comparison, failed, held_to, item.reference.id)
        # Same run, same build: the kernels against the build's exact arithmetic, within the int8 budget (or the
        # stated one). Against fp32 a documented collapse's wide range hides a kernel gone wrong; this does not.
        kernels = Comparison.of(deployed.maps, handle.run(dataset).maps, bounds.kernels, mean_interval=bounds.interval)
        verdict["vs_exact"] = kernels.stats
        if kernels.worst is not None and not kernels.passed:
            failures.append(f"{dataset.name} ({kernels.images} images): this CPU's kernels against the build's exact "
                            f"arithmetic, outside {'the stated' if stated is not None else f'the {item.variant.label}'}"
                            f" budget ({bounds.kernels.why}): {'; '.join(kernels.violations)}")
        if dataset.name != ds.SYNTHETIC and handle.reference.trained:
            key = f"{item.id}/{dataset.name}/deployed"
            verdict["vs_fp32"], paired = vs_fp32(handle, dataset, key, True, stated)
            failures += [f"{dataset.name}: {failure}" for failure in paired]
        row.deployment = verdict
        figure(figures, f"deployment.{dataset.name}",
               {"int8_path": path.name, "scheme": scheme.label, **comparison.stats,
                **{f"vs_fp32.{m}": v["value"] for m, v in verdict.get("vs_fp32", {}).get("delta", {}).items()}})
    if failures and saturating:
        remedy = stated.remedy if stated is not None else \
            f"{REMEDY} (7-bit weights cannot saturate; no remedy was measured for this variant on such a CPU)"
        failures.append(f"this CPU's U8S8 kernels saturate; remedy: {remedy or 'none measured for this variant'}")
    assert not failures, f"{item.id} {label}:\n" + "\n".join(failures)
