"""The engine loop: run a compiled plan forward, revert and retry scopes, resume from storage.

Theory of operation
-------------------
One thread (the one iterating :meth:`Runner.run_iter`) owns every counter and every atom
detail; executors only call atom code and report completions, which this thread takes from a
queue (see :mod:`taskflow._engine.executors`). The loop's own states and their order are the
table of :mod:`taskflow._engine.machine`.

Forward: each node keeps ``remaining``, the number of its predecessors not yet finished. A node
whose counter reaches zero is *ready*: deciders on its incoming links are evaluated first (a
"no" marks the nodes chosen by the decider's depth IGNORE), joins pass through at once, and atoms
are submitted. Finishing (SUCCESS or IGNORE) decrements each successor's counter, so every edge
is touched once per run.

Revert: a failure is resolved by the nearest retry controller into a *scope*: the retry's
subgraph (its subflow and every node after it, which may have used the subflow's results), that
and the retry itself, or everything. Every node of the scope enters revert mode with
``rev_remaining`` = its successors in revert mode not yet reverted; nodes reaching zero revert
(atoms that ran) or pass through (joins, atoms that never ran). When the walk reaches a retry
whose intention is RETRY, the subgraph is reset and the retry executes again.

Durability: each transition is written (one atom record) before the loop acts on it: RUNNING
before a call is submitted, the result with SUCCESS before successors are released, intentions
before a revert starts. :meth:`Runner.prepare` rebuilds every counter from those records.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from typing import TYPE_CHECKING, Any, Protocol

from taskflow import exceptions as exc
from taskflow import states
from taskflow._engine import machine
from taskflow._engine.executors import EXECUTE, PROGRESS, REVERT, SerialExecutor
from taskflow._serialization import UnstorableValue
from taskflow.deciders import Depth
from taskflow.flow import Flow
from taskflow.retry import Decision, History, Retry
from taskflow.storage import META_PROGRESS, META_PROGRESS_DETAILS
from taskflow.task import EVENT_UPDATE_PROGRESS
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence

    from taskflow._engine.compiler import Plan
    from taskflow._engine.executors import AtomExecutor, Completion
    from taskflow.persistence.models import AtomDetail
    from taskflow.storage import Binding
    from taskflow.types.notifier import Notifier

__all__ = ["RunStore", "Runner"]

_SUCCESS = states.SUCCESS
_FAILURE = states.FAILURE
_IGNORE = states.IGNORE
_RUNNING = states.RUNNING
_EXECUTE = states.EXECUTE
_REVERT = states.REVERT
_RETRY = states.RETRY
_RETRYING = states.RETRYING
_FINISHED = frozenset((states.SUCCESS, states.IGNORE))
_NOTHING_TO_REVERT = frozenset((states.PENDING, states.IGNORE, states.REVERTED))
_RESULT_STATES = frozenset((states.SUCCESS, states.FAILURE, states.REVERTED, states.REVERT_FAILURE))
_DEPTHS = (Depth.ATOM, Depth.NEIGHBORS, Depth.FLOW, Depth.ALL)  # narrowest first
#: What request_suspend() puts on the completion queue to end a wait at once.
_WAKE_UP = "wake-up"
_WAKE: Completion = (-1, _WAKE_UP, True, None, None)
LOG = logging.getLogger(__name__)


class RunStore(Protocol):
    """What the runner needs of storage (``taskflow.storage.Storage`` provides it)."""

    def atom_detail(self, atom_name: str) -> AtomDetail: ...
    def save_atom_detail(self, ad: AtomDetail) -> None: ...
    def fetch_args(self, atom_name: str, bindings: Iterable[Binding]) -> dict[str, Any]: ...
    def save_retry_failure(
        self, retry_name: str, failed_atom_name: str, failure: Failure
    ) -> None: ...
    def get_execute_failures(self) -> dict[str, Failure]: ...
    @property
    def persists(self) -> bool: ...


class Runner:
    """Runs one compiled plan against one storage (see the module docstring).

    Args:
        plan: the compiled flow.
        store: the flow's records (one atom detail per atom, already created).
        executor: where task calls run; retries always run inline, through the same contract.
        atom_notifier: notified of every atom transition.
        change_flow_state: moves the flow to a state (persisted, then notified); False when
            the move is ignored.
        defer_reverts, never_resolve: the engine options of the same names.
    """

    def __init__(
        self,
        plan: Plan,
        store: RunStore,
        executor: AtomExecutor,
        atom_notifier: Notifier,
        change_flow_state: Callable[[str], bool],
        defer_reverts: bool = False,
        never_resolve: bool = False,
    ) -> None:
        self.plan = plan
        self.store = store
        self.executor = executor
        self.retry_executor = SerialExecutor()
        self.atom_notifier = atom_notifier
        # Live views, true while anything listens (tested on every transition).
        self.atom_listening = atom_notifier.registrations
        self.task_listening: list[Mapping[str, Any] | None] = [
            None if atom is None or retry else atom.notifier.registrations  # type: ignore[attr-defined]
            for atom, retry in zip(plan.atoms, plan.is_retry, strict=True)
        ]
        self.change_flow_state = change_flow_state
        self.defer_reverts = defer_reverts
        self.never_resolve = never_resolve
        size = len(plan.atoms)
        self.ads: list[AtomDetail | None] = [
            store.atom_detail(atom.name) if atom is not None else None for atom in plan.atoms
        ]
        # Invariant: done[n] is True iff n finished forward (atoms SUCCESS/IGNORE with an
        # EXECUTE/IGNORE intention, joins once all their predecessors are done).
        self.done = [False] * size
        # Invariant: remaining[n] == number of predecessors p with done[p] False.
        self.remaining = [0] * size
        # Invariant: rev_mode[n] is True iff n belongs to a scope being reverted (its atom's
        # intention is REVERT, or RETRY for the retry that governs the scope).
        self.rev_mode = [False] * size
        # Invariant: rev_done[n] is True iff rev_mode[n] and n is reverted or passed through
        # (an atom REVERTED or that never ran, a join whose successors in the scope are done).
        self.rev_done = [False] * size
        # Invariant: for rev_mode[n] and not rev_done[n], rev_remaining[n] == number of
        # successors s with rev_mode[s] and not rev_done[s]; n may revert when it reaches 0.
        self.rev_remaining = [0] * size
        # Invariant: node n is in in_flight iff a call of n was submitted and its completion
        # has not been processed yet.
        self.in_flight: set[int] = set()
        self.ready: list[int] = []  # forward: remaining == 0, not yet started
        self.rev_ready: list[int] = []  # revert: rev_remaining == 0, not yet started
        self.delayed: list[tuple[float, int]] = []  # (monotonic due time, retry node)
        self.suspending = False
        # True once a revert failed: nothing more starts, the flow ends FAILURE.
        self.revert_failed = False
        # True when a failure is left unresolved (never_resolve): the flow ends FAILURE.
        self.unresolved = False
        # Execute failures by atom name (what reverts receive as ``flow_failures``).
        self.failures: dict[str, Failure] = {}
        self.save = store.save_atom_detail
        self.persists = store.persists
        self.completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self.timeout: float | None = None  # of each wait for a completion (run_iter's)
        # Completions to handle before the queue's: made inline, or taken while WAITING.
        self.arrived: list[Completion] = []
        #: Time spent in each of the machine's working states (engine statistics).
        self.seconds = dict.fromkeys(("analyzing", "resuming", "scheduling", "waiting"), 0.0)
        #: Failures that arrived once nothing could act on them any more (statistics).
        self.discarded_failures = 0
        # True once the run was cut short: outcomes are recorded, nothing more is decided.
        self.draining = False

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

    def _set_state(self, node: int, state: str) -> None:
        ad = self.ads[node]
        assert ad is not None
        old = ad.state
        if old == state:
            return
        ad.state = state
        self.save(ad)
        if self.atom_listening:
            self._notify_atom(node, state, old)

    # -- preparation (also the resume path) --------------------------------------------------

    def prepare(self) -> None:
        """Rebuild every counter from the persisted atom states and intentions."""
        unresolved, scopes = self._restore_counters()
        self._restore_failures(unresolved)
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
                    self._resolve(node, self.failures[self.ads[node].name])  # type: ignore[union-attr]
        done, rev_mode, remaining = self.done, self.rev_mode, self.remaining
        self.ready = [
            n
            for n in range(len(self.plan.atoms))
            if remaining[n] == 0 and not done[n] and not rev_mode[n]
        ]

    def _restore_failures(self, unresolved: list[int]) -> None:
        """Add the failures of ``unresolved`` atoms (others came with their atoms' flags), and
        those of atoms the flow no longer has (a new flow object run on an old flow detail):
        they still count, as upstream has it; reverts see them and the run raises them."""
        for node in unresolved:
            ad = self.ads[node]
            assert ad is not None
            if ad.failure is not None:
                self.failures[ad.name] = ad.failure
        by_name = self.plan.by_name
        for name, failure in self.store.get_execute_failures().items():
            if name not in by_name:
                self.failures.setdefault(name, failure)

    def _restore_counters(self) -> tuple[list[int], list[Sequence[int]]]:
        """One pass in node order (a topological order): done flags and counters.

        Returns the atoms that failed with nobody deciding about it yet, and the scopes that
        were caught mid-revert (or mid-retry) and continue reverting.
        """
        plan = self.plan
        ads = self.ads
        done = self.done
        remaining = self.remaining
        preds_of = plan.pred
        scopes: list[Sequence[int]] = []
        covered: set[int] = set()
        reverting: list[int] = []
        unresolved: list[int] = []
        for node in range(len(plan.atoms)):
            count = 0
            for p in preds_of[node]:
                if not done[p]:
                    count += 1
            remaining[node] = count
            ad = ads[node]
            if ad is None:
                done[node] = count == 0
                continue
            if ad.state is None:
                ad.state = states.PENDING
            kind = self._restore_atom(node, ad)
            if kind is _FAILURE:
                unresolved.append(node)
            elif kind is _REVERT:
                reverting.append(node)
            elif isinstance(kind, tuple):
                scopes.append(kind)
                covered.update(kind)
        if any(node not in covered for node in reverting):
            scopes = [range(len(plan.atoms))]
        return unresolved, scopes

    def _restore_atom(self, node: int, ad: AtomDetail) -> str | tuple[int, ...] | None:
        """Restore one atom's flags: FAILURE (unresolved), REVERT, nodes to revert, or None.

        An atom left RUNNING with intention EXECUTE was interrupted mid-call: it is not done,
        so it runs again once its predecessors are.
        """
        state, intention = ad.state, ad.intention
        if intention == _EXECUTE and state != _RETRYING:
            if state in _FINISHED:
                self.done[node] = True
            return _FAILURE if state == _FAILURE else None
        kind: str | tuple[int, ...] | None = None
        if intention == _IGNORE or state == _IGNORE:
            self.done[node] = True
        elif self.plan.is_retry[node] and (intention in (_RETRY, _REVERT) or state == _RETRYING):
            # A subgraph caught mid-revert (or retry) continues from where it was. A retry
            # caught RETRYING (its subgraph reverted, maybe partly reset) retries, whatever
            # its intention says, as upstream resumes it.
            subgraph = self.plan.retry_subgraph(node)
            if intention == _REVERT and state != _RETRYING:
                kind = subgraph
            else:
                kind = subgraph[1:]
                ad.intention = _RETRY
                # It waits, in revert mode, for its subgraph to be reverted, then retries (as
                # _revert_scope arranges on the live path).
                self.rev_mode[node] = True
                self.rev_done[node] = False
        elif intention == _REVERT:
            kind = _REVERT
        if ad.failure is not None:
            self.failures[ad.name] = ad.failure
        return kind

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
        widest = max(vetoes, key=lambda d: _DEPTHS.index(d.depth))
        for ignored in self._ignored_by(node, widest.depth):
            ad = self.ads[ignored]
            if ad is not None and ad.state == states.PENDING:
                if not self.plan.is_retry[ignored]:
                    ad.meta[META_PROGRESS] = 0.0  # as upstream records for skipped tasks
                self._set_state(ignored, _IGNORE)
                ad.intention = _IGNORE
                self.save(ad)
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
            result.extend(self._siblings_after(entry, depth))
        return result

    def _siblings_after(self, entry: int, depth: Depth) -> list[int]:
        """Atom siblings linked after ``entry`` in its flow (all of them for FLOW depth)."""
        plan = self.plan
        flow_index, position = plan.node_pos[entry]
        info = plan.flows[flow_index]
        found: list[int] = []
        frontier = [position]
        seen_pos = {position}
        while frontier:
            pos = frontier.pop()
            for succ_pos in info.child_succ.get(pos, ()):
                if succ_pos in seen_pos or isinstance(info.children[succ_pos], Flow):
                    continue
                seen_pos.add(succ_pos)
                found.append(info.spans[succ_pos][0])
                if depth == Depth.FLOW:
                    frontier.append(succ_pos)
        return found

    def _schedule(self) -> str:
        """SCHEDULING: start every ready node (forward first, then reverts)."""
        ready = self.ready
        self.ready = []
        if self.suspending:
            self.ready = ready  # kept for a later run; nothing new starts
            return machine.WAIT
        if self.revert_failed or self.unresolved:
            return machine.WAIT
        if len(ready) > 1:
            atoms = self.plan.atoms
            ready.sort(key=lambda n: -(getattr(atoms[n], "priority", 0) or 0))
        start = self._start
        for node in ready:
            start(node)
        rev_ready = self.rev_ready
        self.rev_ready = []
        for node in rev_ready:
            self._start_revert_node(node)
        return machine.WAIT

    def _start(self, node: int) -> None:
        """Run ``node`` forward: pass a join or an ignored atom through, or submit a call."""
        if self.done[node] or self.rev_mode[node] or node in self.in_flight:
            return
        plan = self.plan
        if node in plan.deciders and not self._ignored(node) and not self._evaluate_deciders(node):
            self._finish_forward(node)
            return
        atom = plan.atoms[node]
        ad = self.ads[node]
        if atom is None or ad is None or ad.intention == _IGNORE or ad.state == _IGNORE:
            self._finish_forward(node)
            return
        bindings = plan.bindings[node]
        try:
            kwargs = self.store.fetch_args(atom.name, bindings) if bindings else {}
        except exc.NotFound:
            self._set_state(node, _RUNNING)
            self.arrived.append((node, EXECUTE, False, Failure(), None))
            self.in_flight.add(node)
            return
        if plan.is_retry[node]:
            self._set_state(node, _RUNNING)
            kwargs["history"] = self._history(node)
            self.in_flight.add(node)
            self.retry_executor.submit((node, atom, EXECUTE, kwargs))
            return
        # The RUNNING record (with progress 0.0) is written before the call starts.
        ad.meta[META_PROGRESS] = 0.0
        old = ad.state
        ad.state = _RUNNING
        if self.persists:
            self.save(ad)
        if self.atom_listening:
            self._notify_atom(node, _RUNNING, old)
        if plan.reports_progress[node] or self.task_listening[node]:
            atom.update_progress(0.0)  # type: ignore[attr-defined]
        self.in_flight.add(node)
        self.executor.submit((node, atom, EXECUTE, kwargs))

    # -- completions ---------------------------------------------------------------------------

    def _complete(self, completion: Completion) -> None:
        node, method, ok, value, events = completion
        if method == PROGRESS:  # equality: completions from child processes are copies
            if node in self.in_flight:  # else its call is over: a late report changes nothing
                self._record_progress(node, *value)
            return
        if method is _WAKE_UP:
            return
        self.in_flight.discard(node)
        if events:
            # Replay what the task emitted in a child process, as if it happened here.
            notifier = self.plan.atoms[node].notifier  # type: ignore[union-attr]
            for event, details in events:
                notifier.notify(event, details)
                if event == EVENT_UPDATE_PROGRESS and "progress" in details:
                    rest = {key: value for key, value in details.items() if key != "progress"}
                    self._record_progress(node, details["progress"], rest)
        if not ok and (self.revert_failed or self.unresolved):
            self.discarded_failures += 1
        if method == EXECUTE:
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
                ad.meta[META_PROGRESS] = 1.0
                kept = None
            else:
                kept = list(ad.results or ())  # a retry's put() appends to its history
            ad.put(_SUCCESS, value)
            if self.persists:
                try:
                    self.save(ad)
                except UnstorableValue as err:
                    # The result can't be persisted: the atom fails (and is reverted) rather
                    # than the flow going on with a result a resumed run could not see. The
                    # record must not keep the value either, or its failure can't be saved.
                    ad.state = old
                    if kept is not None:
                        ad.results = kept
                    self._complete_execute(node, False, self._unstorable(atom.name, "result", err))
                    return
            if self.atom_listening:
                self._notify_atom(node, _SUCCESS, old, value)
            if is_task and (self.plan.reports_progress[node] or self.task_listening[node]):
                atom.update_progress(1.0)  # type: ignore[attr-defined]
            if self.rev_mode[node]:
                self._revert_when_ready(node)
            else:
                self._finish_forward(node)
            return
        ad.put(_FAILURE, value)
        self.save(ad)
        self.failures[atom.name] = value
        if self.atom_listening:
            self._notify_atom(node, _FAILURE, old, value)
        if self.rev_mode[node]:
            self._revert_when_ready(node)
        elif self.never_resolve or self.draining:
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
            self.store.save_retry_failure(retry.name, failed_atom.name, failure)
        kwargs = self.store.fetch_args(retry.name, self.plan.bindings[retry_node])
        kwargs["history"] = self._history(retry_node)
        decision = retry.on_failure(**kwargs)
        try:
            return Decision(decision)
        except ValueError:
            raise ValueError(f"Unknown retry decision {decision!r} from '{retry.name}'") from None

    def _resolve(self, node: int, failure: Failure) -> None:
        """Pick the scope a failure reverts (and whether a retry follows).

        The nearest retry around ``node`` decides (a retry's own failure goes to the retry
        around it); REVERT hands the decision on to the next retry out, which sees the inner
        retry as the atom that failed, unless the inner retry's own scope is reverted first.
        """
        plan = self.plan
        owner = plan.owner[node]
        if owner == -1:
            self._revert_scope(range(len(plan.atoms)))
            return
        decision = self._decide(owner, node, failure)
        if decision == Decision.RETRY:
            self._revert_scope(plan.retry_subgraph(owner)[1:], retry=owner)
        elif decision == Decision.REVERT_ALL:
            self._revert_scope(range(len(plan.atoms)))
        elif plan.owner[owner] != -1:
            self._resolve_from(owner, failure, defer=self.defer_reverts)
        elif self.defer_reverts:
            self._revert_scope(range(len(plan.atoms)))
        else:
            self._revert_scope(plan.retry_subgraph(owner))

    def _resolve_from(self, retry_node: int, failure: Failure, defer: bool = True) -> None:
        """Ask the retries around ``retry_node`` (which said REVERT), innermost first."""
        plan = self.plan
        grand = plan.owner[retry_node]
        if grand == -1:
            self._revert_scope(range(len(plan.atoms)))
            return
        decision = self._decide(grand, retry_node, failure)
        if decision == Decision.RETRY:
            self._revert_scope(plan.retry_subgraph(grand)[1:], retry=grand)
        elif decision == Decision.REVERT_ALL:
            self._revert_scope(range(len(plan.atoms)))
        elif defer:
            self._resolve_from(grand, failure)
        else:
            self._revert_scope(plan.retry_subgraph(retry_node))

    def _revert_scope(self, scope: Sequence[int], retry: int | None = None) -> None:
        if retry is not None and not self.rev_mode[retry]:
            ad = self.ads[retry]
            assert ad is not None
            ad.intention = _RETRY
            self.save(ad)
            self.rev_mode[retry] = True
            self.rev_done[retry] = False
        self._mark_revert(scope, persist=True, retrying=retry is not None)
        self._recompute_revert()

    def _mark_revert(self, scope: Iterable[int], persist: bool, retrying: bool = False) -> None:
        """Put ``scope`` in revert mode, with intention REVERT.

        When the scope is about to be retried, atoms that never ran keep their intention: the
        retry's own RETRY intention brings the whole subgraph back on resume, so marking them
        (a write each) only to reset them (another) would cost two writes per atom after the
        retry for nothing.
        """
        ads = self.ads
        rev_mode = self.rev_mode
        for node in scope:
            ad = ads[node]
            if (
                ad is not None
                and ad.intention != _REVERT
                and not (retrying and ad.state == states.PENDING and ad.intention == _EXECUTE)
            ):
                ad.intention = _REVERT
                if persist:
                    self.save(ad)
            if rev_mode[node]:
                continue
            rev_mode[node] = True
            self.rev_done[node] = ad is not None and ad.state == states.REVERTED

    def _needs_revert(self, node: int) -> bool:
        """Whether reaching ``node`` in a revert walk means calling code (or retrying)."""
        ad = self.ads[node]
        if ad is None:
            return False
        return ad.intention == _RETRY or ad.state not in _NOTHING_TO_REVERT

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

    def _start_revert_node(self, node: int) -> None:
        """Revert one node now (a call is submitted), retry it, or pass it through."""
        if self.rev_done[node] or node in self.in_flight:
            return
        atom = self.plan.atoms[node]
        ad = self.ads[node]
        if atom is None or ad is None:
            self._finish_revert(node)
            return
        if ad.intention == _RETRY:
            self._retry_again(node)
            return
        if ad.state in _NOTHING_TO_REVERT:
            self._finish_revert(node)
            return
        if self.revert_failed:
            return
        bindings = self.plan.revert_bindings[node]
        try:
            kwargs = self.store.fetch_args(atom.name, bindings) if bindings else {}
        except exc.NotFound:
            kwargs = {}
        kwargs["flow_failures"] = dict(self.failures)
        is_task = not self.plan.is_retry[node]
        if is_task:
            ad.meta[META_PROGRESS] = 0.0  # a revert reports progress like an execute does
        self._set_state(node, states.REVERTING)
        self.in_flight.add(node)
        if is_task:
            if self.plan.reports_progress[node] or self.task_listening[node]:
                atom.update_progress(0.0)  # type: ignore[attr-defined]
            kwargs["result"] = ad.failure if ad.failure is not None else ad.results
            self.executor.submit((node, atom, REVERT, kwargs))
        else:
            kwargs["history"] = self._history(node)
            self.retry_executor.submit((node, atom, REVERT, kwargs))

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
                ad.meta[META_PROGRESS] = 1.0
            else:
                ad.results = []
            try:
                self.save(ad)
            except UnstorableValue as err:
                ok = False
                value = self._unstorable(atom.name, "revert result", err)
        if ok:
            if self.atom_listening:
                self._notify_atom(node, states.REVERTED, old, value)
            if is_task and (self.plan.reports_progress[node] or self.task_listening[node]):
                atom.update_progress(1.0)  # type: ignore[attr-defined]
            if not self.draining:
                self._finish_revert(node)
        else:
            ad.put(states.REVERT_FAILURE, value)
            self.save(ad)
            if self.atom_listening:
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
        """Its subgraph is reverted: reset the subgraph and execute the retry again."""
        plan = self.plan
        ad = self.ads[retry_node]
        assert ad is not None
        retry = plan.atoms[retry_node]
        assert isinstance(retry, Retry)
        self._set_state(retry_node, _RETRYING)
        ad.intention = _EXECUTE
        subgraph = plan.retry_subgraph(retry_node)
        for node in subgraph[1:]:
            self._reset_for_retry(node)
        for node in subgraph:
            self.rev_mode[node] = False
            self.rev_done[node] = False
            self.done[node] = False
        # Every successor of a node of the subgraph is in it too: only its counters change.
        for node in subgraph:
            self.remaining[node] = sum(1 for p in plan.pred[node] if not self.done[p])
        attempts = len(ad.results or [])
        delay = retry.delay_for(attempts) if attempts else 0.0
        if delay > 0:
            self.delayed.append((time.monotonic() + delay, retry_node))
        elif self.remaining[retry_node] == 0:
            self.ready.append(retry_node)

    def _reset_for_retry(self, node: int) -> None:
        """Put one node of a retried subgraph back to PENDING/EXECUTE (persisted, notified)."""
        ad = self.ads[node]
        if ad is None:
            return
        self.failures.pop(ad.name, None)
        old = ad.state
        if old == states.PENDING and ad.intention == _EXECUTE and ad.failure is None:
            return  # never ran (see _mark_revert): nothing to reset or write
        ad.reset(states.PENDING)
        ad.intention = _EXECUTE
        self.save(ad)
        if old != states.PENDING and self.atom_listening:
            self._notify_atom(node, states.PENDING, old)

    # -- the loop ------------------------------------------------------------------------------

    def run_iter(self, timeout: float | None = None) -> Generator[str, Any, None]:
        """Yield the engine machine's states while running the plan (see the module docs).

        Sending a true value into the generator asks the run to suspend.
        """
        with self._running(timeout) as steps:
            seconds = self.seconds
            clock = time.monotonic
            state = states.RESUMING
            while state != machine.GAME_OVER:
                if (yield state):
                    self.request_suspend()
                work, key, row = steps[state]
                started = clock()
                event = work()
                seconds[key] += clock() - started
                state = row[event] if event in row else machine.next_state(state, event)

    def run(self, timeout: float | None = None) -> None:
        """:meth:`run_iter` to its end, without a generator (what ``engine.run()`` does)."""
        with self._running(timeout) as steps:
            seconds = self.seconds
            clock = time.monotonic
            state = states.RESUMING
            game_over = machine.GAME_OVER
            # "while True": CPython 3.11 specializes a function's bytecode after a few calls
            # or backward jumps, and only an unconditional jump back counts; this function
            # runs once per run, so a conditional loop would stay unspecialized.
            while True:
                work, key, row = steps[state]
                started = clock()
                event = work()
                seconds[key] += clock() - started
                state = row[event] if event in row else machine.next_state(state, event)
                if state == game_over:
                    break

    @contextlib.contextmanager
    def _running(
        self, timeout: float | None
    ) -> Iterator[dict[str, tuple[Callable[[], str], str, dict[str, str]]]]:
        """Start the executors for a run and stop them however it ends; gives the loop's steps
        (per state: the work it does, returning an event; its statistics key; its row of the
        transition table)."""
        executor = self.executor
        self.timeout = timeout
        steps = {
            state: (work, state.lower(), machine.BY_STATE[state])
            for state, work in (
                (states.RESUMING, self._resuming),
                (states.SCHEDULING, self._schedule),
                (states.WAITING, self._waiting),
                (states.ANALYZING, self._analyzing),
            )
        }
        # Completions and progress of inline calls need no queue: they are made in the thread
        # driving this loop (whichever it is), and progress is recorded at once, visible
        # while the call still runs.
        # Started before the task executor and shut down after it: an inline executor's
        # progress context is current from its start to its shutdown (nested, in order).
        self.retry_executor.start(self.arrived.append, self._record_progress)
        started_executor = aborted = False
        try:
            if executor.inline:
                executor.start(self.arrived.append, self._record_progress)
            else:
                executor.start(self.completions.put, self._queued_progress)
            started_executor = True
            yield steps
        except BaseException:
            aborted = True  # an error, an interrupt (Ctrl-C), or the generator closed
            raise
        finally:
            if started_executor:
                # Calls not started yet never will; those under way finish (and are waited
                # for), so that their outcomes can be recorded below.
                for node in self.in_flight:
                    executor.cancel(node)
                executor.shutdown()
            self.retry_executor.shutdown()
            if aborted:
                self._drain()
            executor.detach()
            self.retry_executor.detach()

    def _queued_progress(self, token: int, value: float, details: dict[str, Any]) -> None:
        """Progress reported from a pool's thread: queued for the engine's thread, which
        records it before the call's completion (they travel in order on one queue)."""
        self.completions.put((token, PROGRESS, True, (value, details), None))

    def _resuming(self) -> str:
        self.prepare()
        return machine.SCHEDULE

    def _waiting(self) -> str:
        if self.delayed:
            self._release_due()
        if not self.arrived and self.completions.empty():
            self._wait(self.timeout)
        return machine.ANALYZE

    def _analyzing(self) -> str:
        arrived = self.arrived
        complete = self._complete
        if len(arrived) == 1:
            complete(arrived.pop())
        elif arrived:
            # In arrival order. The list is the one report() appends to: emptied in place.
            batch = arrived[:]
            arrived.clear()
            for index, completion in enumerate(batch):
                try:
                    complete(completion)
                except BaseException:
                    arrived[:0] = batch[index + 1 :]  # still to record (see _drain)
                    raise
        completions = self.completions
        while not completions.empty():
            complete(completions.get())
        if (self.ready or self.rev_ready) and not (
            self.revert_failed or self.unresolved or self.suspending
        ):
            return machine.SCHEDULE
        if self.in_flight or (self.delayed and not self.suspending):
            return machine.WAIT
        return machine.FINISH

    def _drain(self) -> None:
        """The run was cut short: record the outcomes that arrived, deciding nothing more.

        Results and failures are written as usual (so a resumed run does not execute again
        what finished), but no failure is resolved, no successor released and no retry
        started.
        """
        self.draining = True
        pending = list(self.arrived)
        self.arrived.clear()
        while not self.completions.empty():
            pending.append(self.completions.get())
        for completion in pending:
            try:
                self._complete(completion)
            except Exception:
                LOG.warning("Could not record an outcome after the run stopped", exc_info=True)

    def request_suspend(self) -> None:
        """Stop scheduling; what is in flight finishes, then the loop ends (SUSPENDED).

        Safe from any thread: a wait for a delayed retry ends at once.
        """
        if not self.suspending:
            self.suspending = True
            self.change_flow_state(states.SUSPENDING)
            self.completions.put(_WAKE)

    def _release_due(self) -> None:
        """Delayed retries whose time has come become ready."""
        now = time.monotonic()
        for item in [d for d in self.delayed if d[0] <= now]:
            self.delayed.remove(item)
            if self.remaining[item[1]] == 0:
                self.ready.append(item[1])

    def _wait(self, timeout: float | None) -> None:
        """Block until a completion arrives (or a suspend wakes us), a delayed retry is due,
        or ``timeout`` passes."""
        if self.delayed:
            wait_slice = max(0.0, min(self.delayed)[0] - time.monotonic())
            if self.in_flight and timeout is not None:
                wait_slice = min(wait_slice, timeout)
        elif self.in_flight:
            wait_slice = timeout if timeout is not None else 60.0
        else:
            return
        try:
            completion = self.completions.get(timeout=wait_slice)
        except queue.Empty:
            pass
        else:
            # Held for ANALYZING, which handles every completion in arrival order.
            self.arrived.append(completion)
        if self.delayed:
            self._release_due()

    def _record_progress(self, node: int, progress: float, details: dict[str, Any]) -> None:
        """A task's progress event during its call: the progress, and the event's other keys
        as its details (an event without any erases earlier details, as upstream)."""
        ad = self.ads[node]
        assert ad is not None
        meta = ad.meta
        meta[META_PROGRESS] = progress
        meta[META_PROGRESS_DETAILS] = (
            {"at_progress": progress, "details": details} if details else None
        )
        self.save(ad)

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
