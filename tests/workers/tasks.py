"""Task classes workers of the tests run (importable by worker processes: ``tests.workers.tasks``).

A worker builds a new task object per request, so what a test wants to see of a remote call
is written to a journal file (a path given in the flow's store), one line per event.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from taskflow import task

if TYPE_CHECKING:
    from pathlib import Path


def journal(path: str | None, *words: Any) -> None:
    if path:
        with open(path, "a") as handle:
            handle.write(" ".join(str(word) for word in words) + f" {os.getpid()}\n")


def read_journal(path: str | Path) -> list[list[str]]:
    """Lines of the journal, split in words (the last one is the writer's pid)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [line.split() for line in handle.read().splitlines()]


class Add(task.Task):
    def execute(self, a: int, b: int) -> int:
        return a + b


class Echo(task.Task):
    """Returns its argument; journals execute and revert (with what revert got)."""

    def execute(self, value: Any, journal_path: str | None = None) -> Any:
        journal(journal_path, "execute", self.name)
        return value

    def revert(
        self,
        value: Any,
        result: Any,
        flow_failures: Any,
        journal_path: str | None = None,
        **kw: Any,
    ) -> None:
        failed = ",".join(sorted(flow_failures))
        journal(journal_path, "revert", self.name, repr(result).replace(" ", ""), failed)


class Boom(task.Task):
    def execute(self, journal_path: str | None = None) -> None:
        journal(journal_path, "execute", self.name)
        raise ValueError("boom from a worker")

    def revert(self, journal_path: str | None = None, **kw: Any) -> None:
        journal(journal_path, "revert", self.name)


class Progress(task.Task):
    """Reports progress 0.25 and 0.75, and a custom event, then returns 'done'."""

    def execute(self) -> str:
        self.update_progress(0.25)
        self.notifier.notify("custom-event", {"said": "hello"})
        self.update_progress(0.75)
        return "done"


class Flaky(task.Task):
    """Fails until its journal holds ``fails`` executions of it, then returns their count."""

    def execute(self, journal_path: str, fails: int) -> int:
        journal(journal_path, "execute", self.name)
        runs = sum(1 for line in read_journal(journal_path) if line[:2] == ["execute", self.name])
        if runs <= fails:
            raise RuntimeError(f"flaky run {runs}")
        return runs


class Sleep(task.Task):
    """Journals its start, sleeps ``seconds``, journals its end; returns the worker's pid."""

    def execute(self, seconds: float, journal_path: str | None = None) -> int:
        journal(journal_path, "start", self.name)
        time.sleep(seconds)
        journal(journal_path, "end", self.name)
        return os.getpid()


class Unlisted(task.Task):
    """Never listed by any worker of the tests."""

    def execute(self) -> None:
        raise AssertionError("an unlisted task ran")


class Unsendable(task.Task):
    """Returns a set, which JSON can not carry."""

    def execute(self) -> Any:
        return {1, 2}


LISTED = [Add, Echo, Boom, Progress, Flaky, Sleep, Unsendable]
