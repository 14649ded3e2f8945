"""A board keeps nothing per job that has left the board, whatever it is used for.

A producer's board may post for months without ever listing the board: the jobs it posted
(each with its logbook) must not pile up in it once other boards consume them.
"""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING, Any

from taskflow.jobs import backends
from taskflow.persistence import models

if TYPE_CHECKING:
    from pathlib import Path

    from taskflow.jobs.base import JobBoard


def _post_and_consume_elsewhere(poster: JobBoard, consumer: JobBoard) -> weakref.ref[Any]:
    """Post a job with a book, have ``consumer`` consume it; a weak reference to the book."""
    book = models.LogBook("book")
    job = poster.post("job", book=book)
    for listed in consumer.iterjobs():
        consumer.claim(listed, "consumer")
        consumer.consume(listed, "consumer")
    assert job.wait(timeout=10)
    return weakref.ref(book)


def test_a_board_that_only_posts_keeps_none_of_its_jobs(tmp_path: Path):
    conf = {"board": "sqlite", "connection": f"sqlite:///{tmp_path / 'jobs.db'}"}
    with backends.backend("poster", conf) as poster, backends.backend("consumer", conf) as other:
        books = [_post_and_consume_elsewhere(poster, other) for _ in range(3)]
        gc.collect()
        assert [book() for book in books] == [None, None, None]


def test_a_board_with_listeners_forgets_jobs_consumed_elsewhere(tmp_path: Path):
    conf = {"board": "sqlite", "connection": f"sqlite:///{tmp_path / 'jobs.db'}"}
    with backends.backend("poster", conf) as poster, backends.backend("consumer", conf) as other:
        events: list[str] = []
        poster.notifier.register(poster.notifier.ANY, lambda event, details: events.append(event))
        books = [_post_and_consume_elsewhere(poster, other) for _ in range(3)]
        # The watcher lists the board on each change it sees: the removals come.
        deadline = 100
        while events.count("REMOVAL") < 3 and deadline:
            poster.wait_for_change(0.1)
            deadline -= 1
        gc.collect()
        assert [book() for book in books] == [None, None, None]
        assert events.count("POSTED") == 3
