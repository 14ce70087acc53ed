"""Every registered architecture against the key list of its official network.

``tests/data/official_keys/<name>.json`` holds the ``state_dict`` keys and shapes of the official
network, dumped outside this package (provenance in each family's test module). For every name in
:func:`harness.models.names`:

* the list exists, so a new architecture cannot be registered without its official keys;
* ``build(name).state_dict()`` has exactly those keys and shapes;
* a random state_dict of those keys and shapes loads with ``strict=True``, and every tensor is the given one;
* ``count_params`` equals the parameters in the list (batch-norm buffers excluded, shared modules once).
"""

from __future__ import annotations

import pytest
import torch
from official import KEYS_DIR, SHARED_PREFIXES, official_param_count, official_shapes, random_official_state

from harness.models import build, names
from harness.models.profile import count_params

NAMES = names()


@pytest.fixture(scope="module", params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def shapes(name: str) -> dict[str, list[int]]:
    path = KEYS_DIR / f"{name}.json"
    assert path.is_file(), f"{name} is registered but ships no official key list at {path}"
    return official_shapes(name)


@pytest.fixture(scope="module")
def model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(name)


def test_official_key_list_exists(name: str) -> None:
    path = KEYS_DIR / f"{name}.json"
    assert path.is_file(), f"{name} is registered but ships no official key list at {path}"


def test_state_dict_keys_and_shapes_match_official(model: torch.nn.Module, shapes: dict[str, list[int]]) -> None:
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(ours) - set(shapes)) == [], "keys the official network does not have"
    assert sorted(set(shapes) - set(ours)) == [], "official keys missing here"
    assert ours == shapes


def test_official_shaped_state_dict_loads_strictly(name: str, shapes: dict[str, list[int]]) -> None:
    state = random_official_state(shapes, seed=1)
    # A shared module has one tensor per parameter: give its alias keys the source's tensors, as an
    # official checkpoint has them, so that every key can be checked after loading.
    for alias, source in SHARED_PREFIXES.get(name, {}).items():
        for key in [key for key in state if key.startswith(alias)]:
            state[key] = state[source + key[len(alias):]]
    target = build(name)
    target.load_state_dict(state, strict=True)
    loaded = target.state_dict()
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype, key
        assert torch.equal(loaded[key], tensor), key


def test_parameter_count_matches_official(name: str, model: torch.nn.Module, shapes: dict[str, list[int]]) -> None:
    shared = SHARED_PREFIXES.get(name, {})
    for alias, source in shared.items():
        aliased = {key[len(alias):]: shape for key, shape in shapes.items() if key.startswith(alias)}
        assert aliased, f"no official key under the shared prefix {alias!r}"
        assert aliased == {key[len(source):]: shape for key, shape in shapes.items() if key.startswith(source)}
    assert count_params(model) == official_param_count(shapes, shared)
