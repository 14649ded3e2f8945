"""Postings as JSON: what stores write, and the check every record passes when read back.

A posting is one JSON object (``details`` in :mod:`taskflow._serialization`'s encoding, so
tuples stay tuples)::

    {"uuid": "...", "name": "...", "priority": "NORMAL", "details": {...},
     "book": {"name": "...", "uuid": "..."} | null, "created_on": "2024-05-01T12:00:00+00:00"}

Records come from storage other processes (and other versions, and people) write to, so a
reader validates each one with a JSON schema and skips what fails with a warning naming the
record: one bad record never stops a conductor. Nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskflow import _serialization
from taskflow._jobs.store import BookRef, Posting
from taskflow.jobs.base import JobPriority

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SCHEMA", "decode", "encode"]

LOG = logging.getLogger("taskflow.jobs")

#: What a stored posting must look like (JSON Schema, draft 2020-12).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uuid", "name", "priority", "details", "created_on"],
    "properties": {
        "uuid": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "priority": {"enum": [p.value for p in JobPriority]},
        "details": {},
        "book": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["name", "uuid"],
                    "properties": {"name": {"type": "string"}, "uuid": {"type": "string"}},
                },
            ]
        },
        "created_on": {"type": "string"},
    },
}


@functools.cache
def _validator() -> Callable[[Any], Any]:
    import jsonschema  # imported on first read: a board that is never read never needs it

    cls = jsonschema.validators.validator_for(SCHEMA)
    cls.check_schema(SCHEMA)
    return cls(SCHEMA).validate  # type: ignore[no-any-return]


def encode(posting: Posting) -> str:
    """``posting`` as JSON text (without its sequence, which the store keeps).

    Raises:
        TypeError: ``details`` holds a value JSON cannot (bytes, objects...), named.
    """
    book = None if posting.book is None else {"name": posting.book.name, "uuid": posting.book.uuid}
    return _serialization.dumps(
        {
            "uuid": posting.uuid,
            "name": posting.name,
            "priority": posting.priority.value,
            "details": posting.details,
            "book": book,
            "created_on": posting.created_on.isoformat(),
        }
    )


def decode(raw: str | bytes | None, where: str, sequence: int) -> Posting | None:
    """The posting stored as ``raw``, or None (logged as a warning naming ``where``)."""
    try:
        if raw is None:
            raise ValueError("the record is empty")
        document = json.loads(raw)
        _validator()(document)
        created_on = datetime.fromisoformat(document["created_on"])
        if created_on.tzinfo is None:
            created_on = created_on.replace(tzinfo=UTC)
        book = document.get("book")
        return Posting(
            uuid=document["uuid"],
            name=document["name"],
            priority=JobPriority(document["priority"]),
            details=_serialization.from_jsonable(document["details"]),
            book=None if book is None else BookRef(book["name"], book["uuid"]),
            created_on=created_on,
            sequence=sequence,
        )
    except Exception as err:  # any malformation: a reader must never crash on one record
        reason = getattr(err, "message", None) or str(err) or type(err).__name__
        LOG.warning("Skipping malformed job record %s: %s", where, reason)
        return None
