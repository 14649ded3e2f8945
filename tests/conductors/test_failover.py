"""Conductor processes that die, pause or keep dying: another one finishes the job, a
paused one is fenced out when it wakes up, and a job that kills every conductor is trashed.

Every conductor here is a process of its own (``_child.py``) on a SQLite board and SQLite
persistence (PostgreSQL for the last test), with a one-second lease.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import exceptions as exc
from taskflow import states
from tests.conductors import flows
from tests.conductors.conftest import LEASE, PATIENCE, Env, wait_until
from tests.helpers.databases import isolated_postgres

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from taskflow.jobs.base import Job, JobBoard
    from tests.conductors.conftest import Child


def _starts(journal: Path, name: str, pid: int | None = None) -> list[int]:
    return [
        p
        for e, n, p in flows.read_journal(journal)
        if e == "start" and n == name and (pid is None or p == pid)
    ]


def _is(key: str, value: Any) -> Any:
    return lambda line: line.get(key) == value


def _snapshot(env: Env, job: Any) -> tuple[Any, ...]:
    """Everything persisted about the job's flow: its record, its atoms, its ownership."""
    flow_detail = env.flow_detail(job)
    with contextlib.closing(env.persistence.get_connection()) as conn:
        ownership = conn.read_ownership(flow_detail.uuid)
    atoms = sorted((ad.to_dict() for ad in flow_detail), key=lambda item: item["name"])
    return flow_detail.to_dict(), atoms, ownership


def test_a_killed_conductors_job_is_finished_by_another_within_the_lease(env: Env):
    job = env.post(flows.gated, "gated")
    first = env.child(name="first")
    wait_until(lambda: _starts(env.journal, "first", first.pid))
    second = env.child(name="second")
    second.expect(_is("ready", True))
    os.kill(first.pid, signal.SIGKILL)
    killed = time.monotonic()
    env.open_gate()
    assert job.wait(timeout=PATIENCE)
    elapsed = time.monotonic() - killed
    assert elapsed < LEASE + 1.0, f"took {elapsed:.2f}s"
    second.expect(_is("event", "job_consumed"))
    assert env.flow_detail(job).state == states.SUCCESS
    assert _starts(env.journal, "first") == [first.pid, second.pid]
    assert _starts(env.journal, "third") == [second.pid]


def test_a_paused_conductor_is_fenced_out_when_it_wakes_up(env: Env):
    # Both conductors have the same name: the board and the flow must tell them apart by
    # their tokens, as with a conductor restarted while its old process still hangs around.
    job = env.post(flows.gated, "gated")
    paused = env.child(name="conductor")
    wait_until(lambda: _starts(env.journal, "first", paused.pid))
    other = env.child(name="conductor")
    other.expect(_is("ready", True))
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        # Past the lease the job is claimed again, and the flow taken over at once.
        wait_until(lambda: _starts(env.journal, "first", other.pid))
        env.open_gate()
        assert job.wait(timeout=PATIENCE)
        other.expect(_is("event", "job_consumed"))
        before = _snapshot(env, job)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    # The paused conductor's task was in flight: it ends, and its result is refused.
    paused.expect(_is("dispatched", job.uuid))
    lines = paused.drain()
    assert any("OwnershipLost" in line.get("warning", "") for line in lines), lines
    assert not [line for line in lines if line.get("event", "").startswith("job_")]
    assert _snapshot(env, job) == before  # it wrote nothing
    assert _starts(env.journal, "second", paused.pid) == []  # and started nothing more
    assert _starts(env.journal, "third") == [other.pid]
    flow_detail, _, ownership = before
    assert flow_detail["state"] == states.SUCCESS
    paused_token, other_token = _job_token(paused, job.uuid), _job_token(other, job.uuid)
    assert other_token > paused_token
    assert ownership.fence_token == other_token  # the flow was taken for the newer claim
    paused.proc.send_signal(signal.SIGTERM)
    paused.expect(_is("done", True))


def test_a_conductor_continued_after_its_claim_was_taken_records_and_starts_nothing(env: Env):
    # Paused between two tasks past its lease, and its job claimed meanwhile by a holder that
    # has not claimed the flow yet (nothing fences the flow yet): the continued conductor
    # must neither record the call it had finished nor start the next task.
    job = env.post(flows.napping, "napping")
    paused = env.child(name="paused")
    wait_until(lambda: _starts(env.journal, "nap", paused.pid) and _stopped(paused.pid))
    rival = env.board("rival")
    wait_until(lambda: _claims(rival, job), timeout=PATIENCE)  # once the lease lapsed
    before = _snapshot(env, job)[:2]
    os.kill(paused.pid, signal.SIGCONT)
    paused.expect(_is("dispatched", job.uuid))
    lines = paused.drain()
    assert any("OwnershipLost" in line.get("warning", "") for line in lines), lines
    assert _snapshot(env, job)[:2] == before  # the flow and its atoms as they were
    assert _starts(env.journal, "after") == []
    assert not [line for line in lines if line.get("event", "").startswith("job_")]


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (``T`` in /proc: the state after the command name)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "T"


def _claims(board: JobBoard, job: Job) -> bool:
    try:
        board.claim(job, "rival")
    except exc.UnclaimableJob:
        return False
    return True


def _job_token(child: Child, job_uuid: str) -> int:
    """The fencing token of ``child``'s claim of the job (its events carry it)."""
    line = child.expect(_is("event", "running_start"))
    assert line["job"] == job_uuid
    return int(line["token"])


def test_a_job_that_kills_every_conductor_is_trashed_after_max_attempts(env: Env):
    job = env.post(flows.killer, "killer")
    for _ in range(2):
        victim = env.child(max_attempts=2)
        assert victim.proc.wait(PATIENCE) == -signal.SIGKILL
    last = env.child(max_attempts=2, max_dispatches=1)
    last.expect(_is("event", "job_trashed"))
    assert last.proc.wait(PATIENCE) == 0
    assert len(_starts(env.journal, "killer")) == 2
    reason = env.trash()[job.uuid]
    assert reason is not None
    assert reason.startswith("Gave up after 2 attempts (max_attempts=2)")
    assert "while running 'killer'" in reason


@pytest.fixture
def pg_env(tmp_path: Path, postgres_url: str) -> Iterator[Env]:
    """PostgreSQL board and persistence in one schema of the test's own."""
    with isolated_postgres(postgres_url, prefix="tfcond") as url:
        conf = {"board": "postgresql", "connection": url, "lease": LEASE}
        environment = Env(tmp_path, conf, url)
        try:
            yield environment
        finally:
            environment.close()


@pytest.mark.postgres
def test_conductor_processes_on_postgresql_finish_every_job_once_despite_a_kill(
    pg_env: Env, tmp_path: Path
):
    env = pg_env
    gated = env.post(flows.gated, "gated")
    victim = env.child("blocking", name="victim")  # busy with the gated job only
    wait_until(lambda: _starts(env.journal, "first", victim.pid))
    journals = [tmp_path / f"job{index}.log" for index in range(6)]
    jobs = [
        env.post(flows.ok, f"job{index}", store={"journal": str(journal)})
        for index, journal in enumerate(journals)
    ]
    survivors = [env.child("nonblocking", name=f"survivor{index}") for index in range(2)]
    for survivor in survivors:
        survivor.expect(_is("ready", True))
    os.kill(victim.pid, signal.SIGKILL)
    env.open_gate()
    for job in [gated, *jobs]:
        assert job.wait(timeout=PATIENCE)
        assert env.flow_detail(job).state == states.SUCCESS
    for journal in journals:  # each finished job ran each task exactly once
        assert sorted(n for e, n, _ in flows.read_journal(journal) if e == "start") == [
            "one",
            "two",
        ]
    assert _starts(env.journal, "third") != []
    assert len(_starts(env.journal, "third")) == 1
