"""The one place that maps an architecture name (as written in a case YAML) to a PyTorch builder.

Family modules register their builders with :func:`register`; the package ``__init__`` imports
every family module once, so adding a family is adding a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

Builder = Callable[[], nn.Module]


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its name, family and the official definition it follows."""

    name: str
    family: str
    source: str
    builder: Builder


_ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, *, family: str, source: str) -> Callable[[Builder], Builder]:
    """Register ``builder`` under ``name``; a second registration of a name is a programming error."""

    def decorate(builder: Builder) -> Builder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = Architecture(name=name, family=family, source=source, builder=builder)
        return builder

    return decorate


def get(name: str) -> Architecture:
    """Look an architecture up, naming the known ones when ``name`` is not among them."""
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(_ARCHITECTURES)) or "none"
        raise KeyError(f"unknown architecture {name!r}; registered: {known}") from None


def build(name: str) -> nn.Module:
    """A freshly initialised, eval-mode instance of architecture ``name``."""
    return get(name).builder().eval()


def names() -> list[str]:
    """Every registered architecture name, sorted."""
    return sorted(_ARCHITECTURES)
