"""Validation on RabbitMQ: a worker checks every message before it uses it.

Malformed, oversized, non-JSON and wrongly typed messages, and requests for tasks the worker
does not list, are rejected and logged (cut short), answered with a FAILURE saying why when
they name where to answer (``reply_to``) and for what (``correlation_id``), and never stop
the worker; nothing is unpickled or run that the worker does not list. Garbage on an
engine's reply queue never hangs its flow.

Messages are published raw (a plain kombu channel) so that anything can be sent: bodies
that are not JSON, any content type, properties that are missing or wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines
from taskflow._workers import protocol
from taskflow.patterns import linear_flow
from taskflow.types.failure import Failure
from tests.workers import tasks
from tests.workers.conftest import ROOT

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.workers.conftest import Broker, Workers

TOPIC = "t1"
REPLY_KEY = "validation-replies"
WORKER_LOG = "taskflow.engines.worker_based.worker"
ENGINE_LOG = "taskflow.engines.worker_based.executor"
#: What the transport logs when a handler raised (nothing a message says should get there).
HANDLER_FAILED = "Handling a message failed"
#: The longest log line or FAILURE text a rejection may make.
MAX_TEXT = 2048


def _request(**changes: Any) -> dict[str, Any]:
    """A valid request for ``Add`` (1 + 2), with ``changes`` (None: the key removed)."""
    body: dict[str, Any] = {
        "task_cls": "tests.workers.tasks.Add",
        "task_name": "add",
        "task_version": [1, 0],
        "action": "execute",
        "arguments": {"a": 1, "b": 2},
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def _failure_dict(**changes: Any) -> dict[str, Any]:
    failure = Failure.from_exception(ValueError("boom")).to_dict()
    failure.update(changes)
    return failure


def _revert(**changes: Any) -> dict[str, Any]:
    """A valid revert request for ``Add``, with ``changes`` (None: the key removed)."""
    body = _request(
        action="revert",
        arguments={},
        result=["success", 3],
        failures={"other": _failure_dict()},
    )
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


class _Touch:
    """Unpickling it makes the directory ``path`` (proof that something was unpickled)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


def _pickle_bomb(path: Path) -> bytes:
    return pickle.dumps(_Touch(path), protocol=2)


def test_the_pickle_bomb_makes_its_directory_when_unpickled(tmp_path: Path):
    # The proof the tests below rely on: their pickles do something when loaded.
    marker = tmp_path / "unpickled"
    pickle.loads(_pickle_bomb(marker))
    assert marker.exists()


@dataclass
class Reply:
    type: str | None
    correlation_id: str | None
    body: Any
    headers: dict[str, Any]


class Raw:
    """A plain kombu connection to the test's exchange: publishes anything, and collects
    what arrives on a queue of its own (``<exchange>_<key>``, bound with ``key``)."""

    def __init__(self, broker: Broker, key: str) -> None:
        import kombu

        self.key = key
        self.replies: list[Reply] = []
        self.exchange = kombu.Exchange(
            broker.exchange, type="direct", durable=False, auto_delete=True
        )
        self._pub = kombu.Connection(broker.url)
        self._channel = self._pub.channel()
        self.exchange(self._channel).declare()
        self._sub = kombu.Connection(broker.url)
        queue = kombu.Queue(
            f"{broker.exchange}_{key}",
            self.exchange,
            routing_key=key,
            durable=False,
            auto_delete=True,
        )
        self._consumer = kombu.Consumer(
            self._sub.channel(), queues=[queue], on_message=self._on_message, accept=[]
        )
        self._consumer.consume()  # declares the queue: nothing sent to it from now on is lost

    def _on_message(self, message: Any) -> None:
        message.ack()
        try:
            body = json.loads(message.body)
        except ValueError:
            body = message.body
        props = message.properties
        self.replies.append(
            Reply(props.get("type"), props.get("correlation_id"), body, message.headers or {})
        )

    def publish(
        self,
        routing_key: str,
        body: bytes,
        type: Any = protocol.REQUEST,
        reply_to: Any = None,
        correlation_id: Any = None,
        content_type: Any = "application/json",
        content_encoding: Any = "utf-8",
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish ``body`` as is: a property given as None is not set at all."""
        properties = {"delivery_mode": 2}
        for name, value in (
            ("type", type),
            ("reply_to", reply_to),
            ("correlation_id", correlation_id),
        ):
            if value is not None:
                properties[name] = value
        message = self._channel.prepare_message(
            body, 0, content_type, content_encoding, headers or {}, properties
        )
        self._channel.basic_publish(message, exchange=self.exchange.name, routing_key=routing_key)

    def collect(self, done: Callable[[list[Reply]], bool], timeout: float = 20.0) -> bool:
        """Take messages until ``done(replies)`` or ``timeout``; whether it was done."""
        deadline = time.monotonic() + timeout
        while not done(self.replies):
            if time.monotonic() > deadline:
                return False
            with contextlib.suppress(TimeoutError):
                self._sub.drain_events(timeout=0.05)
        return True

    def of(self, correlation_id: str) -> list[Reply]:
        return [reply for reply in self.replies if reply.correlation_id == correlation_id]

    def close(self) -> None:
        for conn in (self._pub, self._sub):
            conn.release()


@pytest.fixture
def raw(amqp: Broker) -> Any:
    opened: list[Raw] = []

    def open_(key: str = REPLY_KEY) -> Raw:
        opened.append(Raw(amqp, key))
        return opened[-1]

    yield open_
    for link in opened:
        link.close()


@dataclass
class Case:
    """One malformed message: ``reason`` is what the FAILURE answering it says (a regex),
    None when it can not be answered (no reply_to or no correlation_id)."""

    name: str
    body: bytes
    reason: str | None
    failure_type: str = "taskflow.exceptions.InvalidFormat"
    props: dict[str, Any] = field(default_factory=dict)
    #: Valid, but without reply_to or correlation_id: dropped, not rejected.
    dropped: bool = False

    @property
    def logged(self) -> str:
        """How the worker logs it: refused (a task it does not list), rejected, dropped."""
        if self.dropped:
            return "dropped"
        return "refused" if self.failure_type.endswith(".NotFound") else "rejected"


def _cases(tmp_path: Path) -> list[Case]:
    not_listed = "taskflow.exceptions.NotFound"
    deep = 100_000
    journal = str(tmp_path / "ran")
    echo = _request(
        task_cls="tests.workers.tasks.Echo",
        task_name="echo",
        arguments={"value": 1, "journal_path": journal},
    )
    return [
        Case("invalid-utf-8", b'{"task_cls": "\xff\xfe"}', "not UTF-8"),
        Case("not-json", b"task_cls=Add&action=execute", "not JSON"),
        Case("truncated-json", _json(_request())[:-1], "not JSON"),
        Case("empty-body", b"", "not JSON"),
        Case("json-list", _json([_request()]), "is not of type 'object'"),
        Case("json-string", b'"REQUEST"', "'REQUEST' is not of type 'object'"),
        Case("json-number", b"42", "42 is not of type 'object'"),
        Case("json-null", b"null", "None is not of type 'object'"),
        Case("deep-list", b"[" * deep + b"]" * deep, "nests too deep"),
        Case("deep-object", b'{"a":' * deep + b"1" + b"}" * deep, "nests too deep"),
        Case(
            "pickle",
            _pickle_bomb(tmp_path / "unpickled-1"),
            "content type 'application/x-python-serialize' is not application/json",
            props={"content_type": "application/x-python-serialize", "content_encoding": "binary"},
        ),
        Case("pickle-said-json", _pickle_bomb(tmp_path / "unpickled-2"), "not UTF-8"),
        Case(
            "yaml",
            f"!!python/object/apply:os.system ['touch {tmp_path / 'yaml-ran'}']".encode(),
            "content type 'application/x-yaml' is not application/json",
            props={"content_type": "application/x-yaml"},
        ),
        Case(
            "msgpack",
            b"\x81\xa8task_cls\xb7tests.workers.tasks.Add",  # {"task_cls": "...Add"}
            "content type 'application/x-msgpack' is not application/json",
            props={"content_type": "application/x-msgpack", "content_encoding": "binary"},
        ),
        Case(
            "no-content-type",
            _json(_request()),
            "content type None is not application/json",
            props={"content_type": None},
        ),
        Case(
            "type-response",
            _json(_request()),
            "unexpected message type 'RESPONSE'",
            props={"type": protocol.RESPONSE},
        ),
        Case(
            "type-unknown",
            _json(_request()),
            "unexpected message type 'HEARTBEAT'",
            props={"type": "HEARTBEAT"},
        ),
        Case(
            "type-missing", _json(_request()), "unexpected message type None", props={"type": None}
        ),
        *(
            Case(
                f"missing-{key}", _json(_request(**{key: None})), f"'{key}' is a required property"
            )
            for key in ("task_cls", "task_name", "task_version", "action", "arguments")
        ),
        Case("task_cls-int", _json(_request(task_cls=5)), "at task_cls: 5 is not of type 'string'"),
        Case(
            "task_cls-empty",
            _json(_request(task_cls="")),
            "at task_cls: '' (should be non-empty|is too short)",
        ),
        Case(
            "arguments-list",
            _json(_request(arguments=[1, 2])),
            r"at arguments: \[1, 2\] is not of type 'object'",
        ),
        Case("action-explode", _json(_request(action="explode")), "'explode' is not one of"),
        Case(
            "task_version-dict",
            _json(_request(task_version={"major": 1})),
            "at task_version: .* is not valid under any of the given schemas",
        ),
        Case(
            "revert-without-result",
            _json(_revert(result=None, failures=None)),
            "'result' is a required property",
        ),
        Case(
            "revert-result-bad-tag",
            _json(_revert(result=["maybe", 3])),
            "at result/0: 'maybe' is not one of",
        ),
        Case(
            "revert-result-too-long",
            _json(_revert(result=["success", 3, 4])),
            "at result: .* is too long",
        ),
        Case(
            "revert-result-failure-not-a-failure",
            _json(_revert(result=["failure", {"exception_str": "x"}])),
            "at result/1: 'exc_type_names' is a required property",
        ),
        Case(
            "revert-failures-malformed",
            _json(_revert(failures={"other": _failure_dict(exc_type_names="ValueError")})),
            "at failures/other/exc_type_names: 'ValueError' is not of type 'array'",
        ),
        Case(
            "revert-failures-not-an-object",
            _json(_revert(failures=["other"])),
            r"at failures: \['other'\] is not of type 'object'",
        ),
        Case(
            "typed-value-broken",
            _json(_request(arguments={"a": {"__type__": "bytes", "__value__": 5}, "b": 2})),
            "not JSON .*AttributeError",
        ),
        Case(
            "typed-value-unknown",
            _json(_request(arguments={"a": {"__type__": "pickle", "__value__": "x"}, "b": 2})),
            "not JSON .*Unsupported type",
        ),
        Case(
            "unknown-task",
            _json(_request(task_cls="tests.workers.tasks.Nope")),
            "does not run task class 'tests.workers.tasks.Nope'",
            not_listed,
        ),
        Case(
            "unlisted-task",
            _json(_request(task_cls="tests.workers.tasks.Unlisted", arguments={})),
            "does not run task class 'tests.workers.tasks.Unlisted'",
            not_listed,
        ),
        Case(
            "unlisted-os-system",
            _json(_request(task_cls="os.system", arguments={"command": "true"})),
            "does not run task class 'os.system'",
            not_listed,
        ),
        Case(
            "listed-task-other-spelling",
            _json(_request(task_cls="tests.workers.tasks:Add")),
            "does not run task class 'tests.workers.tasks:Add'",
            not_listed,
        ),
        Case(
            "notify-not-an-object",
            b"[]",
            r"NOTIFY does not match its schema at the body: \[\] is not of type 'object'",
            props={"type": protocol.NOTIFY},
        ),
        Case(
            "huge-header",
            b"not json",
            "not JSON",
            props={"headers": {"x-junk": "j" * 60_000, "x-nested": {"a": [1, {"b": "c"}]}}},
        ),
        Case(
            "type-in-a-huge-header",
            _json(_request()),
            r"unexpected message type 'TTTT.*\(50002 characters\)",
            props={"type": None, "headers": {"type": "T" * 50_000}},
        ),
        # Not answerable: nothing comes back, and valid requests among them do not run.
        Case("request-no-reply-to", _json(echo), None, props={"reply_to": None}, dropped=True),
        Case(
            "request-no-correlation-id",
            _json(echo),
            None,
            props={"correlation_id": None},
            dropped=True,
        ),
        Case("garbage-no-reply-to", b"\x00\x01garbage", None, props={"reply_to": None}),
        Case(
            "notify-not-an-object-no-correlation-id",
            b"7",
            None,
            props={"type": protocol.NOTIFY, "correlation_id": None},
        ),
        Case(
            "notify-no-reply-to",
            b"{}",
            None,
            props={"type": protocol.NOTIFY, "reply_to": None, "correlation_id": None},
            dropped=True,
        ),
    ]


def _send_cases(raw: Raw, cases: list[Case]) -> dict[str, Case]:
    """Publish every case to the worker's topic; {correlation id: case}."""
    sent: dict[str, Case] = {}
    for case in cases:
        correlation_id = f"{case.name}-{uuid.uuid4().hex[:8]}"
        props: dict[str, Any] = {"reply_to": REPLY_KEY, "correlation_id": correlation_id}
        props.update(case.props)
        raw.publish(TOPIC, case.body, **props)
        sent[correlation_id] = case
    return sent


def _outcome(replies: list[Reply]) -> dict[str, Any] | None:
    """The final answer to a request (SUCCESS or FAILURE) among ``replies``, if there is one
    (RUNNING comes first, and again every heartbeat while the task runs)."""
    ends = [reply.body for reply in replies if reply.body["state"] != protocol.RUNNING]
    assert len(ends) <= 1, ends
    return ends[0] if ends else None


def _check_refusal(replies: list[Reply], case: Case) -> str:
    """The one FAILURE answering ``case`` (and nothing before it: the task never started)
    has the protocol's shape and says why; its text."""
    assert [reply.type for reply in replies] == [protocol.RESPONSE], case.name
    (reply,) = replies
    assert set(reply.body) == {"state", "data"}, case.name
    assert reply.body["state"] == protocol.FAILURE, case.name
    assert set(reply.body["data"]) == {"result"}, case.name
    failure = Failure.from_dict(reply.body["data"]["result"])
    assert failure.check(case.failure_type), (case.name, list(failure))
    text = failure.exception_str
    assert case.reason is not None
    assert re.search(case.reason, text), (case.name, text)
    assert len(text) < MAX_TEXT, case.name
    return text


def test_a_fuzz_of_malformed_messages_never_stops_a_worker_process(
    amqp: Broker, amqp_workers: Workers, raw: Callable[..., Raw], tmp_path: Path
):
    announcements = raw(protocol.ANNOUNCE_KEY)
    replies = raw()
    proc = amqp_workers.process(TOPIC, threads=2)
    assert announcements.collect(lambda got: bool(got), timeout=60), "the worker never started"

    cases = _cases(tmp_path)
    assert len({case.name for case in cases}) == len(cases) >= 40
    # A valid request first and a discovery last: the worker answers both, and answers
    # every message of its queue in order, so once the discovery's answer is here, every
    # refusal is too (later answers would be unexpected messages, seen by the next checks).
    valid = f"valid-{uuid.uuid4().hex[:8]}"
    replies.publish(TOPIC, _json(_request()), reply_to=REPLY_KEY, correlation_id=valid)
    sent = _send_cases(replies, cases)
    replies.publish(TOPIC, b"{}", type=protocol.NOTIFY, reply_to=REPLY_KEY)

    answered = {cid: case for cid, case in sent.items() if case.reason is not None}
    assert replies.collect(
        lambda got: (
            any(reply.type == protocol.NOTIFY for reply in got)
            and all(replies.of(cid) for cid in answered)
            and _outcome(replies.of(valid)) is not None
        ),
        timeout=20,
    ), [case.name for cid, case in answered.items() if not replies.of(cid)]
    time.sleep(0.3)  # room for anything that should not come
    replies.collect(lambda got: False, timeout=0.2)

    assert proc.poll() is None, "the worker process stopped"
    # The valid request ran in the middle of it all.
    assert replies.of(valid)[0].body == {"state": protocol.RUNNING, "data": {}}
    assert _outcome(replies.of(valid)) == {"state": protocol.SUCCESS, "data": {"result": 3}}
    for correlation_id, case in answered.items():
        _check_refusal(replies.of(correlation_id), case)
    # Nothing else came: no answer to what could not be answered, one to the discovery.
    expected = {*answered, valid}
    strays = [reply for reply in replies.replies if reply.correlation_id not in expected]
    assert [(reply.type, reply.body) for reply in strays] == [
        (protocol.NOTIFY, {"topic": TOPIC, "tasks": sorted(_listed_names())})
    ]
    # Nothing was unpickled, nothing ran that the worker does not list or that had no
    # reply_to or correlation_id.
    assert not (tmp_path / "unpickled-1").exists()
    assert not (tmp_path / "unpickled-2").exists()
    assert not (tmp_path / "yaml-ran").exists()
    assert not (tmp_path / "ran").exists()

    # The same worker still serves a flow.
    flow = linear_flow.Flow("after-the-fuzz").add(
        tasks.Add("first", provides="c"),
        tasks.Add("second", rebind={"a": "c"}, provides="d"),
        tasks.Sleep("where", provides="pid", inject={"seconds": 0}),
    )
    results = engines.run(flow, store={"a": 1, "b": 2}, **amqp.options([TOPIC]))
    assert (results["c"], results["d"], results["pid"]) == (3, 5, proc.pid)

    # It logged each rejection, every line cut short; it stops cleanly when told.
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-2000:]
    lines = output.splitlines()
    assert max(len(line) for line in lines) < MAX_TEXT
    # Each message once: refused for its task, rejected, or dropped (valid, but not saying
    # where to answer).
    for logged, says in (
        ("refused", "does not run task class"),
        ("rejected", "rejected a message"),
        ("dropped", " dropped a "),
    ):
        expected = len([case for case in cases if case.logged == logged])
        assert len([line for line in lines if says in line]) == expected, logged
    assert not [line for line in lines if HANDLER_FAILED in line or "Traceback" in line]


def _listed_names() -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in tasks.LISTED]


def test_a_message_over_the_workers_limit_is_refused_and_one_under_it_runs(
    amqp_workers: Workers, raw: Callable[..., Raw], tmp_path: Path
):
    limit = 64 * 1024
    amqp_workers.thread(TOPIC, max_message_bytes=limit)
    replies = raw()
    journal = str(tmp_path / "journal")

    def echo(size: int) -> bytes:
        body = _json(
            _request(
                task_cls="tests.workers.tasks.Echo",
                task_name="echo",
                arguments={"value": "", "journal_path": journal},
            )
        )
        body = body.replace(b'"value": ""', b'"value": "' + b"v" * (size - len(body)) + b'"')
        assert len(body) == size
        return body

    replies.publish(TOPIC, echo(limit + 1), reply_to=REPLY_KEY, correlation_id="over")
    replies.publish(TOPIC, echo(limit), reply_to=REPLY_KEY, correlation_id="at")
    assert replies.collect(lambda got: bool(_outcome(replies.of("at")) and replies.of("over")))
    over = Case("over", b"", f"{limit + 1} bytes, more than the limit of {limit}")
    _check_refusal(replies.of("over"), over)
    assert replies.of("at")[0].body == {"state": protocol.RUNNING, "data": {}}
    success = _outcome(replies.of("at"))
    assert success is not None
    assert success["state"] == protocol.SUCCESS
    at_limit = json.loads(echo(limit))["arguments"]["value"]
    assert success["data"]["result"] == at_limit
    assert len(at_limit) > limit - 1024
    # Only the one under the limit ran.
    assert [line[:2] for line in tasks.read_journal(journal)] == [["execute", "echo"]]


def test_a_worker_runs_only_the_tasks_it_lists(
    amqp_workers: Workers, raw: Callable[..., Raw], tmp_path: Path
):
    # Echo is a task class the worker's process imports (this one), but not one it lists.
    worker = amqp_workers.thread(TOPIC, tasks_=[tasks.Add])
    replies = raw()
    journal = tmp_path / "journal"
    asked = _request(
        task_cls="tests.workers.tasks.Echo",
        task_name="echo",
        arguments={"value": 1, "journal_path": str(journal)},
    )
    replies.publish(TOPIC, _json(asked), reply_to=REPLY_KEY, correlation_id="echo")
    replies.publish(TOPIC, _json(_request()), reply_to=REPLY_KEY, correlation_id="add")
    assert replies.collect(lambda got: bool(replies.of("echo") and _outcome(replies.of("add"))))
    text = _check_refusal(
        replies.of("echo"),
        Case(
            "echo",
            b"",
            "does not run task class 'tests.workers.tasks.Echo'",
            "taskflow.exceptions.NotFound",
        ),
    )
    assert "tests.workers.tasks.Add" in text  # it says what it runs
    assert _outcome(replies.of("add")) == {"state": protocol.SUCCESS, "data": {"result": 3}}
    assert not journal.exists()
    # Its answers name it (the headers of ours).
    assert {reply.headers[protocol.WORKER_HEADER] for reply in replies.replies} == {
        worker._server.identity
    }


def test_what_a_worker_logs_of_huge_messages_is_cut_short(
    amqp_workers: Workers, raw: Callable[..., Raw], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="taskflow")
    amqp_workers.thread(TOPIC)  # the default limit: 16 MiB
    replies = raw()
    mib = 1024 * 1024
    huge = [
        # (correlation id, body, properties, what the log line and the answer say)
        ("garbage-32mib", os.urandom(32 * mib), {}, f"{32 * mib} bytes, more than the limit"),
        ("json-list-4mib", _json(list(range(mib // 2))), {}, "is not of type 'object'"),
        ("task_cls-1mib", _json(_request(task_cls="x" * mib)), {}, "does not run task class"),
        ("not-json-1mib", b"x" * mib, {}, "the body is not JSON"),
        ("action-1mib", _json(_request(action="a" * mib)), {}, "is not one of"),
        (
            "type-header-100kb",
            b"{}",
            {"type": None, "headers": {"type": "T" * 100_000}},
            "unexpected message type",
        ),
        (
            "typed-value-1mib",
            _json(_request(arguments={"a": {"__type__": "x" * mib, "__value__": 1}})),
            {},
            "not JSON",
        ),
    ]
    for correlation_id, body, props, _ in huge:
        replies.publish(
            TOPIC, body, **{"reply_to": REPLY_KEY, "correlation_id": correlation_id, **props}
        )
    assert replies.collect(lambda got: all(replies.of(cid) for cid, *_ in huge), timeout=30)
    for correlation_id, _, _, says in huge:
        failure = _check_refusal(
            replies.of(correlation_id),
            Case(correlation_id, b"", says, "taskflow.exceptions.TaskFlowException"),
        )
        assert says in failure
    records = [record for record in caplog.records if record.name.startswith("taskflow")]
    warned = [record.getMessage() for record in records if record.name == WORKER_LOG]
    for _, _, _, says in huge:
        assert [message for message in warned if says in message], says
    assert max(len(record.getMessage()) for record in records) < MAX_TEXT
    assert not [record for record in records if HANDLER_FAILED in record.getMessage()]


def _reply_key_of(broker: Broker, flow_uuid: str, timeout: float = 30.0) -> str:
    """The routing key of the engine's reply queue (``<exchange>_<flow uuid>.<hex>``)."""
    prefix = f"{broker.exchange}_"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        for line in out.splitlines():
            if line.strip().startswith(f"{prefix}{flow_uuid}"):
                return line.strip()[len(prefix) :]
        time.sleep(0.05)
    raise AssertionError("the engine's reply queue never showed up")


def _garbage_for_engines(tmp_path: Path) -> list[tuple[bytes, dict[str, Any], bool]]:
    """(body, properties, whether the engine rejects it) of garbage for a reply queue."""
    response: dict[str, Any] = {"type": protocol.RESPONSE, "correlation_id": "x"}
    notify = {"type": protocol.NOTIFY}
    failure = {"state": protocol.FAILURE, "data": {"result": _failure_dict()}}
    bomb = _pickle_bomb(tmp_path / "unpickled-by-engine")
    return [
        (b"\xff\xfe not utf-8", response, True),
        (b"not json at all", response, True),
        (b"[" * 100_000, response, True),
        (b'"a string"', response, True),
        (b"null", notify, True),
        (_json({"state": "RUNNING"}), response, True),
        (_json({"state": "EXPLODED", "data": {}}), response, True),
        (_json({"state": protocol.SUCCESS, "data": {}}), response, True),
        (
            _json({"state": protocol.FAILURE, "data": {"result": {"exception_str": 5}}}),
            response,
            True,
        ),
        (
            _json({"state": protocol.EVENT, "data": {"event_type": 5, "details": []}}),
            response,
            True,
        ),
        (_json({"arguments": {"a": {"__type__": "decimal", "__value__": "NaN?"}}}), response, True),
        (bomb, {**response, "content_type": "application/x-python-serialize"}, True),
        (bomb, response, True),
        (b"{}", {**response, "headers": {"x-junk": "j" * 60_000}}, True),
        # Discovery answers that are not.
        (_json({"topic": TOPIC, "tasks": 5}), notify, True),
        (_json({"topic": 5, "tasks": []}), notify, True),
        (b"[]", notify, True),
        # Not for an engine at all.
        (_json(_request()), {**response, "type": protocol.REQUEST, "reply_to": "x"}, True),
        (b"{}", {"type": "HEARTBEAT"}, True),
        (b"{}", {"type": None}, True),
        # Well formed, but for no request of this run, for none at all, for another topic.
        (_json(failure), {**response, "correlation_id": "unknown-request"}, False),
        (_json(failure), {"type": protocol.RESPONSE}, False),
        (
            _json({"state": protocol.SUCCESS, "data": {"result": 1}}),
            {"type": protocol.RESPONSE},
            False,
        ),
        (_json({"topic": "elsewhere", "tasks": ["a.B"]}), notify, False),
    ]


def test_garbage_on_an_engines_reply_queue_never_hangs_its_flow(
    amqp: Broker,
    amqp_workers: Workers,
    raw: Callable[..., Raw],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG, logger="taskflow")
    amqp_workers.thread(TOPIC)
    flow = linear_flow.Flow("patient").add(
        tasks.Sleep("nap", provides="pid", inject={"seconds": 2.0}),
        tasks.Add("add", provides="sum"),
    )
    engine = engines.load(flow, store={"a": 20, "b": 22}, **amqp.options([TOPIC]))
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as err:
            outcome.append(err)
        else:
            outcome.append(None)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    reply_key = _reply_key_of(amqp, engine.storage.flow_uuid)
    publisher = raw("validation-unused")
    garbage = _garbage_for_engines(tmp_path)
    for key in (protocol.ANNOUNCE_KEY, reply_key):
        for body, props, _ in garbage:
            publisher.publish(key, body, **props)
    assert runner.is_alive(), "the flow ended before the garbage was sent: a slower task needed"

    runner.join(60)
    assert not runner.is_alive(), "the flow hung"
    assert outcome == [None]
    assert engine.storage.fetch("pid") == os.getpid()
    assert engine.storage.fetch("sum") == 42
    # The garbage reached the engine while its flow ran, and was only logged (cut short).
    records = [record for record in caplog.records if record.name.startswith("taskflow")]
    rejected = [
        record
        for record in records
        if record.name == ENGINE_LOG and record.getMessage().startswith("Rejected a message")
    ]
    assert len(rejected) == 2 * len([item for item in garbage if item[2]])
    assert max(len(record.getMessage()) for record in records) < MAX_TEXT
    assert not [record for record in records if HANDLER_FAILED in record.getMessage()]
    assert not (tmp_path / "unpickled-by-engine").exists()


# -- what kombu and py-amqp do before our checks see a message ------------------------------------
# These messages never reach the protocol's checks: py-amqp decodes AMQP's short strings
# (type, reply_to, correlation_id, content_type) as UTF-8 while it reads the frame, and
# kombu decompresses a body whose ``compression`` header names a codec when it builds its
# Message. The first raises out of drain_events (transport.Link.consume drops the
# connection, which can not be trusted any more, and opens another; messages are taken
# without acknowledgement, so the bad one does not come back); the second is refused before
# kombu inflates anything. Workers and engines run in processes of their own here, so that
# what a consumer that broke would leave behind does not leak into this one.

#: name: (body, properties) of a message that used to end a consumer.
_KILLERS: dict[str, tuple[bytes, dict[str, Any]]] = {
    "compression-header-garbage-body": (
        b"not compressed",
        {"headers": {"compression": "application/x-gzip"}},
    ),
    "compression-header-unknown-codec": (b"{}", {"headers": {"compression": "x-nope"}}),
    "type-not-utf-8": (b"{}", {"type": b"\xff\xfeREQUEST"}),
    "reply_to-not-utf-8": (b"{}", {"reply_to": b"\xff\xfe"}),
    "correlation_id-not-utf-8": (b"{}", {"correlation_id": b"\xc3"}),
    "content_type-not-utf-8": (b"{}", {"content_type": b"application/\xff"}),
}


def test_a_message_the_broker_client_can_not_decode_does_not_stop_a_worker(
    amqp: Broker, amqp_workers: Workers, raw: Callable[..., Raw]
):
    # One worker process per message, each on a topic of its own, all started at once.
    announcements = raw(protocol.ANNOUNCE_KEY)
    procs = {name: amqp_workers.process(f"t-{name}", threads=1) for name in _KILLERS}
    assert announcements.collect(
        lambda got: {reply.body["topic"] for reply in got} >= {f"t-{name}" for name in procs},
        timeout=60,
    )
    replies = raw()
    for name, (body, props) in _KILLERS.items():
        replies.publish(
            f"t-{name}", body, **{"reply_to": REPLY_KEY, "correlation_id": name, **props}
        )
    time.sleep(0.5)  # each has had its message

    def answered() -> set[str]:
        return {reply.body["topic"] for reply in replies.replies if reply.type == protocol.NOTIFY}

    def settled(got: list[Any]) -> bool:
        return all(
            f"t-{name}" in answered() or proc.poll() is not None for name, proc in procs.items()
        )

    # Asked again until answered: a worker that dropped its connection consumes its topic's
    # queue again a moment later (the queue is gone meanwhile: a question sent then is lost).
    deadline = time.monotonic() + 20
    while not settled([]) and time.monotonic() < deadline:
        for name in _KILLERS:
            if f"t-{name}" not in answered():
                replies.publish(f"t-{name}", b"{}", type=protocol.NOTIFY, reply_to=REPLY_KEY)
        replies.collect(settled, timeout=0.5)
    stopped = sorted(name for name, proc in procs.items() if proc.poll() is not None)
    deaf = sorted(name for name in procs if f"t-{name}" not in answered())
    assert (stopped, deaf) == ([], [])


_ENGINE = """
import sys
from taskflow import engines
from taskflow.patterns import linear_flow
from tests.workers import tasks

exchange, url = sys.argv[1:3]
flow = linear_flow.Flow("patient").add(
    tasks.Sleep("nap", provides="pid", inject={"seconds": 1.0})
)
engine = engines.load(
    flow, engine="worker-based", exchange=exchange, topics=["t1"], url=url
)
print(engine.storage.flow_uuid, flush=True)
engine.run()
print(engine.storage.fetch("pid"), flush=True)
"""


def test_a_message_the_broker_client_can_not_decode_does_not_hang_a_flow(
    amqp: Broker, amqp_workers: Workers, raw: Callable[..., Raw]
):
    amqp_workers.thread(TOPIC)
    engine = subprocess.Popen(
        [sys.executable, "-c", _ENGINE, amqp.exchange, amqp.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
        cwd=ROOT,
    )
    try:
        assert engine.stdout is not None
        flow_uuid = engine.stdout.readline().strip()
        reply_key = _reply_key_of(amqp, flow_uuid)
        publisher = raw("validation-unused")
        body, props = _KILLERS["compression-header-garbage-body"]
        for key in (protocol.ANNOUNCE_KEY, reply_key):
            publisher.publish(key, body, type=protocol.RESPONSE, **props)
        try:
            output, _ = engine.communicate(timeout=5)  # the flow needs 1 s
        except subprocess.TimeoutExpired:
            raise AssertionError("the flow hung") from None
        assert engine.returncode == 0, output
        assert output.split()[-1] == str(os.getpid())
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate(timeout=60)


def test_a_compressed_body_does_not_bypass_the_size_limit(
    amqp_workers: Workers, raw: Callable[..., Raw]
):
    # 256 MiB of JSON (a string of spaces) in a message of about 256 KiB, sent to a worker
    # process whose limit is 16 MiB: it must not take the memory the body inflates to.
    announcements = raw(protocol.ANNOUNCE_KEY)
    proc = amqp_workers.process(TOPIC, threads=1)
    replies = raw()
    assert announcements.collect(lambda got: bool(got), timeout=60)
    before = _peak_rss(proc.pid)
    squeezer = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    bomb = b"".join([squeezer.compress(b'"'), *(squeezer.compress(chunk) for _ in range(256))])
    bomb += squeezer.compress(b'"') + squeezer.flush()
    assert len(bomb) < 1024 * 1024
    replies.publish(
        TOPIC,
        bomb,
        reply_to=REPLY_KEY,
        correlation_id="bomb",
        headers={"compression": "application/x-gzip"},
    )
    # Refused (or dropped: an answer is not required), and the worker still there.
    replies.publish(TOPIC, b"{}", type=protocol.NOTIFY, reply_to=REPLY_KEY)
    assert replies.collect(
        lambda got: any(reply.type == protocol.NOTIFY for reply in got), timeout=30
    )
    assert proc.poll() is None
    assert [reply.body["state"] for reply in replies.of("bomb")] in ([], [protocol.FAILURE])
    assert _peak_rss(proc.pid) - before < 64 * 1024 * 1024


def _peak_rss(pid: int) -> int:
    """The peak resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")
