"""A listener that prints an engine's state changes to stdout or stderr."""

from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING, Any

from taskflow.listeners import base

if TYPE_CHECKING:
    from collections.abc import Iterable

    from taskflow.engines.base import Engine

__all__ = ["PrintingListener"]


class PrintingListener(base.DumpingListener):
    """Prints one line per flow and task state change (and a failed task's traceback).

    Args:
        engine: the engine to listen to.
        task_listen_for: task states to print.
        flow_listen_for: flow states to print.
        retry_listen_for: retry states to listen to (retries are not printed).
        stderr: print to ``sys.stderr`` instead of ``sys.stdout`` (the stream current when
            the listener is made).
    """

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        stderr: bool = False,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._file = sys.stderr if stderr else sys.stdout

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        print(message % args, file=self._file)
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            traceback.print_exception(*exc_info, file=self._file)
