"""``taskflow.jobs.base`` and ``taskflow.jobs.backends`` on their own (no board store)."""

from __future__ import annotations

import logging

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.jobs import backends, base
from taskflow.persistence import models

P = base.JobPriority


def test_priorities_are_upstreams():
    assert [p.value for p in P] == ["VERY_HIGH", "HIGH", "NORMAL", "LOW", "VERY_LOW"]
    assert [p.rank for p in P] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("value", "want"), [("HIGH", P.HIGH), ("low", P.LOW), (P.NORMAL, P.NORMAL)]
)
def test_convert(value, want):
    assert P.convert(value) is want


@pytest.mark.parametrize("value", ["urgent", 3, None])
def test_convert_refuses_what_is_not_a_priority(value):
    with pytest.raises(ValueError, match=f"'{value}' is not a valid priority, valid priorities"):
        P.convert(value)


def test_reorder_sorts_values_by_priority_stably():
    pairs = [(P.LOW, "a"), ("VERY_HIGH", "b"), (P.NORMAL, "c"), (P.LOW, "d")]
    assert P.reorder(*pairs) == ("b", "c", "a", "d")
    assert P.reorder((P.LOW, "only")) == "only"  # upstream gives the value, not a 1-tuple
    with pytest.raises(ValueError, match="At least one"):
        P.reorder()


class _Job(base.Job):
    state = states.UNCLAIMED
    priority = P.NORMAL
    created_on = None
    last_modified = None


class _Board(base.JobBoard):
    """The abstract board with every abstract member stubbed (for the concrete helpers)."""

    iterjobs = wait = find_owner = post = claim = consume = abandon = trash = None  # type: ignore[assignment]
    register_entity = connect = close = None  # type: ignore[assignment]
    job_count = 0
    connected = True


def test_check_who():
    @base.check_who
    def claim(self, job, who):
        return who

    assert claim(None, None, "me") == "me"
    with pytest.raises(TypeError, match="Job applicant must be a string type"):
        claim(None, None, None)
    with pytest.raises(ValueError, match="Job applicant must be non-empty"):
        claim(None, None, "")


def test_format_posting():
    book = models.LogBook("b")
    posting = base.format_posting("u", "n", details={"x": 1}, book=book, priority=P.HIGH)
    assert posting == {
        "uuid": "u",
        "name": "n",
        "priority": "HIGH",
        "details": {"x": 1},
        "book": {"name": "b", "uuid": book.uuid},
    }


def test_job_defaults_and_book_data():
    board = _Board("b", {})
    job = _Job(board, "n")
    assert job.uuid
    assert job.details == {}
    assert job.book is None
    assert (job.book_uuid, job.book_name) == (None, None)
    job = _Job(board, "n", book_data={"name": "bk", "uuid": "bu"})
    assert (job.book_uuid, job.book_name) == ("bu", "bk")
    assert job.book is None  # no persistence backend to load it from
    assert str(job).startswith("_Job: n (priority=JobPriority.NORMAL, uuid=")
    assert job.wait(timeout=0.01, delay=0.001) is False


def test_iterator_filters_with_live_states_and_reports_removed_jobs():
    board = _Board("b", {})
    done, claimed, free = _Job(board, "done"), _Job(board, "claimed"), _Job(board, "free")
    done.state, claimed.state = states.COMPLETE, states.CLAIMED  # type: ignore[misc]
    removed = []
    it = base.JobBoardIterator(
        board,
        logging.getLogger(__name__),
        board_fetch_func=lambda fresh: [done, claimed, free],
        board_removal_func=removed.append,
        only_unclaimed=True,
    )
    assert list(it) == [free]
    assert removed == [done]
    assert list(base.JobBoardIterator(board, logging.getLogger(__name__))) == []


def test_base_board_defaults():
    board = _Board("b", {"k": 1})
    assert board.name == "b"
    assert board.wait_for_change(0.0) is True
    with pytest.raises(exc.NotImplementedError):
        list(board.iter_trash())


def test_fetch_errors_are_upstreams():
    with pytest.raises(KeyError, match="board"):
        backends.fetch("n", {})
    with pytest.raises(exc.NotFound, match="Could not find jobboard nope"):
        backends.fetch("n", {"board": "nope"})
    with pytest.raises(exc.NotFound, match="Could not find jobboard nope"):
        backends.fetch("n", "nope://host/x")
