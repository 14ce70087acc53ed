"""ONNX Runtime: the reference runtime. CPU always; CUDA and TensorRT execution providers when installed."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from .base import Artifact, RunInput, RuntimeConfig, RuntimeUnavailable, importable

if TYPE_CHECKING:
    from ..cases import Item, Variant

#: Preferred execution providers, fastest first; only the ones this onnxruntime build has are used.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeSession:
    """One ``InferenceSession``; the first graph input takes the batch, every output is returned."""

    def __init__(self, artifact: Artifact, providers: list[str], threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Without the arena each session hands its activation memory back after a run: a suite keeps several
        # 1024x1024 sessions alive at once, and their arenas together would not fit a 24 GB machine.
        options.enable_cpu_mem_arena = False
        # WeightBiasQuantization would re-quantize a Conv that static int8 deliberately left in fp32
        # (nodes_to_exclude), silently undoing what fault localisation asked for.
        self._session = ort.InferenceSession(
            str(artifact.path), sess_options=options, providers=providers, disabled_optimizers=["WeightBiasQuantization"]
        )
        self._input = self._session.get_inputs()[0].name
        self.providers = self._session.get_providers()

    def run(self, batch: RunInput) -> list[np.ndarray]:
        if batch.tensor is None:
            raise ValueError("onnxruntime needs a preprocessed tensor")
        return list(self._session.run(None, {self._input: batch.tensor}))


class OnnxRuntime:
    name: ClassVar[str] = "onnxruntime"
    takes_images: ClassVar[bool] = False
    artifact_kind: ClassVar[Literal["onnx"]] = "onnx"

    def __init__(self, config: RuntimeConfig) -> None:
        self.threads = config.threads

    def available(self) -> tuple[bool, str]:
        return importable("onnxruntime")

    def supports(self, variant: "Variant") -> tuple[bool, str]:
        return True, ""

    def providers(self) -> list[str]:
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        return [p for p in PREFERRED_PROVIDERS if p in have]

    def load(self, artifact: Artifact | None, item: "Item") -> OnnxRuntimeSession:
        ok, reason = self.available()
        if not ok:
            raise RuntimeUnavailable(reason)
        if artifact is None:
            raise ValueError(f"{item.id}: onnxruntime needs an ONNX artifact")
        return OnnxRuntimeSession(artifact, self.providers(), self.threads)
