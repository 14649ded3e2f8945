"""Drives upstream TaskFlow 6.5's RedisJobBoard for the mixed-fleet tests (run by upstream).

Run as ``python _upstream_redis.py '<json board conf>'`` under an interpreter that imports
upstream TaskFlow (see ``tests/helpers/upstream_taskflow.py``); it imports nothing of this
repository. It first prints ``{"taskflow": <file upstream was imported from>}``, then
answers one JSON command per stdin line with one JSON line:

``{"op": "post", "name", "details", "priority", "book": [name, uuid] | null}``
    -> ``{"uuid", "sequence"}``
``{"op": "list"}`` -> ``{"jobs": [{"uuid", "name", "details", "priority", "state",
    "owner", "book": [name, uuid] | null, "sequence", "created_on"}]}`` in upstream's order
``{"op": "claim", "uuid", "who", "expiry"?}``, ``{"op": "consume" | "abandon" | "trash",
    "uuid", "who"}`` -> ``{"ok": true}`` or ``{"error": <exception class name>}``
``{"op": "expires_in", "uuid"}`` -> ``{"expires_in": n}``
"""

from __future__ import annotations

import json
import sys

import taskflow
from taskflow.jobs.backends import impl_redis
from taskflow.persistence import models


def _find(board, uuid):
    for job in board.iterjobs(ensure_fresh=True):
        if job.uuid == uuid:
            return job
    raise LookupError(uuid)


def _owner(board, job):
    try:
        return board.find_owner(job)
    except TypeError:  # upstream's find_owner of an unclaimed job
        return None


def _describe(board, job):
    book = None if job.book_uuid is None else [job.book_name, job.book_uuid]
    return {
        "uuid": job.uuid,
        "name": job.name,
        "details": job.details,
        "priority": job.priority.value,
        "state": job.state,
        "owner": _owner(board, job),
        "book": book,
        "sequence": job.sequence,
        "created_on": job.created_on.isoformat(),
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
        return {"uuid": job.uuid, "sequence": job.sequence}
    if op == "list":
        return {"jobs": [_describe(board, job) for job in board.iterjobs(ensure_fresh=True)]}
    if op == "expires_in":
        return {"expires_in": _find(board, command["uuid"]).expires_in()}
    job = _find(board, command["uuid"])
    try:
        if op == "claim":
            board.claim(job, command["who"], expiry=command.get("expiry"))
        else:
            getattr(board, op)(job, command["who"])
    except Exception as err:
        return {"error": type(err).__name__, "message": str(err)}
    return {"ok": True}


def main() -> None:
    board = impl_redis.RedisJobBoard("upstream", json.loads(sys.argv[1]))
    board.connect()
    print(json.dumps({"taskflow": taskflow.__file__}), flush=True)
    try:
        for line in sys.stdin:
            try:
                answer = _answer(board, json.loads(line))
            except LookupError as err:
                answer = {"error": "LookupError", "message": str(err)}
            print(json.dumps(answer), flush=True)
    finally:
        board.close()


if __name__ == "__main__":
    main()
