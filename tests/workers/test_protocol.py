"""taskflow.engines.worker_based.protocol against what upstream TaskFlow 6.5.0's does.

The expected values are facts observed by calling upstream's classes black-box (the same
calls, on upstream's own install), written down here; where ours differs on purpose the
test says so and why. That the bodies are the ones on the wire is checked too: against the
bodies our engine sends (``taskflow._workers.client``) and the checks our workers make.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from taskflow import exceptions
from taskflow._engine.executors import EXECUTE as ENGINE_EXECUTE
from taskflow._engine.executors import REVERT as ENGINE_REVERT
from taskflow._workers import client, server
from taskflow._workers import protocol as wire
from taskflow.engines.worker_based import protocol
from taskflow.types.failure import Failure
from tests.workers import tasks

TB = "<TB>"


def _failure(message: str = "boom zz") -> Failure:
    try:
        raise ValueError(message)
    except ValueError:
        return Failure()


def _as_sent(body: Any) -> Any:
    """``body`` as JSON carries it (tuples become lists), tracebacks replaced by TB."""
    data = json.loads(json.dumps(body))

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: TB if k == "traceback_str" else scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return scrub(data)


# A failure dict as upstream's failure_to_dict returned it for ValueError('boom zz')
# (after JSON: its exc_args is a tuple there).
FAILURE_DICT = {
    "exception_str": "boom zz",
    "traceback_str": TB,
    "exc_type_names": ["ValueError", "Exception"],
    "version": 1,
    "exc_args": ["boom zz"],
    "causes": [],
}
ADD = "tests.workers.tasks.Add"


# -- Request.to_dict ---------------------------------------------------------------------------


def test_an_execute_request_is_upstreams_dict():
    request = protocol.Request(tasks.Add("add"), "u-1", "execute", {"a": 1, "b": 2})
    assert request.to_dict() == {
        "task_cls": ADD,
        "task_name": "add",
        "task_version": (1, 0),
        "action": "execute",
        "arguments": {"a": 1, "b": 2},
    }
    assert protocol.Request.TYPE == "REQUEST"


def test_a_revert_request_carries_the_tagged_result_and_the_flows_failures():
    boom = _failure()
    succeeded = protocol.Request(
        tasks.Add("add"), "u", "revert", {"a": 5}, result={"a": (1, 2)}, failures={"boom": boom}
    ).to_dict()
    assert succeeded["result"] == ("success", {"a": (1, 2)})
    assert _as_sent(succeeded) == {
        "task_cls": ADD,
        "task_name": "add",
        "task_version": [1, 0],
        "action": "revert",
        "arguments": {"a": 5},
        "result": ["success", {"a": [1, 2]}],
        "failures": {"boom": FAILURE_DICT},
    }
    failed = protocol.Request(
        tasks.Add("add"), "u", "revert", {}, result=boom, failures={"boom": boom}
    ).to_dict()
    assert _as_sent(failed)["result"] == ["failure", FAILURE_DICT]
    assert _as_sent(failed)["failures"] == {"boom": FAILURE_DICT}


@pytest.mark.parametrize(
    ("action", "kwargs", "upstream"),
    [
        # A None result is a result; NO_RESULT (the default) sends none.
        ("revert", {"result": None}, {"result": ("success", None)}),
        # Extra keys an execute gets only when given (and failures only when there are some).
        ("execute", {"result": 3}, {"result": ("success", 3)}),
        ("execute", {"failures": {}}, {}),
    ],
)
def test_result_and_failures_are_sent_as_upstream_sends_them(action, kwargs, upstream):
    body = protocol.Request(tasks.Add("add"), "u", action, {}, **kwargs).to_dict()
    extra = {k: v for k, v in body.items() if k in ("result", "failures")}
    if action == "revert":
        # Ours: a revert always carries ``failures`` (upstream sends none when there are
        # none, and its workers then fail the revert: revert() misses flow_failures).
        assert extra.pop("failures") == {}
    assert extra == upstream


def test_a_request_keeps_its_arguments_as_given():
    # Upstream: Request(task, 'u', 'execute', None).to_dict()['arguments'] is None.
    assert protocol.Request(tasks.Add("add"), "u", "execute", None).to_dict()["arguments"] is None


def test_a_request_body_is_what_our_engine_sends():
    boom = _failure()
    add = tasks.Add("add")
    name = server.class_name(tasks.Add)
    cases = [
        (
            protocol.Request(add, "u", "execute", {"a": 1, "b": 2}),
            client._request_body(add, name, ENGINE_EXECUTE, {"a": 1, "b": 2}),
        ),
        (
            protocol.Request(add, "u", "revert", {"a": 1}, result=3, failures={"boom": boom}),
            client._request_body(
                add, name, ENGINE_REVERT, {"a": 1, "result": 3, "flow_failures": {"boom": boom}}
            ),
        ),
        (
            protocol.Request(add, "u", "revert", {}, result=boom, failures={}),
            client._request_body(add, name, ENGINE_REVERT, {"result": boom, "flow_failures": {}}),
        ),
    ]
    for request, sent in cases:
        assert _as_sent(request.to_dict()) == _as_sent(sent)
        protocol.Request.validate(json.loads(wire.encode(request.to_dict())))


def test_failure_to_dict_is_the_failures_dict():
    assert _as_sent(protocol.failure_to_dict(_failure())) == FAILURE_DICT


def test_failure_to_dict_of_arguments_json_can_not_carry_still_travels():
    # Upstream drops such arguments (exc_args becomes ()); either way the dict is JSON.
    try:
        raise ValueError(object())
    except ValueError:
        failure = Failure()
    data = protocol.failure_to_dict(failure)
    assert json.loads(wire.encode(data))["exc_type_names"] == ["ValueError", "Exception"]


# -- Request.from_dict and the request's lifecycle -----------------------------------------------

BODY = {"task_cls": "m.A", "task_name": "a", "task_version": [1, 0]}


@pytest.mark.parametrize(
    ("body", "task_uuid", "arguments"),
    [
        ({**BODY, "action": "execute", "arguments": {"x": 1}}, None, {"arguments": {"x": 1}}),
        (
            {**BODY, "action": "execute", "arguments": {"x": 1}},
            "abc",
            {"arguments": {"x": 1}, "task_uuid": "abc"},
        ),
        ({**BODY, "action": "execute"}, None, {"arguments": {}}),
        ({**BODY, "action": "revert", "failures": {}}, None, {"arguments": {}, "failures": {}}),
        (
            {**BODY, "action": "revert", "result": ["success", 1]},
            None,
            {"arguments": {}, "result": 1},
        ),
        ({**BODY, "action": "revert", "result": None}, None, {"arguments": {}}),
    ],
)
def test_from_dict_is_upstreams_work_unit(body, task_uuid, arguments):
    unit = protocol.Request.from_dict(body, task_uuid=task_uuid)
    assert unit == ("m.A", "a", body["action"], arguments)
    assert (unit.task_cls, unit.task_name, unit.action, unit.arguments) == unit


def test_from_dict_makes_failures_of_failure_dicts():
    boom = _failure()
    unit = protocol.Request.from_dict(
        {
            **BODY,
            "action": "revert",
            "arguments": {},
            "result": ["failure", boom.to_dict()],
            "failures": {"boom": boom.to_dict()},
        }
    )
    assert unit.arguments["result"].exception_str == "boom zz"
    assert unit.arguments["failures"]["boom"].check(ValueError)
    with pytest.raises(KeyError):
        protocol.Request.from_dict({})


# Upstream's moves: from each state to each (True: moved, False: already there, None: the
# move raised InvalidState).
MOVES = {
    "WAITING": {"WAITING": False, "PENDING": True, "FAILURE": True},
    "PENDING": {"PENDING": False, "RUNNING": True, "FAILURE": True},
    "RUNNING": {"RUNNING": False, "SUCCESS": True, "FAILURE": True},
    "SUCCESS": {"SUCCESS": False},
    "FAILURE": {"FAILURE": False},
}
PATHS = {
    "WAITING": [],
    "PENDING": ["PENDING"],
    "RUNNING": ["PENDING", "RUNNING"],
    "SUCCESS": ["PENDING", "RUNNING", "SUCCESS"],
    "FAILURE": ["FAILURE"],
}
STATES = [*MOVES, "EVENT", "BOGUS"]


@pytest.mark.parametrize("start", list(MOVES))
@pytest.mark.parametrize("target", STATES)
def test_a_request_moves_through_upstreams_states(start, target):
    request = protocol.Request(tasks.Add("add"), "u", "execute", {})
    assert request.current_state == "WAITING"
    for state in PATHS[start]:
        assert request.transition(state)
    expected = MOVES[start].get(target)
    if expected is None:
        with pytest.raises(exceptions.InvalidState):
            request.transition(target)
        assert request.current_state == start
        assert request.transition_and_log_error(target) is False
    else:
        assert request.transition(target) is expected
        assert request.current_state == target


def test_a_request_expires_only_while_it_waits():
    request = protocol.Request(tasks.Add("add"), "u", "execute", {}, timeout=0.05)
    assert not request.expired
    time.sleep(0.06)
    assert request.expired
    request.transition("PENDING")
    assert request.expired
    request.transition("RUNNING")
    assert not request.expired
    assert protocol.Request(tasks.Add("add"), "u", "execute", {}, timeout=0).expired
    assert not protocol.Request(tasks.Add("add"), "u", "execute", {}, timeout=None).expired
    with pytest.raises(ValueError, match="timeout"):
        protocol.Request(tasks.Add("add"), "u", "execute", {}, timeout=-1)


def test_a_requests_future_gets_the_event_and_the_result():
    execute = protocol.Request(tasks.Add("add"), "u", "execute", {})
    execute.set_result(5)
    assert execute.future.result(0) == ("executed", 5)
    assert execute.current_state == "WAITING"  # the future says nothing of the state
    revert = protocol.Request(tasks.Add("add"), "u", "revert", {})
    revert.set_result(None)
    assert revert.future.result(0) == ("reverted", None)


def test_an_unknown_action_is_refused():
    # Upstream raises KeyError('frob') (a lookup in ACTION_TO_EVENT); ours says what is wrong.
    with pytest.raises(ValueError, match="frob"):
        protocol.Request(tasks.Add("add"), "u", "frob", {})


def test_a_request_has_upstreams_attributes_and_repr():
    add = tasks.Add("add")
    before = time.monotonic()
    request = protocol.Request(add, "u-7", "execute", {})
    assert request.task is add
    assert request.uuid == "u-7"
    assert before <= request.created_on <= time.monotonic()
    assert not request.future.done()
    assert repr(request).startswith("<Request object at 0x")
    assert repr(request).endswith(f"with contents {request.to_dict()}>")


# -- Response --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "data", "upstream"),
    [
        ("SUCCESS", {"result": 1}, {"state": "SUCCESS", "data": {"result": 1}}),
        ("RUNNING", {}, {"state": "RUNNING", "data": {}}),
        (
            "EVENT",
            {"event_type": "x", "details": {"a": 1}},
            {"state": "EVENT", "data": {"event_type": "x", "details": {"a": 1}}},
        ),
        ("BOGUS", {"a": 1, "b": 2}, {"state": "BOGUS", "data": {"a": 1, "b": 2}}),
    ],
)
def test_a_response_is_upstreams_dict(state, data, upstream):
    response = protocol.Response(state, **data)
    assert response.to_dict() == upstream
    assert (response.state, response.data) == (state, data)
    assert protocol.Response.TYPE == "RESPONSE"


def test_a_failure_response_holds_the_failure_object():
    # As upstream's: to_dict() leaves it as it is (the sender makes it a dict).
    boom = _failure()
    assert protocol.Response("FAILURE", result=boom).to_dict()["data"]["result"] is boom


def test_from_dict_makes_a_response():
    success = protocol.Response.from_dict({"state": "SUCCESS", "data": {"result": 3}})
    assert (success.state, success.data) == ("SUCCESS", {"result": 3})
    failed = protocol.Response.from_dict(
        {"state": "FAILURE", "data": {"result": _failure().to_dict()}}
    )
    assert isinstance(failed.data["result"], Failure)
    assert failed.data["result"].exception_str == "boom zz"
    extra = protocol.Response.from_dict({"state": "RUNNING", "data": {}, "x": 1})
    assert extra.to_dict() == {"state": "RUNNING", "data": {}}
    with pytest.raises(KeyError):
        protocol.Response.from_dict({"state": "RUNNING"})
    with pytest.raises(KeyError):
        protocol.Response.from_dict({"data": {}})


# (body, upstream accepts it, ours accepts it): ours checks as our engine checks answers.
RESPONSES = [
    ({"state": "RUNNING", "data": {}}, True, True),
    ({"state": "SUCCESS", "data": {"result": None}}, True, True),
    ({"state": "EVENT", "data": {"event_type": "x", "details": {}}}, True, True),
    ({"state": "HEARTBEAT", "data": {}}, False, False),
    ({"state": "EVENT", "data": {"event_type": "x", "details": {}, "more": 1}}, False, True),
    ({"state": "RUNNING"}, False, False),
    ([], False, False),
    (None, False, False),
    ("x", False, False),
    # Upstream takes these, then fails on them (from_dict of a FAILURE whose result is no
    # failure raises) or waits on (a result-less SUCCESS); ours refuses them up front.
    ({"state": "FAILURE", "data": {"result": "x"}}, True, False),
    ({"state": "SUCCESS", "data": {}}, True, False),
    ({"state": "EVENT", "data": {}}, True, False),
    # Workers never answer with a request's engine-side states.
    ({"state": "WAITING", "data": {}}, True, False),
    # Ours let extra keys through (a newer worker may say more); upstream drops the answer.
    ({"state": "RUNNING", "data": {}, "extra": 1}, False, True),
    ({"state": "SUCCESS", "data": {"result": 1, "x": 2}}, False, True),
]


@pytest.mark.parametrize(("body", "upstream", "ours"), RESPONSES)
def test_response_validate(body, upstream, ours):
    if ours:
        protocol.Response.validate(body)
    else:
        with pytest.raises(exceptions.InvalidFormat):
            protocol.Response.validate(body)


# -- Notify ----------------------------------------------------------------------------------------


def test_a_notify_is_upstreams_dict():
    assert protocol.Notify().to_dict() == {}
    answer = protocol.Notify(topic="t", tasks=["a.B"])
    assert answer.to_dict() == {"topic": "t", "tasks": ["a.B"]}
    assert (answer.topic, answer.tasks) == ("t", ["a.B"])
    assert (protocol.Notify().topic, protocol.Notify().tasks) == (None, None)
    assert protocol.Notify(topic="t").to_dict() == {"topic": "t"}
    assert protocol.Notify(topic="t", tasks=[], x=1).to_dict() == {
        "topic": "t",
        "tasks": [],
        "x": 1,
    }
    assert protocol.Notify.TYPE == "NOTIFY"
    assert repr(answer).endswith("with contents {'topic': 't', 'tasks': ['a.B']}>")


# (body, response, upstream accepts it, ours accepts it)
NOTIFIES = [
    ({}, False, True, True),
    ({}, True, False, False),
    ({"topic": "t", "tasks": []}, True, True, True),
    ({"topic": "t"}, True, False, False),
    ({"topic": 1, "tasks": []}, True, False, False),
    ({"topic": "t", "tasks": [1]}, True, False, False),
    ([], False, False, False),
    # An empty topic names no queue: ours refuse it.
    ({"topic": "", "tasks": []}, True, True, False),
    # Extra keys: ours let them through (a worker may say more), upstream's refuse them.
    ({"x": 1}, False, False, True),
    ({"topic": "t", "tasks": ["a"], "capacity": 4}, True, False, True),
]


@pytest.mark.parametrize(("body", "response", "upstream", "ours"), NOTIFIES)
def test_notify_validate(body, response, upstream, ours):
    if ours:
        protocol.Notify.validate(body, response)
    else:
        with pytest.raises(exceptions.InvalidFormat):
            protocol.Notify.validate(body, response=response)


# -- Request.validate ------------------------------------------------------------------------------

GOOD = {
    "task_cls": "m.Adder",
    "task_name": "add",
    "task_version": [1, 0],
    "action": "execute",
    "arguments": {"x": 1, "y": 2},
}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


# (body, upstream accepts it, ours accepts it): ours checks as our workers do.
REQUESTS = [
    (GOOD, True, True),
    ({**GOOD, "extra": 1}, True, True),
    ({**GOOD, "task_version": "1.0"}, True, True),
    ({**GOOD, "action": "revert", "result": ["success", 1], "failures": {}}, True, True),
    ({**GOOD, "action": "frobnicate"}, False, False),
    (_without("task_version"), False, False),
    (_without("task_name"), False, False),
    ({**GOOD, "arguments": [1]}, False, False),
    ({**GOOD, "task_cls": 1}, False, False),
    ([], False, False),
    ({**GOOD, "failures": []}, False, False),
    # Upstream's workers take these and then fail the call (a TypeError for the missing
    # arguments); ours refuse them with a FAILURE saying what is missing.
    (_without("arguments"), True, False),
    ({**GOOD, "action": "revert"}, True, False),
    ({**GOOD, "task_cls": ""}, True, False),
    ({**GOOD, "task_version": ["a"]}, True, False),
]


@pytest.mark.parametrize(("body", "upstream", "ours"), REQUESTS)
def test_request_validate(body, upstream, ours):
    if ours:
        protocol.Request.validate(body)
    else:
        with pytest.raises(exceptions.InvalidFormat):
            protocol.Request.validate(body)


def test_the_schemas_are_copies_of_the_ones_checked():
    assert wire.schema("REQUEST", "worker") == protocol.Request.SCHEMA
    protocol.Request.SCHEMA["required"].append("nothing")  # changes nothing checked
    try:
        protocol.Request.validate(GOOD)
    finally:
        protocol.Request.SCHEMA["required"].remove("nothing")
    assert wire.schema("NOTIFY", "worker") == protocol.Notify.SENDER_SCHEMA
    assert wire.schema("NOTIFY", "engine") == protocol.Notify.RESPONSE_SCHEMA
    assert wire.schema("RESPONSE", "engine") == protocol.Response.SCHEMA
    with pytest.raises(ValueError, match="never gets"):
        wire.validate("REQUEST", "engine", GOOD)


def test_what_ours_send_passes_upstreams_checks():
    # Bodies our face makes are the shapes upstream's strict checks take (RESPONSES and
    # NOTIFIES above: only the exact keys).
    boom = _failure()
    for body in (
        protocol.Response("RUNNING").to_dict(),
        protocol.Response("SUCCESS", result=[1, 2]).to_dict(),
        protocol.Response("FAILURE", result=protocol.failure_to_dict(boom)).to_dict(),
        protocol.Response(
            "EVENT", event_type="update_progress", details={"progress": 0.5}
        ).to_dict(),
    ):
        assert set(body) == {"state", "data"}
        protocol.Response.validate(json.loads(wire.encode(body)))
    protocol.Notify.validate(protocol.Notify(topic="t", tasks=[ADD]).to_dict(), True)
    protocol.Notify.validate(protocol.Notify().to_dict(), False)
