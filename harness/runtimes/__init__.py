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

from .base import (
    Artifact,
    RunInput,
    Runtime,
    RuntimeConfig,
    RuntimeUnavailable,
    Session,
    SessionClosed,
    threads_from_environment,
)

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
    """An instance of runtime ``name``, or of ``BASE+FAULT`` (``BASE`` wrapped with one fault of
    :mod:`.faults`); an unknown name lists the known ones."""
    from .faults import FaultyRuntime, split

    base, fault = split(name)
    try:
        cls = _registry()[base]
    except KeyError:
        raise ValueError(f"unknown runtime {base!r}; known runtimes: {', '.join(_registry())}") from None
    return cls(config) if fault is None else FaultyRuntime(cls(config), fault)


def rebuilds(runtime: Runtime) -> bool:
    """Whether :func:`get` builds the same runtime from ``runtime.name`` (the same class, and the same fault): a
    session's worker process then obtains it by name, which needs no pickling of its class (a class made by a
    factory, or defined where pickle cannot find it by its qualified name)."""
    from .faults import FaultyRuntime

    name = getattr(runtime, "name", None)
    try:
        again = get(name, runtime.config) if name else None
    except ValueError:
        return False
    if isinstance(runtime, FaultyRuntime):
        return (isinstance(again, FaultyRuntime) and type(again.base) is type(runtime.base)
                and again.fault == runtime.fault)
    return again is not None and type(again) is type(runtime)


def validated(name: str) -> str:
    """``name`` when :func:`get` knows it (a runtime, or ``BASE+FAULT``), else a ValueError saying what is known."""
    from .faults import FAULTS, PROCESS_FAULTS, SUSTAINED_FAULTS, split

    base, _ = split(name)
    if base not in _registry():
        raise ValueError(f"unknown runtime {base!r}; known runtimes: {', '.join(_registry())}, each also as "
                         f"NAME+FAULT with a fault of {', '.join([*FAULTS, *SUSTAINED_FAULTS, *PROCESS_FAULTS])}")
    return name


__all__ = ["Artifact", "RunInput", "Runtime", "RuntimeConfig", "RuntimeUnavailable", "Session", "SessionClosed",
           "get", "names", "rebuilds", "threads_from_environment", "validated", "ENTRY_POINT_GROUP"]
