"""A fleet of conductor processes under a seeded schedule of SIGKILLs and one long SIGSTOP.

Theory of operation
-------------------
:class:`Chaos` posts ``jobs`` chains (:func:`tests.conductors.flows.chain`: ``tasks`` tasks,
each napping a seeded ``pace`` and journaling its start and end with its pid and
``time.monotonic()``) and starts ``conductors`` conductor processes (``_child.py``), some
blocking, some non-blocking with two slots. ``gated`` of the jobs (drawn from the seed) wait
in each task for a gate file that opens only once the schedule is played: the fleet cannot
run out of work, and so of victims, before the schedule's end. The :class:`Schedule` is
played one action at a time, each after a seeded delay and each aimed at a conductor that is
inside a task at that moment (chosen by a seeded draw among them):

* ``kill``: SIGKILL; a replacement starts at once, under the victim's name or a new one (a
  same-named replacement must not be mistaken for the dead holder).
* ``pause``: SIGSTOP, held until every job the victim was working on has been taken over
  (another process starts one of its tasks), which needs the victim's lease to lapse; then
  SIGCONT. The victim is fenced out by then: it may finish the call it was in, but none of
  that call's results may be persisted, and it starts no task of those jobs again.

Once every job left the board, the survivors are stopped (SIGTERM) and :meth:`Chaos.check`
verifies: every job consumed, none trashed; each flow SUCCESS with every task's value
right; no task worked by two live holders at once (a holder is live from its journaled
start to its end, or to its death for a killed one, and not while stopped: a paused
holder's call spanning the pause counts only up to the SIGSTOP); no result persisted by a
fenced call; each job consumed once at most, by the holder of its last claim; and no more
re-executions than the disruptions explain.

The seed (printed, and in every failure message) fixes the schedule and the pace; the rest
is up to the machine's timing. ``TASKFLOW_CHAOS_SEED`` replays a given seed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskflow import engines, states
from taskflow.persistence import models
from tests.conductors import flows
from tests.conductors.conftest import Env

#: The boards' lease here: long enough that a live conductor's renewals, starved on a
#: loaded machine, do not let its claim lapse under a task it is still running (which no
#: lease can rule out; only kills and pauses should hand jobs over in this test).
CHAOS_LEASE = 2.0

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from taskflow.jobs.base import Job
    from tests.conductors.conftest import Child

__all__ = ["BOARDS", "SEED_ENV", "Chaos", "Plan", "Schedule", "board_env", "seed"]

#: Environment variable that replays a seed (decimal).
SEED_ENV = "TASKFLOW_CHAOS_SEED"
#: Board kinds, in the order the tests run them.
BOARDS = ("sqlite", "postgresql", "redis", "zookeeper", "etcd")
#: Slots of a non-blocking conductor (so a kill may interrupt two jobs at once).
NONBLOCKING_SLOTS = 2


def seed() -> int:
    """``TASKFLOW_CHAOS_SEED`` if set, else a fresh random seed."""
    value = os.environ.get(SEED_ENV)
    return int(value) if value else random.SystemRandom().randrange(2**32)


@dataclass(frozen=True)
class Plan:
    """What a run does: its size and the seed everything random is drawn from."""

    seed: int
    jobs: int = 12
    tasks: int = 3
    conductors: int = 3
    kills: int = 3
    #: Conductors SIGSTOPped past their lease (one at a time), then continued.
    pauses: int = 1
    #: Jobs held at a gate until the schedule is played. One: a paused conductor's jobs
    #: need a conductor that is not stuck at the gate to take them over.
    gated: int = 1
    #: Shortest and longest nap of a task (seconds).
    pace: tuple[float, float] = (0.05, 0.25)
    #: Shortest and longest delay before each action of the schedule (seconds).
    delay: tuple[float, float] = (0.1, 0.6)
    #: Seconds the whole run may take before it is declared hung.
    deadline: float = 90.0


@dataclass(frozen=True)
class Action:
    kind: str  # "kill" or "pause"
    delay: float
    #: Picks the victim among the busy conductors (ordered by slot): int(pick * count).
    pick: float
    #: Whether a kill's replacement takes the victim's name.
    same_name: bool


@dataclass(frozen=True)
class Schedule:
    """Everything drawn from the seed, before anything runs."""

    kinds: tuple[str, ...]  # of the first conductors, then of each replacement
    paces: tuple[tuple[float, ...], ...]  # per job, per task
    gated: frozenset[int]  # jobs held at the gate
    actions: tuple[Action, ...]

    @classmethod
    def draw(cls, plan: Plan) -> Schedule:
        rng = random.Random(plan.seed)
        kinds = tuple(
            rng.choice(("blocking", "nonblocking")) for _ in range(plan.conductors + plan.kills)
        )
        paces = tuple(
            tuple(round(rng.uniform(*plan.pace), 3) for _ in range(plan.tasks))
            for _ in range(plan.jobs)
        )
        gated = frozenset(rng.sample(range(plan.jobs), min(plan.gated, plan.jobs)))
        order = ["kill"] * plan.kills
        for _ in range(plan.pauses):
            order.insert(rng.randrange(len(order) + 1), "pause")
        actions = tuple(
            Action(kind, round(rng.uniform(*plan.delay), 3), rng.random(), rng.random() < 0.5)
            for kind in order
        )
        return cls(kinds, paces, gated, actions)


@dataclass
class Attempt:
    """One call of one task, as journaled."""

    job: int
    task: str
    pid: int
    start: float
    end: float | None = None


@dataclass
class Slot:
    """A conductor process of the fleet (a killed one's slot gets its replacement)."""

    index: int
    name: str
    kind: str
    child: Child
    killed_at: float | None = None


@dataclass
class Pause:
    pid: int
    jobs: set[int]
    stopped_at: float
    continued_at: float | None = None


@dataclass
class Record:
    """What happened, for the checks and the report."""

    slots: list[Slot] = field(default_factory=list)
    #: Dead processes: pid -> when it was seen dead (after its SIGKILL).
    deaths: dict[int, float] = field(default_factory=dict)
    pauses: list[Pause] = field(default_factory=list)
    #: Jobs possibly interrupted per disruption (slots of the victim).
    interrupted: int = 0
    log: list[str] = field(default_factory=list)
    skipped: int = 0


class Chaos:
    """One run of a :class:`Plan` on ``env`` (see the module docstring)."""

    def __init__(self, env: Env, plan: Plan, say: Callable[[str], None] = print) -> None:
        self.env = env
        self.plan = plan
        self.schedule = Schedule.draw(plan)
        self.say = say
        self.journal = env.tmp_path / "chaos.journal"
        self.record = Record()
        self.jobs: list[Job] = []
        self._kinds = iter(self.schedule.kinds)
        self._started = 0.0

    # -- running ----------------------------------------------------------------------------------

    def run(self) -> None:
        plan = self.plan
        self.say(
            f"chaos seed {plan.seed} ({SEED_ENV}={plan.seed} replays it): {plan.jobs} jobs x"
            f" {plan.tasks} tasks, {plan.conductors} conductors, {plan.kills} kills,"
            f" {plan.pauses} pauses, jobs {sorted(self.schedule.gated)} gated,"
            f" board {self.env.board_conf['board']}"
        )
        self._started = time.monotonic()
        self.jobs = [self._post(index) for index in range(plan.jobs)]
        for index in range(plan.conductors):
            self._spawn(index, f"c{index}")
        for action in self.schedule.actions:
            time.sleep(action.delay)
            slot = self._busy_victim(action)
            if slot is None:
                self.record.skipped += 1
                self._log(f"{action.kind}: every job done, skipped")
                continue
            if action.kind == "kill":
                self._kill(slot, action.same_name)
            else:
                self._pause(slot)
        self.env.open_gate()
        self._log("gate opened")
        self._wait_done()
        self._stop_all()

    def _post(self, index: int) -> Job:
        """A job whose flow is a chain of its own, fed ``origin = index``."""
        env = self.env
        logbook = models.LogBook(f"chaos-{index}")
        flow_detail = models.FlowDetail(f"chaos-{index}", str(uuid.uuid4()))
        flow_detail.meta["store"] = {
            "chaos_journal": str(self.journal),
            "job_index": index,
            "pace": list(self.schedule.paces[index]),
            "origin": {"v": index},
            "gate": str(self.env.gate) if index in self.schedule.gated else "",
        }
        logbook.add(flow_detail)
        with contextlib.closing(env.persistence.get_connection()) as conn:
            conn.save_logbook(logbook)
        engines.save_factory_details(
            flow_detail, flows.chain, (self.plan.tasks,), {}, backend=env.persistence
        )
        return env.poster.post(f"chaos-{index}", book=logbook)

    def _spawn(self, index: int, name: str) -> Slot:
        kind = next(self._kinds)
        options: dict[str, Any] = {}
        if kind == "nonblocking":
            options["max_simultaneous_jobs"] = NONBLOCKING_SLOTS
        child = self.env.child(kind, name=name, **options)
        slot = Slot(index, name, kind, child)
        if index < len(self.record.slots):
            self.record.slots[index] = slot
        else:
            self.record.slots.append(slot)
        self._log(f"slot {index}: {kind} conductor {name!r} is pid {child.pid}")
        return slot

    def _busy_victim(self, action: Action) -> Slot | None:
        """A conductor inside a task (drawn by ``action.pick``); None once every job is done."""
        deadline = time.monotonic() + self.plan.deadline
        while time.monotonic() < deadline:
            open_pids = {attempt.pid for attempt in self.attempts() if attempt.end is None}
            busy = [
                slot
                for slot in self.record.slots
                if slot.child.pid in open_pids and slot.child.proc.poll() is None
            ]
            if busy:
                return busy[int(action.pick * len(busy))]
            if self.env.poster.job_count == 0:
                return None
            time.sleep(0.01)
        raise AssertionError(self._failure("no conductor ever got busy again"))

    def _kill(self, slot: Slot, same_name: bool) -> None:
        pid = slot.child.pid
        os.kill(pid, signal.SIGKILL)
        slot.child.proc.wait()
        # Seen dead only now: anything it journaled happened before this instant.
        self.record.deaths[pid] = time.monotonic()
        slot.killed_at = self.record.deaths[pid]
        self.record.interrupted += _slots_of(slot.kind)
        self._log(f"killed {slot.name!r} (pid {pid})")
        name = slot.name if same_name else f"c{len(self.record.deaths) + self.plan.conductors}"
        self._spawn(slot.index, name)

    def _pause(self, slot: Slot) -> None:
        pid = slot.child.pid
        # The jobs it is working on: its open calls that nobody else started a call of the
        # job after (an open call of a job taken from it by an earlier pause is stale).
        calls = self.attempts()
        latest = {call.job: call for call in calls}  # in order of start: the last one wins
        jobs = {
            call.job
            for call in calls
            if call.pid == pid and call.end is None and latest[call.job].pid == pid
        }
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)
        pause = Pause(pid, jobs, time.monotonic())
        self.record.pauses.append(pause)
        self.record.interrupted += _slots_of(slot.kind)
        self._log(f"stopped {slot.name!r} (pid {pid}) in jobs {sorted(jobs)}")
        try:
            deadline = time.monotonic() + self.plan.deadline
            while not self._taken_over(pause):
                if time.monotonic() > deadline:
                    raise AssertionError(self._failure(f"jobs {sorted(jobs)} never taken over"))
                time.sleep(0.01)
        finally:
            pause.continued_at = time.monotonic()
            os.kill(pid, signal.SIGCONT)
        self._log(f"continued pid {pid} after {pause.continued_at - pause.stopped_at:.2f}s")

    def _taken_over(self, pause: Pause) -> bool:
        """Whether another process started a task of each job the paused one was in."""
        taken = {
            attempt.job
            for attempt in self.attempts()
            if attempt.pid != pause.pid and attempt.start > pause.stopped_at
        }
        return pause.jobs <= taken

    def _wait_done(self) -> None:
        deadline = self._started + self.plan.deadline
        poster = self.env.poster
        while poster.job_count:
            if time.monotonic() > deadline:
                left = sorted(job.name for job in poster.iterjobs())
                raise AssertionError(self._failure(f"jobs never finished: {left}"))
            poster.wait_for_change(0.2)
        self._log(f"every job left the board after {time.monotonic() - self._started:.1f}s")

    def _stop_all(self) -> None:
        live = [slot for slot in self.record.slots if slot.child.proc.poll() is None]
        for slot in live:
            # Not before it handles SIGTERM (a replacement may still be starting).
            slot.child.expect(lambda line: line.get("ready") is True)
            slot.child.proc.send_signal(signal.SIGTERM)
        for slot in live:
            slot.child.expect(lambda line: line.get("done") is True)

    # -- what happened ----------------------------------------------------------------------------

    def attempts(self) -> list[Attempt]:
        """Every task call journaled so far, in order of start."""
        if not self.journal.exists():
            return []
        calls: dict[tuple[int, str, int], Attempt] = {}
        done: list[Attempt] = []
        for line in self.journal.read_text().splitlines():
            parts = line.split()
            if len(parts) != 5:
                continue  # a line being written right now (the writer's only write)
            event, job, task, pid, at = parts
            key = (int(job), task, int(pid))
            if event == "start":
                if key in calls:
                    done.append(calls.pop(key))  # an earlier call of a re-claimed job
                calls[key] = Attempt(int(job), task, int(pid), float(at))
            elif key in calls:
                calls[key].end = float(at)
                done.append(calls.pop(key))
        return sorted([*done, *calls.values()], key=lambda attempt: attempt.start)

    def _live_spans(self, attempt: Attempt) -> list[tuple[float, float]]:
        """When the call's holder was live and not fenced (see the module docstring)."""
        end = attempt.end
        if end is None:
            end = self.record.deaths.get(attempt.pid, float("inf"))
        for pause in self.record.pauses:
            if pause.pid != attempt.pid:
                continue
            continued = pause.continued_at if pause.continued_at is not None else float("inf")
            if attempt.start < pause.stopped_at < end:
                end = pause.stopped_at  # fenced from then on
            elif pause.stopped_at <= attempt.start < continued:
                return []  # cannot happen: a stopped process starts nothing
        return [(attempt.start, end)]

    # -- checks -----------------------------------------------------------------------------------

    def check(self) -> None:
        """Every invariant of the module docstring; AssertionError (with the seed) if not."""
        problems: list[str] = []
        env = self.env
        plan = self.plan
        if env.poster.job_count:
            problems.append(f"{env.poster.job_count} jobs still on the board")
        trash = env.trash()
        if trash:
            problems.append(f"trashed: {trash}")
        attempts = self.attempts()
        by_task: dict[tuple[int, str], list[Attempt]] = defaultdict(list)
        for attempt in attempts:
            by_task[attempt.job, attempt.task].append(attempt)
        problems += self._overlaps(by_task)
        problems += self._results(attempts)
        problems += self._consumes()
        extra = len(attempts) - plan.jobs * plan.tasks
        if extra > self.record.interrupted:
            problems.append(
                f"{extra} re-executions, more than the {self.record.interrupted} jobs the"
                " disruptions could interrupt"
            )
        for pause in self.record.pauses:
            again = [
                attempt
                for attempt in attempts
                if attempt.pid == pause.pid
                and attempt.job in pause.jobs
                and attempt.start > pause.stopped_at
                and not self._claimed_again(pause, attempt)
            ]
            if again:
                problems.append(f"paused pid {pause.pid} started tasks once fenced: {again}")
        if problems:
            raise AssertionError(self._failure("; ".join(problems)))
        self._log(
            f"checked: {plan.jobs} jobs done once each, {len(attempts)} task calls"
            f" ({extra} re-executions), {len(self.record.deaths)} kills,"
            f" {len(self.record.pauses)} pauses, {self.record.skipped} actions skipped"
        )

    def _claimed_again(self, pause: Pause, attempt: Attempt) -> bool:
        """Whether the paused conductor claimed ``attempt``'s job anew after it continued
        and before the call (its engine's compilation started then: a fresh claim's run)."""
        uuid = self.jobs[attempt.job].uuid
        continued = pause.continued_at or float("inf")
        return any(
            line.get("event") == "compilation_start"
            and line.get("job") == uuid
            and continued < line["t"] < attempt.start
            for child in self._children()
            if child.pid == pause.pid
            for line in child.drain()
        )

    def _overlaps(self, by_task: dict[tuple[int, str], list[Attempt]]) -> list[str]:
        problems = []
        for (job, task), calls in sorted(by_task.items()):
            spans = [(span, call) for call in calls for span in self._live_spans(call)]
            for index, ((start, end), call) in enumerate(spans):
                for (other_start, other_end), other in spans[index + 1 :]:
                    if other.pid != call.pid and start < other_end and other_start < end:
                        problems.append(
                            f"job {job} task {task} worked by pids {call.pid} and {other.pid} at"
                            f" once ({start:.3f}-{end:.3f}, {other_start:.3f}-{other_end:.3f})"
                        )
        return problems

    def _results(self, attempts: list[Attempt]) -> list[str]:
        """Each flow SUCCESS, each value right, each result from a call that was not fenced."""
        problems = []
        plan = self.plan
        fenced = {
            (attempt.job, attempt.task, attempt.pid, attempt.start)
            for attempt in attempts
            for pause in self.record.pauses
            if attempt.pid == pause.pid
            and attempt.start < pause.stopped_at
            and (attempt.end is None or attempt.end > pause.stopped_at)
        }
        for index, job in enumerate(self.jobs):
            flow_detail = self.env.flow_detail(job)
            if flow_detail.state != states.SUCCESS:
                problems.append(f"job {index}: flow {flow_detail.state}")
                continue
            atoms = {atom.name: atom for atom in flow_detail}
            expected = flows.chain_values(index, plan.tasks)
            for position, value in enumerate(expected):
                atom = atoms.get(f"t{position}")
                if atom is None or atom.state != states.SUCCESS:
                    problems.append(f"job {index} task t{position}: {atom and atom.state}")
                    continue
                result = atom.results
                if result["v"] != value:
                    problems.append(f"job {index} task t{position}: {result['v']} != {value}")
                key = (index, f"t{position}", result["pid"], result["start"])
                if key in fenced:
                    problems.append(f"job {index} task t{position}: result of a fenced call")
        return problems

    def _consumes(self) -> list[str]:
        """Each job consumed once at most, by its last claim (the largest token)."""
        problems = []
        consumed: dict[str, list[int]] = defaultdict(list)
        tokens: dict[str, set[int]] = defaultdict(set)
        for child in self._children():
            # A released job has no token any more: its claim's is that of its last step.
            claims: dict[str, int] = {}
            for line in child.drain():
                event, job, token = line.get("event"), line.get("job"), line.get("token")
                if job is None:
                    continue
                if token is not None:
                    claims[job] = int(token)
                    tokens[job].add(int(token))
                if event == "job_consumed":
                    consumed[job].append(claims.get(job, -1))
                elif event in ("job_abandoned", "job_trashed"):
                    problems.append(f"job {job} {event} (claim {claims.get(job)})")
        missing = 0
        for job in self.jobs:
            seen = consumed.get(job.uuid, [])
            if len(seen) > 1:
                problems.append(f"job {job.name} consumed {len(seen)} times (tokens {seen})")
            elif not seen:
                missing += 1  # its consumer may have been killed before it said so
            elif seen[0] != max(tokens[job.uuid]):
                problems.append(
                    f"job {job.name} consumed with token {seen[0]}, not its last claim's"
                    f" {max(tokens[job.uuid])}"
                )
        if missing > len(self.record.deaths):
            problems.append(f"{missing} jobs consumed by nobody that said so")
        return problems

    def _children(self) -> list[Child]:
        return list(self.env._children)

    # -- reporting --------------------------------------------------------------------------------

    def _log(self, message: str) -> None:
        line = f"[{time.monotonic() - self._started:6.2f}s] {message}"
        self.record.log.append(line)
        self.say(line)

    def _failure(self, message: str) -> str:
        return (
            f"{message}\nchaos seed {self.plan.seed} (replay: {SEED_ENV}={self.plan.seed})\n"
            + "\n".join(self.record.log)
        )


def _slots_of(kind: str) -> int:
    return NONBLOCKING_SLOTS if kind == "nonblocking" else 1


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Block until ``pid`` is in the stopped state (``T`` in /proc) after a SIGSTOP."""
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        # The state follows the parenthesised command name (which may hold spaces).
        if stat.read_text().rpartition(")")[2].split()[0] == "T":
            return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} did not stop within {timeout}s")


@contextlib.contextmanager
def board_env(kind: str, tmp_path: Path, address: str | None, label: str) -> Iterator[Env]:
    """An :class:`Env` on a fresh board of ``kind`` (of its own on the shared server at
    ``address``), persistence on PostgreSQL for the PostgreSQL board, else SQLite."""
    sqlite_flows = f"sqlite:///{tmp_path / 'flows.db'}"
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            conf: dict[str, Any] = {
                "board": "sqlite",
                "connection": f"sqlite:///{tmp_path / 'board.db'}",
            }
            persistence = sqlite_flows
        elif kind == "postgresql":
            from tests.helpers.databases import isolated_postgres

            assert address is not None
            url = stack.enter_context(isolated_postgres(address, prefix="tfchaos"))
            conf, persistence = {"board": "postgresql", "connection": url}, url
        elif kind == "redis":
            from tests.helpers.redis_boards import isolated_namespace

            assert address is not None
            conf, _ = stack.enter_context(isolated_namespace(address, prefix="tfchaos"))
            persistence = sqlite_flows
        elif kind == "zookeeper":
            from tests.helpers.databases import isolated_zookeeper_root

            assert address is not None
            root = stack.enter_context(isolated_zookeeper_root(address, prefix="tfchaos"))
            conf, persistence = (
                {"board": "zookeeper", "hosts": address, "path": f"{root}/jobs"},
                (sqlite_flows),
            )
        elif kind == "etcd":
            from tests.helpers.etcd import etcd_path

            assert address is not None
            conf, _ = stack.enter_context(etcd_path(address, label))
            persistence = sqlite_flows
        else:
            raise ValueError(f"no such board kind: {kind}")
        environment = Env(tmp_path, {**conf, "lease": CHAOS_LEASE}, persistence)
        stack.callback(environment.close)
        yield environment
