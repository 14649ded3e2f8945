"""A conductor in a process of its own, for the crash, pause and multi-process tests.

Run as ``python _child.py '<json spec>'`` with the spec's keys ``kind``, ``name``,
``board`` (the board configuration), ``persistence`` (a URL) and ``options`` (conductor
keyword arguments). It prints one JSON line per conductor event (``{"event": ...,
"job": uuid, "token": its claim's fencing token}``), per ended dispatch
(``{"dispatched": uuid}``) and per warning logged by taskflow (``{"warning": text}``), and
``{"ready": true}`` once its board is connected; each line also has ``"t"``, the
``time.monotonic()`` it was printed at (one clock for every process of the machine).
SIGTERM asks for a graceful stop (``conductor.stop()``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as board_backends
from taskflow.persistence import backends as persistence_backends

_lock = threading.Lock()


def say(**values: Any) -> None:
    with _lock:
        print(json.dumps({**values, "t": time.monotonic()}, default=str), flush=True)


class _Warnings(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}]"
        say(warning=text)


def main() -> None:
    spec = json.loads(sys.argv[1])
    handler = _Warnings(logging.WARNING)
    logging.getLogger("taskflow").addHandler(handler)
    persistence = persistence_backends.fetch(spec["persistence"])
    board = board_backends.fetch("board", spec["board"], persistence=persistence)
    board.connect()
    conductor = conductor_backends.fetch(
        spec["kind"], spec["name"], board, persistence=persistence, **spec.get("options", {})
    )
    original = conductor._dispatch_job

    def dispatch(job: Any) -> None:
        try:
            original(job)
        finally:
            say(dispatched=job.uuid)

    conductor._dispatch_job = dispatch  # type: ignore[method-assign]
    conductor.notifier.register(
        conductor.notifier.ANY,
        lambda event, details: say(
            event=event, job=details["job"].uuid, token=getattr(details["job"], "token", None)
        ),
    )
    # stop() from a thread of its own: the handler runs in the main thread, which may be
    # inside the conductor (holding its locks) when the signal arrives.
    signal.signal(
        signal.SIGTERM, lambda signum, frame: threading.Thread(target=conductor.stop).start()
    )
    say(ready=True)
    try:
        conductor.run(spec.get("max_dispatches"))
    finally:
        with contextlib.suppress(Exception):
            conductor.close()
        persistence.close()
        say(done=True)


if __name__ == "__main__":
    main()
