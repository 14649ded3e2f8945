"""Messages over kombu: one exchange, a queue per routing key, raw bodies both ways.

The layout is upstream TaskFlow's, so that its engines and workers and ours talk to each
other: one non-durable, auto-deleted *direct* exchange named by the ``exchange`` option, and
for each routing key a non-durable, auto-deleted queue ``<exchange>_<routing key>`` bound to
it with that key. A worker's routing key is its topic; an engine's is its reply key.

:class:`Link` owns two kombu connections: one that publishes (from any thread, one at a
time) and one that consumes (only from the thread in :meth:`Link.consume`). kombu
connections are not thread-safe, and a consumer blocked in ``drain_events`` must not stop a
publish. Bodies are bytes here: :mod:`taskflow._workers.protocol` encodes and checks them,
so a malformed message never reaches kombu's own deserializers (nothing is unpickled, and a
body that is not JSON is only a rejected message).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

try:
    from kombu import exceptions as kombu_exc
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue, binding
    from kombu.messaging import Consumer
except ImportError as _err:  # pragma: no cover - the extra names it
    raise ImportError(
        "Worker-based engines need the kombu package: pip install taskflow[workers]",
        name="kombu",
    ) from _err

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ["CONTENT_TYPE", "Link", "Received"]

LOG = logging.getLogger("taskflow.engines.worker_based")

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
#: Seconds a consumer waits for a message before it looks at its clock (timeouts, stop).
TICK = 0.05
#: Seconds between reconnection attempts of a consumer whose connection broke.
RECONNECT_PAUSE = 0.5
#: The type of the message :meth:`Link.wake` sends (dropped on arrival).
WAKE_UP = "taskflow.wake-up"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


def _refuse_compressed(channel: Any) -> None:
    """Make ``channel`` refuse a message whose headers ask kombu to decompress it, before
    kombu builds its Message (which inflates the body, before any check of ours)."""
    convert = channel.message_to_python

    def guarded(raw: Any) -> Any:
        if isinstance(raw, dict):  # kombu's virtual transports: the payload
            headers = raw.get("headers")
        else:  # py-amqp: the message's properties
            headers = (getattr(raw, "properties", None) or {}).get("application_headers")
        if isinstance(headers, dict) and "compression" in headers:
            codec = _clip(repr(headers["compression"]), 60)
            raise ValueError(f"compressed messages are refused (compression {codec})")
        return convert(raw)

    channel.message_to_python = guarded


class Received:
    """A message as it came off a queue (the broker has forgotten it): its raw body and what the
    checks in :mod:`taskflow._workers.protocol` need."""

    __slots__ = (
        "body",
        "content_type",
        "correlation_id",
        "headers",
        "reply_to",
        "routing_key",
        "type",
    )

    def __init__(self, message: Any) -> None:
        properties = message.properties or {}
        headers = message.headers or {}
        body = message.body
        self.body: bytes = (
            body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        )
        self.content_type: str | None = message.content_type
        # kombu's virtual transports keep AMQP's basic properties in ``properties``; the
        # ``type`` may also arrive as a header from other publishers.
        self.type: Any = properties.get("type", headers.get("type"))
        self.reply_to: Any = properties.get("reply_to")
        self.correlation_id: Any = properties.get("correlation_id")
        self.routing_key: Any = (message.delivery_info or {}).get("routing_key")
        self.headers: dict[str, Any] = headers if isinstance(headers, dict) else {}


def queue_name(exchange: str, routing_key: str) -> str:
    return f"{exchange}_{routing_key}"


class Link:
    """Publishing and consuming on one exchange (module docstring).

    Args:
        exchange: the exchange's name.
        url: the broker's URL (kombu's; None: kombu's default, or the transport's).
        transport: a kombu transport name (``memory``, ``filesystem``, ``redis``...), if
            not the URL's.
        transport_options: passed to the transport (``polling_interval``...).
        retry_options: kombu retry policy of a publish whose connection fails
            (``max_retries``, ``interval_start``, ``interval_step``, ``interval_max``).
    """

    def __init__(
        self,
        exchange: str,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.exchange_name = exchange
        self._url = url
        self._transport = transport
        self._transport_options = dict(transport_options or {})
        self._retry = dict(retry_options or {})
        self.exchange = Exchange(exchange, type="direct", durable=False, auto_delete=True)
        self._publish_lock = threading.Lock()
        self._publisher: Any = None
        self._channel: Any = None
        #: What the last failed connection of the consumer said (None: none failed).
        self.last_error: str | None = None
        probe = self._connection()  # lazy: no connection is made by asking its error types
        self._publish_errors: tuple[type[BaseException], ...] = (
            OSError,
            *probe.connection_errors,
            *probe.channel_errors,
        )
        self._consumer_conn: Any = None
        self._closed = False

    def _connection(self) -> Any:
        return Connection(
            self._url, transport=self._transport, transport_options=self._transport_options
        )

    def describe(self) -> tuple[str, str, str, str | None]:
        """The broker as kombu names it, without connecting: the URI (password masked),
        the transport's type, its driver's name and the driver's version (if known)."""
        conn = self._connection()
        try:
            driver = conn.transport
            version = driver.driver_version()
            return (
                conn.as_uri(),
                driver.driver_type,
                driver.driver_name,
                None if version == "N/A" else version,
            )
        finally:
            with contextlib.suppress(Exception):
                conn.release()

    def queue(self, routing_key: str, *more_keys: str, outlive: float | None = None) -> Any:
        """The queue ``<exchange>_<routing_key>``, bound with that key and ``more_keys``.

        Auto-deleted when its last consumer goes, as upstream's are; with ``outlive``
        (seconds) it stays that long after (RabbitMQ's ``x-expires``) instead, so that a
        consumer reconnecting finds what was sent to it meanwhile. Only for a queue that
        is ours alone: a queue is declared again by everyone who uses it, and RabbitMQ
        refuses a declaration whose arguments differ.
        """
        name = queue_name(self.exchange_name, routing_key)
        bindings = [binding(self.exchange, routing_key=key) for key in (routing_key, *more_keys)]
        if outlive is None:
            return Queue(name, bindings=bindings, durable=False, auto_delete=True)
        arguments = {"x-expires": max(1, round(outlive * 1000))}
        return Queue(
            name, bindings=bindings, durable=False, auto_delete=False, queue_arguments=arguments
        )

    # -- publishing ---------------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        body: bytes,
        kind: str,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Send ``body`` (JSON bytes) to ``routing_key`` as a message of type ``kind``.

        Only the exchange is declared, never the destination's queue: a message to a key
        nobody consumes is dropped rather than left in a queue that nobody ever deletes.

        Raises:
            kombu's connection errors, once the retry policy gave up.
        """
        # kombu's defaults, as upstream's messages carry them.
        properties: dict[str, Any] = {"type": kind, "delivery_mode": 2}
        if reply_to is not None:
            properties["reply_to"] = reply_to
        if correlation_id is not None:
            properties["correlation_id"] = correlation_id
        retry = self._retry
        tries = int(retry.get("max_retries", 3) or 0) + 1
        for attempt in range(tries):
            # The lock is held for one attempt, never across a pause: a broker that went
            # away must not hold every other publisher (or close()) for the whole policy.
            with self._publish_lock:
                if self._closed:
                    raise kombu_exc.OperationalError("the link is closed")
                try:
                    # The channel's own publish: a tenth of Producer.publish's cost, which
                    # serializes, compresses and wraps every call in a retry closure.
                    channel = self._publish_channel()
                    message = channel.prepare_message(
                        body, 0, CONTENT_TYPE, CONTENT_ENCODING, dict(headers or {}), properties
                    )
                    channel.basic_publish(
                        message, exchange=self.exchange_name, routing_key=routing_key
                    )
                    return
                except self._publish_errors:
                    self._drop_publisher()
                    if attempt + 1 >= tries:
                        raise
            pause = float(retry.get("interval_start", 1)) + attempt * float(
                retry.get("interval_step", 1)
            )
            time.sleep(min(pause, float(retry.get("interval_max", 1))))

    def _publish_channel(self) -> Any:
        """The publishing channel, connected (and the exchange declared) on first use."""
        if self._channel is None:
            conn = self._connection()
            try:
                channel = conn.channel()
                self.exchange(channel).declare()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.release()
                raise
            self._publisher, self._channel = conn, channel
        return self._channel

    def _drop_publisher(self) -> None:
        publisher, self._publisher, self._channel = self._publisher, None, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                publisher.release()

    # -- consuming ----------------------------------------------------------------------------

    def consume(
        self,
        queues: Iterable[Any],
        on_message: Callable[[Received], None],
        stop: threading.Event,
        on_tick: Callable[[], None] | None = None,
        ready: threading.Event | None = None,
        delete: Iterable[Any] = (),
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        """Deliver each message of ``queues`` to ``on_message`` until ``stop`` is set,
        calling ``on_tick`` at least every :data:`TICK` seconds. Runs in the calling thread.

        Messages are taken without acknowledgement (the broker forgets each once sent), so
        that none comes back after a reconnection: a message that breaks the connection
        can not break it again. A broken connection (the broker went away, or a frame the
        client could not read, such as a property that is not UTF-8) is opened again, its
        queues declared again, and ``on_reconnect`` is called: messages sent to a queue
        that lived only while consumed may have been lost meanwhile. ``ready`` is set once
        the queues exist and are consumed. The queues of ``delete`` are deleted when it
        stops. Never raises for a message: a compressed one is refused before it is
        inflated (ours never compress; a small body could inflate past any size limit),
        and ``on_message`` errors are logged. :meth:`wake` makes it see ``stop`` at once.
        """
        queues = list(queues)

        def deliver(message: Any) -> None:
            received = Received(message)
            if received.type == WAKE_UP:
                return  # only ends the wait in drain_events
            try:
                on_message(received)
            except Exception:
                LOG.exception("Handling a message failed; it is dropped")

        def undecodable(message: Any, err: BaseException) -> None:
            LOG.warning("Dropped a message that can not be read: %s", _clip(str(err)))

        connections = 0
        while not stop.is_set():
            conn = self._connection()
            self._consumer_conn = conn
            try:
                channel = conn.channel()
                _refuse_compressed(channel)
                consumer = Consumer(
                    channel,
                    queues=queues,
                    on_message=deliver,
                    on_decode_error=undecodable,
                    accept=[],
                    no_ack=True,
                )
                consumer.consume()
                connections += 1
                if ready is not None:
                    ready.set()
                if connections > 1 and on_reconnect is not None:
                    on_reconnect()
                if on_tick is not None:
                    on_tick()  # at once: what is due on start (discovery, announcement)
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=TICK)
                    if on_tick is not None:
                        on_tick()
                with contextlib.suppress(Exception):
                    consumer.cancel()
                for queue in delete:
                    with contextlib.suppress(Exception):
                        queue.bind(channel).delete()
            except (OSError, *conn.connection_errors, *conn.channel_errors) as err:
                if stop.is_set():
                    break
                self.last_error = f"{type(err).__name__}: {_clip(str(err))}"
                LOG.warning("Lost the broker connection (%s); reconnecting", _clip(str(err)))
                time.sleep(RECONNECT_PAUSE)
                if on_tick is not None:
                    on_tick()
            except Exception as err:
                # The client could not read what the broker sent (a malformed frame): the
                # connection's state is unknown, so it goes; the message is gone with it.
                if stop.is_set():
                    break
                LOG.warning(
                    "Dropped the broker connection after a message that can not be read"
                    " (%s: %s); reconnecting",
                    type(err).__name__,
                    _clip(str(err)),
                )
            finally:
                self._consumer_conn = None
                with contextlib.suppress(Exception):
                    conn.release()

    def wake(self, routing_key: str) -> None:
        """Make a :meth:`consume` of the queue bound to ``routing_key`` look at its ``stop``
        now rather than at its next tick (best effort)."""
        try:
            self.publish(routing_key, b"{}", WAKE_UP)
        except Exception:
            LOG.debug("Could not wake the consumer of %r", routing_key, exc_info=True)

    def close(self) -> None:
        with self._publish_lock:
            self._closed = True
            self._drop_publisher()
