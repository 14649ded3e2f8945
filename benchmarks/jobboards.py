"""Jobboard and conductor workloads, one per process; prints a single JSON line with results.

Usage::

    python benchmarks/jobboards.py jobs --board KIND [--tasks N] [--conductors C]
                                   [--kind blocking|nonblocking]
    python benchmarks/jobboards.py pickup --board KIND [--tasks N]

``KIND`` is ``sqlite``, ``postgresql``, ``redis``, ``zookeeper`` or ``etcd``. ``run.py``
starts this file under our interpreter (this repository's ``src/`` first on ``PYTHONPATH``)
or under the upstream TaskFlow environment's; it starts its conductors as child processes of
the same interpreter and file (``python jobboards.py conductor ...``), so they import the
same TaskFlow. Only the public API is used: ``taskflow.jobs.backends.fetch``,
``taskflow.conductors.backends.fetch``, logbooks in a persistence backend and
``engines.save_factory_details``, as upstream's conductors expect. Each job's book holds one
flow detail whose factory is this module's :func:`make_flow` (one task) and whose
``meta['store']`` holds the job's number; every process runs this file as ``__main__``, so
the factory's name (``__main__.make_flow``) resolves in the conductors.

Workloads:
    jobs    throughput. ``N`` jobs (default 300) are posted first; then ``C`` conductor
            processes (default 2, ``blocking``), each with its own board and its own
            persistence backend on one SQLite file, connected and warmed up (one flow run
            in-process), are told to go at once. The time is from that moment until the
            last job is consumed (the ``job_consumed`` event of the conductor that consumed
            it); jobs/s = N / that time. CPU per job: the CPU time (user + system, every
            thread) the conductor processes spent from the go until each one's last
            consume, summed, over N. Memory growth per job: the conductors' resident set
            size at their last consume minus at the go, summed, over N. Counted correct
            only if every job ran its task once, was consumed, its flow detail is SUCCESS
            and the board is empty.
    pickup  the latency of an idle conductor. One blocking conductor process runs and has
            finished two warm-up jobs; then ``N`` times (default 40): wait a random 100 to
            600 ms (seeded; longer than upstream's 0.5 s poll period, so each post lands at
            a random phase of it), post one job, and measure from ``post()`` returning in
            this process to the job's task starting in the conductor (both read
            ``time.time()``), then wait until the job is consumed. Reports the median and
            the 95th percentile.

Boards: a new one per run, removed afterwards. ``sqlite``: a file in a temporary directory
(ours only). ``postgresql``: a new schema (``search_path`` through ``PGOPTIONS``, as in
``workloads.py``) in ``TASKFLOW_BENCH_POSTGRES_URL`` (ours only). ``redis``: a new
``namespace`` on ``TASKFLOW_BENCH_REDIS`` (``host:port``, default ``127.0.0.1:6379``).
``zookeeper``: a new ``path`` under a new root on ``TASKFLOW_BENCH_ZK_HOSTS`` (default
``127.0.0.1:2181``). ``etcd``: a new ``path`` on ``TASKFLOW_BENCH_ETCD`` (default
``127.0.0.1:2379``). Every board keeps its defaults (lease, wait timeout...), and each
implementation gets the same configuration.

``TASKFLOW_BENCH_PROFILE=DIR`` makes each conductor process write the cProfile statistics of
its run loop (the thread that claims and, for blocking conductors, runs the jobs) to
``DIR/<conductor name>.prof``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from typing import IO, TYPE_CHECKING, Any

import taskflow
from taskflow import engines, states, task
from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as board_backends
from taskflow.patterns import linear_flow
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models

if TYPE_CHECKING:
    from collections.abc import Iterator

BOARDS = ("sqlite", "postgresql", "redis", "zookeeper", "etcd")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Seconds anything this workload waits for may take before it gives up.
PATIENCE = 300.0
#: The idle gap before each pickup measurement, in seconds (uniform; seeded).
PICKUP_GAP = (0.1, 0.6)
PICKUP_SEED = 9


# --------------------------------------------------------------------------- the flow


class Stamp(task.Task):
    """The job's one task: reports on stdout when it starts (a conductor's stdout is a pipe
    to the workload process). A negative ``seq`` (the warm-up run) reports nothing."""

    def execute(self, seq: int) -> int:
        if seq >= 0:
            _emit({"start": seq, "t": time.time(), "pid": os.getpid()})
        return seq


def make_flow() -> linear_flow.Flow:
    """The flow every job runs (saved as ``__main__.make_flow`` with each job's flow detail)."""
    flow = linear_flow.Flow("bench-job")
    flow.add(Stamp(name="stamp"))
    return flow


def _emit(line: dict[str, Any]) -> None:
    # One write per line: the task (in a pool thread of a non-blocking conductor) and the
    # notifier callbacks may write at once, and a short write to a pipe is atomic.
    os.write(1, (json.dumps(line) + "\n").encode())


def _rss_bytes() -> int:
    """The current resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# --------------------------------------------------------------------------- boards


class BoardSite:
    """A board of the run's own on one service: its configuration and its removal."""

    def __init__(self, kind: str, directory: str) -> None:
        self.kind = kind
        tag = f"tfbench-{uuid.uuid4().hex[:12]}"
        self.tag = tag
        self.env: dict[str, str] = {}
        if kind == "sqlite":
            path = os.path.join(directory, "board.db")
            self.conf: dict[str, Any] = {"board": "sqlite", "connection": f"sqlite:///{path}"}
        elif kind == "postgresql":
            self.url = os.environ.get("TASKFLOW_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL
            self.schema = tag.replace("-", "_")
            self._postgres(f"CREATE SCHEMA {self.schema}")
            # libpq reads it on every connect, in this process and the conductors alike.
            self.env["PGOPTIONS"] = f"-c search_path={self.schema}"
            self.conf = {"board": "postgresql", "connection": self.url, "namespace": self.schema}
        elif kind == "redis":
            host, port = _host_port(os.environ.get("TASKFLOW_BENCH_REDIS"), 6379)
            self.conf = {"board": "redis", "host": host, "port": port, "namespace": tag}
        elif kind == "zookeeper":
            self.hosts = os.environ.get("TASKFLOW_BENCH_ZK_HOSTS") or "127.0.0.1:2181"
            self.conf = {"board": "zookeeper", "hosts": self.hosts, "path": f"/{tag}/jobs"}
        elif kind == "etcd":
            host, port = _host_port(os.environ.get("TASKFLOW_BENCH_ETCD"), 2379)
            self.conf = {"board": "etcd", "host": host, "port": port, "path": tag}
        else:
            raise ValueError(f"unknown board {kind!r}")
        os.environ.update(self.env)

    def _postgres(self, statement: str) -> None:
        import sqlalchemy as sa  # both implementations' SQL backends need it anyway

        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as conn:
                # An idle connection some board left open must not hang the run.
                conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                conn.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def remove(self) -> None:
        """Delete everything the run left on the service."""
        conf = self.conf
        if self.kind == "postgresql":
            self._postgres(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        elif self.kind == "redis":
            import redis

            client = redis.Redis(host=conf["host"], port=conf["port"], socket_timeout=10)
            try:
                keys = list(client.scan_iter(match=f"{self.tag}*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
        elif self.kind == "zookeeper":
            from kazoo.client import KazooClient

            zk = KazooClient(hosts=self.hosts)
            zk.start(timeout=10)
            try:
                zk.delete(f"/{self.tag}", recursive=True)
            finally:
                zk.stop()
                zk.close()
        elif self.kind == "etcd":
            from etcd3gw.client import Etcd3Client

            etcd = Etcd3Client(host=conf["host"], port=conf["port"], timeout=10)
            try:
                for root in ("/taskflow/jobs/", "/taskflow/.trash/", "/taskflow/.entities/"):
                    etcd.delete_prefix(f"{root}{self.tag}")
            finally:
                etcd.session.close()


def _host_port(address: str | None, port: int) -> tuple[str, int]:
    if not address:
        return "127.0.0.1", port
    host, _, given = address.rpartition(":") if ":" in address else (address, "", "")
    return host, int(given) if given else port


@contextlib.contextmanager
def _site(kind: str) -> Iterator[tuple[BoardSite, str]]:
    """(a new board, the URI of a new SQLite persistence file with its schema), removed after."""
    directory = tempfile.mkdtemp(prefix="taskflow-bench-jobs-")
    try:
        site = BoardSite(kind, directory)
        try:
            url = f"sqlite:///{os.path.join(directory, 'flows.db')}"
            backend = persistence_backends.fetch({"connection": url})
            try:
                with contextlib.closing(backend.get_connection()) as conn:
                    conn.upgrade()
            finally:
                backend.close()
            yield site, url
        finally:
            site.remove()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- conductors


class Conductors:
    """Conductor processes of this interpreter and file; their JSON lines go to one queue."""

    def __init__(self, board_conf: dict[str, Any], persistence: str) -> None:
        self.board_conf = board_conf
        self.persistence = persistence
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def start(self, count: int, kind: str) -> None:
        for i in range(count):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "conductor",
                    "--name",
                    f"bench-conductor-{i}",
                    "--kind",
                    kind,
                    "--board-conf",
                    json.dumps(self.board_conf),
                    "--persistence",
                    self.persistence,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(i, proc.stdout), daemon=True).start()
        ready = 0
        while ready < count:
            if self.next().get("ready"):
                ready += 1

    def _read(self, index: int, stream: IO[str] | None) -> None:
        assert stream is not None
        for text in stream:
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if isinstance(line, dict):
                    line["conductor"] = index
                    self.lines.put(line)
        self.lines.put({"exited": index})

    def next(self, timeout: float = PATIENCE) -> dict[str, Any]:
        """The next line of any conductor (raises if one exits or nothing comes in time)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no word from the conductors within {timeout:g} s") from None
        if "exited" in line:
            code = self.procs[line["exited"]].wait()
            raise RuntimeError(f"conductor {line['exited']} exited with status {code}")
        if "error" in line:
            raise RuntimeError(f"conductor {line['conductor']}: {line['error']}")
        return line

    def tell(self, word: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(word + "\n")
            proc.stdin.flush()

    def stop(self) -> list[dict[str, Any]]:
        """Stop every conductor; their final reports."""
        self.tell("stop")
        reports = []
        while len(reports) < len(self.procs):
            line = self.next()
            if line.get("done"):
                reports.append(line)
        for proc in self.procs:
            proc.wait(timeout=60)
        return reports

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def conductor_main(args: argparse.Namespace) -> int:
    """A conductor process: set up, say ready, run on ``go``, stop on ``stop``, report."""
    try:
        persistence = persistence_backends.fetch({"connection": args.persistence})
        board = board_backends.fetch(
            args.name, json.loads(args.board_conf), persistence=persistence
        )
        board.connect()
        conductor = conductor_backends.fetch(args.kind, args.name, board, persistence=persistence)
        # Lazy imports and first-use costs of the engine are paid before the go.
        engines.run(make_flow(), store={"seq": -1})
        last: dict[str, Any] = {}

        def finished(event: str, details: dict[str, Any]) -> None:
            job = details["job"]
            now = {"t": time.time(), "cpu": time.process_time(), "rss": _rss_bytes()}
            last.update(now)
            _emit({"event": event, "job": job.name, **now})

        for event in ("job_consumed", "job_abandoned", "job_trashed"):
            conductor.notifier.register(event, finished)
        _emit({"ready": True, "pid": os.getpid()})
        for word in sys.stdin:
            if word.strip() == "go":
                break
        start = {"t": time.time(), "cpu": time.process_time(), "rss": _rss_bytes()}
        run = conductor.run
        profile_dir = os.environ.get("TASKFLOW_BENCH_PROFILE")
        if profile_dir:
            import cProfile

            def run() -> None:
                profiler = cProfile.Profile()
                profiler.runcall(conductor.run)
                profiler.dump_stats(os.path.join(profile_dir, f"{args.name}.prof"))

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        for word in sys.stdin:
            if word.strip() == "stop":
                break
        conductor.stop()
        stopped = conductor.wait(30)
        runner.join(30)
        board.close()
        persistence.close()
        _emit({"done": True, "stopped": stopped, "start": start, "last": last or None})
    except Exception as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    return 0


# --------------------------------------------------------------------------- posting


def _prepare(persistence: Any, seq: int) -> models.LogBook:
    """Save a book with one flow detail (factory :func:`make_flow`, store ``seq``)."""
    book = models.LogBook(f"bench-{seq}")
    flow_detail = models.FlowDetail(f"bench-flow-{seq}", uuid=str(uuid.uuid4()))
    flow_detail.meta["store"] = {"seq": seq}
    book.add(flow_detail)
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    engines.save_factory_details(flow_detail, make_flow, (), {}, backend=persistence)
    return book


def _check(persistence: Any, board: Any, books: list[models.LogBook]) -> dict[str, Any]:
    """What the run left: flow states in persistence, jobs on the board."""
    with contextlib.closing(persistence.get_connection()) as conn:
        flow_states = [next(iter(conn.get_logbook(book.uuid))).state for book in books]
    return {
        "flows_success": sum(1 for s in flow_states if s == states.SUCCESS),
        "jobs_left": len(list(board.iterjobs(ensure_fresh=True))),
    }


def bench_jobs(kind: str, n: int, conductors: int, conductor_kind: str) -> dict[str, Any]:
    with _site(kind) as (site, url):
        persistence = persistence_backends.fetch({"connection": url})
        board = board_backends.fetch("bench-poster", site.conf, persistence=persistence)
        board.connect()
        fleet = Conductors(site.conf, url)
        try:
            books = [_prepare(persistence, seq) for seq in range(n)]
            posting = time.perf_counter()
            for seq, book in enumerate(books):
                board.post(f"bench-job-{seq}", book=book)
            posting = time.perf_counter() - posting
            fleet.start(conductors, conductor_kind)
            go = time.time()
            fleet.tell("go")
            starts: dict[int, int] = {}
            events: dict[str, int] = {}
            last = go
            while events.get("job_consumed", 0) < n:
                line = fleet.next()
                if "start" in line:
                    starts[line["start"]] = starts.get(line["start"], 0) + 1
                elif "event" in line:
                    events[line["event"]] = events.get(line["event"], 0) + 1
                    if line["event"] != "job_consumed":
                        raise RuntimeError(f"a job ended {line['event']}: {line['job']}")
                    last = max(last, line["t"])
            reports = fleet.stop()
        finally:
            fleet.kill()
        stored = _check(persistence, board, books)
        board.close()
        persistence.close()
    seconds = last - go
    cpu = sum(r["last"]["cpu"] - r["start"]["cpu"] for r in reports if r["last"])
    growth = sum(r["last"]["rss"] - r["start"]["rss"] for r in reports if r["last"])
    ok = (
        len(starts) == n
        and stored["flows_success"] == n
        and stored["jobs_left"] == 0
        and all(r["stopped"] for r in reports)
    )
    return {
        "seconds": seconds,
        "jobs_per_second": n / seconds,
        "cpu_per_job": cpu / n,
        "rss_growth_per_job": growth / n,
        "post_seconds": posting,
        "executed": sum(starts.values()),
        "stored": stored,
        "per_conductor": [{k: r[k] for k in ("start", "last", "stopped")} for r in reports],
        "ok": ok,
    }


def bench_pickup(kind: str, n: int, warmups: int = 2) -> dict[str, Any]:
    rng = random.Random(PICKUP_SEED)
    with _site(kind) as (site, url):
        persistence = persistence_backends.fetch({"connection": url})
        board = board_backends.fetch("bench-poster", site.conf, persistence=persistence)
        board.connect()
        fleet = Conductors(site.conf, url)
        latencies: list[float] = []
        books: list[models.LogBook] = []
        try:
            fleet.start(1, "blocking")
            fleet.tell("go")
            for seq in range(warmups + n):
                book = _prepare(persistence, seq)
                books.append(book)
                time.sleep(rng.uniform(*PICKUP_GAP))
                board.post(f"bench-job-{seq}", book=book)
                posted = time.time()
                started = None
                while True:
                    line = fleet.next(timeout=60)
                    if line.get("start") == seq:
                        started = line["t"]
                    elif "event" in line:
                        if line["event"] != "job_consumed" or line["job"] != f"bench-job-{seq}":
                            raise RuntimeError(f"unexpected {line['event']} of {line['job']}")
                        break
                if started is None:
                    raise RuntimeError(f"job {seq} was consumed but its task never started")
                if seq >= warmups:
                    latencies.append(started - posted)
            reports = fleet.stop()
        finally:
            fleet.kill()
        stored = _check(persistence, board, books)
        board.close()
        persistence.close()
    ordered = sorted(latencies)
    p95 = statistics.quantiles(ordered, n=20, method="inclusive")[18] if n > 1 else ordered[0]
    return {
        "seconds": statistics.median(ordered),
        "median": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
        "min": ordered[0],
        "samples": [round(x, 6) for x in latencies],
        "stored": stored,
        "ok": stored["flows_success"] == len(books)
        and stored["jobs_left"] == 0
        and all(r["stopped"] for r in reports),
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", choices=["jobs", "pickup", "conductor"])
    parser.add_argument("--board", choices=BOARDS, default="sqlite")
    parser.add_argument("--tasks", type=int, help="jobs (default: jobs 300, pickup 40)")
    parser.add_argument("--conductors", type=int, default=2, help="jobs only")
    parser.add_argument("--kind", choices=["blocking", "nonblocking"], default="blocking")
    # A conductor process's own arguments (set by the workload that starts it).
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--board-conf", help=argparse.SUPPRESS)
    parser.add_argument("--persistence", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload == "conductor":
        return conductor_main(args)
    n: int = args.tasks or (300 if args.workload == "jobs" else 40)
    report: dict[str, Any] = {
        "workload": args.workload,
        "board": args.board,
        "tasks": n,
        "kind": args.kind if args.workload == "jobs" else "blocking",
        "taskflow_file": taskflow.__file__,
        "python": sys.version.split()[0],
    }
    try:
        if args.workload == "jobs":
            report.update(bench_jobs(args.board, n, args.conductors, args.kind))
        else:
            report.update(bench_pickup(args.board, n))
    except Exception as exc:  # the runner shows the error in its table and moves on
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        print(json.dumps(report), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
