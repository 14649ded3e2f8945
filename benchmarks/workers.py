"""Worker-based engine workloads, one per process; prints a single JSON line with results.

Usage::

    python benchmarks/workers.py wbe_rtt [--tasks N] [--workers W]
    python benchmarks/workers.py wbe_flow3 [--tasks N] [--runs R]
    python benchmarks/workers.py wbe_throughput [--tasks N] [--workers W] [--threads T]
                                                [--delay S]

``run.py`` starts this file under our interpreter (this repository's ``src/`` first on
``PYTHONPATH``) or under the upstream TaskFlow environment's; it starts its workers as child
processes of the same interpreter and file (``python workers.py worker ...``), so they import
the same TaskFlow. Every process runs this file as ``__main__``, so the task classes below
are ``__main__.Step`` and ``__main__.Nap`` on both sides of the wire. Only the public API
both implementations share is used: ``engines.load(flow, engine='worker-based',
exchange=..., topics=[...], url=...)`` and ``taskflow.engines.worker_based.worker.Worker(
exchange, topic, tasks=[...], threads_count=N, url=...)`` with ``run()``.

The broker is RabbitMQ at ``TASKFLOW_BENCH_AMQP_URL`` (default
``amqp://guest:guest@127.0.0.1:5672//``). Each run uses an exchange of its own; each worker
has a topic of its own (``bench-worker-<i>``), and the engine lists them all. The workers
are started, and seen consuming from their queues (``<exchange>_<topic>``, checked on the
broker itself, so it is the same test for both implementations), before anything is
measured, and killed afterwards, whatever happened; a worker also exits by itself when
this process goes away (its stdin, a pipe from here, reaches end of file). The queues and
the exchange the run used are deleted at the end.

Workloads:
    wbe_rtt         round trip per task. A linear flow of ``N`` tasks (default 200), each
                    ``x + 1`` of the previous one's result, on ``W`` workers (default 1) of
                    one thread. One warm-up run of the same flow first (not measured). The
                    measured run's wall is ``engines.load`` + ``run``; the round trip per
                    task is the time from the first task's RUNNING to the last task's
                    SUCCESS on the engine's ``atom_notifier``, over ``N``: a fixed delay
                    before the first task is sent (upstream discovers workers for about a
                    second first) does not count.
    wbe_flow3       the wall of a small flow: ``engines.load(...)``, ``run()`` and
                    ``storage.fetch_all()`` (what ``engines.run`` does) of a linear flow of
                    ``N`` tasks (default 3), ``R`` times (default 10) after one warm-up run,
                    on one worker; reports the median (and min, max).
    wbe_throughput  ``N`` tasks (default 200) in an unordered flow, each sleeping ``S``
                    seconds (default 0.02), on ``W`` workers (default 4) of ``T`` threads
                    (default 10), after one warm-up run of the same flow; the run's wall
                    (``engines.load`` + ``run``) and its ratio to the ideal ``N * S / (W *
                    T)``.

Each counts as correct only if the flow ended SUCCESS and every task's result is there and
right (the chain's values 1..N; each sleeper's own number).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from typing import Any

import taskflow
from taskflow import engines, states, task
from taskflow.patterns import linear_flow, unordered_flow

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: Seconds a worker may take to start consuming before the workload gives up.
PATIENCE = 60.0


# --------------------------------------------------------------------------- the tasks


class Step(task.Task):
    """One link of the chain: the previous link's value plus one."""

    def execute(self, x: int) -> int:
        return x + 1


class Nap(task.Task):
    """Sleeps ``delay`` seconds and returns its own number."""

    def execute(self, i: int, delay: float) -> int:
        time.sleep(delay)
        return i


def chain(n: int) -> tuple[linear_flow.Flow, dict[str, Any]]:
    """A linear flow of ``n`` Steps (``v1`` .. ``vn``) and its store."""
    flow = linear_flow.Flow("bench-chain")
    for i in range(n):
        flow.add(Step(name=f"t{i}", provides=f"v{i + 1}", rebind={"x": f"v{i}"}))
    return flow, {"v0": 0}


def naps(n: int, delay: float) -> tuple[unordered_flow.Flow, dict[str, Any]]:
    """An unordered flow of ``n`` Naps (``r0`` .. ``r{n-1}``) and its store."""
    flow = unordered_flow.Flow("bench-naps")
    store: dict[str, Any] = {"delay": delay}
    for i in range(n):
        flow.add(Nap(name=f"n{i}", provides=f"r{i}", rebind={"i": f"i{i}"}))
        store[f"i{i}"] = i
    return flow, store


def chain_ok(results: dict[str, Any], n: int) -> bool:
    return all(results.get(f"v{i}") == i for i in range(1, n + 1))


def naps_ok(results: dict[str, Any], n: int) -> bool:
    return all(results.get(f"r{i}") == i for i in range(n))


# --------------------------------------------------------------------------- the broker


def _amqp_url() -> str:
    return os.environ.get("TASKFLOW_BENCH_AMQP_URL") or DEFAULT_AMQP_URL


def _queue_consumers(conn: Any, name: str) -> int:
    """How many consumers the queue has on the broker (0 if it does not exist)."""
    channel = conn.channel()
    try:
        _, _, consumers = channel.queue_declare(queue=name, passive=True)
        return int(consumers)
    except conn.channel_errors:
        return 0
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def _delete(url: str, exchange: str, queues: list[str]) -> None:
    """Delete what the run left on the broker (queues are normally auto-deleted already)."""
    import kombu

    with kombu.Connection(url, connect_timeout=10) as conn:
        for name in queues:
            channel = conn.channel()
            with contextlib.suppress(*conn.channel_errors):
                channel.queue_delete(queue=name)
            with contextlib.suppress(Exception):
                channel.close()
        channel = conn.channel()
        with contextlib.suppress(*conn.channel_errors):
            channel.exchange_delete(exchange=exchange)
        with contextlib.suppress(Exception):
            channel.close()


# --------------------------------------------------------------------------- workers


class Fleet:
    """Worker processes of this interpreter and file on one new exchange."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.exchange = f"tfbench-{uuid.uuid4().hex[:12]}"
        self.topics: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = tempfile.mkdtemp(prefix="taskflow-bench-workers-")
        #: Reply queues of the engines run (``<exchange>_<flow uuid>``), deleted at the end.
        self.flow_uuids: list[str] = []

    def options(self) -> dict[str, Any]:
        return {
            "engine": "worker-based",
            "exchange": self.exchange,
            "topics": list(self.topics),
            "url": self.url,
        }

    def start(self, count: int, threads: int) -> None:
        for i in range(count):
            topic = f"bench-worker-{i}"
            log = open(os.path.join(self.logs, f"{topic}.log"), "wb")  # noqa: SIM115
            with log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "worker",
                        "--exchange",
                        self.exchange,
                        "--topic",
                        topic,
                        "--threads",
                        str(threads),
                        "--url",
                        self.url,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            self.topics.append(topic)
            self.procs.append(proc)
        self.wait_consuming()

    def wait_consuming(self) -> None:
        """Return once every worker consumes from its queue on the broker."""
        import kombu

        deadline = time.monotonic() + PATIENCE
        waiting = list(range(len(self.procs)))
        with kombu.Connection(self.url, connect_timeout=10) as conn:
            while waiting:
                for i in list(waiting):
                    code = self.procs[i].poll()
                    if code is not None:
                        raise RuntimeError(
                            f"worker {i} exited with status {code}: {self.log_tail(i)}"
                        )
                    if _queue_consumers(conn, f"{self.exchange}_{self.topics[i]}") > 0:
                        waiting.remove(i)
                if not waiting:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers {waiting} not consuming after {PATIENCE:g} s")
                time.sleep(0.05)

    def log_tail(self, i: int) -> str:
        try:
            with open(os.path.join(self.logs, f"{self.topics[i]}.log")) as log:
                lines = [line.strip() for line in log if line.strip()]
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(no output)"

    def load(self, flow: Any, store: dict[str, Any]) -> Any:
        engine = engines.load(flow, store=store, **self.options())
        self.flow_uuids.append(engine.storage.flow_uuid)
        return engine

    def kill(self) -> None:
        """Kill every worker (whatever state it is in), then clean the broker up."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=30)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        queues = [f"{self.exchange}_{name}" for name in [*self.topics, *self.flow_uuids]]
        with contextlib.suppress(Exception):
            _delete(self.url, self.exchange, queues)
        with contextlib.suppress(OSError):
            for name in os.listdir(self.logs):
                os.unlink(os.path.join(self.logs, name))
            os.rmdir(self.logs)


@contextlib.contextmanager
def _fleet(count: int, threads: int) -> Any:
    fleet = Fleet(_amqp_url())
    try:
        fleet.start(count, threads)
        yield fleet
    finally:
        fleet.kill()


def worker_main(args: argparse.Namespace) -> int:
    """A worker process: serve until killed, or until the workload process is gone."""
    from taskflow.engines.worker_based import worker as worker_module

    def orphaned() -> None:
        # The workload holds the write end of our stdin: end of file means it is gone.
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(4096):
                pass
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    worker = worker_module.Worker(
        args.exchange, args.topic, tasks=[Step, Nap], threads_count=args.threads, url=args.url
    )
    worker.run()
    return 0


# --------------------------------------------------------------------------- workloads


def _check_run(engine: Any, ok: bool) -> bool:
    return ok and engine.storage.get_flow_state() == states.SUCCESS


def bench_rtt(n: int, workers: int) -> dict[str, Any]:
    with _fleet(workers, 1) as fleet:
        flow, store = chain(n)
        engine = fleet.load(flow, store)
        engine.run()
        warm_ok = _check_run(engine, chain_ok(engine.storage.fetch_all(), n))

        stamps: dict[tuple[str, str], float] = {}

        def seen(state: str, details: dict[str, Any]) -> None:
            stamps.setdefault((state, details.get("task_name", "")), time.perf_counter())

        flow, store = chain(n)
        start = time.perf_counter()
        engine = fleet.load(flow, store)
        engine.atom_notifier.register(states.RUNNING, seen)
        engine.atom_notifier.register(states.SUCCESS, seen)
        engine.run()
        wall = time.perf_counter() - start
        ok = _check_run(engine, chain_ok(engine.storage.fetch_all(), n))
    first = stamps.get((states.RUNNING, "t0"))
    last = stamps.get((states.SUCCESS, f"t{n - 1}"))
    if first is None or last is None:
        raise RuntimeError("the atom notifier did not report the first RUNNING/last SUCCESS")
    span = last - first
    return {
        "seconds": wall,
        "rtt_seconds": span,
        "per_task": span / n,
        "before_first": first - start,
        "workers": workers,
        "warmup_ok": warm_ok,
        "ok": ok and warm_ok,
    }


def bench_flow3(n: int, runs: int) -> dict[str, Any]:
    walls: list[float] = []
    ok = True
    with _fleet(1, 1) as fleet:
        for i in range(runs + 1):
            flow, store = chain(n)
            start = time.perf_counter()
            engine = fleet.load(flow, store)
            engine.run()
            results = engine.storage.fetch_all()
            wall = time.perf_counter() - start
            ok = _check_run(engine, chain_ok(results, n)) and ok
            if i:  # the first run is the warm-up
                walls.append(wall)
    return {
        "seconds": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "runs": [round(w, 6) for w in walls],
        "ok": ok,
    }


def bench_throughput(n: int, workers: int, threads: int, delay: float) -> dict[str, Any]:
    with _fleet(workers, threads) as fleet:
        flow, store = naps(n, delay)
        engine = fleet.load(flow, store)
        engine.run()
        warm_ok = _check_run(engine, naps_ok(engine.storage.fetch_all(), n))

        flow, store = naps(n, delay)
        start = time.perf_counter()
        engine = fleet.load(flow, store)
        engine.run()
        wall = time.perf_counter() - start
        ok = _check_run(engine, naps_ok(engine.storage.fetch_all(), n))
    ideal = n * delay / (workers * threads)
    return {
        "seconds": wall,
        "ideal_seconds": ideal,
        "over_ideal": wall / ideal,
        "workers": workers,
        "threads": threads,
        "delay": delay,
        "warmup_ok": warm_ok,
        "ok": ok and warm_ok,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", choices=["wbe_rtt", "wbe_flow3", "wbe_throughput", "worker"])
    parser.add_argument("--tasks", type=int, help="tasks (default: 200; wbe_flow3 3)")
    parser.add_argument("--workers", type=int, help="worker processes (default: 1; throughput 4)")
    parser.add_argument("--threads", type=int, default=10, help="threads per worker (throughput)")
    parser.add_argument("--delay", type=float, default=0.02, help="each task's sleep (throughput)")
    parser.add_argument("--runs", type=int, default=10, help="measured runs (wbe_flow3)")
    # A worker process's own arguments (set by the workload that starts it).
    parser.add_argument("--exchange", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload == "worker":
        return worker_main(args)
    n: int = args.tasks or (3 if args.workload == "wbe_flow3" else 200)
    workers: int = args.workers or (4 if args.workload == "wbe_throughput" else 1)
    report: dict[str, Any] = {
        "workload": args.workload,
        "tasks": n,
        "taskflow_file": taskflow.__file__,
        "python": sys.version.split()[0],
    }
    try:
        if args.workload == "wbe_rtt":
            report.update(bench_rtt(n, workers))
        elif args.workload == "wbe_flow3":
            report.update(bench_flow3(n, args.runs))
        else:
            report.update(bench_throughput(n, workers, args.threads, args.delay))
    except Exception as exc:  # the runner shows the error in its table and moves on
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        print(json.dumps(report), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
