"""The conductor's event names and the logger it attaches to each engine."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from types import TracebackType

    from taskflow.engines.base import Engine

__all__ = [
    "ENGINE_STEPS",
    "JOB_ABANDONED",
    "JOB_CONSUMED",
    "JOB_TRASHED",
    "EngineLogger",
]

#: The engine steps a dispatch announces as ``<step>_start`` / ``<step>_end``.
ENGINE_STEPS = ("compilation", "preparation", "validation", "running")
JOB_CONSUMED = "job_consumed"
JOB_ABANDONED = "job_abandoned"
JOB_TRASHED = "job_trashed"

Log = logging.Logger | logging.LoggerAdapter[Any]


class EngineLogger:
    """Logs an engine's flow and atom state changes at DEBUG while entered.

    Nothing is registered when ``log`` does not log DEBUG (the usual case in production), so
    an engine run by a conductor pays nothing for it.
    """

    def __init__(self, engine: Engine, log: Log) -> None:
        self._engine = engine
        self._log = log
        self._registered = False

    def _flow(self, state: str, details: dict[str, Any]) -> None:
        self._log.debug(
            "%s has moved flow '%s' (%s) into state '%s' from state '%s'",
            self._engine,
            details.get("flow_name"),
            details.get("flow_uuid"),
            state,
            details.get("old_state"),
        )

    def _atom(self, state: str, details: dict[str, Any]) -> None:
        name = details.get("task_name", details.get("retry_name"))
        uuid = details.get("task_uuid", details.get("retry_uuid"))
        if "result" in details:
            self._log.debug(
                "%s has moved atom '%s' (%s) into state '%s' from state '%s' with result '%s'",
                self._engine,
                name,
                uuid,
                state,
                details.get("old_state"),
                details["result"],
            )
        else:
            self._log.debug(
                "%s has moved atom '%s' (%s) into state '%s' from state '%s'",
                self._engine,
                name,
                uuid,
                state,
                details.get("old_state"),
            )

    def register(self) -> None:
        if self._registered or not self._log.isEnabledFor(logging.DEBUG):
            return
        self._engine.notifier.register(self._engine.notifier.ANY, self._flow)
        self._engine.atom_notifier.register(self._engine.atom_notifier.ANY, self._atom)
        self._registered = True

    def deregister(self) -> None:
        if not self._registered:
            return
        self._engine.notifier.deregister(self._engine.notifier.ANY, self._flow)
        self._engine.atom_notifier.deregister(self._engine.atom_notifier.ANY, self._atom)
        self._registered = False

    def __enter__(self) -> Self:
        self.register()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.deregister()
