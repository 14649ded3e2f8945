"""A proxy to the broker: consume one topic's queue, publish protocol messages to others.

``Proxy(topic, exchange, type_handlers={NOTIFY: handler}, url=...)`` is upstream
TaskFlow's building block for talking the worker-based engine's protocol by hand::

    proxy = Proxy("my-topic", "my-exchange", type_handlers={protocol.NOTIFY: on_notify})
    threading.Thread(target=proxy.start).start()  # consume until stop()
    proxy.wait()
    proxy.publish(protocol.Notify(), "workers-topic", reply_to="my-topic")
    ...
    proxy.stop()

It consumes the queue ``<exchange>_<topic>`` (the layout of
:mod:`taskflow._workers.transport`, shared with engines and workers), decodes each JSON
message and hands it to the handler of its ``type`` property. A handler is a callable
``handler(data, message)`` or, as upstream's are, an object with a ``process_message(data,
message)`` method and an optional ``validator(data)`` that raises
:class:`~taskflow.exceptions.InvalidFormat` for a body it refuses. A message with no
handler, one that is not JSON and one its validator refuses is logged and dropped; so is
an error a handler raises (the proxy keeps consuming).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, Protocol, TypeAlias

from taskflow import exceptions as exc
from taskflow._workers import protocol as wire
from taskflow._workers.transport import Link

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from taskflow._workers.transport import Received
    from taskflow.engines.worker_based.protocol import Message

__all__ = [
    "DRAIN_EVENTS_PERIOD",
    "Delivery",
    "MessageHandler",
    "Proxy",
    "TypeDispatcher",
]

LOG = logging.getLogger(__name__)

#: Seconds between calls of a proxy's ``on_wait`` while it consumes.
DRAIN_EVENTS_PERIOD: Final = 1


@dataclass(frozen=True)
class Delivery:
    """A message as a type handler gets it (taken off its queue already).

    Attributes:
        type, reply_to, correlation_id: its properties (None when not set).
        routing_key: the key it was published with.
        headers: its headers.
        body: its raw body (the handler's ``data`` is that decoded).
        properties, delivery_info: the same, shaped as kombu's messages have them.
    """

    type: str
    reply_to: str | None
    correlation_id: str | None
    routing_key: str | None
    headers: dict[str, Any]
    body: bytes = field(repr=False)
    properties: dict[str, Any] = field(repr=False)
    delivery_info: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, received: Received, exchange: str) -> Delivery:
        properties = {
            "content_type": received.content_type,
            "type": received.type,
            "reply_to": received.reply_to,
            "correlation_id": received.correlation_id,
        }
        return cls(
            type=received.type,
            reply_to=received.reply_to,
            correlation_id=received.correlation_id,
            routing_key=received.routing_key,
            headers=received.headers,
            body=received.body,
            properties={k: v for k, v in properties.items() if v is not None},
            delivery_info={"exchange": exchange, "routing_key": received.routing_key},
        )


class MessageHandler(Protocol):
    """A handler object as upstream's are: ``process_message`` gets each message; an
    optional ``validator(data)`` attribute may refuse one first (raising
    :class:`~taskflow.exceptions.InvalidFormat`)."""

    def process_message(self, data: Any, message: Delivery) -> object: ...


#: What ``type_handlers`` maps a message type to.
TypeHandler: TypeAlias = "MessageHandler | Callable[[Any, Delivery], object]"


class TypeDispatcher:
    """Hands each message to the handler of its type (the module docstring says how)."""

    def __init__(self, type_handlers: Mapping[str, TypeHandler] | None = None) -> None:
        self._type_handlers: dict[str, TypeHandler] = dict(type_handlers or {})
        for kind, handler in self._type_handlers.items():
            if not (callable(handler) or callable(getattr(handler, "process_message", None))):
                raise TypeError(f"The handler of {kind!r} messages is not callable: {handler!r}")

    @property
    def type_handlers(self) -> dict[str, TypeHandler]:
        """The handlers by message type."""
        return self._type_handlers

    def on_message(self, data: Any, message: Delivery) -> None:
        """Validate ``data`` (the decoded body of ``message``) and handle it, or log why
        it is dropped. A handler's error is raised."""
        handler = self._type_handlers.get(message.type)
        if handler is None:
            LOG.warning("Unexpected message type %r in %s; dropped", message.type, message)
            return
        validator = getattr(handler, "validator", None)
        if validator is not None:
            try:
                validator(data)
            except exc.InvalidFormat as err:
                LOG.warning("%s (%s) was rejected as invalid: %s", message, message.type, err)
                return
        process = getattr(handler, "process_message", None)
        if process is not None:
            process(data, message)
        elif callable(handler):
            handler(data, message)
        else:  # checked in __init__, but type_handlers may have changed since
            raise TypeError(f"The handler of {message.type!r} messages is not callable")


class _TransportDetails(NamedTuple):
    options: dict[str, Any]
    driver_type: str
    driver_name: str
    driver_version: str | None


class _ConnectionDetails(NamedTuple):
    uri: str
    transport: _TransportDetails


class Proxy:
    """Consumes ``<exchange>_<topic>`` and publishes protocol messages on ``exchange``.

    Args:
        topic: the routing key it consumes (its queue is ``<exchange>_<topic>``).
        exchange: the exchange's name.
        type_handlers: the handler of each message type (the module docstring).
        on_wait: called with no arguments every :data:`DRAIN_EVENTS_PERIOD` seconds (and
            at once) while it consumes, from :meth:`start`'s thread.
        url, transport, transport_options: the broker (kombu's URL, transport name and
            options), as for the engine.
        retry_options: how a failing publish is retried, over
            :attr:`DEFAULT_RETRY_OPTIONS` (``max_retries``, ``interval_start``,
            ``interval_step``, ``interval_max``).
    """

    #: The retry policy of a publish.
    DEFAULT_RETRY_OPTIONS: ClassVar[dict[str, Any]] = {
        "interval_start": 1,
        "interval_step": 1,
        "interval_max": 1,
        "max_retries": 3,
    }

    def __init__(
        self,
        topic: str,
        exchange: str,
        type_handlers: Mapping[str, TypeHandler] | None = None,
        on_wait: Callable[[], object] | None = None,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._topic = topic
        self._exchange = exchange
        self._dispatcher = TypeDispatcher(type_handlers)
        self._on_wait = on_wait
        self._link_options: dict[str, Any] = {
            "url": url,
            "transport": transport,
            "transport_options": dict(transport_options or {}),
            "retry_options": {**self.DEFAULT_RETRY_OPTIONS, **(retry_options or {})},
        }
        self._lock = threading.Lock()
        # Replaced by stop() (which closes its publishing connection); publish() uses
        # whichever is current.
        self._link = Link(exchange, **self._link_options)
        # Set by start() for one consumption; set again by stop() to end it.
        self._stop = threading.Event()
        # Set while a consumer is on the queue.
        self._ready = threading.Event()
        uri, driver_type, driver_name, driver_version = self._link.describe()
        self._connection_details = _ConnectionDetails(
            uri,
            _TransportDetails(
                dict(transport_options or {}), driver_type, driver_name, driver_version
            ),
        )

    @property
    def dispatcher(self) -> TypeDispatcher:
        """What hands each message to its type's handler."""
        return self._dispatcher

    @property
    def connection_details(self) -> _ConnectionDetails:
        """The broker: ``uri`` (password masked) and ``transport`` (``options``,
        ``driver_type``, ``driver_name``, ``driver_version``)."""
        return self._connection_details

    @property
    def is_running(self) -> bool:
        """Whether it consumes now (:meth:`start` runs and :meth:`stop` was not called)."""
        return self._ready.is_set() and not self._stop.is_set()

    def start(self) -> None:
        """Consume the topic's queue until :meth:`stop`, handling each message (blocks).
        A lost connection is opened again."""
        with self._lock:
            stop = self._stop = threading.Event()
            link = self._link
        LOG.info("Starting to consume from the %r exchange.", self._exchange)
        last_wait: float | None = None

        def tick() -> None:
            nonlocal last_wait
            now = time.monotonic()
            if self._on_wait is None or (
                last_wait is not None and now - last_wait < DRAIN_EVENTS_PERIOD
            ):
                return
            last_wait = now
            try:
                self._on_wait()
            except Exception:
                LOG.exception("The on_wait callback failed")

        try:
            link.consume(
                [link.queue(self._topic)], self._deliver, stop, on_tick=tick, ready=self._ready
            )
        finally:
            self._ready.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until it consumes (:meth:`start` runs); False if ``timeout`` passed first."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Make :meth:`start` return (within a moment), and close the publishing
        connection (a later :meth:`publish` opens another)."""
        with self._lock:
            self._stop.set()
            link, self._link = self._link, Link(self._exchange, **self._link_options)
        if self._ready.is_set():
            link.wake(self._topic)
        link.close()

    def publish(
        self,
        msg: Message,
        routing_key: str | Iterable[str],
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Send ``msg`` (its ``to_dict()`` as the JSON body, its ``TYPE`` as the ``type``
        property) to ``routing_key``, or to each of several.

        Raises:
            TypeError: the body can not travel as JSON.
            kombu's connection errors: once the retry policy gave up.
        """
        body = wire.encode(msg.to_dict())
        keys = [routing_key] if isinstance(routing_key, str) else list(routing_key)
        with self._lock:
            link = self._link
        for key in keys:
            LOG.debug("Sending %r to %r", msg, key)
            link.publish(key, body, msg.TYPE, reply_to=reply_to, correlation_id=correlation_id)

    def _deliver(self, received: Received) -> None:
        """Decode a message of the queue and hand it to the dispatcher."""
        message = Delivery.of(received, self._exchange)
        try:
            data = wire.load(received)
        except wire.Rejected as err:
            LOG.warning("%s was dropped: %s", message, err)
            return
        self._dispatcher.on_message(data, message)
