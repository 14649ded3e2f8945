"""What differs between the databases the SQL backend runs on.

:class:`Dialect` holds the behaviour every database shares; :class:`SQLite`,
:class:`PostgreSQL` and :class:`MySQL` override only what differs for them: the driver a
bare URI scheme gets, engine options, per-connection session setup, how a transaction
starts, how a JSON parameter is bound and how a JSON column reads back. The backend never
asks which database it talks to; it calls these hooks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from taskflow import _serialization
from taskflow._config import as_bool, as_float, as_int
from taskflow.persistence.backends._sqlalchemy.tables import JSON_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.sql.elements import BindParameter, ColumnElement

__all__ = [
    "CONF_KEYS",
    "PooledConnections",
    "SharedConnection",
    "Statement",
    "MySQL",
    "PostgreSQL",
    "SQLite",
    "Dialect",
    "create_engine",
    "for_name",
]

LOG = logging.getLogger(__name__)

#: The backend's own configuration keys; taken out of the URI before the driver sees it.
CONF_KEYS = frozenset(
    (
        "echo",
        "idle_timeout",
        "max_pool_size",
        "max_overflow",
        "pool_timeout",
        "isolation_level",
        "isolation_levels",
        "engine_args",
        "log_statements",
        "log_statements_level",
        "checkin_yield",
        "checkout_ping",
        "mysql_sql_mode",
        "max_retries",
        "sqlite_synchronous",
        "sqlite_busy_timeout",
        "max_value_bytes",
        "connect_timeout",
        "read_timeout",
    )
)

_MIB = 1024 * 1024


def _timeout(conf: Mapping[str, Any], key: str, default: float) -> float | None:
    """``conf[key]`` in seconds (``default`` when absent); None for 0, meaning no limit.

    Raises:
        ValueError: not a number, or a negative one.
    """
    seconds = as_float(conf, key, default)
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"'{key}' must be 0 (no limit) or a number of seconds, not {seconds!r}")
    return seconds or None


def _log_level(value: Any) -> int:
    if isinstance(value, str) and not value.isdigit():
        level = logging.getLevelName(value.upper())
        if not isinstance(level, int):
            raise ValueError(f"Unknown logging level {value!r} for 'log_statements_level'")
        return level
    return int(value)


class Dialect:
    """Behaviour every database shares; subclasses override what differs.

    Args:
        conf: the backend's configuration (see the ``impl_sqlalchemy`` module docstring).
    """

    #: SQLAlchemy's name for the database (``engine.dialect.name``).
    name: ClassVar[str] = "default"
    #: The ``taskflow[...]`` extra that installs this database's driver.
    extra: ClassVar[str] = "database"
    #: Driver used when the URI names none (``postgresql://`` -> psycopg 3).
    default_driver: ClassVar[str | None] = None
    #: Isolation level used unless the configuration picks one.
    default_isolation_level: ClassVar[str | None] = None
    #: Bytes of JSON text one stored value may take unless ``max_value_bytes`` says
    #: otherwise: far below what the database takes, since every transition writes it.
    default_max_value_bytes: ClassVar[int] = 16 * _MIB
    #: JSON columns (``table.column``) holding fewer bytes than that, whatever is configured.
    column_bytes: ClassVar[dict[str, int]] = {}
    #: Seconds to wait for a server to accept a connection, unless ``connect_timeout``
    #: says otherwise (0: no limit). Servers only: SQLite has ``sqlite_busy_timeout``.
    default_connect_timeout: ClassVar[float] = 10.0
    #: Seconds to wait for a server's answer, unless ``read_timeout`` says otherwise (0: no
    #: limit): above the longest wait a statement of ours can meet on a healthy server (a
    #: lock held by another writer, the schema upgrade lock's 60 seconds).
    default_read_timeout: ClassVar[float] = 120.0

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.conf = conf
        self.log_statements = as_bool(conf, "log_statements", False)
        self.log_level = _log_level(conf.get("log_statements_level", logging.DEBUG))
        #: (connect, read) timeouts in seconds; None: no limit.
        self.timeouts = (
            _timeout(conf, "connect_timeout", self.default_connect_timeout),
            _timeout(conf, "read_timeout", self.default_read_timeout),
        )
        limits = _serialization.limits_from_conf(conf, self.default_max_value_bytes)
        #: What each JSON column (``table.column``) can store, checked before any write.
        self.json_limits: dict[str, _serialization.Limits] = {
            column: limits.capped(self.column_bytes[column])
            if column in self.column_bytes
            else limits
            for column in JSON_COLUMNS
        }

    # -- engine -------------------------------------------------------------------------------

    def url(self, url: sa.URL) -> sa.URL:
        """The URL to connect with: without our keys; a bare scheme gets the default driver."""
        url = url.difference_update_query(CONF_KEYS)
        if self.default_driver and "+" not in url.drivername:
            return url.set(drivername=f"{url.drivername}+{self.default_driver}")
        return url

    def isolation_level(self) -> str | None:
        levels = self.conf.get("isolation_levels")
        if isinstance(levels, dict) and self.name in levels:
            return str(levels[self.name])
        level = self.conf.get("isolation_level", self.default_isolation_level)
        return None if level is None else str(level)

    def pool_options(self, url: sa.URL) -> dict[str, Any]:
        """Options for a queue pool (every database but in-memory SQLite)."""
        options: dict[str, Any] = {"pool_recycle": as_int(self.conf, "idle_timeout", 3600)}
        for key, option in (("max_pool_size", "pool_size"), ("max_overflow", "max_overflow")):
            value = as_int(self.conf, key, None)
            if value is not None:
                options[option] = value
        timeout = as_float(self.conf, "pool_timeout", None)
        if timeout is not None:
            options["pool_timeout"] = timeout
        return options

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        """The driver's connection arguments for :attr:`timeouts` (none by default).

        An argument the URI's query already gives the driver is left to it.
        """
        return {}

    def engine_options(self, url: sa.URL) -> dict[str, Any]:
        """Keyword arguments for :func:`sqlalchemy.create_engine` built from the configuration."""
        options = self.pool_options(url)
        options["echo"] = as_bool(self.conf, "echo", False)
        # A ping per checkout costs a round trip per write; dead connections are dropped
        # when they fail instead (the engine's storage retries the write), unless asked.
        options["pool_pre_ping"] = as_bool(self.conf, "checkout_ping", False)
        level = self.isolation_level()
        if level is not None:
            options["isolation_level"] = level
        return options

    def attach(self, engine: sa.Engine) -> None:
        """Register the per-connection hooks on ``engine``."""
        sa.event.listen(engine, "connect", self._on_connect)
        if as_bool(self.conf, "checkin_yield", False):
            sa.event.listen(engine, "checkin", _yield_on_checkin)
        if self.log_statements:
            sa.event.listen(engine, "before_cursor_execute", self._log_statement)

    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        self.setup_connection(dbapi_conn)

    def _log_statement(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        LOG.log(self.log_level, "Running statement %r with %r", statement, params)

    def setup_connection(self, dbapi_conn: Any) -> None:
        """Prepare a new driver connection (session settings); nothing by default."""

    def hot_connections(self, engine: sa.Engine) -> PooledConnections:
        """Where the hot path (``update_atom_details``) gets its driver connection."""
        return PooledConnections(engine, self)

    # -- transactions -------------------------------------------------------------------------

    def begin(self, conn: sa.Connection, write: bool) -> None:
        """Start the transaction ``conn`` runs in (most drivers start one implicitly)."""

    def lock_for_upgrade(self, conn: sa.Connection) -> None:
        """Keep other processes from migrating the schema until ``conn``'s transaction ends."""

    def unlock_after_upgrade(self, conn: sa.Connection) -> None:
        """Undo :meth:`lock_for_upgrade` where the lock outlives the transaction."""

    def write_one(self, dbapi_conn: Any, sql: str, params: Any) -> int:
        """Run one write statement in its own committed transaction; the rows it matched."""
        if self.log_statements:
            LOG.log(self.log_level, "Running statement %r with %r", sql, params)
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(sql, params)
            count: int = cursor.rowcount
        finally:
            cursor.close()
        dbapi_conn.commit()
        return count

    # -- values -------------------------------------------------------------------------------

    #: What stands for SQL NULL in a JSON column's parameter (see ``json_bind``).
    json_null: str | None = None

    def json_bind(self, bind: BindParameter[Any]) -> ColumnElement[Any]:
        """The SQL expression that stores JSON text given as ``bind`` in a JSON column."""
        return bind

    def decode_json(self, raw: Any) -> Any:
        """The value a JSON column read back as ``raw`` holds."""
        return None if raw is None else _serialization.loads(raw)

    def raw_time(self, when: datetime) -> Any:
        """``when`` (aware) as a driver parameter for a DATETIME column (naive UTC)."""
        return when.astimezone(UTC).replace(tzinfo=None)

    def raw_now(self) -> Any:
        """The current time as :meth:`raw_time` gives it (for ``updated_at``: no ordering)."""
        return self.raw_time(datetime.now(UTC))


class Statement(Protocol):
    """A statement ready to run on a driver connection (``impl_sqlalchemy._Compiled``)."""

    def prepare(self, params: Mapping[str, Any]) -> tuple[str, Any]:
        """(SQL text, driver arguments) for ``params``."""


class PooledConnections:
    """Checks a driver connection out of the engine's pool for each hot-path write."""

    def __init__(self, engine: sa.Engine, dialect: Dialect) -> None:
        self._engine = engine
        self._dialect = dialect

    def write(self, statement: Statement, params: Mapping[str, Any]) -> int:
        """:meth:`Dialect.write_one` on a pooled connection; errors propagate after clean-up."""
        raw = self._engine.raw_connection()
        try:
            dbapi_conn = raw.dbapi_connection
            try:
                return self._dialect.write_one(dbapi_conn, *statement.prepare(params))
            except Exception as err:
                # A broken connection must not go back to the pool.
                if self._engine.dialect.is_disconnect(err, dbapi_conn, None):  # type: ignore[arg-type]
                    raw.invalidate(err)
                else:
                    with contextlib.suppress(Exception):
                        raw.rollback()
                raise
        finally:
            raw.close()

    def close(self) -> None:
        """Nothing held between writes."""


class SharedConnection(PooledConnections):
    """One driver connection kept for the hot path and used by one thread at a time.

    SQLite admits one writer at a time anyway, so serializing this backend's hot writes on
    one connection costs no concurrency and saves a pool checkout per write. The
    connection is detached from the pool (so it never counts against ``max_pool_size``)
    and closed by :meth:`close`.
    """

    def __init__(self, engine: sa.Engine, dialect: Dialect) -> None:
        super().__init__(engine, dialect)
        self._lock = threading.Lock()
        self._dbapi_conn: Any = None

    def write(self, statement: Statement, params: Mapping[str, Any]) -> int:
        with self._lock:
            dbapi_conn = self._dbapi_conn
            if dbapi_conn is None:
                raw = self._engine.raw_connection()
                raw.detach()
                self._dbapi_conn = dbapi_conn = raw.dbapi_connection
            try:
                return self._dialect.write_one(dbapi_conn, *statement.prepare(params))
            except Exception:
                if dbapi_conn.in_transaction:
                    with contextlib.suppress(Exception):
                        dbapi_conn.rollback()
                raise

    def close(self) -> None:
        with self._lock:
            if self._dbapi_conn is not None:
                self._dbapi_conn.close()
                self._dbapi_conn = None


def _yield_on_checkin(dbapi_conn: Any, record: Any) -> None:
    # Lets other green/OS threads run between database operations (upstream's option).
    time.sleep(0)


class SQLite(Dialect):
    """SQLite through the standard library's ``sqlite3``.

    Every connection runs ``journal_mode=WAL``, ``synchronous`` (``NORMAL`` unless
    ``sqlite_synchronous='full'``), ``busy_timeout`` and ``foreign_keys=ON``, and is put in
    driver autocommit mode so that the backend opens transactions itself: ``BEGIN
    IMMEDIATE`` for writes (taking the write lock up front, so two writers wait on
    ``busy_timeout`` instead of failing on a lock upgrade), ``BEGIN`` for reads (one snapshot
    for every statement of a read).
    """

    name = "sqlite"
    _SYNCHRONOUS: ClassVar[dict[str, str]] = {"normal": "NORMAL", "full": "FULL"}

    def __init__(self, conf: Mapping[str, Any]) -> None:
        super().__init__(conf)
        mode = str(conf.get("sqlite_synchronous", "normal")).strip().lower()
        if mode not in self._SYNCHRONOUS:
            given = conf["sqlite_synchronous"]
            raise ValueError(f"'sqlite_synchronous' must be 'normal' or 'full', not {given!r}")
        self.synchronous = self._SYNCHRONOUS[mode]
        self.busy_timeout_ms = int(as_float(conf, "sqlite_busy_timeout", 30.0) * 1000)
        self._second_text: tuple[int, str] = (-1, "")

    def pool_options(self, url: sa.URL) -> dict[str, Any]:
        if url.database in (None, "", ":memory:"):
            # One in-memory database shared by every thread of this backend.
            return {
                "poolclass": sa.pool.StaticPool,
                "connect_args": {"check_same_thread": False},
            }
        return super().pool_options(url)

    def setup_connection(self, dbapi_conn: Any) -> None:
        # Autocommit at the driver level: transactions are opened explicitly by begin().
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {self.synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def hot_connections(self, engine: sa.Engine) -> PooledConnections:
        if isinstance(engine.pool, sa.pool.StaticPool):
            return super().hot_connections(engine)  # in memory: there is only one connection
        return SharedConnection(engine, self)

    def begin(self, conn: sa.Connection, write: bool) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    # Python's sqlite3 binds None through its adapter lookup (two failed attribute lookups
    # per parameter, most of a write's binding cost), and an atom row's write has four NULL
    # JSON columns: they are sent as '' (never a JSON text) and stored as NULL.
    json_null = ""

    def json_bind(self, bind: BindParameter[Any]) -> ColumnElement[Any]:
        return sa.func.nullif(bind, sa.literal_column("''"))

    def write_one(self, dbapi_conn: Any, sql: str, params: Any) -> int:
        if self.log_statements:
            LOG.log(self.log_level, "Running statement %r with %r", sql, params)
        # In autocommit mode one statement is one committed transaction: no BEGIN/COMMIT
        # round trips through the driver.
        count: int = dbapi_conn.execute(sql, params).rowcount
        if dbapi_conn.in_transaction:
            # A connection set up by someone else (a given engine) may not autocommit.
            dbapi_conn.commit()
        return count

    def raw_time(self, when: datetime) -> Any:
        # The text form SQLAlchemy's SQLite DATETIME type reads and writes.
        if when.tzinfo is not UTC:
            when = when.astimezone(UTC)
        return when.replace(tzinfo=None).isoformat(" ", "microseconds")

    def raw_now(self) -> Any:
        # The same text as raw_time(datetime.now(UTC)), formatting the date part once a
        # second: this runs on every write of the hot path.
        now = time.time()
        second = int(now)
        cached = self._second_text  # one tuple, replaced whole: safe across threads
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)))
            self._second_text = cached
        return f"{cached[1]}.{int((now - second) * 1_000_000):06d}"


#: Seconds a PostgreSQL transaction of ours may sit idle before the server ends it.
IDLE_TRANSACTION_TIMEOUT = 10.0


class PostgreSQL(Dialect):
    """PostgreSQL through psycopg 3; JSON columns are native ``json``."""

    name = "postgresql"
    extra = "postgresql"
    default_driver = "psycopg"
    default_isolation_level = "READ COMMITTED"

    def json_bind(self, bind: BindParameter[Any]) -> ColumnElement[Any]:
        return sa.cast(bind, postgresql.JSON)

    def decode_json(self, raw: Any) -> Any:
        # psycopg already parsed the json column; only our markers are left to decode.
        return _serialization.from_jsonable(raw)

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        # libpq waits for no reply with a timeout of its own once connected: a server or a
        # network gone silent is caught by TCP instead, keepalive probes after read_timeout
        # idle seconds and TCP_USER_TIMEOUT for unacknowledged data. A server that still
        # acknowledges but never replies is bounded only while connecting.
        connect, read = self.timeouts
        args: dict[str, Any] = {}
        if connect is not None:
            args["connect_timeout"] = max(1, math.ceil(connect))  # whole seconds (at least 2)
        if read is not None:
            args["keepalives"] = 1
            args["keepalives_idle"] = max(1, math.ceil(read))
            args["tcp_user_timeout"] = math.ceil(read * 1000)  # milliseconds
        return {key: value for key, value in args.items() if key not in url.query}

    def setup_connection(self, dbapi_conn: Any) -> None:
        # Our transactions run their statements back to back: one left idle is a client
        # paused (SIGSTOP, a frozen VM) or hung between two statements, and its row locks
        # would hold up every other writer of the flow, a new owner's takeover included,
        # for as long as that lasts. The server ends it after this long instead.
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(
                "SET idle_in_transaction_session_timeout = "
                f"{round(IDLE_TRANSACTION_TIMEOUT * 1000)}"
            )
        finally:
            cursor.close()
        dbapi_conn.commit()  # else the pool's reset (a rollback) would undo the SET

    def lock_for_upgrade(self, conn: sa.Connection) -> None:
        # Per schema, released when the transaction ends.
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(hashtext('taskflow-upgrade:' || current_schema()))"
            )
        )


class MySQL(Dialect):
    """MySQL and MariaDB through PyMySQL; ``mysql_sql_mode`` (default ``TRADITIONAL``).

    A statement and its values must fit in the server's ``max_allowed_packet`` (16 MiB on
    MariaDB, 4 MiB on MySQL 5.7, 64 MiB on 8.0), and an atom's row carries several values,
    so one value is held to 4 MiB by default. The schema (upstream's) has plain ``TEXT``
    columns (65,535 bytes) for metadata and revert results.
    """

    name = "mysql"
    extra = "mysql"
    default_driver = "pymysql"
    default_isolation_level = "READ COMMITTED"
    default_max_value_bytes = 4 * _MIB
    column_bytes: ClassVar[dict[str, int]] = {
        "atomdetails.meta": 65535,
        "atomdetails.revert_results": 65535,
        "logbooks.meta": 65535,
    }

    def __init__(self, conf: Mapping[str, Any]) -> None:
        super().__init__(conf)
        mode = conf.get("mysql_sql_mode", "TRADITIONAL")
        self.sql_mode = None if mode is None else str(mode)

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        # PyMySQL's connect_timeout covers the TCP connection; the server's greeting and every
        # reply after it are read under read_timeout (writes under the same write_timeout).
        connect, read = self.timeouts
        args: dict[str, Any] = {}
        if connect is not None:
            args["connect_timeout"] = connect
        if read is not None:
            args["read_timeout"] = args["write_timeout"] = read
        return {key: value for key, value in args.items() if key not in url.query}

    def setup_connection(self, dbapi_conn: Any) -> None:
        if not self.sql_mode:
            return
        cursor = dbapi_conn.cursor()
        try:
            # Strict modes turn silent truncation of a stored value into an error.
            cursor.execute("SET SESSION sql_mode = %s", (self.sql_mode,))
        finally:
            cursor.close()

    def lock_for_upgrade(self, conn: sa.Connection) -> None:
        got = conn.execute(
            sa.text("SELECT GET_LOCK(CONCAT('taskflow-upgrade:', DATABASE()), 60)")
        ).scalar()
        if got != 1:
            raise sa.exc.OperationalError(
                "GET_LOCK", {}, Exception("schema upgrade lock timed out")
            )

    def unlock_after_upgrade(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT RELEASE_LOCK(CONCAT('taskflow-upgrade:', DATABASE()))"))


_DIALECTS: dict[str, type[Dialect]] = {d.name: d for d in (SQLite, PostgreSQL, MySQL)}


def for_name(name: str) -> type[Dialect]:
    """The hooks class for a SQLAlchemy dialect name (the generic one if unknown)."""
    return _DIALECTS.get(name, Dialect)


def create_engine(conf: Mapping[str, Any]) -> tuple[sa.Engine, Dialect]:
    """An engine for ``conf['connection']`` and the hooks attached to it.

    Raises:
        ImportError: the database's driver is missing (the message names the extra).
        ValueError: a malformed URI or option.
    """
    url = sa.make_url(conf["connection"])
    # Our keys in the URI's query are configuration (backends.fetch() merges them already).
    given = {key: value for key, value in url.query.items() if key in CONF_KEYS}
    dialect = for_name(url.get_backend_name())({**given, **conf})
    url = dialect.url(url)
    options = dialect.engine_options(url)
    engine_args = dict(conf.get("engine_args") or {})
    # Connection arguments merge: the configuration's engine_args win over ours.
    connect_args = {
        **options.get("connect_args", {}),
        **dialect.connect_args(url),
        **engine_args.pop("connect_args", {}),
    }
    if connect_args:
        options["connect_args"] = connect_args
    options.update(engine_args)
    try:
        engine = sa.create_engine(url, **options)
    except ImportError as err:
        raise ImportError(
            f"The {url.get_backend_name()!r} persistence backend needs the driver"
            f" {url.get_driver_name()!r}: pip install 'taskflow[{dialect.extra}]' ({err})"
        ) from err
    dialect.attach(engine)
    return engine, dialect
