"""The engine's side: an executor whose calls run on remote workers.

:class:`RemoteExecutor` is an :class:`~taskflow._engine.executors.AtomExecutor`: the engine
submits calls, the executor sends each as a request and reports its outcome when the
worker's answer arrives. One consuming thread (the only one touching the consuming
connection) handles every answer and, every tick, the clock.

Workers. A worker is known from its answer to discovery (sent to every topic when the run
starts, and every :data:`NOTIFY_PERIOD` after) or from its own announcements (ours announce
themselves when they start and every heartbeat; the reply queue listens to
:data:`~taskflow._workers.protocol.ANNOUNCE_KEY`). Ours name themselves (a header), so
each is addressed alone, through its own queue, with its thread count known; upstream's
answer anonymously and are addressed through their topic's queue.

Placement: a request goes to the capable live worker with the most free threads (its
threads minus this engine's requests on it), so independent tasks spread over every
worker. When every capable worker is busy it waits in the engine (WAITING, queued) and goes
to the first one whose thread frees; with no capable worker at all it waits (WAITING) for
one to show up, at most ``transition_timeout`` seconds.

Liveness: a worker is live while it is heard from: ours at least every heartbeat
(announcements, and a repeated RUNNING for each task they run); upstream's only answer
discovery, which is sent to their topics every third of ``worker_timeout`` while they have
work of ours. A worker not heard from for ``worker_timeout`` seconds is dead: each of its
requests goes to another capable live worker (its ``execute`` runs again, at least once in
all, as a resumed RUNNING atom's does) or, when there is none, fails with
:class:`~taskflow.exceptions.RequestTimeout` naming the task and the worker, and the flow
reverts. A request sent but not started within ``transition_timeout`` fails the same way,
as upstream's do. So a run never hangs on a worker.

Answers are checked (:func:`taskflow._workers.protocol.decode`); one that fails is logged
and dropped, as is one for a request this run does not know. A broken connection is opened
again, and the requests under way are sent again (their answers may have been lost with
the reply queue, which lives only while consumed). The reply queue, the only
queue a run creates, is deleted when the run ends.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow._engine.executors import EXECUTE, AtomExecutor
from taskflow._workers import protocol
from taskflow._workers.server import class_name
from taskflow._workers.transport import Link
from taskflow.task import EVENT_UPDATE_PROGRESS
from taskflow.types.failure import Failure
from taskflow.utils import threading_utils

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from taskflow._engine.executors import Call, Completion, ProgressSink
    from taskflow._workers.transport import Received

__all__ = ["NOTIFY_PERIOD", "WORKER_TIMEOUT", "RemoteExecutor"]

LOG = logging.getLogger("taskflow.engines.worker_based.executor")

#: Seconds between discovery messages to every topic.
NOTIFY_PERIOD = 5.0
#: Default seconds a worker with work may stay silent before it counts as dead.
WORKER_TIMEOUT = 5.0
#: Default seconds a run waits for its broker before it fails.
CONNECT_TIMEOUT = 10.0
#: The thread count assumed for a worker that does not say (upstream's default pool).
ANONYMOUS_THREADS = threading_utils.get_optimal_thread_count()


@dataclasses.dataclass(eq=False)
class _Worker:
    """A worker as this run knows it."""

    #: Where requests for it go: its identity (ours) or its topic (upstream's).
    key: str
    topic: str
    tasks: frozenset[str]
    identity: str | None
    threads: int
    seen: float
    #: This run's requests on it (sent, not answered yet).
    busy: int = 0

    def __str__(self) -> str:
        who = self.identity or "(anonymous)"
        return f"worker {who} on topic {self.topic!r}"


@dataclasses.dataclass(eq=False)
class _Request:
    token: int
    atom: Any
    method: str
    task_cls: str
    body: bytes
    correlation_id: str
    created: float
    state: str = protocol.WAITING
    worker: _Worker | None = None
    sent: float = 0.0
    #: Keys of workers that died with it (never tried again).
    lost: set[str] = dataclasses.field(default_factory=set)
    #: WAITING for a free thread of a capable worker (not for a capable worker to exist).
    queued: bool = False


class RemoteExecutor(AtomExecutor):
    """Runs calls on remote workers (module docstring).

    Args:
        reply_key: the routing key answers come back to (unique per run).
        exchange, url, transport, transport_options, retry_options: the broker.
        topics: the topics whose workers this run may use.
        transition_timeout: seconds a request may wait for a worker, or for its task to
            start once sent (None: no limit).
        worker_expiry: seconds an idle worker stays known without being heard from.
        worker_timeout: seconds a worker with work may stay silent before it is dead.
        max_message_bytes: larger answers are rejected.
        connect_timeout: seconds a run waits to reach the broker before it fails.
    """

    def __init__(
        self,
        reply_key: str,
        exchange: str,
        topics: Iterable[str],
        transition_timeout: float | None = 60.0,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
        worker_expiry: float = 60.0,
        worker_timeout: float = WORKER_TIMEOUT,
        max_message_bytes: int = protocol.MAX_MESSAGE_BYTES,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.reply_key = reply_key
        self.connect_timeout = connect_timeout
        self.topics = tuple(topics)
        self.transition_timeout = transition_timeout
        self.worker_expiry = worker_expiry
        self.worker_timeout = worker_timeout
        self._limit = max_message_bytes
        self._link_args = (exchange, url, transport, transport_options, retry_options)
        self._link: Link | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._workers: dict[str, _Worker] = {}
        self._requests: dict[str, _Request] = {}
        self._by_token: dict[int, _Request] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_notify = 0.0
        self._next_ping = 0.0

    # -- lifecycle (engine thread) --------------------------------------------------------------

    def start(self, report: Callable[[Completion], None], progress: ProgressSink) -> None:
        super().start(report, progress)
        if self._thread is not None and self._thread.is_alive():
            return  # started before the run (to wait for workers): only the run is new
        self._stop.clear()
        link = self._link = Link(*self._link_args)
        ready = threading.Event()
        queue = link.queue(self.reply_key, protocol.ANNOUNCE_KEY)
        self._queue = queue
        self._thread = threading.Thread(
            target=link.consume,
            args=([queue], self._on_message, self._stop),
            kwargs={
                "on_tick": self._on_tick,
                "ready": ready,
                "delete": [queue],
                "on_reconnect": self._on_reconnect,
            },
            name=f"taskflow-wbe-{self.reply_key}",
            daemon=True,
        )
        self._thread.start()
        # Answers to discovery must find the queue: it exists once the consumer is ready.
        deadline = time.monotonic() + self.connect_timeout
        while not ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._stop.set()
                self._thread.join(1.0)  # it may be inside a connection attempt: not waited for
                self._thread, self._link = None, None
                link.close()
                raise exc.ExecutionFailure(
                    f"The worker-based engine could not reach its broker at {link.describe()[0]}"
                    f" within {self.connect_timeout:g} s"
                    + (f" ({link.last_error})" if link.last_error else "")
                )

    def wait_for_workers(self, workers: int = 1, timeout: float | None = None) -> int:
        """Wait until ``workers`` workers are known; how many are still missing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while len(self._workers) < workers:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left if left is not None else 0.1)
            return max(0, workers - len(self._workers))

    def submit(self, call: Call) -> None:
        token, atom, method, kwargs = call
        task_cls = class_name(type(atom))
        correlation_id = uuid.uuid4().hex
        try:
            body = protocol.encode(_request_body(atom, task_cls, method, kwargs))
        except TypeError as err:
            self._report((token, method, False, Failure.from_exception(err), None))
            return
        request = _Request(token, atom, method, task_cls, body, correlation_id, time.monotonic())
        with self._lock:
            self._requests[correlation_id] = request
            self._by_token[token] = request
            self._place(request, time.monotonic())

    def cancel(self, token: int) -> bool:
        with self._lock:
            request = self._by_token.get(token)
            if request is None or request.state != protocol.WAITING:
                return False
            self._forget(request)
            return True

    def shutdown(self) -> None:
        # Calls under way finish first (the engine waits for their outcomes).
        with self._changed:
            while self._requests and self._thread is not None and self._thread.is_alive():
                self._changed.wait(0.1)
        self._stop.set()
        link, self._link = self._link, None
        if self._thread is not None:
            if link is not None:
                link.wake(self.reply_key)
            self._thread.join()
            self._thread = None
        if link is not None:
            link.close()

    # -- placement (under the lock) -------------------------------------------------------------

    def _place(self, request: _Request, now: float) -> None:
        """Send ``request`` to the capable live worker with the most free threads; leave it
        WAITING when there is none (``queued`` False) or when every capable one is busy
        (``queued`` True: it goes as soon as one of them has a free thread)."""
        best: _Worker | None = None
        for worker in self._workers.values():
            if request.task_cls not in worker.tasks or worker.key in request.lost:
                continue
            if best is None or worker.threads - worker.busy > best.threads - best.busy:
                best = worker
        request.state = protocol.WAITING
        request.queued = best is not None
        if best is None or best.threads <= best.busy:
            return
        link = self._link
        assert link is not None
        try:
            link.publish(
                best.key,
                request.body,
                protocol.REQUEST,
                reply_to=self.reply_key,
                correlation_id=request.correlation_id,
            )
        except Exception as err:
            LOG.warning("Could not send task %s to %s: %s", request.atom.name, best, err)
            return
        request.state = protocol.PENDING
        request.worker = best
        request.sent = now
        best.busy += 1

    def _forget(self, request: _Request) -> None:
        self._requests.pop(request.correlation_id, None)
        self._by_token.pop(request.token, None)
        if request.worker is not None:
            request.worker.busy -= 1
            request.worker = None
        self._changed.notify_all()

    def _finish(self, request: _Request, ok: bool, value: Any) -> Completion:
        self._forget(request)
        return (request.token, request.method, ok, value, None)

    def _place_waiting(self, now: float) -> None:
        for request in list(self._requests.values()):
            if request.state == protocol.WAITING:
                self._place(request, now)

    # -- the consuming thread -------------------------------------------------------------------

    def _on_message(self, received: Received) -> None:
        try:
            kind, body = protocol.decode(received, "engine", self._limit)
        except protocol.Rejected as err:
            LOG.warning("Rejected a message (%s): %s", err, protocol.preview(received.body))
            return
        now = time.monotonic()
        identity = received.headers.get(protocol.WORKER_HEADER)
        identity = identity if isinstance(identity, str) and identity else None
        if kind == protocol.NOTIFY:
            self._on_worker(body, identity, received.headers, now)
            return
        correlation_id = received.correlation_id
        events: list[tuple[str, dict[str, Any]]] = []
        completion: Completion | None = None
        with self._lock:
            request = (
                self._requests.get(correlation_id) if isinstance(correlation_id, str) else None
            )
            if request is None:
                LOG.debug("Dropped a response for an unknown request %r", correlation_id)
                return
            worker = request.worker
            named = self._workers.get(identity) if identity is not None else None
            if named is not None:
                named.seen = now
                if worker is not None and worker.identity is None and worker is not named:
                    # Sent through the topic's queue, taken by one of ours (they share it):
                    # it is that worker's now, to count and to watch.
                    worker.busy -= 1
                    named.busy += 1
                    request.worker = worker = named
            elif worker is not None and worker.identity is None:
                worker.seen = now  # upstream's: heard from its topic
            state, data = body["state"], body["data"]
            if state in (protocol.SUCCESS, protocol.FAILURE):
                if state == protocol.SUCCESS:
                    completion = self._finish(request, True, data["result"])
                else:
                    failure = protocol.failure_from_dict(data["result"])
                    completion = self._finish(request, False, failure)
                self._place_waiting(now)
            elif (
                identity is not None
                and worker is not None
                and worker.identity not in (None, identity)
            ):
                return  # a worker this request was taken from: not its holder any more
            elif state == protocol.RUNNING:
                if request.state == protocol.PENDING:
                    request.state = protocol.RUNNING
            else:
                events.append((data["event_type"], data["details"]))
        if completion is not None:
            self._report(completion)
            return
        for event_type, details in events:
            self._relay(request, event_type, details)

    def _on_reconnect(self) -> None:
        """The reply queue lived only while consumed: answers sent while the connection was
        down are lost. Every request under way goes out again (at least once, as when its
        worker dies), and discovery runs again."""
        now = time.monotonic()
        with self._lock:
            for request in list(self._requests.values()):
                if request.state in (protocol.PENDING, protocol.RUNNING):
                    LOG.warning("Task %r sent again after a reconnection", request.atom.name)
                    if request.worker is not None:
                        request.worker.busy -= 1
                        request.worker = None
                    self._place(request, now)
            self._next_notify = 0.0

    def _relay(self, request: _Request, event_type: str, details: dict[str, Any]) -> None:
        """Replay a task event on the engine's copy of the task (and record progress)."""
        notifier = getattr(request.atom, "notifier", None)
        if notifier is not None:
            try:
                notifier.notify(event_type, details)
            except Exception:
                LOG.warning("A listener of task %s failed", request.atom.name, exc_info=True)
        if event_type == EVENT_UPDATE_PROGRESS and isinstance(details.get("progress"), int | float):
            rest = {key: value for key, value in details.items() if key != "progress"}
            self._progress(request.token, float(details["progress"]), rest)

    def _on_worker(
        self, body: dict[str, Any], identity: str | None, headers: dict[str, Any], now: float
    ) -> None:
        topic = body["topic"]
        if topic not in self.topics:
            return
        threads = headers.get(protocol.THREADS_HEADER)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            # Upstream's workers do not say: assume their default pool (CPUs + 1).
            threads = ANONYMOUS_THREADS
        key = identity or topic
        with self._changed:
            worker = self._workers.get(key)
            if worker is None:
                worker = _Worker(key, topic, frozenset(body["tasks"]), identity, threads, now)
                self._workers[key] = worker
                LOG.debug("Found %s (%d threads): %s", worker, threads, sorted(worker.tasks))
            else:
                worker.seen = now
                worker.tasks = frozenset(body["tasks"])
                worker.threads = threads
            self._place_waiting(now)
            self._changed.notify_all()

    def _on_tick(self) -> None:
        now = time.monotonic()
        failed: list[Completion] = []
        with self._lock:
            self._expire(now, failed)
            if self.transition_timeout is not None:
                for request in list(self._requests.values()):
                    # Waiting for a capable worker, or for the sent task to start; a request
                    # queued for a free thread waits as long as the engine's own calls do.
                    since = request.created if request.state == protocol.WAITING else request.sent
                    if (
                        request.state == protocol.PENDING
                        or (request.state == protocol.WAITING and not request.queued)
                    ) and now - since > self.transition_timeout:
                        where = (
                            "a capable worker"
                            if request.state == protocol.WAITING
                            else "its worker"
                        )
                        err = exc.RequestTimeout(
                            f"Task {request.atom.name!r} ({request.task_cls}) waited more than"
                            f" {self.transition_timeout:g} s for {where}"
                            + ("" if request.worker is None else f" ({request.worker})")
                        )
                        failed.append(self._finish(request, False, Failure.from_exception(err)))
            # Upstream's workers are heard from only through discovery sent to their topic's
            # queue, which the broker hands to its consumers in turn, ours included: one
            # message per consumer reaches each of them.
            pings = {
                w.topic: 1
                + sum(1 for o in self._workers.values() if o.topic == w.topic and o.identity)
                for w in self._workers.values()
                if w.identity is None and w.busy
            }
        for completion in failed:
            self._report(completion)
        if now >= self._next_notify:
            self._next_notify = now + NOTIFY_PERIOD
            self._next_ping = now + self.worker_timeout / 3
            self._discover(self.topics)
        elif now >= self._next_ping:
            self._next_ping = now + self.worker_timeout / 3
            for topic, count in pings.items():
                self._ping(topic, count)

    def _expire(self, now: float, failed: list[Completion]) -> None:
        """Drop workers not heard from in time; move or fail their requests (under the lock)."""
        for key, worker in list(self._workers.items()):
            silent = now - worker.seen
            limit = self.worker_timeout if worker.busy or worker.identity else self.worker_expiry
            if silent <= limit:
                continue
            del self._workers[key]
            if not worker.busy:
                continue
            LOG.warning("Lost %s: not heard from for %.1f s", worker, silent)
            for request in list(self._requests.values()):
                if request.worker is not worker:
                    continue
                request.worker = None
                worker.busy -= 1
                request.lost.add(key)
                self._place(request, now)
                if request.state == protocol.WAITING and not request.queued:
                    err = exc.RequestTimeout(
                        f"Task {request.atom.name!r} ({request.task_cls}) was lost with {worker}"
                        f" (not heard from for {silent:.1f} s) and no other worker runs it"
                    )
                    failed.append(self._finish(request, False, Failure.from_exception(err)))
                else:
                    LOG.warning(
                        "Task %r sent again, to %s (it was lost with %s)",
                        request.atom.name,
                        request.worker,
                        worker,
                    )

    def _discover(self, topics: Iterable[str]) -> None:
        link = self._link
        if link is None:
            return
        for topic in topics:
            try:
                for key in (topic, protocol.DISCOVERY_PREFIX + topic):
                    link.publish(key, b"{}", protocol.NOTIFY, reply_to=self.reply_key)
            except Exception as err:
                LOG.warning("Could not send discovery to topic %r: %s", topic, err)

    def _ping(self, topic: str, count: int) -> None:
        """Send ``count`` discovery messages to ``topic``'s queue (to reach each consumer)."""
        link = self._link
        if link is None:
            return
        try:
            for _ in range(count):
                link.publish(topic, b"{}", protocol.NOTIFY, reply_to=self.reply_key)
        except Exception as err:
            LOG.warning("Could not send discovery to topic %r: %s", topic, err)


def _request_body(atom: Any, task_cls: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The body of a request for one call of ``atom`` (see the protocol)."""
    version = getattr(atom, "version", (1, 0))
    body: dict[str, Any] = {
        "task_cls": task_cls,
        "task_name": atom.name,
        "task_version": list(version) if isinstance(version, tuple | list) else str(version),
        "action": protocol.EXECUTE if method == EXECUTE else protocol.REVERT,
    }
    if method == EXECUTE:
        body["arguments"] = kwargs
        return body
    arguments = dict(kwargs)
    result = arguments.pop("result", None)
    flow_failures = arguments.pop("flow_failures", None) or {}
    body["arguments"] = arguments
    if isinstance(result, Failure):
        body["result"] = ["failure", protocol.failure_to_dict(result)]
    else:
        body["result"] = ["success", result]
    body["failures"] = {
        name: protocol.failure_to_dict(failure) for name, failure in flow_failures.items()
    }
    return body
