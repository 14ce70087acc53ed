"""The worker process's side of an isolated session: how it obtains its runtime, and how it serves requests.

:class:`harness.run.isolation.IsolatedSession` starts a process (multiprocessing's ``spawn``) whose target is
:func:`serve`. Spawn pickles that target by its qualified name (``harness.run.worker.serve``) and the child imports
it from there, so it stays a module-level function of this module, which needs nothing of the parent's side. The
worker:

- dies with pytest (:func:`_die_with_parent`), so a run killed from outside leaves no hung worker holding a device;
- obtains its runtime from a :func:`recipe`: by its registered name (built-in, or the entry-point group
  ``segconform.runtimes``) when that gives the same runtime back, so a runtime class pickle cannot find by its
  qualified name (made by a class factory) still works; any other runtime travels pickled, and one that cannot is a
  :class:`~harness.run.bounds.RuntimeNotIsolable` naming it, the reason and ``--isolation none``;
- answers numbered requests ``(number, target, method, args)`` with ``(number, status, value)``, number 0 being its
  "started"; an error travels back as itself where it pickles (:func:`_sendable`), so the parent raises the same type.

Nothing here bounds anything: the parent does, by how long it waits for each reply.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ..runtimes import ENTRY_POINT_GROUP, Runtime, Session, rebuilds
from ..runtimes import get as get_runtime
from ..runtimes.base import ATTEMPT_ENV, Artifact
from .bounds import RuntimeNotIsolable

if TYPE_CHECKING:
    from ..data.cases import Item


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


def serve(conn: Connection, runtime: Recipe, item: "Item", artifact: Artifact | None, parent: int,
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
