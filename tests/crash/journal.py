"""The journal: an append-only file of JSON lines, one per event, shared by all processes.

Every line is one ``os.write`` on a descriptor opened with ``O_APPEND``: the kernel appends
it whole, in the order of the calls, whichever process or thread makes them, and a process
killed by SIGKILL loses nothing it wrote (the data is in the page cache, which outlives the
process; only a machine crash would need ``fsync``, and that is not what is tested here).
So the file is a total order of what every child did, up to the instant it died.

Line kinds (``k``):

* ``ready`` a child is about to load and run the flow; ``done`` it returned (``state``);
  ``error`` it raised something unexpected (``tb``).
* ``call`` an atom's ``execute``/``revert`` (``act``) ``start``/``end`` (``ph``) for attempt
  ``att`` (0 outside the retried subflow), ``ok`` on ends.
* ``saving``/``saved`` around every write the engine makes through the backend
  connection; ``saving`` describes the records written (``atoms``: ``[name, desc]``,
  ``flow``: the flow state or None), ``w`` numbers the writes of one process.
* ``selfkill`` a child is about to SIGKILL itself (``why``).
* ``killed`` written by the parent once a killed child is reaped: which records of the
  write the child was in the middle of (if any) reached the store (``applied``).
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["Journal", "read"]


class Journal:
    """Appends events to a journal file (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, kind: str, **fields: Any) -> None:
        """Append one event (``k`` = kind, ``pid`` = this process)."""
        line = json.dumps({"k": kind, "pid": self.pid, **fields}, separators=(",", ":"))
        os.write(self._fd, line.encode() + b"\n")

    def close(self) -> None:
        os.close(self._fd)


def read(path: str) -> list[dict[str, Any]]:
    """Every event of a journal, in order.

    Raises:
        ValueError: a line is not whole JSON (appends are atomic, so this is a harness bug).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    events = []
    for number, line in enumerate(data.splitlines(), 1):
        try:
            events.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: torn journal line {line!r}") from err
    return events
