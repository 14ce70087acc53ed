"""Runtime registry: ``--runtime NAME`` picks one of these. Modules are imported only when used,
so an optional backend (OpenVINO, vaststreamx) that is not installed costs nothing."""

from __future__ import annotations

import importlib

from .base import Artifact, RunInput, Runtime, RuntimeConfig, RuntimeUnavailable, Session

_RUNTIMES: dict[str, str] = {
    "onnxruntime": "harness.runtimes.onnxruntime:OnnxRuntime",
    "torch": "harness.runtimes.torch:TorchRuntime",
    "openvino": "harness.runtimes.openvino:OpenVinoRuntime",
    "vacc": "harness.runtimes.vacc:VaccRuntime",
    "vamp": "harness.runtimes.vamp:VampRuntime",
}


def names() -> list[str]:
    return list(_RUNTIMES)


def get(name: str, config: RuntimeConfig) -> Runtime:
    """An instance of runtime ``name``; an unknown name lists the known ones."""
    try:
        target = _RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known runtimes: {', '.join(_RUNTIMES)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)


__all__ = ["Artifact", "RunInput", "Runtime", "RuntimeConfig", "RuntimeUnavailable", "Session", "get", "names"]
