"""What happens to a job after a dispatch: consume, abandon or trash, and why.

The rules (upstream TaskFlow's, plus poison jobs):

* the flow ran to SUCCESS (or to REVERTED/FAILURE: the task's failure is the job's result,
  running it again would fail again) -> consume;
* the run was suspended, or stopped by :class:`~taskflow.exceptions.ExecutionFailure` or
  :class:`~taskflow.exceptions.StorageFailure` (a lost flow, an unreachable backend; a
  :class:`~taskflow.exceptions.WrappedFailure` of only those) -> abandon, for anyone to
  try again (but a value no backend can store is the task's failure: consume);
* the job cannot become an engine at all (no book, no such flow detail, a factory that
  does not import or raises) -> trash at once, the error as reason;
* with ``max_attempts``: a job abandoned or left behind that many times -> trash, its last
  error (or where its last holder stopped) as reason.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from taskflow import exceptions as exc
from taskflow import states
from taskflow._serialization import UnstorableValue

if TYPE_CHECKING:
    from taskflow.persistence.models import FlowDetail

__all__ = ["RETRYABLE", "Outcome", "describe", "outcome_of", "poison_reason"]

#: Errors after which another attempt may well succeed (the job is abandoned, not consumed).
RETRYABLE: tuple[type[Exception], ...] = (exc.ExecutionFailure, exc.StorageFailure)
#: Storage errors that are a task's own failure, not an outage: a result no backend can hold
#: fails its task and the flow reverts, so running the job again would fail the same way.
_FINAL: tuple[type[Exception], ...] = (UnstorableValue,)


class Outcome(enum.Enum):
    CONSUME = "consume"
    ABANDON = "abandon"
    TRASH = "trash"


def outcome_of(error: BaseException, retryable: tuple[type[Exception], ...] = RETRYABLE) -> Outcome:
    """The outcome of a run that raised ``error``."""
    if isinstance(error, exc.WrappedFailure):
        if len(error) and all(
            failure.check(*retryable) and not failure.check(*_FINAL) for failure in error
        ):
            return Outcome.ABANDON
        return Outcome.CONSUME
    if isinstance(error, retryable) and not isinstance(error, _FINAL):
        return Outcome.ABANDON
    return Outcome.CONSUME


def describe(error: BaseException) -> str:
    """``error`` on one line, for a trash reason: ``'<Type>: <message>'``."""
    if isinstance(error, exc.WrappedFailure):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _where_it_stopped(flow_detail: FlowDetail | None) -> str:
    """What the flow detail says about its last attempt (a failure, or atoms left running)."""
    if flow_detail is None:
        return "its flow detail could not be read"
    failures = [(ad.name, ad.failure) for ad in flow_detail if ad.failure is not None]
    if failures:
        name, failure = failures[-1]
        return f"atom '{name}' failed with {failure.exception_str!r}"
    running = [ad.name for ad in flow_detail if ad.state in (states.RUNNING, states.REVERTING)]
    if running:
        names = ", ".join(f"'{name}'" for name in running)
        return f"its holder stopped (died or lost its claim) while running {names}"
    return f"its holder gave it up with the flow {flow_detail.state}"


def poison_reason(
    attempts: int,
    max_attempts: int,
    error: BaseException | None = None,
    flow_detail: FlowDetail | None = None,
) -> str:
    """The trash reason of a job given up after ``attempts`` attempts.

    ``error`` is the last attempt's error when this conductor saw it; otherwise the reason
    says what the persisted flow detail shows of the last attempt.
    """
    last = describe(error) if error is not None else _where_it_stopped(flow_detail)
    return f"Gave up after {attempts} attempts (max_attempts={max_attempts}); last: {last}"
