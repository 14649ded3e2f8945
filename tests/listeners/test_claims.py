"""CheckingClaimListener against a tiny in-test jobboard double (find_owner only)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import exceptions, retry, states
from taskflow.listeners import claims
from taskflow.patterns import linear_flow as lf
from tests.helpers.listener_flows import Provide, ok_flow

if TYPE_CHECKING:
    from collections.abc import Iterable

LOGGER = "taskflow.listeners.claims"


class Job:
    """A job whose ``state`` reads come from a script (then stay CLAIMED)."""

    def __init__(self, states_script: Iterable[Any] = ()) -> None:
        self._script = list(states_script)
        self.reads = 0

    @property
    def state(self) -> str:
        self.reads += 1
        value = self._script.pop(0) if self._script else states.CLAIMED
        if isinstance(value, Exception):
            raise value
        return str(value)

    def __str__(self) -> str:
        return "job-1"


class Board:
    """Answers ``find_owner`` from a script (then keeps answering ``me``)."""

    def __init__(self, owners: Iterable[Any] = ()) -> None:
        self._script = list(owners)
        self.calls = 0

    def find_owner(self, job: Any) -> Any:
        self.calls += 1
        value = self._script.pop(0) if self._script else "me"
        if isinstance(value, Exception):
            raise value
        return value


def _messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def caplog_claims(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def test_claim_kept(load: Any, caplog_claims: Any) -> None:
    engine = load(ok_flow())
    board = Board()
    with claims.CheckingClaimListener(engine, Job(), board, "me"):
        engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    # Two flow events and four task events were checked.
    assert board.calls == 6
    kept = (logging.DEBUG, "Job 'job-1' is still claimed (actively owned by 'me')")
    assert _messages(caplog_claims) == [kept] * 6


def test_lost_claim_suspends_by_default(load_serial: Any, caplog_claims: Any) -> None:
    engine = load_serial(ok_flow())
    # Flow RUNNING, a RUNNING: ours; a SUCCESS: somebody else's.
    board = Board(["me", "me", "other"])
    with claims.CheckingClaimListener(engine, Job(), board, "me"):
        engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert engine.storage.get_atom_state("a") == states.SUCCESS
    assert engine.storage.get_atom_state("b") == states.PENDING
    lost = (logging.WARNING, "Job 'job-1' has lost its claim (previously owned by 'me')")
    assert _messages(caplog_claims).count(lost) == 1


def test_custom_loss_handler_gets_engine_state_details(load_serial: Any) -> None:
    engine = load_serial(ok_flow())
    losses: list[tuple[Any, str, dict[str, Any]]] = []
    board = Board(["me", "other"])
    with claims.CheckingClaimListener(
        engine, Job(), board, "me", on_job_loss=lambda *args: losses.append(args)
    ):
        engine.run()
    # The custom handler does not suspend, so the flow runs on (and the board is ours again).
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert len(losses) == 1
    lost_engine, state, details = losses[0]
    assert lost_engine is engine
    assert state == states.RUNNING
    assert details["task_name"] == "a"


@pytest.mark.parametrize(
    ("job_states", "owners", "lost"),
    [
        ([], [None], True),
        ([], [exceptions.NotFound("gone")], True),
        ([], [exceptions.JobFailure("board down")], True),
        ([], [exceptions.UnclaimableJob("nope")], True),
        ([states.UNCLAIMED], [], True),
        ([exceptions.JobFailure("no state")], [], True),
        ([states.COMPLETE], [], False),
        ([states.CLAIMED], ["me"], False),
    ],
)
def test_what_counts_as_lost(load_serial: Any, job_states: Any, owners: Any, lost: bool) -> None:
    engine = load_serial(ok_flow())
    losses: list[Any] = []
    listener = claims.CheckingClaimListener(
        engine,
        Job(job_states),
        Board(owners),
        "me",
        on_job_loss=lambda *args: losses.append(args[1]),
    )
    with listener:
        engine.run()
    # Only the very first check (the flow starting to run) sees the scripted answer.
    assert losses == ([states.RUNNING] if lost else [])


def test_unexpected_board_errors_are_not_a_loss(load_serial: Any) -> None:
    engine = load_serial(ok_flow())
    losses: list[Any] = []
    board = Board([ValueError("bug")])
    with claims.CheckingClaimListener(
        engine, Job(), board, "me", on_job_loss=lambda *args: losses.append(args)
    ):
        engine.run()
    assert losses == []
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_job_state_read_before_owner_lookup(load_serial: Any) -> None:
    engine = load_serial(ok_flow())
    job = Job([exceptions.JobFailure("no state")])
    board = Board()
    with claims.CheckingClaimListener(engine, job, board, "me", on_job_loss=lambda *a: None):
        engine.run()
    assert job.reads == 6
    assert board.calls == 5


def test_on_job_loss_must_be_callable(load: Any) -> None:
    with pytest.raises(ValueError, match="Custom 'on_job_loss' handler must be callable"):
        claims.CheckingClaimListener(load(ok_flow()), Job(), Board(), "me", on_job_loss=5)  # type: ignore[arg-type]


def test_retries_are_not_checked(load: Any) -> None:
    engine = load(lf.Flow("f", retry=retry.Times(1, "r")).add(Provide("a")))
    board = Board()
    with claims.CheckingClaimListener(engine, Job(), board, "me"):
        engine.run()
    assert board.calls == 4
