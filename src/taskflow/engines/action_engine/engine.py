"""Local engines: serial (the caller's thread) and parallel (threads, processes, any executor)."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import states
from taskflow._engine import executors
from taskflow._engine.compiler import Compilation, Plan, compile_flow
from taskflow._engine.gcpause import gc_frozen
from taskflow._engine.runtime import Runner
from taskflow.engines import base
from taskflow.retry import Retry
from taskflow.storage import Storage
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Generator

    from taskflow.flow import Flow
    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import FlowDetail

__all__ = ["ActionEngine", "ParallelActionEngine", "SerialActionEngine"]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class ActionEngine(base.Engine):
    """Runs a flow in this process, persisting every transition through its storage."""

    #: Engine (state machine) states that are internal steps, never recorded as flow states.
    IGNORABLE_STATES = frozenset(
        (
            states.ANALYZING,
            states.GAME_OVER,
            states.RESUMING,
            states.SCHEDULING,
            states.UNDEFINED,
            states.WAITING,
        )
    )
    #: Final states after which ``run()`` returns without re-raising atom failures.
    NO_RERAISING_STATES = frozenset((states.SUCCESS, states.SUSPENDED))
    #: How many of the most recent engine states are kept to explain an unexpected stop.
    MAX_MACHINE_STATES_RETAINED = 10

    def __init__(
        self,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: dict[str, Any] | None,
    ) -> None:
        super().__init__(flow, flow_detail, backend, options)
        self._storage = Storage(flow_detail, backend=backend)
        self._plan: Plan | None = None
        self._compilation: Compilation | None = None
        self._prepared = False
        self._runner: Runner | None = None
        self._run_lock = threading.Lock()
        # True after a storage failure left memory ahead of the backend and reloading failed.
        self._stale = False
        self._statistics: dict[str, Any] = {}
        opts = self._options
        self._defer_reverts = _as_bool(opts.get("defer_reverts", False))
        self._never_resolve = _as_bool(opts.get("never_resolve", False))
        self._inject_transient = _as_bool(opts.get("inject_transient", True))
        self._gather_statistics = _as_bool(opts.get("gather_statistics", True))

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def compilation(self) -> Compilation | None:
        """The compiled flow (None before :meth:`compile`, as upstream)."""
        return self._compilation

    @property
    def statistics(self) -> dict[str, Any]:
        return dict(self._statistics)

    def _make_executor(self) -> executors.AtomExecutor:
        return executors.SerialExecutor()

    # -- lifecycle -------------------------------------------------------------------------------

    def compile(self) -> None:
        if self._plan is not None:
            return
        with gc_frozen():
            plan = compile_flow(self._flow)
        self._plan = plan
        self._compilation = Compilation(plan)

    def prepare(self) -> None:
        if self._plan is None:
            raise exc.InvalidState("Can not prepare an engine which has not been compiled")
        storage = self._storage
        if storage.get_flow_state() == states.REVERTED:
            self.reset()
        if not self._prepared:
            self._change_flow_state(states.RESUMING)
            plan = self._plan
            # Details are created children first, a retry after the atoms it governs.
            if plan.scope_end:
                order = sorted(plan.atom_nodes, key=lambda n: (plan.scope_end.get(n, n), n))
            else:
                order = plan.atom_nodes
            atoms = [plan.atoms[node] for node in order]
            with gc_frozen():
                storage.ensure_atoms(atoms)  # type: ignore[arg-type]
            for atom in atoms:
                assert atom is not None
                if atom.inject:
                    storage.inject_atom_args(
                        atom.name, atom.inject, transient=self._inject_transient
                    )
            self._change_flow_state(states.SUSPENDED)
            self._prepared = True

    def validate(self) -> None:
        if not self._prepared or self._plan is None:
            raise exc.InvalidState("Can not validate an engine which has not been prepared")
        plan = self._plan
        storage = self._storage
        flow_injected = storage.flow_injected
        failures: list[exc.MissingDependencies] = []
        missing: set[str] = set()
        injected_names = storage.injected_atom_names()
        bindings_of = plan.bindings
        revert_bindings_of = plan.revert_bindings
        for node in plan.atom_nodes:
            if not bindings_of[node] and not revert_bindings_of[node]:
                continue
            atom = plan.atoms[node]
            assert atom is not None
            injected = storage.atom_injections(atom.name) if atom.name in injected_names else {}
            for method, bindings in (
                ("execute", plan.bindings[node]),
                ("revert", plan.revert_bindings[node]),
            ):
                atom_missing = sorted(
                    {
                        b.symbol
                        for b in bindings
                        if not b.optional
                        and not b.providers
                        and b.symbol not in flow_injected
                        and b.symbol not in injected
                    }
                )
                if atom_missing:
                    missing.update(atom_missing)
                    failures.append(exc.MissingDependencies(atom, atom_missing, method=method))
        if not failures:
            return
        if len(failures) == 1 and plan.root is plan.atoms[plan.atom_nodes[0]]:
            raise failures[0]
        cause: BaseException | None = None
        if len(failures) == 1:
            cause = failures[0]
        else:
            cause = exc.WrappedFailure([Failure.from_exception(f) for f in failures])
        raise exc.MissingDependencies(self._flow, sorted(missing), cause=cause)

    def _change_flow_state(self, state: str) -> bool:
        moved, old = self._storage.change_flow_state(state)
        if moved and self._notifier:
            self._notifier.notify(
                state,
                {
                    "engine": self,
                    "flow_name": self._storage.flow_name,
                    "flow_uuid": self._storage.flow_uuid,
                    "old_state": old,
                },
            )
        return moved

    def _reload_from_backend(self) -> None:
        backend = self._backend
        if backend is None:
            return
        try:
            with backend.get_connection() as conn:
                flow_detail = conn.get_flow_details(self._flow_detail.uuid)
        except exc.TaskFlowException:
            flow_detail = None
        if flow_detail is None:
            # Still unreachable: the next run tries again before doing anything.
            self._prepared = False
            self._stale = True
            return
        self._flow_detail = flow_detail
        self._storage = Storage(flow_detail, backend=backend)
        self._prepared = False
        self._stale = False

    def reset(self) -> None:
        if self._plan is None:
            raise exc.InvalidState("Can not reset an engine which has not been compiled")
        storage = self._storage
        notify = bool(self._atom_notifier)
        for node in self._plan.atom_nodes:
            atom = self._plan.atoms[node]
            assert atom is not None
            try:
                ad = storage.atom_detail(atom.name)
            except exc.NotFound:
                continue
            old = ad.state
            ad.intention = states.EXECUTE
            storage.reset(atom.name)
            if notify and old != states.PENDING:
                details: dict[str, Any] = {"old_state": old}
                if isinstance(atom, Retry):
                    details.update(retry_name=atom.name, retry_uuid=ad.uuid)
                else:
                    details.update(task_name=atom.name, task_uuid=ad.uuid)
                self._atom_notifier.notify(states.PENDING, details)
        self._change_flow_state(states.PENDING)

    def suspend(self) -> None:
        runner = self._runner
        if runner is not None:
            runner.request_suspend()

    # -- running ---------------------------------------------------------------------------------

    def run(self, timeout: float | None = None) -> None:
        if not self._run_lock.acquire(blocking=False):
            raise exc.ExecutionFailure("Engine currently locked, please try again later")
        try:
            with gc_frozen():
                for _state in self._run_iter(timeout):
                    pass
        finally:
            self._run_lock.release()

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        if not self._run_lock.acquire(blocking=False):
            raise exc.ExecutionFailure("Engine currently locked, please try again later")
        try:
            iterator = self._run_iter(timeout)
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
                    value = iterator.send(sent)
            except StopIteration:
                return
        finally:
            self._run_lock.release()

    def _run_iter(self, timeout: float | None) -> Generator[str, Any, None]:
        if self._stale:
            self._reload_from_backend()
            if self._stale:
                raise exc.StorageFailure(
                    f"Can not reload flow detail '{self._flow_detail.uuid}' from the backend"
                )
        self.compile()
        self.prepare()
        self.validate()
        plan = self._plan
        assert plan is not None
        runner = Runner(
            plan,
            self._storage,
            self._make_executor(),
            self._notifier,
            self._atom_notifier,
            self,
            defer_reverts=self._defer_reverts,
            never_resolve=self._never_resolve,
        )
        self._runner = runner
        started = time.monotonic()
        try:
            self._change_flow_state(states.RUNNING)
            runner.prepare()
            yield from runner.run_iter(timeout)
            final = runner.final_state()
            self._change_flow_state(final)
            yield final
        except GeneratorExit:
            raise
        except exc.StorageFailure:
            # What is in memory may now be ahead of what was written: forget it, so a later
            # run starts again from the backend's records (which resumption relies on).
            self._reload_from_backend()
            raise
        except Exception:
            # Something outside any atom broke (a retry's bad decision, for instance): the flow
            # can not go on, so it ends FAILURE and the error reaches the caller.
            with contextlib.suppress(exc.TaskFlowException):
                self._change_flow_state(states.FAILURE)
            raise
        finally:
            self._runner = None
            if self._gather_statistics:
                self._statistics = {
                    "seconds_per_state": dict(runner.seconds),
                    "discarded_failures": 0,
                    "awaiting": 0,
                    "completed": sum(
                        1
                        for ad in runner.ads
                        if ad is not None and ad.state in (states.SUCCESS, states.IGNORE)
                    ),
                    "incomplete": sum(
                        1
                        for ad in runner.ads
                        if ad is not None and ad.state not in (states.SUCCESS, states.IGNORE)
                    ),
                    "active_for": time.monotonic() - started,
                }
        if final == states.REVERTED:
            Failure.reraise_if_any(list(runner.failures.values()))
        elif final == states.FAILURE:
            revert_failures = [
                ad.revert_failure
                for ad in runner.ads
                if ad is not None and ad.revert_failure is not None
            ]
            Failure.reraise_if_any(revert_failures or list(runner.failures.values()))


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

    _THREADS = frozenset(
        ("thread", "threads", "threaded", "greenthread", "greenthreads", "greenthreaded")
    )
    _PROCESSES = frozenset(("process", "processes"))

    def __init__(
        self,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: dict[str, Any] | None,
    ) -> None:
        super().__init__(flow, flow_detail, backend, options)
        executor = self._options.get("executor")
        max_workers = self._options.get("max_workers")
        if max_workers is not None:
            max_workers = int(max_workers)
        self._max_workers: int | None = max_workers
        if executor is None or isinstance(executor, cf.Executor):
            pass
        elif isinstance(executor, str):
            kind = executor.strip().lower()
            if kind not in self._THREADS and kind not in self._PROCESSES:
                raise ValueError(
                    f"Unknown executor string '{executor}' expected one of"
                    f" {sorted(self._THREADS | self._PROCESSES)}"
                )
        else:
            raise TypeError(
                f"Expected an executor instance or string, not {type(executor).__name__}"
            )
        self._executor_option = executor

    def _make_executor(self) -> executors.AtomExecutor:
        option = self._executor_option
        if isinstance(option, cf.ProcessPoolExecutor):
            return executors.UserProcessExecutor(option)
        if isinstance(option, cf.Executor):
            return executors.UserExecutor(option)
        if isinstance(option, str) and option.strip().lower() in self._PROCESSES:
            return executors.ProcessExecutor(self._max_workers)
        return executors.ThreadExecutor(self._max_workers)
