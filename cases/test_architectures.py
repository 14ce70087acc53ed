"""One check per model with a PyTorch architecture: its size agrees with the seed's table.

The parameter count must be within 2% of the seed's figure (or of the official network's, where
the case file explains why the seed's is wrong); FLOPs are measured at the seed's input shape and
reported beside the seed's figure, since the seeds' counters differ (MACs vs FLOPs, which layers).
"""

from __future__ import annotations

import pytest

from harness.cases import Model
from harness.pipeline import Harness
from harness.report import Recorder

PARAMS_TOLERANCE = 0.02


def test_architecture(case_model: Model, harness: Harness, recorder: Recorder) -> None:
    from harness import models
    from harness.models.profile import count_flops, count_params

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
        "weights": harness.builder.weights(model).label,
        "params_m": params_m,
        "seed_params_m": documented.params_m,
        "gflops": gflops,
        "seed_flops_g": documented.flops_g,
        "note": documented.note,
    }
    assert expected is not None, f"{model.name}: the case file documents no parameter count"
    assert abs(params_m - expected) <= PARAMS_TOLERANCE * expected, (
        f"{model.name}: {params_m:.3f} M parameters, documented {expected} M (tolerance {PARAMS_TOLERANCE:.0%})"
    )
