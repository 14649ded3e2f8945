"""What only SQL boards do: configuration, URIs, namespaces, schema, connect errors."""

from __future__ import annotations

import contextlib
import os
import time

import pytest

from taskflow import exceptions as exc
from taskflow.jobs import backends
from tests.helpers import services
from tests.helpers.network import silent_server

sa = services.need_module("sqlalchemy", "database")
sql = services.need_module("taskflow._jobs.sql", "database")
impl = services.need_module("taskflow.jobs.backends.impl_sqlalchemy", "database")


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.mark.parametrize(
    "conf",
    [
        lambda url: url,
        lambda url: {"board": url},
        lambda url: {"board": "sqlite", "connection": url},
        lambda url: {"connection": url, "board": "sqlite", "namespace": "x", "lease": "2.5"},
    ],
)
def test_fetch_forms(db_url, conf):
    with backends.backend("b", conf(db_url)) as board:
        assert isinstance(board, impl.SQLAlchemyJobBoard)
        assert board.connected
        board.post("j")
        assert board.job_count == 1
    assert not board.connected


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"board": "sqlite"}, "'connection'"),
        ({"board": "sqlite", "connection": "::nonsense"}, "'connection'"),
        ({"board": "postgresql", "connection": "sqlite:///x.db"}, "'board'"),
        ({"board": "sqlite", "connection": "sqlite:///x.db", "namespace": ""}, "'namespace'"),
        ({"board": "sqlite", "connection": "sqlite:///x.db", "lease": "soon"}, "'lease'"),
        ({"board": "sqlite", "connection": "sqlite:///x.db", "lease": 0}, "'lease'"),
        ({"board": "sqlite", "connection": "sqlite:///x.db", "lease": "nan"}, "'lease'"),
        (
            {"board": "sqlite", "connection": "sqlite:///x.db", "connect_timeout": "x"},
            "connect_timeout",
        ),
    ],
)
def test_bad_conf_names_the_key(conf, key):
    with pytest.raises(ValueError, match=key):
        backends.fetch("b", conf)


def test_unwritable_sqlite_path_is_a_job_failure(tmp_path):
    board = backends.fetch("b", f"sqlite:///{tmp_path / 'missing' / 'dir' / 'jobs.db'}")
    with pytest.raises(exc.JobFailure, match="could not connect"):
        board.connect()
    assert not board.connected


@pytest.mark.postgres
def test_unreachable_server_fails_within_the_connect_timeout(postgres_url):
    # A closed port and a server that accepts and never answers (loopback both): bounded.
    with silent_server() as silent_port:
        for port in (9, silent_port):
            url = sa.make_url(postgres_url).set(host="127.0.0.1", port=port)
            conf = {"board": url.render_as_string(hide_password=False), "connect_timeout": 1}
            board = backends.fetch("b", conf)
            started = time.monotonic()
            with pytest.raises(exc.JobFailure):
                board.connect()
            assert time.monotonic() - started < 10


def test_namespaces_keep_boards_apart(db_url):
    with (
        backends.backend("a", {"board": db_url, "namespace": "a"}) as a,
        backends.backend("b", {"board": db_url, "namespace": "b"}) as b,
    ):
        job = a.post("only-in-a")
        assert [j.name for j in a.iterjobs()] == ["only-in-a"]
        assert list(b.iterjobs()) == []
        with pytest.raises(exc.NotFound):
            b.claim(job, "me")


def test_tables_live_beside_the_persistence_schema(db_url):
    from taskflow.persistence.backends import impl_sqlalchemy as persistence

    backend = persistence.SQLAlchemyBackend({"connection": db_url})
    with backend, backend.get_connection() as conn:
        conn.upgrade()
    with backends.backend("b", db_url) as board:
        board.post("j")
    with backend, backend.get_connection() as conn:
        conn.upgrade()  # still at its own revision: nothing to do, nothing refused
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as c:
            revisions = {
                table: c.exec_driver_sql(f"SELECT version_num FROM {table}").scalar_one()
                for table in ("alembic_version", "taskflow_jobs_alembic_version")
            }
    finally:
        engine.dispose()
    assert revisions == {
        "alembic_version": "00af93df9d77",
        "taskflow_jobs_alembic_version": sql.HEAD,
    }


def test_head_is_the_newest_migration_script():
    versions = os.path.join(os.path.dirname(sql.__file__), "migrations", "versions")
    scripts = [name for name in os.listdir(versions) if name.endswith(".py")]
    assert [name.split("_", 1)[0] for name in scripts] == [sql.HEAD]


def test_a_newer_schema_is_refused(db_url):
    with backends.backend("b", db_url):
        pass
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as c:
            c.exec_driver_sql("UPDATE taskflow_jobs_alembic_version SET version_num = 'ffffffff'")
    finally:
        engine.dispose()
    board = backends.fetch("b", db_url)
    with pytest.raises(exc.JobFailure, match="newer taskflow"):
        board.connect()


def test_a_new_waiter_on_sqlite_sees_a_post_from_another_process_connection(db_url):
    # data_version polling: a board object that never writes is woken by another's commit.
    with backends.backend("w", db_url) as waiter, backends.backend("p", db_url) as poster:
        seen = waiter.generation
        poster.post("j")
        assert waiter.wait_generation(seen, 30)


@pytest.mark.postgres
def test_a_claim_skips_a_job_row_another_transaction_has_locked(postgres_url):
    # SELECT ... FOR UPDATE SKIP LOCKED: a claimant racing another for the same job moves on
    # at once (UnclaimableJob) instead of queueing behind the other's transaction.
    from tests.helpers.databases import isolated_postgres

    with isolated_postgres(postgres_url) as url, backends.backend("b", {"board": url}) as board:
        job = board.post("contended")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as other:
                other.exec_driver_sql(
                    "SELECT uuid FROM taskflow_jobs WHERE uuid = %(uuid)s FOR UPDATE",
                    {"uuid": job.uuid},
                )  # held until this block ends (the connection's transaction is open)
                started = time.monotonic()
                with pytest.raises(exc.UnclaimableJob):
                    board.claim(job, "me")
                assert time.monotonic() - started < 5  # not stuck behind the lock
                other.rollback()
            board.claim(job, "me")  # once the other transaction ended, as usual
            assert board.find_owner(job) == "me"
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_a_holder_paused_inside_a_transaction_keeps_its_job_no_longer_than_its_lease(
    postgres_url,
):
    # A holder whose process stops (SIGSTOP, a frozen VM) between two statements of one of
    # its board's transactions keeps the job's row locked: its kernel still answers TCP, so
    # the server sees nothing wrong. Its sessions end such a transaction after a lease
    # (idle_in_transaction_session_timeout), so the job is claimable again within the lease.
    from tests.helpers.databases import isolated_postgres

    with isolated_postgres(postgres_url) as url:
        conf = {"board": url, "lease": 1.0}
        with backends.backend("holder", conf) as holder, backends.backend("rival", conf) as rival:
            job = holder.post("held")
            holder.claim(job, "holder")
            frozen = holder.store.engine.connect()  # a session of the holder's own
            try:
                frozen.begin()
                frozen.execute(
                    sa.select(sql.JOBS.c.uuid).where(sql.JOBS.c.uuid == job.uuid).with_for_update()
                )
                holder.close()  # and the holder's heartbeat stops, as the whole process does
                started = time.monotonic()
                while True:
                    try:
                        rival.claim(job, "rival")
                        break
                    except exc.UnclaimableJob:
                        assert time.monotonic() - started < 1.0 + 3.0, "still locked"
                        time.sleep(0.05)
                assert rival.find_owner(job) == "rival"
            finally:
                with contextlib.suppress(sa.exc.DBAPIError):
                    frozen.close()  # the server ended its session (or the test failed)
