"""The executor of the worker-based engine (upstream TaskFlow's name and constructor)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow._workers.client import RemoteExecutor

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from taskflow._engine.executors import Completion, ProgressSink

__all__ = ["EVENT_UPDATE_PROGRESS", "WorkerTaskExecutor"]

#: The event a task's progress travels as.
EVENT_UPDATE_PROGRESS = "update_progress"


class WorkerTaskExecutor(RemoteExecutor):
    """Sends an engine's task calls to remote workers (see :mod:`taskflow._workers.client`).

    Args:
        uuid: the routing key answers come back to.
        exchange, topics, transition_timeout, url, transport, transport_options,
            retry_options, worker_expiry: as the engine options of the same names.
        worker_timeout, max_message_bytes, connect_timeout: ours, as the engine options.
    """

    def __init__(
        self,
        uuid: str,
        exchange: str,
        topics: Iterable[str],
        transition_timeout: float | None = 60,
        url: str | None = None,
        transport: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
        retry_options: Mapping[str, Any] | None = None,
        worker_expiry: float = 60,
        worker_timeout: float = 5.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            uuid,
            exchange,
            topics,
            transition_timeout=transition_timeout,
            url=url,
            transport=transport,
            transport_options=transport_options,
            retry_options=retry_options,
            worker_expiry=worker_expiry,
            worker_timeout=worker_timeout,
            max_message_bytes=max_message_bytes,
            connect_timeout=connect_timeout,
        )

    def start(
        self,
        report: Callable[[Completion], None] | None = None,
        progress: ProgressSink | None = None,
    ) -> None:
        """Start consuming answers and discovering workers (as upstream's ``start()``, to
        use :meth:`wait_for_workers` before a run); an engine's run passes where outcomes
        go."""
        super().start(report or _nowhere, progress or _nowhere)

    def stop(self) -> None:
        """Stop consuming (upstream's name for the end of a run)."""
        self.shutdown()


def _nowhere(*args: Any) -> None:
    """Where outcomes go while no engine runs."""
