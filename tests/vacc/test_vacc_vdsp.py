"""vdsp params: parsing, the CPU equivalent, the cross-check against a case, emission, the device input layout.

Expected values come from vacc-interfaces.md §2 and the ISNet seed text, not from harness.build.vdsp or vdsp_compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.build import vdsp, vdsp_compare
from harness.data.case_inputs import Op
from harness.data.cases import Model, load_family
from harness.data.recipes import build_preprocess

DATA = Path(__file__).resolve().parents[1] / "data" / "vacc"
OFFICIAL = DATA / "official-isnet-vdsp_params.json"


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    return {m.name: m for m in load_family(DATA / "cases" / "isnet.yaml").models}


def _with_config(tmp_path: Path, **changes: object) -> Path:
    raw = json.loads(OFFICIAL.read_text())
    raw["OpConfig"].update(changes)
    path = tmp_path / "edited-vdsp_params.json"
    path.write_text(json.dumps(raw))
    return path


def _with_preprocess(model: Model, *ops: dict) -> Model:
    return model.model_copy(update={"preprocess": tuple(Op(**op) for op in ops)})


def test_official_isnet_file_reads_as_documented() -> None:
    params = vdsp.load(OFFICIAL)
    assert params.output_hw == (320, 320)
    assert params.mean == (0.5, 0.5, 0.5)
    assert params.std == (1.0, 1.0, 1.0)
    assert (params.norma_type, params.resize_type, params.color_cvt_code) == (
        "DIV255_MINUSMEAN_DIVSTD",
        "BILINEAR_CV",
        "NO_CHANGE",
    )


def test_isnet_seed_recipe_disagrees_only_on_interpolation(models: dict[str, Model]) -> None:
    findings = vdsp_compare.check(vdsp.load(OFFICIAL), models["isnet"])
    assert [f.field for f in findings] == ["interpolation"]
    text = findings[0].text
    assert "official-isnet-vdsp_params.json" in text and "BILINEAR_CV" in text and "INTER_AREA" in text


def test_zoo_cpu_loop_std_is_reported(models: dict[str, Model]) -> None:
    findings = {f.field: f for f in vdsp_compare.check(vdsp.load(OFFICIAL), models["isnet_zoo_loop"])}
    assert "std" in findings and "mean" not in findings
    assert findings["std"].vdsp == [1.0, 1.0, 1.0] and findings["std"].case == [0.5, 0.5, 0.5]


def test_cpu_equivalent_computes_what_the_document_says() -> None:
    """Bilinear (OpenCV) resize to 320x320, /255, -0.5, /1.0, RGB planes, from a BGR image."""
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    tensor = build_preprocess(vdsp.preprocess_ops(vdsp.load(OFFICIAL)), (320, 320))(bgr)
    rgb = cv2.resize(bgr, (320, 320), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    expected = ((rgb.astype(np.float32) / 255.0 - 0.5) / 1.0).transpose(2, 0, 1)
    assert tensor.shape == (3, 320, 320)
    np.testing.assert_allclose(tensor, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("key", "value"),
    [("NormaType", "DIV256"), ("ResizeType", "LANCZOS"), ("IimageFormat", "YUV_NV12")],
)
def test_unknown_enum_names_the_file_and_value(tmp_path: Path, key: str, value: str) -> None:
    path = _with_config(tmp_path, **{key: value})
    with pytest.raises(vdsp.VdspError, match=rf"edited-vdsp_params\.json.*{key}.*{value}"):
        vdsp.load(path)


def test_unknown_op_type_names_the_file(tmp_path: Path) -> None:
    raw = json.loads(OFFICIAL.read_text())
    raw["OpType"] = "FUSION_OP_YUV_NV12_RESIZE_2RGB_NORM_TENSOR"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(vdsp.VdspError, match=r"other\.json.*OpType.*YUV_NV12"):
        vdsp.load(path)


def test_missing_and_misspelt_keys_are_named(tmp_path: Path) -> None:
    raw = json.loads(OFFICIAL.read_text())
    raw["OpConfig"]["Means"] = raw["OpConfig"].pop("Mean")
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(vdsp.VdspError, match=r"typo\.json.*missing \['Mean'\].*unknown \['Means'\]"):
        vdsp.load(path)


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(vdsp.VdspError, match=r"broken\.json: not valid JSON"):
        vdsp.load(path)


def test_size_and_colour_order_disagreements(tmp_path: Path, models: dict[str, Model]) -> None:
    bgr_model = _with_preprocess(
        models["isnet"],
        {"op": "resize", "interpolation": "linear"},
        {"op": "to_float", "divide": 255},
        {"op": "normalize", "mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0]},
        {"op": "to_chw"},
    )
    path = _with_config(tmp_path, OimageWidth=288, OimageHeight=480)
    findings = {f.field: f for f in vdsp_compare.check(vdsp.load(path), bgr_model)}
    assert set(findings) == {"size", "colour_order"}
    assert findings["size"].vdsp == (480, 288) and findings["size"].case == (320, 320)
    assert findings["colour_order"].vdsp == "RGB" and findings["colour_order"].case == "BGR"


def test_equivalent_normalisations_agree(tmp_path: Path, models: dict[str, Model]) -> None:
    """x/127.5 - 1 is (x/255 - 0.5)/0.5: the same numbers, so no finding."""
    path = _with_config(tmp_path, NormaType="DIV1275_MINUSONE")
    model = _with_preprocess(
        models["isnet"],
        {"op": "resize", "interpolation": "linear"},
        {"op": "to_rgb"},
        {"op": "to_float", "divide": 255},
        {"op": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        {"op": "to_chw"},
    )
    assert vdsp_compare.check(vdsp.load(path), model) == []


def test_emitted_file_for_isnet(models: dict[str, Model]) -> None:
    emitted = vdsp.from_case(models["isnet"])
    config = emitted["OpConfig"]
    assert emitted["OpType"] == "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"
    assert (config["OimageWidth"], config["OimageHeight"]) == (320, 320)
    assert config["Mean"] == [0.5, 0.5, 0.5] and config["Std"] == [1.0, 1.0, 1.0]
    assert config["NormaType"] == "DIV255_MINUSMEAN_DIVSTD"
    assert config["ColorCvtCode"] == "NO_CHANGE" and config["ResizeType"] == "BILINEAR_CV"
    # The device cannot resize with INTER_AREA: checking the emitted file says so, and nothing else.
    assert [f.field for f in vdsp_compare.check(vdsp.parse(emitted, "emitted"), models["isnet"])] == ["interpolation"]


def test_emitted_file_rescales_other_divisors(models: dict[str, Model]) -> None:
    """(x/1 - 127.5)/127.5 written in the x/255 form is mean 0.5, std 0.5."""
    model = _with_preprocess(
        models["isnet"],
        {"op": "resize", "interpolation": "linear"},
        {"op": "to_rgb"},
        {"op": "to_float", "divide": 1},
        {"op": "normalize", "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]},
        {"op": "to_chw"},
    )
    config = vdsp.from_case(model)["OpConfig"]
    assert config["Mean"] == [0.5, 0.5, 0.5] and config["Std"] == [0.5, 0.5, 0.5]


def test_rgb_planar_layouts() -> None:
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30
    planar = vdsp.rgb_planar(bgr)
    assert planar.shape == (3, 2, 3) and planar.dtype == np.uint8 and planar.flags.c_contiguous
    assert [int(planar[c, 0, 0]) for c in range(3)] == [30, 20, 10]
    bgra = np.concatenate([bgr, np.full((2, 3, 1), 99, np.uint8)], axis=2)
    np.testing.assert_array_equal(vdsp.rgb_planar(bgra), planar)
    gray = np.full((2, 3), 7, np.uint8)
    assert (vdsp.rgb_planar(gray) == 7).all() and vdsp.rgb_planar(gray).shape == (3, 2, 3)
    with pytest.raises(vdsp.VdspError, match="uint8"):
        vdsp.rgb_planar(bgr.astype(np.float32))
