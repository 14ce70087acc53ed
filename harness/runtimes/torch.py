"""PyTorch on the CPU, through the fp32 TorchScript artifact: fp32, and fp16 by casting module and input to half.

This runs the network as PyTorch computes it (its own kernels, its own fp16 rounding), a second
opinion next to the ONNX graphs. Static and dynamic int8 are ONNX graph transforms (QDQ,
ConvInteger), so they are tested on the runtimes that load ONNX, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from .base import Artifact, RunInput, RuntimeConfig, RuntimeUnavailable, importable

if TYPE_CHECKING:
    from ..cases import Item, Variant

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


class TorchSession:
    """A TorchScript module in eval mode, in the dtype of the item's precision."""

    def __init__(self, module: Any, dtype: str) -> None:
        self._module = module
        self.dtype = dtype

    def run(self, batch: RunInput) -> list[np.ndarray]:
        import torch

        if batch.tensor is None:
            raise ValueError("the torch runtime needs a preprocessed tensor")
        tensor = torch.from_numpy(np.ascontiguousarray(batch.tensor)).to(getattr(torch, self.dtype))
        with torch.inference_mode():
            return _to_numpy(self._module(tensor))


class TorchRuntime:
    name: ClassVar[str] = "torch"
    takes_images: ClassVar[bool] = False
    artifact_kind: ClassVar[Literal["torchscript"]] = "torchscript"

    def __init__(self, config: RuntimeConfig) -> None:
        self.threads = config.threads

    def available(self) -> tuple[bool, str]:
        return importable("torch")

    def supports(self, variant: "Variant") -> tuple[bool, str]:
        if variant.precision in DTYPES:
            return True, ""
        return False, (f"{variant.label} is an ONNX graph transform (QDQ / ConvInteger); the torch runtime runs "
                       "fp32 and fp16 only, int8 is tested on --runtime onnxruntime and --runtime openvino")

    def load(self, artifact: Artifact | None, item: "Item") -> TorchSession:
        ok, reason = self.available()
        if not ok:
            raise RuntimeUnavailable(reason)
        supported, why = self.supports(item.variant)
        if not supported:
            raise ValueError(f"{item.id}: {why}")
        if artifact is None:
            raise ValueError(f"{item.id}: the torch runtime needs the fp32 TorchScript artifact")
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)  # process-wide: torch has no per-module thread setting
        module = torch.jit.load(str(artifact.path), map_location="cpu").eval()
        dtype = DTYPES[item.variant.precision]
        if dtype == "float16":
            module = module.half()
        return TorchSession(module, dtype)
