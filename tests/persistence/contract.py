"""The persistence backend contract, as tests any backend must pass.

Every ``test_*`` function here takes a ``connection`` fixture (an upgraded, empty
connection) and, where isolation matters, an ``isolated`` fixture: True when the backend
hands out copies (every backend but the memory one with ``deep_copy=False``).
``test_contract.py`` imports these functions and parametrizes the fixtures per backend;
a new backend only adds a fixture parameter there.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.persistence import models
from taskflow.types.failure import Failure


def _uuid() -> str:
    return str(uuid.uuid4())


def _failure(message: str = "boom") -> Failure:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        return Failure()


def _book_with(flows: int = 1, atoms: int = 2) -> models.LogBook:
    book = models.LogBook("book-" + _uuid()[:8])
    book.meta = {"owner": "tests", "tags": ["a", "b"]}
    for f in range(flows):
        fd = models.FlowDetail(f"flow-{f}", _uuid())
        fd.state = states.PENDING
        fd.meta = {"index": f}
        for a in range(atoms):
            cls = models.RetryDetail if a % 2 else models.TaskDetail
            ad = cls(f"atom-{f}-{a}", _uuid())
            ad.state = states.PENDING
            ad.version = "1.0"
            fd.add(ad)
        book.add(fd)
    return book


def _assert_atoms_equal(got: models.AtomDetail, want: models.AtomDetail) -> None:
    assert type(got) is type(want)
    assert (got.uuid, got.name, got.state, got.intention, got.version) == (
        want.uuid,
        want.name,
        want.state,
        want.intention,
        want.version,
    )
    assert got.meta == want.meta
    assert got.results == want.results
    assert got.revert_results == want.revert_results
    for field in ("failure", "revert_failure"):
        got_f, want_f = getattr(got, field), getattr(want, field)
        if want_f is None:
            assert got_f is None
        else:
            assert isinstance(got_f, Failure)
            assert got_f.matches(want_f)


def _assert_flows_equal(got: models.FlowDetail, want: models.FlowDetail) -> None:
    assert (got.uuid, got.name, got.state, got.meta) == (
        want.uuid,
        want.name,
        want.state,
        want.meta,
    )
    assert [ad.uuid for ad in got] == [ad.uuid for ad in want]
    for ad in want:
        found = got.find(ad.uuid)
        assert found is not None
        _assert_atoms_equal(found, ad)


def _assert_books_equal(got: models.LogBook, want: models.LogBook) -> None:
    assert (got.uuid, got.name, got.meta) == (want.uuid, want.name, want.meta)
    assert got.created_at is not None
    assert want.created_at is not None
    assert got.created_at.astimezone(UTC) == want.created_at.astimezone(UTC)
    assert sorted(fd.uuid for fd in got) == sorted(fd.uuid for fd in want)
    for fd in want:
        found = got.find(fd.uuid)
        assert found is not None
        _assert_flows_equal(found, fd)


# -- connection basics ------------------------------------------------------------------------


def test_connection_knows_its_backend_and_closes(connection):
    assert connection.backend.get_connection().backend is connection.backend
    connection.validate()
    connection.upgrade()  # idempotent
    with connection.backend.get_connection() as other:
        assert list(other.get_logbooks()) == []
    connection.close()
    connection.close()  # idempotent


def test_empty_store_lists_nothing(connection):
    assert list(connection.get_logbooks()) == []
    assert list(connection.get_logbooks(lazy=True)) == []


# -- books ------------------------------------------------------------------------------------


def test_saved_logbook_reads_back_whole(connection):
    book = _book_with(flows=2, atoms=3)
    connection.save_logbook(book)
    _assert_books_equal(connection.get_logbook(book.uuid), book)


def test_save_logbook_returns_the_stored_book(connection):
    book = _book_with()
    saved = connection.save_logbook(book)
    _assert_books_equal(saved, book)


def test_lazy_logbook_has_no_flows(connection):
    book = _book_with(flows=2)
    connection.save_logbook(book)
    lazy = connection.get_logbook(book.uuid, lazy=True)
    assert (lazy.uuid, lazy.name, lazy.meta) == (book.uuid, book.name, book.meta)
    assert len(lazy) == 0
    assert all(len(b) == 0 for b in connection.get_logbooks(lazy=True))


def test_get_logbooks_lists_every_book(connection):
    books = [_book_with(flows=1), _book_with(flows=2), models.LogBook("empty")]
    for book in books:
        connection.save_logbook(book)
    found = {b.uuid: b for b in connection.get_logbooks()}
    assert set(found) == {b.uuid for b in books}
    for book in books:
        _assert_books_equal(found[book.uuid], book)


def test_saving_a_book_again_merges_it(connection):
    book = _book_with(flows=1)
    connection.save_logbook(book)
    first_flow = next(iter(book))

    again = models.LogBook(book.name, book.uuid)
    again.meta = {"owner": "someone else"}
    again.created_at = book.created_at
    extra = models.FlowDetail("extra", _uuid())
    extra.add(models.TaskDetail("extra-task", _uuid()))
    again.add(extra)
    connection.save_logbook(again)

    stored = connection.get_logbook(book.uuid)
    assert stored.meta == {"owner": "someone else"}
    # Flows not in the second save are kept, new ones added.
    assert {fd.uuid for fd in stored} == {first_flow.uuid, extra.uuid}
    _assert_flows_equal(stored.find(extra.uuid), extra)
    _assert_flows_equal(stored.find(first_flow.uuid), first_flow)


def test_saving_a_book_again_updates_its_atoms(connection):
    book = _book_with(flows=1, atoms=1)
    connection.save_logbook(book)
    fd = next(iter(book))
    ad = next(iter(fd))
    fd.state = states.RUNNING
    ad.put(states.SUCCESS, {"answer": 42})
    fd.add(models.TaskDetail("late", _uuid()))
    connection.save_logbook(book)
    _assert_flows_equal(connection.get_flow_details(fd.uuid), fd)


def test_destroy_logbook_removes_its_flows_and_atoms(connection):
    book = _book_with(flows=2, atoms=2)
    keep = _book_with(flows=1, atoms=1)
    connection.save_logbook(book)
    connection.save_logbook(keep)
    connection.destroy_logbook(book.uuid)
    with pytest.raises(exc.NotFound):
        connection.get_logbook(book.uuid)
    for fd in book:
        with pytest.raises(exc.NotFound):
            connection.get_flow_details(fd.uuid)
        for ad in fd:
            with pytest.raises(exc.NotFound):
                connection.get_atom_details(ad.uuid)
    assert [b.uuid for b in connection.get_logbooks()] == [keep.uuid]
    _assert_books_equal(connection.get_logbook(keep.uuid), keep)


def test_unknown_book_is_not_found(connection):
    missing = _uuid()
    with pytest.raises(exc.NotFound):
        connection.get_logbook(missing)
    with pytest.raises(exc.NotFound):
        connection.destroy_logbook(missing)
    with pytest.raises(exc.NotFound):
        list(connection.get_flows_for_book(missing))


def test_clear_all_empties_and_stays_usable(connection):
    book = _book_with()
    connection.save_logbook(book)
    connection.clear_all()
    assert list(connection.get_logbooks()) == []
    with pytest.raises(exc.NotFound):
        connection.get_flow_details(next(iter(book)).uuid)
    connection.save_logbook(book)
    _assert_books_equal(connection.get_logbook(book.uuid), book)


# -- flows ------------------------------------------------------------------------------------


def test_flows_for_book(connection):
    book = _book_with(flows=3, atoms=2)
    connection.save_logbook(book)
    flows = {fd.uuid: fd for fd in connection.get_flows_for_book(book.uuid)}
    assert set(flows) == {fd.uuid for fd in book}
    for fd in book:
        _assert_flows_equal(flows[fd.uuid], fd)
    lazy = list(connection.get_flows_for_book(book.uuid, lazy=True))
    assert {fd.uuid for fd in lazy} == set(flows)
    assert all(len(fd) == 0 for fd in lazy)


def test_flow_details_lazy_and_full(connection):
    book = _book_with(flows=1, atoms=3)
    connection.save_logbook(book)
    fd = next(iter(book))
    _assert_flows_equal(connection.get_flow_details(fd.uuid), fd)
    lazy = connection.get_flow_details(fd.uuid, lazy=True)
    assert (lazy.uuid, lazy.name, lazy.state, lazy.meta) == (fd.uuid, fd.name, fd.state, fd.meta)
    assert len(lazy) == 0


def test_update_flow_details_merges_fields_and_adds_atoms(connection):
    book = _book_with(flows=1, atoms=1)
    connection.save_logbook(book)
    fd = next(iter(book))
    old_atom = next(iter(fd))

    change = models.FlowDetail(fd.name, fd.uuid)
    change.state = states.RUNNING
    change.meta = {"store": {"x": 1}}
    new_atom = models.TaskDetail("new", _uuid())
    new_atom.state = states.PENDING
    change.add(new_atom)
    returned = connection.update_flow_details(change)

    assert returned.uuid == fd.uuid
    assert returned.state == states.RUNNING
    stored = connection.get_flow_details(fd.uuid)
    assert stored.state == states.RUNNING
    assert stored.meta == {"store": {"x": 1}}
    # Atoms already stored but absent from the update are kept.
    assert {ad.uuid for ad in stored} == {old_atom.uuid, new_atom.uuid}
    _assert_atoms_equal(connection.get_atom_details(new_atom.uuid), new_atom)
    assert [ad.uuid for ad in connection.get_flows_for_book(book.uuid)] == [fd.uuid]


def test_update_unknown_flow_is_not_found(connection):
    with pytest.raises(exc.NotFound):
        connection.update_flow_details(models.FlowDetail("ghost", _uuid()))
    with pytest.raises(exc.NotFound):
        connection.get_flow_details(_uuid())
    with pytest.raises(exc.NotFound):
        list(connection.get_atoms_for_flow(_uuid()))


# -- atoms ------------------------------------------------------------------------------------


def test_atoms_for_flow(connection):
    book = _book_with(flows=1, atoms=4)
    connection.save_logbook(book)
    fd = next(iter(book))
    atoms = {ad.uuid: ad for ad in connection.get_atoms_for_flow(fd.uuid)}
    assert set(atoms) == {ad.uuid for ad in fd}
    for ad in fd:
        _assert_atoms_equal(atoms[ad.uuid], ad)


def test_update_atom_details_persists_every_field(connection):
    book = _book_with(flows=1, atoms=1)
    connection.save_logbook(book)
    ad = next(iter(next(iter(book))))
    assert isinstance(ad, models.TaskDetail)

    ad.state = states.RUNNING
    connection.update_atom_details(ad)
    assert connection.get_atom_details(ad.uuid).state == states.RUNNING

    ad.put(states.FAILURE, _failure("execute broke"))
    ad.intention = states.REVERT
    ad.meta = {"progress": 0.5, "progress_details": None}
    connection.update_atom_details(ad)
    _assert_atoms_equal(connection.get_atom_details(ad.uuid), ad)

    ad.put(states.REVERT_FAILURE, _failure("revert broke"))
    returned = connection.update_atom_details(ad)
    _assert_atoms_equal(returned, ad)
    _assert_atoms_equal(connection.get_atom_details(ad.uuid), ad)


def test_update_atom_details_keeps_the_detail_type(connection):
    book = _book_with(flows=1, atoms=2)
    connection.save_logbook(book)
    for ad in next(iter(book)):
        ad.state = states.SUCCESS
        connection.update_atom_details(ad)
        assert type(connection.get_atom_details(ad.uuid)) is type(ad)


def test_update_unknown_atom_is_not_found(connection):
    with pytest.raises(exc.NotFound):
        connection.update_atom_details(models.TaskDetail("ghost", _uuid()))
    with pytest.raises(exc.NotFound):
        connection.get_atom_details(_uuid())


def test_results_keep_their_types(connection):
    book = _book_with(flows=1, atoms=1)
    connection.save_logbook(book)
    ad = next(iter(next(iter(book))))
    value = {"pair": (1, "two"), "nested": [(3, (4,))], "set": {5, 6}, 7: "int key"}
    ad.put(states.SUCCESS, value)
    ad.meta = {"injected": {"t": (1, 2)}}
    connection.update_atom_details(ad)
    stored = connection.get_atom_details(ad.uuid)
    assert stored.results == value
    assert type(stored.results["pair"]) is tuple
    assert type(stored.results["nested"][0][1]) is tuple
    assert type(stored.meta["injected"]["t"]) is tuple


def test_retry_history_round_trips_unchanged(connection):
    book = _book_with(flows=1, atoms=2)
    connection.save_logbook(book)
    retry = next(ad for ad in next(iter(book)) if isinstance(ad, models.RetryDetail))
    first, second = _failure("first"), _failure("second")
    retry.put(states.SUCCESS, 1)
    retry.results[-1][1]["task-a"] = first
    retry.put(states.SUCCESS, (2, "b"))
    retry.results[-1][1]["task-a"] = second
    retry.results[-1][1]["task-b"] = first
    retry.put(states.SUCCESS, None)
    connection.update_atom_details(retry)

    stored = connection.get_atom_details(retry.uuid)
    assert isinstance(stored, models.RetryDetail)
    assert [value for value, _ in stored.results] == [1, (2, "b"), None]
    assert [sorted(fails) for _, fails in stored.results] == [["task-a"], ["task-a", "task-b"], []]
    assert stored.results[0][1]["task-a"].matches(first)
    assert stored.results[1][1]["task-a"].matches(second)
    assert stored.results[1][1]["task-b"].matches(first)
    assert stored.last_results is None
    assert stored.last_failures == {}


# -- isolation and concurrency ----------------------------------------------------------------


def test_reads_are_isolated_from_the_store(connection, isolated):
    if not isolated:
        pytest.skip("this backend shares objects with its callers by design")
    book = _book_with(flows=1, atoms=1)
    connection.save_logbook(book)
    fd = next(iter(book))
    ad = next(iter(fd))
    ad.put(states.SUCCESS, {"list": [1]})
    connection.update_atom_details(ad)

    # Mutating what was saved or read must not change what is stored.
    ad.results["list"].append("caller")
    book.meta["owner"] = "caller"
    read = connection.get_atom_details(ad.uuid)
    read.results["list"].append("reader")
    read.meta["x"] = 1
    stored = connection.get_atom_details(ad.uuid)
    assert stored.results == {"list": [1]}
    assert stored.meta == {}
    assert connection.get_logbook(book.uuid).meta == {"owner": "tests", "tags": ["a", "b"]}


def test_concurrent_atom_updates_all_land(connection):
    book = _book_with(flows=1, atoms=0)
    fd = next(iter(book))
    atoms = [models.TaskDetail(f"t{i}", _uuid()) for i in range(16)]
    for ad in atoms:
        fd.add(ad)
    connection.save_logbook(book)
    errors: list[BaseException] = []

    def run(ad: models.AtomDetail) -> None:
        try:
            with connection.backend.get_connection() as conn:
                for step in range(20):
                    ad.put(states.SUCCESS, step)
                    conn.update_atom_details(ad)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(ad,)) for ad in atoms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {ad.uuid: ad.results for ad in connection.get_atoms_for_flow(fd.uuid)} == {
        ad.uuid: 19 for ad in atoms
    }


def test_update_flow_record_changes_the_flow_not_its_atoms(connection):
    book = _book_with(flows=1, atoms=2)
    connection.save_logbook(book)
    fd = next(iter(book))
    atoms = list(fd)
    fd.state = "RUNNING"
    fd.meta["answer"] = 42
    connection.update_flow_record(fd)
    got = connection.get_flow_details(fd.uuid)
    assert got.state == "RUNNING"
    assert got.meta["answer"] == 42
    assert [ad.uuid for ad in got] == [ad.uuid for ad in atoms]


def test_update_flow_record_of_unknown_flow_is_not_found(connection):
    with pytest.raises(exc.NotFound):
        connection.update_flow_record(models.FlowDetail("ghost", _uuid()))


# -- ownership: one owner per running flow, fenced ------------------------------------------


def _saved_flow(connection) -> tuple[models.LogBook, models.FlowDetail]:
    book = _book_with(flows=1, atoms=2)
    connection.save_logbook(book)
    return book, next(iter(book))


def _dead_pid() -> int:
    """A pid no process has: one of our own children, waited for."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_claim_records_its_owner_and_a_first_token(connection):
    import os
    import socket

    _book, fd = _saved_flow(connection)
    assert connection.read_ownership(fd.uuid) is None
    mine = connection.claim_flow(fd.uuid, lease=30)
    assert mine.token == 1
    assert (mine.host, mine.pid) == (socket.gethostname(), os.getpid())
    stored = connection.read_ownership(fd.uuid)
    assert stored == mine
    assert stored.held


def test_a_second_claim_is_refused_naming_the_owner(connection, other_connection):
    _book, fd = _saved_flow(connection)
    mine = connection.claim_flow(fd.uuid, lease=30)
    with pytest.raises(exc.FlowOwned) as caught:
        other_connection.claim_flow(fd.uuid, lease=30)
    assert mine.owner in str(caught.value)
    assert connection.read_ownership(fd.uuid) == mine


def test_after_a_release_the_next_owner_gets_a_larger_token(connection, other_connection):
    _book, fd = _saved_flow(connection)
    first = connection.claim_flow(fd.uuid, lease=30)
    connection.release_flow(fd.uuid, first.token)
    released = connection.read_ownership(fd.uuid)
    assert released is not None
    assert not released.held
    assert released.token == first.token
    second = other_connection.claim_flow(fd.uuid, lease=30)
    assert second.token == first.token + 1


def test_a_lapsed_lease_is_taken_over_and_the_old_owner_is_fenced(connection, other_connection):
    import time

    _book, fd = _saved_flow(connection)
    old = connection.claim_flow(fd.uuid, lease=0.2)
    time.sleep(0.3)
    new = other_connection.claim_flow(fd.uuid, lease=30)
    assert new.token > old.token
    before = other_connection.get_flow_details(fd.uuid)
    ad = next(iter(fd))
    ad.state = states.RUNNING
    with pytest.raises(exc.OwnershipLost, match=new.owner):
        connection.update_atom_details(ad)
    fd.state = states.RUNNING
    with pytest.raises(exc.OwnershipLost):
        connection.update_flow_record(fd)
    with pytest.raises(exc.OwnershipLost):
        connection.update_flow_details(fd)
    with pytest.raises(exc.OwnershipLost):
        connection.renew_flow(fd.uuid, old.token, lease=30)
    after = other_connection.get_flow_details(fd.uuid)
    assert after.state == before.state
    assert [a.state for a in after] == [a.state for a in before]
    # Releasing a lost ownership changes nothing.
    connection.release_flow(fd.uuid, old.token)
    assert connection.read_ownership(fd.uuid) == new


def test_a_larger_fencing_token_takes_a_live_flow_and_fences_its_owner(
    connection, other_connection
):
    # A conductor paused past its job's lease still holds the flow (its lease here is long);
    # the job's next holder, with the next job token, takes the flow at once.
    _book, fd = _saved_flow(connection)
    old = connection.claim_flow(fd.uuid, lease=30, fencing_token=1, fencing_key="job-a")
    assert (old.fence_key, old.fence_token) == ("job-a", 1)
    new = other_connection.claim_flow(fd.uuid, lease=30, fencing_token=2, fencing_key="job-a")
    assert new.token > old.token
    assert (new.fence_key, new.fence_token) == ("job-a", 2)
    ad = next(iter(fd))
    ad.state = states.RUNNING
    with pytest.raises(exc.OwnershipLost):
        connection.update_atom_details(ad)
    with pytest.raises(exc.OwnershipLost):
        connection.renew_flow(fd.uuid, old.token, lease=30)
    assert connection.read_ownership(fd.uuid) == new


def test_a_stale_fencing_token_is_refused_even_once_the_flow_is_released(
    connection, other_connection
):
    # A holder paused before it even claimed the flow wakes up after the job's next holder
    # ran the flow to its end: it must not run it again.
    _book, fd = _saved_flow(connection)
    newer = other_connection.claim_flow(fd.uuid, lease=30, fencing_token=2, fencing_key="job-a")
    other_connection.release_flow(fd.uuid, newer.token)
    released = connection.read_ownership(fd.uuid)
    assert released is not None
    assert not released.held
    assert (released.fence_key, released.fence_token) == ("job-a", 2)  # kept by the release
    with pytest.raises(exc.FlowOwned, match="stale"):
        connection.claim_flow(fd.uuid, lease=30, fencing_token=1, fencing_key="job-a")
    assert connection.read_ownership(fd.uuid) == released
    # The same token claims again (the holder's own next run), and so does another job.
    again = other_connection.claim_flow(fd.uuid, lease=30, fencing_token=2, fencing_key="job-a")
    other_connection.release_flow(fd.uuid, again.token)
    other = connection.claim_flow(fd.uuid, lease=30, fencing_token=1, fencing_key="job-b")
    assert other.token > again.token
    assert (other.fence_key, other.fence_token) == ("job-b", 1)


def test_an_equal_or_smaller_fencing_token_does_not_take_a_live_flow(connection, other_connection):
    _book, fd = _saved_flow(connection)
    mine = connection.claim_flow(fd.uuid, lease=30, fencing_token=3, fencing_key="job-a")
    for stale in (3, 2):
        with pytest.raises(exc.FlowOwned):
            other_connection.claim_flow(fd.uuid, lease=30, fencing_token=stale, fencing_key="job-a")
    # Neither a claim for another job, nor one without any token, takes a live flow.
    with pytest.raises(exc.FlowOwned):
        other_connection.claim_flow(fd.uuid, lease=30, fencing_token=9, fencing_key="job-b")
    with pytest.raises(exc.FlowOwned):
        other_connection.claim_flow(fd.uuid, lease=30)
    assert connection.read_ownership(fd.uuid) == mine
    # A plain claim once it is released keeps what the flow was last claimed for.
    connection.release_flow(fd.uuid, mine.token)
    plain = other_connection.claim_flow(fd.uuid, lease=30)
    assert plain.token == mine.token + 1
    assert (plain.fence_key, plain.fence_token) == ("job-a", 3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True])
def test_a_bad_fencing_token_is_refused_before_anything_is_written(connection, bad):
    _book, fd = _saved_flow(connection)
    with pytest.raises(ValueError, match="fencing token"):
        connection.claim_flow(fd.uuid, lease=30, fencing_token=bad)
    assert connection.read_ownership(fd.uuid) is None


def test_a_large_fencing_token_is_recorded_whole(connection):
    # etcd's claim tokens are cluster revisions: they may pass 2**31 on a busy cluster.
    _book, fd = _saved_flow(connection)
    mine = connection.claim_flow(fd.uuid, lease=30, fencing_token=2**40, fencing_key="j")
    assert connection.read_ownership(fd.uuid).fence_token == 2**40
    assert mine.token == 1


def test_renewing_keeps_the_flow(connection, other_connection):
    import time

    _book, fd = _saved_flow(connection)
    mine = connection.claim_flow(fd.uuid, lease=0.3)
    renewed = connection.renew_flow(fd.uuid, mine.token, lease=30)
    assert renewed.token == mine.token
    assert renewed.expires > mine.expires
    time.sleep(0.4)  # past the first lease, within the renewed one
    with pytest.raises(exc.FlowOwned):
        other_connection.claim_flow(fd.uuid, lease=30)


def test_an_owner_on_this_host_whose_process_is_gone_is_taken_over_at_once(connection):
    import socket
    import time

    from taskflow.persistence import base

    _book, fd = _saved_flow(connection)
    dead = base.Ownership(
        f"{socket.gethostname()}:gone", socket.gethostname(), _dead_pid(), 7, time.time() + 3600
    )
    assert connection.swap_ownership(fd.uuid, None, dead)
    mine = connection.claim_flow(fd.uuid, lease=30)
    assert mine.token == 8
    # ...but not an owner on another host, whose lease still runs.
    elsewhere = base.Ownership("far:1", "another-host", 1, 20, time.time() + 3600)
    assert connection.swap_ownership(fd.uuid, mine.token, elsewhere)
    with pytest.raises(exc.FlowOwned, match="another-host"):
        connection.claim_flow(fd.uuid, lease=30)


def test_of_many_concurrent_claims_exactly_one_wins(connection, other_connection):
    _book, fd = _saved_flow(connection)
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        with other_connection.backend.get_connection() as conn:
            barrier.wait(10)
            try:
                outcomes.append(conn.claim_flow(fd.uuid, lease=30))
            except exc.FlowOwned as err:
                outcomes.append(err)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(outcomes) == 6
    assert len(winners) == 1
    assert connection.read_ownership(fd.uuid) == winners[0]


def test_a_connection_that_never_claimed_writes_unfenced(connection, other_connection):
    _book, fd = _saved_flow(connection)
    other_connection.claim_flow(fd.uuid, lease=30)
    ad = next(iter(fd))
    ad.state = states.SUCCESS
    connection.update_atom_details(ad)  # an operator's tool, say: not an engine
    assert connection.get_atom_details(ad.uuid).state == states.SUCCESS


__all__ = sorted(name for name in globals() if name.startswith("test_"))
