"""The official key lists in ``tests/data/official_keys`` and state_dicts built from them.

Not a test module: the architecture tests import it as ``from official import ...`` (pytest's default
``prepend`` import mode puts this folder on ``sys.path`` for the test modules in it).

Each ``<name>.json`` maps every ``state_dict`` key of the *official* network (instantiated outside this
package, see the docstrings of the per-family test modules) to its shape; they are independent of the
code under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

KEYS_DIR = Path(__file__).resolve().parents[1] / "data" / "official_keys"

BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
"""Batch-norm buffers: in the state_dict, not parameters."""

SHARED_PREFIXES: dict[str, dict[str, str]] = {
    "modnet": {"lr_branch.backbone.": "backbone."},
}
"""Key prefixes under which an official network stores a module it already holds elsewhere:
``{name: {alias prefix: source prefix}}``.

MODNet's ``LRBranch`` keeps a reference to the one MobileNetV2 encoder (``self.backbone = backbone``), so
its state_dict lists the encoder twice while ``model.parameters()`` yields it once; an official
checkpoint carries the same tensors under both prefixes.
"""


def official_shapes(name: str) -> dict[str, list[int]]:
    """``{key: shape}`` of the official network ``name`` (raises ``FileNotFoundError`` when there is no list)."""
    return json.loads((KEYS_DIR / f"{name}.json").read_text())


def official_param_count(shapes: dict[str, list[int]], shared: dict[str, str] | None = None) -> int:
    """Parameters in ``shapes``: batch-norm buffers excluded, and keys under an alias prefix of ``shared``
    (``{alias prefix: source prefix}``, see :data:`SHARED_PREFIXES`) counted once, under their source."""
    aliases = tuple(shared or ())
    return sum(
        math.prod(shape)
        for key, shape in shapes.items()
        if not key.endswith(BUFFER_SUFFIXES) and not key.startswith(aliases)
    )


def seeded_official_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A reproducible, non-degenerate state_dict for the official keys (He-scaled convs, varied batch-norms)."""
    generator = torch.Generator().manual_seed(2024)
    state = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / fan_in)
        elif key.endswith("bn_s1.weight"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    return state


def random_official_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of the official shapes, distinct per key: floats in [0.5, 1.5), and nonzero
    ``num_batches_tracked`` counters (so a counter left at its initial 0 cannot pass for a loaded one)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randint(1, 100, shape, dtype=torch.long, generator=generator)
        if key.endswith("num_batches_tracked")
        else torch.rand(shape, generator=generator) + 0.5
        for key, shape in sorted(shapes.items())
    }
