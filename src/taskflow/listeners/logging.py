"""Listeners that write an engine's state changes to a :mod:`logging` logger."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from taskflow import formatters, states
from taskflow.listeners import base

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeAlias

    from taskflow.engines.base import Engine
    from taskflow.types.tree import Node

    Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]

__all__ = ["DynamicLoggingListener", "LoggingListener"]

LOG = logging.getLogger(__name__)


class LoggingListener(base.DumpingListener):
    """Logs every flow and task state change at one fixed level.

    Args:
        engine: the engine to listen to.
        task_listen_for: task states to log.
        flow_listen_for: flow states to log.
        retry_listen_for: retry states to listen to (retries are not logged).
        log: the logger to use (default: this module's logger).
        level: the level every message is logged at.
    """

    #: Logger used when ``log`` is not given (None means this module's logger).
    _LOGGER: Logger | None = None

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        log: Logger | None = None,
        level: int = logging.DEBUG,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )
        self._logger: Logger = log if log is not None else (self._LOGGER or LOG)
        self._level = level

    def _dump(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.log(self._level, message, *args, **kwargs)


def _make_matcher(task_name: str) -> Callable[[Node], bool]:
    """A hierarchy-node matcher selecting the task called ``task_name``."""

    def matches(node: Node) -> bool:
        return node.metadata.get("kind") == "task" and node.item.name == task_name

    return matches


class DynamicLoggingListener(base.Listener):
    """Logs flow and task state changes, raising the level of the worrying ones.

    Failures, reverts and retries are logged at ``failure_level``, everything else at
    ``level``. A task failure is logged with its traceback and with what
    ``fail_formatter`` says about the atoms that led to it.

    Args:
        engine: the engine to listen to.
        task_listen_for: task states to log.
        flow_listen_for: flow states to log.
        retry_listen_for: retry states to listen to (retries are not logged).
        log: the logger to use (default: this module's logger).
        failure_level: level of failure, revert and retry messages.
        level: level of every other message.
        hide_inputs_outputs_of: atom names whose arguments and results are never shown.
        fail_formatter: renders task failures (default: a
            :class:`~taskflow.formatters.FailureFormatter` built from the three options).
        mask_inputs_keys: argument keys whose values are shown as ``***``.
        mask_outputs_keys: result keys whose values are shown as ``***``.
    """

    #: Logger used when ``log`` is not given (None means this module's logger).
    _LOGGER: Logger | None = None

    #: Task states whose result is a failure worth formatting.
    _FAILURE_STATES = (states.FAILURE, states.REVERT_FAILURE)

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        log: Logger | None = None,
        failure_level: int = logging.WARNING,
        level: int = logging.DEBUG,
        hide_inputs_outputs_of: Iterable[str] = (),
        fail_formatter: formatters.FailureFormatter | None = None,
        mask_inputs_keys: Iterable[Any] = (),
        mask_outputs_keys: Iterable[Any] = (),
    ) -> None:
        super().__init__(engine, task_listen_for, flow_listen_for, retry_listen_for)
        self._failure_level = failure_level
        self._level = level
        self._task_log_levels = {
            states.FAILURE: failure_level,
            states.REVERTED: failure_level,
            states.RETRYING: failure_level,
            states.REVERT_FAILURE: failure_level,
        }
        self._flow_log_levels = {
            states.FAILURE: failure_level,
            states.REVERTED: failure_level,
        }
        self._hide_inputs_outputs_of = frozenset(hide_inputs_outputs_of)
        self._mask_inputs_keys = frozenset(mask_inputs_keys)
        self._mask_outputs_keys = frozenset(mask_outputs_keys)
        self._logger: Logger = log if log is not None else (self._LOGGER or LOG)
        if fail_formatter is None:
            fail_formatter = formatters.FailureFormatter(
                engine,
                hide_inputs_outputs_of=self._hide_inputs_outputs_of,
                mask_inputs_keys=self._mask_inputs_keys,
                mask_outputs_keys=self._mask_outputs_keys,
            )
        self._fail_formatter = fail_formatter

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        event = base.FlowEvent.from_details(state, details)
        self._logger.log(
            self._flow_log_levels.get(state, self._level),
            "Flow '%s' (%s) transitioned into state '%s' from state '%s'",
            event.name,
            event.uuid,
            state,
            event.old_state,
        )

    def _task_receiver(self, state: str, details: base.Details) -> None:
        event = base.AtomEvent.from_task(state, details)
        level = self._task_log_levels.get(state, self._level)
        failure = event.failure
        if failure is not None and state in self._FAILURE_STATES:
            exc_info, fail_details = self._fail_formatter.format(failure, _make_matcher(event.name))
            if fail_details:
                self._logger.log(
                    level,
                    "Task '%s' (%s) transitioned into state '%s' from state '%s'%s%s",
                    event.name,
                    event.uuid,
                    state,
                    event.old_state,
                    os.linesep,
                    fail_details,
                    exc_info=exc_info,
                )
            else:
                self._logger.log(
                    level,
                    "Task '%s' (%s) transitioned into state '%s' from state '%s'",
                    event.name,
                    event.uuid,
                    state,
                    event.old_state,
                    exc_info=exc_info,
                )
        elif event.has_result:
            self._logger.log(
                level,
                "Task '%s' (%s) transitioned into state '%s' from state '%s' with result '%s'",
                event.name,
                event.uuid,
                state,
                event.old_state,
                event.result,
            )
        else:
            self._logger.log(
                level,
                "Task '%s' (%s) transitioned into state '%s' from state '%s'",
                event.name,
                event.uuid,
                state,
                event.old_state,
            )
