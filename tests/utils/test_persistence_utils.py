"""temporary_log_book, temporary_flow_detail and create_flow_detail."""

from __future__ import annotations

import logging

import pytest

from taskflow.persistence import models
from taskflow.persistence.backends import impl_memory
from taskflow.utils import persistence_utils as pu


class _Flow:
    """Just what create_flow_detail reads from a flow: its name and its str()."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"linear_flow.Flow: {self.name}(len=0)"


@pytest.fixture
def backend():
    return impl_memory.MemoryBackend()


def _stored_books(backend):
    with backend.get_connection() as conn:
        return list(conn.get_logbooks())


def test_temporary_log_book(backend):
    book = pu.temporary_log_book()
    assert (book.name, len(book)) == ("tmp", 0)
    assert book.uuid != pu.temporary_log_book().uuid
    saved = pu.temporary_log_book(backend)
    assert [b.uuid for b in _stored_books(backend)] == [saved.uuid]


def test_temporary_flow_detail(backend):
    book, fd = pu.temporary_flow_detail()
    assert (book.name, fd.name, fd.meta) == ("tmp", "tmp-flow-detail", {})
    assert list(book) == [fd]
    assert fd.uuid

    book, fd = pu.temporary_flow_detail(backend, meta={"a": 1})
    assert fd.meta == {"a": 1}
    (stored,) = _stored_books(backend)
    assert stored.uuid == book.uuid
    assert [(f.uuid, f.name, f.meta) for f in stored] == [(fd.uuid, "tmp-flow-detail", {"a": 1})]


def test_create_flow_detail_alone():
    fd = pu.create_flow_detail(_Flow("myflow"))
    other = pu.create_flow_detail(_Flow("myflow"), meta={"x": 1})
    assert (fd.name, fd.meta, fd.state) == ("myflow", {}, None)
    assert other.meta == {"x": 1}
    assert other.uuid != fd.uuid


def test_create_flow_detail_adds_to_given_book():
    book = models.LogBook("mine")
    fd = pu.create_flow_detail(_Flow("f"), book=book)
    assert book.find(fd.uuid) is fd


def test_create_flow_detail_saves_book_to_backend(backend):
    book = models.LogBook("mine")
    fd = pu.create_flow_detail(_Flow("f"), book=book, backend=backend)
    (stored,) = _stored_books(backend)
    assert stored.uuid == book.uuid
    assert [f.uuid for f in stored] == [fd.uuid]


def test_create_flow_detail_with_backend_but_no_book_warns(backend, caplog):
    with caplog.at_level(logging.WARNING, logger="taskflow.utils.persistence_utils"):
        fd = pu.create_flow_detail(_Flow("myflow"), backend=backend)
    assert 'No logbook provided for flow "linear_flow.Flow: myflow(len=0)", creating one.' in (
        caplog.messages
    )
    (stored,) = _stored_books(backend)
    assert stored.name == "tmp"
    assert [f.uuid for f in stored] == [fd.uuid]
