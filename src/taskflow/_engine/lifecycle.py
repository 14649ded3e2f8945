"""An engine's lifecycle: compile, prepare, validate, run (and resume), suspend, reset.

The public engine classes (``taskflow.engines.action_engine.engine``) are faces over
:class:`Lifecycle`. It owns the flow's :class:`~taskflow.storage.Storage`, compiles the flow
once into a :class:`~taskflow._engine.compiler.Plan`, and hands each run to a
:class:`~taskflow._engine.runtime.Runner` with narrow interfaces: the storage, an executor, the
atom notifier and a callable that moves the flow's state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import states
from taskflow._config import as_bool, as_float
from taskflow._engine.compiler import Compilation, Plan, compile_flow
from taskflow._engine.gcpause import gc_frozen
from taskflow._engine.runtime import Runner
from taskflow._serialization import UnstorableValue
from taskflow.persistence.base import DEFAULT_LEASE, check_fencing_token
from taskflow.retry import Retry
from taskflow.storage import META_PROGRESS, Storage
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping

    from taskflow._engine.executors import AtomExecutor
    from taskflow.flow import Flow
    from taskflow.persistence.base import Backend, Ownership
    from taskflow.persistence.models import FlowDetail
    from taskflow.types.notifier import Notifier

__all__ = ["Lifecycle"]

LOG = logging.getLogger(__name__)


class Lifecycle:
    """Everything an action engine does, for the face that users hold (``engine``).

    Args:
        engine: the public engine object (passed to flow notifications as ``engine``).
        flow, flow_detail, backend, options: as given to the engine.
        notifier, atom_notifier: the engine's notifiers.
        make_executor: builds the executor of one run.
    """

    def __init__(
        self,
        engine: Any,
        flow: Flow,
        flow_detail: FlowDetail,
        backend: Backend | None,
        options: Mapping[str, Any],
        notifier: Notifier,
        atom_notifier: Notifier,
        make_executor: Callable[[], AtomExecutor],
    ) -> None:
        # Weak references: nothing here refers back to the engine object strongly, so that
        # an engine (with its storage and backend) is freed as soon as it is dropped, not
        # at the collector's next full collection.
        self._engine = weakref.ref(engine)
        self._flow = flow
        self._flow_detail = flow_detail
        self._backend = backend
        self._notifier = notifier
        self._atom_notifier = atom_notifier
        self._make_executor = make_executor
        self.storage = Storage(flow_detail, backend=backend)
        self.plan: Plan | None = None
        self.compilation: Compilation | None = None
        self._prepared = False
        self._runner: Runner | None = None
        self.run_lock = threading.Lock()
        # True after a storage failure left memory ahead of the backend and reloading failed.
        self._stale = False
        self.statistics: dict[str, Any] = {}
        self._defer_reverts = as_bool(options, "defer_reverts", False)
        self._never_resolve = as_bool(options, "never_resolve", False)
        self._inject_transient = as_bool(options, "inject_transient", True)
        self._gather_statistics = as_bool(options, "gather_statistics", True)
        #: Seconds each lease on the flow detail lasts (renewed while the engine runs).
        self._lease = as_float(options, "ownership_lease", DEFAULT_LEASE)
        if self._lease <= 0:
            raise ValueError(f"'ownership_lease' must be positive, not {self._lease}")
        #: The claim made elsewhere for this run (a conductor's job claim: its token, the
        #: job's uuid): the run's ownership of the flow takes over from a holder with a
        #: smaller token for the same key, and is refused after one with a larger token.
        self._fencing_token = _fencing_token(options.get("fencing_token"))
        key = options.get("fencing_key")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"'fencing_key' must be a string, not {key!r}")
        self._fencing_key: str | None = key
        #: Called before each write of the run (a conductor's check that it still holds the
        #: job, whose claim may have lapsed while this process was paused, before anyone
        #: claimed the flow itself): raising refuses the write, as a fenced write is refused.
        check = options.get("fencing_check")
        if check is not None and not callable(check):
            raise ValueError(f"'fencing_check' must be callable, not {check!r}")
        self._fencing_check: Callable[[], None] | None = check
        self._ownership: Ownership | None = None
        # Blocks inside owning (any thread), and the lease renewal of the current ownership:
        # (stop event, renewing thread).
        self._holders = 0
        self._renewal: tuple[threading.Event, threading.Thread] | None = None
        # The token of this engine's last ownership: a claim that gets the next one knows
        # nobody else ran the flow meanwhile; any other claim reloads it from the backend.
        self._last_token: int | None = None
        self.storage.set_write_guard(_weak_guard(self))
        self.storage.set_fence_check(self._fencing_check)

    # -- compile, prepare, validate, reset --------------------------------------------------

    def compile(self) -> None:
        if self.plan is not None:
            return
        with gc_frozen():
            plan = compile_flow(self._flow)
        self.plan = plan
        self.compilation = Compilation(plan)
        self.storage.set_scope_fetcher(plan.scope_fetcher)

    def _compiled(self, doing: str) -> Plan:
        if self.plan is None:
            raise exc.InvalidState(f"Can not {doing} an engine which has not been compiled")
        return self.plan

    def prepare(self) -> None:
        with self.owning():
            self._prepare()

    def _prepare(self) -> None:
        plan = self._compiled("prepare")
        storage = self.storage
        if storage.get_flow_state() == states.REVERTED:
            self._reset()
        if self._prepared:
            return
        self.change_flow_state(states.RESUMING)
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
                storage.inject_atom_args(atom.name, atom.inject, transient=self._inject_transient)
        self.change_flow_state(states.SUSPENDED)
        self._prepared = True

    def validate(self) -> None:
        if not self._prepared or self.plan is None:
            raise exc.InvalidState("Can not validate an engine which has not been prepared")
        plan = self.plan
        storage = self.storage
        failures: list[exc.MissingDependencies] = []
        missing: set[str] = set()
        for node in plan.atom_nodes:
            if not plan.bindings[node] and not plan.revert_bindings[node]:
                continue  # most atoms: nothing to check
            atom = plan.atoms[node]
            assert atom is not None
            for method, bindings in (
                ("execute", plan.bindings[node]),
                ("revert", plan.revert_bindings[node]),
            ):
                unsatisfied = sorted(
                    storage.fetch_unsatisfied_args(
                        atom.name,
                        {b.arg: b.symbol for b in bindings},
                        optional_args=[b.symbol for b in bindings if b.optional],
                    )
                )
                if unsatisfied:
                    missing.update(unsatisfied)
                    failures.append(exc.MissingDependencies(atom, unsatisfied, method=method))
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

    def reset(self) -> None:
        with self.owning():
            self._reset()

    def _reset(self) -> None:
        plan = self._compiled("reset")
        storage = self.storage
        notify = bool(self._atom_notifier)
        for node in plan.atom_nodes:
            atom = plan.atoms[node]
            assert atom is not None
            try:
                ad = storage.atom_detail(atom.name)
            except exc.NotFound:
                continue
            old = ad.state
            ad.intention = states.EXECUTE
            if not isinstance(atom, Retry) and ad.meta.get(META_PROGRESS, 0.0) != 0.0:
                # As upstream: a reset task's progress starts again (its details are kept),
                # saved with the rest of the reset in one write.
                ad.meta[META_PROGRESS] = 0.0
            storage.reset(atom.name)
            if notify and old != states.PENDING:
                details: dict[str, Any] = {"old_state": old}
                if isinstance(atom, Retry):
                    details.update(retry_name=atom.name, retry_uuid=ad.uuid)
                else:
                    details.update(task_name=atom.name, task_uuid=ad.uuid)
                self._atom_notifier.notify(states.PENDING, details)
        self.change_flow_state(states.PENDING)

    def change_flow_state(self, state: str) -> bool:
        """Move the flow to ``state`` (persisted, then notified); False if ignored."""
        storage = self.storage
        moved, old = storage.change_flow_state(state)
        if moved and self._notifier:
            self._notifier.notify(
                state,
                {
                    "engine": self._engine(),
                    "flow_name": storage.flow_name,
                    "flow_uuid": storage.flow_uuid,
                    "old_state": old,
                },
            )
        return moved

    def _reload_from_backend(self) -> None:
        """Forget what is in memory; the next run starts again from the backend's records."""
        backend = self._backend
        if backend is None:
            return
        try:
            with backend.get_connection() as conn:
                flow_detail = conn.get_flow_details(self._flow_detail.uuid)
        except Exception:  # still unreachable (whatever the backend raises)
            flow_detail = None
        self._prepared = False
        if flow_detail is None:
            # Still unreachable: the next run tries again before doing anything.
            self._stale = True
            return
        self._flow_detail = flow_detail
        self.storage = Storage(flow_detail, backend=backend)
        self.storage.set_write_guard(_weak_guard(self))
        self.storage.set_fence_check(self._fencing_check)
        if self.plan is not None:
            self.storage.set_scope_fetcher(self.plan.scope_fetcher)
        self._stale = False

    # -- ownership ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def owning(self) -> Iterator[None]:
        """Own the flow detail while inside; released however the block ends.

        Re-entrant, from any thread: the first block to enter claims the flow, the last to
        leave releases it, so a write guarded from another thread (an ``inject`` while the
        engine runs) never releases the run's ownership under it. A thread renews the lease
        every third of it while any block runs, so that only a dead (or paused, or cut off)
        owner loses the flow. Without a backend there is nothing to own.
        """
        # The storage's lock guards the count and the claim: writes guarded from other
        # threads enter holding it already (Storage.inject), so taking it here keeps one
        # lock order (a second lock would deadlock against them).
        with self.storage.lock:
            if not self._holders:
                self._claim()
            self._holders += 1
        try:
            yield
        finally:
            with self.storage.lock:
                self._holders -= 1
                if not self._holders:
                    self._release()

    def _claim(self) -> None:
        """Claim the flow and start renewing the lease (under the storage's lock)."""
        ownership = self.storage.claim(self._lease, self._fencing_token, self._fencing_key)
        if ownership is None:
            return
        # Token 1: nobody ever ran the flow. The next token after this engine's own last
        # one: nobody ran it since. Otherwise what this engine holds may be stale.
        if ownership.token != 1 and ownership.token != (self._last_token or 0) + 1:
            self._refresh()
        self._last_token = ownership.token
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(ownership, stop), name="taskflow-lease", daemon=True
        )
        renewer.start()
        self._ownership = ownership
        self._renewal = (stop, renewer)

    def _release(self) -> None:
        """Stop renewing and give the flow up (under the storage's lock; the renewing thread
        never takes it, so joining it here can not wait on us)."""
        ownership, self._ownership = self._ownership, None
        if ownership is None or self._renewal is None:
            return
        stop, renewer = self._renewal
        self._renewal = None
        stop.set()
        # Joined first: a renewal finishing after the release would hold the flow again.
        renewer.join(self._lease)
        with contextlib.suppress(Exception):  # gone already; the lease lapses anyway
            self.storage.release(ownership)

    def _refresh(self) -> None:
        """Read the flow again (after claiming it): what this engine holds may be stale."""
        backend = self._backend
        assert backend is not None
        try:
            with backend.get_connection() as conn:
                fresh = conn.get_flow_details(self._flow_detail.uuid)
        except exc.NotFound:
            return  # not saved yet: nothing anybody else could have written
        self.storage.reload(fresh)
        self._prepared = False

    def _renew(self, ownership: Ownership, stop: threading.Event) -> None:
        storage = self.storage
        while not stop.wait(self._lease / 3):
            try:
                ownership = storage.renew(ownership, self._lease)
            except exc.OwnershipLost as err:
                # The run's next write is refused and stops it; nothing more to do here.
                LOG.warning("%s", err)
                return
            except Exception:
                LOG.warning(
                    "Could not renew the lease of flow '%s'", storage.flow_name, exc_info=True
                )

    # -- running ---------------------------------------------------------------------------

    def suspend(self) -> None:
        runner = self._runner
        if runner is not None:
            runner.request_suspend()

    def run_iter(self, timeout: float | None) -> Generator[str, Any, None]:
        """Run to a final state, yielding the loop's states; raises the flow's failures."""
        with self._run(timeout) as runner:
            yield from runner.run_iter(timeout)
            final = runner.final_state()
            self.change_flow_state(final)
            yield final
        _raise_failures(runner, final)

    def run(self, timeout: float | None) -> None:
        """:meth:`run_iter` to its end, with no generator in the way (``engine.run()``)."""
        with self._run(timeout) as runner:
            runner.run(timeout)
            final = runner.final_state()
            self.change_flow_state(final)
        _raise_failures(runner, final)

    @contextlib.contextmanager
    def _run(self, timeout: float | None) -> Iterator[Runner]:
        """One run: owned from start to end (see :meth:`owning`), compiled, prepared and
        validated; gives the runner, which the block drives to its final state."""
        if self._stale:
            self._reload_from_backend()
            if self._stale:
                raise exc.StorageFailure(
                    f"Can not reload flow detail '{self._flow_detail.uuid}' from the backend"
                )
        with self.owning():
            self.compile()
            try:
                self.prepare()
            except exc.StorageFailure:
                # Details created in memory may not have reached the backend: start again
                # from the backend's records next time, as for a failure during the run.
                self._reload_from_backend()
                raise
            self.validate()
            assert self.plan is not None
            runner = Runner(
                self.plan,
                self.storage,
                self._make_executor(),
                self._atom_notifier,
                self.change_flow_state,
                defer_reverts=self._defer_reverts,
                never_resolve=self._never_resolve,
            )
            self._runner = runner
            started = time.monotonic()
            try:
                self.change_flow_state(states.RUNNING)
                yield runner
            except Exception as err:
                if isinstance(err, exc.StorageFailure) and not isinstance(err, UnstorableValue):
                    # An outage: what is in memory may now be ahead of what was written.
                    # Forget it, so a later run starts again from the backend's records.
                    self._reload_from_backend()
                    raise
                # Something outside any atom broke (a retry's bad decision, an exception
                # thrown into run_iter, a backend's own error, a value no backend can hold in
                # a write that fails no atom): the flow can not go on, so it ends FAILURE and
                # the error reaches the caller. The next run starts from the backend's
                # records too.
                with contextlib.suppress(Exception):
                    self.change_flow_state(states.FAILURE)
                self._reload_from_backend()
                raise
            finally:
                self._runner = None
                if self._gather_statistics:
                    self.statistics = _statistics(runner, time.monotonic() - started)


def _fencing_token(value: Any) -> int | None:
    """The ``fencing_token`` engine option (text of digits too): what ``claim_flow`` takes."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    try:
        return check_fencing_token(value)
    except ValueError:
        raise ValueError(f"'fencing_token' must be a positive integer, not {value!r}") from None


def _weak_guard(lifecycle: Lifecycle) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """``lifecycle.owning``, held weakly (the storage it guards belongs to the lifecycle)."""
    method = weakref.WeakMethod(lifecycle.owning)

    def guard() -> contextlib.AbstractContextManager[None]:
        owning = method()
        return owning() if owning is not None else contextlib.nullcontext()

    return guard


def _statistics(runner: Runner, active_for: float) -> dict[str, Any]:
    """What the last run measured."""
    finished = sum(
        1 for ad in runner.ads if ad is not None and ad.state in (states.SUCCESS, states.IGNORE)
    )
    atoms = sum(1 for ad in runner.ads if ad is not None)
    return {
        "seconds_per_state": dict(runner.seconds),
        "discarded_failures": runner.discarded_failures,
        # Calls still under way when the run ended (non-zero only when it was cut short).
        "awaiting": len(runner.in_flight),
        "completed": finished,
        "incomplete": atoms - finished,
        "active_for": active_for,
    }


def _raise_failures(runner: Runner, final: str) -> None:
    """Raise what made the run end REVERTED or FAILURE (revert failures first)."""
    if final == states.REVERTED:
        Failure.reraise_if_any(list(runner.failures.values()))
    elif final == states.FAILURE:
        revert_failures = [
            ad.revert_failure for ad in runner.ads if ad is not None and ad.revert_failure
        ]
        Failure.reraise_if_any(revert_failures or list(runner.failures.values()))
