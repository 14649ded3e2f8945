"""Duration and event-time listeners: metadata written, messages printed, timers cleaned."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import states
from taskflow.listeners import timing
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from tests.helpers.listener_flows import Sleep, ok_flow, retry_flow, run_quietly

if TYPE_CHECKING:
    import pytest


def _meta(engine: Any, name: str) -> dict[str, Any]:
    return dict(engine.storage.atom_detail(name).meta)


def test_state_sets() -> None:
    assert frozenset({"FAILURE", "SUCCESS", "REVERTED", "REVERT_FAILURE"}) == timing.FINISHED_STATES
    assert frozenset({"RUNNING", "REVERTING"}) == timing.STARTING_STATES
    assert timing.FINISHED_STATES | timing.STARTING_STATES | {"PENDING"} == timing.WATCH_STATES


def test_duration_recorded_for_tasks_and_flow(load: Any) -> None:
    engine = load(uf.Flow("slow").add(Sleep("s1", 0.05), Sleep("s2", 0.02)))
    with timing.DurationListener(engine):
        engine.run()
    assert _meta(engine, "s1")["duration"] >= 0.05
    assert _meta(engine, "s2")["duration"] >= 0.02
    assert engine.storage.flow_meta["duration"] >= 0.05


def test_retries_are_not_timed_and_reverts_overwrite(load: Any) -> None:
    engine = load(retry_flow())
    with timing.DurationListener(engine):
        run_quietly(engine)
    assert "duration" not in _meta(engine, "r1")
    # Tasks were last timed while reverting: a fresh, small duration is there.
    assert 0 <= _meta(engine, "a")["duration"] < 1
    assert 0 <= _meta(engine, "boom")["duration"] < 1
    assert "duration" in engine.storage.flow_meta


def test_printing_duration_messages(load_serial: Any) -> None:
    messages: list[str] = []
    engine = load_serial(lf.Flow("t").add(Sleep("s", 0.05)))
    with timing.PrintingDurationListener(engine, printer=messages.append):
        engine.run()
    assert messages[0] == "'t' flow started."
    assert messages[1] == "'s' task started."
    match = re.fullmatch(r"It took task 's' (\d+\.\d\d) seconds to finish\.", messages[2])
    assert match is not None
    assert float(match.group(1)) >= 0.05
    assert re.fullmatch(r"It took flow 't' \d+\.\d\d seconds to finish\.", messages[3])
    assert len(messages) == 4
    # The printed and the stored durations are the same measurement.
    assert f"{_meta(engine, 's')['duration']:0.2f}" == match.group(1)


def test_printing_duration_default_printer_and_reverts(
    load_serial: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = load_serial(retry_flow())
    with timing.PrintingDurationListener(engine):
        run_quietly(engine)
    lines = capsys.readouterr().out.splitlines()
    started = [line for line in lines if line.endswith("started.")]
    # Two attempts, each executing and reverting both tasks; plus the flow.
    assert started.count("'a' task started.") == 4
    assert started.count("'boom' task started.") == 4
    assert started.count("'rf' flow started.") == 1
    finished = [line for line in lines if line.startswith("It took")]
    assert len(finished) == 9
    assert not any("r1" in line for line in lines)


def test_pending_forgets_timer_and_deregister_warns(
    load_serial: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflow.listeners.timing")
    engine = load_serial(ok_flow())
    engine.compile()
    engine.prepare()
    messages: list[str] = []
    listener = timing.PrintingDurationListener(engine, printer=messages.append)
    listener.register()
    details = {"task_name": "a", "task_uuid": "u", "old_state": states.PENDING}
    notify = engine.atom_notifier.notify
    notify(states.RUNNING, details)
    notify(states.PENDING, details)
    notify(states.SUCCESS, dict(details, result=1))
    assert messages == ["'a' task started."]
    assert "duration" not in _meta(engine, "a")
    notify(states.RUNNING, details)
    notify(states.SUCCESS, dict(details, result=1))
    assert messages[-1].startswith("It took task 'a' ")
    assert "duration" in _meta(engine, "a")
    # A period left open is reported (and dropped) on deregistration.
    notify(states.RUNNING, dict(details, task_name="b"))
    listener.deregister()
    (record,) = caplog.records
    assert record.getMessage() == f"1 task(s) did not enter {timing.FINISHED_STATES} states"
    listener.register()
    notify(states.SUCCESS, dict(details, task_name="b", result=2))
    assert "duration" not in _meta(engine, "b")
    listener.deregister()
    assert len(caplog.records) == 1


def test_event_time_listener(load: Any) -> None:
    before = time.time()
    engine = load(retry_flow())
    with timing.EventTimeListener(engine):
        run_quietly(engine)
    after = time.time()
    boom = _meta(engine, "boom")
    for state in ("PENDING", "RUNNING", "FAILURE", "REVERTING", "REVERTED"):
        assert before <= boom[f"{state}-timestamp"] <= after
    assert boom["RUNNING-timestamp"] <= boom["FAILURE-timestamp"]
    retry_meta = _meta(engine, "r1")
    assert {"RUNNING-timestamp", "SUCCESS-timestamp", "RETRYING-timestamp"} <= set(retry_meta)
    flow_meta = engine.storage.flow_meta
    assert flow_meta["RUNNING-timestamp"] <= flow_meta["REVERTED-timestamp"]


def test_event_time_listener_selected_states(load: Any) -> None:
    engine = load(ok_flow())
    with timing.EventTimeListener(
        engine, task_listen_for=(states.SUCCESS,), flow_listen_for=(), retry_listen_for=()
    ):
        engine.run()
    assert [k for k in _meta(engine, "a") if k.endswith("-timestamp")] == ["SUCCESS-timestamp"]
    assert not any(k.endswith("-timestamp") for k in engine.storage.flow_meta)


def test_duration_storage_failure_is_logged_once_and_the_run_goes_on(
    load_serial: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = load_serial(lf.Flow("t").add(Sleep("a", 0), Sleep("b", 0)))

    def refuse(*args: Any) -> None:
        raise exc.StorageFailure("metadata write refused")

    monkeypatch.setattr(engine.storage, "update_atom_metadata", refuse)
    monkeypatch.setattr(engine.storage, "update_flow_metadata", refuse)
    messages: list[str] = []
    with (
        caplog.at_level(logging.WARNING),
        timing.PrintingDurationListener(engine, printer=messages.append),
    ):
        engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # One warning per lost update, from this listener (the notifier saw no exception).
    assert [(r.name, r.getMessage().split(" {")[0]) for r in warnings] == [
        ("taskflow.listeners.timing", "Failure to store duration update"),
    ] * 3
    assert [r.getMessage().rsplit(" ", 2)[1:] for r in warnings] == [
        ["task", "a"],
        ["task", "b"],
        ["flow", "t"],
    ]
    assert all(r.exc_info and r.exc_info[0] is exc.StorageFailure for r in warnings)
    # The end was still reported after each failure.
    assert [m.split(" seconds")[0].rsplit(" ", 1)[0] for m in messages if "took" in m] == [
        "It took task 'a'",
        "It took task 'b'",
        "It took flow 't'",
    ]


def test_other_duration_errors_still_reach_the_notifier(
    load_serial: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = load_serial(lf.Flow("t").add(Sleep("a", 0)))

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug, not an outage")

    monkeypatch.setattr(engine.storage, "update_atom_metadata", broken)
    with caplog.at_level(logging.WARNING), timing.DurationListener(engine):
        engine.run()
    assert [r.name for r in caplog.records if r.levelno >= logging.WARNING] == [
        "taskflow.types.notifier"
    ]
