"""PyTorch -> ONNX (opset 17, dynamic batch/height/width) and TorchScript, each checked against PyTorch.

An export is only accepted when the exported model reproduces the PyTorch network on a real
preprocessed image; the measured difference goes into the manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Largest |onnx - torch| accepted for an fp32 export; float reassociation stays far below this.
EXPORT_TOLERANCE = 1e-3


class PredictionHead(nn.Module):
    """Wraps a network whose forward returns nested tuples/lists and keeps only the prediction.

    ``path`` is the case's ``output`` index path (e.g. ``(0, 0)`` for ISNet's first side output).
    """

    def __init__(self, network: nn.Module, path: tuple[int, ...]) -> None:
        super().__init__()
        self.network = network
        self.path = tuple(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: Any = self.network(x)
        for index in self.path:
            if isinstance(out, torch.Tensor):
                break
            out = out[index]
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"output path {self.path} does not lead to a tensor")
        return out


def _probe(sample: np.ndarray | None, input_shape: tuple[int, int, int]) -> torch.Tensor:
    if sample is not None:
        return torch.from_numpy(np.ascontiguousarray(sample[None], dtype=np.float32))
    generator = torch.Generator().manual_seed(0)
    return torch.rand((1, *input_shape), generator=generator) - 0.5


def export_onnx(
    module: nn.Module, input_shape: tuple[int, int, int], target: Path, opset: int, sample: np.ndarray | None = None
) -> dict[str, Any]:
    """Export ``module`` and check it with ONNX Runtime on ``sample`` (or a fixed pseudo-image)."""
    import onnxruntime as ort

    probe = _probe(sample, input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (probe,),
                str(target),
                input_names=["input"],
                output_names=["output"],
                opset_version=opset,
                dynamic_axes={
                    "input": {0: "batch", 2: "height", 3: "width"},
                    "output": {0: "batch", 2: "out_height", 3: "out_width"},
                },
                dynamo=False,
            )
            exporter = f"torch.onnx {torch.__version__} (TorchScript-based, dynamic batch/height/width)"
        except Exception as error:  # e.g. adaptive pooling over sizes it cannot split evenly (PSPNet, ICNet at 320)
            torch.onnx.export(module, (probe,), str(target), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=True)
            exporter = (f"torch.onnx {torch.__version__} (torch.export-based, static shape; the TorchScript exporter "
                        f"failed: {str(error).splitlines()[0][:160]})")
        expected = module(probe).numpy()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"input": probe.numpy()})[0]
    difference = float(np.max(np.abs(actual - expected)))
    if not difference <= EXPORT_TOLERANCE:
        raise ValueError(f"{target.name}: ONNX export differs from PyTorch by {difference:.3g} (> {EXPORT_TOLERANCE})")
    import onnx

    opset_used = next(o.version for o in onnx.load(str(target), load_external_data=False).opset_import
                      if o.domain in ("", "ai.onnx"))
    return {"exporter": exporter, "opset_used": opset_used, "export_max_abs_diff": difference}


def export_torchscript(
    module: nn.Module, input_shape: tuple[int, int, int], target: Path, sample: np.ndarray | None = None
) -> dict[str, Any]:
    """Trace ``module`` to TorchScript and check the traced module against the eager one."""
    probe = _probe(sample, input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, probe)
        traced.save(str(target))
        reloaded = torch.jit.load(str(target))
        difference = float((reloaded(probe) - module(probe)).abs().max())
    if not difference <= EXPORT_TOLERANCE:
        raise ValueError(f"{target.name}: TorchScript differs from eager PyTorch by {difference:.3g}")
    return {"exporter": f"torch.jit.trace {torch.__version__}", "export_max_abs_diff": difference}
