"""What the jobboard contract (``contract.py``) runs on.

Each ``test_contract_<kind>.py`` defines a ``boards`` fixture returning a
:class:`BoardFactory` for a board of its own (a fresh database, schema or key prefix per
test, so tests never see each other's jobs and may run against shared servers).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from taskflow.jobs import backends

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from taskflow.jobs.base import JobBoard

CHILD = Path(__file__).with_name("_child.py")


class BoardFactory:
    """Boards on one shared store, closed at the end of the test.

    Args:
        conf: the configuration every board gets (JSON-able: children receive it).
        inject_malformed: writes malformed records on the board and returns, for each,
            text its warning must contain.
    """

    def __init__(self, conf: dict[str, Any], inject_malformed: Callable[[], list[str]]) -> None:
        self.conf = conf
        self.inject_malformed = inject_malformed
        self._boards: list[JobBoard] = []
        self._children: list[subprocess.Popen[str]] = []

    def make(self, name: str = "board", **overrides: Any) -> JobBoard:
        """A connected board (``overrides`` change its configuration, e.g. ``lease``)."""
        kwargs = _kwargs(overrides)
        board = backends.fetch(name, {**self.conf, **overrides}, **kwargs)
        board.connect()
        self._boards.append(board)
        return board

    def child(self, mode: str, who: str, *args: str, **overrides: Any) -> subprocess.Popen[str]:
        """A claimant process (see ``_child.py``) on the same board."""
        spec = json.dumps({"name": "child", "conf": {**self.conf, **overrides}})
        env = {**os.environ, "PYTHONWARNINGS": "error"}
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), spec, mode, who, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._children.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._children:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for board in self._boards:
            board.close()


def _kwargs(overrides: dict[str, Any]) -> dict[str, Any]:
    # Constructor keywords travel in ``overrides`` beside conf keys; split them out.
    return {k: overrides.pop(k) for k in ("persistence",) if k in overrides}


@contextlib.contextmanager
def board_factory(
    conf: dict[str, Any], inject_malformed: Callable[[], list[str]]
) -> Iterator[BoardFactory]:
    factory = BoardFactory(conf, inject_malformed)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def board(boards: BoardFactory) -> JobBoard:
    """A connected board of the kind under test."""
    return boards.make()
