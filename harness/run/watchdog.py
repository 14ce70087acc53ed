"""Bounds on work in pytest's own process, which nothing can abandon: a :class:`Watchdog` ends the run past a bound.

What runs in pytest's own process cannot be killed apart from it: a session under ``--isolation none``
(:class:`WatchedSession`) and an artifact build (:meth:`harness.build.artifacts.ArtifactStore.bound_builds`). Each is
bounded by a :class:`Watchdog` thread which, past the bound, hands what did not finish to its ``on_expiry`` (the
plugin's: the run journal says why the run ended and the summary is rewritten) and ends the process
(:func:`end_run`, exit status :data:`HUNG_EXIT`). The journal already holds every finished check, so ``--resume``
reruns the one that hung and the rest. A call that hangs while holding the interpreter lock stops the watchdog too;
only process isolation (:mod:`harness.run.isolation`) bounds that. The bounds themselves are the same as an isolated
session's (:class:`harness.run.bounds.TimeoutPolicy`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..runtimes import RunInput, Runtime, Session
from ..runtimes.base import Artifact
from .bounds import CallTimes, TimeoutPolicy

if TYPE_CHECKING:
    from ..data.cases import Item


#: The exit status of a run ended by the watchdog: timeout(1)'s, "it ran out of time".
HUNG_EXIT = 124


def end_run(message: str) -> None:
    """What a :class:`Watchdog` does last: say what hung, on stderr, and end the process at once (``os._exit``: the
    main thread is stuck in the call, so nothing can unwind it)."""
    sys.stderr.write(f"\nsegconform: {message}; ending the run (exit status {HUNG_EXIT}): work in this process cannot "
                     "be abandoned. The run journal keeps every finished check; --resume reruns the rest\n")
    sys.stderr.flush()
    os._exit(HUNG_EXIT)


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

    def memory(self) -> dict[str, int | None]:
        return self._asked("asking for its memory", self._inner.memory)

    @property
    def deployed(self) -> Session:
        return self._twin if self._twin is not None else self

    def _close(self) -> None:
        self._inner.close()
