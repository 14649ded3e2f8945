"""Flow ownership as the backends' own tests exercise it, beyond the shared contract.

:func:`race_claims` has processes race to claim the same flows. Threads of one process
share a GIL and often one backend object; processes share only the store, as two engines
resuming one flow after a crash do. Each child opens the backend, says it is ready, then
claims each flow it is sent as soon as it reads it; the parent sends every flow to all
children at once. Children stay alive until the parent is done, because an owner on this
host whose process is gone may be taken over (that would be a second legitimate winner).

:func:`check_owner_writes` makes every kind of write an engine makes, as the owner.
:func:`saved_flow` saves an empty flow detail (in a book of its own) to claim.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

from taskflow import states
from taskflow.persistence import models

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from taskflow.persistence import base

__all__ = ["check_owner_writes", "race_claims", "saved_flow"]

_CHILD = """
import json, sys
from taskflow import exceptions as exc
from taskflow.persistence import backends

backend = backends.fetch(json.loads(sys.argv[1]))
conn = backend.get_connection()
print("ready", flush=True)
for line in sys.stdin:
    flow = line.strip()
    if not flow:
        break
    try:
        print("won", conn.claim_flow(flow, lease=60).token, flush=True)
    except exc.FlowOwned:
        print("owned", flush=True)
"""


def _line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline().strip()


def race_claims(
    conf: Mapping[str, Any], flows: Sequence[str], processes: int = 2
) -> list[list[str]]:
    """Have ``processes`` processes claim each of ``flows`` at the same moment.

    Args:
        conf: the backend's configuration (given to ``backends.fetch`` in each child).
        flows: uuids of saved flow details, claimed one after the other.

    Returns:
        For each flow, every child's answer: ``"won <token>"`` or ``"owned"``.
    """
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(dict(conf))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        assert [_line(child) for child in children] == ["ready"] * processes
        answers = []
        for flow in flows:
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"{flow}\n")
                child.stdin.flush()
            answers.append([_line(child) for child in children])
        return answers
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=30)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()


def check_owner_writes(
    owner: base.Connection, reader: base.Connection, fd: models.FlowDetail
) -> None:
    """Make every kind of write an engine makes through ``owner``, which owns ``fd`` (after
    renewing it twice: renewals must not break the fence), and check ``reader`` sees them."""
    ownership = owner.read_ownership(fd.uuid)
    assert ownership is not None
    for _ in range(2):
        owner.renew_flow(fd.uuid, ownership.token, lease=30)
    ad = next(iter(fd))
    ad.state = states.SUCCESS
    owner.update_atom_details(ad)
    added = models.TaskDetail("added", str(uuid.uuid4()))
    fd.add(added)
    owner.update_flow_details(fd)
    fd.state = states.SUCCESS
    owner.update_flow_record(fd)
    loose = models.TaskDetail("loose", str(uuid.uuid4()))
    owner.update_atom_details(loose, ignore_missing=True)  # a record created, fenced
    stored = reader.get_flow_details(fd.uuid)
    assert stored.state == states.SUCCESS
    assert stored.find(ad.uuid).state == states.SUCCESS  # type: ignore[union-attr]
    assert stored.find(added.uuid) is not None
    assert reader.get_atom_details(loose.uuid).name == "loose"


def check_takeover_fences(owner: base.Connection, thief: base.Connection, lease: float) -> None:
    """``owner`` claims a flow for ``lease`` seconds and writes; once ``thief`` took it over
    (the lease lapsed), each of ``owner``'s writes is refused, even those a backend could
    answer from what it remembers of the earlier ones."""
    import time

    from taskflow import exceptions as exc

    book = models.LogBook("book")
    fd = models.FlowDetail("flow", str(uuid.uuid4()))
    ad = models.TaskDetail("atom", str(uuid.uuid4()))
    fd.add(ad)
    book.add(fd)
    owner.save_logbook(book)
    owner.claim_flow(fd.uuid, lease=lease)
    ad.state = states.RUNNING
    owner.update_atom_details(ad)
    owner.update_flow_details(fd)
    time.sleep(lease + 0.05)
    thief.claim_flow(fd.uuid, lease=30)
    ad.state = states.SUCCESS
    for write in (
        lambda: owner.update_atom_details(ad),
        lambda: owner.update_flow_details(fd),
        lambda: owner.update_flow_record(fd),
    ):
        try:
            write()
        except exc.OwnershipLost:
            continue
        raise AssertionError("a write of the old owner went through")
    assert thief.get_atom_details(ad.uuid).state == states.RUNNING


def saved_flow(backend: base.Backend, name: str = "owned") -> models.FlowDetail:
    """A new, empty flow detail saved in a book of its own (the schema upgraded first)."""
    book = models.LogBook(name)
    detail = models.FlowDetail(name, str(uuid.uuid4()))
    book.add(detail)
    with backend.get_connection() as conn:
        conn.upgrade()
        conn.save_logbook(book)
    return detail
