"""The run loop and the dispatch of one job, for every conductor kind.

Threads: :meth:`Dispatcher.run` runs in the caller's thread. It claims jobs and hands each
to an executor: inline for the blocking kind (the dispatch runs in the loop's own thread),
a thread pool for the non-blocking one. A dispatch turns the job into an engine through the
conductor's hooks, runs it, then consumes, abandons or trashes the job (see
:mod:`taskflow._conductors.outcomes`).

Waking: the loop blocks in exactly two places. With every slot busy it waits on
``_slots`` (notified when a dispatch ends, and by :meth:`stop`), so the next job is claimed
as soon as a slot frees. With a free slot and nothing claimable it waits for the board to
change, at most ``wait_timeout`` (a lapsed claim is not a write, so it is only seen by
listing again); taskflow's boards wake it within milliseconds of a post or a release, in
steps of :data:`STOP_CHECK` so that :meth:`stop` is seen promptly. Other boards are
listed every ``wait_timeout``, as upstream TaskFlow does.

Listing: a listing costs a read of the whole board (every live job), so a conductor that
has just finished a job claims the next one from what is left of its last listing, in that
listing's order, as long as that listing is younger than :data:`REUSE_LISTING`; a claim
another conductor won meanwhile fails at once and the next job is tried. When the rest runs
out, the listing is too old, or the loop waited for the board to change, it lists again. So
the board's order (priority, then oldest first) holds up to jobs posted or released in the
last :data:`REUSE_LISTING` seconds, and a board of ``n`` jobs costs O(n) per listing rather
than per job.

Stopping: :meth:`stop` sets ``_stopping`` (sticky: a stopped conductor's later runs return
at once, as upstream's do) and suspends every engine in ``_engines``. An engine enters that
set before it is compiled; the dispatch checks ``_stopping`` under the same lock, and a
callback on the flow's RUNNING state suspends an engine that the stop reached before its
runner existed. So a stop never misses a run: each one ends SUSPENDED and its job is
abandoned for another conductor to resume.

Memory: nothing is kept per job. The engine, its listeners and the logbook are locals of
the dispatch; ``_engines`` holds an engine only while it runs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from taskflow import exceptions as exc
from taskflow import states
from taskflow._conductors.events import (
    ENGINE_STEPS,
    JOB_ABANDONED,
    JOB_CONSUMED,
    JOB_TRASHED,
)
from taskflow._conductors.outcomes import (
    RETRYABLE,
    Outcome,
    describe,
    outcome_of,
    poison_reason,
)
from taskflow._jobs.board import Board, BoardJob
from taskflow.conductors import base as conductor_base

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

    from taskflow.conductors.base import Conductor
    from taskflow.engines.base import Engine
    from taskflow.jobs.base import Job, JobBoard

__all__ = ["REUSE_LISTING", "STOP_CHECK", "Dispatcher", "Executor", "InlineExecutor"]

#: Seconds between checks of a stop request while waiting for the board to change.
STOP_CHECK = 0.05
#: Seconds between listings that ask the board to read its storage afresh (upstream's).
REFRESH_PERIODICITY = 30.0
#: Seconds during which the rest of a listing is used to claim the next job (see above).
REUSE_LISTING = 0.2


class Executor(Protocol):
    """What the loop needs of an executor (``concurrent.futures`` and futurist ones fit)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> concurrent.futures.Future[Any]: ...

    def shutdown(self, wait: bool = True) -> None: ...


class InlineExecutor:
    """Runs each submitted call at once in the caller's thread (the blocking kind)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


class Dispatcher:
    """The running machinery of one conductor (see the module docstring).

    Args:
        conductor: whose hooks build engines and whose notifier gets the events.
        max_simultaneous_jobs: slots; a value below 1 means no limit.
        wait_timeout: longest idle wait before listing the board again.
        executor_factory: builds the executor of each run (called with no arguments).
        max_attempts: trash a job after that many attempts (None: never).
        log: where to log.
        retryable: errors after which a job is abandoned rather than consumed.
    """

    def __init__(
        self,
        conductor: Conductor,
        max_simultaneous_jobs: int,
        wait_timeout: float,
        executor_factory: Callable[[], Executor],
        max_attempts: int | None,
        log: logging.Logger | logging.LoggerAdapter[Any],
        retryable: tuple[type[Exception], ...] = RETRYABLE,
    ) -> None:
        self._conductor = conductor
        self._board: JobBoard = conductor._jobboard
        self._max_jobs = max_simultaneous_jobs
        self._wait_timeout = wait_timeout
        self._executor_factory = executor_factory
        self._max_attempts = max_attempts
        self._log = log
        self._retryable = retryable
        self._stopping = threading.Event()
        # Set while no run is in progress; cleared when one starts (wait() waits on it).
        self._dead = threading.Event()
        # Invariant: _in_flight counts submitted dispatches not yet ended; guarded by _slots.
        self._slots = threading.Condition()
        self._in_flight = 0
        # Engines that are compiling, preparing, validating or running; guarded by _lock.
        self._engines: set[Engine] = set()
        self._lock = threading.Lock()
        self._trash_takes_reason = "reason" in inspect.signature(self._board.trash).parameters

    @property
    def dispatching(self) -> bool:
        """False once a run has ended (until the next one starts)."""
        return not self._dead.is_set()

    # -- run, stop, wait --------------------------------------------------------------------------

    def run(self, max_dispatches: int | None) -> None:
        if max_dispatches is not None and max_dispatches < 0:
            raise ValueError(f"max_dispatches must be None or >= 0, not {max_dispatches}")
        self._dead.clear()
        try:
            if not self._stopping.is_set():
                self._run(max_dispatches)
        finally:
            self._dead.set()

    def stop(self) -> None:
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()
        with self._lock:
            running = list(self._engines)
        for engine in running:
            self._suspend(engine)

    def wait(self, timeout: float | None) -> bool:
        return self._dead.wait(timeout)

    def _suspend(self, engine: Engine) -> None:
        try:
            engine.suspend()
        except Exception:
            self._log.warning("Could not suspend engine %s", engine, exc_info=True)

    def _run(self, max_dispatches: int | None) -> None:
        board = self._board
        name = self._conductor._name
        try:
            board.register_entity(self._conductor.conductor)
        except exc.JobFailure:
            self._log.warning("Could not register %s on the board", name, exc_info=True)
        executor = self._executor_factory()
        dispatched = 0
        fresh_at = time.monotonic()
        # The unclaimed rest of the last listing (in the board's order) and until when it
        # may be used.
        rest: list[Job] = []
        rest_until = 0.0
        try:
            while not self._stopping.is_set():
                if max_dispatches is not None and dispatched >= max_dispatches:
                    break
                if not self._wait_for_slot():
                    break
                job = None
                if rest and time.monotonic() < rest_until:
                    job = self._claim_first(rest, reused=True)
                if job is None:
                    # Taken before listing: a change made after it ends the idle wait below.
                    mark = board.generation if isinstance(board, Board) else 0
                    ensure_fresh = time.monotonic() >= fresh_at
                    if ensure_fresh:
                        fresh_at = time.monotonic() + REFRESH_PERIODICITY
                    rest = self._list(ensure_fresh)
                    rest_until = time.monotonic() + REUSE_LISTING
                    job = self._claim_first(rest, reused=False)
                    if job is None:
                        self._idle(mark)
                        continue
                dispatched += 1
                self._submit(executor, job)
        finally:
            executor.shutdown(wait=True)

    def _wait_for_slot(self) -> bool:
        """Block until a slot is free; False if stopping meanwhile."""
        if self._max_jobs < 1:
            return True
        with self._slots:
            self._slots.wait_for(
                lambda: self._in_flight < self._max_jobs or self._stopping.is_set()
            )
        return not self._stopping.is_set()

    def _list(self, ensure_fresh: bool) -> list[Job]:
        """The claimable jobs in the board's order (priority, then oldest first)."""
        board = self._board
        try:
            return list(board.iterjobs(only_unclaimed=True, ensure_fresh=ensure_fresh))
        except exc.JobFailure:
            self._log.warning("Could not list the jobs of %s", board.name, exc_info=True)
            return []

    def _claim_first(self, jobs: list[Job], reused: bool) -> Job | None:
        """Claim the first job of ``jobs`` that can be claimed, removing those tried.

        ``reused``: the jobs come from an earlier listing, so what it said of a job's
        attempts may be out of date; with ``max_attempts`` the claimed job is read again.
        """
        board = self._board
        name = self._conductor._name
        while jobs:
            if self._stopping.is_set():
                return None
            job = jobs.pop(0)
            try:
                board.claim(job, name)
            except (exc.UnclaimableJob, exc.NotFound):
                continue  # another conductor was first, or it is gone
            except exc.JobFailure:
                self._log.warning("Could not claim job %s", job, exc_info=True)
                continue
            self._log.debug("Job %s claimed by %s", job, name)
            if reused and self._max_attempts is not None and isinstance(job, BoardJob):
                # Reads the job's record again, its attempts included (if that fails, the
                # listing's count stands: the job is ours and must run or be released).
                with contextlib.suppress(exc.JobFailure):
                    _ = job.state
            return job
        return None

    def _idle(self, mark: int) -> None:
        """Wait for the board to change, ``wait_timeout`` at most, or for a stop."""
        board = self._board
        if not isinstance(board, Board) or not board.connected:
            # A closed board would answer at once: sleep instead of spinning.
            self._stopping.wait(self._wait_timeout)
            return
        deadline = time.monotonic() + self._wait_timeout
        while not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or board.wait_generation(mark, min(left, STOP_CHECK)):
                return

    def _submit(self, executor: Executor, job: Job) -> None:
        with self._slots:
            self._in_flight += 1
        try:
            future = executor.submit(self._conductor._dispatch_job, job)
        except BaseException:
            self._slot_freed(None)
            raise
        future.add_done_callback(self._slot_freed)

    def _slot_freed(self, future: concurrent.futures.Future[Any] | None) -> None:
        if future is not None and not future.cancelled() and future.exception() is not None:
            self._log.error("Dispatch failed", exc_info=future.exception())
        with self._slots:
            self._in_flight -= 1
            self._slots.notify_all()

    # -- one job ----------------------------------------------------------------------------------

    def dispatch(self, job: Job) -> None:
        """Run the claimed ``job`` and finish it on the board (never raises an Exception)."""
        try:
            self._dispatch(job)
        except Exception:
            # A bug in a hook or a listener: the claim lapses and someone retries the job.
            self._log.exception("Dispatching job %s failed", job)

    def _dispatch(self, job: Job) -> None:
        conductor = self._conductor
        attempts = getattr(job, "attempts", None)
        limit = self._max_attempts
        if limit is not None and attempts is not None and attempts >= limit:
            self._give_up(job, attempts, limit)
            return
        try:
            if type(conductor)._engine_from_job is conductor_base.Conductor._engine_from_job:
                engine, store = conductor._load_job(job)
            else:  # a subclass's own hook, which injects the store itself
                engine, store = conductor._engine_from_job(job), {}
        except (exc.StorageFailure, exc.FlowOwned) as err:
            # The backend is unreachable, or a holder of the flow has not let go yet (a
            # subclass's hook that writes): another attempt may well succeed.
            self._log.warning("Could not load job %s: %s", job, err, exc_info=True)
            self._finish(job, Outcome.ABANDON, error=err)
            return
        except Exception as err:
            self._log.warning("Job %s can never run, trashing it: %s", job, err, exc_info=True)
            self._finish(job, Outcome.TRASH, reason=describe(err))
            return
        outcome, error = self._run_engine(job, engine, store)
        del engine  # freed before the board is told (a finished job leaves nothing behind)
        self._finish(job, outcome, error=error)

    def _give_up(self, job: Job, attempts: int, max_attempts: int) -> None:
        """Trash a job claimed after its last allowed attempt, saying how that one ended."""
        flow_detail = None
        with contextlib.suppress(Exception):  # the reason is best effort
            flow_detail = self._conductor._flow_detail_from_job(job)
        reason = poison_reason(attempts, max_attempts, flow_detail=flow_detail)
        self._finish(job, Outcome.TRASH, reason=reason)

    def _run_engine(
        self, job: Job, engine: Engine, store: dict[str, Any]
    ) -> tuple[Outcome, BaseException | None]:
        conductor = self._conductor
        with contextlib.ExitStack() as stack:
            for listener in conductor._listeners_from_job(job, engine):
                stack.enter_context(listener)
            with self._lock:
                if self._stopping.is_set():
                    return Outcome.ABANDON, None
                self._engines.add(engine)
            engine.notifier.register(states.RUNNING, self._suspend_if_stopping)
            try:
                # One claim of the flow for the whole job: the injection, preparing and
                # running would otherwise each claim and release it (a write each).
                with engine.owning():
                    if store:
                        engine.storage.inject(store)
                    for step in ENGINE_STEPS:
                        details = {"job": job, "engine": engine, "conductor": conductor}
                        conductor.notifier.notify(f"{step}_start", details)
                        getattr(engine, _STEP_METHODS[step])()
                        conductor.notifier.notify(f"{step}_end", details)
            except Exception as err:
                outcome = outcome_of(err, self._retryable)
                self._log.warning(
                    "Job %s failed (%s): %s", job, _VERDICTS[outcome], describe(err), exc_info=True
                )
                return outcome, err
            finally:
                engine.notifier.deregister(states.RUNNING, self._suspend_if_stopping)
                with self._lock:
                    self._engines.discard(engine)
            if engine.storage.get_flow_state() == states.SUSPENDED:
                return Outcome.ABANDON, None
            return Outcome.CONSUME, None

    def _suspend_if_stopping(self, state: str, details: dict[str, Any]) -> None:
        # The engine's runner exists once the flow is RUNNING: a stop that came earlier
        # (and found no runner to suspend) takes effect now.
        if self._stopping.is_set():
            engine = details.get("engine")
            if engine is not None:
                self._suspend(engine)

    def _finish(
        self,
        job: Job,
        outcome: Outcome,
        error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        board = self._board
        name = self._conductor._name
        attempts = getattr(job, "attempts", None)
        if (
            outcome is Outcome.ABANDON
            and error is not None
            and self._max_attempts is not None
            and attempts is not None
            and attempts + 1 >= self._max_attempts
        ):
            # This attempt is the last one allowed: nobody should claim the job again.
            outcome = Outcome.TRASH
            reason = poison_reason(attempts + 1, self._max_attempts, error=error)
        try:
            if outcome is Outcome.CONSUME:
                board.consume(job, name)
                event = JOB_CONSUMED
            elif outcome is Outcome.ABANDON:
                board.abandon(job, name)
                event = JOB_ABANDONED
            else:
                if self._trash_takes_reason:
                    board.trash(job, name, reason=reason)  # type: ignore[call-arg]
                else:
                    board.trash(job, name)
                event = JOB_TRASHED
        except (exc.JobFailure, exc.NotFound) as err:
            # Most likely our claim lapsed and another conductor has the job: it is theirs
            # to finish (the board refuses a stale holder).
            self._log.warning("Could not %s job %s: %s", outcome.value, job, err)
            return
        if reason is not None:
            self._log.warning("Job %s trashed: %s", job, reason)
        details = {
            "job": job,
            "conductor": self._conductor,
            "persistence": self._conductor._persistence,
        }
        self._conductor.notifier.notify(event, details)


_VERDICTS = {
    Outcome.CONSUME: "consuming it: the failure is its result",
    Outcome.ABANDON: "abandoning it for another attempt",
}

_STEP_METHODS = {
    "compilation": "compile",
    "preparation": "prepare",
    "validation": "validate",
    "running": "run",
}
