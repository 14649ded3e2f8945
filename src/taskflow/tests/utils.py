"""The test helpers upstream TaskFlow's examples import (``wbe_simple_linear``,
``wrapped_exception``), written from their observed behaviour.

Only what those examples use is here; the rest of upstream's test helpers belong to its own
test suite, not to the library.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from taskflow import exceptions, task
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["TaskMultiArgOneReturn", "TaskOneArgOneReturn", "wrap_all_failures"]


class TaskOneArgOneReturn(task.Task):
    """Requires ``x``; returns 1."""

    def execute(self, x: Any, **kwargs: Any) -> int:
        return 1


class TaskMultiArgOneReturn(task.Task):
    """Requires ``x``, ``y`` and ``z``; returns ``x + y + z``."""

    def execute(self, x: Any, y: Any, z: Any, **kwargs: Any) -> Any:
        return x + y + z


@contextlib.contextmanager
def wrap_all_failures() -> Iterator[None]:
    """Re-raise any exception of the block as a :class:`~taskflow.exceptions.WrappedFailure`
    of its one failure (a WrappedFailure passes through as it is; BaseExceptions that are
    not Exceptions, like KeyboardInterrupt, too)."""
    try:
        yield
    except exceptions.WrappedFailure:
        raise
    except Exception:
        raise exceptions.WrappedFailure([Failure()]) from None
