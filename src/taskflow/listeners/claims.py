"""A listener that stops an engine once the job it runs for is no longer claimed by us.

Theory of operation: a conductor claims a job on a jobboard, then runs the job's flow.
Claims can be lost while the flow runs (the owner's session expires, an operator releases
the job). On every flow and task state change this listener asks the board who owns the
job; if it is no longer ``owner`` (or the job went back to UNCLAIMED, or the board cannot
tell), the claim is considered lost and ``on_job_loss`` runs. By default that suspends the
engine: atoms already running finish, nothing new starts, and whoever claims the job next
resumes the flow from its persisted state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from taskflow import exceptions, states
from taskflow.listeners import base

if TYPE_CHECKING:
    from taskflow.engines.base import Engine

__all__ = ["CheckingClaimListener"]

LOG = logging.getLogger(__name__)

#: ``on_job_loss(engine, state, details)``, called once per event seen after the loss.
JobLossHandler = Callable[["Engine", str, dict[str, Any]], Any]


class _ClaimedJob(Protocol):
    @property
    def state(self) -> str: ...


class _OwnerFinder(Protocol):
    def find_owner(self, job: Any) -> Any: ...


class CheckingClaimListener(base.Listener):
    """Checks on each flow and task state change that ``owner`` still holds ``job``.

    Args:
        engine: the engine running the job's flow.
        job: the claimed job (its ``state`` is read on each check).
        board: the jobboard holding the job (its ``find_owner(job)`` is called).
        owner: the name the job was claimed with.
        on_job_loss: called as ``on_job_loss(engine, state, details)`` when the claim is
            found lost (default: suspend the engine).

    Raises:
        ValueError: ``on_job_loss`` is given but not callable.
    """

    def __init__(
        self,
        engine: Engine,
        job: _ClaimedJob,
        board: _OwnerFinder,
        owner: str,
        on_job_loss: JobLossHandler | None = None,
    ) -> None:
        # Retries are checked through the tasks they govern; only flows and tasks subscribe.
        super().__init__(engine, retry_listen_for=())
        self._job = job
        self._board = board
        self._owner = owner
        if on_job_loss is None:
            self._on_job_loss: JobLossHandler = self._suspend_engine_on_loss
        elif not callable(on_job_loss):
            raise ValueError("Custom 'on_job_loss' handler must be callable")
        else:
            self._on_job_loss = on_job_loss

    def _suspend_engine_on_loss(self, engine: Engine, state: str, details: dict[str, Any]) -> None:
        """The default loss handler: suspend the engine."""
        try:
            engine.suspend()
        except exceptions.TaskFlowException:
            LOG.warning(
                "Failed suspending engine '%s' (previously owned by '%s')",
                engine,
                self._owner,
                exc_info=True,
            )

    def _has_been_lost(self) -> bool:
        try:
            job_state = self._job.state
            job_owner = self._board.find_owner(self._job)
        except (exceptions.NotFound, exceptions.JobFailure):
            # The board no longer knows the job (or cannot say): assume the worst.
            return True
        return job_state == states.UNCLAIMED or job_owner != self._owner

    def _claim_checker(self, state: str, details: dict[str, Any]) -> None:
        if not self._has_been_lost():
            LOG.debug("Job '%s' is still claimed (actively owned by '%s')", self._job, self._owner)
            return
        LOG.warning(
            "Job '%s' has lost its claim (previously owned by '%s')", self._job, self._owner
        )
        self._on_job_loss(self._engine, state, details)

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._claim_checker(state, details)

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self._claim_checker(state, details)
