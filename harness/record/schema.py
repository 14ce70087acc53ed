"""What a run record and a run journal must hold to be read: their schema version and the shape of every part the
harness indexes, checked as they are read, so a record from another host or another version, or one edited by hand,
is refused naming the file (and the line, for a journal) and what is wrong, never a ``KeyError`` from deep inside.

The parts that become paths are names (:mod:`harness.data.names`): a record's commit and machine id name the record
(:func:`harness.record.journal.record_base`), and a row's model names its plot. Records and journals written before
versions were written are version 1 (the format did not change when the version was added).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..data.names import PlainName
from .report import Row

#: The version of the run record and journal format this harness writes and reads.
SCHEMA_VERSION = 1


class RecordError(ValueError):
    """A run record or journal line that cannot be read; the message names the file (and line) and the problem."""


class _Open(BaseModel):
    """A part whose named fields are checked; anything else it holds is kept as it is."""

    model_config = ConfigDict(extra="allow")


class Machine(_Open):
    id: PlainName


class Run(_Open):
    started: str
    commit: PlainName
    machine: Machine
    complete: bool | None = None


def _row_facts() -> type[BaseModel]:
    """A report row (:class:`harness.record.report.Row`) as the readers need it: every field of its type (a mapping
    where the row has a mapping, text where it has text), strictly, so a row that loads merges, sorts and renders;
    the names that become paths (item, model, dataset) are names. Made from the dataclass, so a field added to the
    row is checked too."""
    overrides: dict[str, Any] = {
        "item": (PlainName, ...), "model": (PlainName, ...), "dataset": (PlainName, ...), "family": (str, ""), "metrics": (dict[str, float | None], {}),
        "latency_ms": (dict[str, float | None], {}), "outcomes": (dict[str, str], {}), "notes": (list[str], []),
    }
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(Row):
        if field.name in overrides:
            fields[field.name] = overrides[field.name]
            continue
        kind = {"str": str, "int": int, "float": float}.get(str(field.type).split("[")[0], None)
        if kind is None:
            kind = dict[str, Any] if str(field.type).startswith("dict") else list[Any]
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = ... if required else (field.default if field.default is not dataclasses.MISSING
                                        else field.default_factory())  # type: ignore[misc]
        fields[field.name] = (kind, default)
    return create_model("RowFacts", __config__=ConfigDict(extra="allow", strict=True), **fields)


RowFacts = _row_facts()


class ChecksPart(_Open):
    selected: int = 0
    finished: int = 0
    not_run: list[str] = []
    runtime_faults: dict[str, str] = {}
    outcomes: dict[str, str] = {}


class Record(_Open):
    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    run: Run
    rows: list[RowFacts]  # type: ignore[valid-type]
    work: list[Any] = []
    tests: ChecksPart | None = None


class RunLine(_Open):
    kind: Literal["run"]
    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    run: Run
    key: dict[str, str] = {}


class Export(_Open):
    rows: list[RowFacts] = []  # type: ignore[valid-type]
    outcomes: dict[str, dict[str, str]] = {}
    architectures: dict[str, Any] = {}
    work: list[Any] = []


class SelectedLine(_Open):
    kind: Literal["selected"]
    nodeids: list[str]


class FinishedLine(_Open):
    kind: Literal["test"]
    nodeid: str
    outcome: str
    fault: str | None = None
    export: Export


class NoteLine(_Open):
    """Lines that only say something happened (``resumed``, ``ended``)."""

    kind: Literal["resumed", "ended"]


LINES: dict[str, type[BaseModel]] = {"run": RunLine, "selected": SelectedLine, "test": FinishedLine,
                                     "resumed": NoteLine, "ended": NoteLine}


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in problem['loc']) or '<top level>'}: {problem['msg']}"
                     for problem in error.errors()[:5])


def _version(data: dict[str, Any], where: str) -> None:
    version = data.get("schema", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise RecordError(f"{where}: schema version {version!r}; this segconform reads version {SCHEMA_VERSION} only "
                          "(read it with the segconform that wrote it)")


def check_record(data: object, path: Path) -> dict[str, Any]:
    """``data`` (a record file's JSON) when it is a run record of this schema version; else :class:`RecordError`."""
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a segconform run record (a JSON object with 'run' and 'rows'), "
                          f"got {type(data).__name__}")
    _version(data, str(path))
    try:
        Record.model_validate(data)
    except ValidationError as error:
        raise RecordError(f"{path}: not a segconform run record: {_problems(error)}") from None
    return data


def check_line(data: object, path: Path, number: int) -> dict[str, Any]:
    """One journal line's entry when it is one of :data:`LINES` of this schema version; else :class:`RecordError`
    naming the file and line."""
    where = f"{path}: line {number}"
    if not isinstance(data, dict):
        raise RecordError(f"{where}: not a journal entry (a JSON object with 'kind'), got {type(data).__name__}")
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in LINES:
        raise RecordError(f"{where}: unknown kind {kind!r} (one of {', '.join(LINES)})")
    if kind == "run":
        _version(data, where)
    try:
        LINES[kind].model_validate(data)
    except ValidationError as error:
        raise RecordError(f"{where}: not a valid {kind!r} line: {_problems(error)}") from None
    return data
