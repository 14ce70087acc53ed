"""Runtime registry: ``--runtime NAME`` picks one of these.

The built-in runtimes are the :class:`~.base.Runtime` subclasses defined in this package's modules,
found by importing each module once (their heavy imports, onnxruntime or vaststreamx, happen only
when a session is loaded); third-party runtimes register a subclass under the entry-point group
``segconform.runtimes``. Adding a runtime therefore touches one file.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib import metadata

from .base import Artifact, RunInput, Runtime, RuntimeConfig, RuntimeUnavailable, Session, SessionClosed

ENTRY_POINT_GROUP = "segconform.runtimes"


@functools.cache
def _registry() -> dict[str, type[Runtime]]:
    found: dict[str, type[Runtime]] = {}

    def add(cls: object, where: str) -> None:
        if isinstance(cls, type) and issubclass(cls, Runtime) and getattr(cls, "name", None):
            other = found.get(cls.name)
            if other is not None and other is not cls:
                raise ValueError(f"runtime name {cls.name!r} is taken by {other.__module__}; {where} defines it again")
            found[cls.name] = cls

    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if getattr(value, "__module__", None) == module.__name__:
                add(value, module.__name__)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        add(entry.load(), f"entry point {entry.name} ({entry.value})")
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "onnxruntime", kv[0])))


def names() -> list[str]:
    """Every runtime name, the reference runtime (onnxruntime) first."""
    return list(_registry())


def get(name: str, config: RuntimeConfig) -> Runtime:
    """An instance of runtime ``name``; an unknown name lists the known ones."""
    try:
        cls = _registry()[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; known runtimes: {', '.join(_registry())}") from None
    return cls(config)


__all__ = ["Artifact", "RunInput", "Runtime", "RuntimeConfig", "RuntimeUnavailable", "Session", "SessionClosed",
           "get", "names", "ENTRY_POINT_GROUP"]
