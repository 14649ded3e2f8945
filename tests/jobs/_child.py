"""A claimant in a process of its own, for the contract's lease and concurrency tests.

Run as ``python _child.py '<json {"name":..., "conf":...}>' <mode> <who> [job uuid]``; it
imports only taskflow, so it works for every board kind. It prints one JSON line per step
and takes commands from stdin:

``hold``  claims the job, prints ``{"token": n}``, then waits for a line: ``consume``
          tries to consume it and prints ``{"consume": "ok" | "<error class>"}``.
``race``  prints ``{"ready": true}``, waits for ``go``, tries to claim every unclaimed job,
          prints ``{"claimed": [uuids]}`` and holds them until stdin has another line
          (or closes).
"""

from __future__ import annotations

import json
import sys

from taskflow.jobs import backends


def _say(**values: object) -> None:
    print(json.dumps(values), flush=True)


def main() -> None:
    spec, mode, who = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    board = backends.fetch(spec["name"], spec["conf"])
    board.connect()
    try:
        if mode == "hold":
            job = next(j for j in board.iterjobs() if j.uuid == sys.argv[4])
            board.claim(job, who)
            _say(token=getattr(job, "token", None))
            if sys.stdin.readline().strip() == "consume":
                try:
                    board.consume(job, who)
                    _say(consume="ok")
                except Exception as err:
                    _say(consume=type(err).__name__)
        elif mode == "race":
            jobs = list(board.iterjobs(only_unclaimed=True))
            _say(ready=True)
            sys.stdin.readline()
            claimed = []
            for job in jobs:
                try:
                    board.claim(job, who)
                except Exception:  # UnclaimableJob: another claimant was first
                    continue
                claimed.append(job.uuid)
            _say(claimed=claimed)
            # Keep the board open until the test is done with the claims: on a board whose
            # claims end with its session (ZooKeeper), closing would release them at once.
            sys.stdin.readline()
    finally:
        board.close()


if __name__ == "__main__":
    main()
