"""Flows the conductor tests post, rebuilt by name in the conductor (any process).

Tasks report what they do by appending lines to the file named by the ``journal`` store
value (``"<event> <task> <pid>"``), so a test can tell which process ran which task and
when, even for a process that was killed. ``gate`` names a file a task waits for.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

from taskflow import exceptions as exc
from taskflow import task
from taskflow.patterns import linear_flow

if TYPE_CHECKING:
    from pathlib import Path

#: Seconds a gated task waits at most for its gate before failing.
GATE_TIMEOUT = 30.0


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
