"""Listeners: objects that subscribe to an engine's flow and atom notifications.

A :class:`Listener` registers three hooks on an engine. Flow state changes arrive through
``engine.notifier``; task and retry state changes both arrive through
``engine.atom_notifier`` and are told apart by a details filter, so each hook only sees
its own kind. Subclasses override the hooks and keep their ``(state, details)`` signature;
the built-in listeners read ``details`` through the typed :class:`AtomEvent` and
:class:`FlowEvent` views instead of probing keys.
"""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from taskflow import states
from taskflow.types.failure import Failure
from taskflow.types.notifier import Notifier

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from taskflow.engines.base import Engine

__all__ = ["DEFAULT_LISTEN_FOR", "FINISH_STATES", "DumpingListener", "Listener"]

LOG = logging.getLogger(__name__)

#: By default a listener hears every event.
DEFAULT_LISTEN_FOR: tuple[str, ...] = (Notifier.ANY,)

#: The states in which an atom (or flow) has stopped doing work.
FINISH_STATES: tuple[str, ...] = (
    states.FAILURE,
    states.SUCCESS,
    states.REVERTED,
    states.REVERT_FAILURE,
)

#: Kinds of notifications, as named in :class:`AtomEvent` and by the capturing listener.
TASK = "task"
RETRY = "retry"
FLOW = "flow"

_NO_RESULT: Any = object()

Details = dict[str, Any]


def _is_task_event(details: Details) -> bool:
    # The atom notifier carries both kinds; only task notifications name a task.
    return "task_name" in details


def _is_retry_event(details: Details) -> bool:
    return "retry_name" in details


class AtomEvent(NamedTuple):
    """A typed view of one task or retry notification."""

    kind: str
    """``"task"`` or ``"retry"``."""
    name: str
    uuid: str
    state: str
    old_state: str | None
    result: Any
    """The atom's result or :class:`Failure` (meaningful only when :attr:`has_result`)."""

    @classmethod
    def from_task(cls, state: str, details: Details) -> AtomEvent:
        """View the ``details`` of a task notification."""
        return cls(
            TASK,
            details["task_name"],
            details["task_uuid"],
            state,
            details.get("old_state"),
            details.get("result", _NO_RESULT),
        )

    @classmethod
    def from_retry(cls, state: str, details: Details) -> AtomEvent:
        """View the ``details`` of a retry notification."""
        return cls(
            RETRY,
            details["retry_name"],
            details["retry_uuid"],
            state,
            details.get("old_state"),
            details.get("result", _NO_RESULT),
        )

    @property
    def has_result(self) -> bool:
        """Whether the notification carried a result (SUCCESS, FAILURE, REVERTED...)."""
        return self.result is not _NO_RESULT

    @property
    def failure(self) -> Failure | None:
        """The carried result if it is a :class:`Failure`."""
        return self.result if isinstance(self.result, Failure) else None


class FlowEvent(NamedTuple):
    """A typed view of one flow notification."""

    name: str
    uuid: str
    state: str
    old_state: str | None

    @classmethod
    def from_details(cls, state: str, details: Details) -> FlowEvent:
        """View the ``details`` of a flow notification."""
        return cls(details["flow_name"], details["flow_uuid"], state, details.get("old_state"))


class _Registration(NamedTuple):
    notifier: Notifier
    event: str
    callback: Callable[..., Any]
    details_filter: Callable[[Details], bool] | None


class Listener:
    """Base class for objects that listen to an engine's notifications.

    Override :meth:`_flow_receiver`, :meth:`_task_receiver` and/or :meth:`_retry_receiver`;
    they are called as ``hook(state, details)`` for the states selected by the matching
    ``*_listen_for`` argument (by default every state). Use :meth:`register` and
    :meth:`deregister`, or the listener as a context manager around ``engine.run()``.

    Args:
        engine: the engine to listen to.
        task_listen_for: task states to receive (``Notifier.ANY`` for all).
        flow_listen_for: flow states to receive.
        retry_listen_for: retry states to receive.
    """

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = DEFAULT_LISTEN_FOR,
    ) -> None:
        self._engine = engine
        self._listen_for = {
            TASK: tuple(task_listen_for),
            RETRY: tuple(retry_listen_for),
            FLOW: tuple(flow_listen_for),
        }
        # Invariant: exactly the registrations this listener currently holds on the engine.
        self._registered: list[_Registration] = []

    def _flow_receiver(self, state: str, details: Details) -> None:
        """Called for each selected flow state change (default: ignore it)."""

    def _task_receiver(self, state: str, details: Details) -> None:
        """Called for each selected task state change (default: ignore it)."""

    def _retry_receiver(self, state: str, details: Details) -> None:
        """Called for each selected retry state change (default: ignore it)."""

    def _wanted(self) -> Iterable[_Registration]:
        engine = self._engine
        for state in self._listen_for[TASK]:
            yield _Registration(engine.atom_notifier, state, self._task_receiver, _is_task_event)
        for state in self._listen_for[RETRY]:
            yield _Registration(engine.atom_notifier, state, self._retry_receiver, _is_retry_event)
        for state in self._listen_for[FLOW]:
            yield _Registration(engine.notifier, state, self._flow_receiver, None)

    def register(self) -> None:
        """Subscribe the hooks to the engine's notifiers (registering twice is harmless)."""
        for reg in self._wanted():
            if reg.notifier.is_registered(
                reg.event, reg.callback, details_filter=reg.details_filter
            ):
                continue
            reg.notifier.register(reg.event, reg.callback, details_filter=reg.details_filter)
            self._registered.append(reg)

    def deregister(self) -> None:
        """Unsubscribe everything :meth:`register` subscribed (a no-op if nothing is)."""
        while self._registered:
            reg = self._registered.pop()
            reg.notifier.deregister(reg.event, reg.callback, details_filter=reg.details_filter)

    def __enter__(self) -> Self:
        self.register()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Failing to clean up must not hide the error (if any) that ended the block.
        try:
            self.deregister()
        except Exception:
            LOG.warning(
                "Failed deregistering listeners from engine %s", self._engine, exc_info=True
            )


class DumpingListener(Listener, abc.ABC):
    """A listener that renders flow and task state changes as text lines.

    Subclasses implement :meth:`_dump`, which receives a ``%``-style message and its
    arguments (and ``exc_info`` when a task failed). Retry changes are not dumped.
    """

    @abc.abstractmethod
    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Output ``message % args``; ``kwargs`` may hold ``exc_info``."""

    def _flow_receiver(self, state: str, details: Details) -> None:
        self._dump(
            "%s has moved flow '%s' (%s) into state '%s' from state '%s'",
            self._engine,
            details["flow_name"],
            details["flow_uuid"],
            state,
            details["old_state"],
        )

    def _task_receiver(self, state: str, details: Details) -> None:
        event = AtomEvent.from_task(state, details)
        if not event.has_result:
            self._dump(
                "%s has moved task '%s' (%s) into state '%s' from state '%s'",
                self._engine,
                event.name,
                event.uuid,
                state,
                event.old_state,
            )
            return
        failure = event.failure
        self._dump(
            "%s has moved task '%s' (%s) into state '%s' from state '%s'"
            " with result '%s' (failure=%s)",
            self._engine,
            event.name,
            event.uuid,
            state,
            event.old_state,
            event.result,
            failure is not None,
            exc_info=failure.exc_info if failure is not None else None,
        )
