"""Static int8 as an AVX2-only CPU deploys it, measured on any x86-64 machine: the deployed session under qemu-user.

ONNX Runtime's fused U8S8 kernels add pairs of products into saturating 16-bit lanes on CPUs without VNNI (AVX2,
AVX-512 without VNNI), so a build's deployed outputs there differ from its exact arithmetic by more than on a VNNI
CPU. The case files state a bound for such CPUs (``deployed_int8.saturating_u8s8``) and it has to come from
measurement on one. Running a whole item under emulation takes hours (the fp32 reference, the exact twin, the
calibration); only the deployed session's outputs depend on the CPU, so only that session runs emulated here:

1. this process preprocesses the images exactly as the item's pipeline does and writes the tensors to an npz file;
2. ``qemu-x86_64 -cpu EPYC-Milan`` (an AVX2 CPU without AVX-512 or VNNI) runs
   :mod:`harness.diagnose.deployed_worker` on the item's own build, which writes the raw outputs;
3. this process validates and postprocesses them through the same pipeline, into the maps the deployment verdict
   compares with the build's exact arithmetic and with fp32 (computed here: the exact arithmetic is bit-identical on
   every CPU, ``tests/test_int8_instruction_sets.py``).

``python -m harness emulate-int8 ITEM`` prints the figures a stated bound is derived from;
``tests/test_saturating_bounds.py`` holds every real static int8 variant's stated bound to a few emulated images.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..judge.judgement import Comparison

if TYPE_CHECKING:
    from ..data import datasets as ds
    from ..data.case_bounds import Budget
    from ..items.handle import ItemHandle
    from ..run.pipeline import Pipeline

#: The CPU qemu-user emulates: AMD Zen 3 (AVX2, no AVX-512, no VNNI), the AVX2 machines of this workplace's kind.
EMULATED_CPU = "EPYC-Milan"


class EmulationError(RuntimeError):
    """The emulated run could not be made (no qemu-user, not x86-64, the worker failed); says which and why."""


def qemu() -> str | None:
    """qemu-user's x86-64 binary where this host can run it (an x86-64 host), else None."""
    return shutil.which("qemu-x86_64") if platform.machine() == "x86_64" else None


@dataclass(frozen=True)
class EmulatedRun:
    """The deployed session's raw outputs as the emulated CPU computed them, with what that CPU called its int8 path;
    :meth:`maps` turns them into maps through the item's pipeline here (validated: a NaN or constant output is an
    error naming the image)."""

    item: str
    raw: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, int]]
    pipeline: "Pipeline"
    int8_path: str
    cpu: str
    seconds: float

    def maps(self, on_output: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None) -> dict[str, np.ndarray]:
        """The maps, each raw output first changed by ``on_output`` (an output fault) where given, in stem order."""
        run_id = f"{self.item}-deployed ({self.cpu}, emulated)"
        maps = {}
        for stem in sorted(self.raw):
            outputs = [self.raw[stem]] if on_output is None else on_output([self.raw[stem].copy()])
            maps[stem] = self.pipeline.validated(run_id, stem, outputs, self.shapes[stem])
        return maps


def deployed_on_emulated_cpu(handle: "ItemHandle", dataset: "ds.Dataset", samples: list["ds.Sample"] | None = None,
                             cpu: str = EMULATED_CPU, threads: int = 1, timeout_s: float = 3600.0) -> EmulatedRun:
    """The item's deployed maps on ``samples`` of ``dataset`` (default: the item's own samples), the session run on an
    emulated ``cpu``. Raises :class:`EmulationError` when qemu-user is missing, the item has no ONNX build, or the
    emulated worker fails."""
    binary = qemu()
    if binary is None:
        raise EmulationError("needs qemu-x86_64 (Debian package qemu-user) on an x86_64 host to emulate an AVX2 CPU")
    artifact, item = handle.artifact, handle.item
    if artifact is None or artifact.path.suffix != ".onnx":
        raise EmulationError(f"{item.id}: no ONNX build to deploy (runtime {item.runtime})")
    pipeline = handle.pipeline
    tensors: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for sample in samples if samples is not None else handle.samples(dataset):
        image = dataset.image(sample)
        tensor = pipeline.batch(image, sample.stem, False).tensor
        assert tensor is not None
        tensors[sample.stem], shapes[sample.stem] = tensor, image.shape[:2]
    if not tensors:
        raise EmulationError(f"{item.id}: no image of {dataset.name} to run")
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="segconform-emulated-") as folder:
        inputs, outputs = Path(folder) / "inputs.npz", Path(folder) / "outputs.npz"
        np.savez(inputs, **tensors)
        command = [binary, "-cpu", cpu, sys.executable, "-m", "harness.diagnose.deployed_worker", str(artifact.path),
                   str(inputs), str(outputs), str(threads)]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment,
                                  check=False)
        except subprocess.TimeoutExpired as error:
            raise EmulationError(f"{item.id}: the emulated {cpu} worker ran past {timeout_s:.0f} s") from error
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise EmulationError(f"{item.id}: the emulated {cpu} worker exited {done.returncode}: "
                                 f"{done.stderr.strip()[-1500:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        with np.load(outputs, allow_pickle=False) as saved:
            raw = {stem: saved[stem] for stem in tensors}
    return EmulatedRun(item.id, raw, shapes, pipeline, report["int8_path"], cpu, seconds)


@dataclass(frozen=True)
class DeployedFigures:
    """What a saturating-kernel bound is derived from: the deployed maps against the exact build and against fp32,
    and the exact build against fp32 (the healthy int8 loss, for scale)."""

    item: str
    dataset: str
    run: EmulatedRun
    vs_exact: Comparison
    vs_fp32: Comparison
    exact_vs_fp32: Comparison

    def as_dict(self) -> dict[str, object]:
        def side(comparison: Comparison) -> dict[str, object]:
            return {**comparison.stats, "per_image": {s: [float(m), float(a)] for s, (m, a)
                                                      in sorted(comparison.per_image.items())}}

        return {"item": self.item, "dataset": self.dataset, "cpu": self.run.cpu, "int8_path": self.run.int8_path,
                "emulated_seconds": self.run.seconds, "vs_exact": side(self.vs_exact),
                "vs_fp32": side(self.vs_fp32), "exact_vs_fp32": side(self.exact_vs_fp32)}

    def summary(self) -> str:
        return "\n".join([
            f"{self.item} on {self.dataset}, deployed on an emulated {self.run.cpu} (int8 path "
            f"{self.run.int8_path}), {self.run.seconds:.0f} s:",
            f"  deployed vs exact: {self.vs_exact}",
            f"  deployed vs fp32:  {self.vs_fp32}",
            f"  exact vs fp32:     {self.exact_vs_fp32}",
        ])


def measure(handle: "ItemHandle", dataset: "ds.Dataset", budget: "Budget", cpu: str = EMULATED_CPU,
            threads: int = 1) -> DeployedFigures:
    """The item's deployed maps on the emulated CPU compared, image by image, with its exact build and with fp32."""
    run = deployed_on_emulated_cpu(handle, dataset, cpu=cpu, threads=threads)
    deployed, exact, fp32 = run.maps(), handle.run(dataset).maps, handle.reference.run(dataset).maps
    return DeployedFigures(handle.item.id, dataset.name, run, Comparison.of(deployed, exact, budget),
                           Comparison.of(deployed, fp32, budget), Comparison.of(exact, fp32, budget))
