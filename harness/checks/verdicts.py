"""The judgements several checks share: the budget an item's outputs are held to, the failure text of a comparison
with a reference, and the paired accuracy comparison with the fp32 item on the same images.

Conformance, regression and the deployment verdict all compare maps with a reference's (fp32, its golden masks) and
must say the same thing the same way when they fail; accuracy and the deployment verdict both judge the item's
metrics against fp32's by one paired rule. Keeping each in one place keeps the checks from drifting apart. The rules
themselves are :mod:`harness.judge.judgement` and :mod:`harness.judge.paired`; this module only applies them to an
item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest

from ..data import datasets as ds
from ..data.case_base import LOWER_IS_BETTER
from ..data.case_bounds import Budget, IsaLoss
from ..data.cases import Item
from ..items.handle import ItemHandle
from ..judge.deployed import DeployedBounds
from ..judge.judgement import Comparison, loss_violations
from ..judge.paired import PairedResult, documented_delta, judge_paired


def violations(item: Item, comparison: Comparison, slack: float = 0.0) -> list[str]:
    """What fails ``item``'s comparison with fp32 (or the golden masks made from it): the precision's budget, or,
    for a documented collapse, its stated loss, which fails when the collapse deepens and when it is gone."""
    collapse = item.model.expected_loss(item.variant)
    if collapse is None or collapse.expected_loss is None:
        return comparison.violations
    return loss_violations(comparison, collapse.expected_loss.conformance_mae, slack)


def deployed_vs_fp32(item: Item, bounds: DeployedBounds, deployed: Mapping[str, np.ndarray],
                     reference: Mapping[str, np.ndarray]) -> tuple[Comparison, list[str], str]:
    """The deployed maps of ``item`` against fp32's: the comparison, what fails it and what it is held to. Where the
    case states a budget for this CPU it is that budget, its mean judged by its interval; else the variant's own rule
    (:func:`violations`: its budget, or a documented collapse's stated loss)."""
    if bounds.vs_fp32 is not None:
        comparison = Comparison.of(deployed, reference, bounds.vs_fp32, mean_interval=bounds.interval)
        return comparison, comparison.violations, f"the stated budget ({bounds.vs_fp32.why})"
    comparison = Comparison.of(deployed, reference, bounds.own)
    return comparison, violations(item, comparison), judged_by(item, bounds.own)


def judged_by(item: Item, budget: Budget) -> str:
    """What the item's outputs are held to, for failure messages."""
    collapse = item.model.expected_loss(item.variant)
    if collapse is None:
        return f"the {item.variant.label} budget ({budget.why})"
    return f"the stated loss of a documented collapse ({collapse.expected_failure})"


def comparison_failures(dataset: ds.Dataset, comparison: Comparison, failed: list[str], held_to: str, against: str,
                        strip: Callable[[str], str] | None = None) -> list[str]:
    """The failure of a comparison with ``against`` on ``dataset``, if any: no image compared (``failed`` says why),
    or the violations ``failed`` of what it is ``held_to``; ``strip`` draws the worst image and returns its path."""
    if comparison.worst is None:
        return [f"{dataset.name}: {failed[0]}"]
    if not failed:
        return []
    text = f"{dataset.name} ({comparison.images} images): outside {held_to} against {against}: {'; '.join(failed)}"
    return [text + (f"; strip: {strip(comparison.worst)}" if strip is not None else "")]


def judged_datasets(handle: ItemHandle) -> list[ds.Dataset]:
    """The datasets a check judges the item on; none at all fails the check (``pytest.fail``), naming what the item
    has: a check that looped over nothing would pass having judged nothing (stored device outputs whose stems match
    no image of any dataset, or no dataset of the model found)."""
    datasets = handle.datasets
    if not datasets:
        known = ", ".join(f"{d.name} ({len(d.samples)} images)" for d in handle.model_datasets) or "none found"
        pytest.fail(f"{handle.item.id}: nothing to judge: its session covers no image of the model's datasets "
                    f"({known}); a check needs at least one image of one dataset", pytrace=False)
    return datasets


def judge_vs_fp32(handle: ItemHandle, dataset: ds.Dataset, key: str, deployed: bool = False,
                  stated: IsaLoss | None = None) -> PairedResult:
    """The item's paired difference from the fp32 item on the same images, judged by what applies to it: a loss
    stated for this CPU (``stated``), a documented collapse's stated ranges, or the seed's documented loss plus the
    case's tolerance and floors (equivalence for fp32 on another runtime)."""
    item = handle.item
    tolerance = item.family.acceptance.reproduction
    floors = item.model.floors_for(item.family.acceptance, item.variant.precision)
    documented, expected = documented_delta(item.model, item, dataset.name), None
    equivalence = item.variant.precision == item.reference.variant.precision
    model = item.model
    if model.documented_shape and model.documented_shape != model.input_shape and not equivalence:
        documented = {}  # the seed's differences were measured at another input size: its floors alone judge
    collapse = item.model.expected_loss(item.variant)
    if stated is not None and stated.vs_fp32:  # the stated worsening replaces the seed's loss and the tolerance
        documented = {m: (v if m in LOWER_IS_BETTER else -v) for m, v in stated.vs_fp32.items()}
        tolerance = {m: 0.0 for m in stated.vs_fp32}
    elif collapse is not None and collapse.expected_loss is not None:
        expected, floors = collapse.expected_loss.vs_fp32, {}
    return judge_paired(handle.scores(dataset, deployed=deployed), handle.reference.scores(dataset),
                        documented, tolerance, floors, handle.settings.bootstrap, key,
                        equivalence=equivalence, expected=expected)


def vs_fp32(handle: ItemHandle, dataset: ds.Dataset, key: str, deployed: bool = False,
            stated: IsaLoss | None = None) -> tuple[dict, list[str]]:
    """:func:`judge_vs_fp32` as a row records it (its ``vs_fp32`` entry), and its failures as the checks word them."""
    paired = judge_vs_fp32(handle, dataset, key, deployed, stated)
    if not paired.images:  # no image scored by both: the paired rule judged nothing
        return paired.as_dict(), [f"vs fp32: no image scored by both this item and {handle.item.reference.id}"]
    return paired.as_dict(), [f"vs fp32 on the same {paired.images} images: {failure}" for failure in paired.failures]
