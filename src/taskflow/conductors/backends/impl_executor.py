"""The conductor that hands each claimed job to an executor (the base of both kinds)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow._conductors.dispatcher import REFRESH_PERIODICITY, Dispatcher, Executor
from taskflow._conductors.events import ENGINE_STEPS, JOB_ABANDONED, JOB_CONSUMED, JOB_TRASHED
from taskflow.conductors import base

if TYPE_CHECKING:
    from collections.abc import Mapping

    from taskflow.jobs.base import Job, JobBoard
    from taskflow.persistence.base import Backend

__all__ = ["ExecutorConductor"]

LOG = logging.getLogger(__name__)


def _seconds(value: float | None, default: float) -> float:
    if value is None:
        return default
    seconds = float(value)  # ValueError/TypeError for what is no number
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError(f"Timeout value must be greater or equal to zero and not '{seconds}'")
    return seconds


def _max_attempts(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_attempts must be None or a positive integer, not {value!r}")
    return value


class ExecutorConductor(base.Conductor):
    """Claims jobs and runs each through an executor, ``max_simultaneous_jobs`` at a time.

    Args:
        name, jobboard, persistence, engine, engine_options: see
            :class:`~taskflow.conductors.base.Conductor`.
        wait_timeout: longest wait (seconds) with nothing to claim before listing the board
            again (default :attr:`WAIT_TIMEOUT`); taskflow's boards wake the conductor as
            soon as a job is posted or released.
        log: the logger to use (default: this module's).
        max_simultaneous_jobs: jobs run at once; below 1 means no limit.
        max_attempts: trash a job, with its last error as reason, once it has been
            attempted (claimed, then abandoned or left behind by a dead or paused holder)
            this many times, instead of running it again (default None: never; needs a
            board that counts attempts, as taskflow's do with ``job.attempts``).

    Raises:
        ValueError: a negative ``wait_timeout`` or a bad ``max_attempts``.
    """

    #: Seconds an idle conductor waits before listing the board again.
    WAIT_TIMEOUT = 0.5
    #: Seconds between listings that make the board read its storage afresh.
    REFRESH_PERIODICITY = REFRESH_PERIODICITY
    #: Jobs run at once unless told otherwise (-1: no limit).
    MAX_SIMULTANEOUS_JOBS = -1
    #: Errors after which the job is abandoned (for another attempt) rather than consumed.
    NO_CONSUME_EXCEPTIONS: tuple[type[Exception], ...] = (
        exc.ExecutionFailure,
        exc.StorageFailure,
    )
    #: Every event :attr:`notifier` may publish.
    EVENTS_EMITTED = (
        *(f"{step}_{edge}" for step in ENGINE_STEPS for edge in ("start", "end")),
        JOB_CONSUMED,
        JOB_ABANDONED,
        JOB_TRASHED,
    )

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        wait_timeout: float | None = None,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        max_simultaneous_jobs: int = MAX_SIMULTANEOUS_JOBS,
        max_attempts: int | None = None,
    ) -> None:
        super().__init__(
            name, jobboard, persistence=persistence, engine=engine, engine_options=engine_options
        )
        self._wait_timeout = _seconds(wait_timeout, self.WAIT_TIMEOUT)
        self._log = log if log is not None else LOG
        self._max_simultaneous_jobs = int(max_simultaneous_jobs)
        self._max_attempts = _max_attempts(max_attempts)
        self._dispatcher = Dispatcher(
            self,
            self._max_simultaneous_jobs,
            self._wait_timeout,
            self._executor_factory,
            self._max_attempts,
            self._log,
            retryable=self.NO_CONSUME_EXCEPTIONS,
        )

    def _executor_factory(self) -> Executor:
        """The executor of one :meth:`run` (shut down, waiting, when the run ends)."""
        raise NotImplementedError

    @property
    def dispatching(self) -> bool:
        """False once :meth:`run` has returned (until it is called again)."""
        return self._dispatcher.dispatching

    def run(self, max_dispatches: int | None = None) -> None:
        """Claim and run jobs until :meth:`stop` is called.

        Args:
            max_dispatches: return once this many jobs were claimed (and their dispatches
                ended) instead; upstream TaskFlow takes one more job than this.

        Raises:
            ValueError: a negative ``max_dispatches``.
        """
        self._dispatcher.run(max_dispatches)

    def stop(self) -> None:
        """Make :meth:`run` return soon: nothing more is claimed and running engines are
        suspended (their jobs are abandoned, for another conductor to resume). A stopped
        conductor stays stopped: a later :meth:`run` returns at once."""
        self._dispatcher.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`run` to return; False if ``timeout`` passed first (or no run)."""
        return self._dispatcher.wait(timeout)

    def _dispatch_job(self, job: Job) -> None:
        self._dispatcher.dispatch(job)
