"""Shortcuts for making log books and flow details, optionally saved to a backend.

They live in the persistence layer, beside the models they make; the engines import them
from here. Users reach them at upstream's path, :mod:`taskflow.utils.persistence_utils`, a
face that only re-exports them and that nothing inside taskflow imports: the helpers in
``taskflow.utils`` that lower layers use never reach up into persistence.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from taskflow.persistence import models

if TYPE_CHECKING:
    from taskflow.flow import Flow
    from taskflow.persistence.base import Backend

__all__ = ["create_flow_detail", "temporary_flow_detail", "temporary_log_book"]

# Upstream's logger name: logging configured for it keeps seeing the missing-book warning.
LOG = logging.getLogger("taskflow.utils.persistence_utils")


def _save(book: models.LogBook, backend: Backend | None) -> None:
    if backend is not None:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)


def temporary_log_book(backend: Backend | None = None) -> models.LogBook:
    """A new, empty log book named ``'tmp'``, saved to ``backend`` if one is given."""
    book = models.LogBook("tmp")
    _save(book, backend)
    return book


def temporary_flow_detail(
    backend: Backend | None = None, meta: dict[str, Any] | None = None
) -> tuple[models.LogBook, models.FlowDetail]:
    """A new ``'tmp'`` book holding one new ``'tmp-flow-detail'``, saved if ``backend``.

    Args:
        backend: where to save them (optional).
        meta: the flow detail's metadata.

    Returns:
        (book, flow detail).
    """
    flow_detail = models.FlowDetail("tmp-flow-detail", str(uuid.uuid4()))
    if meta is not None:
        flow_detail.meta = meta
    book = models.LogBook("tmp")
    book.add(flow_detail)
    _save(book, backend)
    return book, flow_detail


def create_flow_detail(
    flow: Flow,
    book: models.LogBook | None = None,
    backend: Backend | None = None,
    meta: dict[str, Any] | None = None,
) -> models.FlowDetail:
    """A new flow detail named after ``flow`` (with a new uuid), added to ``book``.

    Args:
        flow: the flow the detail is for. Anything else is accepted too (engines check what
            they were given when they compile it, as upstream): a detail for something without
            a string ``name`` is named after its uuid.
        book: the book to add it to; with a backend but no book, a temporary book is made
            (and a warning logged).
        backend: if given, the book is saved to it.
        meta: the flow detail's metadata.
    """
    flow_uuid = str(uuid.uuid4())
    name = getattr(flow, "name", None)
    flow_detail = models.FlowDetail(name if isinstance(name, str) else flow_uuid, flow_uuid)
    if meta is not None:
        flow_detail.meta = meta
    if backend is not None and book is None:
        LOG.warning('No logbook provided for flow "%s", creating one.', flow)
        book = temporary_log_book(backend)
    if book is not None:
        book.add(flow_detail)
        _save(book, backend)
    return flow_detail
