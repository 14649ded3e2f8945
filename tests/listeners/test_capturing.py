"""CaptureListener: captured (kind, state, details), skips and kind switches."""

from __future__ import annotations

from typing import Any

from taskflow import states
from taskflow.listeners import capturing
from taskflow.types.failure import Failure
from tests.helpers.listener_flows import ok_flow, retry_flow, run_quietly


def _names(values: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    out = []
    for kind, state, details in values:
        name = details.get("task_name") or details.get("retry_name") or details["flow_name"]
        out.append((kind, state, name))
    return out


def test_kind_constants() -> None:
    listener_cls = capturing.CaptureListener
    assert (listener_cls.FLOW, listener_cls.TASK, listener_cls.RETRY) == ("flow", "task", "retry")


def test_captures_everything_in_order(load_serial: Any) -> None:
    engine = load_serial(ok_flow())
    with capturing.CaptureListener(engine) as listener:
        engine.run()
    assert _names(listener.values) == [
        ("flow", "RUNNING", "ok"),
        ("task", "RUNNING", "a"),
        ("task", "SUCCESS", "a"),
        ("task", "RUNNING", "b"),
        ("task", "SUCCESS", "b"),
        ("flow", "SUCCESS", "ok"),
    ]
    _kind, _state, details = listener.values[2]
    assert details == {
        "task_name": "a",
        "task_uuid": engine.storage.get_atom_uuid("a"),
        "old_state": "RUNNING",
        "result": 1,
    }
    flow_details = listener.values[0][2]
    assert flow_details["engine"] is engine
    assert flow_details["flow_uuid"] == engine.storage.flow_uuid


def test_captured_details_are_copies(load_serial: Any) -> None:
    engine = load_serial(ok_flow())
    first = capturing.CaptureListener(engine)
    second = capturing.CaptureListener(engine)
    with first, second:
        engine.run()
    first.values[1][2]["task_name"] = "changed"
    assert second.values[1][2]["task_name"] == "a"


def test_retry_flow_capture(load: Any) -> None:
    engine = load(retry_flow())
    with capturing.CaptureListener(engine) as listener:
        run_quietly(engine)
    retries = [(state, d.get("result")) for kind, state, d in listener.values if kind == "retry"]
    assert retries == [
        (states.RUNNING, None),
        (states.SUCCESS, 1),
        (states.RETRYING, None),
        (states.RUNNING, None),
        (states.SUCCESS, 2),
        (states.REVERTING, None),
        (states.REVERTED, None),
    ]
    failures = [d["result"] for k, s, d in listener.values if k == "task" and s == states.FAILURE]
    assert len(failures) == 2
    assert all(isinstance(f, Failure) and f.check(RuntimeError) for f in failures)


def test_skips_and_given_values_list(load: Any) -> None:
    engine = load(retry_flow())
    values: list[Any] = ["pre"]
    listener = capturing.CaptureListener(
        engine, values=values, skip_tasks=["a"], skip_retries=["r1"], skip_flows=["rf"]
    )
    with listener:
        run_quietly(engine)
    assert listener.values is values
    assert values[0] == "pre"
    captured = values[1:]
    assert captured
    assert {(kind, name) for kind, _s, name in _names(captured)} == {("task", "boom")}


def test_capture_switches_and_listen_for(load: Any) -> None:
    engine = load(retry_flow())
    with capturing.CaptureListener(
        engine, capture_flow=False, capture_task=False, task_listen_for=(states.SUCCESS,)
    ) as only_retries:
        assert len(engine.notifier) == 0
        run_quietly(engine)
    assert {kind for kind, _s, _d in only_retries.values} == {"retry"}

    engine = load(retry_flow())
    with capturing.CaptureListener(
        engine,
        capture_retry=False,
        task_listen_for=(states.SUCCESS,),
        flow_listen_for=(states.REVERTED,),
    ) as selected:
        run_quietly(engine)
    assert _names(selected.values) == [
        ("task", "SUCCESS", "a"),
        ("task", "SUCCESS", "a"),
        ("flow", "REVERTED", "rf"),
    ]
