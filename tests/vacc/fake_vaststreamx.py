"""A stand-in for the ``vaststreamx`` module that is strict where the device is (vacc-interfaces.md §3).

Load a fresh copy per test (module state is per copy) and put it in ``sys.modules["vaststreamx"]``.
It records every call in :data:`CALLS` and raises :class:`FakeDeviceError` on what the real stack
would reject or silently get wrong: a model before ``set_device``, operators in the wrong order, a
balance mode other than ONCE, running before ``build()`` or after ``close_input()``, an input that is
not a C-contiguous uint8 RGB planar (3, H, W) array whose W and H are passed as given, a device id
other than the one set. :func:`assert_shut_down` fails if a built stream was not closed and drained.

The "model" returns, per image, an fp16 tensor (1, 1, h, w) at the vdsp op's output size: the
image's first plane resized bilinearly and divided by 255. Tests can therefore tell which image an
output came from, and that the first plane the device saw was red.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: Every call, in order: (name, details).
CALLS: list[tuple[str, Any]] = []
#: Every array given to create_image, as received (copies).
IMAGES: list[np.ndarray] = []
#: What a compiled model reports as its input shape; a test may change it before loading.
MODEL_INPUT_SHAPE = (1, 3, 320, 320)
#: What set_device returns (0: success).
SET_DEVICE_RESULT = 0

_state: dict[str, Any] = {"device": None, "streams": []}


class FakeDeviceError(AssertionError):
    """The adapter did something the real device stack would reject."""


class ImageFormat:
    RGB_PLANAR = "RGB_PLANAR"
    BGR_PLANAR = "BGR_PLANAR"
    BGR_INTERLEAVE = "BGR_INTERLEAVE"
    GRAY = "GRAY"


class StreamBalanceMode:
    ONCE = "ONCE"
    RUN = "RUN"


def set_device(device_id: int) -> int:
    CALLS.append(("set_device", device_id))
    if SET_DEVICE_RESULT == 0:
        _state["device"] = device_id
    return SET_DEVICE_RESULT


class Model:
    def __init__(self, model_prefix_path: str, batch_size: int) -> None:
        CALLS.append(("Model", (model_prefix_path, batch_size)))
        if _state["device"] is None:
            raise FakeDeviceError("Model() before a successful set_device()")
        if not isinstance(model_prefix_path, str):
            raise FakeDeviceError(f"Model() takes the prefix as str, got {type(model_prefix_path).__name__}")
        prefix = Path(model_prefix_path)
        if not list(prefix.parent.glob(prefix.name + ".*")):
            raise FakeDeviceError(f"no compiled model files {prefix}.*")
        if batch_size < 1:
            raise FakeDeviceError(f"batch size {batch_size}")
        self.batch_size = batch_size
        self.input_shape = [(batch_size, *MODEL_INPUT_SHAPE[1:])]


class FusionOp:
    def __init__(self, config: dict[str, Any]) -> None:
        self.output_hw = (config["OimageHeight"], config["OimageWidth"])
        self.config = config


class Operator:
    @staticmethod
    def load_ops_from_json_file(path: str) -> list[FusionOp]:
        CALLS.append(("load_ops_from_json_file", path))
        if not isinstance(path, str):
            raise FakeDeviceError(f"load_ops_from_json_file takes a str path, got {type(path).__name__}")
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("OpType") != "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR":
            raise FakeDeviceError(f"{path}: unexpected OpType {raw.get('OpType')!r}")
        return [FusionOp(raw["OpConfig"])]


class ModelOperator:
    def __init__(self, model: Model) -> None:
        CALLS.append(("ModelOperator", None))
        if not isinstance(model, Model):
            raise FakeDeviceError("ModelOperator() needs a Model")
        self.model = model


class Graph:
    def __init__(self) -> None:
        CALLS.append(("Graph", None))
        self.operators: list[Any] = []

    def add_operators(self, *operators: Any) -> None:
        CALLS.append(("add_operators", tuple(type(op).__name__ for op in operators)))
        kinds = [type(op) for op in operators]
        if kinds != [FusionOp, ModelOperator]:
            raise FakeDeviceError(f"expected (fusion op, model op), got {[k.__name__ for k in kinds]}")
        self.operators = list(operators)


class Tensor:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class Image:
    def __init__(self, array: np.ndarray, width: int, height: int) -> None:
        self.array, self.width, self.height = array, width, height


def create_image(array: np.ndarray, image_format: str, width: int, height: int, device_id: int) -> Image:
    CALLS.append(("create_image", (image_format, width, height, device_id)))
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise FakeDeviceError(f"create_image needs a uint8 ndarray, got {getattr(array, 'dtype', type(array))}")
    if image_format != ImageFormat.RGB_PLANAR:
        raise FakeDeviceError(f"the fusion op expects RGB_PLANAR images, got {image_format}")
    if array.ndim != 3 or array.shape[0] != 3:
        raise FakeDeviceError(f"RGB planar data is (3, H, W), got {array.shape}")
    if (array.shape[1], array.shape[2]) != (height, width):
        raise FakeDeviceError(f"width/height {width}x{height} do not match the data {array.shape}")
    if not array.flags.c_contiguous:
        raise FakeDeviceError("image data must be C-contiguous")
    if device_id != _state["device"]:
        raise FakeDeviceError(f"image for device {device_id}, the device set is {_state['device']}")
    IMAGES.append(array.copy())
    return Image(array.copy(), width, height)


class Stream:
    def __init__(self, graph: Graph, mode: str) -> None:
        CALLS.append(("Stream", mode))
        if mode != StreamBalanceMode.ONCE:
            raise FakeDeviceError(f"the zoo's scripts use StreamBalanceMode.ONCE, got {mode}")
        if len(graph.operators) != 2:
            raise FakeDeviceError("Stream() on a graph without its operators")
        self.graph = graph
        self.registered: Any = None
        self.built = self.input_closed = self.done = False
        _state["streams"].append(self)

    def register_operator_output(self, operator: Any) -> None:
        CALLS.append(("register_operator_output", type(operator).__name__))
        if operator is not self.graph.operators[1]:
            raise FakeDeviceError("register the graph's model operator as the output")
        self.registered = operator

    def build(self) -> None:
        CALLS.append(("build", None))
        if self.registered is None:
            raise FakeDeviceError("build() before register_operator_output()")
        self.built = True

    def run_sync(self, images: list[Image]) -> list[list[Tensor]]:
        CALLS.append(("run_sync", len(images)))
        if not self.built:
            raise FakeDeviceError("run_sync() before build()")
        if self.input_closed:
            raise FakeDeviceError("run_sync() after close_input()")
        if not isinstance(images, list) or not all(isinstance(i, Image) for i in images):
            raise FakeDeviceError("run_sync() takes a list of images from create_image()")
        if len(images) > self.registered.model.batch_size:
            raise FakeDeviceError(f"{len(images)} images for a batch-{self.registered.model.batch_size} model")
        height, width = self.graph.operators[0].output_hw
        results = []
        for image in images:
            plane = cv2.resize(image.array[0], (width, height), interpolation=cv2.INTER_LINEAR)
            results.append([Tensor((plane.astype(np.float32) / 255.0).astype(np.float16)[None, None])])
        return results

    def close_input(self) -> None:
        CALLS.append(("close_input", None))
        self.input_closed = True

    def wait_until_done(self) -> None:
        CALLS.append(("wait_until_done", None))
        if not self.input_closed:
            raise FakeDeviceError("wait_until_done() before close_input() never returns")
        self.done = True


def as_numpy(tensor: Tensor) -> np.ndarray:
    CALLS.append(("as_numpy", None))
    return tensor.array.copy()


def assert_shut_down() -> None:
    """Fail if a built stream was left running (no close_input + wait_until_done)."""
    left = [s for s in _state["streams"] if s.built and not (s.input_closed and s.done)]
    if left:
        raise FakeDeviceError(f"{len(left)} stream(s) not shut down with close_input(); wait_until_done()")


def call_names() -> list[str]:
    return [name for name, _ in CALLS]
