"""A conductor's run: how many jobs it takes, how it stops, how fast it picks jobs up, and
that it keeps nothing per job."""

from __future__ import annotations

import gc
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import states
from taskflow.conductors.backends.impl_blocking import BlockingConductor
from tests.conductors import flows
from tests.conductors.conftest import PATIENCE, record_events, wait_until

if TYPE_CHECKING:
    from tests.conductors.conftest import Env

KINDS = ["blocking", "nonblocking"]


def _starts(env: Env, name: str | None = None) -> list[tuple[str, int]]:
    return [
        (n, pid)
        for e, n, pid in flows.read_journal(env.journal)
        if e == "start" and (name is None or n == name)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_max_dispatches_takes_exactly_that_many_jobs(env: Env, kind: str):
    # Upstream 6.5 takes one job more than max_dispatches; ours takes max_dispatches.
    jobs = [env.post(flows.ok, f"job{i}") for i in range(3)]
    conductor = env.conductor(kind, max_simultaneous_jobs=2)
    conductor.run(max_dispatches=2)
    assert [job.state for job in jobs] == [states.COMPLETE, states.COMPLETE, states.UNCLAIMED]
    conductor.run(max_dispatches=0)  # returns at once
    assert jobs[2].state == states.UNCLAIMED


@pytest.mark.parametrize("kind", KINDS)
def test_jobs_are_taken_by_priority_then_oldest_first(env: Env, kind: str):
    for name in ("normal-1", "normal-2"):
        env.post(flows.ok, name)
    env.post(flows.ok, "low", priority="LOW")
    env.post(flows.ok, "urgent", priority="VERY_HIGH")
    conductor = env.conductor(kind, max_simultaneous_jobs=1)
    events = record_events(conductor)
    conductor.run(max_dispatches=4)
    consumed = [name for event, name in events if event == "job_consumed"]
    assert consumed == ["urgent", "normal-1", "normal-2", "low"]


@pytest.mark.parametrize("kind", KINDS)
def test_graceful_stop_suspends_the_run_and_another_conductor_finishes_it(env: Env, kind: str):
    job = env.post(flows.gated, "gated")
    first = env.conductor(kind, name="first")
    events = record_events(first)
    thread = env.start(first)
    wait_until(lambda: _starts(env, "first"))
    first.stop()
    assert not first.wait(0.2)  # the running task is not interrupted...
    env.open_gate()
    assert first.wait(PATIENCE)  # ...and the run is suspended once it ends
    thread.join(PATIENCE)
    assert events[-2:] == [("running_end", "gated"), ("job_abandoned", "gated")]
    assert job.state == states.UNCLAIMED
    assert env.flow_detail(job).state == states.SUSPENDED

    second = env.conductor(kind, name="second")
    second.run(max_dispatches=1)
    assert job.state == states.COMPLETE
    assert env.flow_detail(job).state == states.SUCCESS
    # Resumed where it stopped: the first task ran once, the others once each.
    assert [name for name, _ in _starts(env)] == ["first", "second", "third"]


def test_a_stop_before_the_engine_runs_is_not_lost(env: Env):
    # The stop lands while the job is being compiled: the run must still end suspended.
    job = env.post(flows.ok, "ok")
    conductor = env.conductor("blocking")
    conductor.notifier.register("preparation_start", lambda event, details: conductor.stop())
    events = record_events(conductor)
    conductor.run()
    assert events[-1] == ("job_abandoned", "ok")
    assert job.state == states.UNCLAIMED
    assert not _starts(env)


def test_nonblocking_runs_jobs_side_by_side_and_fills_a_freed_slot_at_once(env: Env):
    jobs = [env.post(flows.gated, f"gated{i}") for i in range(3)]
    quick = env.post(flows.ok, "quick")
    conductor = env.conductor("nonblocking", max_simultaneous_jobs=3, wait_timeout=5.0)
    events = record_events(conductor)
    started: dict[str, float] = {}
    ended: dict[str, float] = {}

    def stamp(times: dict[str, float]) -> Any:
        return lambda event, details: times.setdefault(details["job"].name, time.monotonic())

    conductor.notifier.register("running_start", stamp(started))
    conductor.notifier.register("job_consumed", stamp(ended))
    env.start(conductor, max_dispatches=4)
    wait_until(lambda: len(_starts(env, "first")) == 3)
    time.sleep(0.2)
    assert "quick" not in started  # every slot is busy
    env.open_gate()
    assert conductor.wait(PATIENCE)
    assert all(job.state == states.COMPLETE for job in [*jobs, quick])
    # The fourth job started as soon as a slot freed, not after a wait_timeout (5 s).
    assert started["quick"] - min(ended[f"gated{i}"] for i in range(3)) < 1.0
    assert sum(1 for event, _ in events if event == "job_consumed") == 4


@pytest.mark.parametrize("kind", KINDS)
def test_an_idle_conductor_picks_a_new_job_up_at_once(env: Env, kind: str):
    # wait_timeout is 5 s: picking the job up sooner proves the board woke the conductor.
    conductor = env.conductor(kind, wait_timeout=5.0)
    picked: list[float] = []
    conductor.notifier.register(
        "compilation_start", lambda event, details: picked.append(time.monotonic())
    )
    env.start(conductor, max_dispatches=3)
    delays = []
    for index in range(3):
        time.sleep(0.3)  # idle again
        posted = time.monotonic()
        env.post(flows.ok, f"job{index}")
        wait_until(lambda count=index + 1: len(picked) >= count)  # type: ignore[misc]
        delays.append(picked[index] - posted)
    assert conductor.wait(PATIENCE)
    assert sorted(delays)[1] < 0.5, delays  # tens of ms unloaded; slack for a busy machine


class _Tracking(BlockingConductor):
    """Keeps a weak reference to every engine and book it makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refs: list[weakref.ref[Any]] = []

    def _engine_from_job(self, job: Any) -> Any:
        engine = super()._engine_from_job(job)
        self.refs.append(weakref.ref(engine))
        self.refs.append(weakref.ref(engine.storage))
        return engine

    def _listeners_from_job(self, job: Any, engine: Any) -> list[Any]:
        listeners = super()._listeners_from_job(job, engine)
        self.refs.extend(weakref.ref(listener) for listener in listeners)
        return listeners


def test_nothing_is_kept_per_job(env: Env):
    for index in range(30):
        env.post(flows.ok, f"job{index}")
    board = env.board("tracking")
    # A log at DEBUG: each engine gets the conductor's engine logger too (a NullHandler
    # keeps the messages out of the test's output).
    log = logging.getLogger("tests.conductors.tracking")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(logging.NullHandler())
    conductor = _Tracking("tracking", board, persistence=env.persistence, log=log)
    gc.collect()
    gc.disable()  # what is freed must be freed by reference counting, not by the collector
    try:
        conductor.run(max_dispatches=30)
        assert len(conductor.refs) == 90
        alive = [ref() for ref in conductor.refs if ref() is not None]
        assert not alive
        assert not conductor._dispatcher._engines
        assert conductor._dispatcher._in_flight == 0
    finally:
        gc.enable()
        conductor.stop()


def test_the_conductors_log_gets_each_engines_state_changes_at_debug(
    env: Env, caplog: pytest.LogCaptureFixture
):
    # As upstream (which attaches a LoggingListener): the engine's state changes at DEBUG
    # on the conductor's log; nothing registered on the engine when that log does not log
    # DEBUG. (Ours logs through a logger of the conductor's own: listeners are a layer
    # above conductors, see tests/test_layers.py.)
    log = logging.getLogger("tests.conductors.engine-log")
    log.setLevel(logging.INFO)
    env.post(flows.ok, "quiet")
    conductor = env.conductor(log=log)
    conductor.run(max_dispatches=1)
    assert not [r for r in caplog.records if r.name == log.name]
    log.setLevel(logging.DEBUG)
    env.post(flows.ok, "loud")
    caplog.set_level(logging.DEBUG, logger=log.name)
    conductor.run(max_dispatches=1)
    messages = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert any("into state 'SUCCESS'" in m and "flow" in m for m in messages), messages
    assert any("'one'" in m and "into state 'SUCCESS'" in m for m in messages), messages
