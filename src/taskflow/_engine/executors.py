"""Where atoms' code runs: inline, on threads, in child processes, or on a user's executor.

The contract every executor implements (serial, threads, processes; remote workers and asyncio
next) is four operations:

* :meth:`AtomExecutor.start` receives ``report``, the one way outcomes go back to the engine,
  and ``progress``, where a task's progress reports go while its call runs;
* :meth:`AtomExecutor.submit` takes a :data:`Call` and arranges for it to run. Its
  :data:`Completion` is reported exactly once, from any thread (an inline executor reports it
  before ``submit`` returns). Progress the task reports during the call goes to
  ``progress(token, value, details)``, from the thread running the call, before the completion (a
  child process's task events travel in its completion instead);
* :meth:`AtomExecutor.cancel` withdraws a call that has not started: it will not run and
  nothing is reported for it;
* :meth:`AtomExecutor.shutdown` releases what ``start`` acquired, once the engine is done.

:func:`call_atom` is the one place an atom's code is called; executors differ only in where
they call it. Only the engine's thread touches storage: executors never do.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import contextlib
import os
import pickle
import queue
import threading
from typing import TYPE_CHECKING, Any, TypeAlias

from taskflow._config import as_int
from taskflow.task import PROGRESS_SINK
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from taskflow.atom import Atom

__all__ = [
    "EXECUTE",
    "PROGRESS",
    "REVERT",
    "AtomExecutor",
    "Call",
    "Completion",
    "ProcessExecutor",
    "SerialExecutor",
    "ThreadExecutor",
    "UserExecutor",
    "UserProcessExecutor",
    "call_atom",
    "from_options",
]

#: The methods of a call; PROGRESS marks a completion that only carries a progress report.
EXECUTE = "execute"
REVERT = "revert"
PROGRESS = "progress"


#: One call of an atom's ``execute`` or ``revert`` that the engine wants made:
#: ``(token, atom, method, kwargs)``. ``token`` is the engine's name for the call (its plan
#: node), echoed in the completion; ``method`` is EXECUTE or REVERT. (Plain tuples: one of
#: each is made per call, on the engine's hottest path.)
Call: TypeAlias = "tuple[int, Atom, str, dict[str, Any]]"

#: The outcome of a call, or a progress report made during one:
#: ``(token, method, ok, value, events)``. ``method`` is EXECUTE, REVERT or PROGRESS; ``ok``
#: False means ``value`` is the Failure the call raised, else it is the call's result (or,
#: for PROGRESS, ``(progress, details)``); ``events`` are task events made away from the
#: engine (child processes), to be replayed there, or None.
Completion: TypeAlias = "tuple[int, str, bool, Any, list[tuple[str, dict[str, Any]]] | None]"

#: Where a task's progress goes during a call: ``progress(token, value, details)``, details
#: being the progress event's other keys.
ProgressSink: TypeAlias = "Callable[[int, float, dict[str, Any]], None]"


def call_atom(
    call: Call, progress: ProgressSink | None, cell: list[Any] | None = None
) -> Completion:
    """Run ``call`` between the atom's pre/post hooks; never raises.

    While it runs, progress the task reports goes to ``progress`` (if given), through the
    context variable :data:`taskflow.task.PROGRESS_SINK`: set for this call, or, when
    ``cell`` is given, through that ``[task, progress, token]`` cell, which the caller has
    already installed in this thread's context (one ``set`` per run instead of per call).
    """
    token, atom, method, kwargs = call
    task: Any = atom
    reset = None
    if cell is not None:
        cell[0] = task
        cell[2] = token
    elif progress is not None:
        reset = PROGRESS_SINK.set([task, progress, token])
    try:
        if method == EXECUTE:
            task.pre_execute()
            try:
                result = task.execute(**kwargs)
            finally:
                task.post_execute()
        else:
            task.pre_revert()
            try:
                result = task.revert(**kwargs)
            finally:
                task.post_revert()
    except Exception:
        return (token, method, False, Failure(), None)
    finally:
        if cell is not None:
            cell[0] = None
        elif reset is not None:
            PROGRESS_SINK.reset(reset)
    return (token, method, True, result, None)


def _detached(*args: Any) -> None:
    """Where a detached executor's late reports go (nowhere: the run is over)."""


class AtomExecutor(abc.ABC):
    """Runs calls of atoms and reports their completions (see the module docstring)."""

    #: True when every call runs in the engine's thread, reported before ``submit`` returns.
    inline = False
    _report: Callable[[Completion], None]
    _progress: ProgressSink

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        """Begin a run: completions go to ``report``, progress during calls to ``progress``."""
        self._report = report
        self._progress = progress

    @abc.abstractmethod
    def submit(self, call: Call) -> None:
        """Arrange for ``call`` to run; its completion is reported exactly once."""

    def cancel(self, token: int) -> bool:
        """Withdraw the call ``token`` if it has not started; True if it never will run."""
        return False

    def detach(self) -> None:
        """Forget the run's ``report`` and ``progress`` (after :meth:`shutdown`): they refer
        back to the engine, which is then freed as soon as it is dropped."""
        self._report = self._progress = _detached

    def shutdown(self) -> None:  # noqa: B027 (nothing to release by default)
        """End the run: wait for calls under way and release what :meth:`start` took."""


class SerialExecutor(AtomExecutor):
    """Runs every call inline, in the engine's thread, reporting before ``submit`` returns."""

    inline = True

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        super().start(report, progress)
        # One progress cell for the whole run, installed in the engine thread's context.
        self._cell: list[Any] = [None, self._progress, 0]
        self._reset = PROGRESS_SINK.set(self._cell)

    def submit(self, call: Call) -> None:
        cell = self._cell
        # Another engine driven from this thread may have installed its own cell meanwhile
        # (interleaved run_iter generators): then this call installs one of its own.
        self._report(call_atom(call, self._progress, cell if PROGRESS_SINK.get() is cell else None))

    def shutdown(self) -> None:
        # Emptied in place: were the reset below out of order (interleaved engines), the cell
        # left installed must not keep this run's engine alive.
        self._cell[:] = [None, None, 0]
        with contextlib.suppress(ValueError):
            PROGRESS_SINK.reset(self._reset)


class _FuturesExecutor(AtomExecutor):
    """Calls go to a ``concurrent.futures`` pool; a done-callback reports each outcome."""

    _pool: cf.Executor

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        super().start(report, progress)
        self._futures: dict[int, cf.Future[Completion]] = {}
        self._withdrawn: set[int] = set()  # tokens cancel() withdrew: nothing to report

    def _reported(self, token: int, method: str) -> Callable[[cf.Future[Completion]], None]:
        report = self._report
        futures = self._futures
        withdrawn = self._withdrawn

        def done(future: cf.Future[Completion]) -> None:
            futures.pop(token, None)
            if token in withdrawn:
                withdrawn.discard(token)
                return
            try:
                # Cancelled by someone else (the pool's owner shut it down, say) or the pool
                # broke (a child process died): the call failed, and the engine must hear it.
                completion = self._received(future.result())
            except BaseException as err:
                completion = (token, method, False, Failure.from_exception(err), None)
            report(completion)

        return done

    def _received(self, completion: Completion) -> Completion:
        return completion

    def _launch(self, call: Call) -> cf.Future[Completion]:
        return self._pool.submit(call_atom, call, self._progress)

    def submit(self, call: Call) -> None:
        token, _atom, method, _kwargs = call
        try:
            future = self._launch(call)
        except Exception as err:  # a pool already shut down, or broken: the call failed
            self._report((token, method, False, Failure.from_exception(err), None))
            return
        self._futures[token] = future
        future.add_done_callback(self._reported(token, method))

    def cancel(self, token: int) -> bool:
        future = self._futures.get(token)
        if future is None:
            return False
        self._withdrawn.add(token)
        if future.cancel():
            return True
        self._withdrawn.discard(token)
        return False


class _DaemonThreadPool(cf.Executor):
    """A thread pool whose workers are daemon threads, started as work arrives.

    ``concurrent.futures.ThreadPoolExecutor`` joins its workers when the interpreter exits,
    so a second Ctrl-C (after the first stopped the engine) would still wait for every task
    under way. Daemon workers are abandoned at exit instead: their atoms stay RUNNING and a
    resumed run executes them again, as after a crash.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max_workers = max_workers
        self._name = name
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._run, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as err:
                    future.set_exception(err)
                else:
                    future.set_result(result)
                del future, fn, args, kwargs, item  # nothing of a call outlives it
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            pending = []
            while not self._work.empty():
                pending.append(self._work.get())
            for item in pending:
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()


class ThreadExecutor(_FuturesExecutor):
    """A thread pool owned by the engine for the duration of each run (daemon workers)."""

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers or (os.cpu_count() or 1) + 1

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        super().start(report, progress)
        self._pool = _DaemonThreadPool(self._max_workers, "taskflow")

    def shutdown(self) -> None:
        # Idle workers exit as soon as they see the shutdown; nothing waits on a timeout.
        self._pool.shutdown(wait=True)


class UserExecutor(_FuturesExecutor):
    """A ``concurrent.futures.Executor`` given by the user (never shut down by the engine)."""

    def __init__(self, executor: cf.Executor) -> None:
        self._pool = executor


def _call_in_child(call: Call) -> Completion:
    """Run a call in a child process, recording the events the task's notifier emits there."""
    events: list[tuple[str, dict[str, Any]]] = []
    notifier = getattr(call[1], "notifier", None)
    if notifier is not None:
        notifier.reset()
        notifier.register(notifier.ANY, lambda event, details: events.append((event, details)))
    token, method, ok, value, _events = call_atom(call, None)
    if not ok:
        # A Failure travels as data (type names, message, traceback text); the exception
        # object goes along only when it survives a pickle round trip, so the parent can
        # re-raise the original type (our own child, trusted). One that does not (a
        # constructor that does not take its own args back, say) would break the pool.
        carried = value.exception
        try:
            pickle.loads(pickle.dumps(carried))
        except Exception:
            carried = None
        value = (value, carried)
    return (token, method, ok, value, events)


class ProcessExecutor(_FuturesExecutor):
    """Ships each call (atom and arguments, pickled) to local child processes.

    Only trusted local children receive pickles. Events a task emits in the child (progress,
    custom notifications) are recorded there and replayed on the engine's copy of the task.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers or (os.cpu_count() or 1)

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        super().start(report, progress)
        self._pool = cf.ProcessPoolExecutor(self._max_workers)

    def shutdown(self) -> None:
        try:
            self._pool.shutdown(wait=True)
        except KeyboardInterrupt:
            # A second Ctrl-C while waiting for the children's calls: stop them rather than
            # leave the interpreter waiting at exit (their atoms stay RUNNING, to run again).
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise

    def _launch(self, call: Call) -> cf.Future[Completion]:
        return self._pool.submit(_call_in_child, call)

    def _received(self, completion: Completion) -> Completion:
        token, method, ok, value, events = completion
        if ok:
            return completion
        failure, carried = value
        if carried is not None:
            revived = Failure.from_exception(carried)
            revived._traceback_str = failure.traceback_str
            failure = revived
        return (token, method, ok, failure, events)


class UserProcessExecutor(ProcessExecutor):
    """A user's ``ProcessPoolExecutor``: calls are shipped like ours, the pool is theirs."""

    def __init__(self, executor: cf.ProcessPoolExecutor) -> None:
        self._pool = executor

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        _FuturesExecutor.start(self, report, progress)

    def shutdown(self) -> None:
        pass


_THREADS = frozenset(
    ("thread", "threads", "threaded", "greenthread", "greenthreads", "greenthreaded")
)
_PROCESSES = frozenset(("process", "processes"))


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse parallel engine options that name no executor we have, or no pool size.

    Raises:
        ValueError: an unknown executor name, or a ``max_workers`` that is not a positive
            integer.
        TypeError: an executor that is neither a name nor a ``concurrent.futures.Executor``.
    """
    executor = options.get("executor")
    if isinstance(executor, str):
        if executor.strip().lower() not in _THREADS | _PROCESSES:
            raise ValueError(
                f"Unknown executor string '{executor}' expected one of"
                f" {sorted(_THREADS | _PROCESSES)}"
            )
    elif executor is not None and not isinstance(executor, cf.Executor):
        raise TypeError(f"Expected an executor instance or string, not {type(executor).__name__}")
    max_workers = as_int(options, "max_workers", None)
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"'max_workers' must be at least 1, not {max_workers}")


def from_options(options: Mapping[str, Any], parallel: bool) -> AtomExecutor:
    """The executor an engine's options ask for (serial unless ``parallel``)."""
    if not parallel:
        return SerialExecutor()
    option = options.get("executor")
    if isinstance(option, cf.ProcessPoolExecutor):
        return UserProcessExecutor(option)
    if isinstance(option, cf.Executor):
        return UserExecutor(option)
    max_workers = as_int(options, "max_workers", None)
    if isinstance(option, str) and option.strip().lower() in _PROCESSES:
        return ProcessExecutor(max_workers)
    return ThreadExecutor(max_workers)
