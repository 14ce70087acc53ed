"""OpenVINO on the CPU: a second real runtime for the fp32, fp16 and int8 ONNX graphs (optional extra ``openvino``).

OpenVINO's CPU plugin picks its own execution precision: ``INFERENCE_PRECISION_HINT`` defaults to
bf16 on CPUs with AVX512-BF16 or AMX, so an "fp32" run would silently compute in bf16. Every
session therefore asks for f32 explicitly, except fp16, which asks for f16 and is only offered
where the CPU reports native fp16 (``FP16`` in ``OPTIMIZATION_CAPABILITIES``). Elsewhere the plugin
decompresses fp16 weights and convolves in f32 (or bf16), which is not an fp16 test.

Each session reports what actually executed, read from the compiled model's runtime graph
(``runtimePrecision`` of every convolution / matrix-multiply layer), so a report can show it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Artifact, RunInput, Runtime, Session, importable

if TYPE_CHECKING:
    from ..data.cases import Item, Variant

#: Layer types of OpenVINO's CPU runtime graph that carry the arithmetic whose precision matters.
COMPUTE_LAYERS = frozenset({"Convolution", "Deconvolution", "FullyConnected", "MatMul"})

#: The execution precision each item precision asks the CPU plugin for. Static int8 (QDQ) runs its
#: quantized layers in u8/i8 through OpenVINO's low-precision transformations whatever the hint;
#: the hint governs the layers left in float.
HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32", "int8_dynamic": "f32"}


def _text(value: Any) -> str:
    """An OpenVINO property or rt_info value as plain text (``Type`` objects, ``OVAny`` and strings alike)."""
    value = value.astype(str) if hasattr(value, "astype") else value
    return value.get_type_name() if hasattr(value, "get_type_name") else str(value)


def cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU can execute natively (FP32, BF16, FP16, INT8, ...)."""
    import openvino as ov

    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


class OpenVinoSession(Session):
    """A model compiled for the CPU, plus what it executes in.

    ``inference_precision``: the precision the plugin compiled for (after any fallback).
    ``compute_precisions``: runtime precision -> number of compute layers executing in it,
    e.g. ``{"u8": 40, "f32": 2}`` for a static int8 graph.
    """

    def __init__(self, artifact: Artifact, hint: str, threads: int | None) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._threads = threads
        self.provider = "CPU (OpenVINO)"
        self.inference_precision = _text(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.compute_precisions = self._executed()

    def _executed(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and _text(info["layerType"]) in COMPUTE_LAYERS:
                counts[_text(info["runtimePrecision"])] += 1
        return dict(counts)

    @property
    def execution_precision(self) -> str:
        """One line for a report, e.g. ``u8 x40, f32 x2 (inference precision f32)``."""
        layers = ", ".join(f"{p} x{n}" for p, n in sorted(self.compute_precisions.items(), key=lambda kv: -kv[1]))
        return f"{layers or 'no compute layers'} (inference precision {self.inference_precision})"

    def notes(self) -> list[str]:
        return [f"executed: {self.execution_precision}"]

    def settings(self) -> dict[str, Any]:
        return {"inference_precision": self.inference_precision, "threads": self._threads or "plugin default"}

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        if batch.tensor is None:
            raise ValueError("openvino needs a preprocessed tensor")
        results = self._request.infer({0: batch.tensor})
        # The request reuses its output buffers on the next call: copy what we hand out.
        return [np.array(results[output]) for output in self._compiled.outputs]


class OpenVinoRuntime(Runtime):
    name = "openvino"
    artifact = "onnx"

    def _unavailable(self) -> str | None:
        return importable("openvino", "pip install .[openvino]")

    def _unsupported(self, variant: "Variant") -> str | None:
        if variant.precision not in HINTS:
            return f"no OpenVINO execution precision for {variant.label}"
        if variant.precision == "fp16":
            capabilities = cpu_capabilities()
            if "FP16" not in capabilities:
                return ("this CPU has no native fp16 for OpenVINO (OPTIMIZATION_CAPABILITIES: "
                        f"{', '.join(capabilities)}): its CPU plugin would convolve the fp16 graph in f32 "
                        "(or bf16), which is not an fp16 test; fp16 is tested on --runtime torch and onnxruntime")
        return None

    def _load(self, item: "Item", artifact: Artifact | None) -> OpenVinoSession:
        assert artifact is not None
        hint = HINTS[item.variant.precision]
        session = OpenVinoSession(artifact, hint, self.config.threads)
        if session.inference_precision != hint:
            raise RuntimeError(f"{item.id}: OpenVINO compiled for {session.inference_precision}, not the {hint} "
                               f"this precision needs; the results would not test {item.variant.label}")
        return session

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        return {"runtime": self.name, "version": ov.__version__}
