"""The vaststreamx adapter against a faithful fake of the device stack (vacc-interfaces.md §3)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from harness.data.cases import Item, Variant, load_family
from harness.runtimes import RunInput, RuntimeConfig, RuntimeUnavailable, SessionClosed, get
from harness.runtimes.vacc import VaccError, VaccRuntime

DATA = Path(__file__).resolve().parents[1] / "data" / "vacc"
OFFICIAL = DATA / "official-isnet-vdsp_params.json"
FAMILY = load_family(DATA / "cases" / "isnet.yaml")
ISNET = next(m for m in FAMILY.models if m.name == "isnet")

#: The zoo's call sequence for loading a model and one image, then shutting down.
LOAD_SEQUENCE = [
    "set_device",
    "Model",
    "load_ops_from_json_file",
    "Graph",
    "ModelOperator",
    "add_operators",
    "Stream",
    "register_operator_output",
    "build",
]
ONE_IMAGE = ["create_image", "run_sync", "as_numpy"]
SHUTDOWN = ["close_input", "wait_until_done"]


@pytest.fixture
def vsx(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh fake installed as ``vaststreamx``; every test must leave its streams shut down."""
    spec = importlib.util.spec_from_file_location("vaststreamx", Path(__file__).with_name("fake_vaststreamx.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "vaststreamx", module)
    return module


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A vamc workspace with compiled fp16 and int8 ISNet models (prefix ``mod``, three files)."""
    for name in ("isnet_fp16", "isnet_int8_kl_divergence"):
        folder = tmp_path / name
        folder.mkdir()
        for suffix in (".so", ".json", ".params"):
            (folder / f"mod{suffix}").write_bytes(b"")
    return tmp_path


def _runtime(models: Path | None, device: int = 0) -> VaccRuntime:
    runtime = get("vacc", RuntimeConfig(vacc_device=device, vacc_models=models))
    assert isinstance(runtime, VaccRuntime)
    return runtime


def _item(precision: str = "fp16", calibration: str | None = None) -> Item:
    return Item(FAMILY, ISNET, Variant(precision, calibration), "vacc")


def _bgr(height: int, width: int, b: int, g: int, r: int) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = b, g, r
    return image


def test_registry_properties() -> None:
    runtime = _runtime(None)
    assert (runtime.name, runtime.takes_images, runtime.artifact, runtime.brings_own_model) == ("vacc", True, None, True)


def test_unavailable_without_vaststreamx(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "vaststreamx", None)  # makes the import fail
    reason = _runtime(models_dir).unavailable
    assert reason is not None and reason.startswith("vaststreamx is not installed (")


def test_unavailable_without_models_folder(vsx: ModuleType, tmp_path: Path) -> None:
    reason = _runtime(None).unavailable
    assert reason is not None and "--vacc-models" in reason
    reason = _runtime(tmp_path / "absent").unavailable
    assert reason is not None and "absent" in reason


def test_supports_what_vamc_builds() -> None:
    runtime = _runtime(None)
    assert runtime._unsupported(Variant("fp16")) is None and runtime._unsupported(Variant("int8", "kl_divergence")) is None
    assert runtime._unsupported(Variant("fp32")) and runtime._unsupported(Variant("int8_dynamic"))


def test_call_sequence_and_input_layout(vsx: ModuleType, models_dir: Path) -> None:
    image = _bgr(5, 7, b=10, g=20, r=30)
    with _runtime(models_dir, device=3).load(_item()) as session:
        outputs = session.run(RunInput(tensor=None, images=[image], stems=["a"]))
    assert vsx.call_names() == LOAD_SEQUENCE + ONE_IMAGE + SHUTDOWN
    calls = dict(vsx.CALLS)
    assert calls["set_device"] == 3
    assert calls["Model"] == (str(models_dir / "isnet_fp16" / "mod"), 1)
    assert calls["Stream"] == vsx.StreamBalanceMode.ONCE
    assert calls["create_image"] == (vsx.ImageFormat.RGB_PLANAR, 7, 5, 3)  # original W, H
    received = vsx.IMAGES[0]
    assert received.shape == (3, 5, 7) and received.dtype == np.uint8
    assert [int(received[c, 0, 0]) for c in range(3)] == [30, 20, 10]  # R, G, B planes
    assert len(outputs) == 1 and outputs[0].shape == (1, 1, 320, 320) and outputs[0].dtype == np.float32
    vsx.assert_shut_down()


def test_batch_outputs_follow_the_images(vsx: ModuleType, models_dir: Path) -> None:
    images = [_bgr(40, 60, 0, 0, 255), _bgr(31, 17, 0, 0, 51), np.full((9, 11), 102, np.uint8)]
    images.append(np.dstack([_bgr(8, 8, 0, 0, 153), np.zeros((8, 8, 1), np.uint8)]))  # BGRA
    with _runtime(models_dir).load(_item("int8", "kl_divergence")) as session:
        (prediction,) = session.run(RunInput(tensor=None, images=images, stems=["a", "b", "c", "d"]))
    assert prediction.shape == (4, 1, 320, 320)
    # The fake's model answers with the red plane / 255: 255, 51, 102 and 153 give 1.0, 0.2, 0.4, 0.6.
    np.testing.assert_allclose(prediction[:, 0, 0, 0], [1.0, 0.2, 0.4, 0.6], atol=1e-3)
    assert [tuple(a.shape) for a in vsx.IMAGES] == [(3, 40, 60), (3, 31, 17), (3, 9, 11), (3, 8, 8)]
    vsx.assert_shut_down()


def test_vdsp_file_next_to_the_model_is_used(vsx: ModuleType, models_dir: Path) -> None:
    target = models_dir / "isnet_fp16" / OFFICIAL.name
    shutil.copyfile(OFFICIAL, target)
    with _runtime(models_dir).load(_item()) as session:
        assert dict(vsx.CALLS)["load_ops_from_json_file"] == str(target)
        assert [f.field for f in session.findings] == ["interpolation"]


def test_without_a_vdsp_file_the_case_one_is_emitted(vsx: ModuleType, models_dir: Path) -> None:
    with _runtime(models_dir).load(_item()) as session:
        emitted = Path(dict(vsx.CALLS)["load_ops_from_json_file"])
        assert emitted.name == "isnet-vdsp_params.json"
        assert not emitted.exists()  # a temporary file, gone once the device has read it
        assert [f.field for f in session.findings] == ["interpolation"]


def test_close_is_required_and_idempotent(vsx: ModuleType, models_dir: Path) -> None:
    session = _runtime(models_dir).load(_item())
    with pytest.raises(vsx.FakeDeviceError, match="not shut down"):
        vsx.assert_shut_down()
    session.close()
    session.close()
    assert vsx.call_names().count("close_input") == 1
    vsx.assert_shut_down()
    with pytest.raises(SessionClosed, match="after close"):
        session.run(RunInput(tensor=None, images=[_bgr(2, 2, 0, 0, 0)], stems=["a"]))


def test_missing_compiled_model_is_unavailable(vsx: ModuleType, models_dir: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match=r"isnet_int8_max.*mod.*vamc-config isnet --precision int8"):
        _runtime(models_dir).load(_item("int8", "max"))
    assert vsx.CALLS == []


def test_model_compiled_for_another_shape(vsx: ModuleType, models_dir: Path) -> None:
    vsx.MODEL_INPUT_SHAPE = (1, 3, 1024, 1024)
    with pytest.raises(VaccError, match=r"isnet_fp16.*\(3, 1024, 1024\).*\(3, 320, 320\)"):
        _runtime(models_dir).load(_item())


def test_device_that_does_not_open(vsx: ModuleType, models_dir: Path) -> None:
    vsx.SET_DEVICE_RESULT = -1
    with pytest.raises(VaccError, match="device 2"):
        _runtime(models_dir, device=2).load(_item())


def test_fake_rejects_what_the_device_rejects(vsx: ModuleType, models_dir: Path) -> None:
    """The fake is only worth its checks: interleaved, non-uint8 or mis-sized input and early runs fail."""
    vsx.set_device(0)
    bgr = _bgr(4, 6, 1, 2, 3)
    with pytest.raises(vsx.FakeDeviceError, match=r"\(3, H, W\)"):
        vsx.create_image(bgr, vsx.ImageFormat.RGB_PLANAR, 6, 4, 0)
    with pytest.raises(vsx.FakeDeviceError, match="uint8"):
        vsx.create_image(bgr.transpose(2, 0, 1).astype(np.float32), vsx.ImageFormat.RGB_PLANAR, 6, 4, 0)
    with pytest.raises(vsx.FakeDeviceError, match="do not match"):
        vsx.create_image(np.ascontiguousarray(bgr.transpose(2, 0, 1)), vsx.ImageFormat.RGB_PLANAR, 4, 6, 0)
    model = vsx.Model(str(models_dir / "isnet_fp16" / "mod"), 1)
    graph = vsx.Graph()
    model_op = vsx.ModelOperator(model)
    graph.add_operators(vsx.Operator.load_ops_from_json_file(str(OFFICIAL))[0], model_op)
    stream = vsx.Stream(graph, vsx.StreamBalanceMode.ONCE)
    stream.register_operator_output(model_op)
    with pytest.raises(vsx.FakeDeviceError, match="before build"):
        stream.run_sync([])
