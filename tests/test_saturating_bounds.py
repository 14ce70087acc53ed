"""Every stated saturating-kernel bound holds where it is meant to: each real static int8 variant's deployed session,
run on an emulated AVX2 CPU (``qemu-x86_64 -cpu EPYC-Milan``: no AVX-512, no VNNI), on a few real images.

The case files state, per static int8 variant of published trained weights, what its fused U8S8 kernels lose on a
CPU whose 16-bit pair sums saturate (``deployed_int8.saturating_u8s8``; the schema refuses such a variant without
one). The bounds were measured on many images (``python -m harness emulate-int8``, figures in the case files); this
test holds every stated variant, found in the case files rather than listed here, to its bound on CI's build (8
calibration images, as the fast pass builds it and caches it), so a new variant, a new ONNX Runtime or a new build
cannot bring the false alarm back unseen. Only the deployed session runs emulated
(:mod:`harness.diagnose.emulated_int8`); the exact build and fp32 run here, the exact arithmetic being bit-identical
on every CPU (``tests/test_int8_instruction_sets.py``).

Each bound must still catch what it is for, on the same emulated outputs: the ``kernels`` fault (noise of sigma 10%
of the range on the deployed outputs: a kernel dispatched wrongly) fails it. And the remedy the failure message
names, ``--int8-scheme reduce_range``, passes the healthy int8 budget on the emulated CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from emulated_cpu import needs_qemu

from harness.build.weights import default_cache_dir
from harness.checks.verdicts import deployed_vs_fp32, violations
from harness.data.cases import Item, expand, load_all
from harness.diagnose.emulated_int8 import deployed_on_emulated_cpu
from harness.items.settings import Settings
from harness.items.suite import Suite
from harness.judge.deployed import deployed_bounds
from harness.judge.judgement import Bootstrap, Comparison
from harness.runtimes.faults import output_fault

ROOT = Path(__file__).resolve().parents[1]
#: Images each variant's deployed session runs on the emulated CPU: 20 to 70 s each there (u2netp to U2-Net).
IMAGES = 2
#: The emulated run's own bound (qemu-user is 30-60x slower than the native CPU).
EMULATION_TIMEOUT_S = 900.0

pytestmark = [needs_qemu, pytest.mark.slow]


def _stated_items() -> list[Item]:
    """Every static int8 item whose case states a bound for saturating kernels, on ONNX Runtime."""
    return [item for item in expand(load_all(ROOT / "cases"), ["onnxruntime"])
            if item.variant.label in item.model.deployed_int8.saturating_u8s8
            and item.variant.label not in item.model.skip_variants]


STATED = _stated_items()


def _suite(tmp_path: Path, int8_scheme: str = "case") -> Suite:
    root = os.environ.get("SEGCONFORM_DATA_ROOT")
    if not root or not (Path(root) / "ecssd-300").is_dir():
        pytest.skip(f"SEGCONFORM_DATA_ROOT ({root or 'unset'}) holds no ecssd-300/: the bounds were measured on it")
    return Suite(Settings(data_root=Path(root), weights_dir=None, cache_dir=default_cache_dir(),
                          golden_dir=tmp_path / "golden", report_dir=tmp_path / "reports", eval_limit=IMAGES,
                          calibration_samples=8, int8_scheme=int8_scheme))


def _deployed_and_exact(suite: Suite, item: Item):
    handle = suite.handle(item)
    dataset = next(d for d in suite.catalogue.for_model(item.model) if d.name == item.model.calibration_dataset)
    samples = handle.samples(dataset)[:IMAGES]
    run = deployed_on_emulated_cpu(handle, dataset, samples, timeout_s=EMULATION_TIMEOUT_S)
    assert run.int8_path == "avx2", f"the emulated CPU reports {run.int8_path}, not a saturating AVX2 int8 path"
    exact, fp32 = handle.run(dataset).maps, handle.reference.run(dataset).maps
    return handle, run, {s: exact[s] for s in run.raw}, {s: fp32[s] for s in run.raw}


def test_every_published_static_int8_variant_states_a_bound():
    """The variants this file holds to their bound: every published model's full-range static int8 variant (the
    schema refuses one without); a case edit that drops them all would leave this test nothing to judge."""
    assert {item.id for item in STATED} >= {"isnet-int8-kl_divergence-onnxruntime",
                                             "u2net-int8-percentile-onnxruntime",
                                             "u2netp-int8-percentile-onnxruntime"}


@pytest.mark.parametrize("item", STATED, ids=[item.id for item in STATED])
def test_a_stated_bound_holds_on_an_emulated_avx2_cpu_and_still_fails_the_kernels_fault(item, tmp_path):
    suite = _suite(tmp_path)
    try:
        handle, run, exact, fp32 = _deployed_and_exact(suite, item)
        bounds = deployed_bounds(item, saturating=True, trained=handle.trained, bootstrap=Bootstrap())
        assert bounds.stated is not None and handle.trained, f"{item.id}: {handle.weights_label}"
        deployed = run.maps()
        kernels = Comparison.of(deployed, exact, bounds.kernels, mean_interval=bounds.interval)
        print(f"{item.id}, emulated {run.cpu} ({run.seconds:.0f} s): kernels vs exact {kernels}")
        assert kernels.images == IMAGES and kernels.passed, f"{item.id}: {kernels.violations}"
        # Not a vacuous pass: the emulated kernels really compute apart from the exact arithmetic.
        assert kernels.stats["mae_worst"] > 0, f"{item.id}: deployed maps identical to exact on an AVX2 CPU"
        _, failed, _ = deployed_vs_fp32(item, bounds, deployed, fp32)
        assert not failed, f"{item.id} against fp32: {failed}"
        faulty = Comparison.of(run.maps(output_fault("kernels", "int8")), exact, bounds.kernels,
                               mean_interval=bounds.interval)
        print(f"{item.id} with the kernels fault: {faulty}")
        assert not faulty.passed, f"{item.id}: the stated bound lets the kernels fault through: {faulty}"
    finally:
        suite.close()


def test_the_remedy_a_case_names_passes_the_healthy_int8_budget_on_an_emulated_avx2_cpu(tmp_path):
    """The remedy a failing deployment verdict names (``remedy``, where a case states one: ``--int8-scheme
    reduce_range``, 7-bit weights, with which no U8S8 pair sum can saturate) is held to what it claims: built so, the
    variant's deployed kernels on the emulated AVX2 CPU stay within the healthy int8 budget, against its own exact
    arithmetic and against fp32 (the first such variant of the case files: ISNet's)."""
    item = next((i for i in STATED if "reduce_range" in (i.model.deployed_int8.saturating_u8s8[i.variant.label].remedy
                                                          or "")), None)
    assert item is not None, "no case names --int8-scheme reduce_range as the remedy of a stated variant"
    suite = _suite(tmp_path, int8_scheme="reduce_range")
    try:
        handle, run, exact, fp32 = _deployed_and_exact(suite, item)
        assert not handle.int8_scheme.saturates_u8s8
        bounds = deployed_bounds(item, saturating=False, trained=handle.trained, bootstrap=Bootstrap())
        deployed = run.maps()
        kernels, against_fp32 = Comparison.of(deployed, exact, bounds.kernels), Comparison.of(deployed, fp32, bounds.own)
        print(f"{item.id} --int8-scheme reduce_range, emulated {run.cpu}: kernels vs exact {kernels}; "
              f"vs fp32 {against_fp32}")
        assert bounds.stated is None and kernels.passed, kernels.violations
        assert not violations(item, against_fp32), violations(item, against_fp32)
    finally:
        suite.close()
