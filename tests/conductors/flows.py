"""Flows the conductor tests post, rebuilt by name in the conductor (any process).

Tasks report what they do by appending lines to the file named by the ``journal`` store
value (``"<event> <task> <pid>"``), so a test can tell which process ran which task and
when, even for a process that was killed. ``gate`` names a file a task waits for.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow import task
from taskflow.patterns import linear_flow

if TYPE_CHECKING:
    from pathlib import Path

#: Seconds a gated task waits at most for its gate before failing.
GATE_TIMEOUT = 30.0
#: The same for :class:`Link` (long chaos runs keep their gate closed for minutes).
CHAIN_GATE_TIMEOUT = 600.0


def note(journal: str | None, event: str, name: str) -> None:
    if journal:
        with open(journal, "a") as out:
            out.write(f"{event} {name} {os.getpid()}\n")
            out.flush()
            os.fsync(out.fileno())


def read_journal(journal: Path) -> list[tuple[str, str, int]]:
    if not journal.exists():
        return []
    lines = journal.read_text().splitlines()
    return [(e, n, int(p)) for e, n, p in (line.split() for line in lines)]


class Step(task.Task):
    """Returns its name upper-cased, journaling its start and end."""

    def execute(self, journal: str | None = None) -> str:
        note(journal, "start", self.name)
        note(journal, "end", self.name)
        return self.name.upper()


class Gated(task.Task):
    """Waits for the ``gate`` file (started/ended journaled), then returns its name."""

    def execute(self, gate: str, journal: str | None = None) -> str:
        note(journal, "start", self.name)
        deadline = time.monotonic() + GATE_TIMEOUT
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.01)
        note(journal, "end", self.name)
        return self.name.upper()


class Boom(task.Task):
    """Fails; its revert is journaled."""

    def execute(self, journal: str | None = None) -> None:
        note(journal, "start", self.name)
        raise RuntimeError("boom")

    def revert(self, journal: str | None = None, **kwargs: object) -> None:
        note(journal, "revert", self.name)


class Outage(task.Task):
    """Fails as a storage outage would: a job whose run ends so is abandoned, not consumed."""

    def execute(self, journal: str | None = None) -> None:
        note(journal, "start", self.name)
        raise exc.StorageFailure("database unreachable")


class Unstorable(task.Task):
    """Returns a result no backend stores (NaN): the task fails, the flow reverts."""

    def execute(self, journal: str | None = None) -> float:
        note(journal, "start", self.name)
        return float("nan")


class Killer(task.Task):
    """Kills its own process (SIGKILL): a job that takes down every conductor it meets."""

    def execute(self, journal: str | None = None) -> None:
        note(journal, "start", self.name)
        os.kill(os.getpid(), signal.SIGKILL)


class Nap(task.Task):
    """Stops its own process (SIGSTOP) at the end of its call, as a long pause of the whole
    process (a stop-the-world collection, a frozen VM) would; journaled before and after."""

    def execute(self, journal: str | None = None) -> str:
        note(journal, "start", self.name)
        os.kill(os.getpid(), signal.SIGSTOP)
        note(journal, "end", self.name)
        return self.name.upper()


class Adder(task.Task):
    """Adds ``a`` and ``b`` (from the flow's store and the job's)."""

    def execute(self, a: int, b: int) -> int:
        return a + b


def ok() -> linear_flow.Flow:
    return linear_flow.Flow("ok").add(Step("one"), Step("two"))


def boom() -> linear_flow.Flow:
    return linear_flow.Flow("boom").add(Step("one"), Boom("boom"))


def outage() -> linear_flow.Flow:
    return linear_flow.Flow("outage").add(Outage("outage"))


def unstorable() -> linear_flow.Flow:
    return linear_flow.Flow("unstorable").add(Step("one"), Unstorable("nan"))


def killer() -> linear_flow.Flow:
    return linear_flow.Flow("killer").add(Step("one"), Killer("killer"))


def gated() -> linear_flow.Flow:
    """``first`` waits at the gate; ``second`` and ``third`` follow."""
    return linear_flow.Flow("gated").add(Gated("first"), Step("second"), Step("third"))


def napping() -> linear_flow.Flow:
    """``nap`` stops its process at its end; ``after`` follows."""
    return linear_flow.Flow("napping").add(Nap("nap"), Step("after"))


def adder() -> linear_flow.Flow:
    return linear_flow.Flow("adder").add(Adder("add", provides="sum"))


def broken() -> linear_flow.Flow:
    raise ValueError("this factory is broken")


class Link(task.Task):
    """One link of the chaos tests' chains: ``previous["v"] * 3 + index + 1`` after a nap
    (and after the ``gate`` file exists, if one is named).

    It journals ``start``/``end`` lines to ``chaos_journal`` with the job's index, its pid
    and ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the machine),
    and returns the same facts with its value, so a test can tell which holder's result was
    persisted and whether two holders worked the task at the same time.
    """

    def __init__(self, index: int, **kwargs: Any) -> None:
        previous = "origin" if index == 0 else f"r{index - 1}"
        super().__init__(f"t{index}", provides=f"r{index}", rebind={"previous": previous}, **kwargs)
        self.index = index

    def execute(
        self,
        chaos_journal: str,
        job_index: int,
        pace: list[float],
        previous: dict[str, Any],
        gate: str = "",
    ) -> dict[str, Any]:
        started = _journal_line(chaos_journal, "start", job_index, self.name)
        deadline = time.monotonic() + CHAIN_GATE_TIMEOUT
        while gate and not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.01)
        time.sleep(pace[self.index])
        ended = _journal_line(chaos_journal, "end", job_index, self.name)
        value = previous["v"] * 3 + self.index + 1
        return {"v": value, "pid": os.getpid(), "start": started, "end": ended}


def _journal_line(journal: str, event: str, job_index: int, name: str) -> float:
    """Append one line (a single O_APPEND write: lines of processes never interleave)."""
    now = time.monotonic()
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {job_index} {name} {os.getpid()} {now:.6f}\n".encode())
    finally:
        os.close(fd)
    return now


def chain(tasks: int) -> linear_flow.Flow:
    """``tasks`` :class:`Link` tasks, each fed the previous one's result."""
    return linear_flow.Flow("chain").add(*(Link(index) for index in range(tasks)))


def chain_values(origin: int, tasks: int) -> list[int]:
    """The value each task of :func:`chain` returns for a job whose origin is ``origin``."""
    values, value = [], origin
    for index in range(tasks):
        value = value * 3 + index + 1
        values.append(value)
    return values
