"""Runs cut short (Ctrl-C, a retry that breaks, suspend during a delay) record what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskflow import engines, retry, states, task
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.persistence import backends, models
from tests.helpers import services

ROOT = Path(__file__).resolve().parents[2]

INTERRUPTED_RUN = """
import sys, time
from taskflow import engines, task
from taskflow.patterns import unordered_flow as uf
from taskflow.persistence import backends, models

class Sleep(task.Task):
    def execute(self, journal):
        time.sleep(0.5)
        with open(journal, "a") as out:
            out.write(self.name + "\\n")

conf = {"connection": sys.argv[1]}
with backends.backend(conf) as backend:
    book = models.LogBook("b")
    detail = models.FlowDetail("f", sys.argv[3])
    book.add(detail)
    with backend.get_connection() as conn:
        conn.save_logbook(book)
    flow = uf.Flow("f").add(*[Sleep(f"t{i}") for i in range(40)])
    engine = engines.load(flow, flow_detail=detail, backend=backend, engine="parallel",
                          executor=sys.argv[4], max_workers=4, store={"journal": sys.argv[2]})
    print("running", flush=True)
    try:
        engine.run()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_ctrl_c_cancels_what_has_not_started_and_records_what_ran(tmp_path: Path, executor):
    services.need_module("sqlalchemy", "database")
    uri = f"sqlite:///{tmp_path / 'flows.db'}"
    journal = tmp_path / "journal"
    flow_uuid = "0b6a3f4e-7d1c-4f6e-9a63-2d1f0c6e9b10"
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN, uri, str(journal), flow_uuid, executor],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
    )
    assert child.stdout.readline().strip() == "running"
    time.sleep(0.8)  # the first four are under way, or done
    interrupted = time.monotonic()
    child.send_signal(signal.SIGINT)
    output = child.communicate(timeout=30)[0]
    took = time.monotonic() - interrupted
    assert "interrupted" in output
    assert took < 3.0  # the tasks under way (0.5 s each), not the 36 queued ones
    ran = journal.read_text().split() if journal.exists() else []
    assert 0 < len(ran) < 40
    with backends.backend({"connection": uri}) as backend, backend.get_connection() as conn:
        stored = conn.get_flow_details(flow_uuid)
    done = sorted(ad.name for ad in stored if ad.state == states.SUCCESS and ad.name[0] == "t")
    assert done == sorted(ran)  # every task that ran is recorded: a rerun skips them
    assert not [ad.name for ad in stored if ad.state == states.RUNNING and ad.name in ran]


class Finishes(task.Task):
    def __init__(self, name: str, release: threading.Event) -> None:
        super().__init__(name)
        self.release = release

    def execute(self) -> str:
        self.release.wait(10)
        return "finished"


class Fails(task.Task):
    def execute(self) -> None:
        raise RuntimeError("task failed")


class BrokenRetry(retry.Times):
    """Lets the sibling finish while it decides, then breaks."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(3)
        self.release = release

    def on_failure(self, **kwargs: Any) -> Any:
        self.release.set()
        time.sleep(0.3)  # the sibling's result arrives meanwhile
        raise ValueError("the retry broke")


def test_a_retry_that_breaks_leaves_no_finished_sibling_running(tmp_path: Path):
    release = threading.Event()
    flow = lf.Flow("outer", retry=BrokenRetry(release)).add(
        uf.Flow("inner").add(Finishes("sibling", release), Fails("failing"))
    )
    with backends.backend({"connection": "memory://"}) as backend:
        book = models.LogBook("b")
        detail = models.FlowDetail("f", "5d0c2b8e-1a7f-4e3d-9b6c-8f2e1d0a7c35")
        book.add(detail)
        with backend.get_connection() as conn:
            conn.save_logbook(book)
        engine = engines.load(
            flow, flow_detail=detail, backend=backend, engine="parallel", max_workers=2
        )
        with pytest.raises(ValueError, match="the retry broke"):
            engine.run()
        with backend.get_connection() as conn:
            stored = {ad.name: ad for ad in conn.get_flow_details(detail.uuid)}
    assert stored["sibling"].state == states.SUCCESS
    assert stored["sibling"].results == "finished"
    assert stored["failing"].state == states.FAILURE


def test_suspend_during_a_retry_delay_ends_the_wait_at_once():
    attempts: list[float] = []

    class FailsOnce(task.Task):
        def execute(self) -> None:
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                raise RuntimeError("first attempt fails")

    flow = lf.Flow("f", retry=retry.Times(3, delay=25.0)).add(FailsOnce("t"))
    engine = engines.load(flow)
    states_seen: list[str] = []

    def suspend_when_retrying(state: str, details: dict[str, Any]) -> None:
        states_seen.append(state)
        if state == states.RETRYING:
            threading.Timer(0.2, engine.suspend).start()

    engine.atom_notifier.register(states.RETRYING, suspend_when_retrying)
    started = time.monotonic()
    engine.run()
    assert time.monotonic() - started < 5  # not the 25 s delay
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert len(attempts) == 1
    # Resumed later, the retry runs again and the flow finishes (its delay still applies).
    assert states_seen == [states.RETRYING]


LONG_RUN = """
import sys, time
from taskflow import engines, task
from taskflow.patterns import unordered_flow as uf

class Long(task.Task):
    def execute(self):
        time.sleep(20)

flow = uf.Flow("f").add(*[Long(f"t{i}") for i in range(8)])
print("running", flush=True)
engines.run(flow, engine="parallel", executor=sys.argv[1], max_workers=4)
"""


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_second_ctrl_c_does_not_wait_for_the_tasks_under_way(executor):
    child = subprocess.Popen(
        [sys.executable, "-c", LONG_RUN, executor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
    )
    assert child.stdout.readline().strip() == "running"
    time.sleep(1.0)  # four 20 s tasks under way
    child.send_signal(signal.SIGINT)  # the engine stops scheduling and waits for them...
    time.sleep(0.5)
    second = time.monotonic()
    child.send_signal(signal.SIGINT)  # ...until the second one
    child.communicate(timeout=30)
    assert time.monotonic() - second < 5  # not the 20 s the tasks under way would take
    assert child.returncode != 0


class NanRetry(retry.Times):
    """A retry controller whose own result is a value no backend stores."""

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> Any:
        return float("nan")


def test_a_retry_whose_result_can_not_be_stored_fails_and_the_flow_reverts(tmp_path: Path):
    services.need_module("sqlalchemy", "database")

    class Step(task.Task):
        def execute(self) -> int:
            return 1

    flow = lf.Flow("f", retry=NanRetry(2)).add(Step("step"))
    with backends.backend({"connection": f"sqlite:///{tmp_path / 'flows.db'}"}) as backend:
        engine = engines.load(flow, backend=backend)
        with pytest.raises(Exception, match="can not be stored") as caught:
            engine.run()
        assert isinstance(caught.value, TypeError)  # UnstorableValue
        with backend.get_connection() as conn:
            stored = {ad.name: ad for ad in conn.get_flow_details(engine.storage.flow_uuid)}
    retry_name = next(name for name in stored if name != "step")
    assert stored[retry_name].state in (states.FAILURE, states.REVERTED)
    assert stored["step"].state == states.PENDING  # never ran
    assert engine.storage.get_flow_state() in (states.REVERTED, states.FAILURE)
    assert engine.storage.get_flow_state() != states.RUNNING
