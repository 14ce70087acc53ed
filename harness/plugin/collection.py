"""Case files collected as test modules: each check of :mod:`harness.checks` parametrised over a file's items, with
the selection marks (family, model, precision, calibration, runtime) that ``-k`` and ``-m`` select by."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from ..data.cases import Item, expand
from ..items.state import state_of


class CaseFile(pytest.Module):
    """A case file collected as a test module whose tests are the checks of :mod:`harness.checks`."""

    def _getobj(self) -> Any:
        return importlib.import_module("harness.checks")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = state_of(parent.config)
    if state is not None and file_path.suffix == ".yaml" and file_path.resolve() in state.families:
        return CaseFile.from_parent(parent, path=file_path)
    return None


def _marks(item: Item) -> list[pytest.MarkDecorator]:
    """Selection marks only: no item is an expected failure (a documented collapse is judged by its stated loss).
    """
    names = [item.family.family, item.model.name, item.variant.precision, item.runtime]
    if item.variant.calibration:
        names.append(item.variant.calibration)
    marks = [getattr(pytest.mark, name) for name in dict.fromkeys(names)]
    marks.append(pytest.mark.xdist_group(item.model.name))
    return marks


def _gated(item: Item, check: str) -> bool:
    """Whether ``check`` applies to ``item``: the ratio gates and the sustained check only where the case declares
    their bounds."""
    performance = item.family.performance_of(item.model)
    if check == "test_speedup":
        return item.variant.precision in performance.min_speedup_vs_fp32
    if check == "test_pipeline_overhead":
        return performance.max_pipeline_overhead is not None
    if check == "test_sustained":
        return item.family.sustained_of(item.model, item.variant) is not None
    if check == "test_deployment":  # only static int8 has an exact-arithmetic build verdict beside the deployed one
        return item.variant.precision == "int8"
    return True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    module = metafunc.definition.parent
    if state is None or not isinstance(module, CaseFile):
        return
    family = state.families[module.path.resolve()]
    items = expand([family], state.runtimes)
    check = metafunc.function.__name__
    if "item" in metafunc.fixturenames:
        params = [pytest.param(i, id=i.id, marks=_marks(i)) for i in items if _gated(i, check)]
        if not params:  # no item of this file has the bound the check gates on: say so instead of NOTSET
            why = f"{module.path.name} declares no bound for {check.removeprefix('test_')}"
            params = [pytest.param(None, id="not-declared", marks=pytest.mark.skip(reason=why))]
        metafunc.parametrize("item", params)
    elif "case_model" in metafunc.fixturenames:
        models = [m for m in family.models if m.architecture]
        metafunc.parametrize("case_model", [
            pytest.param(m, id=m.name, marks=[getattr(pytest.mark, family.family), getattr(pytest.mark, m.name),
                                              pytest.mark.xdist_group(m.name)])
            for m in models])


def case_item_of(node: pytest.Item) -> Item | None:
    """The case item a collected check runs on, or None for a node that is not a case file's check."""
    callspec = getattr(node, "callspec", None)
    case_item = callspec.params.get("item") if callspec else None
    return case_item if isinstance(case_item, Item) else None


def model_of(node: pytest.Item) -> str | None:
    """The model a case file's check runs on (its item's, or the model of a per-model check), None otherwise."""
    callspec = getattr(node, "callspec", None)
    case_model = callspec.params.get("case_model") if callspec else None
    case_item = case_item_of(node)
    return case_item.model.name if case_item is not None else getattr(case_model, "name", None)
