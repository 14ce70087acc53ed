"""vamp offline path: npz inputs as vacc-interfaces.md §4 describes them, and outputs read back as a runtime."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.data.cases import Item, Variant, load_family
from harness.runtimes import RunInput, RuntimeConfig, RuntimeUnavailable, get
from harness.runtimes.vamp import VampError, VampRuntime, image_files, write_inputs

DATA = Path(__file__).resolve().parents[1] / "data" / "vacc"
FAMILY = load_family(DATA / "cases" / "isnet.yaml")
ISNET = next(m for m in FAMILY.models if m.name == "isnet")
STEMS = ["0001", "0003", "0007"]


def _item(precision: str = "fp16", calibration: str | None = None) -> Item:
    return Item(FAMILY, ISNET, Variant(precision, calibration), "vamp")


def _runtime(outputs: Path | None) -> VampRuntime:
    runtime = get("vamp", RuntimeConfig(vamp_outputs=outputs))
    assert isinstance(runtime, VampRuntime)
    return runtime


def _outputs_dir(root: Path, names: list[str], datalist: list[str] = STEMS, item: str = "isnet_fp16") -> Path:
    """A vamp outputs folder: the shared datalist and one output per name, value = its position + 1."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "npz_datalist.txt").write_text("".join(f"/box/inputs/{s}.npz\n" for s in datalist))
    folder = root / item
    folder.mkdir()
    for k, name in enumerate(names):
        np.savez(folder / f"{name}.npz", output_0=np.full((1, 1, 4, 4), k + 1, np.float16))
    return folder


def _run(root: Path, stems: list[str], item: Item | None = None) -> list[np.ndarray]:
    session = _runtime(root).load(item or _item())
    return session.run(RunInput(tensor=None, images=[np.zeros((2, 2, 3), np.uint8)] * len(stems), stems=stems))


def test_inputs_are_rgb_chw_uint8_at_original_size(tmp_path: Path) -> None:
    images = tmp_path / "set" / "images"
    images.mkdir(parents=True)
    first = np.zeros((5, 7, 3), np.uint8)
    first[..., 0], first[..., 1], first[..., 2] = 10, 20, 30  # B, G, R
    cv2.imwrite(str(images / "b.png"), first)
    cv2.imwrite(str(images / "a.png"), np.full((3, 4), 200, np.uint8))
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "npz"
    datalist = write_inputs(image_files(tmp_path / "set"), out)
    assert datalist == out / "npz_datalist.txt"
    lines = datalist.read_text().splitlines()
    assert lines == [str((out / "a.npz").resolve()), str((out / "b.npz").resolve())]
    assert all(Path(line).is_absolute() for line in lines)
    with np.load(out / "b.npz") as npz:
        assert npz.files == ["input_0"]
        array = npz["input_0"]
    assert array.shape == (3, 5, 7) and array.dtype == np.uint8
    assert [int(array[c, 0, 0]) for c in range(3)] == [30, 20, 10]
    with np.load(out / "a.npz") as npz:
        assert npz["input_0"].shape == (3, 3, 4) and (npz["input_0"] == 200).all()


def test_colliding_stems_are_refused(tmp_path: Path) -> None:
    for name in ("x.png", "x.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(VampError, match="share a stem.*x"):
        image_files(tmp_path)


def test_outputs_by_position(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", ["output_000000", "output_000001", "output_000002"])
    (prediction,) = _run(tmp_path / "out", ["0007", "0001"])
    assert prediction.shape == (2, 1, 4, 4) and prediction.dtype == np.float32
    assert prediction[:, 0, 0, 0].tolist() == [3.0, 1.0]


def test_outputs_by_position_follow_the_datalist_not_the_names(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", ["o0", "o1", "o2"], datalist=["0007", "0001", "0003"])
    (prediction,) = _run(tmp_path / "out", ["0001", "0007"])
    assert prediction[:, 0, 0, 0].tolist() == [2.0, 1.0]


def test_outputs_by_name(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", STEMS)
    (prediction,) = _run(tmp_path / "out", ["0003"])
    assert prediction[0, 0, 0, 0] == 2.0


def test_one_folder_per_item_and_per_item_datalist(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _outputs_dir(root, ["o0", "o1", "o2"])
    folder = root / "isnet_int8_kl_divergence"
    folder.mkdir()
    (folder / "npz_datalist.txt").write_text("/x/0007.npz\n")
    np.savez(folder / "o0.npz", output_0=np.full((1, 1, 4, 4), 9, np.float16))
    (prediction,) = _run(root, ["0007"], _item("int8", "kl_divergence"))
    assert prediction[0, 0, 0, 0] == 9.0


def test_missing_output_by_position_names_the_input(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", ["o0", "o1"])
    with pytest.raises(VampError, match=r"2 output files for 3 lines.*0007"):
        _runtime(tmp_path / "out").load(_item())


def test_missing_and_extra_outputs_by_name(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", ["0001", "0003", "9999"])
    with pytest.raises(VampError, match=r"no output for 0007.*not in the datalist: 9999"):
        _runtime(tmp_path / "out").load(_item())


def test_misordered_outputs(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", STEMS, datalist=["0003", "0001", "0007"])
    with pytest.raises(VampError, match=r"not in the order.*line 1: datalist '0003', output '0001'"):
        _runtime(tmp_path / "out").load(_item())


def test_stem_outside_the_datalist(tmp_path: Path) -> None:
    _outputs_dir(tmp_path / "out", STEMS)
    with pytest.raises(VampError, match="no output for input '0042'"):
        _run(tmp_path / "out", ["0042"])


def test_output_without_its_key_or_batch_dim(tmp_path: Path) -> None:
    folder = _outputs_dir(tmp_path / "out", STEMS)
    np.savez(folder / "0001.npz", result=np.zeros((1, 1, 4, 4)))
    np.savez(folder / "0003.npz", output_0=np.zeros((4, 4)))
    with pytest.raises(VampError, match=r"0001\.npz: no key 'output_0'"):
        _run(tmp_path / "out", ["0001"])
    with pytest.raises(VampError, match=r"0003\.npz: output_0 has shape \(4, 4\)"):
        _run(tmp_path / "out", ["0003"])


def test_availability_and_missing_pieces(tmp_path: Path) -> None:
    assert VampRuntime.takes_images and VampRuntime.artifact is None and _runtime(None).brings_own_model
    reason = _runtime(None).unavailable
    assert reason is not None and "--vamp-outputs" in reason
    root = tmp_path / "out"
    root.mkdir()
    with pytest.raises(RuntimeUnavailable, match="isnet_fp16"):
        _runtime(root).load(_item())
    (root / "isnet_fp16").mkdir()  # prepared by vamp-inputs --outputs, vamp not run yet
    with pytest.raises(RuntimeUnavailable, match="no vamp outputs in .*isnet_fp16"):
        _runtime(root).load(_item())
    np.savez(root / "isnet_fp16" / "o.npz", output_0=np.zeros((1, 1, 2, 2)))
    with pytest.raises(VampError, match="no npz_datalist.txt"):
        _runtime(root).load(_item())
    assert _runtime(root).unsupported(Variant("fp32"))
