"""The tables as the backend reads and writes them, and the codecs between rows and models.

The schema itself (column types per database, indexes, constraint names) is owned by the
migration scripts; these definitions only name what statements touch. JSON columns are
bound as JSON text we encoded ourselves (:mod:`taskflow._serialization`), before any
statement runs, so a value the database can not store (one JSON can not hold, or one over
the dialect's limits) raises ``UnstorableValue`` with nothing written.

Atom rows hold upstream TaskFlow's layout: a retry's history is stored as
``[[value, {atom name: failure dict}], ...]`` and failures as ``Failure.to_dict()``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from taskflow import states
from taskflow._serialization import Limits, UnstorableValue, dumps, dumps_checked
from taskflow.persistence import models

if TYPE_CHECKING:
    from collections.abc import Mapping

    from taskflow.persistence.backends._sqlalchemy.dialects import Dialect
    from taskflow.types.failure import Failure

__all__ = [
    "ATOM_JSON",
    "ATOM_VALUES",
    "FLOW_VALUES",
    "JSON_COLUMNS",
    "atom_from_row",
    "atom_values",
    "atomdetails",
    "book_from_row",
    "book_values",
    "flow_from_row",
    "flow_values",
    "flowdetails",
    "logbooks",
    "metadata",
    "owners",
]

metadata = sa.MetaData()

#: Who owns each running flow (see ``Connection.claim_flow``). Not part of the migrated
#: schema, which stays upstream TaskFlow's so that upstream engines share the database:
#: created on first use, beside it (upstream ignores it).
owners_metadata = sa.MetaData()
owners = sa.Table(
    "taskflow_owners",
    owners_metadata,
    sa.Column("flow_uuid", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(255)),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("expires", sa.Float(precision=53)),
    # The claim made elsewhere that this one was made for (base.Ownership.fence_key/token).
    sa.Column("fence_key", sa.String(255)),
    sa.Column("fence_token", sa.BigInteger),
)

_INTENTIONS = (states.EXECUTE, states.IGNORE, states.REVERT, states.RETRY)

logbooks = sa.Table(
    "logbooks",
    metadata,
    sa.Column("uuid", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255)),
    sa.Column("meta", sa.Text),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)

flowdetails = sa.Table(
    "flowdetails",
    metadata,
    sa.Column("uuid", sa.String(64), primary_key=True),
    sa.Column("parent_uuid", sa.String(64)),
    sa.Column("name", sa.String(255)),
    sa.Column("state", sa.String(255)),
    sa.Column("meta", sa.Text),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)

atomdetails = sa.Table(
    "atomdetails",
    metadata,
    sa.Column("uuid", sa.String(64), primary_key=True),
    sa.Column("parent_uuid", sa.String(64)),
    sa.Column("name", sa.String(255)),
    sa.Column("version", sa.String(64)),
    sa.Column("state", sa.String(255)),
    # Native enum types on PostgreSQL (named as upstream named them): binds are cast to them.
    sa.Column("atom_type", sa.Enum(*models.ATOM_TYPES, name="atom_types")),
    sa.Column("intention", sa.Enum(*_INTENTIONS, name="intention_type")),
    sa.Column("results", sa.Text),
    sa.Column("failure", sa.Text),
    sa.Column("revert_results", sa.Text),
    sa.Column("revert_failure", sa.Text),
    sa.Column("meta", sa.Text),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)

#: JSON columns of an atom row.
ATOM_JSON = ("results", "failure", "revert_results", "revert_failure", "meta")
#: Columns an update of an atom row writes, bound as ``p_<column>`` (a merge keeps the name).
ATOM_VALUES = ("version", "state", "intention", *ATOM_JSON, "updated_at")
#: Columns an update of a flow row writes (a merge keeps the name).
FLOW_VALUES = ("state", "meta", "updated_at")
#: The JSON columns of every table, as ``Dialect.json_limits`` keys them.
JSON_COLUMNS = (
    *(f"atomdetails.{column}" for column in ATOM_JSON),
    "flowdetails.meta",
    "logbooks.meta",
)

_UNLIMITED = Limits()


def _json(value: Any, limits: Limits, name: str) -> str | None:
    """``value`` as JSON text (checked against ``limits``), or None for SQL NULL.

    Raises:
        UnstorableValue: the value can not be stored (the message starts with ``name``).
    """
    # None is stored as SQL NULL, as upstream TaskFlow does.
    return None if value is None else dumps_checked(value, limits, name)


def _failure_data(failure: Failure) -> dict[str, Any]:
    data = failure.to_dict()
    try:
        dumps_checked(data["exc_args"], _UNLIMITED)
    except UnstorableValue:
        # Exception arguments are a courtesy; the failure itself must always be storable.
        data = failure.to_dict(include_args=False)
    return data


def _failure_json(failure: Failure | None) -> str | None:
    return None if failure is None else dumps(_failure_data(failure))


def _naive_utc(when: datetime | None) -> datetime | None:
    if when is None or when.tzinfo is None:
        return when
    return when.astimezone(UTC).replace(tzinfo=None)


def _aware_utc(when: datetime | None) -> datetime | None:
    # Upstream TaskFlow and this backend both store naive UTC.
    return None if when is None else when.replace(tzinfo=UTC)


def _version(version: Any) -> str | None:
    if version is None or isinstance(version, str):
        return version
    if isinstance(version, tuple):
        return ".".join(str(part) for part in version)
    return str(version)


def atom_values(
    ad: models.AtomDetail, now: Any, limits: Mapping[str, Limits], null: str | None = None
) -> dict[str, Any]:
    """The ``p_<column>`` parameters of ``ATOM_VALUES`` plus ``p_name``, JSON encoded.

    Args:
        ad: the atom detail.
        now: its ``updated_at``, as the driver takes it.
        limits: what each JSON column holds (``Dialect.json_limits``).
        null: what stands for SQL NULL in a JSON column (``Dialect.json_null``).

    Raises:
        UnstorableValue: a result, revert result or meta value the database can not store
            (the message names the atom and the value).
    """
    results = ad.results
    if isinstance(ad, models.RetryDetail):
        results = [
            [value, {name: _failure_data(f) for name, f in failures.items()}]
            for value, failures in results
        ]
    revert_results = ad.revert_results
    try:
        return {
            "p_name": ad.name,
            "p_version": _version(ad.version),
            "p_state": ad.state,
            "p_intention": ad.intention,
            "p_results": null
            if results is None
            else dumps_checked(results, limits["atomdetails.results"], "results"),
            "p_failure": null if ad.failure is None else _failure_json(ad.failure),
            "p_revert_results": null
            if revert_results is None
            else dumps_checked(
                revert_results, limits["atomdetails.revert_results"], "revert_results"
            ),
            "p_revert_failure": null
            if ad.revert_failure is None
            else _failure_json(ad.revert_failure),
            "p_meta": _json(ad.meta, limits["atomdetails.meta"], "meta"),
            "p_updated_at": now,
        }
    except UnstorableValue as err:
        # The same error, naming the atom (the message already says what and why).
        raise UnstorableValue(f"Atom '{ad.name}' ({ad.uuid}): {err}") from None


def _meta_json(detail: models.FlowDetail | models.LogBook, limits: Limits, kind: str) -> str | None:
    """The JSON text of a flow's or book's meta (UnstorableValue naming the detail)."""
    try:
        return _json(detail.meta, limits, "meta")
    except UnstorableValue as err:
        raise UnstorableValue(f"{kind} '{detail.name}' ({detail.uuid}): {err}") from None


def flow_values(
    fd: models.FlowDetail, now: datetime, limits: Mapping[str, Limits]
) -> dict[str, Any]:
    """The ``p_<column>`` parameters of ``FLOW_VALUES`` plus ``p_name``.

    Raises:
        UnstorableValue: a meta value the database can not store.
    """
    meta = _meta_json(fd, limits["flowdetails.meta"], "Flow detail")
    return {"p_name": fd.name, "p_state": fd.state, "p_meta": meta, "p_updated_at": now}


def book_values(book: models.LogBook, limits: Mapping[str, Limits]) -> dict[str, Any]:
    """Every column of ``book``'s row, keyed by column name.

    Raises:
        UnstorableValue: a meta value the database can not store.
    """
    return {
        "uuid": book.uuid,
        "name": book.name,
        "meta": _meta_json(book, limits["logbooks.meta"], "Log book"),
        "created_at": _naive_utc(book.created_at),
        "updated_at": _naive_utc(book.updated_at),
    }


def atom_from_row(row: sa.Row[Any], dialect: Dialect) -> models.AtomDetail:
    """The atom detail an ``atomdetails`` row holds."""
    m = row._mapping
    decode = dialect.decode_json
    cls = models.atom_detail_class(m["atom_type"] or "TASK_DETAIL")
    return cls.from_dict(
        {
            "uuid": m["uuid"],
            "name": m["name"],
            "state": m["state"],
            "intention": m["intention"],
            "version": m["version"],
            "results": decode(m["results"]),
            "failure": decode(m["failure"]),
            "revert_results": decode(m["revert_results"]),
            "revert_failure": decode(m["revert_failure"]),
            "meta": decode(m["meta"]),
        }
    )


def flow_from_row(row: sa.Row[Any], dialect: Dialect) -> models.FlowDetail:
    """The flow detail (without atoms) a ``flowdetails`` row holds."""
    m = row._mapping
    fd = models.FlowDetail(m["name"], m["uuid"])
    fd.state = m["state"]
    fd.meta = dialect.decode_json(m["meta"]) or {}
    return fd


def book_from_row(row: sa.Row[Any], dialect: Dialect) -> models.LogBook:
    """The log book (without flows) a ``logbooks`` row holds."""
    m = row._mapping
    book = models.LogBook(m["name"], m["uuid"])
    book.meta = dialect.decode_json(m["meta"]) or {}
    book.created_at = _aware_utc(m["created_at"])
    book.updated_at = _aware_utc(m["updated_at"])
    return book
