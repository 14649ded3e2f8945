"""A countdown latch: waiters are released once it has been counted down enough times."""

from __future__ import annotations

import threading

__all__ = ["Latch"]


class Latch:
    """Releases :meth:`wait` callers after ``count`` calls to :meth:`countdown`.

    Raises:
        ValueError: ``count`` is not positive.
    """

    def __init__(self, count: int) -> None:
        count = int(count)
        if count <= 0:
            raise ValueError("Count must be greater than zero")
        self._count = count
        self._cond = threading.Condition()

    @property
    def needed(self) -> int:
        """How many more countdowns are needed before waiters are released."""
        return max(0, self._count)

    def countdown(self) -> None:
        """Count down by one, releasing every waiter when zero is reached."""
        with self._cond:
            self._count -= 1
            if self._count <= 0:
                self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the count reaches zero (or ``timeout`` seconds pass).

        Returns:
            True if the count reached zero, False if the wait timed out.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._count <= 0, timeout=timeout)
