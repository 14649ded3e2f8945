"""Local engines: serial (the caller's thread) and parallel (threads, processes, any executor).

These classes are the public face; what they do lives in :mod:`taskflow._engine`.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import states
from taskflow._engine import executors, machine
from taskflow._engine.gcpause import gc_frozen
from taskflow._engine.lifecycle import Lifecycle
from taskflow.engines import base

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from taskflow._engine.compiler import Compilation
    from taskflow.flow import Flow
    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import FlowDetail
    from taskflow.storage import Storage

__all__ = ["ActionEngine", "ParallelActionEngine", "SerialActionEngine"]


class ActionEngine(base.Engine):
    """Runs a flow in this process, persisting every transition through its storage."""

    #: Engine (state machine) states that are internal steps, never recorded as flow states.
    IGNORABLE_STATES = frozenset(
        (
            states.ANALYZING,
            machine.GAME_OVER,
            states.RESUMING,
            states.SCHEDULING,
            machine.UNDEFINED,
            states.WAITING,
        )
    )
    #: Final states after which ``run()`` returns without re-raising atom failures.
    NO_RERAISING_STATES = frozenset((states.SUCCESS, states.SUSPENDED))
    #: How many of the most recent engine states are kept to explain an unexpected stop.
    MAX_MACHINE_STATES_RETAINED = 10
    #: Whether independent atoms run concurrently (on the executor the options name).
    _parallel = False

    def __init__(
        self,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: dict[str, Any] | None,
    ) -> None:
        super().__init__(flow, flow_detail, backend, options)
        self._core = Lifecycle(
            self,
            flow,
            flow_detail,
            backend,
            self._options,
            self._notifier,
            self._atom_notifier,
            self._executor_factory(),
        )

    def _executor_factory(self) -> Callable[[], executors.AtomExecutor]:
        """What makes the executor of each run (from the options; kinds override it)."""
        return functools.partial(executors.from_options, self._options, self._parallel)

    @property
    def storage(self) -> Storage:
        return self._core.storage

    @property
    def compilation(self) -> Compilation | None:
        """The compiled flow (None before :meth:`compile`, as upstream)."""
        return self._core.compilation

    @property
    def statistics(self) -> dict[str, Any]:
        return dict(self._core.statistics)

    def compile(self) -> None:
        self._core.compile()

    def prepare(self) -> None:
        self._core.prepare()

    def validate(self) -> None:
        self._core.validate()

    def reset(self) -> None:
        self._core.reset()

    def suspend(self) -> None:
        self._core.suspend()

    def owning(self) -> contextlib.AbstractContextManager[None]:
        return self._core.owning()

    def run(self, timeout: float | None = None) -> None:
        with self._locked(), gc_frozen():
            self._core.run(timeout)

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        with self._locked():
            iterator = self._core.run_iter(timeout)
            try:
                value = next(iterator)
                while True:
                    try:
                        sent = yield value
                    except GeneratorExit:
                        # Closing the iterator suspends the flow and drains what is running.
                        self.suspend()
                        for _ in iterator:
                            pass
                        raise
                    except BaseException as err:
                        # Thrown in by the caller: it ends the run inside (an Exception makes
                        # the flow FAILURE; a KeyboardInterrupt stops it as Ctrl-C in run()
                        # does), which releases what the run holds before it propagates.
                        value = iterator.throw(err)
                        continue
                    value = iterator.send(sent)
            except StopIteration:
                return

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the engine for one run; a second concurrent run is refused."""
        lock = self._core.run_lock
        if not lock.acquire(blocking=False):
            raise exc.ExecutionFailure("Engine currently locked, please try again later")
        try:
            yield
        finally:
            lock.release()


class SerialActionEngine(ActionEngine):
    """Runs every atom in the calling thread, one at a time."""


class ParallelActionEngine(ActionEngine):
    """Runs independent atoms concurrently.

    Options:
        executor: ``'threads'`` (default; also ``'thread'``, ``'threaded'``, and the green
            thread names, which use threads), ``'processes'`` (local child processes), or any
            :class:`concurrent.futures.Executor` (used as is, never shut down by the engine).
        max_workers: size of the pool the engine creates.
    """

    _parallel = True

    def __init__(
        self,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: dict[str, Any] | None,
    ) -> None:
        super().__init__(flow, flow_detail, backend, options)
        executors.check_options(self._options)
