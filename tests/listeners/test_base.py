"""The Listener base: hook dispatch by kind, state selection, (de)registration."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from taskflow import states
from taskflow.listeners import base
from taskflow.types.failure import Failure
from tests.helpers.listener_flows import fail_flow, ok_flow, retry_flow, run_quietly


class Recorder(base.Listener):
    def __init__(self, engine: Any, **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.calls.append(("flow", state, details))

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.calls.append(("task", state, details))

    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None:
        self.calls.append(("retry", state, details))


def test_constants() -> None:
    assert base.FINISH_STATES == (
        states.FAILURE,
        states.SUCCESS,
        states.REVERTED,
        states.REVERT_FAILURE,
    )
    assert base.DEFAULT_LISTEN_FOR == ("*",)


def test_hooks_receive_only_their_kind(load: Any) -> None:
    engine = load(retry_flow())
    with Recorder(engine) as rec:
        run_quietly(engine)
    kinds = {kind for kind, _state, _details in rec.calls}
    assert kinds == {"flow", "task", "retry"}
    for kind, _state, details in rec.calls:
        if kind == "flow":
            assert set(details) == {"engine", "flow_name", "flow_uuid", "old_state"}
            assert details["engine"] is engine
        elif kind == "task":
            assert "task_name" in details
            assert "retry_name" not in details
        else:
            assert details["retry_name"] == "r1"
            assert "task_name" not in details
    flow_states = [state for kind, state, _d in rec.calls if kind == "flow"]
    assert flow_states == [states.RUNNING, states.REVERTED]
    retry_states = [state for kind, state, _d in rec.calls if kind == "retry"]
    assert states.RETRYING in retry_states


def test_serial_task_sequence_and_results(load_serial: Any) -> None:
    engine = load_serial(ok_flow())
    with Recorder(engine) as rec:
        engine.run()
    tasks = [
        (s, d["task_name"], d["old_state"], d.get("result")) for k, s, d in rec.calls if k == "task"
    ]
    assert tasks == [
        (states.RUNNING, "a", states.PENDING, None),
        (states.SUCCESS, "a", states.RUNNING, 1),
        (states.RUNNING, "b", states.PENDING, None),
        (states.SUCCESS, "b", states.RUNNING, 2),
    ]


def test_listen_for_selects_states(load: Any) -> None:
    engine = load(retry_flow())
    rec = Recorder(
        engine,
        task_listen_for=(states.SUCCESS,),
        flow_listen_for=(),
        retry_listen_for=(states.RETRYING,),
    )
    with rec:
        run_quietly(engine)
    assert {(kind, state) for kind, state, _d in rec.calls} == {
        ("task", states.SUCCESS),
        ("retry", states.RETRYING),
    }
    # a succeeds once per attempt; the retry retries once.
    assert [d["task_name"] for k, _s, d in rec.calls if k == "task"] == ["a", "a"]


def test_register_is_idempotent_and_deregister_removes_everything(load: Any) -> None:
    engine = load(ok_flow())
    rec = Recorder(engine)
    rec.register()
    rec.register()
    assert len(engine.notifier) == 1
    assert len(engine.atom_notifier) == 2
    rec.deregister()
    assert len(engine.notifier) == 0
    assert len(engine.atom_notifier) == 0
    rec.deregister()
    engine.run()
    assert rec.calls == []


def test_context_manager_returns_self_and_cleans_up_on_error(load: Any) -> None:
    engine = load(ok_flow())
    rec = Recorder(engine)
    entered: list[Any] = []

    def body() -> None:
        with rec as listener:
            entered.append(listener)
            assert len(engine.notifier) == 1
            raise KeyError("body")

    with pytest.raises(KeyError):
        body()
    assert entered == [rec]
    assert len(engine.notifier) == 0
    assert len(engine.atom_notifier) == 0


def test_failed_deregistration_is_logged_not_raised(
    load: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Stuck(base.Listener):
        def deregister(self) -> None:
            raise RuntimeError("stuck")

    engine = load(ok_flow())
    caplog.set_level(logging.WARNING, logger="taskflow.listeners.base")
    with Stuck(engine):
        pass
    (record,) = [r for r in caplog.records if r.name == "taskflow.listeners.base"]
    assert record.getMessage() == f"Failed deregistering listeners from engine {engine}"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_dumping_listener_is_abstract(load: Any) -> None:
    with pytest.raises(TypeError):
        base.DumpingListener(load(ok_flow()))  # type: ignore[abstract]


class Dumper(base.DumpingListener):
    def __init__(self, engine: Any, **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.dumps: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.dumps.append((message % args, args, kwargs))


def test_dumping_listener_messages(load_serial: Any) -> None:
    engine = load_serial(fail_flow())
    with Dumper(engine) as dumper:
        run_quietly(engine)
    uuid = engine.storage.get_atom_uuid
    flow_uuid = engine.storage.flow_uuid
    texts = [text for text, _a, _k in dumper.dumps]
    assert texts == [
        f"{engine} has moved flow 'bad' ({flow_uuid}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'SUCCESS' from state 'RUNNING'"
        " with result '1' (failure=False)",
        f"{engine} has moved task 'boom' ({uuid('boom')}) into state 'RUNNING'"
        " from state 'PENDING'",
        f"{engine} has moved task 'boom' ({uuid('boom')}) into state 'FAILURE'"
        " from state 'RUNNING' with result 'Failure: RuntimeError: boom' (failure=True)",
        f"{engine} has moved task 'boom' ({uuid('boom')}) into state 'REVERTING'"
        " from state 'FAILURE'",
        f"{engine} has moved task 'boom' ({uuid('boom')}) into state 'REVERTED'"
        " from state 'REVERTING' with result 'None' (failure=False)",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'REVERTING' from state 'SUCCESS'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'REVERTED'"
        " from state 'REVERTING' with result 'None' (failure=False)",
        f"{engine} has moved flow 'bad' ({flow_uuid}) into state 'REVERTED' from state 'RUNNING'",
    ]
    # Only the failure carries exc_info (the failure's own).
    with_exc = [(args, kwargs) for _t, args, kwargs in dumper.dumps if kwargs.get("exc_info")]
    assert len(with_exc) == 1
    args, kwargs = with_exc[0]
    failure = args[5]
    assert isinstance(failure, Failure)
    assert kwargs["exc_info"] == failure.exc_info
    assert isinstance(kwargs["exc_info"][1], RuntimeError)


def test_dumping_listener_ignores_retries(load: Any) -> None:
    engine = load(retry_flow())
    with Dumper(engine) as dumper:
        run_quietly(engine)
    assert dumper.dumps
    assert not any("r1" in text for text, _a, _k in dumper.dumps)


def test_typed_event_views() -> None:
    failure = Failure.from_exception(RuntimeError("x"))
    event = base.AtomEvent.from_task(
        states.FAILURE,
        {"task_name": "t", "task_uuid": "u", "old_state": states.RUNNING, "result": failure},
    )
    assert (event.kind, event.name, event.uuid, event.old_state) == ("task", "t", "u", "RUNNING")
    assert event.has_result
    assert event.failure is failure
    running = base.AtomEvent.from_retry(
        states.RUNNING, {"retry_name": "r", "retry_uuid": "v", "old_state": states.PENDING}
    )
    assert running.kind == "retry"
    assert not running.has_result
    assert running.failure is None
    success = base.AtomEvent.from_task(
        states.SUCCESS, {"task_name": "t", "task_uuid": "u", "old_state": "RUNNING", "result": None}
    )
    assert success.has_result
    assert success.result is None
    assert success.failure is None
    flow = base.FlowEvent.from_details(
        states.SUCCESS, {"flow_name": "f", "flow_uuid": "w", "old_state": "RUNNING", "engine": 1}
    )
    assert flow == ("f", "w", states.SUCCESS, states.RUNNING)
