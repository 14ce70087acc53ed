"""What machine a run happened on: CPU model, the int8 instruction set ONNX Runtime's kernels take, tools.

ONNX Runtime's CPU int8 kernels (MLAS) dispatch on the instruction set: with AVX-512 VNNI, AVX-VNNI,
AMX or an ARM dot-product unit, a u8 x s8 product sum is accumulated exactly in 32 bits; on AVX2 and
AVX-512 without VNNI the U8S8 kernels use ``vpmaddubsw``, which adds two u8 x s8 products into a
*saturating* 16-bit lane. The same int8 graph then computes different numbers on two machines.
Which path a CPU takes is read here from the CPU's feature bits as NumPy's runtime dispatcher saw them
(``cpuid`` on x86, HWCAP on ARM), the same source MLAS reads, so an emulated or virtual CPU reports
what the kernels really see; ``/proc/cpuinfo`` is only the fallback.

Every artifact manifest, report row, run record and benchmark baseline carries :func:`fingerprint`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

#: int8 paths whose U8S8 kernels saturate a 16-bit intermediate (vpmaddubsw), per ORT's quantization docs.
SATURATING_U8S8 = frozenset({"avx2", "avx512bw"})


@dataclass(frozen=True)
class Int8Path:
    """The CPU's int8 instruction set as ONNX Runtime's kernels use it."""

    name: str  #: amx, avx512-vnni, avx-vnni, avx512bw, avx2, sse4.1, arm-i8mm, arm-dotprod, arm-neon, unknown
    features: tuple[str, ...]  #: the feature bits it was decided from

    @property
    def saturates_u8s8(self) -> bool:
        """Whether a full-range U8S8 graph can saturate on this CPU (ORT then recommends reduce_range or U8U8)."""
        return self.name in SATURATING_U8S8


def _cpu_features() -> dict[str, bool]:
    """The CPU features NumPy's dispatcher detected at import (empty when this NumPy does not expose them)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # type: ignore[attr-defined]
    except ImportError:  # NumPy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[attr-defined,no-redef]
        except ImportError:
            return {}
    return {name: bool(value) for name, value in __cpu_features__.items()}


def _proc_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def classify_int8(features: dict[str, bool], flags: set[str], machine: str) -> Int8Path:
    """The int8 path from NumPy's feature names (``AVX512VNNI``, ``ASIMDDP`` ...) and ``/proc/cpuinfo`` flags.

    AMX is not among NumPy's names, so it comes from the flags (``amx_int8``); the rest prefers NumPy's
    view, which is what the process really sees.
    """
    have = {name for name, on in features.items() if on}
    arm = machine.lower() in ("aarch64", "arm64") or "ASIMD" in have
    if arm:
        for name, needed in (("arm-i8mm", ("I8MM", "i8mm")), ("arm-dotprod", ("ASIMDDP", "asimddp")),
                             ("arm-neon", ("ASIMD", "asimd", "NEON"))):
            found = [f for f in needed if f in have or f in flags]
            if found:
                return Int8Path(name, tuple(found))
        return Int8Path("unknown", ())
    # The kernel's flags are the host's even where the process runs on an emulated CPU (qemu-user, -cpu EPYC-Milan on
    # a Sapphire Rapids host lists amx_int8); every AMX CPU has AVX-512 VNNI, so AMX counts only where the process
    # itself sees that too.
    if "amx_int8" in flags and "amx_tile" in flags and (not have or "AVX512VNNI" in have):
        return Int8Path("amx", ("amx_int8", "amx_tile"))
    if not have:  # no NumPy view: fall back to the kernel's flags
        have = {flag.upper() for flag in flags}
        have |= {"AVX512VNNI"} if "avx512_vnni" in flags else set()
        have |= {"AVXVNNI"} if "avx_vnni" in flags else set()
        have |= {"SSE41"} if "sse4_1" in flags else set()
    for name, needed in (("avx512-vnni", "AVX512VNNI"), ("avx-vnni", "AVXVNNI"), ("avx512bw", "AVX512BW"),
                         ("avx2", "AVX2"), ("sse4.1", "SSE41")):
        if needed in have:
            return Int8Path(name, (needed,))
    return Int8Path("unknown", ())


@functools.cache
def int8_path() -> Int8Path:
    """This process's int8 path (cached: the CPU does not change under a running process)."""
    return classify_int8(_cpu_features(), _proc_flags(), platform.machine())


def cpu_model() -> str:
    """The CPU's marketing name (``AMD EPYC``, ``Intel(R) Xeon(R) ...``) or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def tool_versions() -> dict[str, str]:
    """Versions of the tools whose behaviour a result depends on; absent tools are left out."""
    names = ("onnxruntime", "onnxruntime-gpu", "onnx", "onnxconverter-common", "torch", "openvino", "numpy",
             "opencv-python-headless", "opencv-python", "pysodmetrics", "pytest", "pytest-benchmark", "segconform")
    found = {name: _version(name) for name in names}
    return {"python": platform.python_version(), **{k: v for k, v in found.items() if v}}


@dataclass(frozen=True)
class Machine:
    """The facts that decide whether two runs' numbers (above all latencies) may be compared."""

    cpu: str
    int8: str
    int8_features: tuple[str, ...]
    cores: int
    system: str
    onnxruntime: str
    providers: tuple[str, ...]

    @property
    def id(self) -> str:
        """A short stable name for these facts, safe as a folder name (benchmark storage is kept per id)."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.int8}-{self.cores}c-{digest}"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "id": self.id}

    def differences(self, other: dict[str, object]) -> list[str]:
        """What differs between this machine and another's recorded facts, as ``field: theirs -> ours``."""
        mine = self.as_dict()
        return [f"{key}: {other.get(key)!r} -> {mine[key]!r}" for key in mine
                if key != "id" and _plain(other.get(key)) != _plain(mine[key])]


def _plain(value: object) -> object:
    return list(value) if isinstance(value, (list, tuple)) else value


@functools.cache
def fingerprint() -> Machine:
    """This machine's facts (cached per process)."""
    try:
        import onnxruntime

        ort_version, providers = onnxruntime.__version__, tuple(onnxruntime.get_available_providers())
    except ImportError:
        ort_version, providers = "absent", ()
    path = int8_path()
    return Machine(cpu_model(), path.name, path.features, os.cpu_count() or 1,
                   f"{platform.system()} {platform.machine()}", ort_version, providers)
