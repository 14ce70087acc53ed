"""Static int8 verdicts do not depend on the CPU: the same build, run on this CPU and on an emulated AVX2-only one.

ONNX Runtime's fused U8S8 kernels saturate a 16-bit intermediate on AVX2 (no VNNI), so a build's deployed
outputs differ between CPU kinds; the harness therefore judges static int8 by the build's exact QDQ
arithmetic (see :mod:`harness.runtimes.onnxruntime`). This test runs a small build whose weights and inputs
make saturation certain, natively and under ``qemu-x86_64 -cpu EPYC-Milan`` (an AVX2 CPU without AVX-512 or
VNNI, as the AVX2 machines of this workplace are), and requires the exact outputs to be bit-identical.
Measured on u2netp's real build the same way (3 ECSSD images): exact outputs identical; the deployed kernels
differ from exact by per-image MAE 0.0011-0.0032 with VNNI and 0.0027-0.0148 on AVX2.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from emulated_cpu import needs_qemu, run_snippet
from torch import nn

from harness.build import precisions

pytestmark = needs_qemu

RUN = r"""
import json, sys
import numpy as np
import onnxruntime as ort
from harness.machine import int8_path
from harness.runtimes import RunInput, RuntimeConfig, get
from harness.runtimes.base import Artifact
from types import SimpleNamespace
from harness.data.cases import Variant
item = SimpleNamespace(variant=Variant("int8", "max"), id="saturating-int8")
session = get("onnxruntime", RuntimeConfig(threads=1)).load(item, Artifact(__import__("pathlib").Path(sys.argv[1]), {}))
image = np.load(sys.argv[2])
exact = session.run(RunInput(image, [], ["x"]))[0]
deployed = session.deployed.run(RunInput(image, [], ["x"]))[0]
np.savez(sys.argv[3], exact=exact, deployed=deployed)
print(json.dumps({"int8": int8_path().name}))
"""


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A conv whose int8 weights sit at +-127 on 64 channels fed with inputs near 255: U8S8 pairs overflow 16 bits."""
    folder = tmp_path_factory.mktemp("isa")
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 8, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.sign(torch.randn_like(conv.weight)) * (0.9 + 0.1 * torch.rand_like(conv.weight)))
    network = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(8, 1, 1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (torch.rand(1, 64, 8, 8),), str(folder / "fp32.onnx"), input_names=["input"],
                          output_names=["output"], opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    calibration = [rng.uniform(0.0, 1.0, (64, 8, 8)).astype(np.float32) for _ in range(4)]
    precisions.quantize_int8_static(folder / "fp32.onnx", folder / "int8.onnx", "max", calibration, ["c"] * 4)
    image = folder / "image.npy"
    np.save(image, rng.uniform(0.95, 1.0, (1, 64, 8, 8)).astype(np.float32))
    return folder / "int8.onnx", image


def _run(build: tuple[Path, Path], out: Path, emulate: bool) -> tuple[dict[str, np.ndarray], str]:
    return run_snippet(RUN, [str(build[0]), str(build[1]), str(out)], out, emulate)


@pytest.mark.slow
def test_exact_int8_arithmetic_is_bit_identical_on_avx2_and_on_this_cpu(build, tmp_path):
    native, native_path = _run(build, tmp_path / "native.npz", emulate=False)
    emulated, emulated_path = _run(build, tmp_path / "avx2.npz", emulate=True)
    assert emulated_path == "avx2", f"the emulated CPU reports {emulated_path}, not an AVX2-only int8 path"
    np.testing.assert_array_equal(native["exact"], emulated["exact"])
    for name, outputs in ((native_path, native), ("avx2 (emulated)", emulated)):
        difference = float(np.abs(outputs["deployed"] - outputs["exact"]).max())
        print(f"deployed int8 kernels on {name} vs exact arithmetic: max |diff| {difference:.4g}")
