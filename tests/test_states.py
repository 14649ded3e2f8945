"""State constants and transition tables (spec §6)."""

from __future__ import annotations

import inspect
import itertools
import json
from pathlib import Path

import pytest

from taskflow import exceptions as exc
from taskflow import states as st

ATOM_STATES = [
    st.PENDING, st.RUNNING, st.SUCCESS, st.FAILURE, st.REVERTING, st.REVERTED,
    st.REVERT_FAILURE, st.RETRYING, st.IGNORE, st.SUSPENDING, st.SUSPENDED, st.RESUMING,
]  # fmt: skip
JOB_STATES = [st.UNCLAIMED, st.CLAIMED, st.COMPLETE]

FLOW_ALLOWED = {
    (st.PENDING, st.RUNNING),
    (st.RUNNING, st.SUCCESS),
    (st.RUNNING, st.FAILURE),
    (st.RUNNING, st.REVERTED),
    (st.RUNNING, st.SUSPENDING),
    (st.RUNNING, st.RESUMING),
    (st.SUCCESS, st.RUNNING),
    (st.SUCCESS, st.PENDING),
    (st.FAILURE, st.RUNNING),
    (st.REVERTED, st.PENDING),
    (st.SUSPENDING, st.SUSPENDED),
    (st.SUSPENDING, st.SUCCESS),
    (st.SUSPENDING, st.FAILURE),
    (st.SUSPENDING, st.REVERTED),
    (st.SUSPENDING, st.RESUMING),
    (st.SUSPENDED, st.RUNNING),
    (st.RESUMING, st.SUSPENDED),
}
FLOW_IGNORED = {
    (a, b)
    for a in (st.PENDING, st.FAILURE, st.SUCCESS, st.SUSPENDED, st.REVERTED)
    for b in (st.SUSPENDING, st.SUSPENDED, st.RESUMING)
}
TASK_ALLOWED = {
    (st.PENDING, st.RUNNING),
    (st.PENDING, st.IGNORE),
    (st.RUNNING, st.SUCCESS),
    (st.RUNNING, st.FAILURE),
    (st.FAILURE, st.REVERTING),
    (st.SUCCESS, st.REVERTING),
    (st.REVERTING, st.REVERTED),
    (st.REVERTING, st.REVERT_FAILURE),
    (st.REVERTED, st.PENDING),
    (st.IGNORE, st.PENDING),
}
RETRY_ALLOWED = TASK_ALLOWED | {(st.SUCCESS, st.RETRYING), (st.RETRYING, st.RUNNING)}
JOB_ALLOWED = {(st.UNCLAIMED, st.CLAIMED), (st.CLAIMED, st.UNCLAIMED), (st.CLAIMED, st.COMPLETE)}


def test_constants_are_their_names():
    for name in [
        "PENDING",
        "RUNNING",
        "SUCCESS",
        "FAILURE",
        "REVERTING",
        "REVERTED",
        "REVERT_FAILURE",
        "RETRYING",
        "IGNORE",
        "SUSPENDING",
        "SUSPENDED",
        "RESUMING",
        "SCHEDULING",
        "WAITING",
        "ANALYZING",
        "EXECUTE",
        "REVERT",
        "RETRY",
        "UNCLAIMED",
        "CLAIMED",
        "COMPLETE",
    ]:
        assert getattr(st, name) == name


def test_exports_only_upstreams_names():
    # The engine loop's private states (UNDEFINED, GAME_OVER) live in _engine.machine;
    # taskflow.states holds exactly what upstream TaskFlow's module does.
    recorded = Path(__file__).parent / "helpers" / "public_api_golden.json"
    golden = json.loads(recorded.read_text())["modules"]["taskflow.states"]["names"]
    public = {
        name
        for name, value in vars(st).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert sorted(st.__all__) == sorted(golden)
    assert public == set(golden)


def test_intentions():
    assert st.INTENTIONS == (st.EXECUTE, st.IGNORE, st.REVERT, st.RETRY)


@pytest.mark.parametrize(("old", "new"), sorted(FLOW_ALLOWED))
def test_flow_allowed(old, new):
    assert st.check_flow_transition(old, new) is True


@pytest.mark.parametrize(("old", "new"), sorted(FLOW_IGNORED))
def test_flow_ignored(old, new):
    assert st.check_flow_transition(old, new) is False


@pytest.mark.parametrize("state", ATOM_STATES)
def test_flow_same_state_is_ignored(state):
    assert st.check_flow_transition(state, state) is False


def test_flow_everything_else_is_invalid():
    checked = 0
    for old, new in itertools.permutations(ATOM_STATES, 2):
        if (old, new) in FLOW_ALLOWED or (old, new) in FLOW_IGNORED:
            continue
        with pytest.raises(exc.InvalidState) as info:
            st.check_flow_transition(old, new)
        assert str(info.value) == f"Flow transition from '{old}' to '{new}' is not allowed"
        checked += 1
    assert checked > 100


def test_invalid_state_is_an_execution_failure():
    with pytest.raises(exc.ExecutionFailure):
        st.check_flow_transition(st.PENDING, st.SUCCESS)


def test_task_transitions():
    for old, new in itertools.product(ATOM_STATES, repeat=2):
        assert st.check_task_transition(old, new) is ((old, new) in TASK_ALLOWED), (old, new)


def test_retry_transitions():
    for old, new in itertools.product(ATOM_STATES, repeat=2):
        assert st.check_retry_transition(old, new) is ((old, new) in RETRY_ALLOWED), (old, new)


def test_task_cannot_retry_but_retry_can():
    assert not st.check_task_transition(st.SUCCESS, st.RETRYING)
    assert st.check_retry_transition(st.SUCCESS, st.RETRYING)
    assert st.check_retry_transition(st.RETRYING, st.RUNNING)


def test_job_transitions():
    for old, new in itertools.product(JOB_STATES, repeat=2):
        if old == new:
            assert st.check_job_transition(old, new) is False
        elif (old, new) in JOB_ALLOWED:
            assert st.check_job_transition(old, new) is True
        else:
            with pytest.raises(exc.InvalidState) as info:
                st.check_job_transition(old, new)
            assert str(info.value) == f"Job transition from '{old}' to '{new}' is not allowed"


def test_no_old_state_is_never_a_transition():
    with pytest.raises(exc.InvalidState, match="from 'None' to 'RUNNING'"):
        st.check_flow_transition(None, st.RUNNING)
    assert st.check_task_transition(None, st.RUNNING) is False
    assert st.check_retry_transition(None, st.RUNNING) is False
