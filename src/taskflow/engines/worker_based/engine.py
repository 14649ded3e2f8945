"""The ``worker-based`` engine kind: an action engine whose tasks run on remote workers."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from taskflow._config import as_float
from taskflow.engines.action_engine import engine
from taskflow.engines.worker_based.executor import WorkerTaskExecutor

if TYPE_CHECKING:
    from collections.abc import Callable

    from taskflow._engine.executors import AtomExecutor
    from taskflow.flow import Flow
    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import FlowDetail

__all__ = ["WorkerBasedActionEngine"]


class WorkerBasedActionEngine(engine.ActionEngine):
    """Runs independent tasks concurrently on remote workers (retries run locally).

    Options (upstream TaskFlow's, plus ``worker_timeout`` and ``max_message_bytes``):
        exchange: the broker exchange engines and workers share (default ``'default'``).
        topics: the topics of the workers this engine may use.
        url: the broker's URL (kombu's form, e.g. ``amqp://guest:guest@host:5672//``).
        transport: a kombu transport name, if not the URL's (``memory``, ``redis``...).
        transport_options: passed to the transport (``polling_interval``...).
        retry_options: kombu's retry policy for publishing (``max_retries``...).
        transition_timeout: seconds a task may wait for a capable worker, or for its
            worker to start it (default 60; None: no limit).
        worker_expiry: seconds an idle worker stays known without being heard from (60).
        worker_timeout: seconds a worker running tasks of this engine may stay silent
            before it counts as dead and its tasks go elsewhere (default 5).
        max_message_bytes: larger answers are rejected (default 16 MiB).
        connect_timeout: seconds a run waits to reach the broker before it fails with
            :class:`~taskflow.exceptions.ExecutionFailure` (default 10).
        executor: a :class:`WorkerTaskExecutor` to use instead (anything else: TypeError).
    """

    _parallel = True

    def __init__(
        self,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: dict[str, Any] | None,
    ) -> None:
        given = (options or {}).get("executor")
        if given is not None and not isinstance(given, WorkerTaskExecutor):
            raise TypeError(
                f"Expected an instance of type {WorkerTaskExecutor} instead of type"
                f" {type(given)} for 'executor' option"
            )
        super().__init__(flow, flow_detail, backend, options)

    def _executor_factory(self) -> Callable[[], AtomExecutor]:
        options = self._options
        given = options.get("executor")
        if given is not None:
            return lambda: given
        topics = options.get("topics") or []
        if isinstance(topics, str):
            topics = [topics]
        transition_timeout = options.get("transition_timeout", 60)
        if transition_timeout is not None:
            transition_timeout = as_float(options, "transition_timeout", 60.0)
        flow_uuid = self._flow_detail.uuid

        def make() -> AtomExecutor:
            # A reply key of the run's own: answers meant for an earlier run of the same
            # flow (a worker that was paused, say) can never reach this one.
            return WorkerTaskExecutor(
                f"{flow_uuid}.{uuid.uuid4().hex[:12]}",
                options.get("exchange", "default"),
                topics,
                transition_timeout=transition_timeout,
                url=options.get("url"),
                transport=options.get("transport"),
                transport_options=options.get("transport_options"),
                retry_options=options.get("retry_options"),
                worker_expiry=as_float(options, "worker_expiry", 60.0),
                worker_timeout=as_float(options, "worker_timeout", 5.0),
                max_message_bytes=int(as_float(options, "max_message_bytes", 16 * 1024 * 1024)),
                connect_timeout=as_float(options, "connect_timeout", 10.0),
            )

        return make
