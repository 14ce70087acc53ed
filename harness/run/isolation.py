"""Runtime calls in a worker process of their own, each bounded in time: a night survives its device.

A runtime is native code against a driver and a device: a call can hang for ever, or abort the process
(SIGABRT, SIGSEGV) from inside a library where Python cannot catch it. Run in pytest's own process, either
one ends the night: a hang never returns, a crash takes pytest, its report and its run record with it.
So each item's session lives in a spawned worker process (:class:`IsolatedSession`), fed its batches over a
pipe, and every request to it is bounded (:class:`~harness.run.bounds.TimeoutPolicy`: the load, the first call and
the later calls each have their own bound):

- a request that does not return within its bound is a :class:`~harness.run.bounds.RuntimeTimeout`: the worker is
  killed (SIGKILL) and the session abandoned;
- a worker that dies during a request is a :class:`~harness.run.bounds.RuntimeCrash` naming the signal (or exit
  status);
- with ``--retries N`` such a request is tried again in a new worker and session, up to N times, each failed
  attempt kept for the item's notes (a flaky device shows as such, not as a pass or a fail);
- once the retries are spent, the fault fails the check that made the request, and every later request to that
  session fails at once with the same reason ("not run: ..."), so an item whose runtime hung costs one timeout,
  not one per check, and the run goes on with the next item;
- a worker dies with pytest, so a run killed from outside leaves no hung worker behind.

This module is the parent's side, and the ``--isolation`` settings (:class:`Isolation`). Requests and replies carry
a request number: a reply to another request than the one awaited (a stale reply) is discarded and logged, never
read as the answer (:class:`_Channel`). The worker's side, and how it obtains its runtime (by its registered name,
else pickled, else :class:`~harness.run.bounds.RuntimeNotIsolable`), is :mod:`harness.run.worker`; the bounds and
faults are :mod:`harness.run.bounds`; what runs in pytest's own process (``--isolation none``, builds) is bounded by
:mod:`harness.run.watchdog` instead, which ends the run past a bound since nothing can abandon such work.

**A device session after a timeout** (VACC, :mod:`harness.runtimes.vacc`) is abandoned, not closed: a call
that hung inside the driver may hold the driver's lock on the stream, so a ``close`` from the same
process could hang as well. The worker process is killed instead; the operating system then closes the
process's device handles, which is where the driver frees what the process had opened on the card (its
stream and model memory). Whether the card itself answers again is the driver's and the card's business:
the next item opens a new worker and a new session on it, and if the card stays wedged, that item's load
or first call runs out of its own bound and fails with the reason, rather than hanging the night. A
session that ends normally is closed inside its worker first (``close``: the stream's input closed and
drained), then the worker exits.

Isolation changes no output: the worker runs the very same runtime and session code on the same arrays
(``tests/test_isolation.py`` asserts identical maps isolated and in-process). What it costs is a process
start per session and two array copies per call.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtimes import RunInput, Runtime, Session
from ..runtimes.base import Artifact
from .bounds import (
    BUILD_S,
    CLOSE_S,
    FIRST_CALL_S,
    LOAD_S,
    START_S,
    CallTimes,
    RuntimeCrash,
    RuntimeFault,
    RuntimeTimeout,
    TimeoutPolicy,
)
from .watchdog import end_run
from .worker import Recipe, recipe, serve

if TYPE_CHECKING:
    from ..data.cases import Item

log = logging.getLogger("segconform.isolation")


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Isolation:
    """``--isolation`` and the bounds: whether item sessions live in worker processes, and what bounds what.

    Off by default for code that builds a :class:`~harness.items.suite.Suite` itself (the harness's own tests and
    commands); the plugin turns it on unless ``--isolation none``, which turns ``watchdog`` on instead. Each bound
    left None is the case's (``load_timeout_s``, ``first_call_timeout_s``, ``timeout_s``), else the default.
    """

    enabled: bool = False
    item_timeout: float | None = None
    load_timeout: float | None = None
    first_call_timeout: float | None = None
    retries: int = 0
    build_timeout: float = BUILD_S
    #: Bound in-process sessions (``--isolation none``) by the watchdog, which ends the run past a bound.
    watchdog: bool = False
    #: What the watchdog does past a bound, with what did not finish (the plugin's writes the journal first).
    on_hang: Callable[[str], None] = field(default=end_run, compare=False, repr=False)

    def policy(self, item: "Item") -> TimeoutPolicy:
        """The bounds of ``item``'s session: each option, else its case's field, else the default."""
        model = item.model
        return TimeoutPolicy(_first(self.load_timeout, model.load_timeout_s, LOAD_S),
                             _first(self.first_call_timeout, model.first_call_timeout_s, FIRST_CALL_S),
                             _first(self.item_timeout, model.timeout_s, None))


def _first(*values: float | None) -> Any:
    """The first bound given: the option's, else the case's, else the default."""
    return next((v for v in values if v is not None), None)


# --------------------------------------------------------------------------- the parent's end of a worker


def _death(process: multiprocessing.process.BaseProcess) -> str:
    """How a worker ended: the signal that killed it, or its exit status."""
    process.join(5)
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Channel:
    """The parent's end of a worker's pipe: each request numbered, each reply matched to its request by number.

    The worker answers ``(number, status, value)``; number 0 is its "started". A reply to another request than the
    one awaited (a call that timed out answering late) is discarded and logged, never read as this call's answer."""

    def __init__(self, conn: Connection, label: str) -> None:
        self._conn, self._label = conn, label
        self._sent = 0

    def send(self, target: str, method: str, args: tuple[Any, ...]) -> int:
        self._sent += 1
        self._conn.send((self._sent, target, method, args))
        return self._sent

    def receive(self, number: int, bound: float) -> tuple[str, Any] | None:
        """``(status, value)`` of request ``number`` within ``bound`` seconds; None when it did not come."""
        deadline = time.monotonic() + bound
        while self._conn.poll(max(0.0, deadline - time.monotonic())):
            answered, status, value = self._conn.recv()
            if answered == number:
                return status, value
            log.warning("%s: discarded a stale reply to request %s while awaiting request %s", self._label,
                        answered, number)
        return None

    def close(self) -> None:
        self._conn.close()


class _Worker:
    """One worker process and its loaded session, for one attempt: every request bounded; a timeout or a death
    kills it and raises the :class:`RuntimeFault` (what comes next is :class:`_Supervisor`'s business)."""

    def __init__(self, label: str, runtime: Recipe, item: "Item", artifact: Artifact | None, policy: TimeoutPolicy,
                 attempt: int) -> None:
        self.label, self.policy = label, policy
        self.times: dict[str, CallTimes] = {}
        context = multiprocessing.get_context("spawn")  # no fork: the parent holds threads (ORT pools, torch)
        conn, child = context.Pipe()
        self._channel = _Channel(conn, label)
        self._process = context.Process(target=serve, args=(child, runtime, item, artifact, os.getpid(), attempt),
                                        name=f"segconform-{label}", daemon=True)
        self._process.start()
        child.close()
        try:
            self._await(0, START_S, "starting its worker process")
            self.info: dict[str, Any] = self._ask("main", "load", (), policy.load, "loading its session")
        except BaseException:
            self.kill()
            raise

    def request(self, target: str, method: str, *args: Any, what: str, timed: bool = False) -> Any:
        """``method(*args)`` on the worker's ``target`` session ("main" or "deployed"), within its bound; ``timed``
        calls (runs) are timed and bounded as first or later calls, the others get the first call's bound."""
        times = self.times.setdefault(target, CallTimes())
        started = time.perf_counter()
        value = self._ask(target, method, args, self.policy.bound(times) if timed else self.policy.first_call, what)
        if timed:
            times.add(time.perf_counter() - started)
        return value

    def _ask(self, target: str, method: str, args: tuple[Any, ...], bound: float, what: str) -> Any:
        try:
            number = self._channel.send(target, method, args)
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise self._fault(RuntimeCrash, f"the runtime's process {_death(self._process)} before {what}") from None
        return self._await(number, bound, what)

    def _await(self, number: int, bound: float, what: str) -> Any:
        try:
            reply = self._channel.receive(number, bound)
        except (EOFError, ConnectionResetError, OSError):
            raise self._fault(RuntimeCrash, f"the runtime's process {_death(self._process)} during {what}") from None
        if reply is None:
            raise self._fault(RuntimeTimeout, f"{what} did not return within {bound:.3g} s; its process was killed "
                                              "and the session abandoned")
        status, value = reply
        if status == "error":
            raise value
        return value

    def _fault(self, kind: type[RuntimeFault], text: str) -> RuntimeFault:
        self.kill()
        return kind(f"{self.label}: {text}", text)

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._channel.close()

    def close(self) -> None:
        """Close the session in its worker and let it exit; a worker that does not answer is killed."""
        try:
            self._channel.receive(self._channel.send("main", "close", ()), CLOSE_S)
        except (EOFError, OSError):
            pass
        self._process.join(CLOSE_S)
        self.kill()


class _Supervisor:
    """An item's worker across its attempts: a request killed by a timeout or a crash is made again in a new worker
    (``retries`` times at most); once they are spent the fault sticks, and every later request fails at once."""

    def __init__(self, label: str, runtime: Recipe, item: "Item", artifact: Artifact | None, policy: TimeoutPolicy,
                 retries: int) -> None:
        self.label, self.retries = label, retries
        self._load = (runtime, item, artifact, policy)
        self.failed: list[RuntimeFault] = []  # the attempts that met a fault and were retried
        self.fault: RuntimeFault | None = None
        self._worker: _Worker | None = None
        self.info: dict[str, Any] = self._attempt(lambda worker: worker.info)

    def request(self, target: str, method: str, *args: Any, what: str, timed: bool = False) -> Any:
        return self._attempt(lambda worker: worker.request(target, method, *args, what=what, timed=timed))

    def _attempt(self, ask: Callable[[_Worker], Any]) -> Any:
        while True:
            if self.fault is not None:
                reason = f"not run: an earlier call of this session failed: {self.fault.reason}"
                raise type(self.fault)(f"{self.label}: {reason}", reason)
            attempt = len(self.failed) + 1
            try:
                if self._worker is None:
                    self._worker = _Worker(self.label, *self._load, attempt)
                return ask(self._worker)
            except (RuntimeTimeout, RuntimeCrash) as fault:
                self._worker = None  # killed already
                if attempt > self.retries:
                    reason = fault.reason + (f" (attempt {attempt} of {attempt})" if self.retries else "")
                    self.fault = type(fault)(f"{self.label}: {reason}", reason)
                    raise self.fault from None
                log.warning("%s: attempt %s: %s; retrying in a new worker process", self.label, attempt, fault)
                self.failed.append(fault)

    def attempts(self) -> list[str]:
        """One note per attempt that met a fault and was retried: a flaky device shows in the item's rows."""
        return [f"runtime attempt {number}: {fault.kind}: {fault.reason}; retried in a new worker process as attempt "
                f"{number + 1}" for number, fault in enumerate(self.failed, start=1)]

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self.fault is None:
            self.fault = RuntimeCrash(f"{self.label}: the session was closed", "the session was closed")


class IsolatedSession(Session):
    """An item's session living in a worker process; every call bounded by the worker's :class:`TimeoutPolicy`."""

    def __init__(self, supervisor: _Supervisor, target: str = "main") -> None:
        self._supervisor, self._target = supervisor, target
        info = supervisor.info[target]
        self.provider, self.live = info["provider"], info["live"]
        self._twin: IsolatedSession | None = None
        if target == "main" and "deployed" in supervisor.info:
            self._twin = IsolatedSession(supervisor, "deployed")

    @classmethod
    def start(cls, runtime: Runtime, item: "Item", artifact: Artifact | None, policy: TimeoutPolicy,
              retries: int = 0) -> "IsolatedSession":
        """``runtime.load(item, artifact)`` in a new worker process (see :func:`recipe` for how the runtime gets
        there), within the policy's load bound; ``retries``: how often a request killed by a timeout or a crash is
        made again in a new worker."""
        return cls(_Supervisor(item.id, recipe(runtime), item, artifact, policy, retries))

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        what = f"runtime call on image {', '.join(batch.stems) or '(unnamed)'}"
        return self._supervisor.request(self._target, "run", batch, what=what, timed=True)

    def covers(self, stem: str) -> bool:
        return self._supervisor.request(self._target, "covers", stem, what=f"asking whether it covers image {stem}")

    def notes(self) -> list[str]:
        return self._supervisor.request(self._target, "notes", what="asking for its notes")

    def settings(self) -> dict[str, Any]:
        return self._supervisor.request(self._target, "settings", what="asking for its settings")

    def memory(self) -> dict[str, int | None]:
        """The worker process's memory (where the session computes), asked of the session there."""
        return self._supervisor.request(self._target, "memory", what="asking for its memory")

    def attempts(self) -> list[str]:
        """Notes on the attempts that were retried (``--retries``); empty when the first attempt holds."""
        return self._supervisor.attempts()

    @property
    def deployed(self) -> Session:
        return self._twin if self._twin is not None else self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._target == "main":
                self._supervisor.close()
