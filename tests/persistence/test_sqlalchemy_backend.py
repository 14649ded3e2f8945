"""The SQL backend beyond the shared contract: configuration, SQLite settings, migrations,
databases written by upstream TaskFlow 6.5, error mapping and the hot path."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from taskflow import engines, retry, states, task
from taskflow import exceptions as exc
from taskflow._serialization import UnstorableValue
from taskflow.patterns import linear_flow
from taskflow.persistence import backends, models
from taskflow.types.failure import Failure
from tests.helpers import services
from tests.helpers.databases import isolated_mysql, isolated_postgres

if TYPE_CHECKING:
    from collections.abc import Iterator

sa = services.need_module("sqlalchemy", "database")
impl_sqlalchemy = services.need_module("taskflow.persistence.backends.impl_sqlalchemy", "database")
migration = services.need_module("taskflow.persistence.backends._sqlalchemy.migration", "database")

FIXTURES = Path(__file__).parent / "fixtures"
UPSTREAM_DB = FIXTURES / "upstream_sqlite.db"
UPSTREAM_BOOK = "0b6a3c2e-5a8f-4d7e-9a51-7d3f0c1b2a01"
UPSTREAM_FLOW = "4f1e2d3c-6b5a-4c8d-8e7f-9a0b1c2d3e02"
TABLES = ("logbooks", "flowdetails", "atomdetails")
#: Beside upstream's schema (not migrated, so upstream engines share the database): who owns
#: each running flow.
OWNERS = "taskflow_owners"


def _backend(path: Path, **conf) -> impl_sqlalchemy.SQLAlchemyBackend:
    return impl_sqlalchemy.SQLAlchemyBackend({"connection": f"sqlite:///{path}", **conf})


def _upgraded(path: Path, **conf) -> impl_sqlalchemy.SQLAlchemyBackend:
    backend = _backend(path, **conf)
    with backend.get_connection() as conn:
        conn.upgrade()
    return backend


def _saved_atom(backend) -> tuple[models.FlowDetail, models.TaskDetail]:
    book = models.LogBook("book")
    fd = models.FlowDetail("flow", str(uuid.uuid4()))
    ad = models.TaskDetail("task", str(uuid.uuid4()))
    ad.state = states.PENDING
    fd.add(ad)
    book.add(fd)
    with backend.get_connection() as conn:
        conn.save_logbook(book)
    return fd, ad


def _schema_sql(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'").fetchall()
    db.close()
    return dict(rows)


@pytest.fixture
def mysql_db(mysql_url):
    """A MySQL database of this test's own (see ``tests.helpers.databases``)."""
    with isolated_mysql(mysql_url) as url:
        yield url


@pytest.fixture
def postgres_db(postgres_url):
    """A PostgreSQL schema of this test's own (see ``tests.helpers.databases``)."""
    with isolated_postgres(postgres_url) as url:
        yield url


@pytest.fixture
def upstream_copy(tmp_path) -> Path:
    """A private copy of the database upstream TaskFlow 6.5 wrote (the fixture stays intact)."""
    path = tmp_path / "upstream.db"
    shutil.copyfile(UPSTREAM_DB, path)
    return path


# -- plugin and configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "driver"),
    [
        ("sqlite:///{tmp}/a.db", "sqlite"),
        ("postgresql://user@127.0.0.1/db", "postgresql+psycopg"),
        ("postgresql+psycopg://user@127.0.0.1/db", "postgresql+psycopg"),
        ("mysql://user@127.0.0.1/db", "mysql+pymysql"),
        ("mysql+pymysql://user@127.0.0.1/db", "mysql+pymysql"),
    ],
)
def test_fetch_picks_the_sql_backend_and_driver(tmp_path, uri, driver):
    backend = backends.fetch(uri.format(tmp=tmp_path))
    with backend:
        assert isinstance(backend, impl_sqlalchemy.SQLAlchemyBackend)
        assert backend.engine.url.drivername == driver


def test_missing_driver_names_the_extra():
    with pytest.raises(ImportError, match=r"taskflow\[mysql\]"):
        backends.fetch("mysql+mysqldb://user@127.0.0.1/db")


def test_pool_options_come_from_the_configuration(tmp_path):
    conf = {
        "idle_timeout": "17",
        "max_pool_size": 3,
        "max_overflow": "2",
        "pool_timeout": 4.5,
        "checkout_ping": "true",
        "echo": "false",
    }
    with _backend(tmp_path / "a.db", **conf) as backend:
        pool = backend.engine.pool
        assert isinstance(pool, sa.pool.QueuePool)
        assert (pool._recycle, pool.size(), pool._max_overflow, pool._timeout) == (17, 3, 2, 4.5)
        assert pool._pre_ping is True
        assert backend.engine.echo is False
    with _backend(tmp_path / "b.db") as backend:
        assert backend.engine.pool._recycle == 3600
        assert backend.engine.pool._pre_ping is False


def test_options_given_in_the_uri_configure_and_do_not_reach_the_driver(tmp_path):
    uri = f"sqlite:///{tmp_path}/a.db?sqlite_synchronous=full&idle_timeout=5&max_retries=1"
    with backends.backend(uri) as backend:
        assert backend.engine.url.query == {}
        assert backend.engine.pool._recycle == 5
        with backend.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_engine_args_are_passed_and_win(tmp_path):
    with _backend(tmp_path / "a.db", engine_args={"pool_recycle": 9, "echo": True}) as backend:
        assert backend.engine.pool._recycle == 9
        assert backend.engine.echo is True


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        _backend(tmp_path / "a.db", sqlite_synchronous="sometimes")
    with pytest.raises(ValueError, match="max_retries"):
        _backend(tmp_path / "a.db", max_retries=-1)


def test_given_engine_is_used_and_not_disposed(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/a.db")
    backend = impl_sqlalchemy.SQLAlchemyBackend({}, engine=engine)
    with backend.get_connection() as conn:
        conn.upgrade()
        conn.save_logbook(models.LogBook("b"))
    assert backend.engine is engine
    backend.close()
    with engine.connect() as conn:  # still usable
        assert conn.exec_driver_sql("SELECT count(*) FROM logbooks").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_log_statements_logs_the_hot_update(tmp_path, caplog):
    backend = _upgraded(tmp_path / "a.db", log_statements=True, log_statements_level="INFO")
    with backend:
        _, ad = _saved_atom(backend)
        caplog.set_level(logging.INFO, logger="taskflow.persistence.backends")
        caplog.clear()
        with backend.get_connection() as conn:
            conn.update_atom_details(ad)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("UPDATE atomdetails" in m for m in messages)


def test_checkin_yield_hook_is_registered_only_when_asked(tmp_path):
    from taskflow.persistence.backends._sqlalchemy import dialects

    with _backend(tmp_path / "a.db", checkin_yield=True) as backend:
        assert sa.event.contains(backend.engine, "checkin", dialects._yield_on_checkin)
    with _backend(tmp_path / "b.db") as backend:
        assert not sa.event.contains(backend.engine, "checkin", dialects._yield_on_checkin)


# -- SQLite settings --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "expected"), [(None, 1), ("normal", 1), ("full", 2)])
def test_sqlite_pragmas_in_effect(tmp_path, mode, expected):
    conf = {} if mode is None else {"sqlite_synchronous": mode}
    with _upgraded(tmp_path / "a.db", sqlite_busy_timeout=2.5, **conf) as backend:
        with backend.engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == expected  # 1 = NORMAL, 2 = FULL
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 2500


def test_sqlite_foreign_keys_cascade(tmp_path):
    with _upgraded(tmp_path / "a.db") as backend:
        _saved_atom(backend)
        with backend.engine.connect() as conn:
            conn.exec_driver_sql("DELETE FROM logbooks")
            assert conn.exec_driver_sql("SELECT count(*) FROM atomdetails").scalar() == 0


def test_in_memory_sqlite_is_shared_by_connections():
    with backends.backend("sqlite://") as backend:
        _, ad = _saved_atom(backend)
        with backend.get_connection() as other:
            assert other.get_atom_details(ad.uuid).name == "task"


# -- migrations -------------------------------------------------------------------------------


def test_head_constant_matches_the_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", migration.SCRIPT_LOCATION)
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_heads() == [migration.HEAD]
    assert scripts.get_base() == migration.BASE == "00af93df9d77"


def test_upgrade_of_an_empty_database_creates_upstreams_schema(tmp_path, upstream_copy):
    with _upgraded(tmp_path / "a.db") as backend:
        with backend.get_connection() as conn:
            conn.upgrade()  # idempotent
    ours = _schema_sql(tmp_path / "a.db")
    upstream = _schema_sql(upstream_copy)
    assert set(ours) == {*TABLES, "alembic_version", OWNERS}
    # Same tables, column for column, as upstream's create_all makes them.
    assert {t: ours[t] for t in TABLES} == {t: upstream[t] for t in TABLES}
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migration.HEAD,)
        ]
    db.close()


def test_upgrade_adopts_an_upstream_database_without_changing_it(upstream_copy):
    before = _schema_sql(upstream_copy)
    assert "alembic_version" not in before
    with _upgraded(upstream_copy) as backend:
        with backend.get_connection() as conn:
            conn.upgrade()
    after = _schema_sql(upstream_copy)
    assert {t: after[t] for t in TABLES} == before
    with sqlite3.connect(upstream_copy) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migration.BASE,)
        ]
        assert db.execute("SELECT count(*) FROM atomdetails").fetchone() == (8,)
    db.close()


def test_upgrade_refuses_a_partial_schema(tmp_path):
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE logbooks (uuid VARCHAR(64) PRIMARY KEY)")
    db.close()
    with _backend(path) as backend, backend.get_connection() as conn:
        with pytest.raises(exc.StorageFailure, match="not \\['atomdetails', 'flowdetails'\\]"):
            conn.upgrade()


def test_upgrade_refuses_tables_missing_columns(tmp_path, upstream_copy):
    with sqlite3.connect(upstream_copy) as db:
        db.execute("ALTER TABLE atomdetails DROP COLUMN revert_failure")
    db.close()
    with _backend(upstream_copy) as backend, backend.get_connection() as conn:
        with pytest.raises(exc.StorageFailure, match="revert_failure"):
            conn.upgrade()


def test_upgrade_refuses_an_unknown_revision(tmp_path):
    path = tmp_path / "a.db"
    with _upgraded(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    db.close()
    with _backend(path) as backend, backend.get_connection() as conn:
        with pytest.raises(exc.StorageFailure, match="feedfacecafe"):
            conn.upgrade()


def test_known_revisions_match_the_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", migration.SCRIPT_LOCATION)
    scripts = ScriptDirectory.from_config(config)
    assert {script.revision for script in scripts.walk_revisions()} == migration.REVISIONS


#: A revision no taskflow has: what a database upgraded by a newer taskflow holds.
NEWER = "feedfacecafe"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def newer_db(request, tmp_path) -> Iterator[str]:
    """The URL of a database a newer taskflow upgraded: our schema, stamped :data:`NEWER`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'newer.db'}"
        context: contextlib.AbstractContextManager[str] = contextlib.nullcontext(url)
    elif request.param == "postgres":
        context = isolated_postgres(request.getfixturevalue("postgres_url"))
    else:
        context = isolated_mysql(request.getfixturevalue("mysql_url"))
    with context as url:
        with backends.backend(url) as backend, backend.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": NEWER})
        yield url


def _newer_db_untouched(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (NEWER,)
            ]
            for table in TABLES:
                assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
            # The owners table is the fixture's (its upgrade ran before the newer stamp).
            assert set(sa.inspect(conn).get_table_names()) == {*TABLES, "alembic_version", OWNERS}
            assert conn.execute(sa.text(f"SELECT count(*) FROM {OWNERS}")).scalar() == 0
    finally:
        engine.dispose()


NEWER_MESSAGE = rf"revision '{NEWER}'.*newer taskflow"


def test_upgrade_and_validate_refuse_a_newer_schema(newer_db):
    with backends.fetch(newer_db) as backend, backend.get_connection() as conn:
        with pytest.raises(exc.StorageFailure, match=NEWER_MESSAGE):
            conn.upgrade()
        with pytest.raises(exc.StorageFailure, match=NEWER_MESSAGE):
            conn.validate()
    _newer_db_untouched(newer_db)


class _Nothing(task.Task):
    def execute(self) -> None:
        pass


def test_an_engine_run_refuses_a_newer_schema_before_any_write(newer_db):
    flow = linear_flow.Flow("f").add(_Nothing("a"))
    with backends.fetch(newer_db) as backend:
        with pytest.raises(exc.StorageFailure, match=NEWER_MESSAGE):
            engines.run(flow, backend=backend, book=models.LogBook("b"))
        with backend.get_connection() as conn, pytest.raises(exc.StorageFailure, match=NEWER):
            conn.save_logbook(models.LogBook("b"))
    with pytest.raises(exc.StorageFailure, match=NEWER_MESSAGE):
        engines.run(flow, backend=newer_db, book=models.LogBook("b"))
    _newer_db_untouched(newer_db)


# -- databases written by upstream TaskFlow 6.5 -----------------------------------------------


def test_upstream_values_read_back(upstream_copy):
    with _upgraded(upstream_copy) as backend, backend.get_connection() as conn:
        book = conn.get_logbook(UPSTREAM_BOOK)
    assert book.name == "upstream-book"
    assert book.created_at is not None
    fd = book.find(UPSTREAM_FLOW)
    assert fd is not None
    assert fd.state == states.SUSPENDED
    atoms = {ad.name: ad for ad in fd}
    # Creation order is kept.
    assert list(atoms) == [
        "_TaskFlow_INJECTOR",
        "source",
        "flaky",
        "attempts",
        "pair",
        "stop",
        "mul",
        "final",
    ]
    assert atoms["_TaskFlow_INJECTOR"].results == {"start": 1}
    assert atoms["pair"].results == [20, "pair"]  # upstream stored the tuple as a list
    assert atoms["stop"].results == {"seen": 20, "nested": [1, {"k": None}]}
    assert atoms["source"].meta == {"progress": 1.0}
    assert (atoms["mul"].state, atoms["mul"].results) == (states.PENDING, None)
    retry_detail = atoms["attempts"]
    assert isinstance(retry_detail, models.RetryDetail)
    assert [value for value, _ in retry_detail.results] == [1, 2]
    failure = retry_detail.results[0][1]["flaky"]
    assert isinstance(failure, Failure)
    assert failure.check(RuntimeError) is RuntimeError
    assert failure.exception_str == "flaky failed on attempt 1"
    assert retry_detail.results[1][1] == {}


class _Step(task.Task):
    """Runs ``fn`` on its arguments and records that it ran."""

    def __init__(self, name, fn, provides, requires, ran):
        super().__init__(name, provides=provides, requires=requires)
        self._fn = fn
        self._ran = ran

    def execute(self, **kwargs):
        self._ran.append(self.name)
        return self._fn(**kwargs)


def _upstream_fixture_flow(ran: list[str]):
    """The flow ``fixtures/make_upstream_sqlite.py`` ran, rebuilt atom name for atom name."""
    inner = linear_flow.Flow("retrying", retry=retry.Times(3, "attempts", provides="attempt"))
    inner.add(_Step("flaky", lambda x, attempt: x * 10, "y", ["x", "attempt"], ran))
    return linear_flow.Flow("upstream-fixture").add(
        _Step("source", lambda start: start + 1, "x", ["start"], ran),
        inner,
        _Step("pair", lambda y: (y, "pair"), "pair", ["y"], ran),
        _Step("stop", lambda y: {"seen": y}, "stopped", ["y"], ran),
        _Step("mul", lambda y: y * 3, "z", ["y"], ran),
        _Step("final", lambda z, pair: [z, pair], "result", ["z", "pair"], ran),
    )


def test_upstream_database_resumes_on_our_engine(upstream_copy):
    ran: list[str] = []
    with _upgraded(upstream_copy) as backend:
        with backend.get_connection() as conn:
            book = conn.get_logbook(UPSTREAM_BOOK)
        fd = book.find(UPSTREAM_FLOW)
        engine = engines.load(
            _upstream_fixture_flow(ran), flow_detail=fd, book=book, backend=backend
        )
        engine.run()
        # Only what upstream left PENDING ran, on values upstream stored.
        assert ran == ["mul", "final"]
        assert engine.storage.fetch("result") == [60, [20, "pair"]]
        with backend.get_connection() as conn:
            stored = conn.get_flow_details(UPSTREAM_FLOW)
    assert stored.state == states.SUCCESS
    atoms = {ad.name: ad for ad in stored}
    assert {ad.state for ad in atoms.values()} == {states.SUCCESS}
    assert atoms["final"].results == [60, [20, "pair"]]
    assert atoms["attempts"].results[0][1]["flaky"].check(RuntimeError) is RuntimeError


# -- errors -----------------------------------------------------------------------------------


def test_unreachable_database_is_a_storage_failure_without_endless_retries():
    # Port 1 on localhost: connection refused at once.
    conf = {"connection": "postgresql://nobody@127.0.0.1:1/none", "max_retries": 1}
    with impl_sqlalchemy.SQLAlchemyBackend(conf) as backend, backend.get_connection() as conn:
        started = time.monotonic()
        with pytest.raises(exc.StorageFailure) as caught:
            conn.validate()
        assert time.monotonic() - started < 10
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
        with pytest.raises(exc.StorageFailure):
            conn.upgrade()
        with pytest.raises(exc.StorageFailure):
            list(conn.get_logbooks())
        with pytest.raises(exc.StorageFailure):
            conn.update_atom_details(models.TaskDetail("t", str(uuid.uuid4())))


def test_unusable_sqlite_path_is_a_storage_failure(tmp_path):
    with _backend(tmp_path / "missing" / "dir" / "a.db") as backend, backend.get_connection() as c:
        with pytest.raises(exc.StorageFailure):
            c.upgrade()


class _Opaque:
    pass


def test_unstorable_result_raises_type_error_before_writing(tmp_path):
    with _upgraded(tmp_path / "a.db") as backend:
        fd, ad = _saved_atom(backend)
        ad.put(states.SUCCESS, {"fine": 1})
        with backend.get_connection() as conn:
            conn.update_atom_details(ad)
            ad.put(states.SUCCESS, {"bad": _Opaque()})
            with pytest.raises(TypeError, match="_Opaque") as caught:
                conn.update_atom_details(ad)
            # The value's own error, not a database error wrapped as one.
            assert isinstance(caught.value, UnstorableValue)
            assert conn.get_atom_details(ad.uuid).results == {"fine": 1}

            # A flow save fails as a whole, before its first row is written.
            fd.state = states.RUNNING
            fd.add(models.TaskDetail("new", str(uuid.uuid4())))
            with pytest.raises(TypeError, match="_Opaque"):
                conn.update_flow_details(fd)
            stored = conn.get_flow_details(fd.uuid)
            assert stored.state is None
            assert [a.name for a in stored] == ["task"]

            book = models.LogBook("bad")
            book.meta = {"x": _Opaque()}
            with pytest.raises(TypeError, match="_Opaque"):
                conn.save_logbook(book)
            assert [b.name for b in conn.get_logbooks()] == ["book"]


def test_failure_with_unstorable_arguments_is_stored_without_them(tmp_path):
    with _upgraded(tmp_path / "a.db") as backend:
        _, ad = _saved_atom(backend)
        try:
            raise ValueError(_Opaque())
        except ValueError:
            ad.put(states.FAILURE, Failure())
        with backend.get_connection() as conn:
            conn.update_atom_details(ad)
            stored = conn.get_atom_details(ad.uuid)
    assert stored.failure is not None
    assert stored.failure.check(ValueError) is ValueError


# -- the hot path -----------------------------------------------------------------------------


def test_update_atom_details_is_one_update_statement(tmp_path):
    backend = _upgraded(tmp_path / "a.db")
    statements: list[str] = []

    @sa.event.listens_for(backend.engine, "connect")
    def _trace(dbapi_conn, record):
        dbapi_conn.set_trace_callback(statements.append)

    with backend:
        backend.engine.dispose()  # new connections, traced from their first statement
        _, ad = _saved_atom(backend)
        ad.put(states.SUCCESS, 5)
        with backend.get_connection() as conn:
            conn.update_atom_details(ad)  # warm: compiles and checks out once
            statements.clear()
            ad.state = states.REVERTING
            returned = conn.update_atom_details(ad)
            assert returned is ad
            assert len(statements) == 1
            assert statements[0].startswith("UPDATE atomdetails SET")
            stored = conn.get_atom_details(ad.uuid)
    assert (stored.state, stored.results) == (states.REVERTING, 5)


def test_update_of_an_unknown_atom_writes_nothing_unless_asked(tmp_path):
    with _upgraded(tmp_path / "a.db") as backend, backend.get_connection() as conn:
        ghost = models.RetryDetail("ghost", str(uuid.uuid4()))
        with pytest.raises(exc.NotFound):
            conn.update_atom_details(ghost)
        with pytest.raises(exc.NotFound):
            conn.get_atom_details(ghost.uuid)
        ghost.put(states.SUCCESS, 3)
        assert conn.update_atom_details(ghost, ignore_missing=True) is ghost
        stored = conn.get_atom_details(ghost.uuid)
        assert isinstance(stored, models.RetryDetail)
        assert stored.last_results == 3


def test_update_flow_details_ignore_missing_creates_it(tmp_path):
    with _upgraded(tmp_path / "a.db") as backend, backend.get_connection() as conn:
        fd = models.FlowDetail("loose", str(uuid.uuid4()))
        fd.add(models.TaskDetail("t", str(uuid.uuid4())))
        conn.update_flow_details(fd, ignore_missing=True)
        assert [a.name for a in conn.get_atoms_for_flow(fd.uuid)] == ["t"]


@pytest.mark.mysql
def test_mysql_repeated_identical_update_is_not_missing(mysql_db):
    # MySQL counts changed rows by default; an identical rewrite must still count as found.
    with backends.backend(mysql_db) as backend:
        _, ad = _saved_atom(backend)
        with backend.get_connection() as conn, backend.engine.connect() as raw:
            # Upstream's second-precision column: rewrites within a second change nothing.
            raw.exec_driver_sql("ALTER TABLE atomdetails MODIFY updated_at DATETIME")
            for _ in range(3):
                assert conn.update_atom_details(ad) is ad


@pytest.mark.mysql
def test_mysql_session_settings(mysql_db):
    with backends.backend({"connection": mysql_db, "mysql_sql_mode": "ANSI_QUOTES"}) as backend:
        with backend.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() == "ANSI_QUOTES"
            assert conn.get_isolation_level() == "READ COMMITTED"
    with backends.backend(mysql_db) as backend, backend.engine.connect() as conn:
        assert "STRICT_ALL_TABLES" in conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar()


@pytest.mark.postgres
def test_postgres_isolation_levels(postgres_db):
    with backends.backend(postgres_db) as backend, backend.engine.connect() as conn:
        assert conn.get_isolation_level() == "READ COMMITTED"
    conf = {"connection": postgres_db, "isolation_levels": {"postgresql": "SERIALIZABLE"}}
    with backends.backend(conf) as backend, backend.engine.connect() as conn:
        assert conn.get_isolation_level() == "SERIALIZABLE"


_WRITER = """
import sys, time
from taskflow import states
from taskflow.persistence import backends

backend = backends.fetch({"connection": sys.argv[1], "sqlite_synchronous": sys.argv[2]})
conn = backend.get_connection()
ad = conn.get_atom_details(sys.argv[3])
ad.put(states.SUCCESS, {"written": "before the kill"})
conn.update_atom_details(ad)
print("written", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_update_survives_sigkill_right_after_returning(tmp_path, synchronous):
    path = tmp_path / "a.db"
    with _upgraded(path) as backend:
        _, ad = _saved_atom(backend)
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, f"sqlite:///{path}", synchronous, ad.uuid],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    with _backend(path) as backend, backend.get_connection() as conn:
        stored = conn.get_atom_details(ad.uuid)
    assert (stored.state, stored.results) == (states.SUCCESS, {"written": "before the kill"})


def test_empty_json_columns_are_stored_as_sql_null(tmp_path):
    # Upstream stores a missing result or failure as NULL; SQLite gets it through a
    # cheaper parameter than None, and the row must still hold NULL, not ''.
    path = tmp_path / "a.db"
    backend = _upgraded(path)
    with backend:
        _, ad = _saved_atom(backend)
        ad.put(states.SUCCESS, None)
        with backend.get_connection() as conn:
            conn.update_atom_details(ad)
        ad.put(states.FAILURE, Failure.from_exception(RuntimeError("boom")))
        with backend.get_connection() as conn:
            conn.update_atom_details(ad)
            stored = conn.get_atom_details(ad.uuid)
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT results, failure IS NOT NULL, revert_results, revert_failure"
            " FROM atomdetails WHERE uuid = ?",
            (ad.uuid,),
        ).fetchone()
    db.close()
    assert row == (None, 1, None, None)
    assert stored.results is None
    assert stored.failure is not None
