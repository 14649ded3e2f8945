"""The engine loop: run a compiled plan forward, revert and retry scopes, resume from storage.

Theory of operation
-------------------
One thread (the one iterating :meth:`Runner.run_iter`) owns every counter and every atom
detail; executors only call atom code and put outcomes on a queue.

Forward: each node keeps ``remaining``, the number of its predecessors not yet finished. A node
whose counter reaches zero is *ready*: deciders on its incoming links are evaluated first (a
"no" marks the nodes chosen by the decider's depth IGNORE), joins pass through at once, and atoms
are submitted. Finishing (SUCCESS or IGNORE) decrements each successor's counter, so every edge
is touched once per run.

Revert: a failure is resolved by the nearest retry controller into a *scope* (the retry's
subflow, the retry and its subflow, or everything). Every node of the scope enters revert mode
with ``rev_remaining`` = its successors in revert mode not yet reverted; nodes reaching zero
revert (atoms that ran) or pass through (joins, atoms that never ran). When the walk reaches a
retry whose intention is RETRY, the scope is reset and the retry executes again.

Durability: each transition is written (one atom record) before the loop acts on it: RUNNING
before a call is submitted, the result with SUCCESS before successors are released, intentions
before a revert starts. :meth:`Runner.prepare` rebuilds every counter from those records.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from taskflow import exceptions as exc
from taskflow import states
from taskflow._serialization import UnstorableValue
from taskflow.deciders import Depth
from taskflow.flow import Flow
from taskflow.retry import Decision, History, Retry
from taskflow.task import EVENT_UPDATE_PROGRESS, Task
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Generator

    from taskflow._engine.compiler import Binding, Plan
    from taskflow._engine.executors import AtomExecutor
    from taskflow.persistence.models import AtomDetail
    from taskflow.storage import Storage
    from taskflow.types.notifier import Notifier

__all__ = ["Runner"]

_SUCCESS = states.SUCCESS
_FAILURE = states.FAILURE
_IGNORE = states.IGNORE
_RUNNING = states.RUNNING
_EXECUTE = states.EXECUTE
_REVERT = states.REVERT
_RETRY = states.RETRY
_FINISHED = frozenset((states.SUCCESS, states.IGNORE))
_RESULT_STATES = frozenset((states.SUCCESS, states.FAILURE, states.REVERTED, states.REVERT_FAILURE))


class _Missing(Exception):
    pass


class Runner:
    """Runs one compiled plan against one storage (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        storage: Storage,
        executor: AtomExecutor,
        notifier: Notifier,
        atom_notifier: Notifier,
        engine: Any,
        defer_reverts: bool = False,
        never_resolve: bool = False,
    ) -> None:
        self.plan = plan
        self.storage = storage
        self.executor = executor
        self.notifier = notifier
        self.atom_notifier = atom_notifier
        self.engine = engine
        self.defer_reverts = defer_reverts
        self.never_resolve = never_resolve
        size = len(plan.atoms)
        details = storage._details
        self.ads: list[AtomDetail | None] = [
            details[atom.name] if atom is not None else None for atom in plan.atoms
        ]
        # Invariant: done[n] is True iff n finished forward (atoms SUCCESS/IGNORE with an
        # EXECUTE/IGNORE intention, joins once all their predecessors are done).
        self.done = [False] * size
        # Invariant: remaining[n] == number of predecessors p with done[p] False.
        self.remaining = [0] * size
        self.rev_mode = [False] * size
        self.rev_done = [False] * size
        self.rev_remaining = [0] * size
        self.in_flight: set[int] = set()
        self.waiting_revert: set[int] = set()  # reverting nodes still running forward
        self.ready: list[int] = []
        self.rev_ready: list[int] = []
        self.delayed: list[tuple[float, int]] = []
        self.suspending = False
        self.revert_failed = False
        self.unresolved = False
        self.injections: dict[int, dict[str, Any]] = {}
        # Execute failures by atom name (what reverts receive as ``flow_failures``).
        self.failures: dict[str, Failure] = {}
        # Tasks overriding update_progress get the engine's 0.0/1.0 calls even when nobody
        # listens (upstream calls the method); the others only when their notifier has listeners.
        overrides: dict[type, bool] = {}
        custom = self.custom_progress = [False] * size
        for node in plan.atom_nodes:
            if not plan.is_retry[node]:
                cls: Any = type(plan.atoms[node])
                flag = overrides.get(cls)
                if flag is None:
                    flag = overrides[cls] = cls.update_progress is not Task.update_progress
                custom[node] = flag
        # None when nothing is persisted (no backend): the hot path then skips the call.
        self._save = storage._save_atom if storage._connection is not None else None
        #: Time spent in each of the machine's working states (engine statistics).
        self.seconds = dict.fromkeys(("analyzing", "resuming", "scheduling", "waiting"), 0.0)

    # -- notifications -----------------------------------------------------------------------

    def _notify_atom(self, node: int, state: str, old: str | None, result: Any = None) -> None:
        atom = self.plan.atoms[node]
        ad = self.ads[node]
        assert atom is not None
        assert ad is not None
        if isinstance(atom, Retry):
            details: dict[str, Any] = {
                "retry_name": atom.name,
                "retry_uuid": ad.uuid,
                "old_state": old,
            }
        else:
            details = {"task_name": atom.name, "task_uuid": ad.uuid, "old_state": old}
        if state in _RESULT_STATES:
            details["result"] = result
        self.atom_notifier.notify(state, details)

    def _set_state(self, node: int, state: str, persist: bool = True) -> None:
        ad = self.ads[node]
        assert ad is not None
        old = ad.state
        if old == state:
            return
        ad.state = state
        if persist:
            self.storage._save_atom(ad)
        if self.atom_notifier:
            self._notify_atom(node, state, old)

    def change_flow_state(self, state: str) -> bool:
        """Move the flow to ``state`` (persisted, then notified) through the engine."""
        return bool(self.engine._change_flow_state(state))

    # -- preparation (also the resume path) --------------------------------------------------

    def prepare(self) -> None:
        """Rebuild every counter from the persisted atom states and intentions."""
        plan = self.plan
        ads = self.ads
        done = self.done
        remaining = self.remaining
        preds_of = plan.pred
        is_retry = plan.is_retry
        injected_names = self.storage.injected_atom_names()
        scopes: list[range] = []
        covered: set[int] = set()
        reverting: list[int] = []
        unresolved = []
        # One pass in node order (a topological order): done flags, then each node's count of
        # unfinished predecessors, which are all numbered before it.
        for node, atom in enumerate(plan.atoms):
            preds = preds_of[node]
            count = 0
            for p in preds:
                if not done[p]:
                    count += 1
            remaining[node] = count
            ad = ads[node]
            if ad is None:
                done[node] = count == 0
                continue
            state = ad.state
            intention = ad.intention
            if state is None:
                ad.state = state = states.PENDING
            if atom is not None and atom.name in injected_names:
                self.injections[node] = self.storage.atom_injections(atom.name)
            if intention == _EXECUTE:
                if state == _SUCCESS:
                    done[node] = True
                elif state == _FAILURE:
                    unresolved.append(node)
                elif state == _IGNORE:
                    done[node] = True
                continue
            if intention == _IGNORE or state == _IGNORE:
                done[node] = True
            elif is_retry[node] and intention in (_RETRY, _REVERT):
                # Scopes caught mid-revert (or retry) continue from where they were.
                span = plan.scope(node)
                scope = span if intention == _RETRY else range(node, span.stop)
                scopes.append(scope)
                covered.update(scope)
                if intention == _RETRY:
                    # It waits, in revert mode, for its scope to be reverted, then retries
                    # (as _revert_scope arranges on the live path).
                    self.rev_mode[node] = True
                    self.rev_done[node] = False
            elif intention == _REVERT:
                reverting.append(node)
            if ad.failure is not None:
                self.failures[ad.name] = ad.failure
        for node in unresolved:
            ad = ads[node]
            assert ad is not None
            if ad.failure is not None:
                self.failures[ad.name] = ad.failure
        if any(node not in covered for node in reverting):
            scopes = [range(len(plan.atoms))]
        # An atom left RUNNING with intention EXECUTE was interrupted mid-call: it is not
        # done, so it runs again once its predecessors are.
        for scope in scopes:
            # Persisted: a crash in the middle of writing the intentions must end with the
            # same records as a run that was never interrupted.
            self._mark_revert(scope, persist=True)
        if scopes:
            self._recompute_revert()
        if self.never_resolve:
            # Failures stay unresolved: nothing more runs, the flow ends FAILURE again.
            self.unresolved = bool(unresolved)
        else:
            for node in unresolved:
                if not self.rev_mode[node]:
                    failure = self.failures[self.ads[node].name]  # type: ignore[union-attr]
                    self._resolve(node, failure)
        self.ready = [
            n
            for n in range(len(plan.atoms))
            if self.remaining[n] == 0 and not done[n] and not self.rev_mode[n]
        ]

    # -- forward -------------------------------------------------------------------------------

    def _finish_forward(self, node: int) -> None:
        """Mark ``node`` finished and release successors (iteratively through joins)."""
        plan = self.plan
        done = self.done
        remaining = self.remaining
        stack = [node]
        while stack:
            current = stack.pop()
            done[current] = True
            for succ in plan.succ[current]:
                remaining[succ] -= 1
                if remaining[succ] == 0 and not done[succ]:
                    if plan.atoms[succ] is None and succ not in plan.deciders:
                        if not self.rev_mode[succ]:
                            stack.append(succ)
                    else:
                        self.ready.append(succ)

    def _fetch_args(self, node: int, bindings: tuple[Binding, ...]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if not bindings:
            return kwargs
        injected = self.injections.get(node)
        flow_injected = self.storage.flow_injected
        ads = self.ads
        for binding in bindings:
            symbol = binding.symbol
            if injected and symbol in injected:
                kwargs[binding.arg] = injected[symbol]
                continue
            if symbol in flow_injected:
                kwargs[binding.arg] = flow_injected[symbol]
                continue
            for provider, key, is_retry in binding.providers:
                pad = ads[provider]
                assert pad is not None
                state = pad.state
                if state in (_SUCCESS, _FAILURE) or state == states.REVERTING:
                    if pad.failure is not None:
                        value = pad.failure
                    else:
                        value = pad.results[-1][0] if is_retry else pad.results
                        if key is not None:
                            try:
                                value = value[key]
                            except (LookupError, TypeError):
                                continue
                    kwargs[binding.arg] = value
                    break
            else:
                if not binding.optional:
                    atom = self.plan.atoms[node]
                    raise exc.NotFound(
                        f"Atom '{atom.name if atom else node}' requires '{symbol}' (argument"
                        f" '{binding.arg}') but no provider has a result for it yet"
                    )
        return kwargs

    def _history(self, node: int) -> History:
        ad = self.ads[node]
        assert ad is not None
        return History(list(ad.results or []), failure=ad.failure)

    def _evaluate_deciders(self, node: int) -> bool:
        """True if ``node`` may run; False if a decider vetoed it (nodes then ignored)."""
        plan = self.plan
        deciders = plan.deciders[node]
        # Every decider into a node sees the results of all the sources linked into it.
        history: dict[str, Any] = {}
        for decider in deciders:
            for source in decider.sources:
                ad = self.ads[source]
                atom = plan.atoms[source]
                if ad is None or atom is None or ad.state != _SUCCESS:
                    continue
                history[atom.name] = ad.results[-1][0] if isinstance(atom, Retry) else ad.results
        vetoes = [d for d in deciders if not d.decider(dict(history))]
        if not vetoes:
            return True
        order = [Depth.ATOM, Depth.NEIGHBORS, Depth.FLOW, Depth.ALL]
        widest = max(vetoes, key=lambda d: order.index(d.depth))
        for ignored in self._ignored_by(node, widest.depth):
            ad = self.ads[ignored]
            if ad is not None and ad.state == states.PENDING:
                if not self.plan.is_retry[ignored]:
                    ad.meta["progress"] = 0.0  # as upstream records for skipped tasks
                self._set_state(ignored, _IGNORE)
                ad.intention = _IGNORE
                self.storage._save_atom(ad)
        return False

    def _ignored(self, node: int) -> bool:
        ad = self.ads[node]
        if ad is not None:
            return ad.state == _IGNORE
        entries = self._entry_atoms(node)
        return bool(entries) and all(self.ads[n].state == _IGNORE for n in entries)  # type: ignore[union-attr]

    def _entry_atoms(self, node: int) -> list[int]:
        """The atoms a node leads to through joins only (itself, for an atom)."""
        plan = self.plan
        if plan.atoms[node] is not None:
            return [node]
        found: list[int] = []
        seen = {node}
        todo = [node]
        while todo:
            current = todo.pop()
            for succ in plan.succ[current]:
                if succ in seen:
                    continue
                seen.add(succ)
                if plan.atoms[succ] is None:
                    if succ != plan.flows[plan.node_flow[node]].end:
                        todo.append(succ)
                else:
                    found.append(succ)
        return found

    def _ignored_by(self, node: int, depth: Depth) -> list[int]:
        plan = self.plan
        entries = self._entry_atoms(node)
        if depth == Depth.ATOM:
            return entries
        if depth == Depth.ALL:
            seen = set(entries)
            todo = list(entries)
            while todo:
                current = todo.pop()
                for succ in plan.succ[current]:
                    if succ not in seen:
                        seen.add(succ)
                        todo.append(succ)
            return [n for n in sorted(seen) if plan.atoms[n] is not None]
        # FLOW and NEIGHBORS stay among the atoms of each entry atom's own flow.
        result = list(entries)
        for entry in entries:
            flow_index, position = plan.node_pos[entry]
            info = plan.flows[flow_index]
            frontier = [position]
            seen_pos = {position}
            while frontier:
                pos = frontier.pop()
                for succ_pos in info.child_succ.get(pos, ()):
                    child = info.children[succ_pos]
                    if succ_pos in seen_pos or isinstance(child, Flow):
                        continue
                    seen_pos.add(succ_pos)
                    result.append(info.spans[succ_pos][0])
                    if depth == Depth.FLOW:
                        frontier.append(succ_pos)
        return result

    def _schedule(self) -> list[tuple[int, str, tuple[bool, Any, Any]]]:
        """Submit every ready node; returns completions of inline calls."""
        plan = self.plan
        completed: list[tuple[int, str, tuple[bool, Any, Any]]] = []
        ready = self.ready
        self.ready = []
        if self.suspending or self.revert_failed or self.unresolved:
            self.ready = ready if self.suspending else []
            ready = []
        if len(ready) > 1:
            ready.sort(key=lambda n: -(getattr(plan.atoms[n], "priority", 0) or 0))
        executor = self.executor
        inline = executor.inline
        save = self._save
        atom_notifier = self.atom_notifier
        in_flight = self.in_flight
        custom_progress = self.custom_progress
        for node in ready:
            if self.done[node] or self.rev_mode[node] or node in self.in_flight:
                continue
            if (
                node in plan.deciders
                and not self._ignored(node)
                and not self._evaluate_deciders(node)
            ):
                self._finish_forward(node)
                continue
            atom = plan.atoms[node]
            if atom is None:
                self._finish_forward(node)
                continue
            ad = self.ads[node]
            assert ad is not None
            if ad.intention == _IGNORE or ad.state == _IGNORE:
                self._finish_forward(node)
                continue
            is_retry = plan.is_retry[node]
            try:
                kwargs = self._fetch_args(node, plan.bindings[node]) if plan.bindings[node] else {}
            except exc.NotFound:
                self._set_state(node, states.RUNNING)
                completed.append((node, "execute", (False, Failure(), None)))
                continue
            if is_retry:
                self._set_state(node, states.RUNNING)
                kwargs["history"] = self._history(node)
                from taskflow._engine.executors import call_atom

                outcome = call_atom(atom.execute, atom.pre_execute, atom.post_execute, kwargs)
                completed.append((node, "execute", outcome))
                continue
            # The RUNNING record (with progress 0.0) is written before the call starts.
            ad.meta["progress"] = 0.0
            old = ad.state
            ad.state = _RUNNING
            if save is not None:
                save(ad)
            if atom_notifier:
                self._notify_atom(node, _RUNNING, old)
            if custom_progress[node] or atom.notifier:  # type: ignore[attr-defined]
                atom.update_progress(0.0)  # type: ignore[attr-defined]
            in_flight.add(node)
            if inline:
                # Called right here: the serial engine's whole executor is these lines.
                try:
                    atom.pre_execute()
                    try:
                        result = atom.execute(**kwargs)
                    finally:
                        atom.post_execute()
                except Exception:
                    completed.append((node, "execute", (False, Failure(), None)))
                else:
                    completed.append((node, "execute", (True, result, None)))
            else:
                executor.submit((node, "execute"), atom, "execute", kwargs)
        rev_ready = self.rev_ready
        self.rev_ready = []
        if self.revert_failed:
            rev_ready = []
        for node in rev_ready:
            reverted = self._start_revert_node(node)
            if reverted is not None:
                completed.append((node, "revert", reverted))
        return completed

    # -- completions ---------------------------------------------------------------------------

    def _complete(self, node: int, action: str, outcome: tuple[bool, Any, Any]) -> None:
        ok, value, events = outcome
        if action == "progress":
            self._record_progress(node, value)
            return
        self.in_flight.discard(node)
        atom = self.plan.atoms[node]
        if events and atom is not None and not self.plan.is_retry[node]:
            # Replay what the task emitted in a child process, as if it happened here.
            notifier = cast("Task", atom).notifier
            for event, details in events:
                notifier.notify(event, details)
                if event == EVENT_UPDATE_PROGRESS and "progress" in details:
                    self._record_progress(node, details["progress"])
        if action == "execute":
            self._complete_execute(node, ok, value)
        else:
            self._complete_revert(node, ok, value)

    def _complete_execute(self, node: int, ok: bool, value: Any) -> None:
        atom = self.plan.atoms[node]
        ad = self.ads[node]
        assert atom is not None
        assert ad is not None
        old = ad.state
        if ok:
            is_task = not self.plan.is_retry[node]
            if is_task:
                ad.meta["progress"] = 1.0
            ad.put(_SUCCESS, value)
            if self._save is not None:
                try:
                    self._save(ad)
                except UnstorableValue as err:
                    # The result can't be persisted: the task fails (and is reverted) rather
                    # than the flow going on with a result a resumed run could not see.
                    ok = False
                    value = self._unstorable(atom.name, "result", err)
            if not ok:
                ad.state = old
                self._complete_execute(node, False, value)
                return
            if self.atom_notifier:
                self._notify_atom(node, _SUCCESS, old, value)
            if is_task and (self.custom_progress[node] or atom.notifier):  # type: ignore[attr-defined]
                atom.update_progress(1.0)  # type: ignore[attr-defined]
            if self.rev_mode[node]:
                self._revert_when_ready(node)
            else:
                self._finish_forward(node)
            return
        ad.put(_FAILURE, value)
        self.storage._save_atom(ad)
        self.failures[atom.name] = value
        if self.atom_notifier:
            self._notify_atom(node, _FAILURE, old, value)
        if self.rev_mode[node]:
            self._revert_when_ready(node)
        elif self.never_resolve:
            self.unresolved = True
        else:
            self._resolve(node, value)

    @staticmethod
    def _unstorable(name: str, what: str, err: UnstorableValue) -> Failure:
        try:
            raise UnstorableValue(f"The {what} of atom '{name}' can not be stored: {err}") from err
        except UnstorableValue:
            return Failure()

    def _revert_when_ready(self, node: int) -> None:
        if self.rev_remaining[node] == 0 and not self.rev_done[node]:
            self.rev_ready.append(node)

    # -- failure resolution ------------------------------------------------------------------

    def _decide(self, retry_node: int, failed: int, failure: Failure) -> Decision:
        retry = self.plan.atoms[retry_node]
        assert isinstance(retry, Retry)
        failed_atom = self.plan.atoms[failed]
        assert failed_atom is not None
        if retry_node != failed:
            self.storage.save_retry_failure(retry.name, failed_atom.name, failure)
        kwargs = self._fetch_args(retry_node, self.plan.bindings[retry_node])
        kwargs["history"] = self._history(retry_node)
        decision = retry.on_failure(**kwargs)
        try:
            return Decision(decision)
        except ValueError:
            raise ValueError(f"Unknown retry decision {decision!r} from '{retry.name}'") from None

    def _resolve(self, node: int, failure: Failure) -> None:
        """Pick the scope a failure reverts (and whether a retry follows)."""
        plan = self.plan
        owner = plan.owner[node]
        if isinstance(plan.atoms[node], Retry):
            # A retry's own execute failure is resolved by the retry around it.
            owner = plan.owner[node]
        if owner == -1:
            self._revert_scope(range(len(plan.atoms)))
            return
        decision = self._decide(owner, node, failure)
        if decision == Decision.RETRY:
            self._revert_scope(plan.scope(owner), retry=owner)
            return
        if decision == Decision.REVERT_ALL:
            self._revert_scope(range(len(plan.atoms)))
            return
        # REVERT: the enclosing retry (if any) is consulted too.
        parent = plan.owner[owner]
        if parent == -1:
            if self.defer_reverts:
                self._revert_scope(range(len(plan.atoms)))
            else:
                self._revert_scope(range(owner, plan.scope(owner).stop))
            return
        # The parent sees the inner retry as the atom that failed.
        parent_decision = self._decide(parent, owner, failure)
        if parent_decision == Decision.RETRY:
            self._revert_scope(plan.scope(parent), retry=parent)
        elif parent_decision == Decision.REVERT_ALL:
            self._revert_scope(range(len(plan.atoms)))
        elif self.defer_reverts:
            self._resolve_from(parent, failure)
        else:
            self._revert_scope(range(owner, plan.scope(owner).stop))

    def _resolve_from(self, retry_node: int, failure: Failure) -> None:
        plan = self.plan
        grand = plan.owner[retry_node]
        if grand == -1:
            self._revert_scope(range(len(plan.atoms)))
            return
        decision = self._decide(grand, retry_node, failure)
        if decision == Decision.RETRY:
            self._revert_scope(plan.scope(grand), retry=grand)
        elif decision == Decision.REVERT_ALL:
            self._revert_scope(range(len(plan.atoms)))
        else:
            self._resolve_from(grand, failure)

    def _revert_scope(self, scope: range, retry: int | None = None) -> None:
        if retry is not None:
            ad = self.ads[retry]
            assert ad is not None
            if not self.rev_mode[retry]:
                ad.intention = _RETRY
                self.storage._save_atom(ad)
                self.rev_mode[retry] = True
                self.rev_done[retry] = False
        self._mark_revert(scope, persist=True)
        self._recompute_revert()

    def _mark_revert(self, scope: range, persist: bool) -> None:
        ads = self.ads
        rev_mode = self.rev_mode
        for node in scope:
            ad = ads[node]
            if ad is not None and ad.intention != _REVERT:
                ad.intention = _REVERT
                if persist:
                    self.storage._save_atom(ad)
            if rev_mode[node]:
                continue
            rev_mode[node] = True
            self.rev_done[node] = ad is not None and ad.state == states.REVERTED

    def _needs_revert(self, node: int) -> bool:
        """Whether reaching ``node`` in a revert walk means calling code (or retrying)."""
        ad = self.ads[node]
        if ad is None:
            return False
        if ad.intention == _RETRY:
            return True
        return ad.state not in (states.PENDING, _IGNORE, states.REVERTED)

    def _recompute_revert(self) -> None:
        plan = self.plan
        rev_mode = self.rev_mode
        rev_done = self.rev_done
        self.rev_ready = []
        passthrough = []
        for node in range(len(plan.atoms)):
            if not rev_mode[node] or rev_done[node]:
                continue
            count = 0
            for succ in plan.succ[node]:
                if rev_mode[succ] and not rev_done[succ]:
                    count += 1
            self.rev_remaining[node] = count
            if count == 0 and node not in self.in_flight:
                if self._needs_revert(node):
                    self.rev_ready.append(node)
                else:
                    passthrough.append(node)
        for node in passthrough:
            self._finish_revert(node)

    def _start_revert_node(self, node: int) -> tuple[bool, Any, Any] | None:
        """Revert one node now, or pass it through; returns an inline outcome if any."""
        if self.rev_done[node] or node in self.in_flight:
            return None
        plan = self.plan
        atom = plan.atoms[node]
        ad = self.ads[node]
        if atom is None or ad is None:
            self._finish_revert(node)
            return None
        if ad.intention == _RETRY:
            self._retry_again(node)
            return None
        if ad.state in (states.PENDING, _IGNORE, states.REVERTED):
            self._finish_revert(node)
            return None
        if self.revert_failed:
            return None
        result = ad.failure if ad.failure is not None else ad.results
        try:
            kwargs = self._fetch_args(node, plan.revert_bindings[node])
        except exc.NotFound:
            kwargs = {}
        kwargs["flow_failures"] = dict(self.failures)
        is_task = not self.plan.is_retry[node]
        if is_task:
            ad.meta["progress"] = 0.0  # a revert reports progress like an execute does
        self._set_state(node, states.REVERTING)
        if is_task and (self.custom_progress[node] or atom.notifier):  # type: ignore[attr-defined]
            atom.update_progress(0.0)  # type: ignore[attr-defined]
        if isinstance(atom, Retry):
            kwargs["history"] = self._history(node)
            from taskflow._engine.executors import call_atom

            return call_atom(atom.revert, atom.pre_revert, atom.post_revert, kwargs)
        kwargs["result"] = result
        self.in_flight.add(node)
        if self.executor.inline:
            return self.executor.submit(node, atom, "revert", kwargs)  # type: ignore[no-any-return]
        self.executor.submit((node, "revert"), atom, "revert", kwargs)
        return None

    def _complete_revert(self, node: int, ok: bool, value: Any) -> None:
        atom = self.plan.atoms[node]
        ad = self.ads[node]
        assert atom is not None
        assert ad is not None
        old = ad.state
        is_task = not self.plan.is_retry[node]
        if ok:
            ad.put(states.REVERTED, value)
            if is_task:
                ad.meta["progress"] = 1.0
            else:
                ad.results = []
            try:
                self.storage._save_atom(ad)
            except UnstorableValue as err:
                ok = False
                value = self._unstorable(atom.name, "revert result", err)
        if ok:
            if self.atom_notifier:
                self._notify_atom(node, states.REVERTED, old, value)
            if is_task and (self.custom_progress[node] or atom.notifier):  # type: ignore[attr-defined]
                atom.update_progress(1.0)  # type: ignore[attr-defined]
            self._finish_revert(node)
        else:
            ad.put(states.REVERT_FAILURE, value)
            self.storage._save_atom(ad)
            if self.atom_notifier:
                self._notify_atom(node, states.REVERT_FAILURE, old, value)
            self.revert_failed = True

    def _finish_revert(self, node: int) -> None:
        plan = self.plan
        stack = [node]
        while stack:
            current = stack.pop()
            self.rev_done[current] = True
            for pred in plan.pred[current]:
                if not self.rev_mode[pred] or self.rev_done[pred]:
                    continue
                self.rev_remaining[pred] -= 1
                if self.rev_remaining[pred] == 0 and pred not in self.in_flight:
                    ad = self.ads[pred]
                    if ad is not None and ad.intention == _RETRY:
                        self._retry_again(pred)
                    elif self._needs_revert(pred):
                        self.rev_ready.append(pred)
                    else:
                        stack.append(pred)

    def _retry_again(self, retry_node: int) -> None:
        """Its scope is reverted: reset the scope and execute the retry again."""
        plan = self.plan
        scope = plan.scope(retry_node)
        ad = self.ads[retry_node]
        assert ad is not None
        retry = plan.atoms[retry_node]
        assert isinstance(retry, Retry)
        self._set_state(retry_node, states.RETRYING)
        ad.intention = _EXECUTE
        for node in scope:
            self.rev_mode[node] = False
            self.rev_done[node] = False
            self.done[node] = False
            atom_ad = self.ads[node]
            if atom_ad is not None:
                self.failures.pop(atom_ad.name, None)
                old = atom_ad.state
                atom_ad.reset(states.PENDING)
                atom_ad.intention = _EXECUTE
                self.storage._save_atom(atom_ad)
                if old != states.PENDING and self.atom_notifier:
                    self._notify_atom(node, states.PENDING, old)
        self.rev_mode[retry_node] = False
        self.rev_done[retry_node] = False
        self.done[retry_node] = False
        for node in (retry_node, *scope):
            self.remaining[node] = sum(1 for p in plan.pred[node] if not self.done[p])
        attempts = len(ad.results or [])
        delay = retry.delay_for(attempts) if attempts else 0.0
        if delay > 0:
            self.delayed.append((time.monotonic() + delay, retry_node))
        elif self.remaining[retry_node] == 0:
            self.ready.append(retry_node)

    # -- the loop ------------------------------------------------------------------------------

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        """Yield the engine machine's states while running the plan (see the module docs)."""
        executor = self.executor
        completions: queue.SimpleQueue[tuple[Any, tuple[bool, Any, Any]]] = queue.SimpleQueue()
        plan = self.plan
        tasks = cast(
            "list[Task]",
            [a for n, a in enumerate(plan.atoms) if a is not None and not plan.is_retry[n]],
        )
        sink = self._progress_sink(completions)
        for task in tasks:
            task._progress_sink = sink
        executor.start(completions)
        seconds = self.seconds
        clock = time.monotonic
        try:
            started = clock()
            suspend = yield states.RESUMING
            if suspend:
                self.request_suspend()
            seconds["resuming"] += clock() - started
            while True:
                suspend = yield states.SCHEDULING
                if suspend:
                    self.request_suspend()
                t0 = clock()
                inline = self._schedule()
                t1 = clock()
                suspend = yield states.WAITING
                if suspend:
                    self.request_suspend()
                t2 = clock()
                if not inline:
                    inline = self._wait(completions, timeout)
                t3 = clock()
                suspend = yield states.ANALYZING
                if suspend:
                    self.request_suspend()
                t4 = clock()
                for node, action, outcome in inline:
                    self._complete(node, action, outcome)
                while not completions.empty():
                    (node, action), outcome = completions.get()
                    self._complete(node, action, outcome)
                t5 = clock()
                seconds["scheduling"] += t1 - t0
                seconds["waiting"] += t3 - t2
                seconds["analyzing"] += t5 - t4
                if self._has_work():
                    continue
                if self.in_flight or self.delayed:
                    # Nothing to schedule yet: go back to waiting.
                    while not self._has_work() and (self.in_flight or self.delayed):
                        suspend = yield states.WAITING
                        if suspend:
                            self.request_suspend()
                        t2 = clock()
                        got = self._wait(completions, timeout)
                        t3 = clock()
                        suspend = yield states.ANALYZING
                        if suspend:
                            self.request_suspend()
                        t4 = clock()
                        for node, action, outcome in got:
                            self._complete(node, action, outcome)
                        seconds["waiting"] += t3 - t2
                        seconds["analyzing"] += clock() - t4
                    if self._has_work():
                        continue
                break
        finally:
            executor.stop()
            for task in tasks:
                task._progress_sink = None

    def request_suspend(self) -> None:
        """Stop scheduling; what is in flight finishes, then the loop ends (SUSPENDED)."""
        if not self.suspending:
            self.suspending = True
            self.change_flow_state(states.SUSPENDING)

    def _has_work(self) -> bool:
        if self.revert_failed or self.unresolved or self.suspending:
            return False
        return bool(self.ready or self.rev_ready)

    def _wait(
        self,
        completions: queue.SimpleQueue[tuple[Any, tuple[bool, Any, Any]]],
        timeout: float | None,
    ) -> list[tuple[int, str, tuple[bool, Any, Any]]]:
        got: list[tuple[int, str, tuple[bool, Any, Any]]] = []
        if self.delayed and not self.in_flight:
            due, node = min(self.delayed)
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        if self.delayed:
            now = time.monotonic()
            for item in [d for d in self.delayed if d[0] <= now]:
                self.delayed.remove(item)
                if self.remaining[item[1]] == 0:
                    self.ready.append(item[1])
        if not self.in_flight:
            return got
        wait_slice = timeout if timeout is not None else 60.0
        if self.delayed:
            wait_slice = min(wait_slice, max(0.0, min(self.delayed)[0] - time.monotonic()))
        try:
            (node, action), outcome = completions.get(timeout=wait_slice)
        except queue.Empty:
            return got
        got.append((node, action, outcome))
        while not completions.empty():
            (node, action), outcome = completions.get()
            got.append((node, action, outcome))
        return got

    def _progress_sink(
        self, completions: queue.SimpleQueue[tuple[Any, tuple[bool, Any, Any]]]
    ) -> Any:
        """Where tasks report progress: stored at once from this thread, else queued to it."""
        owner = threading.get_ident()
        by_name = self.plan.by_name

        def sink(task: Task, progress: float) -> None:
            node = by_name.get(task.name)
            if node is None:
                return
            if threading.get_ident() == owner:
                self._record_progress(node, progress)
            else:
                completions.put(((node, "progress"), (True, progress, None)))

        return sink

    def _record_progress(self, node: int, progress: float) -> None:
        ad = self.ads[node]
        assert ad is not None
        ad.meta["progress"] = progress
        self.storage._save_atom(ad)

    # -- outcome -------------------------------------------------------------------------------

    def final_state(self) -> str:
        """The flow's state once the loop has nothing left to do."""
        if self.revert_failed or self.unresolved:
            return states.FAILURE
        reverting = any(self.rev_mode)
        if not reverting and all(ad is None or ad.state in _FINISHED for ad in self.ads):
            return states.SUCCESS
        if reverting and all(d or not m for d, m in zip(self.rev_done, self.rev_mode, strict=True)):
            return states.REVERTED
        return states.SUSPENDED
