"""ONNX Runtime: the reference runtime, with its session options set explicitly and recorded, as deployed.

Static int8 (QDQ) graphs get two sessions. ONNX Runtime fuses QDQ into integer kernels (QLinearConv)
whose arithmetic depends on the CPU: exact with VNNI, AMX or ARM dot products, but on AVX2 and AVX-512
without VNNI the U8S8 kernels add pairs of products into saturating 16-bit lanes. The verdicts (which
must be the same on every machine) therefore use the build's *exact* arithmetic, the unfused QDQ graph
(``ORT_ENABLE_BASIC``: dequantize, float op, quantize, as the ONNX spec defines it); the fused session
is the ``deployed`` one, which latency measures and whose difference from the exact one is reported as
what this CPU's int8 kernels do to the build.

Execution providers are chosen with ``--ort-providers`` (``cpu`` by default; ``cuda``, ``tensorrt``,
``openvino``, ``dml``, in order of preference, CPU always last as the fallback for unsupported nodes).
The provider that really serves the session is read back from it and shown in every row, so a
TensorRT row and a CPU row are never both just "onnxruntime". The GPU providers come with the
``onnxruntime-gpu`` distribution, which replaces ``onnxruntime`` (both install the same package folder).
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Artifact, RunInput, Runtime, RuntimeConfig, Session, importable

if TYPE_CHECKING:
    from ..data.cases import Item

#: ``--ort-providers`` names -> ONNX Runtime execution providers.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

#: ``--ort-optimization`` names -> GraphOptimizationLevel member names.
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                       "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def session_options(config: RuntimeConfig, optimization: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The ``SessionOptions`` every session gets, and the same settings as a plain dict for the report."""
    import onnxruntime as ort

    optimization = optimization or config.ort_optimization
    threads = config.threads or os.cpu_count() or 1
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    # Without the arena each session hands its activation memory back after a run: a suite keeps several
    # 1024x1024 sessions alive at once, and their arenas together would not fit a 24 GB machine.
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    recorded = {"intra_op_threads": threads, "inter_op_threads": 1, "execution_mode": "sequential",
                "graph_optimization": optimization, "cpu_mem_arena": False}
    return options, recorded


class OnnxRuntimeSession(Session):
    """One ``InferenceSession``; the first graph input takes the batch, every output is returned."""

    def __init__(self, artifact: Artifact, config: RuntimeConfig, providers: list[str],
                 optimization: str | None = None, deployed: "OnnxRuntimeSession | None" = None) -> None:
        import onnxruntime as ort

        options, self._settings = session_options(config, optimization)
        self._deployed = deployed
        if deployed is not None:
            # The exact twin fuses nothing, so ONNX Runtime's QDQ handling has nothing to do but keep each weight's
            # DequantizeLinear out of constant folding (for fusions this session never makes): every run dequantised
            # every weight again. Switched off, the folding computes each weight once, with the same kernel, and
            # the QDQ rewrites of the basic level (propagating or merging Q/DQ pairs) stay off too, leaving the graph
            # as the spec reads it. Outputs bit-identical on every static int8 build of the suite (ISNet, U2-Net x3,
            # MODNet, UNet3+ x2, the three human_seg builds); 4-17% less time a run.
            options.add_session_config_entry("session.disable_quant_qdq", "1")
            self._settings["quant_qdq"] = "off: weights dequantised once at load"
        # WeightBiasQuantization would re-quantize a Conv that static int8 deliberately left in fp32
        # (nodes_to_exclude), silently undoing what fault localisation asked for.
        self._session = ort.InferenceSession(
            str(artifact.path), sess_options=options, providers=providers,
            disabled_optimizers=["WeightBiasQuantization"],
        )
        self._input = self._session.get_inputs()[0].name
        self.providers = self._session.get_providers()
        self.provider = self.providers[0]

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        if batch.tensor is None:
            raise ValueError("onnxruntime needs a preprocessed tensor")
        return list(self._session.run(None, {self._input: batch.tensor}))

    def settings(self) -> dict[str, Any]:
        settings = {**self._settings, "providers": list(self.providers)}
        if self._deployed is not None:
            settings = {"verdicts": {**settings, "arithmetic": "exact QDQ (unfused)"},
                        "deployed": self._deployed.settings()}
        return settings

    @property
    def deployed(self) -> Session:
        return self._deployed if self._deployed is not None else self


def is_static_int8(artifact: Artifact) -> bool:
    """Whether the artifact is a static int8 QDQ build (its manifest says so, or its graph has QuantizeLinear)."""
    if "scheme" in artifact.manifest:
        return True
    if artifact.manifest:
        return False
    import onnx

    graph = onnx.load(str(artifact.path), load_external_data=False).graph
    return any(node.op_type == "QuantizeLinear" for node in graph.node)


def installed_distributions() -> list[str]:
    """Which ONNX Runtime distributions are installed (two at once share one package folder and clash)."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    artifact = "onnx"

    def __init__(self, config: RuntimeConfig) -> None:
        super().__init__(config)
        unknown = [p for p in config.ort_providers if p not in PROVIDERS]
        if unknown:
            raise ValueError(f"--ort-providers: unknown provider(s) {unknown}; known: {', '.join(PROVIDERS)}")

    def providers(self) -> list[str]:
        """The requested execution providers in order, CPU last."""
        wanted = [PROVIDERS[p] for p in self.config.ort_providers or ("cpu",)]
        return list(dict.fromkeys([*wanted, PROVIDERS["cpu"]]))

    def _unavailable(self) -> str | None:
        missing = importable("onnxruntime")
        if missing:
            return missing
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        absent = [p for p in self.providers() if p not in have]
        if absent:
            distributions = installed_distributions()
            clash = (f"; {' and '.join(distributions)} are installed together and share one package folder: "
                     "`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`"
                     if len(distributions) > 1 else "")
            return (f"execution provider(s) {', '.join(absent)} not in this onnxruntime {ort.__version__} "
                    f"(it has {', '.join(sorted(have))}){clash}")
        return None

    def _load(self, item: "Item", artifact: Artifact | None) -> OnnxRuntimeSession:
        assert artifact is not None
        deployed = OnnxRuntimeSession(artifact, self.config, self.providers())
        if not is_static_int8(artifact) or deployed.provider != PROVIDERS["cpu"]:
            return deployed
        return OnnxRuntimeSession(artifact, self.config, [PROVIDERS["cpu"]], "basic", deployed)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": self.name, "version": ort.__version__, "providers": self.providers(),
                "distributions": installed_distributions()}
