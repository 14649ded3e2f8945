"""The non-blocking conductor: several jobs at once, on a pool of threads."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any

from taskflow.conductors.backends import impl_executor
from taskflow.utils import threading_utils

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping

    from taskflow._conductors.dispatcher import Executor
    from taskflow.jobs.base import JobBoard
    from taskflow.persistence.base import Backend

__all__ = ["NonBlockingConductor"]


class NonBlockingConductor(impl_executor.ExecutorConductor):
    """Runs up to ``max_simultaneous_jobs`` jobs at once; takes the next as soon as one ends.

    Args:
        executor_factory: called with no arguments at the start of each :meth:`run`, it
            returns the executor jobs run on (anything with ``submit(fn, *args)`` returning
            a future and ``shutdown(wait=True)``); default a thread pool of
            ``max_simultaneous_jobs`` threads.
        others: as :class:`~taskflow.conductors.backends.impl_executor.ExecutorConductor`.

    Raises:
        ValueError: ``executor_factory`` is not callable, ``max_simultaneous_jobs`` is below
            1, or as the base class.
    """

    #: Jobs run at once by default: one more than the CPU count.
    MAX_SIMULTANEOUS_JOBS = threading_utils.get_optimal_thread_count()

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
        executor_factory: Callable[[], Executor] | None = None,
        max_attempts: int | None = None,
    ) -> None:
        if executor_factory is not None and not callable(executor_factory):
            raise ValueError("Provided keyword argument 'executor_factory' must be callable")
        if int(max_simultaneous_jobs) < 1:
            raise ValueError(
                f"max_simultaneous_jobs must be a positive integer, not {max_simultaneous_jobs!r}"
            )
        self._user_executor_factory = executor_factory
        # The signature is only here for its default (upstream's, per kind): the base
        # class takes the same arguments in the same order.
        args = (name, jobboard, persistence, engine, engine_options, wait_timeout, log)
        super().__init__(*args, max_simultaneous_jobs, max_attempts)

    def _executor_factory(self) -> Executor:
        if self._user_executor_factory is not None:
            return self._user_executor_factory()
        return concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_simultaneous_jobs,
            thread_name_prefix=f"conductor-{self._name}",
        )
