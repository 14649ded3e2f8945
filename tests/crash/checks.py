"""Judges a trial: replays its journal against a model of what the backend must hold.

The :class:`Checker` is fed the journal's events in order. It keeps ``persisted``, what the
store holds according to the writes that returned (``saved``) plus, for a killed child, the
parts of its interrupted write that the parent found in the store (``killed``). Because a
child's engine journals each write right around the call, and a task journals its start
only once it runs, every ``call`` event sees exactly what was durable at that moment, and
the design's rules (DESIGN.md §3) become checks on it:

* an atom's execute starts only once its RUNNING state is stored and every predecessor's
  SUCCESS (for the right attempt of the retried subflow) is stored; a revert starts only once
  REVERTING is stored and every successor in the reverted scope is REVERTED (or never ran);
* a stored state moves only along the engine's transitions (a SUCCESS is never overwritten
  by RUNNING, a REVERTED never by REVERTING...): a finished call never runs again;
* a call (atom, execute/revert, attempt) runs again only after a kill of the process that
  ran it before its outcome was stored: re-runs <= kills that explain them;
* at the end (:meth:`Checker.finish`): every call that had to be reverted was, each started
  after the runs that counted of the calls it depends on had ended.

The harness adds the checks that need the store itself (``harness.py``): after every child
the store equals ``persisted``, results hold the expected values, the final state is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskflow import states
from tests.crash import flows

__all__ = ["Checker", "Run"]

_EXECUTE_DONE = frozenset((states.SUCCESS, states.FAILURE))
_REVERT_DONE = frozenset((states.REVERTED, states.REVERT_FAILURE))
# Which stored state may precede each new one (when the state changes). PENDING comes from a
# retry resetting its subflow (or from creation) and is checked separately.
_ALLOWED_BEFORE = {
    states.RUNNING: frozenset((states.PENDING, states.RETRYING)),
    states.SUCCESS: frozenset((states.RUNNING,)),
    states.FAILURE: frozenset((states.RUNNING,)),
    states.REVERTING: frozenset((states.SUCCESS, states.FAILURE, states.RUNNING)),
    states.REVERTED: frozenset((states.REVERTING,)),
    states.REVERT_FAILURE: frozenset((states.REVERTING,)),
    states.RETRYING: frozenset((states.SUCCESS, states.REVERTING, states.REVERTED)),
}
_NOT_RUN = frozenset((states.PENDING, states.IGNORE))


Key = tuple[str, str, int]  # (atom, "execute"/"revert", attempt)


@dataclass
class Run:
    """One call of an atom's execute or revert, as journaled."""

    key: Key
    pid: int
    start: int  # journal index of its start
    end: int | None = None  # journal index of its end (None: the process died first)
    ok: bool | None = None


class Checker:
    """Replays a journal; collects violations of the durability rules (see module doc).

    Args:
        variant: the flow variant (see :mod:`tests.crash.flows`).
    """

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.preds = {n: flows.PREDS[n] for n in flows.atoms_of(variant)}
        self.succs = flows.succs_of(variant)
        self.persisted: dict[str, list[Any]] = {}
        self.flow_state: str | None = None
        self.violations: list[str] = []
        self.runs: dict[Key, list[Run]] = {}
        self.counted: dict[Key, Run] = {}
        self.explained: dict[Key, int] = {}
        self.killed: set[int] = set()
        self.pids: list[int] = []
        self.index = 0
        self.pending: dict[int, dict[str, Any]] = {}
        self._open: dict[tuple[int, str, str], Run] = {}  # (pid, atom, act) -> latest run

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, event: dict[str, Any]) -> None:
        """Take the next journal event."""
        kind = event["k"]
        handler = getattr(self, "_on_" + kind, None)
        if handler is not None:
            handler(event)
        self.index += 1

    def _fail(self, message: str) -> None:
        self.violations.append(f"[journal #{self.index}] {message}")

    def _on_ready(self, event: dict[str, Any]) -> None:
        self.pids.append(event["pid"])

    def _on_call(self, event: dict[str, Any]) -> None:
        pid, atom, act, att = event["pid"], event["atom"], event["act"], event["att"]
        key = (atom, act, att)
        if event["ph"] == "end":
            run = self._open.get((pid, atom, act))
            if run is None or run.end is not None:
                self._fail(f"{key} ended in pid {pid} without a start")
                return
            run.end, run.ok = self.index, bool(event.get("ok"))
            return
        earlier = self.runs.setdefault(key, [])
        for old in earlier:
            if old.pid == pid:
                self._fail(f"{key} ran twice in pid {pid} (no crash in between)")
            elif old.pid not in self.killed:
                self._fail(f"{key} ran again although pid {old.pid}, which ran it, was not killed")
        if len(earlier) > self.explained.get(key, 0):
            self._fail(
                f"{key} started for the {len(earlier) + 1}th time but only"
                f" {self.explained.get(key, 0)} kill(s) happened before its outcome was stored"
            )
        run = Run(key, pid, self.index)
        earlier.append(run)
        self._open[(pid, atom, act)] = run
        if act == "execute":
            self._check_execute_start(atom, att)
        else:
            self._check_revert_start(atom, att)

    def _state(self, atom: str) -> str | None:
        desc = self.persisted.get(atom)
        return desc[0] if desc else None

    def _check_execute_start(self, atom: str, att: int) -> None:
        desc = self.persisted.get(atom)
        if not desc or desc[0] != states.RUNNING or desc[1] != states.EXECUTE:
            self._fail(f"{atom} (attempt {att}) executes while its stored record is {desc}")
        if atom in flows.SUB and atom != flows.RETRY:
            stored = self.persisted.get(flows.RETRY)
            if not stored or stored[2] != att:
                self._fail(f"{atom} executes attempt {att} but the stored retry is {stored}")
        for pred in self.preds[atom]:
            want = flows.pred_attempt(atom, att, pred)
            pdesc = self.persisted.get(pred)
            # (The retry's attempt is checked above: its stored history length.)
            ok = pdesc is not None and pdesc[0] == states.SUCCESS
            if not ok or (pred != flows.RETRY and pdesc is not None and pdesc[2] != want):
                self._fail(
                    f"{atom} (attempt {att}) executes before the SUCCESS of its predecessor"
                    f" {pred} (attempt {want}) is stored: {pred} is {pdesc}"
                )

    def _revert_scope_succs(self, atom: str) -> tuple[str, ...]:
        retry = self.persisted.get(flows.RETRY)
        if atom in flows.SUB and atom != flows.RETRY and retry and retry[1] == states.RETRY:
            return tuple(s for s in self.succs[atom] if s in flows.SUB)
        return self.succs[atom]

    def _check_revert_start(self, atom: str, att: int) -> None:
        desc = self.persisted.get(atom)
        if not desc or desc[0] != states.REVERTING:
            self._fail(f"{atom} (attempt {att}) reverts while its stored record is {desc}")
        for succ in self._revert_scope_succs(atom):
            sdesc = self.persisted.get(succ)
            if sdesc is None or sdesc[0] not in (_NOT_RUN | _REVERT_DONE):
                self._fail(
                    f"{atom} (attempt {att}) reverts before its successor {succ} is reverted:"
                    f" {succ} is {sdesc}"
                )

    def _on_saving(self, event: dict[str, Any]) -> None:
        pid = event["pid"]
        if pid in self.pending:
            self._fail(f"pid {pid} started write #{event['w']} before the last one returned")
        self.pending[pid] = event
        for name, desc in event["atoms"]:
            self._check_transition(name, self.persisted.get(name), desc)

    def _check_transition(self, name: str, old: list[Any] | None, new: list[Any]) -> None:
        if old is None or old[0] == new[0]:
            return
        if new[0] == states.PENDING:
            if name not in flows.SUB or old[0] not in _REVERT_DONE | {states.PENDING}:
                self._fail(f"{name} reset from {old} to {new} (only a retry resets its subflow)")
            return
        allowed = _ALLOWED_BEFORE.get(new[0])
        if allowed is not None and old[0] not in allowed:
            self._fail(f"{name} stored as {new} over {old}: not a transition the engine makes")

    def _on_saved(self, event: dict[str, Any]) -> None:
        pending = self.pending.pop(event["pid"], None)
        if pending is None or pending["w"] != event["w"]:
            self._fail(f"pid {event['pid']} finished write #{event['w']} it never started")
            return
        self._apply(pending, None, None)

    def _on_killed(self, event: dict[str, Any]) -> None:
        pid = event["pid"]
        self.killed.add(pid)
        pending = self.pending.pop(pid, None)
        if pending is not None:
            self._apply(pending, event.get("applied") or {}, event.get("flow_applied"))
        # Every call of this process whose outcome is not stored may legitimately run again.
        for (run_pid, _, _), run in self._open.items():
            if run_pid != pid:
                continue
            if not self._outcome_stored(run.key):
                self.explained[run.key] = self.explained.get(run.key, 0) + 1

    def _outcome_stored(self, key: Key) -> bool:
        atom, act, att = key
        desc = self.persisted.get(atom)
        if desc is None:
            return False
        done = _EXECUTE_DONE if act == "execute" else _REVERT_DONE
        if desc[0] not in done:
            # A later stage stored means the outcome was stored first (REVERTING after SUCCESS).
            return act == "execute" and desc[0] in (states.REVERTING, *_REVERT_DONE)
        # A reverted retry forgets its history: its state alone says it was reverted.
        return (atom == flows.RETRY and act == "revert") or desc[2] == att

    def _apply(
        self, write: dict[str, Any], applied: dict[str, bool] | None, flow_applied: bool | None
    ) -> None:
        pid = write["pid"]
        for name, desc in write["atoms"]:
            if applied is not None and not applied.get(name, False):
                continue
            old = self.persisted.get(name)
            self.persisted[name] = desc
            if old is None or old[0] != desc[0]:
                self._note_outcome(pid, name, desc)
        if write["flow"] is not None and (applied is None or flow_applied):
            self.flow_state = write["flow"]

    def _note_outcome(self, pid: int, name: str, desc: list[Any]) -> None:
        if desc[0] in _EXECUTE_DONE:
            act = "execute"
        elif desc[0] in _REVERT_DONE:
            act = "revert"
        else:
            return
        run = self._open.get((pid, name, act))
        if run is None:
            if act == "execute":
                self._fail(f"pid {pid} stored {name} as {desc} without executing it")
            return  # a revert of a never-run atom stores REVERTED without a call
        att = run.key[2]
        if not (name == flows.RETRY and act == "revert") and desc[2] != att:
            self._fail(f"pid {pid} stored {name} as {desc} after running attempt {att}")
        if run.end is None:
            self._fail(f"pid {pid} stored {name} as {desc} before its call ended")
        self.counted[(name, act, att)] = run

    # -- the end -----------------------------------------------------------------------------

    def finish(self) -> None:
        """Checks on the whole trial, once the flow reached its final state."""
        for pid, write in self.pending.items():
            self._fail(f"pid {pid} left write #{write['w']} unresolved")
        self._check_order()
        self._check_reverts()

    def _check_order(self) -> None:
        """Every run started after the counted runs of what it depends on had ended."""
        for (atom, act, att), runs in self.runs.items():
            if act == "execute":
                deps = [(p, "execute", flows.pred_attempt(atom, att, p)) for p in self.preds[atom]]
            else:
                succs = self.succs[atom]
                if atom in flows.SUB and att < flows.LAST_ATTEMPT:
                    succs = tuple(s for s in succs if s in flows.SUB)  # the retry's own revert
                deps = [(s, "revert", flows.pred_attempt(atom, att, s)) for s in succs]
            for dep in deps:
                counted = self.counted.get(dep)
                if counted is None:
                    if act == "execute":
                        self.violations.append(f"{atom} ran but {dep} never counted")
                    continue
                for run in runs:
                    if counted.end is None or counted.end > run.start:
                        self.violations.append(
                            f"{(atom, act, att)} started (journal #{run.start}) before the"
                            f" counted run of {dep} ended (journal #{counted.end})"
                        )

    def _must_revert(self, atom: str, att: int) -> bool:
        if atom in flows.SUB and atom != flows.RETRY and att < flows.LAST_ATTEMPT:
            return True  # the retry reverted those attempts
        if self.variant == "good":
            return False
        return atom != flows.RETRY or att == flows.LAST_ATTEMPT

    def _check_reverts(self) -> None:
        """Every call that had to be reverted was; nothing else was."""
        for atom, act, att in list(self.runs):
            if act == "revert":
                if not self._must_revert(atom, att):
                    self.violations.append(f"{atom} (attempt {att}) was reverted needlessly")
                continue
            if self._must_revert(atom, att) and (atom, "revert", att) not in self.counted:
                self.violations.append(
                    f"{atom} executed (attempt {att}) but no revert of it was stored"
                )

    # -- statistics --------------------------------------------------------------------------

    def reruns(self) -> int:
        """How many calls ran more than once (over all keys)."""
        return sum(len(runs) - 1 for runs in self.runs.values())
