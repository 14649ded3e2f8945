"""A worker's machinery: take requests off its queues, run the tasks it lists, answer.

Threads: :meth:`Server.run` consumes in the calling thread (the only one touching the
consuming connection): it checks each message, answers discovery at once and hands each
request to the pool. Pool threads run the task and publish its RUNNING, EVENT and final
responses (publishing is locked, any thread may). Every :attr:`Server.heartbeat` seconds
the consuming thread announces the worker (see :mod:`taskflow._workers.protocol`) and
repeats RUNNING for each task still running, so that engines can tell a dead worker from
a slow task.

Queues: the topic's (``<exchange>_<topic>``, shared by every worker of the topic, which is
where upstream's engines send) and the worker's own (``<exchange>_<identity>``, where ours
send to place work by free capacity). Requests are taken off the queue on arrival: a worker that
dies takes its tasks with it, and the engine, which notices from the missing heartbeats,
sends them elsewhere (so a task's ``execute`` runs at least once, as for a resumed flow).

Nothing a message says is trusted: a message that fails the protocol's checks is logged
(truncated) and, when it can be answered (it has a ``reply_to`` and a ``correlation_id``,
whatever its type), answered with a FAILURE saying why; a request for a task the worker
does not list is answered the same way, and nothing else is ever imported or run. Nothing
stops the consuming loop but :meth:`Server.stop`.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow._engine.executors import EXECUTE, REVERT, call_atom
from taskflow._workers import protocol
from taskflow._workers.transport import Link
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from taskflow._workers.transport import Received

__all__ = ["HEARTBEAT", "Server", "class_name"]

LOG = logging.getLogger("taskflow.engines.worker_based.worker")

#: Seconds between a worker's announcements and its running tasks' heartbeats.
HEARTBEAT = 1.0
#: Seconds a worker's own queue outlives its consumer (see :meth:`Link.queue`).
OWN_QUEUE_OUTLIVES = 30.0


def class_name(cls: type) -> str:
    """The name a task class is requested by: ``module.QualifiedName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Server:
    """Runs the tasks of ``tasks`` for requests on ``topic`` (module docstring).

    Args:
        exchange, url, transport, transport_options, retry_options: the broker (see
            :class:`~taskflow._workers.transport.Link`).
        topic: the topic to serve.
        tasks: the task classes it runs (nothing else).
        executor: a ``concurrent.futures`` executor to run them on (not shut down here),
            else a thread pool of ``threads_count`` threads.
        heartbeat: seconds between announcements and heartbeats.
        max_message_bytes: larger messages are rejected.
    """

    def __init__(
        self,
        exchange: str,
        topic: str,
        tasks: Iterable[type],
        executor: cf.Executor | None = None,
        threads_count: int = 1,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
        heartbeat: float = HEARTBEAT,
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
    ) -> None:
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"A worker's topic must be a non-empty string, not {topic!r}")
        if not heartbeat > 0:
            raise ValueError(f"'heartbeat' must be a positive number of seconds, not {heartbeat!r}")
        self.topic = topic
        self.identity = uuid.uuid4().hex
        self.endpoints: dict[str, type] = {class_name(cls): cls for cls in tasks}
        self.threads = threads_count
        self.heartbeat = float(heartbeat)
        self._limit = max_message_bytes
        self._given_pool = executor
        self._pool: cf.Executor | None = None
        self._link = Link(exchange, url, transport, transport_options, retry_options)
        self._announcement = protocol.encode({"topic": topic, "tasks": sorted(self.endpoints)})
        self._headers = {
            protocol.WORKER_HEADER: self.identity,
            protocol.THREADS_HEADER: self.threads,
        }
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # correlation id -> reply key, while a task runs
        self._stop = threading.Event()
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._next_beat = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (blocks)."""
        self._stopped.clear()
        self._pool = self._given_pool or cf.ThreadPoolExecutor(
            self.threads, thread_name_prefix=f"taskflow-worker-{self.topic}"
        )
        link = self._link
        try:
            # Its own queue outlives a reconnection (requests sent meanwhile wait in it) and
            # goes a little after the worker does; stop() deletes it at once.
            own = link.queue(
                self.identity, protocol.DISCOVERY_PREFIX + self.topic, outlive=OWN_QUEUE_OUTLIVES
            )
            queues = [link.queue(self.topic), own]
            link.consume(
                queues,
                self._on_message,
                self._stop,
                on_tick=self._on_tick,
                ready=self._started,
                delete=[own],  # with its bindings
            )
        finally:
            if self._given_pool is None:
                self._pool.shutdown(wait=True)
            self._pool = None
            link.close()
            self._stopped.set()

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._link.wake(self.identity)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`run` returned; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)

    # -- consuming thread -------------------------------------------------------------------------

    def _on_tick(self) -> None:
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self.heartbeat
        with self._lock:
            running = list(self._running.items())
        try:
            self._link.publish(
                protocol.ANNOUNCE_KEY, self._announcement, protocol.NOTIFY, headers=self._headers
            )
            beat = protocol.encode({"state": protocol.RUNNING, "data": {}})
            for correlation_id, reply_to in running:
                self._link.publish(
                    reply_to,
                    beat,
                    protocol.RESPONSE,
                    correlation_id=correlation_id,
                    headers=self._headers,
                )
        except Exception as err:
            LOG.warning("Worker %s could not send its heartbeat: %s", self.identity, err)

    def _on_message(self, received: Received) -> None:
        try:
            kind, body = protocol.decode(received, "worker", self._limit)
        except protocol.Rejected as err:
            LOG.warning(
                "Worker %s rejected a message (%s): %s",
                self.identity,
                err,
                protocol.preview(received.body),
            )
            self._refuse(received, err)
            return
        reply_to = received.reply_to
        if not isinstance(reply_to, str) or not reply_to:
            LOG.warning(
                "Worker %s dropped a %s message without reply_to: %s",
                self.identity,
                kind,
                protocol.preview(received.body),
            )
            return
        if kind == protocol.NOTIFY:
            self._publish(reply_to, self._announcement, protocol.NOTIFY)
            return
        correlation_id = received.correlation_id
        if not isinstance(correlation_id, str) or not correlation_id:
            LOG.warning(
                "Worker %s dropped a request without correlation_id: %s",
                self.identity,
                protocol.preview(received.body),
            )
            return
        task_cls = self.endpoints.get(body["task_cls"])
        if task_cls is None:
            unknown = exc.NotFound(
                f"Worker {self.identity} (topic {self.topic!r}) does not run task class"
                f" {protocol.clip(repr(body['task_cls']))}; it runs {sorted(self.endpoints)}"
            )
            LOG.warning("%s", unknown)
            self._respond_failure(reply_to, correlation_id, _failure_of(unknown))
            return
        pool = self._pool
        assert pool is not None
        try:
            pool.submit(self._run_request, reply_to, correlation_id, task_cls, body)
        except RuntimeError as refused:  # the pool is shutting down
            self._respond_failure(reply_to, correlation_id, _failure_of(refused))

    def _refuse(self, received: Received, err: Exception) -> None:
        """Answer a rejected message with a FAILURE saying why, when it can be answered:
        whatever its type, if it names where (``reply_to``) and for what
        (``correlation_id``). An answer has neither, so answers never loop."""
        reply_to, correlation_id = received.reply_to, received.correlation_id
        if isinstance(reply_to, str) and reply_to and isinstance(correlation_id, str):
            self._respond_failure(reply_to, correlation_id, _failure_of(err))

    # -- pool threads -----------------------------------------------------------------------------

    def _run_request(
        self, reply_to: str, correlation_id: str, task_cls: type, body: dict[str, Any]
    ) -> None:
        with self._lock:
            self._running[correlation_id] = reply_to
        try:
            self._respond(reply_to, correlation_id, protocol.RUNNING, {})
            try:
                task = task_cls(name=body["task_name"])
                method, kwargs = _call_of(body)
            except Exception:
                self._respond_failure(reply_to, correlation_id, Failure())
                return
            notifier = getattr(task, "notifier", None)
            if notifier is not None:

                def relay(event_type: str, details: dict[str, Any]) -> None:
                    data = {"event_type": event_type, "details": details}
                    self._respond(reply_to, correlation_id, protocol.EVENT, data)

                notifier.register(notifier.ANY, relay)
            _token, _method, ok, value, _events = call_atom((0, task, method, kwargs), None)
            if ok:
                try:
                    body_bytes = protocol.encode(
                        {"state": protocol.SUCCESS, "data": {"result": value}}
                    )
                except TypeError as err:
                    self._respond_failure(reply_to, correlation_id, _failure_of(err))
                    return
                self._publish(reply_to, body_bytes, protocol.RESPONSE, correlation_id)
            else:
                self._respond_failure(reply_to, correlation_id, value)
        finally:
            with self._lock:
                self._running.pop(correlation_id, None)

    # -- publishing -------------------------------------------------------------------------------

    def _respond(
        self, reply_to: str, correlation_id: str, state: str, data: dict[str, Any]
    ) -> None:
        try:
            payload = protocol.encode({"state": state, "data": data})
        except TypeError as err:
            LOG.warning("Worker %s could not send a %s response: %s", self.identity, state, err)
            return
        self._publish(reply_to, payload, protocol.RESPONSE, correlation_id)

    def _respond_failure(self, reply_to: str, correlation_id: str, failure: Failure) -> None:
        data = {"result": protocol.failure_to_dict(failure)}
        self._respond(reply_to, correlation_id, protocol.FAILURE, data)

    def _publish(
        self, routing_key: str, body: bytes, kind: str, correlation_id: str | None = None
    ) -> None:
        try:
            self._link.publish(
                routing_key, body, kind, correlation_id=correlation_id, headers=self._headers
            )
        except Exception as err:
            LOG.warning("Worker %s could not publish to %r: %s", self.identity, routing_key, err)


def _failure_of(err: BaseException) -> Failure:
    return Failure.from_exception(err)


def _call_of(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(method, keyword arguments) of the task call a request asks for."""
    kwargs = dict(body["arguments"])
    if body["action"] == protocol.EXECUTE:
        return EXECUTE, kwargs
    outcome, value = body["result"]
    kwargs["result"] = protocol.failure_from_dict(value) if outcome == "failure" else value
    kwargs["flow_failures"] = {
        name: protocol.failure_from_dict(data) for name, data in body["failures"].items()
    }
    return REVERT, kwargs
