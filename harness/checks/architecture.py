"""Architecture: the PyTorch reference is the network the case documents, by its size.

Every other check compares outputs with the fp32 reference, built from this repository's PyTorch implementation of
the architecture; a wrong layer width or a missing stage would still conform to itself. This check counts the
implementation's parameters against the seed's table (within 2%) and reports its FLOPs beside the documented ones,
once per model (not per item), so a reimplementation that drifted from the published network is caught before its
outputs are trusted as the reference.
"""

from __future__ import annotations

import pytest

from ..data.cases import Model
from ..items.suite import Suite
from ..record.report import Recorder

PARAMS_TOLERANCE = 0.02


def test_architecture(case_model: Model, suite: Suite, recorder: Recorder) -> None:
    """The PyTorch reference's size agrees with the seed's table (parameters within 2%; FLOPs reported)."""
    from .. import models
    from ..models.profile import count_flops, count_params

    model = case_model
    if model.architecture not in models.names():
        pytest.skip(f"{model.name}: architecture {model.architecture!r} is not implemented yet")
    network = models.build(model.architecture)
    params_m = count_params(network) / 1e6
    gflops = count_flops(network, (1, *model.input_shape)) / 1e9
    documented = model.documented
    expected = documented.params_m_official or documented.params_m
    recorder.architectures[model.name] = {
        "architecture": model.architecture,
        "weights": _weights_label(suite, model),
        "params_m": params_m,
        "seed_params_m": documented.params_m,
        "gflops": gflops,
        "seed_flops_g": documented.flops_g,
        "note": documented.note,
    }
    if expected is None:
        pytest.skip(f"{model.name}: the case documents no parameter count (documented.params_m) to check against; "
                    f"measured {params_m:.3f} M parameters, {gflops:.2f} GFLOPs")
    assert abs(params_m - expected) <= PARAMS_TOLERANCE * expected, (
        f"{model.name}: {params_m:.3f} M parameters, documented {expected} M (tolerance {PARAMS_TOLERANCE:.0%})"
    )


def _weights_label(suite: Suite, model: Model) -> str:
    """The weights the model's checks run, or why they cannot be had (which fails those checks, not this one: the
    architecture's size needs no weights)."""
    missing = suite.networks.weights_missing(model)
    return f"unavailable: {missing}" if missing else suite.networks.weights(model).label
