"""Listeners that measure how long flows and atoms take, or when they changed state.

Durations and timestamps are written into the metadata of the flow or atom detail through
the engine's storage, so they are persisted with the rest of the flow's state.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import states
from taskflow.listeners import base

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from taskflow.engines.base import Engine

__all__ = [
    "FINISHED_STATES",
    "STARTING_STATES",
    "WATCH_STATES",
    "DurationListener",
    "EventTimeListener",
    "PrintingDurationListener",
]

LOG = logging.getLogger(__name__)

#: States that end a timed period.
FINISHED_STATES = frozenset(base.FINISH_STATES)
#: States that start a timed period (executing or reverting).
STARTING_STATES = frozenset((states.RUNNING, states.REVERTING))
#: Every state the duration listeners subscribe to (PENDING forgets a started period).
WATCH_STATES = frozenset(FINISHED_STATES | STARTING_STATES | {states.PENDING})


class DurationListener(base.Listener):
    """Records how long each task (and the flow) ran or reverted.

    When a task or the flow reaches a finished state after RUNNING or REVERTING, the
    elapsed seconds are stored under ``'duration'`` in its metadata (a later period
    overwrites an earlier one); if storage fails, a warning is logged and the run goes
    on. Retries are not timed.

    Args:
        engine: the engine to listen to.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(
            engine,
            task_listen_for=WATCH_STATES,
            flow_listen_for=WATCH_STATES,
            retry_listen_for=(),
        )
        # kind ('task' or 'flow') -> name -> time.monotonic() when its period started.
        self._timers: dict[str, dict[str, float]] = {base.TASK: {}, base.FLOW: {}}

    def deregister(self) -> None:
        """Stop listening; periods still open are forgotten (with a warning)."""
        super().deregister()
        for kind, timers in self._timers.items():
            if timers:
                LOG.warning("%s %s(s) did not enter %s states", len(timers), kind, FINISHED_STATES)
                timers.clear()

    def _record_ending(self, elapsed: float, item_type: str, item_name: str, state: str) -> None:
        """Store ``elapsed`` seconds as the item's ``duration``.

        A storage failure is logged (one warning, with its traceback) and otherwise
        ignored: a lost measurement must not stop the other listeners or the printing
        subclass from hearing about the end.
        """
        update = {"duration": elapsed}
        storage = self._engine.storage
        try:
            if item_type == base.FLOW:
                storage.update_flow_metadata(update)
            else:
                storage.update_atom_metadata(item_name, update)
        except exc.StorageFailure:
            LOG.warning(
                "Failure to store duration update %s for %s %s",
                update,
                item_type,
                item_name,
                exc_info=True,
            )

    def _receiver(self, item_type: str, item_name: str, state: str) -> None:
        timers = self._timers[item_type]
        if state == states.PENDING:
            timers.pop(item_name, None)
        elif state in STARTING_STATES:
            timers[item_name] = time.monotonic()
        elif state in FINISHED_STATES:
            started = timers.pop(item_name, None)
            if started is not None:
                self._record_ending(time.monotonic() - started, item_type, item_name, state)

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._receiver(base.TASK, details["task_name"], state)

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        self._receiver(base.FLOW, details["flow_name"], state)


def _printer(message: str) -> None:
    print(message)


class PrintingDurationListener(DurationListener):
    """A :class:`DurationListener` that also reports starts and durations as text.

    Prints ``'a' task started.`` when a period starts and ``It took task 'a' 0.92 seconds
    to finish.`` when it ends (likewise for the flow).

    Args:
        engine: the engine to listen to.
        printer: called with each message (default: :func:`print` to stdout).
    """

    def __init__(self, engine: Engine, printer: Callable[[str], Any] | None = None) -> None:
        super().__init__(engine)
        self._printer = printer if printer is not None else _printer

    def _record_ending(self, elapsed: float, item_type: str, item_name: str, state: str) -> None:
        super()._record_ending(elapsed, item_type, item_name, state)
        self._printer(f"It took {item_type} '{item_name}' {elapsed:0.2f} seconds to finish.")

    def _receiver(self, item_type: str, item_name: str, state: str) -> None:
        super()._receiver(item_type, item_name, state)
        if state in STARTING_STATES:
            self._printer(f"'{item_name}' {item_type} started.")


class EventTimeListener(base.Listener):
    """Stores when each flow, task and retry entered each state.

    The wall-clock time (``time.time()``) of every selected state change is stored under
    ``'<STATE>-timestamp'`` in the metadata of the flow or atom (a repeated state
    overwrites its earlier timestamp).

    Args:
        engine: the engine to listen to.
        task_listen_for: task states to record.
        flow_listen_for: flow states to record.
        retry_listen_for: retry states to record.
    """

    def __init__(
        self,
        engine: Engine,
        task_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        flow_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
        retry_listen_for: Iterable[str] = base.DEFAULT_LISTEN_FOR,
    ) -> None:
        super().__init__(
            engine,
            task_listen_for=task_listen_for,
            flow_listen_for=flow_listen_for,
            retry_listen_for=retry_listen_for,
        )

    def _record_atom_event(self, state: str, atom_name: str) -> None:
        self._engine.storage.update_atom_metadata(atom_name, {f"{state}-timestamp": time.time()})

    def _flow_receiver(self, state: str, details: base.Details) -> None:
        self._engine.storage.update_flow_metadata({f"{state}-timestamp": time.time()})

    def _task_receiver(self, state: str, details: base.Details) -> None:
        self._record_atom_event(state, details["task_name"])

    def _retry_receiver(self, state: str, details: base.Details) -> None:
        self._record_atom_event(state, details["retry_name"])
