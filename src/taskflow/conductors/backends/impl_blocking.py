"""The blocking conductor: one job at a time, run in the thread that called ``run()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow._conductors.dispatcher import Executor, InlineExecutor
from taskflow.conductors.backends import impl_executor

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from taskflow.jobs.base import JobBoard
    from taskflow.persistence.base import Backend

__all__ = ["BlockingConductor"]


class BlockingConductor(impl_executor.ExecutorConductor):
    """Claims one job, runs it to its end in the calling thread, then claims the next.

    Arguments as :class:`~taskflow.conductors.backends.impl_executor.ExecutorConductor`;
    ``max_simultaneous_jobs`` is accepted for compatibility, and jobs still run one at a
    time.
    """

    #: One job at a time.
    MAX_SIMULTANEOUS_JOBS = 1

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
        # The signature is only here for its default (upstream's, per kind): the base
        # class takes the same arguments in the same order.
        args = (name, jobboard, persistence, engine, engine_options, wait_timeout, log)
        super().__init__(*args, max_simultaneous_jobs, max_attempts)

    def _executor_factory(self) -> Executor:
        return InlineExecutor()
