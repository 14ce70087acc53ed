"""The checks every item gets, one module a check: conformance, structure, regression, accuracy, deployment,
latency (with its same-run ratios), sustained load and, once per model, architecture.

The plugin (:mod:`harness.plugin`) collects this package as the test module of every case file and parametrises
each check over that file's items; a check takes the item's handle (:class:`harness.items.handle.ItemHandle`, the
plugin's ``handle`` fixture, or a skip saying why the item cannot run here), records what it measured into the report
whatever its outcome (:mod:`.rows`), and hands its headline figures to JUnit XML as properties. The verdicts are
decided in :mod:`harness.judge`; what several checks judge alike is in :mod:`.verdicts`.

pytest runs a module's checks in the order of its namespace, so the order of the imports below is the order of a
run: conformance first, whose runs of each item and of its fp32 reference are the ones the later checks reuse.
"""

# isort: skip_file
from .conformance import test_conformance
from .structure import test_structure
from .regression import test_regression
from .accuracy import test_accuracy
from .deployment import test_deployment
from .latency import test_latency, test_speedup, test_pipeline_overhead
from .sustained import test_sustained
from .architecture import test_architecture

__all__ = ["test_conformance", "test_structure", "test_regression", "test_accuracy", "test_deployment",
           "test_latency", "test_speedup", "test_pipeline_overhead", "test_sustained", "test_architecture"]
