"""Drives upstream TaskFlow 6.5's ZookeeperJobBoard for the mixed-fleet tests (run by upstream).

Run as ``python _upstream_zookeeper.py '<json board conf>'`` under an interpreter that
imports upstream TaskFlow (see ``tests/helpers/upstream_taskflow.py``); it imports nothing
of this repository. It first prints ``{"taskflow": <file upstream was imported from>}``,
then answers one JSON command per stdin line with one JSON line:

``{"op": "post", "name", "details", "priority", "book": [name, uuid] | null}``
    -> ``{"uuid"}``
``{"op": "list"}`` -> ``{"jobs": [{"uuid", "name", "details", "priority", "state",
    "owner", "book": [name, uuid] | null}]}`` in upstream's order
``{"op": "claim" | "consume" | "abandon" | "trash", "uuid", "who"}`` -> ``{"ok": true}``
    or ``{"error": <exception class name>, "message"}``
"""

from __future__ import annotations

import json
import sys

import taskflow
from taskflow.jobs import backends
from taskflow.persistence import models


def _jobs(board):
    return list(board.iterjobs(ensure_fresh=True))


def _describe(board, job):
    book = None if job.book_uuid is None else [job.book_name, job.book_uuid]
    return {
        "uuid": job.uuid,
        "name": job.name,
        "details": job.details,
        "priority": job.priority.value,
        "state": job.state,
        "owner": board.find_owner(job),
        "book": book,
    }


def _answer(board, command):
    op = command["op"]
    if op == "post":
        book = None
        if command.get("book"):
            book = models.LogBook(command["book"][0], uuid=command["book"][1])
        job = board.post(
            command["name"], book=book, details=command.get("details"), priority=command["priority"]
        )
        return {"uuid": job.uuid}
    if op == "list":
        return {"jobs": [_describe(board, job) for job in _jobs(board)]}
    try:
        job = next(job for job in _jobs(board) if job.uuid == command["uuid"])
        getattr(board, op)(job, command["who"])
    except Exception as err:
        return {"error": type(err).__name__, "message": str(err)}
    return {"ok": True}


def main() -> None:
    board = backends.fetch("upstream", json.loads(sys.argv[1]))
    board.connect()
    print(json.dumps({"taskflow": taskflow.__file__}), flush=True)
    try:
        for line in sys.stdin:
            print(json.dumps(_answer(board, json.loads(line))), flush=True)
    finally:
        board.close()


if __name__ == "__main__":
    main()
