"""PyTorch on the CPU, through the fp32 TorchScript artifact: fp32, and fp16 by casting module and input to half.

This runs the network as PyTorch computes it (its own kernels, its own fp16 rounding), a second
opinion next to the ONNX graphs. On a CPU without fp16 arithmetic PyTorch's fp16 convolutions take a fallback
kernel whose speed depends on the weights' memory layout: u2netp at 320 took 57 s per image with contiguous (NCHW)
fp16 weights and 2.3 s with channels-last ones (fp32: 0.6 s), on a 2-core AVX-512 machine, with outputs of the same
fp16 rounding (side output 0 within 0.0076 of each other, both 0.17 from fp32). So fp16 modules are loaded
channels-last. Static and dynamic int8 are ONNX graph transforms (QDQ, ConvInteger), so they are tested on the
runtimes that load ONNX, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Artifact, RunInput, Runtime, Session, importable

if TYPE_CHECKING:
    from ..data.cases import Item, Variant

#: Precisions this runtime can execute, with the torch dtype each runs in.
DTYPES = {"fp32": "float32", "fp16": "float16"}


def _to_numpy(output: Any) -> list[np.ndarray]:
    """Every tensor of a (possibly nested) output, as float32 arrays: fp16 results are compared in float32."""
    import torch

    if isinstance(output, torch.Tensor):
        return [output.detach().float().cpu().numpy()]
    if isinstance(output, (list, tuple)):
        return [array for element in output for array in _to_numpy(element)]
    raise TypeError(f"the module returned {type(output).__name__}, not tensors")


class TorchSession(Session):
    """A TorchScript module in eval mode, in the dtype of the item's precision."""

    provider = "CPU (PyTorch)"

    def __init__(self, module: Any, dtype: str, threads: int) -> None:
        self._module = module
        self.dtype = dtype
        self._threads = threads

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        import torch

        if batch.tensor is None:
            raise ValueError("the torch runtime needs a preprocessed tensor")
        tensor = torch.from_numpy(np.ascontiguousarray(batch.tensor)).to(getattr(torch, self.dtype))
        with torch.inference_mode():
            return _to_numpy(self._module(tensor))

    def notes(self) -> list[str]:
        return [f"executed: torch {self.dtype}"]

    def settings(self) -> dict[str, Any]:
        return {"threads": self._threads, "dtype": self.dtype}


class TorchRuntime(Runtime):
    name = "torch"
    artifact = "torchscript"

    def _unavailable(self) -> str | None:
        return importable("torch")

    def _unsupported(self, variant: "Variant") -> str | None:
        if variant.precision in DTYPES:
            return None
        return (f"{variant.label} is an ONNX graph transform (QDQ / ConvInteger); the torch runtime runs "
                "fp32 and fp16 only, int8 is tested on --runtime onnxruntime and --runtime openvino")

    def _load(self, item: "Item", artifact: Artifact | None) -> TorchSession:
        import torch

        assert artifact is not None
        if self.config.threads:
            torch.set_num_threads(self.config.threads)  # process-wide: torch has no per-module thread setting
        module = torch.jit.load(str(artifact.path), map_location="cpu").eval()
        dtype = DTYPES[item.variant.precision]
        if dtype == "float16":
            module = module.half().to(memory_format=torch.channels_last)
        return TorchSession(module, dtype, torch.get_num_threads())

    def describe(self) -> dict[str, Any]:
        import torch

        return {"runtime": self.name, "version": torch.__version__}
