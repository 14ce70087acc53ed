"""The vamp offline path end to end: inputs written by the CLI, a simulated device, items run by pytest.

The "device" here is ONNX Runtime on the harness's own fp16 build, fed exactly what vamp would be
fed (the npz inputs: RGB, CHW, uint8, original size) and preprocessed by the case's recipe; its
outputs are written as vamp writes them (``output_0``, (1, 1, h, w), fp16). A pytest run with
``--runtime vamp --vamp-outputs`` must then judge them like an in-process runtime, and a folder with
a missing output must fail naming the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.build.weights import default_cache_dir
from harness.data.cases import Variant, load_all
from harness.data.datasets import synthetic
from harness.items.settings import Settings
from harness.items.suite import Suite

ROOT = Path(__file__).resolve().parents[2]
MODEL = "u2netp"


def _write_dataset(root: Path) -> Path:
    folder = root / "ecssd-300"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    dataset = synthetic(3)
    for sample in dataset.samples:
        image = dataset.image(sample)
        cv2.imwrite(str(folder / "images" / f"{sample.stem}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{sample.stem}.png"), (dataset.mask(sample, image.shape[:2]) * 255).astype(np.uint8))
    return folder


def _simulate_device(inputs: Path, outputs: Path, cache: Path) -> None:
    """Run the fp16 build on each npz input the way the device would, writing vamp-style outputs."""
    import onnxruntime as ort

    model = next(m for f in load_all(ROOT / "cases") for m in f.models if m.name == MODEL)
    suite = Suite(Settings(data_root=None, weights_dir=None, cache_dir=cache, golden_dir=ROOT / "golden",
                           report_dir=cache / "reports", eval_limit=None))
    artifact = suite.builder.onnx(model, Variant("fp16"))
    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    preprocess = suite.pipeline(model).preprocess
    target = outputs / f"{MODEL}_fp16"
    target.mkdir(parents=True, exist_ok=True)
    for line in (inputs / "npz_datalist.txt").read_text().split():
        planar = np.load(line)["input_0"]
        assert planar.dtype == np.uint8 and planar.shape[0] == 3, "vamp inputs must be RGB CHW uint8"
        bgr = np.ascontiguousarray(planar.transpose(1, 2, 0)[..., ::-1])
        output = session.run(None, {session.get_inputs()[0].name: preprocess(bgr)[None]})[0]
        np.savez(target / Path(line).name, output_0=output.astype(np.float16))


def _pytest(data_root: Path, outputs: Path, cache: Path, reports: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEGCONFORM_CACHE_DIR": str(cache), "SEGCONFORM_DATA_ROOT": str(data_root)}
    command = [sys.executable, "-m", "pytest", "cases/u2net.yaml", "-p", "no:cacheprovider", "-q", "-rs",
               "-k", f"{MODEL}-fp16-vamp and conformance", "--runtime", "vamp", "--vamp-outputs", str(outputs),
               "--report-dir", str(reports)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_vamp_outputs_are_judged_like_an_in_process_runtime(tmp_path: Path) -> None:
    cache = default_cache_dir()
    data_root = tmp_path / "data"
    folder = _write_dataset(data_root)
    inputs, outputs = tmp_path / "npz_in", tmp_path / "npz_out"
    made = subprocess.run([sys.executable, "-m", "harness", "vamp-inputs", MODEL, str(folder), "--out", str(inputs),
                           "--outputs", str(outputs)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    _simulate_device(inputs, outputs, cache)

    run = _pytest(data_root, outputs, cache, tmp_path / "reports")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout

    missing = sorted((outputs / f"{MODEL}_fp16").glob("*.npz"))[1]
    missing.unlink()
    run = _pytest(data_root, outputs, cache, tmp_path / "reports")
    assert run.returncode != 0
    assert missing.stem in run.stdout, run.stdout[-3000:]
