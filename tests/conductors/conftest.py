"""A board, a persistence backend and helpers to post jobs and start conductors.

Each test gets :class:`Env` on files of its own (SQLite board and SQLite persistence under
``tmp_path``), so tests never see each other's jobs. Conductors run either in a thread of
the test (``Env.conductor`` + ``Env.start``) or in processes of their own (``Env.child``,
see ``_child.py``), which the crash and pause tests signal.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines
from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as board_backends
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from taskflow.conductors.base import Conductor
    from taskflow.jobs.base import Job, JobBoard

CHILD = Path(__file__).with_name("_child.py")
REPO = Path(__file__).resolve().parents[2]

#: Seconds a claim lasts without renewal on the test boards (short: lapses are awaited).
LEASE = 1.0
#: Upper bound for anything the tests wait on (generous: two cores are shared).
PATIENCE = 30.0


class Child:
    """A conductor process; its JSON lines are read by a thread into :attr:`lines`."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self._queue.put(json.loads(line))
        self._queue.put(None)

    def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = PATIENCE
    ) -> dict[str, Any]:
        """The first line (seen so far or to come) that ``predicate`` accepts."""
        for line in self.lines:
            if predicate(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout}s; got {self.lines}") from None
            if line is None:
                raise AssertionError(f"child exited; its lines: {self.lines}")
            self.lines.append(line)
            if predicate(line):
                return line

    def drain(self) -> list[dict[str, Any]]:
        """Every line so far (waits for none)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)


class Env:
    """One test's board and persistence, with what the tests do with them."""

    def __init__(self, tmp_path: Path, board_conf: dict[str, Any], persistence_url: str) -> None:
        self.tmp_path = tmp_path
        self.board_conf = board_conf
        self.persistence_url = persistence_url
        self.persistence = persistence_backends.fetch(persistence_url)
        with contextlib.closing(self.persistence.get_connection()) as conn:
            conn.upgrade()
        self.journal = tmp_path / "journal.log"
        self.gate = tmp_path / "gate"
        self._boards: list[JobBoard] = []
        self._conductors: list[Conductor] = []
        self._threads: list[threading.Thread] = []
        self._children: list[Child] = []
        self.poster = self.board("poster")

    # -- boards and jobs --------------------------------------------------------------------------

    def board(self, name: str = "board", **overrides: Any) -> JobBoard:
        board = board_backends.fetch(
            name, {**self.board_conf, **overrides}, persistence=self.persistence
        )
        board.connect()
        self._boards.append(board)
        return board

    def post(
        self,
        factory: Callable[..., Any] | None,
        name: str = "job",
        store: dict[str, Any] | None = None,
        job_store: dict[str, Any] | None = None,
        flows: int = 1,
        flow_uuid: int | str | None = None,
        book: bool = True,
        priority: str = "NORMAL",
    ) -> Job:
        """Post a job whose book holds ``flows`` flow details built by ``factory``.

        Every flow detail's store holds the journal and gate paths, plus ``store``;
        ``flow_uuid`` names (by index, or literally) the flow detail the job points at.
        """
        if not book:
            return self.poster.post(name, details={}, priority=priority)
        logbook = models.LogBook(name)
        details: dict[str, Any] = {}
        for index in range(flows):
            flow_detail = models.FlowDetail(f"{name}-{index}", str(uuid.uuid4()))
            flow_detail.meta["store"] = {
                "journal": str(self.journal),
                "gate": str(self.gate),
                **(store or {}),
            }
            logbook.add(flow_detail)
        with contextlib.closing(self.persistence.get_connection()) as conn:
            conn.save_logbook(logbook)
        for flow_detail in logbook:
            if factory is not None:
                engines.save_factory_details(flow_detail, factory, (), {}, backend=self.persistence)
        if isinstance(flow_uuid, int):
            details["flow_uuid"] = list(logbook)[flow_uuid].uuid
        elif flow_uuid is not None:
            details["flow_uuid"] = flow_uuid
        if job_store is not None:
            details["store"] = job_store
        return self.poster.post(name, book=logbook, details=details, priority=priority)

    def flow_detail(self, job: Job, index: int = 0) -> models.FlowDetail:
        with contextlib.closing(self.persistence.get_connection()) as conn:
            return list(conn.get_logbook(job.book_uuid))[index]  # type: ignore[arg-type]

    def trash(self) -> dict[str, str | None]:
        """Trashed jobs: uuid -> reason."""
        return {entry.job.uuid: entry.reason for entry in self.poster.iter_trash()}

    def open_gate(self) -> None:
        self.gate.touch()

    # -- conductors -------------------------------------------------------------------------------

    def conductor(
        self, kind: str = "blocking", name: str = "conductor", **kwargs: Any
    ) -> Conductor:
        """A conductor on a board of its own (``board_overrides`` changes that board)."""
        board = self.board(name, **kwargs.pop("board_overrides", {}))
        kwargs.setdefault("persistence", self.persistence)
        conductor = conductor_backends.fetch(kind, name, board, **kwargs)
        self._conductors.append(conductor)
        return conductor

    def start(self, conductor: Conductor, max_dispatches: int | None = None) -> threading.Thread:
        thread = threading.Thread(target=conductor.run, args=(max_dispatches,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def child(
        self,
        kind: str = "blocking",
        name: str = "conductor",
        max_dispatches: int | None = None,
        **options: Any,
    ) -> Child:
        spec = {
            "kind": kind,
            "name": name,
            "board": self.board_conf,
            "persistence": self.persistence_url,
            "options": options,
            "max_dispatches": max_dispatches,
        }
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "error"}
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        child = Child(proc)
        self._children.append(child)
        return child

    def close(self) -> None:
        for conductor in self._conductors:
            conductor.stop()
        for thread in self._threads:
            thread.join(PATIENCE)
        for child in self._children:
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait(PATIENCE)
            if child.proc.stdout is not None:
                child.proc.stdout.close()
        for board in self._boards:
            board.close()
        self.persistence.close()


def sqlite_conf(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "board": "sqlite",
        "connection": f"sqlite:///{tmp_path / 'board.db'}",
        "lease": LEASE,
        **extra,
    }


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """SQLite board and SQLite persistence, both under ``tmp_path``."""
    environment = Env(tmp_path, sqlite_conf(tmp_path), f"sqlite:///{tmp_path / 'flows.db'}")
    try:
        yield environment
    finally:
        environment.close()


def record_events(conductor: Conductor) -> list[tuple[str, str]]:
    """``(event, job name)`` of every event the conductor publishes from now on."""
    events: list[tuple[str, str]] = []
    conductor.notifier.register(
        conductor.notifier.ANY,
        lambda event, details: events.append((event, details["job"].name)),
    )
    return events


def wait_until(predicate: Callable[[], object], timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)
