"""Names read from files (case files, run records, archives) that become parts of paths, and the one check every
write of the harness makes: the path it writes resolves inside the folder it means to write in.

A name is one path component: letters, digits, ``_ . + @ -``, not starting with a dot (so never ``.`` or ``..``) and
never holding a separator. A relative path (a dataset's folder under the data root, a member of a wheel) is such
names joined by ``/``. :func:`inside` resolves symbolic links, so a link inside the folder that points out of it is
refused like a ``..`` in a name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

#: One path component from a file: what case files' dataset names, model names in run records, machine ids and
#: commits must match.
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+@-]{0,127}$"
#: Names joined by ``/``: a relative path that cannot climb out of the folder it is taken under.
RELATIVE_PATH = r"^[A-Za-z0-9][A-Za-z0-9_.+@-]{0,127}(/[A-Za-z0-9][A-Za-z0-9_.+@-]{0,127})*$"

_NAME = re.compile(NAME)
_RELATIVE_PATH = re.compile(RELATIVE_PATH)
_RULE = "letters, digits, _ . + @ -, not starting with '.'"


class UnsafePath(ValueError):
    """A name that is not one path component, or a path that resolves outside the folder it was meant for."""


def is_name(value: object) -> bool:
    """Whether ``value`` is a string usable as one path component (:data:`NAME`)."""
    return isinstance(value, str) and _NAME.match(value) is not None


def checked_name(value: object, what: str) -> str:
    """``value`` when it is a name (:data:`NAME`); else :class:`UnsafePath` saying what it was."""
    if not is_name(value):
        raise UnsafePath(f"{what} {value!r} is not a plain name ({_RULE}; no '/' or '..')")
    return value  # type: ignore[return-value]


def inside(folder: Path, *names: str) -> Path:
    """``folder / names...`` after checking each name and that the path, symbolic links resolved, stays inside
    ``folder`` (itself resolved); :class:`UnsafePath` otherwise. What every write under a harness folder goes
    through."""
    for name in names:
        checked_name(name, f"name under {folder}:")
    path = folder.joinpath(*names)
    root = folder.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePath(f"{path}: resolves to {resolved}, outside {root} (a symbolic link out of the folder); "
                         "refusing to write there")
    return path


def plain_name(value: str) -> str:
    """``value`` when it is a name (:data:`NAME`); a ValueError saying what a name may hold otherwise."""
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a plain name ({_RULE}; no '/' or '..'): it becomes part of a path")
    return value


def _relative_path(value: str) -> str:
    if not _RELATIVE_PATH.match(value):
        raise ValueError(f"{value!r} is not a relative path of plain names ({_RULE}, joined by '/'; no '..', not "
                         "absolute)")
    return value


#: A schema field holding a name that becomes part of a path; its error says what a name may hold.
PlainName = Annotated[str, AfterValidator(plain_name)]
#: A schema field holding a relative path under a folder the harness chooses.
RelativePath = Annotated[str, AfterValidator(_relative_path)]
