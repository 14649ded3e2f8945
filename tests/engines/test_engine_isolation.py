"""Nothing of a run lives on the user's atoms: engines sharing one flow object stay apart."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pytest

from taskflow import engines, task
from taskflow.patterns import linear_flow as lf
from taskflow.task import PROGRESS_SINK


class Reports(task.Task):
    """Reports the progress it is given, then waits for the test to look at both engines."""

    def __init__(self, name: str, started: threading.Barrier, barrier: threading.Barrier) -> None:
        super().__init__(name)
        self.started = started
        self.barrier = barrier

    def execute(self, p: float) -> float:
        self.started.wait(timeout=10)  # both runs are under way
        self.update_progress(p)
        self.barrier.wait(timeout=10)  # both engines have reported
        self.barrier.wait(timeout=10)  # the test has read both storages
        return p


def test_two_engines_on_one_flow_object_keep_their_own_progress(load_local):
    barrier = threading.Barrier(3)
    flow = lf.Flow("shared").add(Reports("t", threading.Barrier(2), barrier))
    first = load_local(flow, store={"p": 0.25})
    second = load_local(flow, store={"p": 0.75})
    errors: list[BaseException] = []

    def run(engine: Any) -> None:
        try:
            engine.run()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(e,)) for e in (first, second)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=10)
    # Progress reported from a pool thread reaches storage through the engine's loop, a moment
    # later: poll for it rather than reading once.
    deadline = time.monotonic() + 5
    while True:
        seen = (first.storage.get_task_progress("t"), second.storage.get_task_progress("t"))
        if seen == (0.25, 0.75) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    barrier.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert seen == (0.25, 0.75)
    for engine, p in ((first, 0.25), (second, 0.75)):
        assert engine.storage.get_flow_state() == "SUCCESS"
        assert engine.storage.get("t") == p
        assert engine.storage.get_task_progress("t") == 1.0


def test_a_run_leaves_no_progress_context_behind(load_local):
    barrier = threading.Barrier(1)
    engine = load_local(lf.Flow("f").add(Reports("t", threading.Barrier(1), barrier)))
    engine.storage.inject({"p": 0.5})
    before = PROGRESS_SINK.get()
    engine.run()
    assert PROGRESS_SINK.get() is before
    assert engine.storage.get_task_progress("t") == 1.0


@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_an_engine_is_freed_as_soon_as_it_is_dropped(kind):
    """No reference cycle keeps a finished engine (and its storage) for the collector."""
    flow = lf.Flow("f").add(Reports("t", threading.Barrier(1), threading.Barrier(1)))
    engine = engines.load(flow, engine=kind, store={"p": 0.5})
    engine.run()
    dropped = [weakref.ref(engine), weakref.ref(engine.storage)]
    enabled = gc.isenabled()
    gc.disable()
    try:
        del engine
        assert [ref() for ref in dropped] == [None, None]
    finally:
        if enabled:
            gc.enable()
