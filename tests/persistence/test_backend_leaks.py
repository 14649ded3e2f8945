"""Backends nobody closes do not leak: fetch, upgrade and run in a loop, as a script would.

Each cycle fetches a backend, upgrades it, runs a flow with it and drops it without
closing it. A dropped backend closes what it opened once it is garbage collected (an
engine that ran with it holds it in reference cycles, so only the collector frees it), and
the engine's collector tuning must not keep that garbage out of the collector's sight: it
used to freeze every object around each engine step, which left dropped backends, with
their open pools, to a full collection that hardly ever came. Two hundred cycles then ran
PostgreSQL out of connections and left hundreds of descriptors open on SQLite.

The bounds below are far under one leaked resource per cycle but leave room for the
backends the collector has not reached yet (and for SQLite, which keeps the descriptors of
a closed connection open while another connection of the process holds the same file).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, task
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends
from tests.helpers import services
from tests.helpers.databases import isolated_postgres, isolated_zookeeper_root

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd"
)


class Step(task.Task):
    def execute(self) -> int:
        return 1


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _cycles(conf: dict[str, Any], count: int) -> None:
    """The loop of a script that never closes its backends."""
    for _ in range(count):
        backend = backends.fetch(conf)
        with backend.get_connection() as conn:
            conn.upgrade()
        engines.run(lf.Flow("f").add(Step("a"), Step("b")), backend=backend)
        del backend, conn


def test_sqlite_backends_dropped_in_a_loop_leave_no_descriptors_open(tmp_path: Path) -> None:
    services.need_module("sqlalchemy", "database")
    conf = {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    _cycles(conf, 3)  # imports and caches
    gc.collect()
    before = _open_fds()
    _cycles(conf, 100)
    assert _open_fds() - before < 50  # two per cycle (database and WAL) before the fix


@pytest.mark.postgres
def test_postgres_backends_dropped_in_a_loop_leave_no_connections(postgres_url: str) -> None:
    sa = services.need_module("sqlalchemy", "postgresql")
    app = f"tf-leak-{uuid.uuid4().hex[:12]}"  # this test's sessions, whoever else is connected
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)

    def sessions() -> int:
        with admin.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %(app)s"
            return int(conn.exec_driver_sql(query, {"app": app}).scalar_one())

    with isolated_postgres(postgres_url) as url:
        url = sa.make_url(url).update_query_dict({"application_name": app})
        conf = {"connection": url.render_as_string(hide_password=False)}
        try:
            # Well under max_connections (100 by default): other tests share the server.
            _cycles(conf, 40)
            assert sessions() < 15  # one per cycle before the fix
        finally:
            gc.collect()  # whatever the outcome, give the server its connections back
            admin.dispose()


@pytest.mark.zookeeper
def test_zookeeper_backends_dropped_in_a_loop_stop_their_clients(zk_hosts: str) -> None:
    with isolated_zookeeper_root(zk_hosts) as root:
        conf = {"connection": "zookeeper", "hosts": zk_hosts, "path": root}
        _cycles(conf, 2)
        gc.collect()
        threads, fds = threading.active_count(), _open_fds()
        try:
            # Under ZooKeeper's 60 connections per client address (others share the server).
            _cycles(conf, 40)
            # Each client has its own threads and socket: three threads per cycle before.
            assert threading.active_count() - threads < 45
            assert _open_fds() - fds < 90
        finally:
            gc.collect()


def _dropped_backend_is_freed_at_once(conf: dict[str, Any]) -> None:
    """A backend used for a run is freed when its last reference goes, with no collection.

    The engine tuning the collector around its steps is harmless only if nothing of ours
    waits for the collector: the engine, its storage and the backend form no reference
    cycle, so dropping them frees them (and the backend's finalizer closes what it opened).
    """
    backend = backends.fetch(conf)
    with backend.get_connection() as conn:
        conn.upgrade()
    gone = weakref.ref(backend)
    enabled = gc.isenabled()
    gc.disable()
    try:
        engines.run(lf.Flow("f").add(Step("a"), Step("b")), backend=backend)
        del backend, conn
        assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
    finally:
        if enabled:
            gc.enable()


def test_a_dropped_sqlite_backend_is_freed_without_a_collection(tmp_path: Path) -> None:
    services.need_module("sqlalchemy", "database")
    _dropped_backend_is_freed_at_once({"connection": f"sqlite:///{tmp_path / 'flows.db'}"})


def test_a_dropped_directory_backend_is_freed_without_a_collection(tmp_path: Path) -> None:
    _dropped_backend_is_freed_at_once({"connection": "dir", "path": str(tmp_path / "books")})


@pytest.mark.zookeeper
def test_a_dropped_zookeeper_backend_is_freed_without_a_collection(zk_hosts: str) -> None:
    with isolated_zookeeper_root(zk_hosts) as root:
        threads = threading.active_count()
        _dropped_backend_is_freed_at_once(
            {"connection": "zookeeper", "hosts": zk_hosts, "path": root}
        )
        # Its finalizer stopped the client: the client's threads end (they are joined by
        # the finalizer's own thread, so give them a moment).
        deadline = time.monotonic() + 10
        while threading.active_count() > threads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads


@pytest.mark.postgres
def test_a_dropped_postgres_backend_is_freed_without_a_collection(postgres_url: str) -> None:
    services.need_module("sqlalchemy", "postgresql")
    with isolated_postgres(postgres_url) as url:
        _dropped_backend_is_freed_at_once({"connection": url})
