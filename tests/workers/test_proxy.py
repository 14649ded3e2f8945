"""taskflow.engines.worker_based.proxy on RabbitMQ: consuming a topic, publishing protocol
messages, talking to a worker, and what upstream's Proxy does that ours does too (observed
black-box on upstream 6.5.0: on_wait is called at once and then every second, a routing key
may be a list, a handler object's validator refuses a body, a stopped proxy can start
again)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import exceptions
from taskflow.engines.worker_based import protocol
from taskflow.engines.worker_based.proxy import DRAIN_EVENTS_PERIOD, Delivery, Proxy
from tests.workers import tasks
from tests.workers.conftest import PATIENCE, queue_exists

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.workers.conftest import Broker, Workers


def _collector() -> tuple[queue.Queue[tuple[Any, Delivery]], Any]:
    got: queue.Queue[tuple[Any, Delivery]] = queue.Queue()
    return got, lambda data, message: got.put((data, message))


def _proxy(broker: Broker, topic: str, **kwargs: Any) -> Proxy:
    return Proxy(
        topic,
        broker.exchange,
        url=broker.url,
        transport_options=broker.transport_options,
        **kwargs,
    )


@contextlib.contextmanager
def running(proxy: Proxy) -> Iterator[threading.Thread]:
    """``proxy`` consuming in a thread of its own, stopped at the end."""
    thread = threading.Thread(target=proxy.start, daemon=True)
    thread.start()
    try:
        assert proxy.wait(PATIENCE), "the proxy did not start consuming"
        yield thread
    finally:
        proxy.stop()
        thread.join(PATIENCE)
        assert not thread.is_alive()


def test_a_proxy_asks_a_worker_who_it_is_and_gets_the_answer(amqp: Broker, amqp_workers: Workers):
    amqp_workers.thread("t1")
    got, on_notify = _collector()
    asker = _proxy(amqp, "asker", type_handlers={protocol.NOTIFY: on_notify})
    with running(asker):
        asker.publish(protocol.Notify(), "t1", reply_to="asker")
        data, message = got.get(timeout=PATIENCE)
    protocol.Notify.validate(data, response=True)
    assert data["topic"] == "t1"
    assert "tests.workers.tasks.Add" in data["tasks"]
    assert (message.type, message.routing_key) == ("NOTIFY", "asker")
    assert message.properties["type"] == "NOTIFY"
    assert message.delivery_info == {"exchange": amqp.exchange, "routing_key": "asker"}


def test_a_proxy_runs_a_task_on_a_worker(amqp: Broker, amqp_workers: Workers):
    amqp_workers.thread("t1")
    got, on_response = _collector()
    engine = _proxy(amqp, "engine", type_handlers={protocol.RESPONSE: on_response})
    request = protocol.Request(tasks.Add("add"), str(uuid.uuid4()), "execute", {"a": 1, "b": 2})
    with running(engine):
        engine.publish(request, "t1", reply_to="engine", correlation_id=request.uuid)
        states = []
        while not states or states[-1] == "RUNNING":
            data, message = got.get(timeout=PATIENCE)
            protocol.Response.validate(data)
            assert message.correlation_id == request.uuid
            states.append(data["state"])
    assert states[0] == "RUNNING"
    assert data == {"state": "SUCCESS", "data": {"result": 3}}


def test_two_proxies_talk_through_their_topics(amqp: Broker):
    answers, on_answer = _collector()

    def on_question(data: Any, message: Delivery) -> None:
        answerer.publish(
            protocol.Notify(topic="answerer", tasks=[data["topic"]]),
            message.reply_to,
            correlation_id=message.correlation_id,
        )

    answerer = _proxy(amqp, "answerer", type_handlers={protocol.NOTIFY: on_question})
    asker = _proxy(amqp, "asker", type_handlers={protocol.NOTIFY: on_answer})
    with running(answerer), running(asker):
        asker.publish(
            protocol.Notify(topic="asker", tasks=[]),
            "answerer",
            reply_to="asker",
            correlation_id="c-1",
        )
        data, message = answers.get(timeout=PATIENCE)
    assert data == {"topic": "answerer", "tasks": ["asker"]}
    assert (message.type, message.correlation_id, message.reply_to) == ("NOTIFY", "c-1", None)
    assert message.routing_key == "asker"


def test_a_message_goes_to_each_routing_key_of_a_list(amqp: Broker):
    got, collect = _collector()
    first = _proxy(amqp, "first", type_handlers={protocol.NOTIFY: collect})
    second = _proxy(amqp, "second", type_handlers={protocol.NOTIFY: collect})
    sender = _proxy(amqp, "sender")
    with running(first), running(second):
        sender.publish(protocol.Notify(topic="x", tasks=[]), ["first", "second"])
        keys = sorted(got.get(timeout=PATIENCE)[1].routing_key for _ in range(2))
    sender.stop()
    assert keys == ["first", "second"]


class Handler:
    """A handler object as upstream's are: process_message, and a validator."""

    def __init__(self) -> None:
        self.got: queue.Queue[Any] = queue.Queue()

    def validator(self, data: Any) -> None:
        if data.get("bad"):
            raise exceptions.InvalidFormat("bad data")

    def process_message(self, data: Any, message: Delivery) -> None:
        if data.get("boom"):
            raise RuntimeError("handler boom")
        self.got.put(data)


def test_refused_unknown_and_failing_messages_are_dropped_and_consuming_goes_on(
    amqp: Broker, caplog: pytest.LogCaptureFixture
):
    handler = Handler()
    consumer = _proxy(amqp, "consumer", type_handlers={protocol.NOTIFY: handler})
    sender = _proxy(amqp, "sender")
    with caplog.at_level(logging.WARNING), running(consumer):
        sender.publish(protocol.Notify(bad=1), "consumer")  # its validator refuses it
        sender.publish(protocol.Response("RUNNING"), "consumer")  # no handler for the type
        # Upstream's proxy dies of a handler's error (its consuming thread ends); ours logs
        # it and carries on.
        sender.publish(protocol.Notify(boom=1), "consumer")
        sender.publish(protocol.Notify(n=1), "consumer")
        assert handler.got.get(timeout=PATIENCE) == {"n": 1}
        assert consumer.is_running
    sender.stop()
    assert handler.got.empty()
    logged = caplog.text
    assert "rejected as invalid: bad data" in logged
    assert "Unexpected message type 'RESPONSE'" in logged
    assert "handler boom" in logged


def test_on_wait_is_called_at_once_and_then_every_period(amqp: Broker):
    calls: list[float] = []
    proxy = _proxy(amqp, "waiting", on_wait=lambda: calls.append(time.monotonic()))
    with running(proxy):
        deadline = time.monotonic() + PATIENCE
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(calls) >= 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap >= DRAIN_EVENTS_PERIOD * 0.9 for gap in gaps), gaps


def test_start_wait_stop_and_start_again(amqp: Broker):
    proxy = _proxy(amqp, "cycle")
    assert not proxy.is_running
    assert not proxy.wait(0.01)
    for _ in range(2):  # a stopped proxy starts again, as upstream's does
        with running(proxy) as thread:
            assert proxy.is_running
            assert queue_exists(amqp, f"{amqp.exchange}_cycle")
            began = time.monotonic()
        assert time.monotonic() - began < 1.0  # stop() wakes the consumer
        assert not thread.is_alive()
        assert not proxy.is_running
    # Its queue went with its consumer (auto-delete), and publishing still works.
    assert not queue_exists(amqp, f"{amqp.exchange}_cycle")
    got, collect = _collector()
    other = _proxy(amqp, "other", type_handlers={protocol.NOTIFY: collect})
    with running(other):
        proxy.publish(protocol.Notify(), "other")
        assert got.get(timeout=PATIENCE)[0] == {}
    proxy.stop()


def test_connection_details_and_defaults(amqp: Broker):
    proxy = Proxy("t", "ex", url=amqp.url, transport_options={"a": 1})
    details = proxy.connection_details
    assert ":**@" in details.uri
    assert "guest:guest" not in details.uri
    assert details.transport.options == {"a": 1}
    assert (details.transport.driver_type, details.transport.driver_name) == ("amqp", "py-amqp")
    assert details.transport.driver_version
    # Upstream's, for kombu's memory transport (nothing is connected to say it).
    memory = Proxy("t", "ex", transport="memory").connection_details
    assert memory.uri == "memory://:**@localhost//"
    assert memory.transport == ({}, "memory", "memory", None)
    assert Proxy.DEFAULT_RETRY_OPTIONS == {
        "interval_start": 1,
        "interval_step": 1,
        "interval_max": 1,
        "max_retries": 3,
    }
    assert proxy.dispatcher.type_handlers == {}


def test_a_handler_must_be_callable():
    with pytest.raises(TypeError, match="NOTIFY"):
        Proxy("t", "ex", type_handlers={protocol.NOTIFY: object()}, transport="memory")
