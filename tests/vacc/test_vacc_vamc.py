"""vamc build configs: field by field against vacc-interfaces.md §1 and the ISNet seed text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.build import vamc
from harness.cli import main
from harness.data.cases import Model, Variant, load_family

DATA = Path(__file__).resolve().parents[1] / "data" / "vacc"
CASES = DATA / "cases"


@pytest.fixture(scope="module")
def isnet() -> Model:
    return next(m for m in load_family(CASES / "isnet.yaml").models if m.name == "isnet")


def test_isnet_int8_kl_divergence(isnet: Model) -> None:
    config = yaml.safe_load(
        vamc.dump(
            vamc.build_config(
                isnet,
                Variant("int8", "kl_divergence"),
                onnx="/path/isnet-3_320_320.onnx",
                data="/data/ECSSD/image",
            )
        )
    )
    assert config["name"] == "isnet_int8_kl_divergence"
    assert config["frontend"] == {
        "shape": {"input": [1, 3, 320, 320]},
        "type": "onnx",
        "checkpoint": "/path/isnet-3_320_320.onnx",
        "dtype": "fp32",
    }
    assert config["backend"]["type"] == "tvm_vacc"
    assert config["backend"]["dtype"] == "int8"
    assert config["backend"]["quantize"] == {"calibrate_mode": "kl_divergence", "quantize_per_channel": True}
    assert config["dataset"]["path"] == "/data/ECSSD/image"
    assert config["dataset"]["sampler"] == {"suffix": "jpg", "get_data_num": 50}
    assert config["dataset"]["process_ops"] == [
        {"type": "DecodeImage"},
        {"type": "Resize", "size": [320, 320]},
        {"type": "Normalize", "mean": [0.5, 0.5, 0.5], "std": [1.0, 1.0, 1.0]},
        {"type": "ToTensor"},
    ]
    assert config["workspace"] == {"path": "./deploy_weights/"}


def test_isnet_fp16_has_no_quantisation(isnet: Model) -> None:
    config = yaml.safe_load(vamc.dump(vamc.build_config(isnet, Variant("fp16"), onnx="isnet.onnx", data="unused")))
    assert config["name"] == "isnet_fp16"
    assert config["backend"] == {"type": "tvm_vacc", "dtype": "fp16"}
    assert "dataset" not in config
    assert config["frontend"]["shape"]["input"] == [1, 3, 320, 320]
    assert config["workspace"] == {"path": "./deploy_weights/"}


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (Variant("int8"), "int8 needs a calibration"),
        (Variant("fp32"), "not 'fp32'"),
        (Variant("int8_dynamic"), "not 'int8_dynamic'"),
        (Variant("fp16", "max"), "fp16 takes no calibration"),
    ],
)
def test_variants_the_compiler_cannot_build(isnet: Model, variant: Variant, message: str) -> None:
    with pytest.raises(vamc.VamcError, match=message):
        vamc.build_config(isnet, variant, onnx="x.onnx", data="d")


def test_cli_writes_the_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.jpg"):
        (images / name).write_bytes(b"")
    out = tmp_path / "isnet.yaml"
    status = main(
        ["vamc-config", "isnet", "--cases", str(CASES), "--precision", "int8", "--calibration", "percentile",
         "--data", str(images), "--onnx", "/m/isnet.onnx", "--samples", "20", "--out", str(out)]
    )  # fmt: skip
    assert status == 0
    config = yaml.safe_load(out.read_text())
    assert config["backend"]["quantize"]["calibrate_mode"] == "percentile"
    assert config["dataset"]["sampler"] == {"suffix": "png", "get_data_num": 20}
    assert config["dataset"]["path"] == str(images)


def test_cli_default_data_is_the_calibration_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vamc-config", "isnet", "--cases", str(CASES), "--precision", "int8", "--calibration", "max"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["dataset"]["path"] == "ecssd-300/images"
    assert config["frontend"]["checkpoint"] == "isnet.onnx"


def test_cli_int8_without_calibration_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vamc-config", "isnet", "--cases", str(CASES), "--precision", "int8"]) == 2
    assert "int8 needs a calibration" in capsys.readouterr().err
