"""PyTorch architectures of the seed models, one module per family, found through :mod:`.registry`.

Every module in this package other than the registry and profiling helpers is a family module
and is imported here so its ``@register`` decorators run.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import Architecture, build, get, names, register

_NOT_FAMILIES = {"registry", "profile"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_FAMILIES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Architecture", "build", "get", "names", "register"]
