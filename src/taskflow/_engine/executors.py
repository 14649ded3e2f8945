"""Where atoms' code runs: inline, on threads, in child processes, or on a user's executor.

Every executor receives ``(fn, args)`` pairs built by the runner and reports each outcome back
through the runner's completion queue; only the runner's thread ever touches storage.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
from typing import TYPE_CHECKING, Any

from taskflow.types.failure import Failure

if TYPE_CHECKING:
    import queue
    from collections.abc import Callable

__all__ = [
    "AtomExecutor",
    "ProcessExecutor",
    "SerialExecutor",
    "ThreadExecutor",
    "UserExecutor",
    "UserProcessExecutor",
    "call_atom",
]

Outcome = tuple[bool, Any, Any]  # (ok, result or Failure, replayed task events or None)


def call_atom(
    fn: Callable[..., Any],
    before: Callable[[], Any],
    after: Callable[[], Any],
    kwargs: dict[str, Any],
) -> Outcome:
    """Run ``fn(**kwargs)`` between an atom's pre/post hooks; never raises."""
    try:
        before()
        try:
            result = fn(**kwargs)
        finally:
            after()
    except Exception:
        return False, Failure(), None
    return True, result, None


def _call_in_child(atom: Any, method: str, kwargs: dict[str, Any]) -> Outcome:
    """Run an atom method in a child process, recording the events its notifier emits."""
    events: list[tuple[str, dict[str, Any]]] = []
    notifier = getattr(atom, "notifier", None)
    if notifier is not None:
        notifier.reset()
        notifier.register(notifier.ANY, lambda event, details: events.append((event, details)))
    if method == "execute":
        ok, value, _ = call_atom(atom.execute, atom.pre_execute, atom.post_execute, kwargs)
    else:
        ok, value, _ = call_atom(atom.revert, atom.pre_revert, atom.post_revert, kwargs)
    if not ok:
        # A Failure travels without its exception object; send the exception along when it
        # pickles, so the parent can re-raise the original type (our own child, trusted).
        carried = value.exception
        try:
            pickle.dumps(carried)
        except Exception:
            carried = None
        value = (value, carried)
    return ok, value, events


def _revive(outcome: Outcome) -> Outcome:
    ok, value, events = outcome
    if not ok and isinstance(value, tuple):
        failure, carried = value
        if carried is not None:
            revived = Failure.from_exception(carried)
            revived._traceback_str = failure.traceback_str
            value = revived
        else:
            value = failure
    return ok, value, events


class AtomExecutor:
    """Runs atom calls; completions are put on ``completions`` as ``(token, Outcome)``."""

    #: True when calls complete inline, in the runner's thread.
    inline = False

    def start(self, completions: queue.SimpleQueue[tuple[Any, Outcome]]) -> None:
        self._completions = completions

    def stop(self) -> None:
        pass

    def submit(self, token: Any, atom: Any, method: str, kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError


class SerialExecutor(AtomExecutor):
    """Runs every call inline, in the engine's thread."""

    inline = True

    def submit(self, token: Any, atom: Any, method: str, kwargs: dict[str, Any]) -> Outcome:
        if method == "execute":
            return call_atom(atom.execute, atom.pre_execute, atom.post_execute, kwargs)
        return call_atom(atom.revert, atom.pre_revert, atom.post_revert, kwargs)


class _FuturesExecutor(AtomExecutor):
    _pool: cf.Executor

    #: Outcomes come from child processes and need reviving.
    _remote = False

    def _report(self, token: Any) -> Callable[[cf.Future[Outcome]], None]:
        put = self._completions.put
        remote = self._remote

        def done(future: cf.Future[Outcome]) -> None:
            try:
                outcome = future.result()
                put((token, _revive(outcome) if remote else outcome))
            except BaseException as err:  # cancelled, or the pool broke
                put((token, (False, Failure.from_exception(err), None)))

        return done

    def submit(self, token: Any, atom: Any, method: str, kwargs: dict[str, Any]) -> Any:
        if method == "execute":
            future = self._pool.submit(
                call_atom, atom.execute, atom.pre_execute, atom.post_execute, kwargs
            )
        else:
            future = self._pool.submit(
                call_atom, atom.revert, atom.pre_revert, atom.post_revert, kwargs
            )
        future.add_done_callback(self._report(token))
        return future


class ThreadExecutor(_FuturesExecutor):
    """A thread pool owned by the engine for the duration of each run."""

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers or (os.cpu_count() or 1) + 1

    def start(self, completions: queue.SimpleQueue[tuple[Any, Outcome]]) -> None:
        super().start(completions)
        self._pool = cf.ThreadPoolExecutor(self._max_workers, thread_name_prefix="taskflow")

    def stop(self) -> None:
        # Idle workers exit as soon as they see the shutdown; nothing waits on a timeout.
        self._pool.shutdown(wait=True)


class UserExecutor(_FuturesExecutor):
    """A ``concurrent.futures.Executor`` given by the user (never shut down by the engine)."""

    def __init__(self, executor: cf.Executor) -> None:
        self._pool = executor


class ProcessExecutor(_FuturesExecutor):
    """Ships each call (atom and arguments, pickled) to local child processes.

    Only trusted local children receive pickles. Events a task emits in the child (progress,
    custom notifications) are recorded there and replayed on the engine's copy of the task.
    """

    _remote = True

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers or (os.cpu_count() or 1)

    def start(self, completions: queue.SimpleQueue[tuple[Any, Outcome]]) -> None:
        super().start(completions)
        self._pool = cf.ProcessPoolExecutor(self._max_workers)

    def stop(self) -> None:
        self._pool.shutdown(wait=True)

    def submit(self, token: Any, atom: Any, method: str, kwargs: dict[str, Any]) -> Any:
        future = self._pool.submit(_call_in_child, atom, method, kwargs)
        future.add_done_callback(self._report(token))
        return future


class UserProcessExecutor(ProcessExecutor):
    """A user's ``ProcessPoolExecutor``: calls are shipped like ours, the pool is theirs."""

    def __init__(self, executor: cf.ProcessPoolExecutor) -> None:
        self._pool = executor

    def start(self, completions: queue.SimpleQueue[tuple[Any, Outcome]]) -> None:
        self._completions = completions

    def stop(self) -> None:
        pass
