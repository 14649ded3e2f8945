"""Interruptible timeouts and a monotonic stopwatch."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["Split", "StopWatch", "Timeout", "convert_to_timeout"]


class _Event(Protocol):
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Timeout:
    """A delay that a waiter sleeps through unless another thread interrupts it.

    Args:
        value: the delay in seconds (zero or more).
        event_factory: builds the event used to interrupt (``threading.Event`` by default;
            pass another factory for green threads).

    Raises:
        ValueError: ``value`` is negative.
    """

    def __init__(self, value: float, event_factory: Callable[[], _Event] = threading.Event) -> None:
        if value < 0:
            raise ValueError(f"Timeout value must be greater or equal to zero and not '{value}'")
        self._value = value
        self._event = event_factory()

    @property
    def value(self) -> float:
        """The delay in seconds."""
        return self._value

    def interrupt(self) -> None:
        """Wake up the current waiter (and make later waits return at once)."""
        self._event.set()

    def is_stopped(self) -> bool:
        """Whether :meth:`interrupt` was called since creation or the last :meth:`reset`."""
        return self._event.is_set()

    def wait(self) -> bool:
        """Sleep for :attr:`value` seconds unless interrupted; True if interrupted."""
        return self._event.wait(self._value)

    def reset(self) -> None:
        """Forget an interruption so the next :meth:`wait` sleeps again."""
        self._event.clear()


def convert_to_timeout(
    value: Timeout | float | str | None = None,
    default_value: Timeout | float | str | None = None,
    event_factory: Callable[[], _Event] = threading.Event,
) -> Timeout:
    """``value`` as a :class:`Timeout`.

    A :class:`Timeout` is returned as it is; a number (or numeric text) becomes a new
    ``Timeout`` of that many seconds using ``event_factory``. ``None`` means
    ``default_value``, which is converted the same way.

    Raises:
        ValueError: the value (after defaulting) is None, not a number, or negative.
    """
    if value is None:
        value = default_value
    if isinstance(value, Timeout):
        return value
    # bool is an int: True means one second, as float(True) does.
    if isinstance(value, int | float | str):
        return Timeout(float(value), event_factory=event_factory)
    raise ValueError(f"Invalid timeout literal '{value}'")


class Split(NamedTuple):
    """A lap of a :class:`StopWatch`: time since start and since the previous split."""

    elapsed: float
    length: float


class StopWatch:
    """Measures elapsed time on the monotonic clock, optionally against a duration.

    Usable as a context manager (started on entry, stopped on exit).

    Args:
        duration: seconds after which :meth:`expired` becomes true (None: never).

    Raises:
        ValueError: ``duration`` is negative.
    """

    __slots__ = ("_duration", "_splits", "_started_at", "_stopped_at")

    def __init__(self, duration: float | None = None) -> None:
        if duration is not None and duration < 0:
            raise ValueError(f"Duration must be greater or equal to zero and not {duration}")
        self._duration = duration
        # Invariant: _stopped_at is only set while _started_at is set.
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._splits: tuple[Split, ...] = ()

    def start(self) -> StopWatch:
        """Start (or start over), forgetting any splits."""
        self._started_at = time.monotonic()
        self._stopped_at = None
        self._splits = ()
        return self

    def stop(self) -> StopWatch:
        """Freeze the elapsed time (no-op if already stopped).

        Raises:
            RuntimeError: the watch was never started.
        """
        if self._started_at is None:
            raise RuntimeError("Can not stop a stopwatch that has not been started")
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        return self

    def resume(self) -> StopWatch:
        """Undo :meth:`stop`: the watch runs on as if it had never been stopped.

        Raises:
            RuntimeError: the watch is not stopped.
        """
        if self._stopped_at is None:
            raise RuntimeError("Can not resume a stopwatch that has not been stopped")
        self._stopped_at = None
        return self

    def restart(self) -> StopWatch:
        """Stop if running, then start over."""
        return self.start()

    def has_started(self) -> bool:
        """Whether the watch is running."""
        return self._started_at is not None and self._stopped_at is None

    def has_stopped(self) -> bool:
        """Whether the watch was started and then stopped."""
        return self._stopped_at is not None

    def elapsed(self, maximum: float | None = None) -> float:
        """Seconds since start (until stop, if stopped), capped at ``maximum`` if given.

        Raises:
            RuntimeError: the watch was never started.
        """
        if self._started_at is None:
            raise RuntimeError(
                "Can not get the elapsed time of a stopwatch if it has not been started/stopped"
            )
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        elapsed = max(0.0, end - self._started_at)
        if maximum is not None and elapsed > maximum:
            return max(0.0, maximum)
        return elapsed

    def leftover(self, return_none: bool = False) -> float | None:
        """Seconds left before the duration is up (never negative).

        Args:
            return_none: return None instead of raising when there is no duration.

        Raises:
            RuntimeError: there is no duration, or the watch was never started.
        """
        if self._duration is None:
            if return_none:
                return None
            raise RuntimeError("Can not get the leftover time of a watch that has no duration")
        if self._started_at is None:
            raise RuntimeError(
                "Can not get the leftover time of a stopwatch that has not been started"
            )
        return max(0.0, self._duration - self.elapsed())

    def expired(self) -> bool:
        """Whether more than the duration has elapsed (always False without a duration).

        Raises:
            RuntimeError: the watch has a duration but was never started.
        """
        if self._duration is None:
            return False
        if self._started_at is None:
            raise RuntimeError(
                "Can not check if a stopwatch has expired if it has not been started/stopped"
            )
        return self.elapsed() > self._duration

    def split(self) -> Split:
        """Record and return a lap.

        Raises:
            RuntimeError: the watch is not running.
        """
        if not self.has_started():
            raise RuntimeError(
                "Can not create a split time of a stopwatch if it has not been started"
                " or if it has been stopped"
            )
        elapsed = self.elapsed()
        previous = self._splits[-1].elapsed if self._splits else 0.0
        lap = Split(elapsed, max(0.0, elapsed - previous))
        self._splits = (*self._splits, lap)
        return lap

    @property
    def splits(self) -> tuple[Split, ...]:
        """Laps recorded since the last start."""
        return self._splits

    def __enter__(self) -> StopWatch:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.has_started():
            self.stop()
