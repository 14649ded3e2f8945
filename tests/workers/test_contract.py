"""The engine contract on remote workers, on every transport: results, failures and reverts,
retries, events, placement, and what a run leaves on the broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, exceptions, retry, states
from taskflow.patterns import linear_flow, unordered_flow
from tests.workers import tasks
from tests.workers.conftest import queue_exists

if TYPE_CHECKING:
    from pathlib import Path

    from tests.workers.conftest import Broker, Workers


def test_a_linear_flow_runs_on_a_worker_with_its_results(broker: Broker, workers: Workers):
    workers.thread()
    flow = linear_flow.Flow("sums").add(
        tasks.Add("first", provides="c"),
        tasks.Add("second", rebind={"a": "c"}, provides="d"),
    )
    engine = engines.load(flow, store={"a": 1, "b": 2}, **broker.options(["t1"]))
    engine.run()
    assert engine.storage.fetch_all() == {"a": 1, "b": 2, "c": 3, "d": 5}
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_a_failure_on_a_worker_reverts_what_ran_in_reverse_order(
    broker: Broker, workers: Workers, tmp_path: Path
):
    workers.thread()
    journal = str(tmp_path / "journal")
    flow = linear_flow.Flow("failing").add(
        tasks.Echo("one", provides="x"),
        tasks.Echo("two", rebind={"value": "x"}),
        tasks.Boom("boom"),
    )
    engine = engines.load(
        flow, store={"value": (1, 2), "journal_path": journal}, **broker.options(["t1"])
    )
    with pytest.raises(exceptions.WrappedFailure) as caught:
        engine.run()
    (failure,) = list(caught.value)
    assert failure.check(ValueError)
    assert failure.exception_str == "boom from a worker"
    # The worker's traceback travels with it: the raising line, as the worker saw it.
    assert 'raise ValueError("boom from a worker")' in failure.traceback_str
    lines = [line[:-1] for line in tasks.read_journal(journal)]
    # Tuples travel as lists (as upstream's workers send them); reverts got the result and
    # the flow's failures.
    assert lines == [
        ["execute", "one"],
        ["execute", "two"],
        ["execute", "boom"],
        ["revert", "boom"],
        ["revert", "two", "[1,2]", "boom"],
        ["revert", "one", "[1,2]", "boom"],
    ]
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("one") == states.REVERTED


def test_a_retry_runs_a_failing_remote_task_again(broker: Broker, workers: Workers, tmp_path: Path):
    workers.thread()
    journal = str(tmp_path / "journal")
    flow = linear_flow.Flow("retried", retry=retry.Times(3)).add(
        tasks.Flaky("flaky", provides="runs")
    )
    results = engines.run(
        flow, store={"journal_path": journal, "fails": 2}, **broker.options(["t1"])
    )
    assert results["runs"] == 3


def test_progress_and_custom_events_reach_the_engines_task(broker: Broker, workers: Workers):
    workers.thread()
    task = tasks.Progress("progress")
    heard: list[tuple[str, dict[str, Any]]] = []
    task.notifier.register(task.notifier.ANY, lambda event, details: heard.append((event, details)))
    engine = engines.load(linear_flow.Flow("events").add(task), **broker.options(["t1"]))
    engine.run()
    assert ("custom-event", {"said": "hello"}) in heard
    progress = [details["progress"] for event, details in heard if event == "update_progress"]
    # 0.0 before the call (the engine's own), the worker's two, then 1.0 at the end.
    assert progress[1:3] == [0.25, 0.75]
    assert engine.storage.get_task_progress("progress") == 1.0
    assert engine.storage.get("progress") == "done"


def test_independent_tasks_spread_over_every_worker_by_free_threads(
    broker: Broker, workers: Workers
):
    if broker.in_process_only:
        pytest.skip("worker processes need a broker other processes reach")
    procs = [workers.process(threads=2) for _ in range(3)]
    flow = unordered_flow.Flow("spread").add(
        *(tasks.Sleep(f"sleep-{i}", provides=f"pid-{i}", inject={"seconds": 0.5}) for i in range(6))
    )
    engine = engines.load(flow, **broker.options(["t1"]))
    # The run starts once the three workers have announced themselves: each of them then
    # has 2 free threads and gets 2 of the 6 tasks.
    from taskflow.engines.worker_based.executor import WorkerTaskExecutor

    executor = WorkerTaskExecutor(
        "waiter",
        broker.exchange,
        ["t1"],
        url=broker.url,
        transport_options=broker.transport_options,
    )
    executor.start()
    try:
        assert executor.wait_for_workers(3, timeout=60) == 0
    finally:
        executor.stop()
    engine.run()
    pids = [engine.storage.fetch(f"pid-{i}") for i in range(6)]
    assert sorted(pids) == sorted(proc.pid for proc in procs for _ in range(2))


def test_a_result_json_can_not_carry_fails_the_task_clearly(broker: Broker, workers: Workers):
    workers.thread()
    engine = engines.load(
        linear_flow.Flow("f").add(tasks.Unsendable("bad")), **broker.options(["t1"])
    )
    with pytest.raises(exceptions.WrappedFailure) as caught:
        engine.run()
    (failure,) = list(caught.value)
    assert failure.check(TypeError)
    assert "can not be sent to a worker as JSON" in failure.exception_str


def test_a_task_no_worker_runs_times_out_with_a_clear_error(broker: Broker, workers: Workers):
    workers.thread()
    flow = linear_flow.Flow("f").add(tasks.Unlisted("nobody"))
    engine = engines.load(flow, **broker.options(["t1"], transition_timeout=0.5))
    with pytest.raises(exceptions.RequestTimeout, match=r"'nobody'.* capable worker"):
        engine.run()
    # Its revert needs a worker too, and times out the same way: the flow ends FAILURE.
    assert engine.storage.get_flow_state() == states.FAILURE


def test_a_run_leaves_no_queue_of_its_own_on_the_broker(amqp: Broker, amqp_workers: Workers):
    # RabbitMQ's queues only: kombu's virtual transports (Redis, memory) keep none to ask.
    broker, worker = amqp, amqp_workers.thread()
    engine = engines.load(
        linear_flow.Flow("f").add(tasks.Add("add")),
        store={"a": 1, "b": 1},
        **broker.options(["t1"]),
    )
    engine.run()
    reply_queues = [
        name
        for name in _queue_names_of(broker)
        if name.startswith(f"{broker.exchange}_{engine.storage.flow_uuid}")
    ]
    assert reply_queues == []
    assert queue_exists(broker, f"{broker.exchange}_{worker._server.identity}")
    worker.stop()
    assert worker._server.wait(30)
    assert not queue_exists(broker, f"{broker.exchange}_{worker._server.identity}")


def _queue_names_of(broker: Broker) -> list[str]:
    """Names of RabbitMQ's queues that start with the test's exchange (rabbitmqctl)."""
    import subprocess

    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, timeout=60
    ).stdout
    return [line.strip() for line in out.splitlines() if line.startswith(broker.exchange)]


def test_kombus_filesystem_transport_runs_flows_to_their_end(
    filesystem: Broker, filesystem_workers: Workers, tmp_path: Path
):
    # kombu's filesystem transport can lose a message: a reader may take a file its writer
    # has created but not written yet. Then the consumer's connection is opened again and
    # the engine sends its requests under way again, so flows still end right (a task may
    # run twice, as for a worker that dies): results and final states are checked here,
    # not how many times each task ran.
    filesystem_workers.thread(threads_count=4)
    flow = linear_flow.Flow("sums").add(
        tasks.Add("first", provides="c"),
        tasks.Add("second", rebind={"a": "c"}, provides="d"),
    )
    results = engines.run(flow, store={"a": 1, "b": 2}, **filesystem.options(["t1"]))
    assert (results["c"], results["d"]) == (3, 5)
    failing = linear_flow.Flow("failing").add(tasks.Echo("one"), tasks.Boom("boom"))
    engine = engines.load(
        failing,
        store={"value": 1, "journal_path": str(tmp_path / "journal")},
        **filesystem.options(["t1"]),
    )
    with pytest.raises(exceptions.WrappedFailure):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("one") == states.REVERTED


def test_an_unreachable_broker_fails_the_run_clearly_instead_of_hanging():
    # Port 1 on loopback: refused at once, every time.
    flow = linear_flow.Flow("f").add(tasks.Add("add"))
    engine = engines.load(
        flow,
        store={"a": 1, "b": 2},
        engine="worker-based",
        exchange="tf-test-unreachable",
        topics=["t1"],
        url="amqp://guest:guest@127.0.0.1:1//",
        connect_timeout=1,
    )
    with pytest.raises(exceptions.ExecutionFailure, match="could not reach its broker") as caught:
        engine.run()
    assert "127.0.0.1:1" in str(caught.value)
    assert "within 1 s" in str(caught.value)
    assert engine.storage.get_atom_state("add") == states.PENDING  # nothing was sent
