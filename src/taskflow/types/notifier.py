"""Publish/subscribe of named events with their details.

Notifying costs one dict lookup when nobody listens, so engines call it unconditionally
only where cheap and test ``bool(notifier)``/``len(notifier)`` on hot paths.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Self

__all__ = ["Listener", "Notifier", "RestrictedNotifier", "register_deregister"]

LOG = logging.getLogger(__name__)

Callback = Callable[..., Any]
DetailsFilter = Callable[[dict[str, Any]], bool]


class Listener:
    """A registered callback with its bound extra arguments and optional details filter."""

    __slots__ = ("_args", "_callback", "_details_filter", "_kwargs")

    def __init__(
        self,
        callback: Callback,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        details_filter: DetailsFilter | None = None,
    ) -> None:
        self._callback = callback
        self._details_filter = details_filter
        self._args = tuple(args) if args else ()
        self._kwargs = dict(kwargs) if kwargs else {}

    @property
    def callback(self) -> Callback:
        return self._callback

    @property
    def details_filter(self) -> DetailsFilter | None:
        return self._details_filter

    @property
    def args(self) -> tuple[Any, ...]:
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self._kwargs)

    def is_equivalent(
        self, callback: Callback, details_filter: DetailsFilter | None = None
    ) -> bool:
        """Whether this listener wraps ``callback`` with the same ``details_filter``."""
        if self._callback != callback:
            return False
        if details_filter is None:
            return self._details_filter is None
        return self._details_filter == details_filter

    def __call__(self, event_type: str, details: dict[str, Any]) -> None:
        if self._details_filter is not None and not self._details_filter(details):
            return
        kwargs = dict(self._kwargs)
        kwargs["details"] = details
        self._callback(event_type, *self._args, **kwargs)

    def __repr__(self) -> str:
        return f"<Listener {self._callback!r}>"


class Notifier:
    """Calls the callbacks registered for an event (and for :attr:`ANY`) when it is notified.

    Callbacks are called as ``cb(event_type, *args, details=details_copy, **kwargs)``; an
    exception in a callback is logged and never reaches the notifier's caller.
    """

    #: Registering for this event receives every event.
    ANY = "*"
    #: Keys reserved in ``kwargs`` (the notifier passes them itself).
    RESERVED_KEYS = ("details",)

    def __init__(self) -> None:
        self._topics: dict[str, list[Listener]] = {}
        self._view = MappingProxyType(self._topics)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_view"]  # a view can not be pickled; made again from the topics
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._view = MappingProxyType(self._topics)

    def __len__(self) -> int:
        return sum(len(listeners) for listeners in self._topics.values())

    def __bool__(self) -> bool:
        return bool(self._topics)

    @property
    def registrations(self) -> Mapping[str, Sequence[Listener]]:
        """The listeners by event type: a live, read-only view that stays the same object for
        the notifier's life, true while anything is registered. Engines keep it to test for
        listeners on their hot path without a call per test."""
        return self._view

    def is_registered(
        self, event_type: str, callback: Callback, details_filter: DetailsFilter | None = None
    ) -> bool:
        """Whether ``callback`` (with ``details_filter``) is registered for ``event_type``."""
        return any(
            listener.is_equivalent(callback, details_filter=details_filter)
            for listener in self._topics.get(event_type, ())
        )

    def reset(self) -> None:
        """Forget every registration."""
        self._topics.clear()

    def notify(self, event_type: str, details: dict[str, Any]) -> None:
        """Call the listeners of ``event_type`` (after those of :attr:`ANY`) with ``details``.

        Notifying :attr:`ANY` itself is not allowed and is dropped with a log message.
        """
        if event_type == self.ANY:
            LOG.debug("Can not notify the '%s' event (it is reserved)", event_type)
            return
        topics = self._topics
        if not topics:
            return
        listeners = topics.get(self.ANY, []) + topics.get(event_type, [])
        if not listeners:
            return
        details = details or {}
        for listener in listeners:
            try:
                # Each listener gets its own copy: one listener's edits never reach the next.
                listener(event_type, dict(details))
            except Exception:
                LOG.warning(
                    "Failure calling listener %s to notify about event %s, details: %s",
                    listener,
                    event_type,
                    details,
                    exc_info=True,
                )

    def register(
        self,
        event_type: str,
        callback: Callback,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        details_filter: DetailsFilter | None = None,
    ) -> None:
        """Register ``callback`` to be called when ``event_type`` is notified.

        Raises:
            ValueError: ``callback`` (or ``details_filter``) is not callable, the event may
                not be registered, or the same callback and filter are already registered.
            KeyError: ``kwargs`` contains a reserved key (``details``).
        """
        if not callable(callback):
            raise ValueError("Event callback must be callable")
        if details_filter is not None and not callable(details_filter):
            raise ValueError("Details filter must be callable")
        if not self.can_be_registered(event_type):
            raise ValueError(
                f"Disallowed event type '{event_type}' can not have a callback registered"
            )
        if self.is_registered(event_type, callback, details_filter=details_filter):
            raise ValueError("Event callback already registered with equivalent details filter")
        if kwargs:
            for key in self.RESERVED_KEYS:
                if key in kwargs:
                    raise KeyError(f"Reserved key '{key}' not allowed in kwargs")
        self._topics.setdefault(event_type, []).append(
            Listener(callback, args=args, kwargs=kwargs, details_filter=details_filter)
        )

    def deregister(
        self, event_type: str, callback: Callback, details_filter: DetailsFilter | None = None
    ) -> bool:
        """Remove a registration; True if one was removed."""
        listeners = self._topics.get(event_type)
        if not listeners:
            return False
        for index, listener in enumerate(listeners):
            if listener.is_equivalent(callback, details_filter=details_filter):
                listeners.pop(index)
                if not listeners:
                    del self._topics[event_type]
                return True
        return False

    def deregister_event(self, event_type: str) -> int:
        """Remove every registration for ``event_type``; returns how many there were."""
        return len(self._topics.pop(event_type, ()))

    def copy(self) -> Self:
        """A notifier with the same registrations (callbacks are shared, not copied)."""
        clone = copy.copy(self)
        clone._topics = {event: list(listeners) for event, listeners in self._topics.items()}
        clone._view = MappingProxyType(clone._topics)
        return clone

    def listeners_iter(self) -> Iterator[tuple[str, list[Listener]]]:
        """Yield ``(event_type, listeners)`` for every event with registrations."""
        for event_type, listeners in self._topics.items():
            if listeners:
                yield event_type, listeners

    def can_be_registered(self, event_type: str) -> bool:
        """Whether callbacks may be registered for ``event_type``."""
        return True

    def can_trigger_notification(self, event_type: str) -> bool:
        """Whether notifying ``event_type`` can reach anybody."""
        return event_type != self.ANY


class RestrictedNotifier(Notifier):
    """A notifier that accepts registrations only for a fixed set of events (and ANY).

    Any event may still be *notified*; only registration is restricted.
    """

    def __init__(self, watchable_events: Iterable[str], allow_any: bool = True) -> None:
        super().__init__()
        self._watchable_events = frozenset(watchable_events)
        self._allow_any = allow_any

    def events_iter(self) -> Iterator[str]:
        """Yield the events that may be registered (besides ANY, when allowed)."""
        yield from self._watchable_events

    def can_be_registered(self, event_type: str) -> bool:
        return event_type in self._watchable_events or (event_type == self.ANY and self._allow_any)


@contextlib.contextmanager
def register_deregister(
    notifier: Notifier,
    event_type: str,
    callback: Callback | None = None,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    details_filter: DetailsFilter | None = None,
) -> Iterator[None]:
    """Register ``callback`` for the duration of a ``with`` block (no-op without a callback)."""
    if callback is None:
        yield
        return
    notifier.register(event_type, callback, args=args, kwargs=kwargs, details_filter=details_filter)
    try:
        yield
    finally:
        notifier.deregister(event_type, callback, details_filter=details_filter)
