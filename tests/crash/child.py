"""What runs in the processes the harness kills: resume one persisted flow to its end.

:func:`main` is the target of a process forked from a server that has already imported
taskflow and the backend drivers (imports take about a second per process; forking takes
milliseconds), so each child is a fresh process that knows nothing but what the backend
holds. It loads the flow detail, rebuilds the flow from the factory recorded in it
(``engines.load_from_detail``) and runs it, reporting everything to the journal:

* each task call (through :data:`tests.crash.flows.probe`);
* each write the engine makes through the backend connection (the connection class's
  writing methods are wrapped in this process only), before (``saving``) and after
  (``saved``) it.

A *kill plan* may make the child SIGKILL itself at a precise point, so those trials replay
exactly from their seed: ``write-before``/``write-after`` the n-th write (of those storing
an atom that has every field of ``match``, if given: ``{"atom": "retry", "intention":
"RETRY"}``), ``result`` just before the n-th write of an outcome (after a call returned,
before what it returned is stored), ``execute``/``revert`` in the middle of the n-th such
call. The parent's timer kills (``timer``) land anywhere else, including inside writes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from taskflow import engines, states
from taskflow.persistence import backends
from tests.crash import flows
from tests.crash.journal import Journal

__all__ = ["main"]

_OUTCOMES = frozenset((states.SUCCESS, states.FAILURE, states.REVERTED, states.REVERT_FAILURE))


class _Probe:
    """Journals calls and writes; kills this process where the plan says."""

    def __init__(self, journal: Journal, plan: dict[str, Any] | None) -> None:
        self.journal = journal
        self.mode = plan["mode"] if plan else None
        self.target = int(plan["n"]) if plan else 0
        self.match: dict[str, Any] = dict(plan.get("match") or {}) if plan else {}
        # Fault injection, to prove the harness notices: this write is acknowledged (and
        # journaled as done) but never made, like a backend that loses a write.
        self.drop = int(plan.get("drop", 0)) if plan else 0
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()  # tasks of the parallel engine call in from threads
        self.writes = 0
        self.local = threading.local()
        # Each atom's state as last written (or loaded): tells outcomes from other writes.
        self.states: dict[str, str | None] = {}

    def _reached(self, what: str) -> bool:
        with self.lock:
            self.counts[what] = count = self.counts.get(what, 0) + 1
        return self.mode == what and count == self.target

    def kill(self, why: str) -> None:
        self.journal.write("selfkill", why=why)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL can not be caught

    # -- flows.Probe ---------------------------------------------------------------------

    def call(self, atom: str, act: str, phase: str, attempt: int, ok: bool | None) -> None:
        fields: dict[str, Any] = {"atom": atom, "act": act, "ph": phase, "att": attempt}
        if ok is not None:
            fields["ok"] = ok
        self.journal.write("call", **fields)

    def pause(self, act: str, seconds: float) -> None:
        if self._reached(act):
            time.sleep(seconds / 2)
            self.kill(f"in {act} #{self.target}")
        time.sleep(seconds)

    # -- writes ----------------------------------------------------------------------------

    def write(self, original: Any, atoms: list[Any], flow_state: str | None) -> Any:
        """Journal a write around ``original()``, killing before or after it if planned."""
        if getattr(self.local, "writing", False):
            return original()  # a connection method calling another: one write, journaled once
        self.local.writing = True
        try:
            return self._write(original, atoms, flow_state)
        finally:
            self.local.writing = False

    def _write(self, original: Any, atoms: list[Any], flow_state: str | None) -> Any:
        self.writes += 1
        number = self.writes
        described = [[ad.name, flows.describe(ad)] for ad in atoms]
        self.journal.write("saving", w=number, atoms=described, flow=flow_state)
        planned = False
        if self.mode in ("write-before", "write-after") and self._matches(atoms):
            planned = self._reached(self.mode)
        if planned and self.mode == "write-before":
            self.kill(f"before write #{number}")
        outcome = any(
            ad.state in _OUTCOMES and self.states.get(ad.name) != ad.state for ad in atoms
        )
        for ad in atoms:
            self.states[ad.name] = ad.state
        if outcome and self._reached("result"):
            self.kill(f"before storing outcome #{self.target} (write #{number})")
        result = None if number == self.drop else original()
        self.journal.write("saved", w=number)
        if planned and self.mode == "write-after":
            self.kill(f"after write #{number}")
        return result

    def _matches(self, atoms: list[Any]) -> bool:
        """Whether a write stores an atom with every field of the plan's ``match``."""
        if not self.match:
            return True
        for ad in atoms:
            fields = {"atom": ad.name, "state": ad.state, "intention": ad.intention}
            if all(fields.get(key) == value for key, value in self.match.items()):
                return True
        return False


def _wrap_connection(cls: Any, probe: _Probe) -> None:
    """Route the connection class's writing methods through ``probe.write``."""
    update_atom = cls.update_atom_details
    update_flow = cls.update_flow_details
    update_record = getattr(cls, "update_flow_record", None)

    def update_atom_details(self: Any, ad: Any, *args: Any, **kwargs: Any) -> Any:
        return probe.write(lambda: update_atom(self, ad, *args, **kwargs), [ad], None)

    def update_flow_details(self: Any, fd: Any, *args: Any, **kwargs: Any) -> Any:
        return probe.write(lambda: update_flow(self, fd, *args, **kwargs), list(fd), fd.state)

    cls.update_atom_details = update_atom_details
    cls.update_flow_details = update_flow_details
    if update_record is not None:

        def update_flow_record(self: Any, fd: Any, *args: Any, **kwargs: Any) -> Any:
            return probe.write(lambda: update_record(self, fd, *args, **kwargs), [], fd.state)

        cls.update_flow_record = update_flow_record


def main(
    conf: dict[str, Any],
    flow_uuid: str,
    journal_path: str,
    engine: str,
    plan: dict[str, Any] | None,
) -> None:
    """Resume flow ``flow_uuid`` stored in backend ``conf`` until it ends (or we are killed)."""
    journal = Journal(journal_path)
    try:
        probe = _Probe(journal, plan)
        backend = backends.fetch(conf)
        with backend.get_connection() as conn:
            _wrap_connection(type(conn), probe)
            journal.write("ready", plan=plan, engine=engine, t=time.monotonic())
            flow_detail = conn.get_flow_details(flow_uuid)
        probe.states.update((ad.name, ad.state) for ad in flow_detail)
        flows.probe = probe
        options: dict[str, Any] = {"engine": engine}
        if engine == "parallel":
            options.update(executor="threads", max_workers=4)
        eng = engines.load_from_detail(flow_detail, backend=backend, **options)
        raised = None
        try:
            eng.run()
        except Exception as err:  # the failing variants end by raising their task's failure
            raised = f"{type(err).__name__}: {err}"
        journal.write("done", state=eng.storage.get_flow_state(), raised=raised, t=time.monotonic())
        backend.close()
    except BaseException:
        journal.write("error", tb=traceback.format_exc())
        journal.close()
        sys.exit(3)
    journal.close()
