"""Runtime calls in a worker process of their own, each bounded in time: a night survives its device.

A runtime is native code against a driver and a device: a call can hang for ever, or abort the process
(SIGABRT, SIGSEGV) from inside a library where Python cannot catch it. Run in pytest's own process, either
one ends the night: a hang never returns, a crash takes pytest, its report and its run record with it.
So each item's session lives in a spawned worker process (:class:`IsolatedSession`), fed its batches over a
pipe, and every request to it is bounded (:class:`TimeoutPolicy`):

- a request that does not return within its bound is a :class:`RuntimeTimeout`: the worker is killed
  (SIGKILL) and the session abandoned;
- a worker that dies during a request is a :class:`RuntimeCrash` naming the signal (or exit status);
- either fails the check that made the request, and every later request to that session fails at once
  with the same reason ("not run: ..."), so an item whose runtime hung costs one timeout, not one per check,
  and the run goes on with the next item;
- a worker dies with pytest (:func:`_die_with_parent`), so a run killed from outside leaves no hung worker behind.

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
start per session and two array copies per call; ``--isolation none`` runs sessions in pytest's own
process as before (unbounded: for debugging a runtime, or measuring what isolation costs).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from .runtimes import RunInput, Runtime, Session
from .runtimes.base import Artifact

if TYPE_CHECKING:
    from .cases import Item

#: A later call may take this many times the session's fastest call so far before it counts as hung.
TIMEOUT_FACTOR = 20.0
#: ...and never less than this: a healthy call's time on a shared 2-core machine varies by a few times under load
#: (a burst slowed a benchmark by 1.7x, see history.LATENCY_MOVE), and 10 s is far beyond any per-image time this
#: suite measures after the first call; slower kernels (PyTorch's CPU fp16 fallback: 57 s a u2netp image with NCHW
#: weights, 2.3 s channels-last, see runtimes/torch.py) are covered by the factor.
TIMEOUT_FLOOR_S = 10.0
#: Loading a session and its first call have no measured time to scale: they may include one-off work (graph
#: optimisation, memory planning, a device's first stream run, a fallback kernel's first image).
FIRST_CALL_S = 300.0
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


@dataclass(frozen=True)
class Isolation:
    """``--isolation`` and ``--item-timeout``: whether item sessions live in worker processes, and a fixed bound.

    Off by default for code that builds a :class:`~harness.suite.Suite` itself (the harness's own tests and
    commands); the plugin turns it on unless ``--isolation none``.
    """

    enabled: bool = False
    item_timeout: float | None = None

    def policy(self, item: "Item") -> "TimeoutPolicy":
        """The bound of ``item``'s requests: ``--item-timeout``, else its case's ``timeout_s``, else derived."""
        return TimeoutPolicy(self.item_timeout if self.item_timeout is not None else item.model.timeout_s)


@dataclass(frozen=True)
class TimeoutPolicy:
    """The bound of each request: ``fixed`` (``--item-timeout``, else the case's ``timeout_s``) when set, else
    :data:`TIMEOUT_FACTOR` times the session's own fastest call, at least :data:`TIMEOUT_FLOOR_S`; a first call
    gets :data:`FIRST_CALL_S`. Loading always gets at least :data:`FIRST_CALL_S`: it includes starting the worker
    and its imports (seconds), which a bound meant for one image must not count."""

    fixed: float | None = None

    def load_bound(self) -> float:
        return max(FIRST_CALL_S, self.fixed or 0.0)

    def bound(self, fastest: float | None) -> float:
        if self.fixed is not None:
            return self.fixed
        if fastest is None:
            return FIRST_CALL_S
        return max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * fastest)


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


class _Worker:
    """The parent's end of one worker process: requests and replies, each bounded; the first fault sticks."""

    def __init__(self, label: str, runtime: Runtime, item: "Item", artifact: Artifact | None,
                 policy: TimeoutPolicy) -> None:
        self.label, self.policy = label, policy
        self.fault: RuntimeFault | None = None
        self.fastest: dict[str, float] = {}
        context = multiprocessing.get_context("spawn")  # no fork: the parent holds threads (ORT pools, torch)
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, runtime, item, artifact, os.getpid()),
                                        name=f"segconform-{label}", daemon=True)
        self._process.start()
        child.close()
        self.info: dict[str, Any] = self._await(policy.load_bound(), "loading its session")

    def request(self, target: str, method: str, *args: Any, what: str, timed: bool = False) -> Any:
        """``method(*args)`` on the worker's ``target`` session ("main" or "deployed"), within its bound."""
        if self.fault is not None:
            reason = f"not run: an earlier call of this session failed: {self.fault.reason}"
            raise type(self.fault)(f"{self.label}: {reason}", reason)
        started = time.perf_counter()
        try:
            self._conn.send((target, method, args))
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise self._fail(RuntimeCrash, f"the runtime's process {_death(self._process)} before {what}") from None
        bound = self.policy.bound(self.fastest.get(target)) if timed else self.policy.bound(None)
        value = self._await(bound, what)
        if timed:
            elapsed = time.perf_counter() - started
            self.fastest[target] = min(elapsed, self.fastest.get(target, elapsed))
        return value

    def _await(self, bound: float, what: str) -> Any:
        if not self._conn.poll(bound):
            self._process.kill()
            self._process.join(5)
            raise self._fail(RuntimeTimeout, f"{what} did not return within {bound:.3g} s; its process was killed "
                                             "and the session abandoned")
        try:
            status, value = self._conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            raise self._fail(RuntimeCrash, f"the runtime's process {_death(self._process)} during {what}") from None
        if status == "error":
            raise value
        return value

    def _fail(self, kind: type[RuntimeFault], text: str) -> RuntimeFault:
        self.fault = kind(f"{self.label}: {text}", text)
        self._conn.close()
        return self.fault

    def close(self) -> None:
        """Close the session in its worker and let it exit; a worker that faulted or does not answer is killed."""
        if self.fault is None:
            try:
                self._conn.send(("main", "close", ()))
                if self._conn.poll(CLOSE_S):
                    self._conn.recv()
            except (EOFError, OSError):
                pass
            self._conn.close()
        self._process.join(CLOSE_S if self.fault is None else 0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        if self.fault is None:
            self.fault = RuntimeCrash(f"{self.label}: the session was closed")


class IsolatedSession(Session):
    """An item's session living in a worker process; every call bounded by the worker's :class:`TimeoutPolicy`."""

    def __init__(self, worker: _Worker, target: str = "main") -> None:
        self._worker, self._target = worker, target
        info = worker.info[target]
        self.provider, self.live = info["provider"], info["live"]
        self._twin: IsolatedSession | None = None
        if target == "main" and "deployed" in worker.info:
            self._twin = IsolatedSession(worker, "deployed")

    @classmethod
    def start(cls, runtime: Runtime, item: "Item", artifact: Artifact | None,
              policy: TimeoutPolicy) -> "IsolatedSession":
        """``runtime.load(item, artifact)`` in a new worker process (bounded like a first call); the runtime object
        travels pickled, so any importable :class:`Runtime` subclass works, a fault-wrapped one included."""
        return cls(_Worker(item.id, runtime, item, artifact, policy))

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        what = f"runtime call on image {', '.join(batch.stems) or '(unnamed)'}"
        return self._worker.request(self._target, "run", batch, what=what, timed=True)

    def covers(self, stem: str) -> bool:
        return self._worker.request(self._target, "covers", stem, what=f"asking whether it covers image {stem}")

    def notes(self) -> list[str]:
        return self._worker.request(self._target, "notes", what="asking for its notes")

    def settings(self) -> dict[str, Any]:
        return self._worker.request(self._target, "settings", what="asking for its settings")

    @property
    def deployed(self) -> Session:
        return self._twin if self._twin is not None else self

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._target == "main":
                self._worker.close()


# --------------------------------------------------------------------------- the worker process


def _describe(session: Session) -> dict[str, Any]:
    return {"provider": session.provider, "live": session.live}


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when pytest dies (Linux ``PR_SET_PDEATHSIG``): a worker stuck in a call
    never reads the pipe's end-of-file, and would outlive a run killed with SIGKILL, holding its device."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before that took effect
        os._exit(1)


def _serve(conn: Connection, runtime: Runtime, item: "Item", artifact: Artifact | None, parent: int) -> None:
    """The worker: load the item's session, then answer requests until ``close`` (or until it is killed)."""
    _die_with_parent(parent)
    try:
        session = runtime.load(item, artifact)
    except BaseException as error:  # noqa: BLE001 - every load failure goes back to the parent, with its type
        conn.send(("error", _sendable(error)))
        return
    targets = {"main": session}
    info = {"main": _describe(session)}
    if session.deployed is not session:
        targets["deployed"] = session.deployed
        info["deployed"] = _describe(session.deployed)
    conn.send(("ok", info))
    while True:
        try:
            target, method, args = conn.recv()
        except EOFError:  # the parent went away: release the session, then go too
            session.close()
            return
        try:
            if method == "close":
                session.close()
                conn.send(("ok", None))
                return
            conn.send(("ok", getattr(targets[target], method)(*args)))
        except BaseException as error:  # noqa: BLE001 - the parent re-raises it as the check's failure
            conn.send(("error", _sendable(error)))


def _sendable(error: BaseException) -> BaseException:
    """``error`` itself when it survives pickling (so the parent raises the same type), else a RuntimeError with
    its type, message and traceback."""
    import pickle

    try:
        error.add_note("in the runtime's worker process:\n" + "".join(traceback.format_tb(error.__traceback__)))
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure
        text = "".join(traceback.format_exception(error))
        return RuntimeError(f"{type(error).__name__}: {error}\n{text}")
