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
