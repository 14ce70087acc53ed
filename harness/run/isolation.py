"""Runtime calls in a worker process of their own, each bounded in time: a night survives its device.

A runtime is native code against a driver and a device: a call can hang for ever, or abort the process
(SIGABRT, SIGSEGV) from inside a library where Python cannot catch it. Run in pytest's own process, either
one ends the night: a hang never returns, a crash takes pytest, its report and its run record with it.
So each item's session lives in a spawned worker process (:class:`IsolatedSession`), fed its batches over a
pipe, and every request to it is bounded (:class:`TimeoutPolicy`: the load, the first call and the later calls
each have their own bound):

- a request that does not return within its bound is a :class:`RuntimeTimeout`: the worker is killed
  (SIGKILL) and the session abandoned;
- a worker that dies during a request is a :class:`RuntimeCrash` naming the signal (or exit status);
- with ``--retries N`` such a request is tried again in a new worker and session, up to N times, each failed
  attempt kept for the item's notes (a flaky device shows as such, not as a pass or a fail);
- once the retries are spent, the fault fails the check that made the request, and every later request to that
  session fails at once with the same reason ("not run: ..."), so an item whose runtime hung costs one timeout,
  not one per check, and the run goes on with the next item;
- a worker dies with pytest (:func:`_die_with_parent`), so a run killed from outside leaves no hung worker behind.

Requests and replies carry a request number: a reply to another request than the one awaited (a stale reply) is
discarded and logged, never read as the answer (:class:`_Channel`). The worker obtains its runtime by its
registered name (built-in, or the entry-point group ``segconform.runtimes``) when that gives the same runtime
back, so a runtime class pickle cannot find by its qualified name (made by a class factory) still works; any
other runtime travels pickled, and one that cannot is a :class:`RuntimeNotIsolable` naming it, the reason and
``--isolation none``.

**A device session after a timeout** (VACC, :mod:`harness.runtimes.vacc`) is abandoned, not closed: a call
that hung inside the driver may hold the driver's lock on the stream, so a ``close`` from the same
process could hang as well. The worker process is killed instead; the operating system then closes the
process's device handles, which is where the driver frees what the process had opened on the card (its
stream and model memory). Whether the card itself answers again is the driver's and the card's business:
the next item opens a new worker and a new session on it, and if the card stays wedged, that item's load
or first call runs out of its own bound and fails with the reason, rather than hanging the night. A
session that ends normally is closed inside its worker first (``close``: the stream's input closed and
drained), then the worker exits.

**What runs in pytest's own process** cannot be killed apart from it: a session under ``--isolation none``
(:class:`WatchedSession`) and an artifact build. Each is bounded by a :class:`Watchdog` thread which, past the
bound, hands what did not finish to its ``on_expiry`` (the plugin's: the run journal says why the run ended and the
summary is rewritten) and ends the process (:func:`end_run`, exit status :data:`HUNG_EXIT`). The journal already
holds every finished check, so ``--resume`` reruns the one that hung and the rest. A call that hangs while holding
the interpreter lock stops the watchdog too; only process isolation bounds that.

Isolation changes no output: the worker runs the very same runtime and session code on the same arrays
(``tests/test_isolation.py`` asserts identical maps isolated and in-process). What it costs is a process
start per session and two array copies per call.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtimes import ENTRY_POINT_GROUP, RunInput, Runtime, Session, rebuilds
from ..runtimes import get as get_runtime
from ..runtimes.base import ATTEMPT_ENV, Artifact

if TYPE_CHECKING:
    from ..data.cases import Item

log = logging.getLogger("segconform.isolation")

#: A later call may take this many times the session's fastest later call before it counts as hung.
TIMEOUT_FACTOR = 20.0
#: ...and never less than this: a healthy call's time on a shared 2-core machine varies by a few times under load
#: (a burst slowed a benchmark by 1.7x, see history.LATENCY_MOVE), and 10 s is far beyond any per-image time this
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
#: The exit status of a run ended by the watchdog: timeout(1)'s, "it ran out of time".
HUNG_EXIT = 124


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


def end_run(message: str) -> None:
    """What a :class:`Watchdog` does last: say what hung, on stderr, and end the process at once (``os._exit``: the
    main thread is stuck in the call, so nothing can unwind it)."""
    sys.stderr.write(f"\nsegconform: {message}; ending the run (exit status {HUNG_EXIT}): work in this process cannot "
                     "be abandoned. The run journal keeps every finished check; --resume reruns the rest\n")
    sys.stderr.flush()
    os._exit(HUNG_EXIT)


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


class Watchdog:
    """One thread that bounds work done in this process: :meth:`bounded` arms it for a with-block, and past the bound
    it calls ``on_expiry`` with what did not finish (which ends the run: nothing can abandon work in this process).
    Nested bounds keep the earlier deadline."""

    def __init__(self, on_expiry: Callable[[str], None]) -> None:
        self._on_expiry = on_expiry
        self._changed = threading.Condition()
        self._armed: tuple[float, str] | None = None
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def bounded(self, seconds: float, what: str) -> Iterator[None]:
        with self._changed:
            outer = self._armed
            armed = (time.monotonic() + seconds, f"{what} did not finish within {seconds:.3g} s")
            self._armed = armed if outer is None else min(outer, armed)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="segconform-watchdog", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._armed = outer
                self._changed.notify()

    def _watch(self) -> None:
        with self._changed:
            while True:
                remaining = None if self._armed is None else self._armed[0] - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining)
            message = self._armed[1]
            self._armed = None
        self._on_expiry(message)


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


#: How a worker obtains its runtime: ``("name", (name, config))`` or ``("pickle", (name, the pickled runtime))``.
Recipe = tuple[str, Any]


def recipe(runtime: Runtime) -> Recipe:
    """How a worker obtains ``runtime``: by its registered name when :func:`harness.runtimes.get` gives the same
    runtime back (no pickling of its class, which a class factory makes unpicklable), else pickled."""
    if rebuilds(runtime):
        return "name", (runtime.name, runtime.config)
    name = getattr(runtime, "name", type(runtime).__qualname__)
    try:
        return "pickle", (name, pickle.dumps(runtime))
    except Exception as error:  # noqa: BLE001 - any pickling failure (PicklingError, AttributeError, TypeError)
        raise RuntimeNotIsolable(_not_isolable(name, f"pickle cannot send it ({error})")) from None


def _not_isolable(name: str, reason: str) -> str:
    return (f"runtime {name} cannot run in a worker process: it is not registered by name (a built-in runtime, or "
            f"an entry point of group {ENTRY_POINT_GROUP}) and {reason}; register it, or run with --isolation none")


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
        self._process = context.Process(target=_serve, args=(child, runtime, item, artifact, os.getpid(), attempt),
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


class WatchedSession(Session):
    """An item's session in pytest's own process (``--isolation none``), each call under the :class:`Watchdog` with
    the same bounds as an isolated one; past a bound the run ends (see the module's docstring)."""

    def __init__(self, inner: Session, label: str, policy: TimeoutPolicy, watchdog: Watchdog) -> None:
        self._inner, self._label, self._policy, self._watchdog = inner, label, policy, watchdog
        self.provider, self.live = inner.provider, inner.live
        self._times = CallTimes()
        self._twin = None if inner.deployed is inner else WatchedSession(inner.deployed, label, policy, watchdog)

    @classmethod
    def load(cls, runtime: Runtime, item: "Item", artifact: Artifact | None, policy: TimeoutPolicy,
             watchdog: Watchdog) -> "WatchedSession":
        with watchdog.bounded(policy.load, f"{item.id}: loading its session"):
            return cls(runtime.load(item, artifact), item.id, policy, watchdog)

    def _run(self, batch: RunInput) -> list[np.ndarray]:
        bound = self._policy.bound(self._times)
        started = time.perf_counter()
        with self._watchdog.bounded(bound, f"{self._label}: runtime call on image {', '.join(batch.stems)}"):
            outputs = self._inner.run(batch)
        self._times.add(time.perf_counter() - started)
        return outputs

    def _asked(self, what: str, method: Callable[..., Any], *args: Any) -> Any:
        with self._watchdog.bounded(self._policy.first_call, f"{self._label}: {what}"):
            return method(*args)

    def covers(self, stem: str) -> bool:
        return self._asked(f"asking whether it covers image {stem}", self._inner.covers, stem)

    def notes(self) -> list[str]:
        return self._asked("asking for its notes", self._inner.notes)

    def settings(self) -> dict[str, Any]:
        return self._asked("asking for its settings", self._inner.settings)

    @property
    def deployed(self) -> Session:
        return self._twin if self._twin is not None else self

    def _close(self) -> None:
        self._inner.close()


# --------------------------------------------------------------------------- the worker process


def _describe(session: Session) -> dict[str, Any]:
    return {"provider": session.provider, "live": session.live}


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when pytest dies (Linux ``PR_SET_PDEATHSIG``): a worker stuck in a call
    never reads the pipe's end-of-file, and would outlive a run killed with SIGKILL, holding its device."""
    import ctypes

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before that took effect
        os._exit(1)


def _obtain(runtime: Recipe) -> Runtime:
    """The runtime a :func:`recipe` describes, in the worker: by its registered name, or unpickled."""
    how, (name, what) = runtime
    if how == "name":
        return get_runtime(name, what)
    try:
        return pickle.loads(what)
    except Exception as error:  # noqa: BLE001 - e.g. its module cannot be imported here
        raise RuntimeNotIsolable(_not_isolable(name, f"the worker cannot unpickle it ({error})")) from None


def _load(runtime: Recipe, item: "Item", artifact: Artifact | None) -> dict[str, Session]:
    """The item's session and, where it computes apart, its deployed twin."""
    session = _obtain(runtime).load(item, artifact)
    return {"main": session} if session.deployed is session else {"main": session, "deployed": session.deployed}


def _serve(conn: Connection, runtime: Recipe, item: "Item", artifact: Artifact | None, parent: int,
           attempt: int) -> None:
    """The worker: say it started, then answer numbered requests (``load`` first) until ``close`` (or a kill)."""
    _die_with_parent(parent)
    os.environ[ATTEMPT_ENV] = str(attempt)
    conn.send((0, "ok", None))
    targets: dict[str, Session] = {}
    while True:
        try:
            number, target, method, args = conn.recv()
        except EOFError:  # the parent went away: release the session, then go too
            if targets:
                targets["main"].close()
            return
        try:
            if method == "load":
                targets = _load(runtime, item, artifact)
                value: Any = {name: _describe(session) for name, session in targets.items()}
            elif method == "close":
                if targets:
                    targets["main"].close()
                conn.send((number, "ok", None))
                return
            else:
                value = getattr(targets[target], method)(*args)
            conn.send((number, "ok", value))
        except BaseException as error:  # noqa: BLE001 - the parent re-raises it as the check's failure
            conn.send((number, "error", _sendable(error)))
            if method == "load":
                return


def _sendable(error: BaseException) -> BaseException:
    """``error`` itself when it survives pickling (so the parent raises the same type), else a RuntimeError with
    its type, message and traceback."""
    try:
        error.add_note("in the runtime's worker process:\n" + "".join(traceback.format_tb(error.__traceback__)))
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure
        text = "".join(traceback.format_exception(error))
        return RuntimeError(f"{type(error).__name__}: {error}\n{text}")
