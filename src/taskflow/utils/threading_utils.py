"""Thread helpers: daemon threads and bundles of threads started and joined together."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ThreadBundle",
    "daemon_thread",
    "get_ident",
    "get_optimal_thread_count",
    "is_alive",
    "no_op",
]


def daemon_thread(target: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
    """An unstarted daemon thread that will call ``target(*args, **kwargs)``."""
    return threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)


def is_alive(thread: threading.Thread | None) -> bool:
    """Whether ``thread`` exists and is running."""
    return thread is not None and thread.is_alive()


def get_ident() -> int:
    """The current thread's identifier."""
    return threading.get_ident()


def no_op(*args: Any, **kwargs: Any) -> None:
    """Accept any arguments and do nothing (a default for optional thread hooks)."""


def get_optimal_thread_count(default: int = 2) -> int:
    """A good pool size for mostly waiting work: one more than the CPU count.

    Args:
        default: returned when the CPU count cannot be determined.
    """
    count = os.cpu_count()
    return count + 1 if count else default


@dataclass
class _Binding:
    factory: Callable[[], threading.Thread]
    before_start: Callable[[threading.Thread], Any] | None
    after_start: Callable[[threading.Thread], Any] | None
    before_join: Callable[[threading.Thread], Any] | None
    after_join: Callable[[threading.Thread], Any] | None
    # The running thread made by ``factory``; None when stopped (or never started).
    thread: threading.Thread | None = None


class ThreadBundle:
    """Threads (made by factories) that are started together and joined together.

    Each bound factory makes a new thread on every :meth:`start` after a :meth:`stop`; the
    optional hooks are called with the thread around its start and its join.
    """

    def __init__(self) -> None:
        self._bindings: list[_Binding] = []
        self._lock = threading.Lock()

    def bind(
        self,
        thread_factory: Callable[[], threading.Thread],
        before_start: Callable[[threading.Thread], Any] | None = None,
        after_start: Callable[[threading.Thread], Any] | None = None,
        before_join: Callable[[threading.Thread], Any] | None = None,
        after_join: Callable[[threading.Thread], Any] | None = None,
    ) -> None:
        """Add a thread factory (and hooks) to the bundle.

        Raises:
            ValueError: the factory or a given hook is not callable.
        """
        hooks = {
            "thread_factory": thread_factory,
            "before_start": before_start,
            "after_start": after_start,
            "before_join": before_join,
            "after_join": after_join,
        }
        for name, hook in hooks.items():
            if (hook is not None or name == "thread_factory") and not callable(hook):
                raise ValueError(f"Provided callback for argument '{name}' must be callable")
        with self._lock:
            self._bindings.append(
                _Binding(thread_factory, before_start, after_start, before_join, after_join)
            )

    def start(self) -> int:
        """Start a thread for every binding not already running; returns how many started."""
        started = 0
        with self._lock:
            for binding in self._bindings:
                if binding.thread is not None:
                    continue
                thread = binding.factory()
                if binding.before_start is not None:
                    binding.before_start(thread)
                thread.start()
                binding.thread = thread
                if binding.after_start is not None:
                    binding.after_start(thread)
                started += 1
        return started

    def stop(self) -> int:
        """Join every running thread (in binding order); returns how many were joined."""
        stopped = 0
        with self._lock:
            for binding in self._bindings:
                thread = binding.thread
                if thread is None:
                    continue
                if binding.before_join is not None:
                    binding.before_join(thread)
                thread.join()
                binding.thread = None
                if binding.after_join is not None:
                    binding.after_join(thread)
                stopped += 1
        return stopped

    def __len__(self) -> int:
        return len(self._bindings)
