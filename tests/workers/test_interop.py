"""Our worker-based engine and workers with upstream TaskFlow 6.5.0's, over RabbitMQ.

Both ways: our engine with upstream's workers (``python -m
taskflow.engines.worker_based.worker`` under upstream's interpreter), upstream's engine with
our worker (``_upstream_engine.py`` run by upstream, printing what happened as JSON), and a
mixed fleet of both kinds of worker on one topic under our engine. Upstream is installed
outside the repository (``helpers/upstream_taskflow.py``); its children run without
site-packages and with the repository root (never ``src``) after upstream on their path, so
they import upstream's ``taskflow`` and this tree's :mod:`tests.workers.tasks`, which
imports only ``taskflow.task``: the same task classes, under the same names, on both sides.
Every remote task that journals writes the pid of the process it ran in, which tells which
worker ran it.

In a mixed fleet our workers share the topic's queue with upstream's, so discovery sent
there reaches each consumer in turn: the engine sends one per consumer, so that a busy
upstream worker, which sends no heartbeats, is still heard from (the last test).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, exceptions, states
from taskflow.patterns import linear_flow, unordered_flow
from tests.helpers.upstream_taskflow import prepare_or_skip
from tests.workers import tasks
from tests.workers.conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator

    from taskflow.engines.worker_based.executor import WorkerTaskExecutor
    from tests.helpers.upstream_taskflow import UpstreamPython
    from tests.workers.conftest import Broker, Workers

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

DRIVER = Path(__file__).with_name("_upstream_engine.py")
#: Seconds any one wait of these tests may last (a child's start, a run).
PATIENCE = 60.0
# What an upstream child reports about its own imports.
_PROBE = (
    "import json, kombu, taskflow, tests.workers.tasks as t;"
    "print(json.dumps({'taskflow': taskflow.__file__, 'tasks': t.__file__,"
    " 'task': t.task.__file__}))"
)


class Upstream:
    """Upstream's interpreter, with the repository root after upstream on its path."""

    def __init__(self, python: UpstreamPython) -> None:
        self.argv = python.argv
        self.root = python.root
        path = [p for p in (python.env.get("PYTHONPATH"), str(ROOT)) if p]
        self.env = {**os.environ, **python.env, "PYTHONPATH": os.pathsep.join(path)}

    def check(self, cwd: Path) -> None:
        """Its children import upstream's taskflow, and this tree's task module."""
        done = subprocess.run(
            [*self.argv, "-c", _PROBE],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        taskflow_file = Path(found["taskflow"]).resolve()
        assert not taskflow_file.is_relative_to(ROOT), found
        if self.root is not None:
            assert taskflow_file.is_relative_to(self.root.resolve()), found
        assert Path(found["task"]).resolve().parent == taskflow_file.parent
        assert Path(found["tasks"]).resolve() == Path(tasks.__file__).resolve()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    found = Upstream(prepare_or_skip(("kombu",)))
    found.check(tmp_path_factory.mktemp("upstream-probe"))
    return found


def consumers(broker: Broker, queue: str) -> int:
    """How many consumers queue ``queue`` has (0 when it does not exist)."""
    from kombu import Connection

    with Connection(broker.url) as conn:
        channel = conn.channel()
        try:
            return channel.queue_declare(queue=queue, passive=True).consumer_count
        except conn.channel_errors:
            return 0
        finally:
            with contextlib.suppress(Exception):
                channel.close()


class UpstreamWorkers:
    """Upstream worker processes started by one test, killed when it ends."""

    def __init__(self, upstream: Upstream, broker: Broker, tmp_path: Path) -> None:
        self.upstream = upstream
        self.broker = broker
        self.tmp_path = tmp_path
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """What worker ``proc`` logged so far."""
        return self._logs[proc.pid].read_text(errors="replace")

    def start(self, topic: str = "t1") -> subprocess.Popen[bytes]:
        """An upstream worker of ``topic`` serving every listed task, once it consumes."""
        queue = f"{self.broker.exchange}_{topic}"
        before = consumers(self.broker, queue)
        args = [
            *self.upstream.argv,
            "-m",
            "taskflow.engines.worker_based.worker",
            "--exchange",
            self.broker.exchange,
            "--connection-url",
            self.broker.url,
            "--topic",
            topic,
            "-v",  # it logs nothing otherwise, not even the messages it refuses
        ]
        for cls in tasks.LISTED:
            args += ["--task", f"{cls.__module__}:{cls.__qualname__}"]
        log = self.tmp_path / f"upstream-worker-{len(self._procs)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=self.upstream.env, cwd=self.tmp_path
            )
        self._procs.append(proc)
        self._logs[proc.pid] = log
        deadline = time.monotonic() + PATIENCE
        while consumers(self.broker, queue) <= before:
            if proc.poll() is not None:
                pytest.fail(f"upstream worker exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"upstream worker not consuming after {PATIENCE}s:\n{log.read_text()}")
            time.sleep(0.05)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(PATIENCE)


@pytest.fixture
def upstream_workers(upstream: Upstream, amqp: Broker, tmp_path: Path) -> Iterator[UpstreamWorkers]:
    pool = UpstreamWorkers(upstream, amqp, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def run_upstream_engine(
    upstream: Upstream, broker: Broker, case: str, journal: Path, cwd: Path
) -> tuple[dict[str, Any], str]:
    """(report, stderr) of ``_upstream_engine.py`` running ``case`` on topic ``t1``."""
    conf = {
        "exchange": broker.exchange,
        "url": broker.url,
        "topic": "t1",
        "case": case,
        "journal": str(journal),
    }
    done = subprocess.run(
        [*upstream.argv, str(DRIVER), json.dumps(conf)],
        env=upstream.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PATIENCE,  # kills the child when it runs out
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if upstream.root is not None:
        assert Path(report["taskflow"]).resolve().is_relative_to(upstream.root.resolve())
    return report, done.stderr


#: What upstream 6.5.0 was seen to log when it refuses a message (its engine at WARNING,
#: its worker with ``-v``).
REFUSALS = (
    "invalid format",
    "unexpected message type",
    "message property is missing",
    "endpoint does not exist",
    "failed to parse",
    "failed to send reply",
)


def _complaints(log: str) -> list[str]:
    """Lines of an upstream child's log that refuse a message or warn of anything."""
    return [
        line
        for line in log.splitlines()
        if line.startswith(("WARNING", "ERROR", "CRITICAL"))
        or any(phrase in line.lower() for phrase in REFUSALS)
    ]


def _split(journal: Path) -> tuple[list[list[str]], set[int]]:
    """(journal lines without their pid, the pids that wrote them)."""
    lines = tasks.read_journal(journal)
    return [line[:-1] for line in lines], {int(line[-1]) for line in lines}


# -- (a) our engine, upstream's workers ------------------------------------------------------


def test_our_engine_runs_a_flow_on_an_upstream_worker(
    amqp: Broker, upstream_workers: UpstreamWorkers, tmp_path: Path
):
    worker = upstream_workers.start()
    journal = tmp_path / "journal"
    flow = linear_flow.Flow("sums").add(
        tasks.Add("first", provides="c"),
        tasks.Add("second", rebind={"a": "c"}, provides="d"),
        tasks.Sleep("nap", provides="nap_pid"),
    )
    store = {"a": 1, "b": 2, "seconds": 2.5, "journal_path": str(journal)}
    # Upstream's workers never heartbeat: through a task 2.5 times longer than
    # worker_timeout, our engine must keep it live from its answers to discovery.
    options = amqp.options(["t1"], worker_timeout=1.0, transition_timeout=20)
    engine = engines.load(flow, store=store, **options)
    engine.run()
    results = engine.storage.fetch_all()
    assert (results["c"], results["d"]) == (3, 5)
    assert results["nap_pid"] == worker.pid
    # Run once, on upstream's worker: never given up on and sent again.
    assert _split(journal) == ([["start", "nap"], ["end", "nap"]], {worker.pid})
    assert engine.storage.get_flow_state() == states.SUCCESS
    # Nothing we sent (discovery every third of worker_timeout, requests) was refused.
    assert _complaints(upstream_workers.log(worker)) == []


def test_a_failure_on_an_upstream_worker_reverts_there(
    amqp: Broker, upstream_workers: UpstreamWorkers, tmp_path: Path
):
    worker = upstream_workers.start()
    journal = tmp_path / "journal"
    flow = linear_flow.Flow("failing").add(
        tasks.Echo("one", provides="x"),
        tasks.Echo("two", rebind={"value": "x"}),
        tasks.Boom("boom"),
    )
    store = {"value": (1, 2), "journal_path": str(journal)}
    engine = engines.load(flow, store=store, **amqp.options(["t1"], transition_timeout=20))
    with pytest.raises(exceptions.WrappedFailure) as caught:
        engine.run()
    (failure,) = list(caught.value)
    assert failure.check(ValueError)
    assert failure.exception_str == "boom from a worker"
    lines, pids = _split(journal)
    # Upstream's worker ran the reverts too, each with the task's result (the tuple came
    # back a list) and the flow's failures.
    assert lines == [
        ["execute", "one"],
        ["execute", "two"],
        ["execute", "boom"],
        ["revert", "boom"],
        ["revert", "two", "[1,2]", "boom"],
        ["revert", "one", "[1,2]", "boom"],
    ]
    assert pids == {worker.pid}
    assert _complaints(upstream_workers.log(worker)) == []
    assert engine.storage.get_flow_state() == states.REVERTED
    assert {engine.storage.get_atom_state(n) for n in ("one", "two", "boom")} == {states.REVERTED}


def test_an_upstream_workers_events_reach_our_engines_task(
    amqp: Broker, upstream_workers: UpstreamWorkers
):
    worker = upstream_workers.start()
    task = tasks.Progress("progress")
    heard: list[tuple[str, dict[str, Any]]] = []
    task.notifier.register(task.notifier.ANY, lambda event, details: heard.append((event, details)))
    engine = engines.load(
        linear_flow.Flow("events").add(task), **amqp.options(["t1"], transition_timeout=20)
    )
    engine.run()
    assert ("custom-event", {"said": "hello"}) in heard
    progress = [details["progress"] for event, details in heard if event == "update_progress"]
    assert progress == [0.0, 0.25, 0.75, 1.0]
    assert engine.storage.get("progress") == "done"
    assert engine.storage.get_task_progress("progress") == 1.0
    assert _complaints(upstream_workers.log(worker)) == []


def test_an_upstream_workers_log_shows_the_messages_it_refuses(
    amqp: Broker, upstream_workers: UpstreamWorkers
):
    # What makes the checks of its log above mean something: a discovery message with a
    # body upstream's worker does not accept is in its log.
    from kombu import Connection, Exchange, Producer

    worker = upstream_workers.start()
    exchange = Exchange(amqp.exchange, type="direct", durable=False, auto_delete=True)
    with Connection(amqp.url) as conn:
        producer = Producer(conn, exchange=exchange, serializer="json")
        producer.publish({"x": 1}, routing_key="t1", type="NOTIFY", reply_to="nobody")
    deadline = time.monotonic() + PATIENCE
    while not _complaints(upstream_workers.log(worker)):
        assert time.monotonic() < deadline, upstream_workers.log(worker)
        time.sleep(0.05)
    (line,) = _complaints(upstream_workers.log(worker))
    assert "invalid format" in line


# -- (b) upstream's engine, our worker -------------------------------------------------------


def test_upstreams_engine_runs_a_flow_on_our_worker(
    upstream: Upstream, amqp_workers: Workers, tmp_path: Path
):
    amqp_workers.thread(threads_count=2)  # heartbeats every second
    journal = tmp_path / "journal"
    report, stderr = run_upstream_engine(
        upstream, amqp_workers.broker, "results", journal, tmp_path
    )
    assert report["outcome"] == "success", report
    results = report["results"]
    assert (results["c"], results["d"], results["said"]) == (3, 5, "done")
    assert results["nap_pid"] == os.getpid()  # our worker is a thread of this process
    assert _split(journal) == ([["start", "nap"], ["end", "nap"]], {os.getpid()})
    assert set(report["states"].values()) == {states.SUCCESS}
    # Our repeated RUNNING (heartbeats, with our headers) reached upstream's engine and were
    # accepted as such: matched to the request of the 2.5 s task, more than once.
    accepted = report["accepted"]
    assert accepted["nap"]["RUNNING"] >= 3, accepted
    assert accepted["nap"]["SUCCESS"] == 1
    assert accepted["progress"] == {"RUNNING": 1, "EVENT": 3, "SUCCESS": 1}
    # ... and changed nothing upstream's task notifiers hear: the progress events the engine
    # makes itself, and the worker's events in order.
    events = report["events"]
    assert events["nap"] == [
        ["update_progress", {"progress": 0.0}],
        ["update_progress", {"progress": 1.0}],
    ]
    assert events["progress"] == [
        ["update_progress", {"progress": 0.0}],
        ["update_progress", {"progress": 0.25}],
        ["custom-event", {"said": "hello"}],
        ["update_progress", {"progress": 0.75}],
        ["update_progress", {"progress": 1.0}],
    ]
    # Nothing of ours (announcements, heartbeats, headers) was refused as malformed.
    assert _complaints(stderr) == [], stderr


def test_upstreams_engine_reverts_a_failure_on_our_worker(
    upstream: Upstream, amqp_workers: Workers, tmp_path: Path
):
    amqp_workers.thread(threads_count=2)
    journal = tmp_path / "journal"
    report, stderr = run_upstream_engine(
        upstream, amqp_workers.broker, "failure", journal, tmp_path
    )
    assert report["outcome"] == "WrappedFailure", report
    assert report["failures"] == [{"exception_str": "boom from a worker", "is_value_error": True}]
    assert report["states"] == {
        "one": states.REVERTED,
        "two": states.REVERTED,
        "boom": states.REVERTED,
        "<flow>": states.REVERTED,
    }
    lines, pids = _split(journal)
    assert lines == [
        ["execute", "one"],
        ["execute", "two"],
        ["execute", "boom"],
        ["revert", "boom"],
        ["revert", "two", "[1,2]", "boom"],
        ["revert", "one", "[1,2]", "boom"],
    ]
    assert pids == {os.getpid()}
    assert _complaints(stderr) == [], stderr


# -- (c) a mixed fleet -------------------------------------------------------------------------


@contextlib.contextmanager
def started_executor(broker: Broker, **options: Any) -> Iterator[WorkerTaskExecutor]:
    """Our engine's executor, consuming (and discovering workers) before the run."""
    from taskflow.engines.worker_based.executor import WorkerTaskExecutor

    executor = WorkerTaskExecutor(
        f"interop-{uuid.uuid4().hex}", broker.exchange, ["t1"], url=broker.url, **options
    )
    executor.start()
    try:
        yield executor
    finally:
        executor.stop()


def test_a_mixed_fleet_on_one_topic_runs_every_task(
    amqp: Broker, upstream_workers: UpstreamWorkers, amqp_workers: Workers, tmp_path: Path
):
    theirs = upstream_workers.start()
    amqp_workers.thread(threads_count=2)
    journal = tmp_path / "journal"
    count = 6
    flow = unordered_flow.Flow("fleet").add(
        *(tasks.Sleep(f"sleep-{i}", provides=f"pid-{i}") for i in range(count))
    )
    store = {"seconds": 0.5, "journal_path": str(journal)}
    with started_executor(amqp, transition_timeout=20) as executor:
        # Both are known before the run: upstream's from its (anonymous) answer to the
        # discovery sent to the topic, ours from its own announcement.
        assert executor.wait_for_workers(2, timeout=15) == 0
        engine = engines.load(flow, store=store, engine="worker-based", executor=executor)
        engine.run()
    results = engine.storage.fetch_all()
    pids = [results[f"pid-{i}"] for i in range(count)]
    lines, _ = _split(journal)
    # Every task ran exactly once, each on one of the two workers, and upstream's ran some.
    # (Requests addressed to it go to the topic's queue, which RabbitMQ hands out in turn to
    # every consumer of the topic, ours included: of the two or more sent there at the
    # start, upstream's gets at least one, not all.)
    starts = sorted(line[1] for line in lines if line[0] == "start")
    assert starts == sorted(f"sleep-{i}" for i in range(count))
    assert set(pids) == {theirs.pid, os.getpid()}
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert _complaints(upstream_workers.log(theirs)) == []


def test_a_mixed_fleet_never_takes_a_busy_upstream_worker_for_dead(
    amqp: Broker, upstream_workers: UpstreamWorkers, amqp_workers: Workers, tmp_path: Path
):
    theirs = upstream_workers.start()
    journal = tmp_path / "journal"
    count = 3
    flow = unordered_flow.Flow("fleet").add(
        *(tasks.Sleep(f"sleep-{i}", provides=f"pid-{i}") for i in range(count))
    )
    store = {"seconds": 2.0, "journal_path": str(journal)}
    with started_executor(amqp, transition_timeout=20, worker_timeout=0.9) as executor:
        # Upstream's worker known first (alone on the topic, it answers the discovery), then
        # three of ours with one thread each: upstream's (CPUs + 1 threads assumed) is
        # given the first requests, through the topic.
        assert executor.wait_for_workers(1, timeout=15) == 0
        for _ in range(3):
            amqp_workers.thread(threads_count=1)
        assert executor.wait_for_workers(4, timeout=15) == 0
        engine = engines.load(flow, store=store, engine="worker-based", executor=executor)
        engine.run()
    assert theirs.poll() is None  # alive all along
    lines, _ = _split(journal)
    starts = sorted(line[1] for line in lines if line[0] == "start")
    assert starts == sorted(f"sleep-{i}" for i in range(count))
