"""A listener that keeps every notification it receives (handy in tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow.listeners import base

if TYPE_CHECKING:
    from collections.abc import Iterable

    from taskflow.engines.base import Engine

__all__ = ["CaptureListener"]

Capture = tuple[str, str, dict[str, Any]]


class CaptureListener(base.Listener):
    """Appends ``(kind, state, details)`` to :attr:`values` for each notification.

    ``kind`` is :attr:`FLOW`, :attr:`TASK` or :attr:`RETRY`; ``details`` is a copy of the
    notification's details.

    Args:
        engine: the engine to listen to.
        task_listen_for: task states to capture.
        flow_listen_for: flow states to capture.
        retry_listen_for: retry states to capture.
        capture_flow: capture flow notifications at all.
        capture_task: capture task notifications at all.
        capture_retry: capture retry notifications at all.
        skip_tasks: names of tasks whose notifications are not captured.
        skip_retries: names of retries whose notifications are not captured.
        skip_flows: names of flows whose notifications are not captured.
        values: the list to append to (default: a new list).
    """

    FLOW = base.FLOW
    TASK = base.TASK
    RETRY = base.RETRY

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        capture_flow: bool = True,
        capture_task: bool = True,
        capture_retry: bool = True,
        skip_tasks: Iterable[str] | None = None,
        skip_retries: Iterable[str] | None = None,
        skip_flows: Iterable[str] | None = None,
        values: list[Capture] | None = None,
    ) -> None:
        # A kind that is never captured is not even subscribed to.
        super().__init__(
            engine,
            task_listen_for=task_listen_for if capture_task else (),
            flow_listen_for=flow_listen_for if capture_flow else (),
            retry_listen_for=retry_listen_for if capture_retry else (),
        )
        self._skip_tasks = frozenset(skip_tasks or ())
        self._skip_retries = frozenset(skip_retries or ())
        self._skip_flows = frozenset(skip_flows or ())
        #: The captured ``(kind, state, details)`` tuples, oldest first.
        self.values: list[Capture] = values if values is not None else []

    @staticmethod
    def _format_capture(kind: str, state: str, details: dict[str, Any]) -> Capture:
        """What is appended to :attr:`values` for one notification."""
        return (kind, state, dict(details))

    def _task_receiver(self, state: str, details: dict[str, Any]) -> None:
        if details["task_name"] not in self._skip_tasks:
            self.values.append(self._format_capture(self.TASK, state, details))

    def _retry_receiver(self, state: str, details: dict[str, Any]) -> None:
        if details["retry_name"] not in self._skip_retries:
            self.values.append(self._format_capture(self.RETRY, state, details))

    def _flow_receiver(self, state: str, details: dict[str, Any]) -> None:
        if details["flow_name"] not in self._skip_flows:
            self.values.append(self._format_capture(self.FLOW, state, details))
