"""The executor contract every engine kind implements: submit, completion, cancel, shutdown."""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import task
from taskflow._engine import executors
from taskflow._engine.executors import EXECUTE, PROGRESS, REVERT, Completion
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Iterator


class Steps(task.Task):
    """Reports progress twice, then returns its argument."""

    def execute(self, x: Any) -> Any:
        self.update_progress(0.25)
        self.update_progress(0.5)
        return x

    def revert(self, **kwargs: Any) -> str:
        return "undone"


class Fails(task.Task):
    def execute(self) -> None:
        raise ValueError("bad value")


class Waits(task.Task):
    def __init__(self, name: str, gate: threading.Event) -> None:
        super().__init__(name)
        self.gate = gate

    def execute(self) -> str:
        self.gate.wait(10)
        return "waited"


KINDS = ("serial", "threads", "processes", "user-threads", "user-processes")


@pytest.fixture(params=KINDS)
def executor(request: pytest.FixtureRequest) -> Iterator[executors.AtomExecutor]:
    pools: list[cf.Executor] = []
    kind = request.param
    if kind == "serial":
        made: executors.AtomExecutor = executors.SerialExecutor()
    elif kind == "threads":
        made = executors.ThreadExecutor(2)
    elif kind == "processes":
        made = executors.ProcessExecutor(2)
    elif kind == "user-threads":
        pools.append(cf.ThreadPoolExecutor(2))
        made = executors.UserExecutor(pools[-1])
    else:
        pools.append(cf.ProcessPoolExecutor(2))
        made = executors.UserProcessExecutor(pools[-1])  # type: ignore[arg-type]
    yield made
    for pool in pools:
        pool.shutdown(wait=True)


def run_calls(executor: executors.AtomExecutor, calls: list[Any]) -> list[Completion]:
    got: queue.SimpleQueue[Completion] = queue.SimpleQueue()
    executor.start(
        got.put,
        lambda token, value, details: got.put((token, PROGRESS, True, value, details or None)),
    )
    try:
        for call in calls:
            executor.submit(call)
        finished: list[Completion] = []
        seen: list[Completion] = []
        while len(finished) < len(calls):
            completion = got.get(timeout=30)
            seen.append(completion)
            if completion[1] != PROGRESS:
                finished.append(completion)
    finally:
        executor.shutdown()
    assert got.empty(), "a call was reported more than once"
    return seen


def test_each_call_is_reported_once_with_its_outcome(executor):
    seen = run_calls(
        executor,
        [
            (1, Steps("s"), EXECUTE, {"x": 42}),
            (2, Fails("f"), EXECUTE, {}),
            (3, Steps("r"), REVERT, {"result": 42, "flow_failures": {}}),
        ],
    )
    finals = {c[0]: c for c in seen if c[1] != PROGRESS}
    assert finals[1][:4] == (1, EXECUTE, True, 42)
    assert finals[2][2] is False
    assert finals[2][1] == EXECUTE
    assert isinstance(finals[2][3], Failure)
    assert finals[2][3].check(ValueError)
    assert "bad value" in str(finals[2][3])
    assert finals[3][:4] == (3, REVERT, True, "undone")


def test_progress_is_reported_before_the_completion(executor):
    seen = run_calls(executor, [(7, Steps("s"), EXECUTE, {"x": 1})])
    progress = [c[3] for c in seen if c[1] == PROGRESS]
    events = seen[-1][4] or []
    # In a child process the task's events travel with the completion instead.
    replayed = [d["progress"] for e, d in events if e == task.EVENT_UPDATE_PROGRESS]
    assert progress + replayed == [0.25, 0.5]
    assert seen[-1][1] == EXECUTE


def test_cancel_withdraws_a_call_that_has_not_started():
    gate = threading.Event()
    pool = cf.ThreadPoolExecutor(1)
    executor = executors.UserExecutor(pool)
    got: queue.SimpleQueue[Completion] = queue.SimpleQueue()
    executor.start(
        got.put,
        lambda token, value, details: got.put((token, PROGRESS, True, value, details or None)),
    )
    executor.submit((1, Waits("busy", gate), EXECUTE, {}))
    executor.submit((2, Steps("queued"), EXECUTE, {"x": 2}))
    assert executor.cancel(2) is True
    assert executor.cancel(1) is False  # already running
    gate.set()
    assert got.get(timeout=10)[:4] == (1, EXECUTE, True, "waited")
    executor.shutdown()
    pool.shutdown(wait=True)
    assert got.empty()  # nothing is ever reported for the withdrawn call


def test_serial_reports_before_submit_returns():
    executor = executors.SerialExecutor()
    got: list[Completion] = []
    executor.start(
        got.append,
        lambda token, value, details: got.append((token, PROGRESS, True, value, None)),
    )
    executor.submit((5, Steps("s"), EXECUTE, {"x": "now"}))
    assert [c[3] for c in got] == [0.25, 0.5, "now"]
    assert executor.cancel(5) is False
