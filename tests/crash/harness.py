"""Drives crash trials: provision a backend, kill children running a flow, check everything.

A trial (:func:`run_trial`) stores a flow detail for one variant of :mod:`tests.crash.flows`
(with its factory, so children rebuild the flow with ``engines.load_from_detail``), then
starts children (:mod:`tests.crash.child`) one after the other against it. Each of the first
``kills`` children is SIGKILLed, by the parent's timer or by itself at a point its plan
names; children are started until the flow reaches its final state. After every child the
parent reads the flow back from the store and compares it with what the journal says the
writes that returned must have left there (:class:`tests.crash.checks.Checker`); for a
killed child it first finds out which part of its interrupted write (if any) reached the
store. At the end: final state, every stored result, and the journal checks.

Everything random comes from the trial's seed, so ``TASKFLOW_CRASH_SEED`` replays a trial:
the same plans, the same kill points for the self-kills (timer kills land where timing
puts them, which varies a little from run to run).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskflow import engines, states
from taskflow.persistence import backends, models
from tests.crash import checks, child, flows
from tests.crash import journal as journal_mod
from tests.helpers import databases, services

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from taskflow.types.failure import Failure

__all__ = ["KINDS", "BackendKind", "TrialReport", "run_trial"]

# Modules the fork server imports once, so children start in milliseconds, not a second.
_PRELOAD = [
    "taskflow.engines",
    "taskflow.engines.action_engine.engine",
    "taskflow.persistence.backends.impl_dir",
    "taskflow.persistence.backends.impl_sqlalchemy",
    "taskflow.persistence.backends.impl_zookeeper",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.dialects.mysql",
    "psycopg",
    "pymysql",
    "kazoo.client",
    "tests.crash.child",
]
_CHILD_TIMEOUT = 30.0  # a child that runs longer is hung: a bug
_CLEAN_RUNS = 2  # children without a kill plan allowed to finish the flow
_OUTCOMES = frozenset((states.SUCCESS, states.FAILURE, states.REVERTED, states.REVERT_FAILURE))
_FINAL = {"good": states.SUCCESS, "fail": states.REVERTED, "fanfail": states.REVERTED}
# Rough size of a full run of each variant (writes; calls), to aim kills inside the work left.
_TOTALS = {
    "good": {"writes": 59, "result": 21, "execute": 17, "revert": 4},
    "fail": {"writes": 97, "result": 34, "execute": 18, "revert": 16},
    "fanfail": {"writes": 38, "result": 12, "execute": 6, "revert": 6},
}
_MODES = ("timer", "timer", "timer", "write-before", "write-after", "result", "execute", "revert")
# Measured seconds per write of each backend (updated by finished runs): times timer kills.
_SPEED: dict[str, float] = {}

_context: Any = None


def _mp() -> Any:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
    return _context


# -- backends ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendKind:
    """A durable backend the harness runs on.

    Attributes:
        name: test id prefix.
        provision: ``(request, tmp_path, rng)`` -> context manager yielding the ``conf`` of an
            empty store of the trial's own (created, then removed after).
        remote: a server applies the writes, so a write sent just before a kill may land a
            moment after it: the parent waits for the store to stop changing before reading.
        atomic_flow_writes: ``update_flow_details`` is one transaction (all or nothing).
        mark: pytest mark name of the service it needs (None: none).
    """

    name: str
    provision: Callable[
        [Any, Path, random.Random], contextlib.AbstractContextManager[dict[str, Any]]
    ]
    remote: bool
    atomic_flow_writes: bool
    mark: str | None = None


@contextlib.contextmanager
def _dir(request: Any, tmp_path: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A directory of the trial's own."""
    yield {"connection": f"dir://{tmp_path / 'store'}"}


@contextlib.contextmanager
def _sqlite(request: Any, tmp_path: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A database file of the trial's own, in either durability mode (both survive SIGKILL)."""
    services.need_module("sqlalchemy", "sqlite")
    yield {
        "connection": f"sqlite:///{tmp_path / 'flows.db'}",
        "sqlite_synchronous": rng.choice(["normal", "full"]),
    }


@contextlib.contextmanager
def _postgres(request: Any, tmp_path: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A schema of the trial's own (``search_path``), dropped with everything in it after."""
    with databases.isolated_postgres(request.getfixturevalue("postgres_url"), "tfcrash") as url:
        yield {"connection": url}


@contextlib.contextmanager
def _mysql(request: Any, tmp_path: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A database of the trial's own, dropped after."""
    with databases.isolated_mysql(request.getfixturevalue("mysql_url"), "tfcrash") as url:
        yield {"connection": url}


@contextlib.contextmanager
def _zookeeper(request: Any, tmp_path: Path, rng: random.Random) -> Iterator[dict[str, Any]]:
    """A root path of the trial's own on the shared server, deleted recursively after."""
    hosts = request.getfixturevalue("zk_hosts")  # skips without kazoo
    with databases.isolated_zookeeper_root(hosts, "taskflow-crash") as root:
        yield {"connection": "zookeeper", "hosts": hosts, "path": root, "timeout": 10}


KINDS = {
    kind.name: kind
    for kind in (
        BackendKind("dir", _dir, remote=False, atomic_flow_writes=False),
        BackendKind("sqlite", _sqlite, remote=False, atomic_flow_writes=True),
        BackendKind("postgresql", _postgres, remote=True, atomic_flow_writes=True, mark="postgres"),
        BackendKind("mysql", _mysql, remote=True, atomic_flow_writes=True, mark="mysql"),
        BackendKind(
            "zookeeper", _zookeeper, remote=True, atomic_flow_writes=True, mark="zookeeper"
        ),
    )
}


# -- a trial ----------------------------------------------------------------------------------


@dataclass
class TrialReport:
    """What a trial did and what it found."""

    seed: int
    variant: str
    engine: str
    kills: int = 0
    children: int = 0
    reruns: int = 0
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}, variant {self.variant}, engine {self.engine}:"
            f" {self.children} children, {self.kills} kills, {self.reruns} re-runs,"
            f" {self.seconds:.2f}s",
            *("  " + line for line in self.log),
        ]
        if self.violations:
            lines.append(f"{len(self.violations)} violation(s):")
            lines.extend("  " + v for v in self.violations[:25])
        return "\n".join(lines)


Snapshot = tuple[dict[str, list[Any]], "str | None"]


class _Trial:
    def __init__(
        self, kind: BackendKind, conf: dict[str, Any], variant: str, seed: int, workdir: Path
    ) -> None:
        self.kind = kind
        self.conf = conf
        self.variant = variant
        self.rng = random.Random(seed)
        engine = "serial" if self.rng.random() < 0.25 else "parallel"
        self.report = TrialReport(seed, variant, engine)
        self.journal_path = str(workdir / "journal.jsonl")
        self.checker = checks.Checker(variant)
        self.fed = 0
        self.reported = 0  # checker violations already copied to the report
        self.last_states: dict[str, str] = {}
        self.ready_at: dict[int, tuple[float, int]] = {}
        self.done_counts = dict.fromkeys(("writes", "result", "execute", "revert"), 0)
        self.backend = backends.fetch(conf)

    # -- setup and reading back --------------------------------------------------------------

    def setup(self) -> str:
        with self.backend.get_connection() as conn:
            conn.upgrade()
            book = models.LogBook("crash")
            flow_detail = models.FlowDetail(f"crash-{self.variant}", str(uuid.uuid4()))
            book.add(flow_detail)
            conn.save_logbook(book)
        engines.save_factory_details(
            flow_detail, flows.make_flow, [self.variant], {}, backend=self.backend
        )
        return flow_detail.uuid

    def read(self, flow_uuid: str) -> models.FlowDetail:
        with self.backend.get_connection() as conn:
            return conn.get_flow_details(flow_uuid)

    def snapshot(self, flow_uuid: str) -> Snapshot:
        """The store's view of the flow; for remote stores, once it stopped changing."""
        fd = self.read(flow_uuid)
        snap: Snapshot = ({ad.name: flows.describe(ad) for ad in fd}, fd.state)
        if not self.kind.remote:
            return snap
        for _ in range(40):
            time.sleep(0.025)
            fd = self.read(flow_uuid)
            again: Snapshot = ({ad.name: flows.describe(ad) for ad in fd}, fd.state)
            if again == snap:
                return snap
            snap = again
        self.report.violations.append("the store kept changing after the child died")
        return snap

    # -- children ----------------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        mode = self.rng.choice(_MODES)
        if mode == "timer":
            left = max(3, _TOTALS[self.variant]["writes"] - self.done_counts["writes"])
            per_write = _SPEED.get(self.kind.name, 0.003)
            # Aim inside the work left (the estimate is rough: leave a margin to land).
            return {"mode": "timer", "delay": self.rng.uniform(0.0, 0.8 * left * per_write)}
        counter = "writes" if mode.startswith("write") else mode
        left = max(1, _TOTALS[self.variant][counter] - self.done_counts[counter])
        return {"mode": mode, "n": self.rng.randint(1, left)}

    def _wait_ready(self, process: Any) -> bool:
        """Wait until ``process`` journals that it starts (False if it died first)."""
        offset = 0
        tag = f'"k":"ready","pid":{process.pid},'.encode()
        deadline = time.monotonic() + _CHILD_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError), open(self.journal_path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
                if tag in chunk:
                    return True
                offset += max(0, chunk.rfind(b"\n") + 1)
            if process.exitcode is not None:
                return False
            time.sleep(0.001)
        return False

    def run_child(self, flow_uuid: str, plan: dict[str, Any] | None) -> tuple[int, bool]:
        """Run one child to its end (or kill); (its pid, whether it was killed)."""
        child_plan = plan if plan is None or plan["mode"] != "timer" else None
        started = time.monotonic()
        process = _mp().Process(
            target=child.main,
            args=(self.conf, flow_uuid, self.journal_path, self.report.engine, child_plan),
        )
        process.start()
        if plan is not None and plan["mode"] == "timer" and self._wait_ready(process):
            process.join(plan["delay"])
            if process.exitcode is None:
                os.kill(process.pid, signal.SIGKILL)
        process.join(_CHILD_TIMEOUT)
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
            process.join()
            self.report.violations.append(f"child {process.pid} hung for {_CHILD_TIMEOUT}s")
        killed = process.exitcode == -signal.SIGKILL
        self.report.children += 1
        self.report.log.append(
            f"child {process.pid}: plan {plan}, exit {process.exitcode},"
            f" {time.monotonic() - started:.3f}s"
        )
        return process.pid, killed

    def feed_journal(self) -> list[dict[str, Any]]:
        events = journal_mod.read(self.journal_path)
        new = events[self.fed :]
        for event in new:
            self.checker.feed(event)
            kind = event["k"]
            if kind == "saved":
                self.done_counts["writes"] += 1
            elif kind == "call" and event["ph"] == "start":
                self.done_counts[event["act"]] += 1
            elif kind == "saving":
                outcome = False
                for name, desc in event["atoms"]:
                    if desc[0] in _OUTCOMES and self.last_states.get(name) != desc[0]:
                        outcome = True
                    self.last_states[name] = desc[0]
                self.done_counts["result"] += outcome
            elif kind == "ready":
                self.ready_at[event["pid"]] = (event["t"], self.done_counts["writes"])
            elif kind == "done" and event["pid"] in self.ready_at:
                # Seconds per write of a whole run: what timer kills are aimed with.
                began, writes = self.ready_at[event["pid"]]
                if self.done_counts["writes"] - writes > 10:
                    _SPEED[self.kind.name] = (event["t"] - began) / (
                        self.done_counts["writes"] - writes
                    )
        self.fed = len(events)
        return new

    def after_kill(self, pid: int, snap: Snapshot) -> None:
        """Find out what of the killed child's last write reached the store; journal it."""
        atoms, flow_state = snap
        pending = self.checker.pending.get(pid)
        applied: dict[str, bool] = {}
        flow_applied = None
        if pending is not None:
            seen = set()
            for name, desc in pending["atoms"]:
                before = self.checker.persisted.get(name)
                now = atoms.get(name)
                if desc == before:
                    applied[name] = True  # no visible change: either way
                    continue
                if now == desc:
                    applied[name] = True
                elif now == before:
                    applied[name] = False
                else:
                    self.report.violations.append(
                        f"after killing {pid}, {name} is stored as {now}: neither what it was"
                        f" ({before}) nor what was being written ({desc}): a torn write"
                    )
                    applied[name] = True
                seen.add(applied[name])
            if pending["flow"] is not None and pending["flow"] != self.checker.flow_state:
                flow_applied = flow_state == pending["flow"]
                seen.add(flow_applied)
            if self.kind.atomic_flow_writes and len(seen) > 1:
                self.report.violations.append(
                    f"after killing {pid}, only part of write #{pending['w']} is stored:"
                    f" {applied}, flow {flow_applied}"
                )
        writer = journal_mod.Journal(self.journal_path)
        try:
            writer.write("killed", pid=pid, applied=applied, flow_applied=flow_applied)
        finally:
            writer.close()
        self.feed_journal()

    def compare(self, snap: Snapshot, when: str) -> None:
        """The store holds exactly what the writes that returned left there."""
        atoms, flow_state = snap
        model = self.checker.persisted
        for name in sorted(set(atoms) | set(model)):
            if atoms.get(name) != model.get(name):
                self.report.violations.append(
                    f"{when}: {name} is stored as {atoms.get(name)} but the writes that"
                    f" returned left {model.get(name)}"
                )
        if flow_state != self.checker.flow_state:
            self.report.violations.append(
                f"{when}: the flow is stored as {flow_state} but the writes that returned"
                f" left {self.checker.flow_state}"
            )
        self.check_write_ahead(atoms, when)

    def check_write_ahead(self, atoms: dict[str, list[Any]], when: str) -> None:
        """Whatever runs or ran forward has every predecessor's SUCCESS stored."""
        for name, desc in atoms.items():
            if name not in self.checker.preds:
                continue
            if desc[1] != states.EXECUTE or desc[0] not in (
                states.RUNNING,
                states.SUCCESS,
                states.FAILURE,
            ):
                continue
            for pred in self.checker.preds[name]:
                pdesc = atoms.get(pred)
                if pdesc is None or pdesc[0] != states.SUCCESS:
                    self.report.violations.append(
                        f"{when}: {name} is stored as {desc} while its predecessor {pred}"
                        f" is stored as {pdesc}"
                    )

    # -- final checks ------------------------------------------------------------------------

    def check_final(self, flow_detail: models.FlowDetail) -> None:
        want_state = _FINAL[self.variant]
        if flow_detail.state != want_state:
            self.report.violations.append(
                f"the flow ended {flow_detail.state}, expected {want_state}"
            )
        expected = flows.expected_results(self.variant)
        intention = states.EXECUTE if self.variant == "good" else states.REVERT
        ran = {key[0] for key in self.checker.runs}
        missing = set(flows.atoms_of(self.variant)) - {ad.name for ad in flow_detail}
        if missing:
            self.report.violations.append(f"atoms missing from the store: {sorted(missing)}")
        for ad in flow_detail:
            if ad.name not in flows.PREDS:
                continue
            problems = self._final_problems(ad, expected, intention, ad.name in ran)
            self.report.violations.extend(f"final {ad.name}: {p}" for p in problems)

    def _final_problems(
        self, ad: models.AtomDetail, expected: dict[str, Any], intention: str, ran: bool
    ) -> list[str]:
        problems = []
        name = ad.name
        if self.variant == "good":
            want = states.SUCCESS
        elif ran or ad.state != states.PENDING:
            want = states.REVERTED
        else:
            want = states.PENDING  # never reached before the failure
        if (ad.state, ad.intention) != (want, intention):
            problems.append(f"is {ad.state}/{ad.intention}, expected {want}/{intention}")
        if isinstance(ad, models.RetryDetail):
            return problems + self._retry_problems(ad)
        value = expected.get(name)
        if ad.results is not None and (type(ad.results) is not tuple or ad.results != value):
            problems.append(f"result {ad.results!r} != expected {value!r}")
        if self.variant == "good" and ad.results != value:
            problems.append(f"result {ad.results!r} != expected {value!r}")
        if self.variant != "good" and ad.state == states.REVERTED:
            attempt = flows.LAST_ATTEMPT if name in flows.SUB else 0
            if ad.revert_results != (f"undo-{name}", attempt):
                problems.append(f"revert result {ad.revert_results!r}")
        failing = (self.variant == "fail" and name == "boom") or (
            self.variant == "fanfail" and name == "p3"
        )
        if failing and not _failure_says(ad.failure, f"{name} failed on attempt 0"):
            problems.append(f"failure {ad.failure!r} is not its own")
        if not failing and ad.failure is not None:
            problems.append(f"unexpected failure {ad.failure!r}")
        return problems

    def _retry_problems(self, ad: models.RetryDetail) -> list[str]:
        if self.variant != "good":
            return [] if not ad.results else [f"history {ad.results!r} left after revert"]
        history = ad.results or []
        if [value for value, _ in history] != [1, 2, 3]:
            return [f"history values {[v for v, _ in history]} != [1, 2, 3]"]
        problems = []
        for attempt, (_value, failures) in enumerate(history, 1):
            if attempt < flows.LAST_ATTEMPT:
                if set(failures) != {"r2"} or not _failure_says(
                    failures["r2"], f"r2 failed on attempt {attempt}"
                ):
                    problems.append(f"attempt {attempt} failures {failures!r}")
            elif failures:
                problems.append(f"last attempt failures {failures!r}")
        return problems

    # -- the whole trial ---------------------------------------------------------------------

    def run(self, kills: int, plans: list[dict[str, Any]] | None) -> None:
        flow_uuid = self.setup()
        self.feed_journal()
        if plans is not None:
            kills = len(plans)
        for number in range(kills + _CLEAN_RUNS):
            if self.read(flow_uuid).state in (states.SUCCESS, states.REVERTED):
                break
            plan = None
            if number < kills:
                plan = self.plan() if plans is None else plans[number]
            pid, killed = self.run_child(flow_uuid, plan)
            new = self.feed_journal()
            try:
                snap = self.snapshot(flow_uuid)
            except Exception as err:
                self.report.violations.append(
                    f"the store can not be read after child {pid}: {type(err).__name__}: {err}"
                )
                return
            if killed:
                self.report.kills += 1
                self.after_kill(pid, snap)
                self.compare(snap, f"after killing {pid}")
            else:
                self._check_clean_exit(pid, new)
                self.compare(snap, f"after child {pid} exited")
            self.report.violations.extend(self.checker.violations[self.reported :])
            self.reported = len(self.checker.violations)
            if self.report.violations:
                return
        else:
            self.report.violations.append(
                f"the flow is still {self.read(flow_uuid).state} after"
                f" {self.report.children} children"
            )
            return
        self.checker.finish()
        self.report.violations.extend(self.checker.violations[self.reported :])
        self.report.reruns = self.checker.reruns()
        self.check_final(self.read(flow_uuid))

    def _check_clean_exit(self, pid: int, new: list[dict[str, Any]]) -> None:
        mine = [e for e in new if e.get("pid") == pid]
        for event in mine:
            if event["k"] == "error":
                self.report.violations.append(f"child {pid} failed:\n{event['tb']}")
                return
        done = [e for e in mine if e["k"] == "done"]
        if not done:
            self.report.violations.append(f"child {pid} exited without finishing the flow")
        elif done[-1]["state"] != _FINAL[self.variant]:
            self.report.violations.append(
                f"child {pid} ended the flow {done[-1]['state']} (raised {done[-1]['raised']})"
            )


def _failure_says(failure: Failure | None, text: str) -> bool:
    return failure is not None and text in failure.exception_str


def run_trial(
    kind: BackendKind,
    conf: dict[str, Any],
    variant: str,
    seed: int,
    kills: int,
    workdir: Path,
    plans: list[dict[str, Any]] | None = None,
    engine: str | None = None,
) -> TrialReport:
    """Run one trial (see the module docstring); its report lists any violation found.

    Args:
        kind: the backend kind; ``conf`` the configuration of the trial's own store.
        variant: the flow variant (:data:`tests.crash.flows.VARIANTS`).
        seed: where every random choice of the trial comes from.
        kills: how many children to kill (drawn plans), before clean runs finish the flow.
        workdir: where the journal goes.
        plans: the kill plans to use instead of drawn ones (directed trials).
        engine: ``"serial"`` or ``"parallel"`` instead of a drawn one.
    """
    trial = _Trial(kind, conf, variant, seed, workdir)
    if engine is not None:
        trial.report.engine = engine
    started = time.monotonic()
    try:
        trial.run(kills, plans)
    finally:
        trial.report.seconds = time.monotonic() - started
        trial.report.counts = dict(trial.done_counts)
        trial.backend.close()
    return trial.report
