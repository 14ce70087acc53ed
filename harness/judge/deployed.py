"""Which bounds a static int8 build is held to as deployed on a CPU, decided in one place.

The deployment verdict (:func:`harness.checks.deployment.test_deployment`) and the emulated-AVX2 test of every stated
bound (``tests/test_saturating_bounds.py``) both ask it, so the bound a nightly applies on an AVX2 host is the one CI
holds each variant's emulated deployment to.

On a CPU whose U8S8 kernels saturate (AVX2, AVX-512 without VNNI), with a scheme that can saturate (full-range U8S8),
a variant whose case states a loss for such CPUs (``deployed_int8.saturating_u8s8``) is held to it: its ``kernels``
budget against the exact build, its ``budget`` (if stated) against fp32, every mean judged by its interval over the
run's images. Everywhere else the precision's own budget applies, plain means, to both comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.case_bounds import Budget, IsaLoss
from ..data.cases import Item
from .judgement import Bootstrap, conformance_budget

#: The remedy that cannot saturate, named in a saturating CPU's failure message: 7-bit weights keep every U8S8 pair
#: sum inside 16 bits (README, "How the verdicts are made": the int8 budget on every CPU, measured).
REMEDY = "--int8-scheme reduce_range"


@dataclass(frozen=True)
class DeployedBounds:
    """The bounds of one static int8 item as deployed here.

    ``vs_fp32``: the deployed maps against fp32 (None: the variant's own rule with its ``own`` budget, e.g. a
    documented collapse's stated loss). ``kernels``: the deployed maps against the build's exact arithmetic.
    ``interval``: how means are judged (None: the plain mean). ``stated``: the case's stated loss for this CPU, when
    it applies.
    """

    vs_fp32: Budget | None
    own: Budget
    kernels: Budget
    interval: Bootstrap | None
    stated: IsaLoss | None

def deployed_bounds(item: Item, saturating: bool, trained: bool, bootstrap: Bootstrap) -> DeployedBounds:
    """What ``item`` is held to as deployed on a CPU whose U8S8 kernels saturate (``saturating``: the CPU's and the
    build scheme's) or not."""
    own = conformance_budget(item, "fp32", trained)
    stated = item.model.deployed_int8.saturating_u8s8.get(item.variant.label) if saturating else None
    if stated is None:
        return DeployedBounds(None, own, own, None, None)
    return DeployedBounds(stated.budget, own, stated.kernels, bootstrap, stated)
