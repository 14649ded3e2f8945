"""A persistence backend on a SQL database: SQLite, PostgreSQL or MySQL/MariaDB.

``fetch('sqlite:////var/lib/app/flows.db')``, ``fetch('postgresql://user@host/db')``,
``fetch('mysql://user@host/db')``. A bare ``postgresql://`` uses psycopg 3 and ``mysql://``
PyMySQL; an explicit driver (``postgresql+psycopg://``) is kept. Drivers come with the extras
``taskflow[database]`` (SQLite), ``taskflow[postgresql]`` and ``taskflow[mysql]``.

The schema is upstream TaskFlow's (``logbooks``, ``flowdetails``, ``atomdetails``), managed
by Alembic on every database; :meth:`Connection.upgrade` creates it, migrates it, or adopts a
database upstream TaskFlow 6.5 wrote (see ``_sqlalchemy/migration.py``). Values are stored as
JSON text (native ``json`` columns on PostgreSQL) with :mod:`taskflow._serialization`.

Configuration keys (URI query parameters arrive as strings and are converted):

=====================  =========================================================================
``connection``         the database URI (default ``sqlite://``, an in-memory database)
``echo``               log every statement through SQLAlchemy (default False)
``idle_timeout``       seconds before a pooled connection is recycled (default 3600)
``max_pool_size``      connections kept in the pool (SQLAlchemy's default: 5)
``max_overflow``       connections opened beyond the pool under load (default 10)
``pool_timeout``       seconds to wait for a pooled connection (default 30)
``isolation_level``    transaction isolation level (default ``READ COMMITTED`` on
                       PostgreSQL and MySQL); ``isolation_levels`` = {dialect: level}
                       picks one per database
``engine_args``        a dict of extra :func:`sqlalchemy.create_engine` arguments (they win)
``log_statements``     log each statement to this module's logger (default False), at
``log_statements_level`` (default ``DEBUG``)
``checkin_yield``      yield the thread (``time.sleep(0)``) when a connection is returned
``checkout_ping``      ping a connection when it leaves the pool (default False: a ping is
                       a round trip per write; broken connections are dropped on failure)
``max_retries``        extra attempts, with backoff, when :meth:`Connection.validate`
                       cannot connect (default 0; never infinite)
``mysql_sql_mode``     ``sql_mode`` of MySQL sessions (default ``TRADITIONAL``, strict);
                       empty keeps the server's
``sqlite_synchronous`` ``'normal'`` (default) or ``'full'``, see below
``sqlite_busy_timeout`` seconds a SQLite writer waits for another's lock (default 30)
``connect_timeout``    seconds to wait for a PostgreSQL/MySQL connection to open (default 10;
                       0: no limit)
``read_timeout``       seconds to wait for a PostgreSQL/MySQL server (default 120; 0: no
                       limit): PyMySQL's read/write timeouts; on PostgreSQL, TCP keepalives
                       after that many idle seconds and ``tcp_user_timeout`` (libpq has no
                       timeout on a reply). A driver option given in the URI wins
``max_value_bytes``    the most bytes of JSON one stored value (a result, revert result or
                       metadata) may take: default 16 MiB, 4 MiB on MySQL (whose
                       ``max_allowed_packet`` must hold a whole row); MySQL's ``TEXT``
                       columns (metadata, revert results) hold 65,535 bytes whatever it says
=====================  =========================================================================

SQLite runs in WAL mode with foreign keys on. ``sqlite_synchronous='normal'`` (the default)
makes every committed write survive the process being killed at any moment, and keeps the
database consistent through a power cut or OS crash, which may lose the last commits.
``'full'`` also makes every commit survive a power cut, at the price of an ``fsync`` per write.

Guarantees: every write method runs in one transaction and is durable (as configured above)
when it returns. :meth:`Connection.update_atom_details`, which engines call twice per task,
and :meth:`Connection.update_flow_record` (flow state changes) are each a single ``UPDATE``
of one row, compiled once per backend, with no read first.
Values the database can not store raise :class:`taskflow._serialization.UnstorableValue`
(naming the record, the value and why) before anything is written: values JSON cannot hold,
NaN and infinities, integers of more than 4,300 digits (what JSON readers parse), values
that contain themselves, and values over ``max_value_bytes``. Database errors become
:class:`taskflow.exceptions.StorageFailure`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

try:
    import sqlalchemy as sa
except ImportError as _err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "The SQL persistence backend needs SQLAlchemy and alembic: pip install 'taskflow[database]'"
    ) from _err

from taskflow import exceptions as exc
from taskflow._config import as_int
from taskflow.persistence import base, models
from taskflow.persistence.backends._sqlalchemy import dialects, migration, tables
from taskflow.persistence.backends._sqlalchemy.tables import (
    atomdetails,
    flowdetails,
    logbooks,
    owners,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

__all__ = ["Connection", "SQLAlchemyBackend"]

_T = TypeVar("_T")
LOG = logging.getLogger(__name__)

#: Keys per ``IN (...)`` list, well below every database's limit on parameters.
_CHUNK = 500


class _Clock:
    """Strictly increasing UTC timestamps (microsecond steps) for ``created_at``/``updated_at``.

    Rows are read back in ``created_at`` order, so atoms created together in one batch keep
    the order they were given in.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        with self._lock:
            now = datetime.now(UTC)
            if now <= self._last:
                now = self._last + timedelta(microseconds=1)
            self._last = now
            return now


def _naive(when: datetime) -> datetime:
    return when.replace(tzinfo=None)


class _Statements:
    """The statements the backend runs, built once per dialect class (:meth:`of`)."""

    #: Shared by every backend of a process: they depend only on the dialect's class, and a
    #: script that fetches a backend per run would otherwise build them again each time.
    _by_dialect: ClassVar[dict[type[dialects.Dialect], _Statements]] = {}

    @classmethod
    def of(cls, dialect: dialects.Dialect) -> _Statements:
        """The statements for ``dialect`` (built on first use; a race builds equal ones)."""
        statements = cls._by_dialect.get(type(dialect))
        if statements is None:
            statements = cls._by_dialect[type(dialect)] = cls(dialect)
        return statements

    def __init__(self, dialect: dialects.Dialect) -> None:
        json = {*tables.ATOM_JSON, "meta"}

        def value(column: str) -> Any:
            if column in json:
                # Bound as the JSON text we encoded; the dialect casts it where needed.
                return dialect.json_bind(sa.bindparam(f"p_{column}", type_=sa.Text))
            return sa.bindparam(f"p_{column}")

        atom_set = {c: value(c) for c in tables.ATOM_VALUES}
        by_uuid = atomdetails.c.uuid == sa.bindparam("p_uuid")
        #: The hot path: one atom's row, without its name, parent or type.
        self.atom_update = atomdetails.update().where(by_uuid).values(atom_set)
        self.atom_update_parent = (
            atomdetails.update()
            .where(by_uuid)
            .values({**atom_set, "parent_uuid": sa.bindparam("p_parent_uuid")})
        )
        # Fenced writes: only while the writer still owns the flow (token unchanged). The
        # owner row is read with a shared lock, so a claim waits for the write to commit.
        fence = sa.exists(
            sa.select(owners.c.token)
            .where(
                owners.c.flow_uuid == sa.bindparam("p_fence_flow"),
                owners.c.token == sa.bindparam("p_fence_token"),
            )
            .with_for_update(read=True)
        )
        self.atom_update_fenced = atomdetails.update().where(by_uuid, fence).values(atom_set)
        # The owner rows (see Connection.claim_flow): compare-and-swap on the token.
        owner_of = owners.c.flow_uuid == sa.bindparam("p_flow_uuid")
        owner_set: dict[str, Any] = {
            c: sa.bindparam(f"p_{c}")
            for c in ("owner", "host", "pid", "token", "expires", "fence_key", "fence_token")
        }
        self.owner_insert = owners.insert().values(
            {**owner_set, "flow_uuid": sa.bindparam("p_flow_uuid")}
        )
        self.owner_swap = (
            owners.update()
            .where(owner_of, owners.c.token == sa.bindparam("p_expected"))
            .values(owner_set)
        )
        self.owner_renew = (
            owners.update()
            .where(owner_of, owners.c.token == sa.bindparam("p_token"), owners.c.owner.is_not(None))
            .values(expires=sa.bindparam("p_expires"))
        )
        self.owner_release = (
            owners.update()
            .where(owner_of, owners.c.token == sa.bindparam("p_token"))
            .values(owner=sa.null(), host=sa.null(), pid=sa.null(), expires=sa.null())
        )
        insert_columns = ("uuid", "parent_uuid", "atom_type", "name", "created_at")
        self.atom_insert = atomdetails.insert().values(
            {**atom_set, **{c: sa.bindparam(f"p_{c}") for c in insert_columns}}
        )
        flow_set = {c: value(c) for c in tables.FLOW_VALUES}
        flow_by_uuid = flowdetails.c.uuid == sa.bindparam("p_uuid")
        self.flow_update = flowdetails.update().where(flow_by_uuid).values(flow_set)
        #: A flow state change: the flow's own row, name included.
        self.flow_record = (
            flowdetails.update()
            .where(flow_by_uuid)
            .values({**flow_set, "name": sa.bindparam("p_name")})
        )
        self.flow_record_fenced = (
            flowdetails.update()
            .where(flow_by_uuid, fence)
            .values({**flow_set, "name": sa.bindparam("p_name")})
        )
        self.flow_update_parent = (
            flowdetails.update()
            .where(flow_by_uuid)
            .values({**flow_set, "parent_uuid": sa.bindparam("p_parent_uuid")})
        )
        self.flow_insert = flowdetails.insert().values(
            {
                **flow_set,
                **{
                    c: sa.bindparam(f"p_{c}") for c in ("uuid", "parent_uuid", "name", "created_at")
                },
            }
        )
        book_set = {c: value(c) for c in ("meta", "created_at", "updated_at")}
        self.book_update = (
            logbooks.update().where(logbooks.c.uuid == sa.bindparam("p_uuid")).values(book_set)
        )
        self.book_insert = logbooks.insert().values(
            {**book_set, "uuid": sa.bindparam("p_uuid"), "name": sa.bindparam("p_name")}
        )


#: Compiled statements by statement and server (see ``_Compiled._compile``): shared by every
#: backend of a process, as the statements are (``_Statements.of``), so a backend fetched
#: per run does not compile them again.
_COMPILED: dict[tuple[Any, ...], tuple[str, tuple[str, ...], bool]] = {}


class _Compiled:
    """A statement compiled once for the engine's dialect, run straight on driver cursors.

    Going through the driver skips SQLAlchemy's per-execution machinery (parameter
    processing, result set setup): a write costs little more than the same statement through
    the bare driver. Compiling needs the server's details, known once the engine connected,
    so it happens on first use. Values must already be what the driver takes (JSON text,
    ``Dialect.raw_time`` timestamps).
    """

    def __init__(self, engine: sa.Engine, stmt: Any) -> None:
        self._engine = engine
        self._stmt = stmt
        self._sql: str | None = None
        self._names: list[str] = []
        self._positional = True

    def _compile(self) -> str:
        dialect = self._engine.dialect
        # What the SQL text depends on besides the statement: the driver's dialect and
        # parameter style, and the server's version and quoting modes (MySQL's).
        key = (
            self._stmt,
            type(dialect),
            dialect.paramstyle,
            dialect.server_version_info,
            getattr(dialect, "is_mariadb", None),
            getattr(dialect, "_server_ansiquotes", None),
            getattr(dialect, "_backslash_escapes", None),
        )
        known = _COMPILED.get(key)
        if known is None:
            compiled = self._stmt.compile(dialect=dialect)
            positional = bool(compiled.positional)
            names = compiled.positiontup if positional else compiled.bind_names.values()
            known = _COMPILED[key] = (str(compiled.string), tuple(names or ()), positional)
        sql, names, self._positional = known
        self._names = list(names)
        self._sql = sql
        return sql

    def prepare(self, params: Mapping[str, Any]) -> tuple[str, Any]:
        """(SQL text, driver arguments) to run the statement with ``params``.

        Call with a connection checked out (the first call compiles).
        """
        sql = self._sql or self._compile()
        if self._positional:
            return sql, tuple([params[name] for name in self._names])
        return sql, {name: params[name] for name in self._names}

    def executemany(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Run the statement once per row on ``conn``'s driver connection (its transaction)."""
        sql = self._sql or self._compile()
        names = self._names
        if self._positional:
            args: list[Any] = [tuple([row[n] for n in names]) for row in rows]
        else:
            args = [{n: row[n] for n in names} for row in rows]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, args)
        finally:
            cursor.close()


class SQLAlchemyBackend(base.Backend):
    """Stores log books, flow details and atom details in a SQL database.

    Args:
        conf: configuration (see the module docstring); ``connection`` is the URI.
        engine: an engine to use instead of creating one from ``conf`` (it is not disposed
            by :meth:`close`; the per-connection setup applies to connections it opens
            from now on).

    Raises:
        ImportError: the database's driver is not installed (the message names the extra).
        ValueError: a malformed URI or option.
    """

    def __init__(self, conf: Mapping[str, Any] | None, engine: sa.Engine | None = None) -> None:
        super().__init__(conf)
        self._conf.setdefault("connection", "sqlite://")
        if engine is None:
            engine, dialect = dialects.create_engine(self._conf)
            self._owns_engine = True
        else:
            dialect = dialects.for_name(engine.dialect.name)(self._conf)
            dialect.attach(engine)
            self._owns_engine = False
        retries = as_int(self._conf, "max_retries", 0)
        if retries < 0:
            raise ValueError(f"'max_retries' must be 0 or more, not {retries}")
        self._max_retries = retries
        self._engine = engine
        self._dialect = dialect
        self._statements = _Statements.of(dialect)
        self._hot = dialect.hot_connections(engine)
        self._atom_update = _Compiled(engine, self._statements.atom_update)
        self._atom_update_parent = _Compiled(engine, self._statements.atom_update_parent)
        self._atom_insert = _Compiled(engine, self._statements.atom_insert)
        self._flow_record = _Compiled(engine, self._statements.flow_record)
        self._atom_update_fenced = _Compiled(engine, self._statements.atom_update_fenced)
        self._owner_insert = _Compiled(engine, self._statements.owner_insert)
        self._owner_swap = _Compiled(engine, self._statements.owner_swap)
        self._owner_renew = _Compiled(engine, self._statements.owner_renew)
        self._owner_release = _Compiled(engine, self._statements.owner_release)
        self._flow_record_fenced = _Compiled(engine, self._statements.flow_record_fenced)
        self._owners_ready = False  # the owners table is known to exist
        self._clock = _Clock()
        #: Whether the database's schema revision is known to be one this taskflow has
        #: (checked before this backend first reads or writes it: ``Connection._translate``).
        self._schema_checked = False
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        driver_error = getattr(dbapi, "Error", None)
        errors: list[type[BaseException]] = [sa.exc.SQLAlchemyError, OSError]
        if isinstance(driver_error, type) and issubclass(driver_error, BaseException):
            errors.append(driver_error)
        self._errors = tuple(errors)
        # The driver's "duplicate key" error: a claim that lost an insert race.
        integrity = getattr(dbapi, "IntegrityError", None)
        self._integrity_errors: tuple[type[BaseException], ...] = (
            (sa.exc.IntegrityError, integrity)
            if isinstance(integrity, type) and issubclass(integrity, BaseException)
            else (sa.exc.IntegrityError,)
        )
        # Closes what this backend opened when it is closed, dropped (garbage collected) or
        # still open at interpreter exit (so that SQLite checkpoints its WAL and removes its
        # -wal/-shm files, as when a program closes it itself). Holds no reference to self.
        self._finalizer = weakref.finalize(
            self, _release, self._hot, engine if self._owns_engine else None
        )

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine in use."""
        return self._engine

    def get_connection(self) -> Connection:
        """A connection (cheap: database connections come from the engine's pool per call)."""
        return Connection(self)

    def close(self) -> None:
        """Close the database connections this backend opened; idempotent.

        Also done when the backend is garbage collected, and at interpreter exit.
        """
        self._finalizer()


def _release(hot: dialects.PooledConnections, engine: sa.Engine | None) -> None:
    """Close a backend's hot-path connection and dispose of the engine it created."""
    with contextlib.suppress(Exception):
        hot.close()
    if engine is not None:
        engine.dispose()
        _remove_orphan_wal(engine.url)


def _remove_orphan_wal(url: sa.URL) -> None:
    """Remove a SQLite database's -wal/-shm files when the database itself was deleted.

    SQLite removes them when the last connection closes, unless the database file was
    deleted while open (as some programs do to discard a store): then they would stay
    behind, belonging to nothing.
    """
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = str(url.database)
    if os.path.exists(path):
        return
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


class Connection(base.Connection):
    """Reads and writes one :class:`SQLAlchemyBackend`; safe to share between threads.

    Every method takes a pooled database connection for the duration of one transaction.
    ``update_flow_details`` and ``update_atom_details`` also accept ``ignore_missing=True``,
    which creates a detail that was never saved (outside any flow or book) instead of
    raising ``NotFound``.
    """

    def __init__(self, backend: SQLAlchemyBackend) -> None:
        self._backend = backend
        self._engine = backend._engine
        self._dialect = backend._dialect
        self._stmts = backend._statements
        self._errors = backend._errors

    @property
    def backend(self) -> SQLAlchemyBackend:
        return self._backend

    def close(self) -> None:
        """Nothing to release: database connections go back to the pool after each call."""

    # -- plumbing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, what: str, check_schema: bool = True) -> Iterator[None]:
        """Turn database and OS errors into ``StorageFailure`` (the backend's one such place).

        Every database access passes here, so the first one also checks that a newer
        taskflow has not upgraded the schema (``SchemaTooNew``), before anything is written
        (``check_schema=False``: the caller checks it itself).
        """
        try:
            if check_schema and not self._backend._schema_checked:
                migration.check_schema(self._engine, self._dialect)
                self._backend._schema_checked = True
            yield
        except self._errors as err:
            raise exc.StorageFailure(f"Failed {what}: {err}") from err

    @contextlib.contextmanager
    def _transaction(self, what: str, write: bool) -> Iterator[sa.Connection]:
        """A connection inside one transaction, committed when the block ends normally."""
        with self._translate(what), self._engine.connect() as conn:
            self._dialect.begin(conn, write)
            yield conn
            conn.commit()

    def _now(self) -> datetime:
        return self._backend._clock.now()

    # -- schema -------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or migrate the schema to this version's head; idempotent.

        Raises:
            taskflow.exceptions.StorageFailure: unreachable database, or a schema this
                version cannot upgrade (partial, foreign, or from a newer taskflow: the
                message says so).
        """
        # migration.upgrade() refuses a newer taskflow's schema itself, before any write.
        with self._translate("upgrading the schema", check_schema=False):
            migration.upgrade(self._engine, self._dialect)
        self._owners_table()
        self._backend._schema_checked = True

    def validate(self) -> None:
        """Connect and run a trivial query, retrying ``max_retries`` times with backoff.

        Raises:
            taskflow.exceptions.StorageFailure: unreachable database, or a schema a newer
                taskflow upgraded (not retried).
        """
        attempts = self._backend._max_retries + 1
        for attempt in range(attempts):
            try:
                with self._translate("validating the connection"), self._engine.connect() as c:
                    c.execute(sa.text("SELECT 1"))
                return
            except migration.SchemaTooNew:
                raise
            except exc.StorageFailure:
                if attempt + 1 >= attempts:
                    raise
                LOG.warning("Database not reachable (attempt %d of %d)", attempt + 1, attempts)
                time.sleep(min(0.5 * 2**attempt, 5.0))

    def clear_all(self) -> None:
        with self._transaction("clearing all log books", write=True) as conn:
            for table in (atomdetails, flowdetails, logbooks):
                conn.execute(table.delete())

    # -- reads --------------------------------------------------------------------------------

    def _atoms(self, conn: sa.Connection, where: Any) -> list[tuple[str, models.AtomDetail]]:
        """(parent uuid, atom) pairs of the atom rows ``where`` selects, in creation order."""
        query = (
            sa.select(atomdetails)
            .where(where)
            .order_by(atomdetails.c.created_at, atomdetails.c.uuid)
        )
        decode = self._dialect
        return [(row.parent_uuid, tables.atom_from_row(row, decode)) for row in conn.execute(query)]

    def _flows(
        self, conn: sa.Connection, where: Any, lazy: bool
    ) -> list[tuple[str, models.FlowDetail]]:
        """(parent uuid, flow) pairs of the flow rows ``where`` selects, with their atoms."""
        query = (
            sa.select(flowdetails)
            .where(where)
            .order_by(flowdetails.c.created_at, flowdetails.c.uuid)
        )
        flows = [
            (row.parent_uuid, tables.flow_from_row(row, self._dialect))
            for row in conn.execute(query)
        ]
        if lazy or not flows:
            return flows
        by_uuid = {fd.uuid: fd for _, fd in flows}
        parents = sa.select(flowdetails.c.uuid).where(where).scalar_subquery()
        if len(by_uuid) == 1:
            atom_where = atomdetails.c.parent_uuid == next(iter(by_uuid))
        else:
            atom_where = atomdetails.c.parent_uuid.in_(parents)
        for parent, ad in self._atoms(conn, atom_where):
            by_uuid[parent].add(ad)
        return flows

    def _books(self, conn: sa.Connection, where: Any, lazy: bool) -> list[models.LogBook]:
        query = sa.select(logbooks).where(where).order_by(logbooks.c.created_at, logbooks.c.uuid)
        books = [tables.book_from_row(row, self._dialect) for row in conn.execute(query)]
        if lazy or not books:
            return books
        by_uuid = {book.uuid: book for book in books}
        flow_where = (
            flowdetails.c.parent_uuid == books[0].uuid
            if len(books) == 1
            else flowdetails.c.parent_uuid.in_(sa.select(logbooks.c.uuid).where(where))
        )
        for parent, fd in self._flows(conn, flow_where, lazy=False):
            book = by_uuid[parent]
            stamp = book.updated_at
            book.add(fd)
            book.updated_at = stamp  # add() stamps the time; keep the stored one
        return books

    def _book_exists(self, conn: sa.Connection, book_uuid: str) -> None:
        found = conn.execute(sa.select(logbooks.c.uuid).where(logbooks.c.uuid == book_uuid))
        if found.first() is None:
            raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        with self._transaction("reading a log book", write=False) as conn:
            books = self._books(conn, logbooks.c.uuid == book_uuid, lazy)
        if not books:
            raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")
        return books[0]

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        with self._transaction("reading log books", write=False) as conn:
            books = self._books(conn, sa.true(), lazy)
        return iter(books)

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        with self._transaction("reading flow details", write=False) as conn:
            self._book_exists(conn, book_uuid)
            flows = self._flows(conn, flowdetails.c.parent_uuid == book_uuid, lazy)
        return iter([fd for _, fd in flows])

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> models.FlowDetail:
        with self._transaction("reading a flow detail", write=False) as conn:
            flows = self._flows(conn, flowdetails.c.uuid == flow_uuid, lazy)
        if not flows:
            raise exc.NotFound(f"No flow details found with uuid '{flow_uuid}'")
        return flows[0][1]

    def get_atom_details(self, atom_uuid: str) -> models.AtomDetail:
        with self._transaction("reading an atom detail", write=False) as conn:
            atoms = self._atoms(conn, atomdetails.c.uuid == atom_uuid)
        if not atoms:
            raise exc.NotFound(f"No atom details found with uuid '{atom_uuid}'")
        return atoms[0][1]

    def get_atoms_for_flow(self, flow_uuid: str) -> Iterator[models.AtomDetail]:
        with self._transaction("reading atom details", write=False) as conn:
            found = conn.execute(
                sa.select(flowdetails.c.uuid).where(flowdetails.c.uuid == flow_uuid)
            )
            if found.first() is None:
                raise exc.NotFound(f"No flow details found with uuid '{flow_uuid}'")
            atoms = self._atoms(conn, atomdetails.c.parent_uuid == flow_uuid)
        return iter([ad for _, ad in atoms])

    # -- writes -------------------------------------------------------------------------------

    def _encode_flow(
        self, fd: models.FlowDetail, now: datetime
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The flow's and its atoms' parameters, all JSON encoded up front (UnstorableValue here).

        Atom parameters are driver-ready (they run as compiled statements); the flow's run
        through SQLAlchemy.
        """
        stamp = _naive(now)
        flow = tables.flow_values(fd, stamp, self._dialect.json_limits)
        flow.update(p_uuid=fd.uuid, p_created_at=stamp)
        raw_time = self._dialect.raw_time
        raw_now = raw_time(now)
        atoms = []
        for ad in fd:
            values = tables.atom_values(
                ad, raw_now, self._dialect.json_limits, self._dialect.json_null
            )
            values.update(
                p_uuid=ad.uuid,
                p_parent_uuid=fd.uuid,
                p_atom_type=models.atom_detail_type(ad),
                # Distinct, increasing creation times keep the atoms' order.
                p_created_at=raw_time(self._now()),
            )
            atoms.append(values)
        return flow, atoms

    def _existing(self, conn: sa.Connection, table: sa.Table, uuids: Iterable[str]) -> set[str]:
        keys = list(uuids)
        found: set[str] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            found.update(
                conn.execute(sa.select(table.c.uuid).where(table.c.uuid.in_(chunk))).scalars()
            )
        return found

    def _write_flow(
        self,
        conn: sa.Connection,
        flow: dict[str, Any],
        atoms: list[dict[str, Any]],
        parent: str | None,
        create: bool,
    ) -> None:
        """Merge or create one flow row and its atoms' rows (in the caller's transaction)."""
        if self._fence is not None:
            self._hold_fence(conn)
        stmts = self._stmts
        if parent is None:
            matched = conn.execute(stmts.flow_update, flow).rowcount
        else:
            matched = conn.execute(
                stmts.flow_update_parent, {**flow, "p_parent_uuid": parent}
            ).rowcount
        if not matched:
            if not create:
                raise exc.NotFound(f"No flow details found with uuid '{flow['p_uuid']}'")
            conn.execute(stmts.flow_insert, {**flow, "p_parent_uuid": parent})
        if not atoms:
            return
        stored = self._existing(conn, atomdetails, (a["p_uuid"] for a in atoms))
        updates = [a for a in atoms if a["p_uuid"] in stored]
        inserts = [a for a in atoms if a["p_uuid"] not in stored]
        if updates:
            self._backend._atom_update_parent.executemany(conn, updates)
        if inserts:
            self._backend._atom_insert.executemany(conn, inserts)

    # -- ownership ----------------------------------------------------------------------------

    def _owners_table(self) -> None:
        """Create the owners table if missing (it is not part of the migrated schema).

        ``upgrade()`` does it; ownership calls do it once per backend when a database was
        upgraded before the table existed (see :meth:`_owned`).
        """
        with self._translate("creating the flow owners table"):
            try:
                owners.create(self._engine, checkfirst=True)
            except sa.exc.SQLAlchemyError:
                # Created meanwhile by another process: fine if it is there now.
                with self._engine.connect() as conn:
                    if not sa.inspect(conn).has_table(owners.name):
                        raise
            self._owners_columns()
        self._backend._owners_ready = True

    def _owners_columns(self) -> None:
        """Add the columns a table made by an earlier version of this backend lacks.

        Probed with a query rather than reflected: reflection warns about table options it
        does not know (MySQL in ANSI_QUOTES mode), and this runs on every upgrade().
        """
        for column in owners.columns:
            try:
                with self._engine.connect() as conn:
                    conn.execute(sa.select(column).limit(0)).close()
            except sa.exc.SQLAlchemyError:
                with self._engine.begin() as conn:
                    kind = column.type.compile(dialect=conn.dialect)
                    name = conn.dialect.identifier_preparer.quote(column.name)
                    table = conn.dialect.identifier_preparer.quote(owners.name)
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def _owned(self, call: Callable[[], _T]) -> _T:
        """Run an ownership ``call``; the first time, create the table if it is missing."""
        if self._backend._owners_ready:
            return call()
        try:
            result = call()
        except exc.StorageFailure:
            self._owners_table()  # missing (a database upgraded before it existed)?
            result = call()
        self._backend._owners_ready = True
        return result

    def read_ownership(self, flow_uuid: str) -> base.Ownership | None:
        return self._owned(lambda: self._read_ownership(flow_uuid))

    def _read_ownership(self, flow_uuid: str) -> base.Ownership | None:
        with self._transaction("reading a flow's owner", write=False) as conn:
            row = conn.execute(sa.select(owners).where(owners.c.flow_uuid == flow_uuid)).first()
        if row is None:
            return None
        return base.Ownership(
            row.owner,
            row.host,
            row.pid,
            int(row.token),
            row.expires,
            row.fence_key,
            None if row.fence_token is None else int(row.fence_token),
        )

    def _owner_write(self, statement: _Compiled, what: str, **params: Any) -> int:
        """Run one owner-row statement on the hot connection; the rows it matched."""
        with self._translate(what):
            return self._backend._hot.write(statement, {f"p_{k}": v for k, v in params.items()})

    def renew_flow(
        self, flow_uuid: str, token: int, lease: float = base.DEFAULT_LEASE
    ) -> base.Ownership:
        """As :meth:`base.Connection.renew_flow`, in one conditional ``UPDATE``."""
        renewed = self._owner_write(
            self._backend._owner_renew,
            "renewing a flow's lease",
            flow_uuid=flow_uuid,
            token=token,
            expires=time.time() + lease,
        )
        current = self.read_ownership(flow_uuid)
        if not renewed or current is None:
            raise exc.OwnershipLost(self._lost_message(flow_uuid, token, current))
        return current

    def release_flow(self, flow_uuid: str, token: int) -> None:
        """As :meth:`base.Connection.release_flow`, in one conditional ``UPDATE``."""
        if self._fence == (flow_uuid, token):
            self._fence = None
        self._owner_write(
            self._backend._owner_release, "releasing a flow", flow_uuid=flow_uuid, token=token
        )

    def swap_ownership(
        self, flow_uuid: str, expected_token: int | None, new: base.Ownership
    ) -> bool:
        return self._owned(lambda: self._swap_ownership(flow_uuid, expected_token, new))

    def _swap_ownership(
        self, flow_uuid: str, expected_token: int | None, new: base.Ownership
    ) -> bool:
        values = {
            "flow_uuid": flow_uuid,
            "owner": new.owner,
            "host": new.host,
            "pid": new.pid,
            "token": new.token,
            "expires": new.expires,
            "fence_key": new.fence_key,
            "fence_token": new.fence_token,
        }
        if expected_token is None:
            try:
                self._owner_write(self._backend._owner_insert, "recording a flow's owner", **values)
            except exc.StorageFailure as err:
                if isinstance(err.__cause__, self._backend._integrity_errors):
                    return False  # the row exists: another claimant was first
                raise
            return True
        return bool(
            self._owner_write(
                self._backend._owner_swap,
                "recording a flow's owner",
                expected=expected_token,
                **values,
            )
        )

    def _hold_fence(self, conn: sa.Connection) -> None:
        """Refuse the transaction on ``conn`` unless this connection still owns its flow.

        The owner row stays share-locked until the transaction ends, so a claim waits for
        what this transaction writes.
        """
        assert self._fence is not None
        flow_uuid, token = self._fence
        current = conn.execute(
            sa.select(owners.c.token)
            .where(owners.c.flow_uuid == flow_uuid)
            .with_for_update(read=True)
        ).scalar()
        if current != token:
            raise exc.OwnershipLost(
                self._lost_message(flow_uuid, token, self.read_ownership(flow_uuid))
            )

    def _check_fence(self) -> None:
        """After a fenced write matched nothing: OwnershipLost if the fence is why."""
        if self._fence is not None:
            flow_uuid, token = self._fence
            current = self.read_ownership(flow_uuid)
            if current is None or current.token != token:
                raise exc.OwnershipLost(self._lost_message(flow_uuid, token, current))

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        row = tables.book_values(book, self._dialect.json_limits)
        params = {f"p_{name}": value for name, value in row.items()}
        encoded = [self._encode_flow(fd, self._now()) for fd in book]
        with self._transaction("saving a log book", write=True) as conn:
            if not conn.execute(self._stmts.book_update, params).rowcount:
                conn.execute(self._stmts.book_insert, params)
            for flow, atoms in encoded:
                self._write_flow(conn, flow, atoms, parent=book.uuid, create=True)
            return self._books(conn, logbooks.c.uuid == book.uuid, lazy=False)[0]

    def destroy_logbook(self, book_uuid: str) -> None:
        with self._transaction("destroying a log book", write=True) as conn:
            flows = sa.select(flowdetails.c.uuid).where(flowdetails.c.parent_uuid == book_uuid)
            # Explicit rather than trusting ON DELETE CASCADE (SQLite may run without it).
            conn.execute(atomdetails.delete().where(atomdetails.c.parent_uuid.in_(flows)))
            conn.execute(flowdetails.delete().where(flowdetails.c.parent_uuid == book_uuid))
            if not conn.execute(logbooks.delete().where(logbooks.c.uuid == book_uuid)).rowcount:
                raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")

    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        """Merge the flow's row and create or merge its atoms' rows, in one transaction."""
        flow, atoms = self._encode_flow(flow_detail, self._now())
        with self._transaction("saving a flow detail", write=True) as conn:
            self._write_flow(conn, flow, atoms, parent=None, create=ignore_missing)
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(atomdetails)
                .where(atomdetails.c.parent_uuid == flow_detail.uuid)
            ).scalar_one()
            if count == len(flow_detail):
                # Every stored atom was just written from this object: it is the record.
                return flow_detail
            return self._flows(conn, flowdetails.c.uuid == flow_detail.uuid, lazy=False)[0][1]

    def update_flow_record(self, flow_detail: models.FlowDetail) -> None:
        """Overwrite the flow's own row (name, state, meta) with one ``UPDATE``; not its atoms.

        Raises:
            taskflow.exceptions.NotFound: the flow detail was never saved.
        """
        params = tables.flow_values(
            flow_detail, self._dialect.raw_time(self._now()), self._dialect.json_limits
        )
        params["p_uuid"] = flow_detail.uuid
        statement = self._backend._flow_record
        if self._fence is not None:
            params["p_fence_flow"], params["p_fence_token"] = self._fence
            statement = self._backend._flow_record_fenced
        with self._translate("saving a flow detail"):
            matched = self._backend._hot.write(statement, params)
        if not matched:
            self._check_fence()
            raise exc.NotFound(f"No flow details found with uuid '{flow_detail.uuid}'")

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        """Overwrite the atom's row (all fields but its name) with one ``UPDATE``.

        Returns:
            ``atom_detail`` itself, which now equals the stored record.
        """
        dialect = self._dialect
        params = tables.atom_values(
            atom_detail, dialect.raw_now(), dialect.json_limits, dialect.json_null
        )
        params["p_uuid"] = atom_detail.uuid
        statement = self._backend._atom_update
        if self._fence is not None:
            params["p_fence_flow"], params["p_fence_token"] = self._fence
            statement = self._backend._atom_update_fenced
        with self._translate("saving an atom detail"):
            matched = self._backend._hot.write(statement, params)
        if matched:
            return atom_detail
        self._check_fence()
        if not ignore_missing:
            raise exc.NotFound(f"No atom details found with uuid '{atom_detail.uuid}'")
        params.update(
            p_parent_uuid=None,
            p_atom_type=models.atom_detail_type(atom_detail),
            p_created_at=params["p_updated_at"],
        )
        with self._transaction("creating an atom detail", write=True) as conn:
            self._backend._atom_insert.executemany(conn, [params])
        return atom_detail
