"""The worker-based engine's messages as objects: upstream TaskFlow's names and dicts.

Three kinds of message travel (see :mod:`taskflow._workers.protocol` for the wire format
and its checks): a :class:`Notify` asks who serves a topic and carries the answer, a
:class:`Request` asks a worker to execute or revert a task, and a :class:`Response` says
how that went. Each one's ``to_dict()`` is the message body, its ``TYPE`` the message's
``type`` property; :class:`~taskflow.engines.worker_based.proxy.Proxy` sends them.

``validate()`` checks a received body the way our engine and workers check it, against the
JSON schemas of :mod:`taskflow._workers.protocol`; those are stricter than upstream's in
places (a response's ``data`` must fit its state, a request must carry ``arguments``, and
a revert its ``result`` and ``failures``) and looser in others (extra keys in a body), as
that module's docstring explains.

A :class:`Request` also tracks its own lifecycle, as upstream's does: WAITING for a worker,
PENDING once sent, RUNNING once started, then SUCCESS or FAILURE (or FAILURE straight from
WAITING or PENDING: it expired). See :meth:`Request.transition`.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

from taskflow import exceptions as exc
from taskflow._workers import protocol as wire
from taskflow._workers.server import class_name
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Mapping

    from taskflow.task import Task

__all__ = [
    "ACTION_TO_EVENT",
    "EVENT",
    "EXECUTE",
    "EXPIRES_AFTER",
    "FAILURE",
    "NOTIFY",
    "NOTIFY_PERIOD",
    "NO_RESULT",
    "PENDING",
    "QUEUE_EXPIRE_TIMEOUT",
    "REQUEST",
    "REQUEST_TIMEOUT",
    "RESPONSE",
    "REVERT",
    "RUNNING",
    "STOP_TIMER_STATES",
    "SUCCESS",
    "WAITING",
    "WAITING_STATES",
    "Message",
    "Notify",
    "Request",
    "Response",
    "failure_to_dict",
]

# Message types (the ``type`` property).
NOTIFY: Final = wire.NOTIFY
REQUEST: Final = wire.REQUEST
RESPONSE: Final = wire.RESPONSE

# Request states, and EVENT: the response state of an event of the running task.
WAITING: Final = wire.WAITING
PENDING: Final = wire.PENDING
RUNNING: Final = wire.RUNNING
SUCCESS: Final = wire.SUCCESS
FAILURE: Final = wire.FAILURE
EVENT: Final = wire.EVENT

# Request actions.
EXECUTE: Final = wire.EXECUTE
REVERT: Final = wire.REVERT

#: Seconds between an engine's discovery messages to its topics.
NOTIFY_PERIOD: Final = 5
#: Default seconds a request may stay in :data:`WAITING_STATES` before it expires.
REQUEST_TIMEOUT: Final = 60
#: Seconds an idle worker stays known to an engine without being heard from.
EXPIRES_AFTER: Final = 60
#: Upstream's seconds for unused queues to expire (none of ours sets an expiry: they are
#: auto-deleted when their consumer goes).
QUEUE_EXPIRE_TIMEOUT: Final = 60

#: States in which a request waits to be started; it expires if it stays too long.
WAITING_STATES: Final = (WAITING, PENDING)
#: States in which a request no longer expires.
STOP_TIMER_STATES: Final = (RUNNING, SUCCESS, FAILURE)

#: The event a finished request's future reports, by action.
ACTION_TO_EVENT: Final[Mapping[str, str]] = {EXECUTE: "executed", REVERT: "reverted"}


class _NoResult:
    def __repr__(self) -> str:
        return "NO_RESULT"


#: The ``result`` of a :class:`Request` that has none (not even None).
NO_RESULT: Final[Any] = _NoResult()

#: Request states and the ones each may move to (moving to the same state is a no-op).
_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    WAITING: frozenset({PENDING, FAILURE}),  # sent to a worker, or expired/failed unsent
    PENDING: frozenset({RUNNING, FAILURE}),  # the worker started it, or it expired
    RUNNING: frozenset({SUCCESS, FAILURE}),  # the worker's answer
    SUCCESS: frozenset(),
    FAILURE: frozenset(),
}

LOG = logging.getLogger(__name__)


def failure_to_dict(failure: Failure) -> dict[str, Any]:
    """``failure`` as a message carries it: :meth:`Failure.to_dict`, without the
    exception's arguments when they can not travel as JSON."""
    return wire.failure_to_dict(failure)


class Message(abc.ABC):
    """A message of the protocol: ``to_dict()`` is its body, ``TYPE`` its type."""

    TYPE: ClassVar[str]

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The message's body."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {id(self):#x} with contents {self.to_dict()}>"


class Notify(Message):
    """Discovery: sent with no data (``Notify()``) it asks the workers of a topic who they
    are; a worker answers ``Notify(topic=..., tasks=[task class names])``."""

    TYPE: ClassVar[str] = NOTIFY
    #: The schemas a received body is checked against: the question, the answer.
    SENDER_SCHEMA: ClassVar[dict[str, Any]] = wire.schema(NOTIFY, "worker")
    RESPONSE_SCHEMA: ClassVar[dict[str, Any]] = wire.schema(NOTIFY, "engine")

    def __init__(self, **data: Any) -> None:
        self._data = data

    @property
    def topic(self) -> str | None:
        """The answering worker's topic (None in a question)."""
        return self._data.get("topic")

    @property
    def tasks(self) -> list[str] | None:
        """The task classes the answering worker runs (None in a question)."""
        return self._data.get("tasks")

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)

    @staticmethod
    def validate(data: Any, response: bool) -> None:
        """Check a received body: an answer when ``response``, else a question.

        Raises:
            taskflow.exceptions.InvalidFormat: it is not one.
        """
        wire.validate(NOTIFY, "engine" if response else "worker", data)


class _WorkUnit(NamedTuple):
    """What a worker does for a request: call ``action`` of a ``task_cls`` named
    ``task_name`` with ``arguments`` (keyword arguments of the worker's call)."""

    task_cls: str
    task_name: str
    action: str
    arguments: dict[str, Any]


class Request(Message):
    """A request to ``action`` (``'execute'`` or ``'revert'``) ``task`` on a worker.

    Args:
        task: the task (its class and version are sent, and its name).
        uuid: the request's id (the message's ``correlation_id``; the atom's uuid).
        action: ``'execute'`` or ``'revert'``.
        arguments: the keyword arguments of the call.
        timeout: seconds it may stay in :data:`WAITING_STATES` (None: no limit).
        result: for a revert, what execute returned or the Failure it raised.
        failures: for a revert, the failures of the flow by atom name.

    Attributes:
        task, uuid: as given.
        created_on: when it was made (``time.monotonic()``).
        future: resolved by :meth:`set_result` with ``(event, result)``, the event
            being :data:`ACTION_TO_EVENT` of the action.

    Raises:
        ValueError: an unknown action or a negative timeout.
    """

    TYPE: ClassVar[str] = REQUEST
    #: The schema a received body is checked against.
    SCHEMA: ClassVar[dict[str, Any]] = wire.schema(REQUEST, "worker")

    def __init__(
        self,
        task: Task,
        uuid: str,
        action: str,
        arguments: Mapping[str, Any] | None,
        timeout: float | None = REQUEST_TIMEOUT,
        result: Any = NO_RESULT,
        failures: Mapping[str, Failure] | None = None,
    ) -> None:
        if action not in ACTION_TO_EVENT:
            raise ValueError(f"Unknown action {action!r} (expected {EXECUTE!r} or {REVERT!r})")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be None or at least 0, not {timeout!r}")
        self.task = task
        self.uuid = uuid
        self.created_on = time.monotonic()
        self.future: cf.Future[tuple[str, Any]] = cf.Future()
        self._action = action
        self._arguments = arguments
        self._result = result
        self._failures = failures
        self._timeout = timeout
        self._lock = threading.Lock()
        # Only moves along _TRANSITIONS (under _lock).
        self._state = WAITING

    @property
    def current_state(self) -> str:
        """WAITING, PENDING, RUNNING, SUCCESS or FAILURE."""
        return self._state

    @property
    def expired(self) -> bool:
        """Whether it has waited longer than its timeout to start (never once RUNNING)."""
        if self._timeout is None or self._state not in WAITING_STATES:
            return False
        return time.monotonic() - self.created_on >= self._timeout

    def to_dict(self) -> dict[str, Any]:
        """The request's body, as upstream's engines send it.

        ``result`` is sent when there is one, tagged ``('success', value)`` or
        ``('failure', failure dict)``. ``failures`` is sent when there are some, and always
        for a revert (upstream leaves an empty one out, and its workers then fail the
        revert for the missing argument).
        """
        task = self.task
        body: dict[str, Any] = {
            "task_cls": class_name(type(task)),
            "task_name": task.name,
            "task_version": task.version,
            "action": self._action,
            "arguments": self._arguments,
        }
        result = self._result
        if result is not NO_RESULT:
            if isinstance(result, Failure):
                body["result"] = ("failure", failure_to_dict(result))
            else:
                body["result"] = ("success", result)
        if self._failures or self._action == REVERT:
            body["failures"] = {
                name: failure_to_dict(failure) for name, failure in (self._failures or {}).items()
            }
        return body

    def transition(self, new_state: str) -> bool:
        """Move to ``new_state``: True if it moved, False if it was there already.

        Raises:
            taskflow.exceptions.InvalidState: the move is not allowed.
        """
        with self._lock:
            if new_state == self._state:
                return False
            if new_state not in _TRANSITIONS[self._state]:
                raise exc.InvalidState(
                    f"Request transition from {self._state} to {new_state} is not allowed"
                )
            self._state = new_state
            return True

    def transition_and_log_error(self, new_state: str, logger: Any = None) -> bool:
        """:meth:`transition`, logging a move that is not allowed (a warning on ``logger``,
        default this module's) instead of raising it; False then."""
        try:
            return self.transition(new_state)
        except exc.InvalidState as err:
            (logger or LOG).warning("%s (request %s)", err, self.uuid)
            return False

    def set_result(self, result: Any) -> None:
        """Resolve :attr:`future` with ``(event, result)``."""
        self.future.set_result((ACTION_TO_EVENT[self._action], result))

    @staticmethod
    def from_dict(data: Mapping[str, Any], task_uuid: str | None = None) -> _WorkUnit:
        """What a worker does for a request body (checked by :meth:`validate` first):
        ``arguments`` holds the call's ``arguments``, ``task_uuid`` when given, and the
        un-tagged ``result`` and ``failures`` (as Failure objects) when present."""
        arguments: dict[str, Any] = {"arguments": data.get("arguments", {})}
        if task_uuid is not None:
            arguments["task_uuid"] = task_uuid
        tagged = data.get("result")
        if tagged is not None:
            tag, value = tagged
            arguments["result"] = Failure.from_dict(value) if tag == "failure" else value
        failures = data.get("failures")
        if failures is not None:
            arguments["failures"] = {
                name: Failure.from_dict(failure) for name, failure in failures.items()
            }
        return _WorkUnit(data["task_cls"], data["task_name"], data["action"], arguments)

    @staticmethod
    def validate(data: Any) -> None:
        """Check a received request body as our workers do.

        Raises:
            taskflow.exceptions.InvalidFormat: it is not one they take.
        """
        wire.validate(REQUEST, "worker", data)


class Response(Message):
    """A worker's answer to a request: ``Response(RUNNING)`` when it starts,
    ``Response(EVENT, event_type=..., details=...)`` for each event of the task, then
    ``Response(SUCCESS, result=value)`` or ``Response(FAILURE, result=failure)``.

    Attributes:
        state: as given.
        data: the keyword arguments given.
    """

    TYPE: ClassVar[str] = RESPONSE
    #: The schema a received body is checked against.
    SCHEMA: ClassVar[dict[str, Any]] = wire.schema(RESPONSE, "engine")

    def __init__(self, state: str, **data: Any) -> None:
        self.state = state
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "data": self.data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Response:
        """The response a body carries (checked by :meth:`validate` first); a FAILURE's
        failure dict becomes a Failure."""
        state = data["state"]
        fields = dict(data["data"])
        if state == FAILURE and isinstance(fields.get("result"), dict):
            fields["result"] = Failure.from_dict(fields["result"])
        return cls(state, **fields)

    @staticmethod
    def validate(data: Any) -> None:
        """Check a received response body as our engines do.

        Raises:
            taskflow.exceptions.InvalidFormat: it is not one they take.
        """
        wire.validate(RESPONSE, "engine", data)
