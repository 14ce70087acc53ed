"""The machine fingerprint (:mod:`harness.machine`): which int8 path ONNX Runtime's kernels take on a CPU."""

from __future__ import annotations

import pytest

from harness.machine import Machine, classify_int8, fingerprint, int8_path

#: What NumPy reports on the two CPU kinds of this workplace (read off them with numpy._core's __cpu_features__).
AVX512_VNNI = {"SSE41": True, "AVX2": True, "AVX512F": True, "AVX512BW": True, "AVX512VNNI": True, "AVX512_ICL": True}
AVX2_ONLY = {"SSE41": True, "AVX2": True, "AVX512F": False, "AVX512BW": False, "AVX512VNNI": False}


@pytest.mark.parametrize(
    "features, flags, machine, name, saturates",
    [
        (AVX512_VNNI, set(), "x86_64", "avx512-vnni", False),
        (AVX2_ONLY, set(), "x86_64", "avx2", True),
        ({**AVX2_ONLY, "AVX512F": True, "AVX512BW": True}, set(), "x86_64", "avx512bw", True),
        ({**AVX2_ONLY, "AVXVNNI": True}, set(), "x86_64", "avx-vnni", False),
        (AVX512_VNNI, {"amx_int8", "amx_tile"}, "x86_64", "amx", False),
        # qemu-user emulating an AVX2 CPU on an AMX host: /proc/cpuinfo shows the host's flags, the process sees AVX2
        (AVX2_ONLY, {"amx_int8", "amx_tile", "avx512_vnni"}, "x86_64", "avx2", True),
        ({}, {"amx_int8", "amx_tile", "avx512_vnni"}, "x86_64", "amx", False),  # no NumPy view: the flags
        ({}, {"avx2", "sse4_1", "fma"}, "x86_64", "avx2", True),  # no NumPy view: the kernel's flags
        ({}, {"avx512bw", "avx512_vnni", "avx2"}, "x86_64", "avx512-vnni", False),
        ({"ASIMD": True, "ASIMDDP": True}, set(), "aarch64", "arm-dotprod", False),
        ({"ASIMD": True}, {"asimd", "i8mm"}, "aarch64", "arm-i8mm", False),
        ({"ASIMD": True}, set(), "aarch64", "arm-neon", False),
    ],
)
def test_int8_path_from_the_cpu_features(features, flags, machine, name, saturates):
    path = classify_int8(features, flags, machine)
    assert path.name == name and path.saturates_u8s8 is saturates


def test_this_process_reports_a_known_path_and_a_stable_fingerprint():
    assert int8_path().name != "unknown"
    facts = fingerprint()
    assert facts.int8 == int8_path().name and facts.cores >= 1 and facts.onnxruntime
    assert facts.id == fingerprint().id and facts.id.startswith(f"{facts.int8}-{facts.cores}c-")


def test_differences_name_each_changed_fact():
    ours = Machine("AMD EPYC", "avx512-vnni", ("AVX512VNNI",), 2, "Linux x86_64", "1.32.0", ("CPUExecutionProvider",))
    theirs = {**ours.as_dict(), "int8": "avx2", "cores": 16}
    assert ours.differences(ours.as_dict()) == []
    assert ours.differences(theirs) == ["int8: 'avx2' -> 'avx512-vnni'", "cores: 16 -> 2"]
    assert Machine(**{**ours.__dict__, "int8": "avx2"}).id != ours.id
