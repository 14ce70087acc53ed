"""What bounds a runtime call, and the faults a call that overruns or dies is reported as.

Shared by both ways a session is bounded, in a worker process (:mod:`harness.run.isolation`, which kills the worker
past a bound) and in pytest's own process (:mod:`harness.run.watchdog`, which ends the run), and by the worker itself
(:mod:`harness.run.worker`). A module of its own so that each of those, and what only reads a fault (the plugin's
report and journal, the run record, ``--resume``), imports these without worker processes or the watchdog:

- the default bounds (:data:`LOAD_S`, :data:`FIRST_CALL_S`, :data:`TIMEOUT_FACTOR`, :data:`TIMEOUT_FLOOR_S`,
  :data:`BUILD_S`, ...), which ``--help`` quotes;
- :class:`TimeoutPolicy`, one item's bounds, and :class:`CallTimes`, the call times a later call's bound scales with;
- the faults: :class:`RuntimeTimeout` and :class:`RuntimeCrash` (both a :class:`RuntimeFault`, whose ``kind`` the run
  record and ``--resume`` read), and :class:`RuntimeNotIsolable`.

(The faults a test *injects* into a runtime are another matter: :mod:`harness.runtimes.faults`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: A later call may take this many times the session's fastest later call before it counts as hung.
TIMEOUT_FACTOR = 20.0
#: ...and never less than this: a healthy call's time on a shared 2-core machine varies by a few times under load
#: (a burst slowed a benchmark by 1.7x, see trend_rules.LATENCY_MOVE), and 10 s is far beyond any per-image time this
#: suite measures after the first call; slower kernels (PyTorch's CPU fp16 fallback: 57 s a u2netp image with NCHW
#: weights, 2.3 s channels-last, see runtimes/torch.py) are covered by the factor.
TIMEOUT_FLOOR_S = 10.0
#: Loading (compiling) a session and its first call have no measured time to scale: they may include one-off work
#: (graph optimisation, memory planning, a device's first stream run, a fallback kernel's first image).
LOAD_S = 300.0
FIRST_CALL_S = 300.0
#: A worker's start (spawn, imports, unpickling its item) before its load's own bound begins: 0.4 to 1.4 s measured.
START_S = 60.0
#: One artifact build (export, fp16 conversion, static int8 calibration): ISNet 1024 builds in minutes on 2 cores.
BUILD_S = 3600.0
#: How long a worker may take to close its session and exit before it is killed.
CLOSE_S = 30.0


class RuntimeFault(RuntimeError):
    """A runtime request that did not come back; ``kind`` is what the run record and ``--resume`` read."""

    kind = "fault"

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.reason)


class RuntimeTimeout(RuntimeFault):
    kind = "timeout"


class RuntimeCrash(RuntimeFault):
    kind = "crash"


class RuntimeNotIsolable(RuntimeError):
    """A runtime a worker process cannot obtain: not registered by name, and pickle cannot send it."""


# --------------------------------------------------------------------------- the bounds


@dataclass
class CallTimes:
    """How long a session's calls took: its first (warm-up included) and its fastest later one."""

    first: float | None = None
    fastest_later: float | None = None

    def add(self, seconds: float) -> None:
        if self.first is None:
            self.first = seconds
        else:
            self.fastest_later = seconds if self.fastest_later is None else min(seconds, self.fastest_later)


@dataclass(frozen=True)
class TimeoutPolicy:
    """The bounds of one item's session: its load (compile), its first call, and each later call: ``later`` when set
    (``--item-timeout``, else the case's ``timeout_s``), else :data:`TIMEOUT_FACTOR` times the fastest *later* call,
    at least :data:`TIMEOUT_FLOOR_S`. The first call is left out of "fastest" since it includes one-off work; until a
    later call has been timed (the second call) the first call's time stands in, which only makes that one bound
    generous (a warm call is not slower than the first), and never beyond the first call's own bound."""

    load: float = LOAD_S
    first_call: float = FIRST_CALL_S
    later: float | None = None

    def bound(self, times: CallTimes) -> float:
        if times.first is None:
            return self.first_call
        if self.later is not None:
            return self.later
        if times.fastest_later is None:
            return min(self.first_call, max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * times.first))
        return max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * times.fastest_later)
