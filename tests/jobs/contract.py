"""The jobboard contract: tests every board kind passes.

Every ``test_*`` here takes the ``boards`` fixture (a :class:`tests.jobs.conftest.
BoardFactory`) or ``board`` (one connected board). ``test_contract_<kind>.py`` imports these
functions and defines ``boards`` per variant; a new board kind only adds such a file.

Timing: waits are bounded by deadlines far above what a healthy board needs, and only
behaviour is asserted (a waiter returns before its timeout, a lapsed claim is taken over
within the lease plus a margin), never speed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from datetime import datetime

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow._jobs.board import DEFAULT_LEASE
from taskflow.conductors.backends.impl_executor import ExecutorConductor
from taskflow.jobs import base
from taskflow.persistence import models
from taskflow.persistence.backends import impl_memory
from taskflow.types.entity import Entity

#: Seconds of slack on top of a lease before a lapse counts as missed (slow CI machines).
MARGIN = 5.0
#: A lease short enough for tests to outwait it.
SHORT_LEASE = 0.6


def _read(proc) -> dict:
    line = proc.stdout.readline()
    assert line, f"child exited with {proc.wait(timeout=30)} before answering"
    return json.loads(line)


def _send(proc, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _find(board, job):
    return next(j for j in board.iterjobs() if j.uuid == job.uuid)


def _claim_within(board, job, who: str, seconds: float) -> None:
    """Claim ``job`` as soon as it is claimable; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            board.claim(job, who)
            return
        except exc.UnclaimableJob:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- posting, listing, ordering -------------------------------------------------------------


def test_post_returns_a_job_with_its_posting(board):
    details = {"flow_uuid": "f-1", "store": {"x": [1, 2]}, "pair": (1, 2)}
    job = board.post("job-1", details=details, priority="high")
    assert isinstance(job, base.Job)
    assert job.name == "job-1"
    assert job.details == details
    assert job.priority is base.JobPriority.HIGH
    assert job.board is board
    assert job.state == states.UNCLAIMED
    assert isinstance(job.created_on, datetime)
    assert job.book is None
    assert job.book_uuid is None
    assert job.book_name is None
    assert "job-1" in str(job)


def test_another_board_object_lists_the_same_job(boards):
    poster, reader = boards.make("poster"), boards.make("reader")
    job = poster.post("shared", details={"k": "v", "t": (1, "a")})
    (seen,) = list(reader.iterjobs())
    assert (seen.uuid, seen.name, seen.details, seen.priority) == (
        job.uuid,
        "shared",
        {"k": "v", "t": (1, "a")},
        base.JobPriority.NORMAL,
    )
    assert seen.created_on == job.created_on
    assert reader.job_count == 1


def test_empty_details_default_to_a_dict(board):
    job = board.post("plain")
    assert job.details == {}
    assert _find(board, job).details == {}


def test_unstorable_details_are_refused_before_posting(board):
    with pytest.raises(TypeError):
        board.post("bad", details={"x": object()})
    assert board.job_count == 0


def test_bad_priority_is_refused(board):
    with pytest.raises(ValueError, match="not a valid priority"):
        board.post("bad", priority="urgent")


def test_jobs_come_by_priority_then_oldest_first(board):
    p = base.JobPriority
    for name, priority in [
        ("a", p.LOW),
        ("b", p.NORMAL),
        ("c", p.HIGH),
        ("d", p.NORMAL),
        ("e", p.VERY_HIGH),
        ("f", p.VERY_LOW),
        ("g", p.HIGH),
    ]:
        board.post(name, priority=priority)
    assert [j.name for j in board.iterjobs()] == ["e", "c", "g", "b", "d", "a", "f"]
    assert [j.sequence for j in board.iterjobs() if j.name in "bd"] == sorted(
        j.sequence for j in board.iterjobs() if j.name in "bd"
    )


def test_only_unclaimed_skips_held_jobs(board):
    jobs = [board.post(name) for name in "abc"]
    board.claim(jobs[1], "me")
    assert [j.name for j in board.iterjobs(only_unclaimed=True)] == ["a", "c"]
    assert [j.name for j in board.iterjobs(ensure_fresh=True)] == ["a", "b", "c"]
    it = board.iterjobs()
    assert isinstance(it, base.JobBoardIterator)
    assert it.board is board
    assert iter(it) is it


def test_job_count_counts_live_jobs(board):
    assert board.job_count == 0
    a, b = board.post("a"), board.post("b")
    board.claim(a, "me")
    assert board.job_count == 2
    board.consume(a, "me")
    board.claim(b, "me")
    board.trash(b, "me")
    assert board.job_count == 0


# -- claims and their outcomes ----------------------------------------------------------------


def test_claim_consume_lifecycle(board):
    job = board.post("j")
    assert job.last_modified is None
    assert board.find_owner(job) is None
    board.claim(job, "me")
    assert job.state == states.CLAIMED
    assert board.find_owner(job) == "me"
    assert isinstance(job.token, int)
    assert isinstance(job.last_modified, datetime)
    board.consume(job, "me")
    assert job.state == states.COMPLETE
    assert board.find_owner(job) is None
    assert list(board.iterjobs()) == []


def test_a_held_job_is_unclaimable_even_by_its_holder(board):
    job = board.post("j")
    board.claim(job, "me")
    with pytest.raises(exc.UnclaimableJob):
        board.claim(job, "other")
    with pytest.raises(exc.UnclaimableJob):
        board.claim(job, "me")


def test_gone_jobs_are_not_found(board):
    job = board.post("j")
    board.claim(job, "me")
    board.consume(job, "me")
    with pytest.raises(exc.NotFound):
        board.claim(job, "me")
    for release in (board.consume, board.abandon, board.trash):
        with pytest.raises(exc.NotFound):
            release(job, "me")


def test_releasing_an_unclaimed_job_is_not_found(board):
    job = board.post("j")
    for release in (board.consume, board.abandon, board.trash):
        with pytest.raises(exc.NotFound):
            release(job, "me")
    assert job.state == states.UNCLAIMED


def test_only_the_holder_can_release(board):
    job = board.post("j")
    board.claim(job, "me")
    for release in (board.consume, board.abandon, board.trash):
        with pytest.raises(exc.JobFailure) as info:
            release(job, "other")
        assert not isinstance(info.value, exc.NotFound)
    assert board.find_owner(job) == "me"


def test_abandon_makes_the_job_claimable_and_counts_an_attempt(boards):
    board, other = boards.make("a"), boards.make("b")
    job = board.post("j")
    board.claim(job, "me")
    first = job.token
    board.abandon(job, "me")
    assert job.state == states.UNCLAIMED
    seen = _find(other, job)
    assert seen.attempts == 1
    assert seen.token is None
    other.claim(seen, "other")
    assert seen.token > first
    other.consume(seen, "other")
    assert job.state == states.COMPLETE


def test_tokens_only_increase(board):
    job = board.post("j")
    tokens = []
    for _ in range(4):
        board.claim(job, "me")
        tokens.append(job.token)
        board.abandon(job, "me")
    assert tokens == sorted(set(tokens))
    assert _find(board, job).attempts == 4


def test_trash_keeps_the_job_aside_with_its_reason(boards):
    board, other = boards.make("a"), boards.make("b")
    keep, bad, plain = board.post("keep"), board.post("bad"), board.post("plain")
    board.claim(bad, "me")
    board.trash(bad, "me", reason="flow could not be loaded")
    board.claim(plain, "me")
    board.trash(plain, "me")
    assert bad.state == states.COMPLETE
    assert [j.name for j in other.iterjobs()] == ["keep"]
    trashed = list(other.iter_trash())
    assert [(t.job.name, t.reason) for t in trashed] == [
        ("bad", "flow could not be loaded"),
        ("plain", None),
    ]
    assert all(isinstance(t.trashed_on, datetime) for t in trashed)
    assert trashed[0].job.uuid == bad.uuid
    assert keep.state == states.UNCLAIMED


@pytest.mark.parametrize(
    ("who", "error"), [(None, TypeError), (5, TypeError), (b"me", TypeError), ("", ValueError)]
)
def test_who_must_be_a_non_empty_string(board, who, error):
    job = board.post("j")
    for call in (board.claim, board.consume, board.abandon, board.trash):
        with pytest.raises(error, match="Job applicant must be"):
            call(job, who)
    assert job.state == states.UNCLAIMED


def test_job_wait_returns_once_complete(boards):
    board, worker = boards.make("a"), boards.make("b")
    job = board.post("j")
    assert job.wait(timeout=0.05) is False

    def finish() -> None:
        time.sleep(0.1)
        seen = _find(worker, job)
        worker.claim(seen, "w")
        worker.consume(seen, "w")

    thread = threading.Thread(target=finish)
    thread.start()
    try:
        assert job.wait(timeout=30) is True
    finally:
        thread.join()


# -- books ----------------------------------------------------------------------------------


def test_books_load_lazily_from_persistence(boards):
    backend = impl_memory.MemoryBackend()
    book = models.LogBook("the-book")
    book.add(models.FlowDetail("flow", "f-uuid"))
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    poster = boards.make("poster")
    posted = poster.post("j", book=book, details={"flow_uuid": "f-uuid"})
    assert (posted.book_uuid, posted.book_name) == (book.uuid, "the-book")

    reader = boards.make("reader", persistence=backend)
    (job,) = list(reader.iterjobs())
    assert (job.book_uuid, job.book_name) == (book.uuid, "the-book")
    loaded = job.book
    assert loaded is not None
    assert loaded.uuid == book.uuid
    assert [fd.uuid for fd in loaded] == ["f-uuid"]

    without = boards.make("no-persistence")
    (job,) = list(without.iterjobs())
    assert job.book is None
    assert job.book_uuid == book.uuid


# -- waiting and notifications --------------------------------------------------------------


def test_wait_times_out_with_not_found(board):
    with pytest.raises(exc.NotFound, match="Expired waiting for jobs"):
        board.wait(timeout=0.05)


def test_wait_returns_at_once_when_there_are_jobs(board):
    board.post("j")
    assert [j.name for j in board.wait(timeout=30)] == ["j"]


def test_a_waiter_wakes_when_another_board_posts(boards):
    waiter, poster = boards.make("waiter"), boards.make("poster")
    result: list = []

    def wait() -> None:
        started = time.monotonic()
        result.append([j.name for j in waiter.wait(timeout=30)])
        result.append(time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    poster.post("new")
    thread.join(timeout=60)
    assert result[0] == ["new"]
    assert result[1] < 30 - MARGIN  # woken by the post, not by the timeout


def test_wait_for_change_wakes_on_another_boards_writes(boards):
    waiter, writer = boards.make("waiter"), boards.make("writer")
    job = writer.post("j")
    for change in (
        lambda: writer.claim(job, "w"),
        lambda: writer.abandon(job, "w"),
        lambda: writer.post("k"),
    ):
        woke = threading.Event()

        def wait(woke=woke) -> None:
            if waiter.wait_for_change(30):
                woke.set()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.1)
        change()
        assert woke.wait(30 - MARGIN)
        thread.join()
    assert waiter.wait_for_change(0.01) in (True, False)


def test_notifier_reports_posted_and_removed_jobs(boards):
    listener, writer = boards.make("listener"), boards.make("writer")
    events: list[tuple[str, str]] = []
    seen = threading.Condition()

    def record(event_type, details) -> None:
        with seen:
            events.append((event_type, details["job"].name))
            seen.notify_all()

    assert isinstance(listener, base.NotifyingJobBoard)
    listener.notifier.register(listener.notifier.ANY, record)
    job = writer.post("j")
    with seen:
        assert seen.wait_for(lambda: (base.POSTED, "j") in events, 30)
    writer.claim(job, "w")
    writer.consume(job, "w")
    with seen:
        assert seen.wait_for(lambda: (base.REMOVAL, "j") in events, 30)
    assert events.count((base.POSTED, "j")) == 1


def test_register_entity(board):
    board.register_entity(Entity("conductor", "c-1", {"hostname": "h", "pid": 1}))
    board.register_entity(Entity("conductor", "c-1", {"hostname": "h", "pid": 2}))


def test_board_lifecycle(boards):
    board = boards.make()
    assert board.connected
    board.connect()  # already connected: nothing happens
    board.close()
    assert not board.connected
    board.close()
    with pytest.raises(exc.JobFailure):
        list(board.iterjobs())
    with board:
        assert board.connected
        board.post("j")
    assert not board.connected


# -- leases ---------------------------------------------------------------------------------


def test_a_claim_outlives_its_lease_while_renewed(boards):
    holder, other = boards.make("holder", lease=SHORT_LEASE), boards.make("other")
    job = holder.post("j")
    holder.claim(job, "me")
    time.sleep(SHORT_LEASE * 3)
    assert holder.holds(job)
    assert other.find_owner(job) == "me"
    with pytest.raises(exc.UnclaimableJob):
        other.claim(_find(other, job), "other")
    holder.consume(job, "me")


def test_a_closed_boards_claims_lapse(boards):
    holder, other = boards.make("holder", lease=SHORT_LEASE), boards.make("other")
    job = holder.post("j")
    holder.claim(job, "me")
    token = job.token
    holder.close()
    seen = _find(other, job)
    _claim_within(other, seen, "other", SHORT_LEASE + MARGIN)
    assert seen.token > token
    assert _find(other, job).attempts == 1


@pytest.mark.slow
def test_a_killed_holders_claim_lapses(boards):
    board = boards.make()
    job = board.post("j")
    child = boards.child("hold", "doomed", job.uuid, lease=SHORT_LEASE)
    token = _read(child)["token"]
    assert board.find_owner(job) == "doomed"
    with pytest.raises(exc.UnclaimableJob):
        board.claim(job, "rescuer")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    _claim_within(board, job, "rescuer", SHORT_LEASE + MARGIN)
    assert job.token > token
    assert _find(board, job).attempts == 1
    board.consume(job, "rescuer")


@pytest.mark.slow
def test_a_killed_holders_job_is_claimed_within_the_default_lease_plus_a_second(boards):
    # The recovery bound, with default settings: a rescuer waiting as an idle
    # conductor does (on the board's change signal, at most its default wait_timeout, then
    # listing unclaimed jobs) gets the job of a SIGKILLed holder within the lease plus one
    # second of the kill, and so in under 5 s.
    board = boards.make()
    job = board.post("j")
    child = boards.child("hold", "doomed", job.uuid)
    token = _read(child)["token"]
    time.sleep(DEFAULT_LEASE / 2)  # killed between renewals, after the first
    child.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    child.wait(timeout=30)
    deadline = killed + DEFAULT_LEASE + MARGIN
    while True:
        mark = board.generation
        if any(j.uuid == job.uuid for j in board.iterjobs(only_unclaimed=True)):
            with contextlib.suppress(exc.UnclaimableJob):
                board.claim(job, "rescuer")
                break
        left = deadline - time.monotonic()
        assert left > 0, "the killed holder's claim never lapsed"
        board.wait_generation(mark, min(left, ExecutorConductor.WAIT_TIMEOUT))
    elapsed = time.monotonic() - killed
    assert elapsed < DEFAULT_LEASE + 1.0, f"claimed {elapsed:.2f}s after the kill"
    assert elapsed < 5.0
    assert job.token > token
    board.consume(job, "rescuer")


@pytest.mark.slow
def test_a_replacement_with_the_same_name_takes_a_lapsed_claim_and_fences_the_old(boards):
    board = boards.make(lease=SHORT_LEASE)
    job = board.post("j")
    child = boards.child("hold", "conductor-1", job.uuid, lease=SHORT_LEASE)
    token = _read(child)["token"]
    child.send_signal(signal.SIGSTOP)  # paused past its lease: it stops renewing
    try:
        _claim_within(board, job, "conductor-1", SHORT_LEASE + MARGIN)
    finally:
        child.send_signal(signal.SIGCONT)
    assert job.token > token
    # The paused holder wakes up: its claim is gone, even though the name is the same.
    _send(child, "consume")
    assert _read(child) == {"consume": "JobFailure"}
    assert board.find_owner(job) == "conductor-1"
    board.consume(job, "conductor-1")


@pytest.mark.slow
def test_concurrent_claimants_each_get_distinct_jobs(boards):
    board = boards.make()
    jobs = {board.post(f"j{i}").uuid for i in range(12)}
    children = [boards.child("race", f"claimant-{i}") for i in range(3)]
    for child in children:
        assert _read(child) == {"ready": True}
    for child in children:
        _send(child, "go")
    claimed = [_read(child)["claimed"] for child in children]
    everything = [uuid for got in claimed for uuid in got]
    assert sorted(everything) == sorted(jobs)  # every job claimed, none twice
    owners = {j.uuid: board.find_owner(j) for j in board.iterjobs()}
    for i, got in enumerate(claimed):
        assert all(owners[uuid] == f"claimant-{i}" for uuid in got)


# -- bad records ----------------------------------------------------------------------------


def test_malformed_records_are_skipped_with_a_warning(boards, caplog):
    board = boards.make()
    good = board.post("good")
    labels = boards.inject_malformed()
    assert labels
    with caplog.at_level(logging.WARNING, logger="taskflow.jobs"):
        assert [j.uuid for j in board.iterjobs()] == [good.uuid]
        assert board.job_count == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for label in labels:
        assert any(label in message for message in warnings), (label, warnings)
    board.claim(good, "me")
    board.consume(good, "me")
