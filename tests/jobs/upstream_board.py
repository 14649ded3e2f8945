"""An upstream TaskFlow 6.5 jobboard in a child interpreter, driven over stdin/stdout.

The mixed-fleet tests (``test_redis_interop.py``, ``test_zookeeper_interop.py``) start one
with the driver script of their board kind (``_upstream_redis.py``...): the child answers
one JSON line per JSON command (``{"op": ..., ...}``), and says first where its
``taskflow`` comes from, which must be upstream's install, never this tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.helpers.upstream_taskflow import UpstreamPython

__all__ = ["UpstreamBoard"]


class UpstreamBoard:
    """An upstream board in a child process, configured with ``conf``."""

    def __init__(self, python: UpstreamPython, driver: Path, conf: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [*python.argv, str(driver), json.dumps(conf)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **python.env},
        )
        hello = self._read()
        if python.root is not None:
            # It must really be upstream, not this tree's taskflow.
            assert Path(hello["taskflow"]).resolve().is_relative_to(python.root.resolve())

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"upstream driver exited with {self.proc.wait(timeout=30)}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {job["uuid"]: job for job in self("list")["jobs"]}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
