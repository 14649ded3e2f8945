"""A worker SIGKILLed mid-task, for real: its task goes to another capable worker, or fails
with a clear error naming the task and the worker, and the flow reverts. Never a hang."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from taskflow import engines, exceptions, states
from taskflow.patterns import linear_flow
from tests.workers import tasks
from tests.workers.conftest import queue_exists

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from tests.workers.conftest import Broker, Workers

#: Seconds a silent worker with work is given before it counts as dead (the tests' own,
#: shorter than the default 5 s).
WORKER_TIMEOUT = 2.0


def _identity(proc: subprocess.Popen[str]) -> str:
    """The worker's identity, read from its banner (its first lines of output)."""
    assert proc.stdout is not None
    for _ in range(50):
        line = proc.stdout.readline()
        match = re.search(r"identity: ([0-9a-f]{32})", line)
        if match:
            return match.group(1)
    raise AssertionError("no identity in the worker's banner")


def _wait_for(journal: str, word: str, timeout: float = 60.0) -> list[str]:
    """The first journal line starting with ``word`` (waiting for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in tasks.read_journal(journal):
            if line[0] == word:
                return line
        time.sleep(0.02)
    raise AssertionError(f"nothing journaled {word!r} within {timeout} s")


def _run_in_thread(engine: Any) -> tuple[threading.Thread, list[BaseException | None]]:
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            engine.run()
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_killed_workers_task_goes_to_another_worker(
    amqp: Broker, amqp_workers: Workers, tmp_path: Path
):
    journal = str(tmp_path / "journal")
    procs = [amqp_workers.process(threads=1) for _ in range(2)]
    identities = [_identity(proc) for proc in procs]
    flow = linear_flow.Flow("moved").add(
        tasks.Echo("before", provides="x"),
        tasks.Sleep("slow", provides="pid", inject={"seconds": 1.5}),
    )
    engine = engines.load(
        flow,
        store={"value": 1, "journal_path": journal},
        **amqp.options(["t1"], worker_timeout=WORKER_TIMEOUT),
    )
    thread, outcome = _run_in_thread(engine)
    started = _wait_for(journal, "start")
    victim = next(proc for proc in procs if proc.pid == int(started[-1]))
    survivor = next(proc for proc in procs if proc is not victim)
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive(), "the engine hangs on a dead worker"
    assert outcome == [None]
    # The task ran again, to its end, on the other worker (execute is at least once).
    assert engine.storage.fetch("pid") == survivor.pid
    lines = [(line[0], line[1], int(line[-1])) for line in tasks.read_journal(journal)]
    assert ("start", "slow", victim.pid) in lines
    assert ("start", "slow", survivor.pid) in lines
    assert ("end", "slow", survivor.pid) in lines
    assert ("end", "slow", victim.pid) not in lines
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert len(set(identities)) == 2


def test_with_no_worker_left_the_task_fails_naming_it_and_the_worker_and_the_flow_reverts(
    amqp: Broker, amqp_workers: Workers, tmp_path: Path
):
    journal = str(tmp_path / "journal")
    victim = amqp_workers.process(threads=1)
    identity = _identity(victim)
    flow = linear_flow.Flow("lost").add(
        tasks.Echo("before", provides="x"),
        tasks.Sleep("slow", inject={"seconds": 30}),
    )
    engine = engines.load(
        flow,
        store={"value": 1, "journal_path": journal},
        **amqp.options(["t1"], worker_timeout=WORKER_TIMEOUT),
    )
    failed = threading.Event()
    engine.atom_notifier.register(
        states.FAILURE,
        lambda state, details: failed.set() if details.get("task_name") == "slow" else None,
    )
    thread, outcome = _run_in_thread(engine)
    _wait_for(journal, "start")
    os.kill(victim.pid, signal.SIGKILL)
    assert failed.wait(30), "the lost task never failed"
    # The reverts need a worker too: one that comes now runs them.
    amqp_workers.process(threads=1)
    thread.join(60)
    assert not thread.is_alive(), "the engine hangs"
    (error,) = outcome
    assert isinstance(error, exceptions.RequestTimeout)
    message = str(error)
    assert "'slow'" in message
    assert identity in message
    assert "no other worker runs it" in message
    assert engine.storage.get_flow_state() == states.REVERTED
    reverted = [line[1] for line in tasks.read_journal(journal) if line[0] == "revert"]
    assert reverted == ["before"]


def test_a_paused_worker_counts_as_dead_and_its_task_goes_to_another(
    amqp: Broker, amqp_workers: Workers, tmp_path: Path
):
    journal = str(tmp_path / "journal")
    procs = [amqp_workers.process(threads=1) for _ in range(2)]
    for proc in procs:
        _identity(proc)
    flow = linear_flow.Flow("paused").add(
        tasks.Sleep("slow", provides="pid", inject={"seconds": 1.0})
    )
    engine = engines.load(
        flow,
        store={"journal_path": journal},
        **amqp.options(["t1"], worker_timeout=WORKER_TIMEOUT),
    )
    thread, outcome = _run_in_thread(engine)
    started = _wait_for(journal, "start")
    paused = next(proc for proc in procs if proc.pid == int(started[-1]))
    other = next(proc for proc in procs if proc is not paused)
    os.kill(paused.pid, signal.SIGSTOP)  # silent, as a frozen VM or a cut-off host
    try:
        thread.join(60)
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert outcome == [None]
    assert engine.storage.fetch("pid") == other.pid


def test_a_workers_own_queue_keeps_what_is_sent_to_it_while_it_is_away(
    amqp: Broker, amqp_workers: Workers
):
    # A worker's consumer gone for a moment (a dropped connection it opens again) must not
    # lose the requests sent to it meanwhile: its own queue outlives its consumer (here the
    # whole process, killed), holding them, for a while; the topic's queue, shared with
    # upstream's layout, does not.
    from kombu import Connection, Exchange

    proc = amqp_workers.process(threads=1)
    identity = _identity(proc)
    own = f"{amqp.exchange}_{identity}"
    deadline = time.monotonic() + 30
    while not queue_exists(amqp, own) and time.monotonic() < deadline:
        time.sleep(0.05)  # the banner comes before the queues
    assert queue_exists(amqp, own)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while queue_exists(amqp, f"{amqp.exchange}_t1") and time.monotonic() < deadline:
        time.sleep(0.05)  # the broker notices the lost connection
    assert not queue_exists(amqp, f"{amqp.exchange}_t1")
    assert queue_exists(amqp, own)
    exchange = Exchange(amqp.exchange, type="direct", durable=False, auto_delete=True)
    with Connection(amqp.url) as conn:
        channel = conn.channel()
        message = channel.prepare_message(b"{}", 0, "application/json", "utf-8", {}, {})
        channel.basic_publish(message, exchange=exchange.name, routing_key=identity)
        kept = None
        deadline = time.monotonic() + 10
        while kept is None and time.monotonic() < deadline:
            kept = channel.basic_get(queue=own, no_ack=True)  # enqueued a moment after
            time.sleep(0.02)
        assert kept is not None
        assert kept.body in (b"{}", "{}")  # py-amqp decodes it by its content encoding
        channel.queue_delete(own)
