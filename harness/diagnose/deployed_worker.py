"""The deployed half of :mod:`harness.diagnose.emulated_int8`, run as its own process (under qemu-user there).

``python -m harness.diagnose.deployed_worker MODEL.onnx INPUTS.npz OUTPUTS.npz THREADS`` loads the model in the very
session the harness deploys a static int8 build in (ONNX Runtime's CPU provider, all graph optimisations: the fused
kernels whose arithmetic follows the CPU), runs every tensor of ``INPUTS.npz`` one at a time (batch 1, as the items
run), writes each first output under the same key, and prints one JSON line last: the int8 path this process's CPU
reports and the seconds its calls took. Only arrays cross the process boundary (``allow_pickle`` stays off).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    from ..machine import int8_path
    from ..runtimes import RunInput, RuntimeConfig
    from ..runtimes.base import Artifact
    from ..runtimes.onnxruntime import PROVIDERS, OnnxRuntimeSession

    model, inputs, outputs, threads = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    session = OnnxRuntimeSession(Artifact(model, {}), RuntimeConfig(threads=threads), [PROVIDERS["cpu"]])
    results: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    with np.load(inputs, allow_pickle=False) as tensors:
        for stem in tensors.files:
            results[stem] = session.run(RunInput(tensors[stem], [], [stem]))[0]
    seconds = time.perf_counter() - started
    session.close()
    np.savez(outputs, **results)
    print(json.dumps({"int8_path": int8_path().name, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
