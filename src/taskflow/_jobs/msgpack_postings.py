"""Postings as msgpack, in the layout upstream TaskFlow's Redis board reads and writes.

One posting is a msgpack map, keys in this order (``book`` only when the job has one)::

    {"uuid": str, "name": str, "priority": "NORMAL", "created_on": <datetime>,
     "details": <any>, "book": {"name": str, "uuid": str}, "sequence": int}

A datetime is msgpack extension type 1 holding a map ``{"day", "month", "year", "hour",
"minute", "second", "microsecond"}`` of naive UTC time (with a ``"tz"`` key naming a zone
when the writer used an aware one; upstream writes naive UTC, and so do we, so both read
each other's records). Other extension types upstream may put in ``details`` are read: 0
(UUID, its 32 hex digits), 4 (set), 5 (frozenset) and 7 (date). Anything else, and
anything malformed, makes the record unreadable: it is skipped with a warning naming it.
Nothing is ever unpickled.

Our ``details`` go through :mod:`taskflow._serialization`'s encoding first, so tuples,
sets and non-string keys round-trip between our boards; plain JSON-like details (the usual
``{"flow_uuid": ..., "store": {...}}``) are written exactly as upstream writes them.

The ``sequence`` is assigned inside the posting script, atomically with the write, so the
encoder produces the map *minus* the value of its last key (:func:`encode_prefix`); the
script appends the packed integer.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid as uuidlib
import zoneinfo
from typing import Any

try:
    import msgpack
except ImportError as _err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "The Redis jobboard needs the msgpack package: pip install taskflow[redis]",
        name="msgpack",
    ) from _err

from taskflow import _serialization
from taskflow._jobs.store import BookRef, Posting
from taskflow.jobs.base import JobPriority

__all__ = ["decode", "decode_datetime", "encode", "encode_datetime", "encode_prefix"]

LOG = logging.getLogger("taskflow.jobs")

_DATETIME, _UUID, _SET, _FROZENSET, _DATE = 1, 0, 4, 5, 7
_PRIORITIES = {p.value: p for p in JobPriority}
_REQUIRED = ("uuid", "name", "priority", "created_on", "details", "sequence")


def _naive_utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def encode_datetime(when: dt.datetime) -> bytes:
    """``when`` as the packed extension value upstream writes (naive UTC)."""
    return msgpack.packb(_datetime_ext(when))  # type: ignore[no-any-return]


def _datetime_ext(when: dt.datetime) -> msgpack.ExtType:
    when = _naive_utc(when)
    fields = {
        "day": when.day,
        "month": when.month,
        "year": when.year,
        "hour": when.hour,
        "minute": when.minute,
        "second": when.second,
        "microsecond": when.microsecond,
    }
    return msgpack.ExtType(_DATETIME, msgpack.packb(fields))


def _datetime_from(fields: Any) -> dt.datetime:
    if not isinstance(fields, dict):
        raise ValueError("a datetime must be a map")
    when = dt.datetime(
        fields["year"],
        fields["month"],
        fields["day"],
        fields["hour"],
        fields["minute"],
        fields["second"],
        fields.get("microsecond", 0),
    )
    zone = fields.get("tz")
    if zone is None or zone == "UTC":
        return when.replace(tzinfo=dt.UTC)
    return when.replace(tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(dt.UTC)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _DATETIME:
        return _datetime_from(_unpack(data))
    if code == _UUID:
        return uuidlib.UUID(hex=data.decode("ascii"))
    if code == _SET:
        return set(_unpack(data))
    if code == _FROZENSET:
        return frozenset(_unpack(data))
    if code == _DATE:
        fields = _unpack(data)
        return dt.date(fields["year"], fields["month"], fields["day"])
    raise ValueError(f"unknown msgpack extension type {code}")


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, ext_hook=_ext_hook)


def decode_datetime(raw: bytes | None) -> dt.datetime | None:
    """A datetime :func:`encode_datetime` (or upstream) wrote, aware; None if unreadable."""
    if raw is None:
        return None
    try:
        value = _unpack(raw)
    except Exception:
        return None
    return value if isinstance(value, dt.datetime) else None


def _fields(posting: Posting) -> list[tuple[str, Any]]:
    try:
        details = _serialization.to_jsonable(posting.details)
        # Packed now so that a value msgpack can not hold (an int over 64 bits) fails here.
        msgpack.packb(details)
    except (OverflowError, ValueError) as err:
        raise TypeError(f"Job details can not be stored on a Redis board: {err}") from err
    fields: list[tuple[str, Any]] = [
        ("uuid", posting.uuid),
        ("name", posting.name),
        ("priority", posting.priority.value),
        ("created_on", _datetime_ext(posting.created_on)),
        ("details", details),
    ]
    if posting.book is not None:
        fields.append(("book", {"name": posting.book.name, "uuid": posting.book.uuid}))
    return fields


def encode_prefix(posting: Posting) -> bytes:
    """The packed posting up to and including the key ``"sequence"`` (its value missing).

    Raises:
        TypeError: ``details`` holds a value that can not be stored, named.
    """
    fields = _fields(posting)
    packer = msgpack.Packer()
    chunks = [packer.pack_map_header(len(fields) + 1)]
    for key, value in fields:
        chunks.append(packer.pack(key))
        chunks.append(packer.pack(value))
    chunks.append(packer.pack("sequence"))
    return b"".join(chunks)


def encode(posting: Posting) -> bytes:
    """The whole packed posting, ``sequence`` included."""
    tail: bytes = msgpack.packb(posting.sequence)
    return encode_prefix(posting) + tail


def _check(document: Any) -> None:
    if not isinstance(document, dict):
        raise ValueError(f"the record is a {type(document).__name__}, not a map")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise ValueError(f"the record lacks {', '.join(missing)}")
    if not isinstance(document["uuid"], str) or not document["uuid"]:
        raise ValueError("'uuid' is not a non-empty string")
    if not isinstance(document["name"], str):
        raise ValueError("'name' is not a string")
    if document["priority"] not in _PRIORITIES:
        raise ValueError(f"'priority' {document['priority']!r} is not a job priority")
    if not isinstance(document["created_on"], dt.datetime):
        raise ValueError("'created_on' is not a datetime")
    sequence = document["sequence"]
    if type(sequence) is not int or sequence < 0:
        raise ValueError(f"'sequence' {sequence!r} is not a non-negative integer")
    book = document.get("book")
    if book is not None and not (
        isinstance(book, dict)
        and isinstance(book.get("name"), str)
        and isinstance(book.get("uuid"), str)
    ):
        raise ValueError("'book' is not a map with a string name and uuid")


def decode(raw: bytes | None, where: str, uuid: str | None = None) -> Posting | None:
    """The posting packed in ``raw``, or None (logged as a warning naming ``where``).

    Args:
        raw: the stored bytes.
        where: names the record in the warning (key, field, board).
        uuid: the job the record is stored under; a posting of another job is malformed.
    """
    try:
        if raw is None:
            raise ValueError("the record is empty")
        document = _unpack(raw)
        _check(document)
        if uuid is not None and document["uuid"] != uuid:
            raise ValueError(f"it holds job {document['uuid']!r}")
        book = document.get("book")
        return Posting(
            uuid=document["uuid"],
            name=document["name"],
            priority=_PRIORITIES[document["priority"]],
            details=_serialization.from_jsonable(document["details"]),
            book=None if book is None else BookRef(book["name"], book["uuid"]),
            created_on=document["created_on"],
            sequence=document["sequence"],
        )
    except Exception as err:  # any malformation: a reader must never crash on one record
        LOG.warning("Skipping malformed job record %s: %s", where, str(err) or type(err).__name__)
        return None
