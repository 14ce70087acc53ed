"""A night split into shards by pytest-split: what this shard was split from, and an order that keeps a model whole.

pytest-split (``--splits N --group I``) deselects every check outside group I of the collected selection. Before it
does, this plugin object (registered before pytest-split's, so its ``trylast`` hook runs just before pytest-split's)
puts the case files' checks in model order, so that the consecutive chunks of pytest-split's
``duration_based_chunks`` algorithm hold a model's checks together and a model's artifacts and sessions are built
in as few shards as possible, and keeps the whole selection, which the run record carries (``tests.shard``) so that
``python -m harness merge`` can name a check that no shard ran.
"""

from __future__ import annotations

from typing import Any

import pytest

from .collection import model_of

#: The name pytest-split registers its splitting plugin under, present only when ``--splits`` and ``--group`` are.
SPLITTER = "pytestsplitplugin"
SHARD_NAME = "segconform-sharding"


class Sharding:
    """Orders and remembers a sharded run's selection; does nothing when the run is not split."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.selection: list[str] | None = None

    @property
    def active(self) -> bool:
        return self.config.pluginmanager.has_plugin(SPLITTER)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not self.active:
            return
        model = {id(item): model_of(item) for item in items}
        rank: dict[str, int] = {}
        for name in model.values():
            if name is not None:
                rank.setdefault(name, len(rank))
        # Stable: within a model the checks keep their order (conformance first); other tests first, in order.
        position = {id(item): index for index, item in enumerate(items)}
        items.sort(key=lambda item: (rank.get(model[id(item)] or "", -1), position[id(item)]))
        self.selection = [item.nodeid for item in items if model[id(item)] is not None]

    def describe(self) -> dict[str, Any] | None:
        """The record's ``tests.shard`` entry: the split and the whole selection it was taken from."""
        if not self.active or self.selection is None:
            return None
        option = self.config.option
        return {"splits": option.splits, "group": option.group, "algorithm": option.splitting_algorithm,
                "selection": self.selection}
