"""What the engine does when its executor (or the pool behind it) misbehaves."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

import pytest

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.task import PROGRESS_SINK
from tests.helpers.engine_tasks import Work, atom_states


class Blocks(task.Task):
    def __init__(self, name: str, started: threading.Event, gate: threading.Event) -> None:
        super().__init__(name)
        self.started = started
        self.gate = gate

    def execute(self) -> str:
        self.started.set()
        self.gate.wait(10)
        return "done"


def _run_in_thread(engine: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the engine hung"
    return errors


def test_a_call_cancelled_by_the_pools_owner_fails_instead_of_hanging():
    started, gate = threading.Event(), threading.Event()
    pool = cf.ThreadPoolExecutor(1)
    flow = uf.Flow("f").add(Blocks("busy", started, gate), Work("queued"))
    engine = engines.load(flow, engine="parallel", executor=pool)
    errors: list[BaseException] = []
    runner = threading.Thread(target=lambda: errors.extend(_run_in_thread(engine)))
    runner.start()
    assert started.wait(10)
    pool.shutdown(wait=False, cancel_futures=True)  # withdraws "queued" behind our back
    gate.set()
    runner.join(30)
    assert not runner.is_alive()
    assert len(errors) == 1  # the run ended, with an error
    # The withdrawn call is the one that failed: cancelled, or refused when it came after
    # the shutdown; its revert could not be submitted to the shut-down pool either.
    queued = engine.storage.atom_detail("queued")
    assert queued.failure is not None
    assert queued.failure.check(cf.CancelledError, RuntimeError)
    assert queued.state in (states.FAILURE, states.REVERT_FAILURE)
    assert engine.storage.get_flow_state() in (states.REVERTED, states.FAILURE)


def test_a_pool_that_refuses_calls_fails_them_and_leaves_nothing_running():
    pool = cf.ThreadPoolExecutor(1)
    pool.shutdown()
    engine = engines.load(uf.Flow("f").add(Work("a"), Work("b")), engine="parallel", executor=pool)
    with pytest.raises(exc.WrappedFailure, match="after shutdown"):
        engine.run()
    left = atom_states(engine, "a", "b")
    assert not {s for s, _intention in left.values()} & {states.RUNNING, states.REVERTING}
    assert engine.storage.get_flow_state() == states.FAILURE


@pytest.mark.parametrize("max_workers", [0, -1, "abc", 2.5])
def test_a_bad_pool_size_is_refused_when_the_engine_is_made(max_workers):
    with pytest.raises(ValueError, match="max_workers"):
        engines.load(uf.Flow("f").add(Work("a")), engine="parallel", max_workers=max_workers)


def test_interleaved_serial_runs_leave_no_engine_behind_in_the_progress_context():
    before = PROGRESS_SINK.get()
    first = engines.load(uf.Flow("f1").add(Work("a")))
    second = engines.load(uf.Flow("f2").add(Work("b")))
    one, two = first.run_iter(), second.run_iter()
    next(one)
    next(two)
    for _ in one:
        pass
    for _ in two:
        pass
    assert first.storage.get_flow_state() == second.storage.get_flow_state() == states.SUCCESS
    left = PROGRESS_SINK.get()
    # Restored, or (resets out of order) an emptied cell that holds no engine.
    assert left is before or left == [None, None, 0]


class TwoArguments(Exception):
    """An exception whose constructor does not take its own args back (pickle can't rebuild it)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")


class RaisesTwoArguments(task.Task):
    def execute(self) -> None:
        raise TwoArguments(42, "the answer")


class Undo(task.Task):
    def execute(self) -> str:
        return "done"

    def revert(self, **kwargs: Any) -> None:
        pass


def test_any_exception_crosses_back_from_a_child_process_and_the_flow_reverts():
    flow = lf.Flow("f").add(Undo("first"), RaisesTwoArguments("boom"))
    engine = engines.load(flow, engine="parallel", executor="processes", max_workers=2)
    with pytest.raises(Exception, match="42: the answer") as caught:
        engine.run()
    failure = engine.storage.atom_detail("boom").failure
    assert failure is not None
    assert failure.exception_str == "42: the answer"
    assert any(name.endswith(".TwoArguments") for name in failure)  # its type, by name
    assert "raise TwoArguments" in (failure.traceback_str or "")
    assert engine.storage.get_atom_state("first") == states.REVERTED
    assert engine.storage.get_flow_state() == states.REVERTED
    assert caught.value is not None
