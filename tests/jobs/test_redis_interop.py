"""A mixed fleet: upstream TaskFlow 6.5's Redis board and ours on one namespace.

During a migration, conductors of both kinds share a board: a job either side posts must be
listed, claimed and consumed by the other, each side must respect the other's claims, and
our extra state (tokens, attempts, change counter) must not disturb upstream. Upstream runs
in a child interpreter of its own (``_upstream_redis.py``, driven over stdin/stdout),
installed outside the repository as for the examples test (``helpers/upstream_taskflow.py``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow._jobs.store import Outcome
from taskflow.jobs import backends
from taskflow.jobs.base import JobPriority
from taskflow.persistence import models
from tests.helpers import services
from tests.helpers.redis_boards import isolated_namespace, raw_client
from tests.helpers.upstream_taskflow import prepare_or_skip
from tests.jobs.upstream_board import UpstreamBoard

services.need_module("redis", "redis")
services.need_module("msgpack", "redis")

pytestmark = [pytest.mark.redis, pytest.mark.slow]

DRIVER = Path(__file__).with_name("_upstream_redis.py")


@pytest.fixture(scope="module")
def upstream_python():
    return prepare_or_skip(("redis", "msgpack"))


@pytest.fixture
def fleet(redis_url, upstream_python):
    """(our board, upstream board, raw client) on a namespace of the test's own."""
    with isolated_namespace(redis_url, prefix="tfmixed") as (conf, _namespace):
        ours = backends.fetch("ours", conf)
        ours.connect()
        upstream = UpstreamBoard(
            upstream_python, DRIVER, {k: v for k, v in conf.items() if k != "board"}
        )
        client = raw_client(redis_url)
        try:
            yield ours, upstream, client, conf
        finally:
            client.close()
            upstream.close()
            ours.close()


def _ours(board, uuid):
    return next(job for job in board.iterjobs() if job.uuid == uuid)


def test_jobs_upstream_posts_are_listed_claimed_and_consumed_by_ours(fleet):
    ours, upstream, _client, _conf = fleet
    book = ["the-book", "5c0a4c1e-0000-4000-8000-000000000001"]
    posted = [
        upstream("post", name="first", details={"flow_uuid": "f-1", "n": [1, 2]},
                 priority="NORMAL", book=book),
        upstream("post", name="second", details={}, priority="NORMAL"),
        upstream("post", name="urgent", details={"x": None}, priority="HIGH"),
        upstream("post", name="third", details={"k": "v"}, priority="NORMAL"),
    ]  # fmt: skip
    uuids = [p["uuid"] for p in posted]

    # Listed with everything upstream wrote, by priority then oldest first (upstream's own
    # order is newest first).
    jobs = list(ours.iterjobs())
    assert [j.name for j in jobs] == ["urgent", "first", "second", "third"]
    assert [j["name"] for j in upstream("list")["jobs"]] == ["urgent", "third", "second", "first"]
    first = jobs[1]
    assert first.uuid == uuids[0]
    assert first.details == {"flow_uuid": "f-1", "n": [1, 2]}
    assert first.priority is JobPriority.NORMAL
    assert (first.book_name, first.book_uuid) == tuple(book)
    assert first.sequence == posted[0]["sequence"]
    seen_by_upstream = upstream.jobs()[first.uuid]
    created = datetime.fromisoformat(seen_by_upstream["created_on"]).replace(tzinfo=UTC)
    assert first.created_on == created
    assert first.state == states.UNCLAIMED

    # Ours claims: upstream sees our claim and cannot take the job.
    ours.claim(first, "our-conductor")
    assert upstream.jobs()[first.uuid]["state"] == states.CLAIMED
    assert upstream.jobs()[first.uuid]["owner"] == "our-conductor"
    assert upstream("claim", uuid=first.uuid, who="their-conductor")["error"] == "UnclaimableJob"
    assert upstream("consume", uuid=first.uuid, who="their-conductor")["error"] == "JobFailure"
    ours.consume(first, "our-conductor")
    assert first.uuid not in upstream.jobs()

    # Abandoned by ours, the job is upstream's to claim; trashed by ours, it is gone.
    second = _ours(ours, uuids[1])
    ours.claim(second, "our-conductor")
    ours.abandon(second, "our-conductor")
    assert upstream.jobs()[second.uuid]["state"] == states.UNCLAIMED
    assert upstream("claim", uuid=second.uuid, who="their-conductor") == {"ok": True}
    assert upstream("consume", uuid=second.uuid, who="their-conductor") == {"ok": True}
    urgent = _ours(ours, uuids[2])
    ours.claim(urgent, "our-conductor")
    ours.trash(urgent, "our-conductor", reason="bad flow")
    assert set(upstream.jobs()) == {uuids[3]}
    assert [(t.job.name, t.reason) for t in ours.iter_trash()] == [("urgent", "bad flow")]
    assert [j.uuid for j in ours.iterjobs()] == [uuids[3]]


def test_jobs_ours_posts_are_listed_claimed_and_consumed_by_upstream(fleet):
    ours, upstream, client, conf = fleet
    book = models.LogBook("our-book")
    job = ours.post("ours-1", book=book, details={"flow_uuid": "f-9", "store": {"a": 1}})
    low = ours.post("ours-2", priority="low")

    seen = upstream.jobs()
    assert set(seen) == {job.uuid, low.uuid}
    assert seen[job.uuid] == {
        "uuid": job.uuid,
        "name": "ours-1",
        "details": {"flow_uuid": "f-9", "store": {"a": 1}},
        "priority": "NORMAL",
        "state": states.UNCLAIMED,
        "owner": None,
        "book": ["our-book", book.uuid],
        "sequence": job.sequence,
        "created_on": job.created_on.replace(tzinfo=None).isoformat(),
    }
    assert seen[low.uuid]["priority"] == "LOW"
    assert seen[low.uuid]["book"] is None

    # Upstream claims as upstream does (never lapsing): ours respects it.
    assert upstream("claim", uuid=job.uuid, who="their-conductor") == {"ok": True}
    assert ours.find_owner(job) == "their-conductor"
    assert job.state == states.CLAIMED
    assert job.expires_in() == -1
    with pytest.raises(exc.UnclaimableJob):
        ours.claim(job, "our-conductor")
    with pytest.raises(exc.JobFailure):
        ours.consume(job, "our-conductor")
    assert upstream("consume", uuid=job.uuid, who="their-conductor") == {"ok": True}
    assert job.state == states.COMPLETE
    assert [j.uuid for j in ours.iterjobs()] == [low.uuid]

    # Upstream claims with an expiry: ours takes the job once it lapsed.
    assert upstream("claim", uuid=low.uuid, who="their-conductor", expiry=0.3) == {"ok": True}
    with pytest.raises(exc.UnclaimableJob):
        ours.claim(low, "our-conductor")
    deadline = time.monotonic() + 10
    while True:
        try:
            ours.claim(low, "our-conductor")
            break
        except exc.UnclaimableJob:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert upstream("expires_in", uuid=low.uuid)["expires_in"] > 0  # our lease
    assert upstream("consume", uuid=low.uuid, who="their-conductor")["error"] == "JobFailure"
    ours.consume(low, "our-conductor")
    assert upstream.jobs() == {}

    # Nothing of these jobs is left behind but the board's counters.
    namespace = conf["namespace"]
    left = {key.decode() for key in client.scan_iter(match=f"{namespace}:*")}
    assert left <= {f"{namespace}:{name}" for name in ("sequence", "changes", "claims")}
    assert not client.hlen(f"{namespace}:claims")


def test_a_lapsed_claim_of_ours_taken_by_upstream_under_the_same_name_is_fenced(fleet):
    ours, upstream, _client, _conf = fleet
    job = ours.post("contested")
    store = ours.store
    token = store.claim(job.uuid, "conductor-1", 0.2)  # a holder that stopped renewing
    time.sleep(0.4)
    assert ours.find_owner(job) is None
    assert upstream("claim", uuid=job.uuid, who="conductor-1") == {"ok": True}
    assert ours.find_owner(job) == "conductor-1"
    # The old holder wakes up: its renewal and release are refused, although the owner's
    # name is the same, because upstream's claim is not the one it made.
    assert store.renew(job.uuid, "conductor-1", token, 5.0) is False
    with pytest.raises(exc.JobFailure, match="was lost"):
        store.release(job.uuid, "conductor-1", token, Outcome.CONSUME, None)
    assert upstream("consume", uuid=job.uuid, who="conductor-1") == {"ok": True}
    assert job.state == states.COMPLETE


def test_an_upstream_holder_of_a_job_ours_abandoned_counts_in_attempts(fleet):
    ours, upstream, _client, _conf = fleet
    job = ours.post("retried")
    ours.claim(job, "ours")
    ours.abandon(job, "ours")
    assert upstream("claim", uuid=job.uuid, who="theirs") == {"ok": True}
    assert upstream("abandon", uuid=job.uuid, who="theirs") == {"ok": True}
    seen = _ours(ours, job.uuid)
    assert seen.attempts == 1  # ours counted its own; upstream's board counts nothing
    ours.claim(seen, "ours")
    assert seen.token == 2
    ours.consume(seen, "ours")
