"""States of flows, atoms and jobs, and the transitions allowed between them.

The constants are the values persisted by every backend, so they stay plain strings:
``flow_detail.state == "SUCCESS"`` is a supported comparison.
"""

from __future__ import annotations

from taskflow import exceptions as exc

__all__ = [
    "ANALYZING",
    "CLAIMED",
    "COMPLETE",
    "EXECUTE",
    "FAILURE",
    "IGNORE",
    "INTENTIONS",
    "PENDING",
    "RESUMING",
    "RETRY",
    "RETRYING",
    "REVERT",
    "REVERTED",
    "REVERTING",
    "REVERT_FAILURE",
    "RUNNING",
    "SCHEDULING",
    "SUCCESS",
    "SUSPENDED",
    "SUSPENDING",
    "UNCLAIMED",
    "WAITING",
    "check_flow_transition",
    "check_job_transition",
    "check_retry_transition",
    "check_task_transition",
]

# Job states.
UNCLAIMED = "UNCLAIMED"
CLAIMED = "CLAIMED"
COMPLETE = "COMPLETE"

# Flow and atom states.
PENDING = "PENDING"
RUNNING = "RUNNING"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVERTING = "REVERTING"
REVERTED = "REVERTED"
REVERT_FAILURE = "REVERT_FAILURE"
RETRYING = "RETRYING"
SUSPENDING = "SUSPENDING"
SUSPENDED = "SUSPENDED"
RESUMING = "RESUMING"

# Atom intentions (IGNORE doubles as the state of a skipped atom).
EXECUTE = "EXECUTE"
IGNORE = "IGNORE"
REVERT = "REVERT"
RETRY = "RETRY"
INTENTIONS = (EXECUTE, IGNORE, REVERT, RETRY)

# States of the engine's own loop (never persisted); its private ones are in _engine/machine.py.
SCHEDULING = "SCHEDULING"
WAITING = "WAITING"
ANALYZING = "ANALYZING"

_ALLOWED_FLOW_TRANSITIONS = frozenset(
    (
        (PENDING, RUNNING),  # a fresh flow starts
        (RUNNING, SUCCESS),  # every atom finished
        (RUNNING, FAILURE),  # a failure that could not be reverted (or never_resolve)
        (RUNNING, REVERTED),  # a failure was reverted
        (RUNNING, SUSPENDING),  # suspend() asked while atoms are in flight
        (RUNNING, RESUMING),  # an interrupted run is picked up again
        (SUCCESS, RUNNING),  # a finished flow is run again (new atoms appeared)
        (SUCCESS, PENDING),  # reset()
        (FAILURE, RUNNING),  # failed atoms get resolved on the next run
        (REVERTED, PENDING),  # reset() before running a reverted flow again
        (SUSPENDING, SUSPENDED),  # in-flight atoms finished
        (SUSPENDING, SUCCESS),  # ...and happened to be the last ones
        (SUSPENDING, FAILURE),
        (SUSPENDING, REVERTED),
        (SUSPENDING, RESUMING),
        (SUSPENDED, RUNNING),  # a suspended flow continues
        (RESUMING, SUSPENDED),  # prepare() of an interrupted flow
    )
)

# Transitions that are silently ignored: they happen when engine machinery asks for a
# state the flow is already past (prepare() of a fresh or finished flow, for instance).
_IGNORED_FLOW_TRANSITIONS = frozenset(
    (a, b)
    for a in (PENDING, FAILURE, SUCCESS, SUSPENDED, REVERTED)
    for b in (SUSPENDING, SUSPENDED, RESUMING)
)

_ALLOWED_JOB_TRANSITIONS = frozenset(
    (
        (UNCLAIMED, CLAIMED),  # someone claimed it
        (CLAIMED, UNCLAIMED),  # abandoned, or the claimant vanished
        (CLAIMED, COMPLETE),  # consumed
    )
)

_ALLOWED_TASK_TRANSITIONS = frozenset(
    (
        (PENDING, RUNNING),  # execution starts
        (PENDING, IGNORE),  # a decider skipped the atom
        (RUNNING, SUCCESS),
        (RUNNING, FAILURE),
        (FAILURE, REVERTING),  # a failed atom is reverted too
        (SUCCESS, REVERTING),
        (REVERTING, REVERTED),
        (REVERTING, REVERT_FAILURE),
        (REVERTED, PENDING),  # retried, or reset
        (IGNORE, PENDING),  # reset
    )
)

_ALLOWED_RETRY_TRANSITIONS = _ALLOWED_TASK_TRANSITIONS | frozenset(
    (
        (SUCCESS, RETRYING),  # its subflow failed and it decided to retry
        (RETRYING, RUNNING),  # it executes again with the new history entry
    )
)


def check_flow_transition(old_state: str | None, new_state: str) -> bool:
    """Whether a flow may move from ``old_state`` to ``new_state``.

    Returns True when the move is allowed, False when it should be silently ignored (including
    a move to the same state), and raises :class:`~taskflow.exceptions.InvalidState` otherwise.
    """
    if old_state == new_state:
        return False
    pair = (old_state, new_state)
    if pair in _ALLOWED_FLOW_TRANSITIONS:
        return True
    if pair in _IGNORED_FLOW_TRANSITIONS:
        return False
    raise exc.InvalidState(f"Flow transition from '{old_state}' to '{new_state}' is not allowed")


def check_job_transition(old_state: str, new_state: str) -> bool:
    """Like :func:`check_flow_transition`, for jobs."""
    if old_state == new_state:
        return False
    if (old_state, new_state) in _ALLOWED_JOB_TRANSITIONS:
        return True
    raise exc.InvalidState(f"Job transition from '{old_state}' to '{new_state}' is not allowed")


def check_task_transition(old_state: str | None, new_state: str) -> bool:
    """Whether a task may move from ``old_state`` to ``new_state``."""
    return (old_state, new_state) in _ALLOWED_TASK_TRANSITIONS


def check_retry_transition(old_state: str | None, new_state: str) -> bool:
    """Whether a retry controller may move from ``old_state`` to ``new_state``."""
    return (old_state, new_state) in _ALLOWED_RETRY_TRANSITIONS
