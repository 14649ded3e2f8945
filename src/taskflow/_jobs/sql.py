"""The jobboard store on a SQL database (SQLite, PostgreSQL, MySQL/MariaDB) via SQLAlchemy 2.

Theory of operation. One table holds every job of every board sharing the database, keyed
by ``(namespace, uuid)``; a claim is three columns of the job's row (owner, token, lease
expiry). Lease times are epoch seconds read from the *database's* clock (``now`` below), so
holders on machines with skewed clocks agree on when a lease ends. Every change is one
transaction:

* claim: one conditional ``UPDATE`` (job live, no unexpired claim) that also increments the
  token and, when it takes over a lapsed claim, the attempts. Concurrent claimants of one
  row serialize on its row lock (SQLite: on ``BEGIN IMMEDIATE``) and the loser's ``WHERE``
  no longer matches. A "claim any next job" primitive would want ``SKIP LOCKED``; the
  jobboard API claims a given job, for which the conditional update is exact.
* release: the row is read ``FOR UPDATE`` (SQLite: under ``BEGIN IMMEDIATE``), checked
  (owner, token), then deleted (consume) or updated (abandon, trash).
* post: one ``INSERT``; the auto-increment key is the "oldest first" sequence.

A holder paused between two statements of a transaction (SIGSTOP, a frozen VM) keeps its
row locks, and the server cannot tell it from a slow one: on PostgreSQL the board's sessions
set ``idle_in_transaction_session_timeout`` to the lease (one second at least), so the
server ends such a transaction, and the job is claimable again, within about a lease.

Waking waiters (:meth:`SQLStore.wait_changed`): PostgreSQL writers ``pg_notify`` a channel
of the schema and namespace in the same transaction (delivered on commit) and the waiter
``LISTEN``\\ s on a connection of its own; SQLite's waiter polls ``PRAGMA data_version``
(which changes when another connection commits) every 10 ms; other databases poll a digest
of the namespace's rows every 50 ms. Writes through this store also wake its own waiter at
once.

The schema is managed by Alembic (``migrations/``) with its own version table
(``taskflow_jobs_alembic_version``), so it lives beside the persistence schema in one
database without touching that schema's revision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from taskflow import exceptions as exc
from taskflow._jobs import postings
from taskflow._jobs.board import lease_from_conf
from taskflow._jobs.store import Listing, Outcome, TrashEntry
from taskflow.persistence.backends._sqlalchemy import dialects

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from taskflow._jobs.store import Posting

__all__ = ["CONF_KEYS", "HEAD", "JOBS", "SQLStore"]

LOG = logging.getLogger("taskflow.jobs")

#: The board's own keys (beyond the SQL engine's, see ``impl_sqlalchemy``); removed from the
#: URI's query before the driver sees it.
CONF_KEYS = frozenset(("board", "connection", "namespace", "lease"))
#: This chain's head revision (a test checks it matches the scripts).
HEAD = "5c1e0a7b2d41"
_VERSION_TABLE = "taskflow_jobs_alembic_version"
_SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
_LIVE, _TRASHED = "live", "trashed"
_PAST = {Outcome.CONSUME: "consumed", Outcome.ABANDON: "abandoned", Outcome.TRASH: "trashed"}

_METADATA = sa.MetaData()
_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")
#: The jobs table as queries see it (the migration creates it).
JOBS = sa.Table(
    "taskflow_jobs",
    _METADATA,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("uuid", sa.String(64), nullable=False),
    sa.Column("priority", sa.SmallInteger(), nullable=False),
    sa.Column("posting", _TEXT, nullable=False),
    sa.Column("owner", sa.String(255)),
    sa.Column("token", sa.BigInteger(), nullable=False),
    sa.Column("lease_expires", sa.Double()),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", _TEXT),
    sa.Column("modified", sa.Double()),
)
_ENTITIES = sa.Table(
    "taskflow_job_entities",
    _METADATA,
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("metadata", _TEXT, nullable=False),
    sa.Column("modified", sa.Double()),
)


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Driver errors -> JobFailure naming the operation (the one place this happens)."""
    try:
        yield
    except (sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as err:
        raise exc.JobFailure(f"SQL jobboard could not {what}: {err}") from err


def _time(epoch: Any) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(float(epoch), UTC)


class _Kind:
    """What differs between databases for the board (engine setup is the persistence
    backend's :mod:`~taskflow.persistence.backends._sqlalchemy.dialects`)."""

    #: The database clock in epoch seconds, as SQL.
    now_sql: ClassVar[str] = "CAST(UNIX_TIMESTAMP(SYSDATE(6)) AS DOUBLE)"
    #: Whether row locks are taken with ``SELECT ... FOR UPDATE``.
    for_update: ClassVar[bool] = True
    #: Seconds between two polls of the digest.
    poll_interval: ClassVar[float] = 0.05

    def __init__(self, store: SQLStore) -> None:
        self.store = store
        self.now: sa.ColumnElement[float] = sa.literal_column(self.now_sql, sa.Double())
        self._digest: Any = None

    def configure(self, engine: sa.Engine) -> None:
        """Called at connect, before the engine opens its first connection."""

    def start(self, conn: sa.Connection) -> None:
        """Called at connect, on a connection inside a transaction."""

    def notify(self, conn: sa.Connection) -> None:
        """Signal other processes' waiters, in the transaction of a write."""

    def stop(self) -> None:
        """Release what :meth:`start` and :meth:`wait_changed` opened."""

    def interrupt(self) -> None:
        """Wake a :meth:`wait_changed` blocked in another thread."""
        self.store._wake.set()

    def wait_changed(self, timeout: float) -> bool:
        """Polls a digest of the namespace's rows; a change in it is a change."""
        deadline = time.monotonic() + timeout
        while True:
            digest = self.store._digest()
            if digest != self._digest:
                self._digest = digest
                return True
            if self.store._local_wake(deadline, self.poll_interval):
                return True
            if time.monotonic() >= deadline:
                return False


class _SQLite(_Kind):
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    for_update = False  # BEGIN IMMEDIATE already holds the database's write lock
    poll_interval = 0.01

    def __init__(self, store: SQLStore) -> None:
        super().__init__(store)
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def start(self, conn: sa.Connection) -> None:
        path = conn.engine.url.database
        if path not in (None, "", ":memory:"):
            # A connection of the waiter's own that never writes: its data_version changes
            # exactly when some other connection commits.
            waiter = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn = waiter
            self._version = self._read_version()

    def _read_version(self) -> int:
        assert self._conn is not None
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def wait_changed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._conn is not None:
                version = self._read_version()
                if version != self._version:
                    self._version = version
                    return True
            if self.store._local_wake(deadline, self.poll_interval):
                return True
            if time.monotonic() >= deadline:
                return False


class _PostgreSQL(_Kind):
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"

    def __init__(self, store: SQLStore) -> None:
        super().__init__(store)
        self.channel = ""
        self._listener: Any = None
        self._lock = threading.Lock()

    def configure(self, engine: sa.Engine) -> None:
        # Every session of the board's (pool and listener): a transaction left idle longer
        # than a lease is ended by the server, with its locks (see the module docstring).
        timeout = round(max(self.store.lease, 1.0) * 1000)

        def on_connect(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"SET idle_in_transaction_session_timeout = {timeout}")
            finally:
                cursor.close()
            dbapi_connection.commit()

        sa.event.listen(engine, "connect", on_connect)

    def start(self, conn: sa.Connection) -> None:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        key = f"{schema}:{self.store.namespace}".encode()
        self.channel = "taskflow_jobs_" + hashlib.sha1(key).hexdigest()[:20]
        self._listen()

    def _listen(self) -> None:
        raw = self.store.engine.raw_connection()
        listener = raw.driver_connection
        assert listener is not None
        raw.detach()  # kept for LISTEN, never returned to the pool
        listener.autocommit = True
        listener.execute(f'LISTEN "{self.channel}"')
        self._listener = listener

    def notify(self, conn: sa.Connection) -> None:
        conn.execute(sa.select(sa.func.pg_notify(self.channel, "")))

    def interrupt(self) -> None:
        # The listener blocks in the driver: a notification is what wakes it.
        with contextlib.suppress(Exception), self.store.engine.begin() as conn:
            self.notify(conn)

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def wait_changed(self, timeout: float) -> bool:
        if self._listener is None:
            self._listen()
            return True  # notifications sent while we were not listening are lost
        try:
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
        except Exception:
            self.stop()  # reconnect on the next call
            raise
        return False


_KINDS: dict[str, type[_Kind]] = {"sqlite": _SQLite, "postgresql": _PostgreSQL}


def _validate_conf(conf: Mapping[str, Any]) -> tuple[str, sa.URL, str]:
    """(board kind, database URL without our keys, namespace) from ``conf``.

    Raises:
        ValueError: a missing or malformed key, named.
    """
    board = str(conf.get("board") or "")
    connection = conf.get("connection")
    if not connection and "://" in board:
        connection = board
    if not connection or not isinstance(connection, str):
        raise ValueError(
            "SQL jobboard needs 'connection', a database URI (sqlite:///path, postgresql://...)"
        )
    try:
        url = sa.make_url(connection)
    except sa.exc.ArgumentError as err:
        raise ValueError(f"'connection' is not a database URI: {connection!r}") from err
    kind = board.split("://", 1)[0].split("+", 1)[0] if board else url.get_backend_name()
    if kind and kind != url.get_backend_name():
        raise ValueError(
            f"'board' is {kind!r} but 'connection' is a {url.get_backend_name()!r} database"
        )
    namespace = conf.get("namespace", "taskflow")
    if not isinstance(namespace, str) or not namespace or len(namespace) > 255:
        raise ValueError(f"'namespace' must be a non-empty string (255 at most), not {namespace!r}")
    return kind, url.difference_update_query(CONF_KEYS), namespace


class SQLStore:
    """A :class:`~taskflow._jobs.store.BoardStore` on one SQL database.

    Args:
        conf: the board's configuration (see ``taskflow.jobs.backends.impl_sqlalchemy``);
            checked here, before anything connects.
    """

    def __init__(self, conf: Mapping[str, Any]) -> None:
        kind, url, self.namespace = _validate_conf(conf)
        #: Seconds a claim lasts without renewal (the board's ``lease``).
        self.lease = lease_from_conf(conf)
        #: The database, for messages (no password).
        self.where = url.render_as_string(hide_password=True)
        # The SQL engine's own keys (pool, timeouts...) go to the persistence dialects.
        self._engine_conf: dict[str, Any] = {
            key: value for key, value in conf.items() if key in dialects.CONF_KEYS
        }
        self._engine_conf["connection"] = url.render_as_string(hide_password=False)
        # Probe the engine options now, so a bad one is reported at construction.
        dialects.for_name(kind)(self._engine_conf)
        self.engine: sa.Engine = None  # type: ignore[assignment]  # set by connect()
        self._dialect: dialects.Dialect | None = None
        self._kind: _Kind | None = None
        self._wake = threading.Event()
        # Decoded postings by uuid, with the (seq, text) they were decoded from: a posting
        # never changes once written, and decoding (JSON, schema check) is most of what a
        # listing costs. Replaced by every listing, so it never outgrows the board.
        self._decoded: dict[str, tuple[int, Any, Posting]] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def connect(self, timeout: float) -> None:
        conf = dict(self._engine_conf)
        conf.setdefault("connect_timeout", timeout)
        engine, dialect = dialects.create_engine(conf)
        kind = _KINDS.get(dialect.name, _Kind)(self)
        kind.configure(engine)
        self.engine, self._dialect, self._kind = engine, dialect, kind
        try:
            with _translate(f"connect to {self.where}"):
                _upgrade(engine, dialect)
                with self._tx(write=False, what="connect") as conn:
                    kind.start(conn)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        kind, self._kind = self._kind, None
        if kind is not None:
            kind.stop()
        if self.engine is not None:
            self.engine.dispose()
        self._wake.set()

    @contextlib.contextmanager
    def _tx(self, write: bool, what: str) -> Iterator[sa.Connection]:
        """One transaction (SQLite writers: ``BEGIN IMMEDIATE``), committed on success."""
        if self._dialect is None or self._kind is None:
            raise exc.JobFailure(f"SQL jobboard on {self.where} is not connected")
        with _translate(what), self.engine.connect() as conn:
            self._dialect.begin(conn, write)
            try:
                yield conn
                conn.commit()
            finally:
                if conn.in_transaction():
                    with contextlib.suppress(Exception):
                        conn.rollback()
        if write:
            self._wake.set()

    def _where(self, uuid: str) -> Any:
        return sa.and_(JOBS.c.namespace == self.namespace, JOBS.c.uuid == uuid)

    @property
    def now(self) -> Any:
        assert self._kind is not None
        return self._kind.now

    # -- reading --------------------------------------------------------------------------------

    def _select(self) -> sa.Select[Any]:
        c = JOBS.c
        return sa.select(
            c.seq, c.uuid, c.posting, c.owner, c.token, c.attempts, c.lease_expires,
            c.modified, c.reason, self.now.label("now"),
        )  # fmt: skip

    def _decode(self, row: Any) -> Posting | None:
        seq = int(row.seq)
        cached = self._decoded.get(row.uuid)
        if cached is not None and cached[0] == seq and cached[1] == row.posting:
            return cached[2]
        where = f"{row.uuid!r} (seq {row.seq}) of namespace {self.namespace!r} in {self.where}"
        posting = postings.decode(row.posting, where, seq)
        if posting is not None and posting.uuid != row.uuid:
            LOG.warning("Skipping malformed job record %s: it holds job %r", where, posting.uuid)
            return None
        if posting is not None:
            self._decoded[row.uuid] = (seq, row.posting, posting)
        return posting

    def _listing(self, row: Any) -> Listing | None:
        posting = self._decode(row)
        if posting is None:
            return None
        lapsed = row.owner is not None and (
            row.lease_expires is None or float(row.lease_expires) <= float(row.now)
        )
        owner = None if lapsed else row.owner
        return Listing(
            posting=posting,
            owner=owner,
            token=None if owner is None else int(row.token),
            attempts=int(row.attempts) + lapsed,
            last_modified=_time(row.modified),
        )

    def listings(self) -> list[Listing]:
        query = self._select().where(JOBS.c.namespace == self.namespace, JOBS.c.status == _LIVE)
        with self._tx(write=False, what="list jobs") as conn:
            rows = conn.execute(query).all()
        listings = [listing for row in rows if (listing := self._listing(row)) is not None]
        decoded = self._decoded
        self._decoded = {row.uuid: decoded[row.uuid] for row in rows if row.uuid in decoded}
        return listings

    def get(self, uuid: str) -> Listing | None:
        query = self._select().where(self._where(uuid), JOBS.c.status == _LIVE)
        with self._tx(write=False, what=f"read job {uuid}") as conn:
            row = conn.execute(query).first()
        return None if row is None else self._listing(row)

    def trash(self) -> list[TrashEntry]:
        query = (
            self._select()
            .where(JOBS.c.namespace == self.namespace, JOBS.c.status == _TRASHED)
            .order_by(JOBS.c.modified, JOBS.c.seq)
        )
        with self._tx(write=False, what="list the trash") as conn:
            rows = conn.execute(query).all()
        entries = []
        for row in rows:
            posting = self._decode(row)
            if posting is not None:
                entries.append(
                    TrashEntry(posting, row.reason, int(row.attempts), _time(row.modified))
                )
        return entries

    def _digest(self) -> tuple[Any, ...]:
        c = JOBS.c
        query = sa.select(
            sa.func.count(), sa.func.max(c.seq), sa.func.sum(c.token), sa.func.sum(c.attempts)
        ).where(c.namespace == self.namespace, c.status == _LIVE)
        with self._tx(write=False, what="poll for changes") as conn:
            return tuple(conn.execute(query).one())

    # -- writing --------------------------------------------------------------------------------

    def post(self, posting: Posting) -> Posting:
        text = postings.encode(posting)  # unstorable details fail before any write
        assert self._kind is not None
        insert = sa.insert(JOBS).values(
            namespace=self.namespace,
            uuid=posting.uuid,
            priority=posting.priority.rank,
            posting=text,
            token=0,
            attempts=0,
            status=_LIVE,
        )
        with self._tx(write=True, what=f"post job {posting.name!r}") as conn:
            key = conn.execute(insert).inserted_primary_key
            assert key is not None
            sequence = key[0]
            self._kind.notify(conn)
        return dataclasses.replace(posting, sequence=int(sequence))

    def claim(self, uuid: str, owner: str, lease: float) -> int:
        c, now = JOBS.c, self.now
        assert self._kind is not None
        # MySQL assigns left to right, reading already-updated columns: attempts first.
        update = (
            sa.update(JOBS)
            .where(
                self._where(uuid),
                c.status == _LIVE,
                sa.or_(c.owner.is_(None), c.lease_expires.is_(None), c.lease_expires <= now),
            )
            .ordered_values(
                (c.attempts, c.attempts + sa.case((c.owner.is_(None), 0), else_=1)),
                (c.token, c.token + 1),
                (c.owner, owner),
                (c.lease_expires, now + lease),
                (c.modified, now),
            )
        )
        with self._tx(write=True, what=f"claim job {uuid}") as conn:
            if self._kind.for_update:
                # A row another claimant (or its holder's release) has locked right now is
                # skipped, not waited for: that claim is as good as taken, and conductors
                # racing for the head of the board move on at once instead of queueing.
                locked = sa.select(c.uuid).where(self._where(uuid), c.status == _LIVE)
                if conn.execute(locked.with_for_update(skip_locked=True)).first() is None:
                    row = conn.execute(
                        sa.select(c.owner, c.status).where(self._where(uuid))
                    ).first()
                    if row is None or row.status != _LIVE:
                        raise exc.NotFound(f"Job {uuid} not found to be claimed")
                    raise exc.UnclaimableJob(f"Job {uuid} is being claimed or released")
            if conn.execute(update).rowcount == 1:
                token = conn.execute(sa.select(c.token).where(self._where(uuid))).scalar_one()
                self._kind.notify(conn)
                return int(token)
            row = conn.execute(sa.select(c.owner, c.status).where(self._where(uuid))).first()
        if row is None or row.status != _LIVE:
            raise exc.NotFound(f"Job {uuid} not found to be claimed")
        raise exc.UnclaimableJob(f"Job {uuid} already claimed by {row.owner}")

    def renew(self, uuid: str, owner: str, token: int, lease: float) -> bool:
        c = JOBS.c
        update = (
            sa.update(JOBS)
            .where(self._where(uuid), c.status == _LIVE, c.owner == owner, c.token == token)
            .values(lease_expires=self.now + lease)
        )
        with self._tx(write=False, what=f"renew the claim on job {uuid}") as conn:
            # A renewal needs no write lock up front (SQLite: a plain BEGIN upgrades on the
            # write), and wakes nobody: nothing a waiter looks for changed.
            return bool(conn.execute(update).rowcount == 1)

    def release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None:
        c, now, verb = JOBS.c, self.now, outcome.value
        assert self._kind is not None
        query = sa.select(c.owner, c.token, c.lease_expires, now.label("now")).where(
            self._where(uuid), c.status == _LIVE
        )
        if self._kind.for_update:
            query = query.with_for_update()
        with self._tx(write=True, what=f"{verb} job {uuid}") as conn:
            row = conn.execute(query).first()
            if row is None:
                raise exc.NotFound(f"Job {uuid} not found to be {_PAST[outcome]}")
            live = row.lease_expires is not None and float(row.lease_expires) > float(row.now)
            if row.owner is None or not (live or token == row.token):
                raise exc.NotFound(
                    f"Can not {verb} job {uuid} which we can not determine the owner of"
                )
            if row.owner != owner:
                raise exc.JobFailure(
                    f"Can not {verb} job {uuid} which is not owned by {owner}"
                    f" (it is actively owned by {row.owner})"
                )
            if token is not None and token != row.token:
                raise exc.JobFailure(
                    f"Can not {verb} job {uuid}: the claim of {owner} with token {token} was"
                    f" lost (the job is now claimed with token {row.token})"
                )
            where = self._where(uuid)
            if outcome is Outcome.CONSUME:
                conn.execute(sa.delete(JOBS).where(where))
            elif outcome is Outcome.ABANDON:
                conn.execute(
                    sa.update(JOBS)
                    .where(where)
                    .values(owner=None, lease_expires=None, attempts=c.attempts + 1, modified=now)
                )
            else:
                conn.execute(
                    sa.update(JOBS)
                    .where(where)
                    .values(
                        owner=None, lease_expires=None, status=_TRASHED, reason=reason, modified=now
                    )
                )
            self._kind.notify(conn)

    def register_entity(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        e = _ENTITIES.c
        where = sa.and_(e.namespace == self.namespace, e.kind == kind, e.name == name)
        text = json.dumps(metadata, default=str)
        with self._tx(write=True, what=f"register {kind} {name!r}") as conn:
            conn.execute(sa.delete(_ENTITIES).where(where))
            conn.execute(
                sa.insert(_ENTITIES).values(
                    namespace=self.namespace, kind=kind, name=name, metadata=text, modified=self.now
                )
            )

    # -- waiting --------------------------------------------------------------------------------

    def interrupt(self) -> None:
        kind = self._kind
        if kind is not None:
            kind.interrupt()

    def wait_changed(self, timeout: float) -> bool:
        kind = self._kind
        if kind is None:
            raise exc.JobFailure(f"SQL jobboard on {self.where} is not connected")
        with _translate("wait for changes"):
            return kind.wait_changed(timeout)

    def _local_wake(self, deadline: float, interval: float) -> bool:
        """Sleep up to ``interval`` (not past ``deadline``); True if this store wrote."""
        left = deadline - time.monotonic()
        if self._wake.wait(max(0.0, min(interval, left))):
            self._wake.clear()
            return True
        return False


def _current_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table(_VERSION_TABLE):
        return None
    rows = conn.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()
    return rows[0] if rows else None


def _upgrade(engine: sa.Engine, dialect: dialects.Dialect) -> None:
    """Create or migrate the jobboard tables to :data:`HEAD` (idempotent, concurrency-safe).

    Raises:
        taskflow.exceptions.JobFailure: the tables are at a revision this taskflow does
            not know (a newer one upgraded them). Driver errors propagate.
    """
    with engine.connect() as conn:
        dialect.begin(conn, write=False)
        current = _current_revision(conn)
        conn.rollback()
        if current == HEAD:
            return
        dialect.begin(conn, write=True)
        dialect.lock_for_upgrade(conn)
        try:
            current = _current_revision(conn)  # again, under the lock
            if current not in (None, HEAD):
                raise exc.JobFailure(
                    f"Jobboard tables are at revision {current!r}, which this taskflow does"
                    f" not know (its newest is {HEAD!r}): a newer taskflow upgraded them"
                )
            if current is None:
                from alembic import command
                from alembic.config import Config

                config = Config()
                config.set_main_option("script_location", _SCRIPTS)
                config.set_main_option("version_table", _VERSION_TABLE)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
            conn.commit()
        finally:
            if conn.in_transaction():
                conn.rollback()
            dialect.unlock_after_upgrade(conn)
            conn.commit()
