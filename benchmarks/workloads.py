"""One benchmark workload per process; prints a single JSON line with its results.

Usage::

    python benchmarks/workloads.py WORKLOAD [--tasks N] [--mode own|pool]
                                   [--store sqlite|postgres] [--sync normal|full] [--no-warmup]

``run.py`` starts this file once per measurement, under our interpreter (with this
repository's package importable) or under the upstream TaskFlow virtual environment's
interpreter. Only TaskFlow's public API is used, so the very same file measures both.

Every workload first imports TaskFlow and runs a tiny warm-up flow, so one-off costs
(lazy imports, plugin lookup) are not charged to the measurement. Peak memory is the
process's ``ru_maxrss``; ``rss_baseline`` is taken after imports and warm-up, so
``peak_delta`` is what the workload itself added.

Workloads:
    linear    a linear flow of no-op tasks run by ``engines.run`` (serial engine)
    floor     the plain-Python floor: the same ``execute()`` calls in a loop, results in a dict
    graph     a chain of tasks plus one fan-in task in a graph flow; times engine creation,
              ``compile()`` and ``prepare()`` (the flow is built outside the timed region)
    parallel  independent 10 ms sleeping tasks in an unordered flow on the parallel engine,
              with the engine's own pool (``--mode own``) or a stdlib executor (``--mode pool``)
    revert    a linear flow whose last task raises; times ``engines.run`` until the error
              surfaces after every other task has been reverted
    persist   the linear flow run by ``engines.run(flow, backend={'connection': URI})`` on an
              empty database: a new SQLite file (``--store sqlite``; ``--sync full`` adds
              ``sqlite_synchronous='full'``, a key only this project knows) or a new PostgreSQL
              schema (``--store postgres``, URI from ``TASKFLOW_BENCH_POSTGRES_URL``). The schema
              is created before the timed region; afterwards a new backend reopens the database
              and the run counts as correct only if every atom is stored as SUCCESS.
    persist_floor  the raw SQLite floor of ``persist``: two committed single-row ``UPDATE``
              statements per task through the stdlib ``sqlite3`` module, in WAL mode with
              ``synchronous`` NORMAL (``--sync normal``) or FULL (``--sync full``)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from typing import Any

import taskflow
from taskflow import engines, states, task
from taskflow.patterns import graph_flow, linear_flow, unordered_flow
from taskflow.persistence import backends

# Counters let the runner check that an implementation really did the work it was timed
# on; bumping an integer costs tens of nanoseconds, far below anything measured here.
_EXECUTED = [0]
_REVERTED = [0]
_COUNT_LOCK = threading.Lock()

SLEEP_SECONDS = 0.01
PARALLEL_WORKERS = 16
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: What ``PRAGMA synchronous`` reads back for each mode.
_SYNCHRONOUS = {"normal": 1, "full": 2}


class NoOp(task.Task):
    """A task that does nothing but count its calls."""

    def execute(self) -> None:
        _EXECUTED[0] += 1

    def revert(self, *args: Any, **kwargs: Any) -> None:
        _REVERTED[0] += 1


class Boom(NoOp):
    """The failing last task of the revert workload; its own revert is not counted."""

    def execute(self) -> None:
        raise RuntimeError("boom")

    def revert(self, *args: Any, **kwargs: Any) -> None:
        pass


class Passthrough(task.Task):
    """A task taking whatever its ``requires=`` names, used for the graph workload."""

    def execute(self, **kwargs: Any) -> None:
        return None


class Sleeper(task.Task):
    """A task that sleeps, so parallel throughput can be compared with the ideal."""

    def execute(self) -> None:
        time.sleep(SLEEP_SECONDS)
        with _COUNT_LOCK:  # runs in worker threads, where += could lose updates
            _EXECUTED[0] += 1


def _maxrss_bytes() -> int:
    # Linux reports kilobytes; macOS reports bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _linear_flow(n: int, fail_last: bool = False) -> linear_flow.Flow:
    flow = linear_flow.Flow("linear")
    tasks: list[task.Task] = [NoOp(name=f"t{i}") for i in range(n - 1 if fail_last else n)]
    if fail_last:
        tasks.append(Boom(name=f"t{n - 1}"))
    flow.add(*tasks)
    return flow


def _graph_flow(n: int) -> graph_flow.Flow:
    # Task i consumes x{i-1} and produces x{i}; the fan-in task consumes every x.
    tasks: list[task.Task] = [Passthrough(name="c0", provides="x0")]
    tasks.extend(
        Passthrough(name=f"c{i}", requires=[f"x{i - 1}"], provides=f"x{i}") for i in range(1, n)
    )
    tasks.append(Passthrough(name="fanin", requires=[f"x{i}" for i in range(n)]))
    flow = graph_flow.Flow("graph")
    flow.add(*tasks)
    return flow


def _sleepers(n: int) -> unordered_flow.Flow:
    flow = unordered_flow.Flow("parallel")
    flow.add(*[Sleeper(name=f"s{i}") for i in range(n)])
    return flow


class _SqliteStore:
    """Hands out new SQLite files in a private temporary directory, removed by ``close``."""

    def __init__(self, sync: str) -> None:
        self.sync = sync
        self.directory = tempfile.mkdtemp(prefix="taskflow-bench-")
        self.paths: dict[str, str] = {}

    def fresh(self, label: str) -> dict[str, Any]:
        """The backend configuration of a database file that does not exist yet."""
        path = self.paths[label] = os.path.join(self.directory, f"{label}.db")
        conf: dict[str, Any] = {"connection": f"sqlite:///{path}"}
        if self.sync == "full":
            conf["sqlite_synchronous"] = "full"
        return conf

    def inspect(self, label: str) -> dict[str, Any]:
        """What the file holds, read with the stdlib driver rather than the backend."""
        db = sqlite3.connect(self.paths[label])
        try:
            (journal,) = db.execute("PRAGMA journal_mode").fetchone()
            (rows,) = db.execute(
                "SELECT count(*) FROM atomdetails WHERE state = ?", (states.SUCCESS,)
            ).fetchone()
        finally:
            db.close()
        return {"journal_mode": journal, "rows_success": rows}

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class _PostgresStore:
    """Hands out new, empty PostgreSQL schemas, dropped by ``close``.

    libpq, under psycopg 3 and psycopg2 alike, reads ``PGOPTIONS`` whenever it opens a
    connection, so setting it points every connection either implementation opens from then
    on at the new schema, with no implementation-specific configuration.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa  # both implementations' SQL backends need it anyway

        self.url = url
        self.admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.schemas: dict[str, str] = {}

    def fresh(self, label: str) -> dict[str, Any]:
        schema = self.schemas[label] = f"tfbench_{label}_{uuid.uuid4().hex[:12]}"
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        os.environ["PGOPTIONS"] = f"-c search_path={schema}"
        return {"connection": self.url}

    def inspect(self, label: str) -> dict[str, Any]:
        schema = self.schemas[label]
        with self.admin.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT count(*) FROM {schema}.atomdetails WHERE state = %(s)s",
                {"s": states.SUCCESS},
            ).scalar_one()
        return {"schema": schema, "rows_success": rows}

    def close(self) -> None:
        try:
            with self.admin.begin() as conn:
                # An idle connection some backend left open must not hang the run.
                conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                for schema in self.schemas.values():
                    conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            self.admin.dispose()


_Store = _SqliteStore | _PostgresStore


def _upgrade(conf: dict[str, Any]) -> None:
    """Create the backend's schema in an empty database (outside any timed region)."""
    backend = backends.fetch(conf)
    try:
        conn = backend.get_connection()
        try:
            conn.upgrade()
        finally:
            conn.close()
    finally:
        backend.close()


def _stored(conf: dict[str, Any]) -> dict[str, Any]:
    """Reopen the database with a new backend and count what the run left there."""
    backend = backends.fetch(conf)
    try:
        conn = backend.get_connection()
        try:
            books = list(conn.get_logbooks())
        finally:
            conn.close()
    finally:
        backend.close()
    flows = [fd for book in books for fd in book]
    atoms = [ad for fd in flows for ad in fd]
    return {
        "books": len(books),
        "flows": len(flows),
        "flow_state": flows[0].state if len(flows) == 1 else None,
        "atoms": len(atoms),
        "atoms_success": sum(1 for ad in atoms if ad.state == states.SUCCESS),
    }


def _warm_up(workload: str, store: _Store | None = None) -> None:
    """Run a tiny flow of the same shape so lazy imports and plugin lookups happen now."""
    if workload == "persist" and store is not None:
        # A database of its own, so the measured run still starts from an empty one.
        conf = store.fresh("warmup")
        _upgrade(conf)
        engines.run(_linear_flow(3), backend=conf)
    elif workload == "linear":
        engines.run(_linear_flow(3))
    elif workload == "revert":
        with contextlib.suppress(RuntimeError):
            engines.run(_linear_flow(3, fail_last=True))
    elif workload == "graph":
        engine = engines.load(_graph_flow(3))
        engine.compile()
        engine.prepare()
    elif workload == "parallel":
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            engines.run(_sleepers(2), engine="parallel", executor=pool)
        engines.run(_sleepers(2), engine="parallel", max_workers=2)
    _EXECUTED[0] = 0
    _REVERTED[0] = 0


def bench_linear(n: int) -> dict[str, Any]:
    start = time.perf_counter()
    flow = _linear_flow(n)
    built = time.perf_counter()
    engines.run(flow)
    seconds = time.perf_counter() - built
    return {
        "seconds": seconds,
        "per_task": seconds / n,
        "build_seconds": built - start,
        "executed": _EXECUTED[0],
        "ok": _EXECUTED[0] == n,
    }


def bench_floor(n: int, loops: int = 51) -> dict[str, Any]:
    tasks: list[task.Task] = [NoOp(name=f"t{i}") for i in range(n)]
    timings = []
    for _ in range(loops):
        start = time.perf_counter()
        results: dict[str, Any] = {}
        for t in tasks:
            results[t.name] = t.execute()
        timings.append(time.perf_counter() - start)
    seconds = statistics.median(timings)
    return {
        "seconds": seconds,
        "per_task": seconds / n,
        "loops": loops,
        "ok": _EXECUTED[0] == n * loops,
    }


def bench_graph(n: int) -> dict[str, Any]:
    start = time.perf_counter()
    flow = _graph_flow(n)
    built = time.perf_counter()
    rss_after_build = _maxrss_bytes()
    engine = engines.load(flow)
    loaded = time.perf_counter()
    engine.compile()
    compiled = time.perf_counter()
    engine.prepare()
    prepared = time.perf_counter()
    return {
        "seconds": prepared - built,
        "per_task": (prepared - built) / n,
        "build_seconds": built - start,
        "load_seconds": loaded - built,
        "compile_seconds": compiled - loaded,
        "prepare_seconds": prepared - compiled,
        "rss_after_build": rss_after_build,
        "ok": True,
    }


def bench_parallel(n: int, mode: str) -> dict[str, Any]:
    flow = _sleepers(n)
    ideal = n * SLEEP_SECONDS / PARALLEL_WORKERS
    if mode == "own":
        start = time.perf_counter()
        engines.run(flow, engine="parallel", max_workers=PARALLEL_WORKERS)
        seconds = time.perf_counter() - start
    elif mode == "pool":
        # Created outside the timed region; its threads start lazily on first submit.
        with concurrent.futures.ThreadPoolExecutor(PARALLEL_WORKERS) as pool:
            start = time.perf_counter()
            engines.run(flow, engine="parallel", executor=pool)
            seconds = time.perf_counter() - start
    else:
        raise ValueError(f"unknown parallel mode {mode!r}")
    return {
        "seconds": seconds,
        "ideal_seconds": ideal,
        "fraction": ideal / seconds,
        "executed": _EXECUTED[0],
        "ok": _EXECUTED[0] == n,
    }


def bench_revert(n: int) -> dict[str, Any]:
    flow = _linear_flow(n, fail_last=True)
    raised: str | None = None
    start = time.perf_counter()
    try:
        engines.run(flow)
    except RuntimeError as exc:
        seconds = time.perf_counter() - start
        raised = f"{type(exc).__name__}: {exc}"
    else:
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "per_task": seconds / n,
        "raised": raised,
        "executed": _EXECUTED[0],
        "reverted": _REVERTED[0],
        "ok": raised == "RuntimeError: boom" and _REVERTED[0] == n - 1,
    }


def bench_persist(n: int, store: _Store) -> dict[str, Any]:
    conf = store.fresh("run")
    _upgrade(conf)
    flow = _linear_flow(n)
    start = time.perf_counter()
    engines.run(flow, backend=conf)
    seconds = time.perf_counter() - start
    stored = _stored(conf)
    stored.update(store.inspect("run"))
    ok = (
        _EXECUTED[0] == n
        and stored["books"] == 1
        and stored["flow_state"] == states.SUCCESS
        and stored["atoms"] == stored["atoms_success"] == stored["rows_success"] == n
    )
    return {
        "seconds": seconds,
        "per_task": seconds / n,
        "executed": _EXECUTED[0],
        "stored": stored,
        "ok": ok,
    }


def bench_persist_floor(n: int, store: _SqliteStore) -> dict[str, Any]:
    path = os.path.join(store.directory, "floor.db")
    # Autocommit: each UPDATE runs and commits as a transaction of its own.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {store.sync.upper()}")
        db.execute(
            "CREATE TABLE atoms (uuid TEXT PRIMARY KEY, state TEXT, result TEXT, updated_at REAL)"
        )
        ids = [str(uuid.uuid4()) for _ in range(n)]
        db.execute("BEGIN")
        db.executemany("INSERT INTO atoms (uuid, state) VALUES (?, 'PENDING')", [(i,) for i in ids])
        db.execute("COMMIT")
        update = "UPDATE atoms SET state = ?, result = ?, updated_at = ? WHERE uuid = ?"
        start = time.perf_counter()
        for atom in ids:
            db.execute(update, ("RUNNING", None, time.time(), atom))
            db.execute(update, ("SUCCESS", "null", time.time(), atom))
        seconds = time.perf_counter() - start
        (journal,) = db.execute("PRAGMA journal_mode").fetchone()
        (synchronous,) = db.execute("PRAGMA synchronous").fetchone()
    finally:
        db.close()
    check = sqlite3.connect(path)
    try:
        (done,) = check.execute("SELECT count(*) FROM atoms WHERE state = 'SUCCESS'").fetchone()
    finally:
        check.close()
    return {
        "seconds": seconds,
        "per_task": seconds / n,
        "commits": 2 * n,
        "stored": {"journal_mode": journal, "synchronous": synchronous, "rows_success": done},
        "ok": done == n and journal == "wal" and synchronous == _SYNCHRONOUS[store.sync],
    }


DEFAULT_TASKS = {
    "linear": 1000,
    "floor": 1000,
    "graph": 5000,
    "parallel": 256,
    "revert": 1000,
    "persist": 1000,
    "persist_floor": 1000,
}


def _open_store(args: argparse.Namespace) -> _Store | None:
    if args.workload == "persist_floor" or (args.workload == "persist" and args.store == "sqlite"):
        return _SqliteStore(args.sync)
    if args.workload == "persist":
        return _PostgresStore(os.environ.get("TASKFLOW_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", choices=sorted(DEFAULT_TASKS))
    parser.add_argument("--tasks", type=int, help="number of tasks (default per workload)")
    parser.add_argument("--mode", choices=["own", "pool"], default="own", help="parallel only")
    parser.add_argument(
        "--store", choices=["sqlite", "postgres"], default="sqlite", help="persist only"
    )
    parser.add_argument(
        "--sync", choices=["normal", "full"], default="normal", help="SQLite synchronous mode"
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up flow")
    args = parser.parse_args(argv)
    n: int = args.tasks or DEFAULT_TASKS[args.workload]
    report: dict[str, Any] = {
        "workload": args.workload,
        "tasks": n,
        "mode": args.mode if args.workload == "parallel" else None,
        "taskflow_file": taskflow.__file__,
        "python": sys.version.split()[0],
    }
    if args.workload.startswith("persist"):
        report["store"] = "sqlite" if args.workload == "persist_floor" else args.store
        report["sync"] = args.sync if report["store"] == "sqlite" else None
    store: _Store | None = None
    try:
        store = _open_store(args)
        if not args.no_warmup:
            _warm_up(args.workload, store)
        report["rss_baseline"] = _maxrss_bytes()
        if isinstance(store, _SqliteStore) and args.workload == "persist_floor":
            report.update(bench_persist_floor(n, store))
        elif store is not None:
            report.update(bench_persist(n, store))
        elif args.workload == "linear":
            report.update(bench_linear(n))
        elif args.workload == "floor":
            report.update(bench_floor(n))
        elif args.workload == "graph":
            report.update(bench_graph(n))
        elif args.workload == "parallel":
            report.update(bench_parallel(n, args.mode))
        else:
            report.update(bench_revert(n))
        report["peak_rss"] = _maxrss_bytes()
        report["peak_delta"] = report["peak_rss"] - report["rss_baseline"]
        if store is not None:
            store.close()
    except Exception as exc:  # the runner shows the error in its table and moves on
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()
        print(json.dumps(report), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
