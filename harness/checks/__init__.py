"""The checks every item gets: conformance, regression, accuracy, latency and its same-run ratios.

The plugin (:mod:`harness.plugin`) collects this module once per case file and parametrises each
check over that file's items; every check records what it measured into the report, whatever its
outcome, and hands its headline figures to JUnit XML as properties (the plugin's ``figures`` fixture), so
nightly CI dashboards can show them. The verdicts themselves are decided in :mod:`harness.judge.judgement`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from ..data import datasets as ds
from ..data.case_base import LOWER_IS_BETTER
from ..data.case_bounds import Budget, IsaLoss
from ..data.cases import Item, Model
from ..items.suite import Suite
from ..judge import metrics
from ..judge.golden import Settled
from ..judge.judgement import (
    QUANTISATION,
    Comparison,
    conformance_budget,
    intervals,
    judge_documented,
    loss_violations,
)
from ..judge.paired import PairedResult, documented_delta, judge_paired
from ..judge.perf import Interleaved, RatioFloor
from ..record.history import keep_fingerprints, keep_per_image
from ..record.report import Recorder, Row
from ..runtimes import RunInput

if TYPE_CHECKING:
    from ..judge.structure import ChannelProbe

Property = Callable[[str, Any], None]


def _is_reference(item: Item) -> bool:
    return item == item.reference


def _violations(item: Item, comparison: Comparison, slack: float = 0.0) -> list[str]:
    """What fails ``item``'s comparison with fp32 (or the golden masks made from it): the precision's budget, or,
    for a documented collapse, its stated loss, which fails when the collapse deepens and when it is gone."""
    collapse = item.model.expected_loss(item.variant)
    if collapse is None or collapse.expected_loss is None:
        return comparison.violations
    return loss_violations(comparison, collapse.expected_loss.conformance_mae, slack)


def _judged_by(item: Item, budget: Budget) -> str:
    """What the item's outputs are held to, for failure messages."""
    collapse = item.model.expected_loss(item.variant)
    if collapse is None:
        return f"the {item.variant.label} budget ({budget.why})"
    return f"the stated loss of a documented collapse ({collapse.expected_failure})"


def _property(figures: Property, name: str, value: Any) -> None:
    figures(f"segconform.{name}", value if isinstance(value, (str, int, float)) else json.dumps(value))


def _strip(recorder: Recorder, item: Item, dataset: ds.Dataset, stem: str,
           reference: np.ndarray, candidate: np.ndarray, what: str) -> str:
    sample = next(s for s in dataset.samples if s.stem == stem)
    image = dataset.image(sample)
    truth = dataset.mask(sample, image.shape[:2])
    path = recorder.strip(
        f"{item.id}-{dataset.name}-{stem}-{what}",
        [("input", image), ("ground truth", truth), ("reference", reference), ("candidate", candidate),
         ("|diff|", _heat_map(np.abs(candidate - reference)))],
    )
    return str(path)


def _heat_map(difference: np.ndarray) -> np.ndarray:
    import cv2

    scaled = metrics.to_uint8(difference / max(float(difference.max()), 1e-6))
    return cv2.applyColorMap(scaled, cv2.COLORMAP_JET)


def _describe_session(suite: Suite, item: Item, row: Row) -> None:
    """Provider, settings, artifact facts and the session's own notes, on the item's row."""
    session = suite.sessions.session(item)
    row.weights = suite.weights_label(item)
    row.provider = session.provider
    row.settings = session.settings()
    for note in session.notes():
        if note not in row.notes:
            row.notes.append(note)
    artifact = suite.sessions.artifact(item) if not suite.sessions.runtime(item.runtime).brings_own_model else None
    if artifact is not None:
        keep = ("key", "method", "calibration", "calibration_samples", "scheme", "exporter", "tool", "built_on",
                "prebuilt", "nodes_excluded", "fp16_compute_ops")
        row.artifact = {k: artifact.manifest[k] for k in keep if k in artifact.manifest}


def _data_failures(suite: Suite, item: Item, dataset: ds.Dataset, recorder: Recorder) -> list[str]:
    """Warn once per data problem of ``dataset`` (a failure of this check under --strict-data), count them in the row."""
    spec = next((d for d in item.model.datasets if d.name == dataset.name), None)
    accepted = spec.accepted_problems if spec is not None else {}
    row = recorder.row(item, dataset.name)
    counts: dict[str, int] = {}
    failures = []
    for problem in dataset.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
        if problem.kind in accepted:
            continue
        if suite.first_report(dataset.name, problem):
            warnings.warn(ds.DataWarning(f"{dataset.name}: {problem}"), stacklevel=2)
        if suite.settings.strict_data:
            failures.append(f"--strict-data: {dataset.name}: {problem}")
    for kind, reason in accepted.items():
        if counts.get(kind):
            text = f"{counts[kind]} {kind.replace('_', ' ')} problems accepted by the case: {reason}"
            if text not in row.notes:
                row.notes.append(text)
    row.data = {"problems": counts, "files": dataset.files}
    return failures


# --------------------------------------------------------------------------- conformance


def test_conformance(item: Item, runnable: Item, suite: Suite, recorder: Recorder, figures: Property) -> None:
    """Same inputs, same outputs within the budget: fp32 against its source, every other item against fp32."""
    against = "source" if _is_reference(item) else "fp32"
    budget = conformance_budget(item, against, suite.trained(item))
    failures = []
    for dataset in suite.datasets_for(item):
        candidate = suite.run(item, dataset)
        reference = suite.run_source(item, dataset) if _is_reference(item) else suite.run(item.reference, dataset)
        comparison = Comparison.of(candidate.maps, reference.maps, budget)
        row = recorder.row(item, dataset.name)
        if not suite.trained(item):  # accuracy is skipped for seeded weights; the trend compares their outputs by these
            keep_fingerprints(row, candidate.maps)
        row.conformance = comparison.stats
        row.images = max(row.images, len(candidate.maps))
        _describe_session(suite, item, row)
        failures += _data_failures(suite, item, dataset, recorder)
        _int8_kernels(suite, item, dataset, row, candidate.maps)
        if not suite.trained(item) and not _is_reference(item):
            recorder.note(item, dataset.name, f"seeded weights: budget {budget.mae:g} / {budget.mae_worst:g} / "
                          f"{budget.max_abs:g} measured for them ({budget.why}); it catches a broken build, "
                          "not an accuracy regression of the seed tables' size")
        _property(figures, f"conformance.{dataset.name}", comparison.stats)
        target = "its source" if _is_reference(item) else item.reference.id
        violations = _violations(item, comparison)
        if comparison.worst is None:
            failures.append(f"{dataset.name}: {violations[0]}")
        elif violations:
            worst = comparison.worst
            strip = _strip(recorder, item, dataset, worst, reference.maps[worst], candidate.maps[worst], "conformance")
            failures.append(f"{dataset.name} ({comparison.images} images): outside {_judged_by(item, budget)} "
                            f"against {target}: {'; '.join(violations)}; strip: {strip}")
            failures.extend(_localise(suite, recorder, item, dataset))
        if item.variant.precision == "fp16" and comparison.per_image:
            failures += _fp16_evidence(suite, item, dataset, comparison, recorder)
    assert not failures, "\n".join(failures)


def _int8_kernels(suite: Suite, item: Item, dataset: ds.Dataset, row: Row, exact: dict[str, np.ndarray]) -> None:
    """What this CPU's deployed int8 kernels do to the build, against its exact arithmetic (a finding, not a verdict)."""
    from ..machine import int8_path

    session = suite.sessions.session(item)
    if session.deployed is session:
        return
    deployed = suite.run_deployed(item, dataset)
    comparison = Comparison.of(deployed.maps, exact, conformance_budget(item, "fp32", suite.trained(item)))
    path = int8_path()
    row.int8_kernels = {"path": path.name, "saturating_u8s8": path.saturates_u8s8, **comparison.stats}
    kind = "saturating U8S8 kernels (vpmaddubsw)" if path.saturates_u8s8 else "non-saturating int8 kernels"
    row.notes.append(f"int8 kernels on this CPU ({path.name}, {kind}) vs the build's exact arithmetic: {comparison}")


def _fp16_evidence(suite: Suite, item: Item, dataset: ds.Dataset, comparison: Comparison,
                   recorder: Recorder) -> list[str]:
    """An fp16 item must really have computed in fp16: some compute op on fp16 weights, outputs not bit-identical."""
    failures = []
    if suite.sessions.runtime(item.runtime).artifact == "onnx":
        artifact = suite.sessions.artifact(item)
        if artifact is not None and artifact.manifest.get("fp16_compute_ops", 0) == 0:
            failures.append(f"{artifact.path}: no compute op takes fp16 weights; this graph is not an fp16 test")
    worst = comparison.stats["max_abs_worst"]
    if worst == 0.0:
        failures.append(f"{dataset.name}: fp16 outputs are bit-identical to fp32; fp16 numerics did not run")
    recorder.note(item, dataset.name, f"fp16 numerics observed: worst max|d| {worst:.3g} vs fp32")
    return failures


def _localise(suite: Suite, recorder: Recorder, item: Item, dataset: ds.Dataset) -> list[str]:
    """For a failing fp16 / static int8 build: which nodes kept in fp32 make it conform (bisection)."""
    from ..diagnose.fault_localisation import LOCALISABLE, localise

    builds = suite.settings.localise_builds
    if builds <= 0 or item.variant.precision not in LOCALISABLE or item.model.prebuilt.get(item.variant.precision):
        return []
    if suite.sessions.runtime(item.runtime).artifact != "onnx":
        return []
    result = localise(suite, item, dataset, max_builds=builds)
    recorder.note(item, dataset.name, "fault localisation: " + " ".join(result.summary().split()))
    recorder.work.append({"what": f"fault localisation of {item.id} on {dataset.name}", "builds": result.builds,
                          "seconds": round(result.seconds, 1)})
    return [result.summary()]


# --------------------------------------------------------------------------- structure


def test_structure(item: Item, runnable: Item, suite: Suite, recorder: Recorder, figures: Property) -> None:
    """Against fp32, what quantisation noise cannot hide: alignment, detail kept, channel order (any precision)."""
    from ..judge import structure

    if _is_reference(item):
        pytest.skip("the fp32 reference is what every other item's structure is compared with")
    if not suite.trained(item):
        pytest.skip(f"{item.model.name}: {suite.weights_label(item)}: untrained outputs are near-flat noise stretched "
                    "by min-max normalisation, with no edges or detail to compare (measured: seeded deeplab int8 "
                    "offsets of 1.8 px, seeded u2net int8 spurious detail 0.5); the seeded conformance budget is "
                    "what checks such a build")
    bounds = item.model.structure.of(item.variant)
    model_hw = item.model.input_shape[1:]
    failures = []
    datasets = suite.datasets_for(item)
    probe_on = next((d for d in datasets if d.name != ds.SYNTHETIC), datasets[0] if datasets else None)
    for dataset in datasets:
        candidate = suite.run(item, dataset).maps
        reference = suite.run(item.reference, dataset).maps
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
            probe = _channel_probe(suite, item, dataset, candidate, reference)
            row.structure["channel_order"] = probe.as_dict()
            if not probe.passed and "channel_order" not in bounds.not_judged:
                failures.append(f"{dataset.name}: channel order against {item.reference.id}: {probe.reason}")
        _property(figures, f"structure.{dataset.name}", row.structure)
    assert not failures, "\n".join(failures)


def _channel_probe(suite: Suite, item: Item, dataset: ds.Dataset, candidate: dict[str, np.ndarray],
                   reference: dict[str, np.ndarray]) -> "ChannelProbe":
    """The candidate as it ran, against the reference run again on a few images fed each other channel order (shared
    by every item of the model: the candidate runs no more)."""
    from ..judge.structure import CHANNEL_ORDERS, PROBE_IMAGES, channel_probe

    stems = [s.stem for s in dataset.samples if s.stem in candidate and s.stem in reference][:PROBE_IMAGES]
    alternatives = {order: suite.run_reordered(item.reference, dataset, stems, order) for order in CHANNEL_ORDERS}
    return channel_probe(candidate, reference, alternatives, conformance_budget(item, "fp32", suite.trained(item)).mae)


# --------------------------------------------------------------------------- regression


def _settle(suite: Suite, item: Item, dataset: ds.Dataset) -> Settled:
    """The golden set of (model, dataset) as the session left it, made from the fp32 reference's maps."""
    reference = item.reference

    def maps() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        run = suite.run(reference, dataset)
        stems = [s.stem for s in dataset.limited(suite.settings.golden_limit) if s.stem in run.maps]
        images = {s.stem: dataset.image(s) for s in dataset.samples if s.stem in stems}
        return {s: run.maps[s] for s in stems}, images, {"weights": suite.weights_label(reference), "made_by": reference.id}

    return suite.regeneration.settle(item.model.name, dataset.name, suite.weights_label(reference), maps)


def test_regression(item: Item, runnable: Item, suite: Suite, recorder: Recorder, figures: Property) -> None:
    """Outputs still match the reviewed golden masks (made from fp32; rewritten only with --update-golden)."""
    failures, skipped = [], []
    device = suite.sessions.runtime(item.runtime).brings_own_model  # its weights are whatever was compiled
    for dataset in suite.datasets_for(item):
        settled = _settle(suite, item, dataset)
        row = recorder.row(item, dataset.name)
        failures += _data_failures(suite, item, dataset, recorder)
        if settled.state == "other-weights" and not device:
            skipped.append(f"{dataset.name}: {settled.message}")
            row.regression = {"status": "other weights"}
            continue
        if settled.golden is None:
            failures.append(f"{dataset.name}: {settled.message}")
            row.regression = {"status": settled.state}
            continue
        if _is_reference(item):
            row.regression = {"status": f"{settled.state} ({settled.comparison.images if settled.comparison else 0})",
                              **(settled.comparison.stats if settled.comparison else {})}
            if settled.fails:
                failures.append(f"{dataset.name}: {settled.message}")
            continue
        run = suite.run(item, dataset)
        golden = settled.golden
        samples = [s for s in dataset.samples if s.stem in golden.stems() and s.stem in run.maps]
        expected = golden.comparable({s.stem: dataset.image(s) for s in samples})
        if len(expected) < len(samples):
            recorder.note(item, dataset.name,
                          f"golden not compared for {len(samples) - len(expected)} images that differ from the golden's inputs")
        budget = conformance_budget(item, "golden", suite.trained(item))
        comparison = Comparison.of({s: run.maps[s] for s in expected}, expected, budget, QUANTISATION)
        violations = _violations(item, comparison, QUANTISATION)
        row.regression = {"status": f"{'fail' if violations else 'ok'} ({comparison.images} images)",
                          **comparison.stats}
        _property(figures, f"regression.{dataset.name}", comparison.stats)
        if settled.fails:
            failures.append(f"{dataset.name}: {settled.message}")
        if comparison.worst is not None and violations:
            worst = comparison.worst
            strip = _strip(recorder, item, dataset, worst, expected[worst], run.maps[worst], "golden")
            failures.append(f"{dataset.name}: {'; '.join(violations)} (held to {_judged_by(item, budget)}); "
                            f"strip: {strip}")
        elif not expected and not samples:
            failures.append(f"{dataset.name}: none of the golden images were run")
    assert not failures, "\n".join(failures)
    if skipped:
        pytest.skip("golden masks belong to other weights: " + "; ".join(skipped))


# --------------------------------------------------------------------------- accuracy


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


def test_accuracy(item: Item, runnable: Item, suite: Suite, recorder: Recorder, figures: Property) -> None:
    """Dataset metrics against the seed's values with a bootstrap interval, and against fp32 on the same images."""
    source = suite.networks.weights(item.model)
    if not suite.trained(item):
        for dataset in suite.catalogue.for_model(item.model):
            row = recorder.row(item, dataset.name)
            row.comparison = "skipped: seeded weights"
            _, shown = _judged_row(item.model, item, dataset.name)
            row.documented = dict(shown.metrics) if shown else {}
        pytest.skip(f"{item.model.name}: {source.label}: accuracy of untrained weights means nothing; "
                    f"put {item.model.weights.checkpoint or 'the checkpoint'} in --weights-dir")
    bootstrap = suite.settings.bootstrap
    tolerance = item.family.acceptance.reproduction
    failures, not_applicable, compared = [], [], 0
    for dataset in suite.datasets_for(item):
        run = suite.run(item, dataset)
        scores = suite.scores(item, dataset)
        row = recorder.row(item, dataset.name)
        failures += _data_failures(suite, item, dataset, recorder)
        key = f"{item.id}/{dataset.name}"
        row.metrics, row.images = scores.results(), len(scores)
        row.ci = {m: list(v) for m, v in intervals(scores, bootstrap, key).items()}
        keep_per_image(row, scores, run.maps, tolerance)  # what the next night's trend pairs with
        row.latency_ms.setdefault("pipeline (eval run)", 1000 * run.mean_seconds)
        _describe_session(suite, item, row)
        _property(figures, f"metrics.{dataset.name}", row.metrics)
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
        if item.model.documented_shape and item.model.documented_shape != item.model.input_shape:
            row.comparison = (f"n/a: documented at {'x'.join(map(str, item.model.documented_shape))}, "
                              f"run at {'x'.join(map(str, item.model.input_shape))}")
            not_applicable.append(f"{dataset.name}: {row.comparison}")
            continue
        collapse = item.model.expected_loss(item.variant)
        if judged is None and collapse is None:
            row.comparison = "no documented values"
            continue
        compared += 1
        full = spec.documented_size is not None and len(scores) >= spec.documented_size
        verdicts = [] if judged is None else judge_documented(scores, judged.metrics, tolerance, bootstrap, key, full,
                                                              item.family.acceptance.min_images)
        row.accuracy = {v.metric: v.as_dict() for v in verdicts}
        shortfalls = [v.reason for v in verdicts if not v.passed]
        unjudged = next((v.allowed for v in verdicts if not v.judged), None)
        if not _is_reference(item):
            shortfalls += _paired(suite, item, dataset, row, key, figures)
        if collapse is not None and collapse.expected_loss is not None:
            recorder.note(item, dataset.name, f"documented collapse ({collapse.expected_failure}); judged by the loss "
                                              f"its case states against fp32 ({collapse.expected_loss.why}): "
                                              f"{'not reproduced' if shortfalls else 'reproduced'}")
            how = "paired against fp32, the stated loss"
        else:
            how = "reproduction" if full else \
                (f"vs documented {unjudged}" if unjudged else f"{bootstrap.confidence:.0%} CI")
        row.comparison = ("fail: " + "; ".join(shortfalls)) if shortfalls else f"pass ({len(scores)} images, {how})"
        if shortfalls:
            failures.append(f"{dataset.name} ({len(scores)} of {dataset.files} images; documented on "
                            f"{spec.documented_as}): " + "; ".join(shortfalls))
    assert not failures, "\n".join(failures)
    if compared == 0:
        missing = [f"{d.name}: {suite.catalogue.missing_reason(d.name)}" for d in item.model.datasets
                   if suite.catalogue.missing_reason(d.name)]
        pytest.skip("no documented comparison possible: " + "; ".join(not_applicable + missing) +
                    " (measured values are in the report)")


def _judge_vs_fp32(suite: Suite, item: Item, dataset: ds.Dataset, key: str, deployed: bool = False,
                  stated: IsaLoss | None = None) -> PairedResult:
    """The item's paired difference from the fp32 item on the same images, judged by what applies to it: a loss
    stated for this CPU (``stated``), a documented collapse's stated ranges, or the seed's documented loss plus the
    case's tolerance and floors (equivalence for fp32 on another runtime)."""
    tolerance = item.family.acceptance.reproduction
    floors = item.family.acceptance.floors.get(item.variant.precision, {})
    documented, expected = documented_delta(item.model, item, dataset.name), None
    collapse = item.model.expected_loss(item.variant)
    if stated is not None:  # the stated worsening replaces the seed's loss and the tolerance
        documented = {m: (v if m in LOWER_IS_BETTER else -v) for m, v in stated.vs_fp32.items()}
        tolerance = {m: 0.0 for m in stated.vs_fp32}
    elif collapse is not None and collapse.expected_loss is not None:
        expected, floors = collapse.expected_loss.vs_fp32, {}
    return judge_paired(suite.scores(item, dataset, deployed=deployed), suite.scores(item.reference, dataset),
                        documented, tolerance, floors, suite.settings.bootstrap, key,
                        equivalence=item.variant.precision == item.reference.variant.precision, expected=expected)


def _paired(suite: Suite, item: Item, dataset: ds.Dataset, row: Row, key: str, figures: Property) -> list[str]:
    """The item against the fp32 item on the same images (:func:`_judge_vs_fp32`), on its row and in JUnit."""
    if not suite.trained(item.reference):
        row.notes.append("no paired comparison: the fp32 reference runs seeded weights")
        return []
    paired = _judge_vs_fp32(suite, item, dataset, key)
    row.vs_fp32 = paired.as_dict()
    _property(figures, f"vs_fp32.{dataset.name}",
              {m: v["value"] for m, v in row.vs_fp32["delta"].items()})
    return [f"vs fp32 on the same {paired.images} images: {failure}" for failure in paired.failures]


# --------------------------------------------------------------------------- deployment


def test_deployment(item: Item, runnable: Item, suite: Suite, recorder: Recorder, figures: Property) -> None:
    """Static int8 as deployed on this CPU (its fused kernels), judged like the build: conformance against fp32
    within the same budget (a documented collapse: its stated loss), the same paired accuracy rule, and the kernels
    against the build's exact arithmetic on the same images within that budget.

    The build verdict (conformance, accuracy) uses the exact QDQ arithmetic, the same on every CPU; this one is what
    a user of this machine gets. It reuses the deployed run the conformance check already made for the ``int8
    kernels`` column, so it costs only the scoring. Where the case states a loss on CPUs whose U8S8 kernels saturate
    (``deployed_int8.saturating_u8s8``) and the build's scheme can saturate, that stated bound is the budget there:
    the verdict still fails beyond it.
    """
    from ..machine import int8_path

    session = suite.sessions.session(item)
    if session.deployed is session:
        pytest.skip(f"{item.runtime} ({session.provider}): the session judged is the one deployed, so the build "
                    "verdict is already the deployment verdict")
    if not suite.trained(item):
        pytest.skip(f"{item.model.name}: {suite.weights_label(item)}: seeded weights' budgets were measured on the "
                    "exact arithmetic and their accuracy means nothing; the deployed kernels' effect is in the "
                    "int8 kernels column")
    path, scheme = int8_path(), suite.sessions.int8_scheme(item)
    saturating = path.saturates_u8s8 and scheme.saturates_u8s8
    label = f"deployed on {path.name} ({'saturating' if path.saturates_u8s8 else 'non-saturating'} U8S8 kernels), " \
            f"{scheme.label}"
    stated = item.model.deployed_int8.saturating_u8s8.get(item.variant.label) if saturating else None
    if stated is not None:
        label += f", judged by the loss the case states for such CPUs ({stated.why})"
    budget = stated.budget if stated is not None else conformance_budget(item, "fp32", True)
    failures = []
    for dataset in suite.datasets_for(item):
        deployed, reference = suite.run_deployed(item, dataset), suite.run(item.reference, dataset)
        comparison = Comparison.of(deployed.maps, reference.maps, budget)
        violations = comparison.violations if stated is not None else _violations(item, comparison)
        row = recorder.row(item, dataset.name)
        verdict: dict[str, Any] = {"int8_path": path.name, "saturating_u8s8": path.saturates_u8s8,
                                   "scheme": scheme.label, "stated_loss": stated is not None,
                                   "conformance": comparison.stats}
        if comparison.worst is None:
            failures.append(f"{dataset.name}: {violations[0]}")
        elif violations:
            held_to = f"the stated budget ({budget.why})" if stated is not None else _judged_by(item, budget)
            failures.append(f"{dataset.name} ({comparison.images} images): outside {held_to} against "
                            f"{item.reference.id}: {'; '.join(violations)}")
        # Same run, same build: the kernels against the build's exact arithmetic, within the int8 budget (or the
        # stated one). Against fp32 a documented collapse's wide range hides a kernel gone wrong; this does not.
        kernels = Comparison.of(deployed.maps, suite.run(item, dataset).maps, budget)
        verdict["vs_exact"] = kernels.stats
        if kernels.worst is not None and not kernels.passed:
            failures.append(f"{dataset.name} ({kernels.images} images): this CPU's kernels against the build's exact "
                            f"arithmetic, outside the {item.variant.label} budget ({budget.why}): "
                            f"{'; '.join(kernels.violations)}")
        if dataset.name != ds.SYNTHETIC and suite.trained(item.reference):
            paired = _judge_vs_fp32(suite, item, dataset, f"{item.id}/{dataset.name}/deployed", True, stated)
            verdict["vs_fp32"] = paired.as_dict()
            failures += [f"{dataset.name}: vs fp32 on the same {paired.images} images: {f}" for f in paired.failures]
        row.deployment = verdict
        _property(figures, f"deployment.{dataset.name}",
                  {"int8_path": path.name, "scheme": scheme.label, **comparison.stats,
                   **{f"vs_fp32.{m}": v["value"] for m, v in verdict.get("vs_fp32", {}).get("delta", {}).items()}})
    assert not failures, f"{item.id} {label}:\n" + "\n".join(failures)


# --------------------------------------------------------------------------- latency


def _live_session(suite: Suite, item: Item):
    session = suite.sessions.session(item)
    if not session.live:
        pytest.skip(f"runtime {item.runtime} reads stored device outputs: its latency is measured on the device "
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
    def of(cls, suite: Suite, item: Item) -> "_LatencyInput":
        dataset = suite.catalogue.for_model(item.model)[0]
        sample = dataset.samples[0]
        image = dataset.image(sample)
        takes_images = suite.sessions.runtime(item.runtime).takes_images
        return cls(image, sample.stem, takes_images, suite.pipeline(item.model).batch(image, sample.stem, takes_images))


def _benchmark_group(benchmark: Any, item: Item, kind: str) -> None:
    benchmark.group = f"{item.model.name} {kind}"
    benchmark.extra_info.update(item=item.id, precision=item.variant.label, runtime=item.runtime)


def test_latency(item: Item, runnable: Item, suite: Suite, recorder: Recorder, benchmark: Any,
                 figures: Property) -> None:
    """Latency of one image through the bare runtime session as deployed (preprocessing excluded)."""
    session = _live_session(suite, item).deployed
    latency = _LatencyInput.of(suite, item)
    _benchmark_group(benchmark, item, "runtime")
    benchmark.extra_info.update(provider=session.provider, settings=session.settings())
    outputs = benchmark(session.run, latency.batch)
    assert outputs and np.all(np.isfinite(outputs[0])), f"{item.id}: non-finite output in the latency run"
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        median = 1000 * stats.stats.median
        recorder.row(item, ds.SYNTHETIC).latency_ms["runtime"] = median
        _property(figures, "latency_ms", median)


def _ratio_skip(benchmark: Any) -> None:
    if getattr(benchmark, "disabled", False):
        pytest.skip("benchmarks are disabled in this run (--benchmark-disable): latency ratios are gated under "
                    "`pytest --benchmark-only` (scripts/segconform suite --benchmark-only)")


def test_speedup(item: Item, runnable: Item, suite: Suite, recorder: Recorder, benchmark: Any,
                 figures: Property) -> None:
    """The item is at least the case's floor faster than fp32 on the same runtime, measured interleaved."""
    _ratio_skip(benchmark)
    floor = item.family.performance_of(item.model).min_speedup_vs_fp32[item.variant.precision]
    reason = suite.sessions.unavailable(item.fp32_here)
    if reason:
        pytest.skip(f"no fp32 item on {item.runtime} to compare with: {reason}")
    ours, fp32 = _live_session(suite, item).deployed, _live_session(suite, item.fp32_here).deployed
    batch = _LatencyInput.of(suite, item).batch

    def timing() -> Interleaved:
        return Interleaved(lambda: ours.run(batch), lambda: fp32.run(batch))

    gate = RatioFloor("speedup", floor, f"{item.id} vs {item.fp32_here.id}")
    holds, ratio, text = _interleaved_gate(benchmark, suite, item, timing, gate, item.variant.label, "fp32")
    _record_ratio(recorder, item, benchmark, figures, "speedup_vs_fp32", ratio, floor, text)
    assert holds, text


def test_pipeline_overhead(item: Item, runnable: Item, suite: Suite, recorder: Recorder, benchmark: Any,
                           figures: Property) -> None:
    """The whole pipeline adds at most the case's share over the bare runtime, measured interleaved."""
    _ratio_skip(benchmark)
    ceiling = item.family.performance_of(item.model).max_pipeline_overhead
    assert ceiling is not None
    session = _live_session(suite, item).deployed
    latency, pipeline = _LatencyInput.of(suite, item), suite.pipeline(item.model)

    def timing() -> Interleaved:
        return Interleaved(lambda: pipeline.infer(session, latency.image, latency.stem, latency.takes_images, item.id),
                           lambda: session.run(latency.batch))

    gate = RatioFloor("overhead", ceiling, f"{item.id} pipeline vs bare runtime")
    holds, ratio, text = _interleaved_gate(benchmark, suite, item, timing, gate, "pipeline", "runtime")
    _record_ratio(recorder, item, benchmark, figures, "pipeline_overhead", ratio, ceiling, text)
    recorder.row(item, ds.SYNTHETIC).latency_ms["pipeline"] = benchmark.extra_info["pipeline_ms"]
    assert holds, text


def _interleaved_gate(benchmark: Any, suite: Suite, item: Item, timing: Callable[[], Interleaved], gate: RatioFloor,
                      first: str, second: str) -> tuple[bool, float, str]:
    """One interleaved measurement through pytest-benchmark (its table and storage), confirmed when it misses.

    The warm-up happens before pytest-benchmark's rounds, so the medians judged are those of the recorded
    rounds only (pytest-benchmark's own warm-up rounds would still call ``round`` and be counted).
    """
    rounds = suite.settings.latency_rounds
    measured = timing().warm_up()
    _benchmark_group(benchmark, item, "ratios")
    benchmark.pedantic(measured.round, rounds=rounds, iterations=1)
    benchmark.extra_info.update({f"{first}_ms": 1000 * measured.medians[0], f"{second}_ms": 1000 * measured.medians[1]})
    return gate.confirmed(measured, lambda: timing().run(rounds), first, second)


def _record_ratio(recorder: Recorder, item: Item, benchmark: Any, figures: Property, name: str,
                  ratio: float, bound: float, text: str) -> None:
    benchmark.extra_info.update({name: ratio, f"{name}_bound": bound})
    recorder.row(item, ds.SYNTHETIC).performance[name] = {"ratio": ratio, "bound": bound, "text": text}
    _property(figures, name, ratio)


# --------------------------------------------------------------------------- architecture

PARAMS_TOLERANCE = 0.02


def test_architecture(case_model: Model, suite: Suite, recorder: Recorder) -> None:
    """The PyTorch reference's size agrees with the seed's table (parameters within 2%; FLOPs reported)."""
    from .. import models
    from ..models.profile import count_flops, count_params

    model = case_model
    if model.architecture not in models.names():
        pytest.skip(f"{model.name}: architecture {model.architecture!r} is not implemented yet")
    network = models.build(model.architecture)
    params_m = count_params(network) / 1e6
    gflops = count_flops(network, (1, *model.input_shape)) / 1e9
    documented = model.documented
    expected = documented.params_m_official or documented.params_m
    recorder.architectures[model.name] = {
        "architecture": model.architecture,
        "weights": suite.networks.weights(model).label,
        "params_m": params_m,
        "seed_params_m": documented.params_m,
        "gflops": gflops,
        "seed_flops_g": documented.flops_g,
        "note": documented.note,
    }
    if expected is None:
        pytest.skip(f"{model.name}: the case documents no parameter count (documented.params_m) to check against; "
                    f"measured {params_m:.3f} M parameters, {gflops:.2f} GFLOPs")
    assert abs(params_m - expected) <= PARAMS_TOLERANCE * expected, (
        f"{model.name}: {params_m:.3f} M parameters, documented {expected} M (tolerance {PARAMS_TOLERANCE:.0%})"
    )
