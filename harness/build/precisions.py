"""ONNX graph transforms that make each precision from the fp32 reference.

Each function writes one file and returns the facts its manifest must record (what was kept in
fp32, calibration method and sample count, quantizer version), so a report can say exactly what
"fp16" or "int8 kl_divergence" meant for that artifact.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.case_inputs import Int8Scheme

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("segconform.precisions")

#: The compiler's calibration names mapped to ONNX Runtime's calibration methods.
CALIBRATION_METHODS = {"max": "MinMax", "kl_divergence": "Entropy", "percentile": "Percentile"}

#: Ops whose float inputs are left in fp32 by the fp16 conversion (onnxconverter-common's defaults):
#: Resize's scales/sizes and comparisons lose meaning in half precision.
COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def upcast_fp16_weights(source: Path, target: Path) -> dict[str, Any]:
    """fp32 graph from an fp16 graph: every fp16 tensor becomes fp32 and float<->half Casts become Identity.

    fp16 -> fp32 is exact for the weights, so this is the same network computing in fp32: the
    reference the shipped fp16 graph is then compared against. Casts between integer and float
    types (shape arithmetic) are left alone; Identity keeps every tensor name, so no rewiring.
    """
    import onnx  # here, not at the top: the plugin imports this module, and onnx costs 0.5 s at every pytest start
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    upcast = 0
    for tensor in graph.initializer:
        types[tensor.name] = tensor.data_type
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
            upcast += 1
    identities = 0
    for node in graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        if to in floats and types.get(node.input[0]) in floats:
            node.op_type = "Identity"
            del node.attribute[:]
            identities += 1
    for value in [*graph.value_info, *graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    # No onnx.checker here: the package's graph lists its input Cast last (not topologically sorted), which
    # ONNX Runtime accepts; the fp32 item's conformance check runs this graph against the original instead.
    onnx.save(model, str(target))
    return {"transform": "fp16 tensors upcast to fp32 (exact for weights)", "upcast_initializers": upcast,
            "casts_to_identity": identities}


def convert_fp16(source: Path, target: Path, node_block_list: Sequence[str] = ()) -> dict[str, Any]:
    """fp16 graph with fp32 inputs and outputs, via onnxconverter-common.

    The manifest records which ops stayed in fp32 and how many compute ops really run on fp16
    tensors, because a graph that silently computes in fp32 is not an fp16 test.
    ``node_block_list`` names nodes kept in fp32 (what fault localisation found fp16 cannot carry).
    """
    import onnx
    from onnxconverter_common import __version__ as converter_version
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=list(node_block_list))
    onnx.save(converted, str(target))
    present = Counter(node.op_type for node in model.graph.node)
    kept_fp32 = sorted(op for op in float16.DEFAULT_OP_BLOCK_LIST if op in present)
    return {
        "tool": f"onnxconverter-common {converter_version}",
        "kept_fp32_ops": kept_fp32,
        "kept_fp32_nodes": list(node_block_list),
        **fp16_compute_share(converted),
    }


def fp16_compute_share(model: onnx.ModelProto) -> dict[str, int]:
    """How many compute ops (Conv, MatMul, ...) take fp16 weights: the evidence that fp16 numerics run."""
    from onnx import TensorProto

    half = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16}
    compute = [n for n in model.graph.node if n.op_type in COMPUTE_OPS]
    fp16_compute = [n for n in compute if len(n.input) > 1 and n.input[1] in half]
    return {"compute_ops": len(compute), "fp16_compute_ops": len(fp16_compute)}


def quantize_int8_dynamic(source: Path, target: Path) -> dict[str, Any]:
    """Dynamic int8 (weights int8, activations quantized on the fly) with ONNX Runtime's quantizer."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return {"tool": f"onnxruntime.quantization {onnxruntime.__version__}", "method": "dynamic", "weight_type": "QInt8"}


class _TensorReader:
    """Feeds preprocessed calibration tensors to ONNX Runtime's calibrator, a range at a time, logging progress.

    ``set_range`` lets the quantizer collect in strides (``CalibStridedMinMax``, honoured by every
    calibrator), so activations of only a few images are held at once: all 50 images of a 320x320 U2-Net
    at once would need tens of GB.
    """

    def __init__(self, input_name: str, tensors: Sequence[np.ndarray], label: str = "") -> None:
        self._input = input_name
        self._tensors = tensors
        self._window: Iterator[np.ndarray] = iter(tensors)
        self._label = label
        self._done = 0
        self._started = time.perf_counter()

    def __len__(self) -> int:
        return len(self._tensors)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._window = iter(self._tensors[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._window, None)
        if tensor is None:
            return None
        self._done += 1
        if self._done == len(self._tensors) or self._done % 10 == 0:
            log.info("%s calibration: %d/%d images (%.0f s)", self._label, self._done, len(self._tensors),
                     time.perf_counter() - self._started)
        return {self._input: tensor[None]}


def calibration_stride(count: int, most: int = 2) -> int:
    """The largest stride <= ``most`` that divides ``count`` (the quantizer needs equal strides)."""
    return next(stride for stride in range(min(most, count), 0, -1) if count % stride == 0)


#: Scheme type names -> ONNX Runtime QuantType member names.
QUANT_TYPES = {"u8": "QUInt8", "s8": "QInt8"}


def quantize_int8_static(
    source: Path,
    target: Path,
    calibration: str,
    tensors: Sequence[np.ndarray],
    image_names: Sequence[str],
    scheme: Int8Scheme = Int8Scheme(),
    nodes_to_exclude: Sequence[str] = (),
    calibration_cache: Path | None = None,
    label: str = "",
) -> dict[str, Any]:
    """Static int8, QDQ in ``scheme``'s types, calibrated on ``tensors`` with the compiler-named ``calibration``.

    ``calibration_cache`` holds the computed tensor ranges: excluding nodes does not change which tensors
    are calibrated, so fault localisation rebuilds from the cache instead of calibrating again.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibration not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration {calibration!r}; known: {', '.join(CALIBRATION_METHODS)}")
    if not tensors:
        raise ValueError("static int8 needs at least one calibration image")
    model = onnx.load(str(source), load_external_data=False)
    reader = _TensorReader(model.graph.input[0].name, tensors, f"{label} int8 {calibration}".strip())
    stride = calibration_stride(len(tensors))
    cached = calibration_cache is not None and calibration_cache.is_file()
    quantize_static(
        str(source),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=scheme.per_channel,
        reduce_range=scheme.reduce_range,
        activation_type=getattr(QuantType, QUANT_TYPES[scheme.activations]),
        weight_type=getattr(QuantType, QUANT_TYPES[scheme.weights]),
        calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[calibration]),
        nodes_to_exclude=list(nodes_to_exclude),
        extra_options={"CalibStridedMinMax": stride},
        calibration_cache_path=str(calibration_cache) if calibration_cache else None,
    )
    return {
        "tool": f"onnxruntime.quantization {onnxruntime.__version__}",
        "method": "static " + scheme.label,
        "scheme": scheme.model_dump(exclude={"note"}),
        "calibration_ranges": "reused from cache" if cached else "computed",
        "calibration": calibration,
        "ort_calibration_method": CALIBRATION_METHODS[calibration],
        "calibration_samples": len(tensors),
        "calibration_stride": stride,
        "calibration_images_sha256": hashlib.sha256("\n".join(image_names).encode()).hexdigest(),
        "nodes_excluded": list(nodes_to_exclude),
    }
