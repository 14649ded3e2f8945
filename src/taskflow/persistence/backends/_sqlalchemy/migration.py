"""``upgrade()``: bring a database's schema to this package's head revision.

Theory of operation. The schema is managed by Alembic on every database, with the scripts
in ``migrations/``. The chain starts at ``00af93df9d77``, upstream TaskFlow's head revision,
which creates upstream's schema in one step. A database can be in one of four shapes:

* **current** -- ``alembic_version`` holds :data:`HEAD`: nothing to do. Checked with one
  query before Alembic is even imported, since ``upgrade()`` runs at every start.
* **empty** -- Alembic runs the chain from the start and creates everything.
* **upstream, migrated** (PostgreSQL, MySQL) -- upstream's Alembic left ``00af93df9d77``:
  the same as current, or a forward migration when this chain has grown.
* **upstream, unversioned** (SQLite, where upstream used ``create_all``) -- the three tables
  exist but ``alembic_version`` does not. Their columns are checked; then the database is
  stamped ``00af93df9d77`` (adopted, not recreated) and upgraded from there.

Anything else (some of the tables missing, columns missing, a revision this chain does not
know) is refused with ``StorageFailure`` rather than guessed at. A revision this chain does
not know is one a newer taskflow wrote: :class:`SchemaTooNew` says so, and the backend checks
for it (:func:`check_schema`) before it first reads or writes a database, so that an older
taskflow never writes to a schema it does not understand. The whole upgrade runs in one
transaction holding a per-database lock (see the dialect hooks), so concurrent starters do
not race; on MySQL DDL commits implicitly, so there it is the lock alone that serializes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import sqlalchemy as sa

from taskflow import exceptions as exc

if TYPE_CHECKING:
    from taskflow.persistence.backends._sqlalchemy.dialects import Dialect

__all__ = [
    "BASE",
    "HEAD",
    "REVISIONS",
    "SCRIPT_LOCATION",
    "SchemaTooNew",
    "check_revision",
    "check_schema",
    "current_revision",
    "upgrade",
]

#: Upstream TaskFlow's head revision, the base of this chain.
BASE = "00af93df9d77"
#: This chain's head (a test checks it matches the scripts).
HEAD = "00af93df9d77"
#: Every revision of this chain (a test checks it matches the scripts).
REVISIONS = frozenset((BASE, HEAD))
#: Where the Alembic environment and revision scripts live.
SCRIPT_LOCATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")

_VERSION_TABLE = "alembic_version"

#: Columns upstream's tables have; an unversioned database must have at least these.
UPSTREAM_COLUMNS: dict[str, frozenset[str]] = {
    "logbooks": frozenset(("created_at", "updated_at", "meta", "name", "uuid")),
    "flowdetails": frozenset(
        ("created_at", "updated_at", "parent_uuid", "meta", "name", "state", "uuid")
    ),
    "atomdetails": frozenset(
        (
            "created_at",
            "updated_at",
            "meta",
            "parent_uuid",
            "name",
            "version",
            "state",
            "uuid",
            "failure",
            "results",
            "revert_results",
            "revert_failure",
            "atom_type",
            "intention",
        )
    ),
}


def current_revision(conn: sa.Connection) -> str | None:
    """The revision stamped in the database (None: not versioned)."""
    if not sa.inspect(conn).has_table(_VERSION_TABLE):
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise exc.StorageFailure(f"Database has several schema revisions {sorted(rows)}")
    return rows[0] if rows else None


class SchemaTooNew(exc.StorageFailure):
    """The database's schema revision is not one of this chain's: a newer taskflow upgraded
    it. Nothing is read from or written to it; upgrade taskflow to use it."""


def check_revision(current: str | None) -> None:
    """Refuse ``current`` unless it is one of :data:`REVISIONS` (None: not versioned yet).

    Raises:
        SchemaTooNew: the database was upgraded by a newer taskflow.
    """
    if current is not None and current not in REVISIONS:
        raise SchemaTooNew(
            f"Database schema is at revision '{current}', which this taskflow does not know"
            f" (its newest is '{HEAD}'): a newer taskflow has upgraded it. Refusing to read"
            " or write it; upgrade taskflow to use this database"
        )


def check_schema(engine: sa.Engine, dialect: Dialect) -> None:
    """:func:`check_revision` of the database ``engine`` reaches (one read, no write).

    Raises:
        SchemaTooNew: the database was upgraded by a newer taskflow. Driver errors propagate
            for the caller to map.
    """
    with engine.connect() as conn:
        dialect.begin(conn, write=False)
        try:
            check_revision(current_revision(conn))
        finally:
            conn.rollback()


def _check_unversioned(conn: sa.Connection) -> bool:
    """Whether to adopt an unversioned database (True) or create the schema (False)."""
    inspector = sa.inspect(conn)
    present = [t for t in UPSTREAM_COLUMNS if inspector.has_table(t)]
    if not present:
        return False
    if len(present) != len(UPSTREAM_COLUMNS):
        missing = sorted(set(UPSTREAM_COLUMNS) - set(present))
        raise exc.StorageFailure(
            f"Database has taskflow tables {sorted(present)} but not {missing}, and no schema"
            " revision: refusing to guess how to upgrade it"
        )
    for table, wanted in UPSTREAM_COLUMNS.items():
        found = {c["name"] for c in inspector.get_columns(table)}
        if not wanted <= found:
            raise exc.StorageFailure(
                f"Table {table!r} lacks columns {sorted(wanted - found)}; it was not created by"
                " a compatible taskflow"
            )
    return True


def _alembic_config(conn: sa.Connection) -> object:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = conn
    return config


def _run_alembic(conn: sa.Connection, adopt: bool) -> None:
    from alembic import command
    from alembic.util import CommandError

    config = _alembic_config(conn)
    try:
        if adopt:
            command.stamp(config, BASE)  # type: ignore[arg-type]
        command.upgrade(config, "head")  # type: ignore[arg-type]
    except CommandError as err:
        raise exc.StorageFailure(f"Could not upgrade the database schema: {err}") from err


def upgrade(engine: sa.Engine, dialect: Dialect) -> None:
    """Create or migrate the schema to :data:`HEAD`; idempotent, safe to run concurrently.

    Raises:
        taskflow.exceptions.StorageFailure: the database is in a shape this chain does not
            know (see the module docstring); :class:`SchemaTooNew` when a newer taskflow
            upgraded it. Driver errors propagate for the caller to map.
    """
    with engine.connect() as conn:
        dialect.begin(conn, write=False)
        current = current_revision(conn)
        conn.rollback()
        if current == HEAD:
            return
        check_revision(current)  # before taking the lock: refusing writes nothing
        dialect.begin(conn, write=True)
        dialect.lock_for_upgrade(conn)
        try:
            # Re-read under the lock: another process may have just finished.
            current = current_revision(conn)
            check_revision(current)
            if current != HEAD:
                adopt = current is None and _check_unversioned(conn)
                _run_alembic(conn, adopt)
            conn.commit()
        finally:
            if conn.in_transaction():
                conn.rollback()
            dialect.unlock_after_upgrade(conn)
            conn.commit()
