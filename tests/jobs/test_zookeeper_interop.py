"""A mixed fleet: upstream TaskFlow 6.5's ZooKeeper board and ours on one jobs path.

During a migration, conductors of both kinds share a board: a job either side posts must be
listed, claimed and consumed by the other, each side must respect the other's claims, and
our extra state (the ``claims`` counter in a job's record, the ``token`` in its lock, the
trash reason) must not disturb upstream. Upstream runs in a child interpreter of its own
(``_upstream_zookeeper.py``, driven over stdin/stdout), installed outside the repository as
for the examples test (``helpers/upstream_taskflow.py``; ``TASKFLOW_TEST_UPSTREAM_PYTHON``
may name an interpreter that has it, e.g. ``/work/upstream-venv/bin/python``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.jobs import backends
from taskflow.jobs.base import JobPriority
from taskflow.persistence import models
from tests.helpers import services
from tests.helpers.databases import isolated_zookeeper_root
from tests.helpers.upstream_taskflow import prepare_or_skip
from tests.jobs.upstream_board import UpstreamBoard

services.need_module("kazoo", "zookeeper")

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]

DRIVER = Path(__file__).with_name("_upstream_zookeeper.py")


@pytest.fixture(scope="module")
def upstream_python():
    return prepare_or_skip(("kazoo",))


@pytest.fixture
def fleet(zk_hosts, upstream_python):
    """(our board, upstream board, kazoo client, jobs path) on a root of the test's own."""
    from kazoo.client import KazooClient

    with isolated_zookeeper_root(zk_hosts, prefix="tfmixed") as root:
        conf = {"board": "zookeeper", "hosts": zk_hosts, "path": f"{root}/jobs"}
        ours = backends.fetch("ours", conf)
        ours.connect()
        upstream = UpstreamBoard(upstream_python, DRIVER, conf)
        client = KazooClient(hosts=zk_hosts)
        client.start(timeout=10)
        try:
            yield ours, upstream, client, f"{root}/jobs"
        finally:
            client.stop()
            client.close()
            upstream.close()
            ours.close()


def _ours(board, uuid):
    return next(job for job in board.iterjobs() if job.uuid == uuid)


def test_jobs_upstream_posts_are_listed_claimed_and_consumed_by_ours(fleet):
    ours, upstream, client, path = fleet
    book = ["the-book", "5c0a4c1e-0000-4000-8000-000000000001"]
    posted = [
        upstream("post", name="first", details={"flow_uuid": "f-1", "n": [1, 2]},
                 priority="NORMAL", book=book),
        upstream("post", name="second", details={}, priority="NORMAL"),
        upstream("post", name="urgent", details={"x": None}, priority="HIGH"),
        upstream("post", name="third", details={"k": "v"}, priority="NORMAL"),
    ]  # fmt: skip
    uuids = [p["uuid"] for p in posted]

    # Listed with everything upstream wrote, by priority then oldest first.
    jobs = list(ours.iterjobs())
    assert [j.name for j in jobs] == ["urgent", "first", "second", "third"]
    first = jobs[1]
    assert first.uuid == uuids[0]
    assert first.details == {"flow_uuid": "f-1", "n": [1, 2]}
    assert first.priority is JobPriority.NORMAL
    assert (first.book_name, first.book_uuid) == tuple(book)
    assert first.state == states.UNCLAIMED
    assert first.path.startswith(f"{path}/job")
    _data, stat = client.get(first.path)
    assert first.created_on.timestamp() == stat.ctime / 1000  # the znode's, as upstream

    # Ours claims: upstream sees our claim and cannot take or finish the job.
    ours.claim(first, "our-conductor")
    assert first.token == 1
    assert upstream.jobs()[first.uuid]["state"] == states.CLAIMED
    assert upstream.jobs()[first.uuid]["owner"] == "our-conductor"
    assert upstream("claim", uuid=first.uuid, who="their-conductor")["error"] == "UnclaimableJob"
    assert upstream("consume", uuid=first.uuid, who="their-conductor")["error"] == "JobFailure"
    ours.consume(first, "our-conductor")
    assert first.uuid not in upstream.jobs()

    # Abandoned by ours (its record now counts one claim), the job is upstream's to take.
    second = _ours(ours, uuids[1])
    ours.claim(second, "our-conductor")
    ours.abandon(second, "our-conductor")
    assert json.loads(client.get(second.path)[0])["claims"] == 1
    assert upstream.jobs()[second.uuid]["state"] == states.UNCLAIMED
    assert upstream("claim", uuid=second.uuid, who="their-conductor") == {"ok": True}
    assert ours.find_owner(second) == "their-conductor"
    assert second.state == states.CLAIMED
    assert upstream("consume", uuid=second.uuid, who="their-conductor") == {"ok": True}
    assert second.state == states.COMPLETE

    # Trashed by ours with a reason: gone for upstream, in ours' trash list.
    urgent = _ours(ours, uuids[2])
    ours.claim(urgent, "our-conductor")
    ours.trash(urgent, "our-conductor", reason="bad flow")
    assert set(upstream.jobs()) == {uuids[3]}
    assert [(t.job.name, t.reason) for t in ours.iter_trash()] == [("urgent", "bad flow")]
    assert [j.uuid for j in ours.iterjobs()] == [uuids[3]]


def test_jobs_ours_posts_are_listed_claimed_and_consumed_by_upstream(fleet):
    ours, upstream, _client, _path = fleet
    book = models.LogBook("our-book")
    job = ours.post("ours-1", book=book, details={"flow_uuid": "f-9", "store": {"a": 1}})
    low = ours.post("ours-2", priority="low")
    spare = ours.post("ours-3", details={"n": [1]})

    seen = upstream.jobs()
    assert set(seen) == {job.uuid, low.uuid, spare.uuid}
    assert seen[job.uuid] == {
        "uuid": job.uuid,
        "name": "ours-1",
        "details": {"flow_uuid": "f-9", "store": {"a": 1}},
        "priority": "NORMAL",
        "state": states.UNCLAIMED,
        "owner": None,
        "book": ["our-book", book.uuid],
    }
    assert seen[low.uuid]["priority"] == "LOW"
    assert seen[low.uuid]["book"] is None

    # Upstream claims (a lock without our token): ours respects it.
    assert upstream("claim", uuid=job.uuid, who="their-conductor") == {"ok": True}
    assert ours.find_owner(job) == "their-conductor"
    assert job.state == states.CLAIMED
    with pytest.raises(exc.UnclaimableJob):
        ours.claim(job, "our-conductor")
    with pytest.raises(exc.JobFailure):
        ours.consume(job, "our-conductor")
    assert upstream("consume", uuid=job.uuid, who="their-conductor") == {"ok": True}
    assert job.state == states.COMPLETE
    assert job.uuid not in upstream.jobs()

    # Ours claims and abandons twice (the record changes under upstream's feet), then
    # upstream claims and trashes it; ours claims, upstream cannot.
    for _ in range(2):
        ours.claim(low, "our-conductor")
        ours.abandon(low, "our-conductor")
    assert _ours(ours, low.uuid).attempts == 2
    assert upstream("claim", uuid=low.uuid, who="their-conductor") == {"ok": True}
    assert upstream.jobs()[low.uuid]["owner"] == "their-conductor"
    assert upstream("trash", uuid=low.uuid, who="their-conductor") == {"ok": True}
    assert low.state == states.COMPLETE
    ours.claim(spare, "our-conductor")
    assert upstream.jobs()[spare.uuid]["owner"] == "our-conductor"
    assert upstream("claim", uuid=spare.uuid, who="their-conductor")["error"] == "UnclaimableJob"
    ours.consume(spare, "our-conductor")
    assert upstream.jobs() == {}
    assert list(ours.iterjobs()) == []


def test_a_claim_lapses_with_its_holders_session_for_both(fleet, zk_hosts):
    ours, upstream, _client, path = fleet
    uuid = upstream("post", name="j", details={}, priority="NORMAL")["uuid"]
    # Our second board claims, then its session ends (closed): upstream can take the job.
    other = backends.fetch("other", {"board": "zookeeper", "hosts": zk_hosts, "path": path})
    other.connect()
    try:
        other.claim(_ours(other, uuid), "our-conductor")
        assert upstream.jobs()[uuid]["owner"] == "our-conductor"
    finally:
        other.close()
    assert upstream("claim", uuid=uuid, who="their-conductor") == {"ok": True}
    # Upstream's session ends (its process exits): ours can take the job.
    upstream.close()
    job = _ours(ours, uuid)
    ours.claim(job, "our-conductor")
    assert job.token == 2  # upstream's claim counted no token: ours go on from the last one
    ours.consume(job, "our-conductor")
