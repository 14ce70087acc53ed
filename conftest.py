"""segconform's own test settings. The harness itself is the installed plugin (``pytest11`` entry point
``segconform`` -> :mod:`harness.plugin`); nothing of it lives here, so a user's repository works the same.

Hypothesis profiles for the property tests of the pre- and post-processing ops: ``ci`` (the default, fast)
and ``nightly`` (300 examples per property), chosen with ``--hypothesis-profile nightly`` or the environment
variable ``SEGCONFORM_HYPOTHESIS_PROFILE``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=40, deadline=None)
settings.register_profile("nightly", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("SEGCONFORM_HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list) -> None:
    """The tests marked ``slow`` first, each group in its collected order. ``scripts/segconform test`` feeds its two
    xdist workers one test at a time (``--maxschedchunk 1``); a minute-long test handed out last would leave the
    other worker idle until it ends, while the short tests run last fill whatever gap the long ones leave."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
