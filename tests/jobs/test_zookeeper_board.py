"""What only the ZooKeeper board does: its on-board layout (upstream TaskFlow 6.5's, observed
black-box), claims bound to the holder's session, configuration and connection errors."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.jobs import backends
from taskflow.jobs.backends import impl_zookeeper
from taskflow.jobs.base import POSTED, REMOVAL
from taskflow.persistence import models
from taskflow.types.entity import Entity
from tests.helpers import services
from tests.helpers.databases import isolated_zookeeper_root

services.need_module("kazoo", "zookeeper")

pytestmark = pytest.mark.zookeeper


@pytest.fixture
def root(zk_hosts):
    """A root path of the test's own, deleted after."""
    with isolated_zookeeper_root(zk_hosts, prefix="tfzkboard") as path:
        yield path


@pytest.fixture
def client(zk_hosts):
    """A plain kazoo client, to look at what the board wrote."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def make(zk_hosts, root):
    boards = []

    def make(name="board", **conf):
        kwargs = {k: conf.pop(k) for k in ("client", "emit_notifications") if k in conf}
        full = {"board": "zookeeper", "hosts": zk_hosts, "path": f"{root}/jobs", **conf}
        board = backends.fetch(name, full, **kwargs)
        board.connect()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.close()


# -- layout -----------------------------------------------------------------------------------


def test_layout_is_upstreams(make, client, root):
    board = make()
    assert isinstance(board, impl_zookeeper.ZookeeperJobBoard)
    assert (board.path, board.trash_path) == (f"{root}/jobs", f"{root}/.trash")
    assert client.exists(f"{root}/jobs")
    assert client.exists(f"{root}/.trash")

    book = models.LogBook("b")
    job = board.post("j", book=book, details={"store": {"x": 1}}, priority="high")
    plain = board.post("k")
    assert isinstance(job, impl_zookeeper.ZookeeperJob)
    assert sorted(client.get_children(f"{root}/jobs")) == ["job0000000000", "job0000000001"]
    assert job.path == f"{root}/jobs/job0000000000"
    data, stat = client.get(job.path)
    assert stat.ephemeralOwner == 0
    # Exactly upstream's keys: no "book" at all when there is none.
    assert json.loads(data) == {
        "uuid": job.uuid,
        "name": "j",
        "priority": "HIGH",
        "details": {"store": {"x": 1}},
        "book": {"name": "b", "uuid": book.uuid},
    }
    assert json.loads(client.get(plain.path)[0]) == {
        "uuid": plain.uuid,
        "name": "k",
        "priority": "NORMAL",
        "details": {},
    }
    assert (job.sequence, plain.sequence) == (0, 1)
    assert job.created_on.timestamp() == stat.ctime / 1000

    # A claim: the record counts it, the ephemeral lock names its holder, token and lease
    # (set in the claim's transaction: version 1, so a renewal never expects 0).
    board.claim(job, "me")
    lock, lock_stat = client.get(job.lock_path)
    assert json.loads(lock) == {"owner": "me", "token": 1, "lease": 3.0}
    assert lock_stat.ephemeralOwner == board.store._client.client_id[0]
    assert lock_stat.version == 1
    assert json.loads(client.get(job.path)[0])["claims"] == 1

    # Trash: the record moves beside the jobs with the reason, the lock goes.
    board.trash(job, "me", reason="broken")
    assert sorted(client.get_children(f"{root}/jobs")) == ["job0000000001"]
    trashed = json.loads(client.get(f"{root}/.trash/job0000000000")[0])
    assert trashed["uuid"] == job.uuid
    assert (trashed["reason"], trashed["attempts"]) == ("broken", 0)

    board.register_entity(Entity("conductor", "c-1", {"pid": 1}))
    data, stat = client.get(f"{root}/.entities/conductor/c-1")
    assert json.loads(data) == {"kind": "conductor", "name": "c-1", "metadata": {"pid": 1}}
    assert stat.ephemeralOwner != 0  # listed while its process lives, as upstream


def test_a_consume_removes_job_and_lock_in_one_go(make, client, root):
    board = make()
    job = board.post("j")
    board.claim(job, "me")
    board.consume(job, "me")
    assert client.get_children(f"{root}/jobs") == []
    assert client.get_children(f"{root}/.trash") == []


def test_uri_form(zk_hosts, root):
    board = backends.fetch("b", f"zookeeper://{zk_hosts}?path={root}/elsewhere")
    with board:
        board.post("j")
        assert board.path == f"{root}/elsewhere"
        assert board.job_count == 1


# -- sessions ---------------------------------------------------------------------------------


def _expire(zk_hosts, board) -> None:
    """End the board's ZooKeeper session from outside, as the server does when the holder
    stays silent past the session timeout (a second client on the same session closes it)."""
    from kazoo.client import KazooClient

    session = board.store._client.client_id
    twin = KazooClient(hosts=zk_hosts, client_id=session)
    twin.start(timeout=10)
    twin.stop()
    twin.close()


def test_a_lost_session_loses_the_claim(make, zk_hosts):
    holder, other = make("holder", lease=0.6), make("other")
    job = holder.post("j")
    holder.claim(job, "me")
    token = job.token
    _expire(zk_hosts, holder)
    seen = next(iter(other.iterjobs()))
    deadline = time.monotonic() + 10
    while other.find_owner(seen) is not None:  # the server deletes the lock at once
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # The holder notices at its next renewal; the same name elsewhere can take the job.
    deadline = time.monotonic() + 10
    while holder.holds(job):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    other.claim(seen, "me")
    assert seen.token > token
    assert next(iter(other.iterjobs())).attempts == 1
    with pytest.raises(exc.JobFailure, match="was lost"):
        holder.consume(job, "me")
    other.consume(seen, "me")
    assert job.state == states.COMPLETE


def test_a_lapsed_lease_wakes_waiters_and_is_taken_over_while_the_session_lives(make, client):
    holder, rescuer = make("holder", lease=0.6), make("rescuer")
    job = holder.post("j")
    holder.claim(job, "me")
    time.sleep(0.5)
    assert client.get(job.lock_path)[1].version > 1  # renewed by the heartbeat
    # The holder stops renewing (paused, say) while its session lives on: the lease, not
    # the session (4 s at least), ends the claim.
    holder.store.renew = lambda *args: True
    stopped = time.monotonic()
    (seen,) = list(rescuer.iterjobs())
    # A lease running out changes no znode: the listing's timer wakes the waiter.
    woke = rescuer.wait_generation(rescuer.generation, 10)
    assert woke
    assert time.monotonic() - stopped < 0.6 + 1.0
    assert [j.uuid for j in rescuer.iterjobs(only_unclaimed=True)] == [job.uuid]
    assert rescuer.find_owner(seen) is None
    rescuer.claim(seen, "me")  # the same name: a replacement
    assert (seen.token, next(iter(rescuer.iterjobs())).attempts) == (2, 1)
    data, stat = client.get(job.lock_path)
    assert json.loads(data) == {"owner": "me", "token": 2, "lease": 3.0}
    assert stat.ephemeralOwner == rescuer.store._client.client_id[0]
    # The old holder is refused: its renewals, and its release, by token.
    del holder.store.renew
    assert not holder.store.renew(job.uuid, "me", 1, 0.6)
    with pytest.raises(exc.JobFailure, match="was lost"):
        holder.consume(job, "me")
    rescuer.consume(seen, "me")


def test_a_lock_without_a_lease_lapses_only_with_its_session(make, client, root):
    # Upstream's claims carry no lease: however old, they hold until their session ends.
    board = make(lease=0.6)
    job = board.post("j")
    client.create(job.lock_path, json.dumps({"owner": "upstream"}).encode(), ephemeral=True)
    time.sleep(1.0)
    assert board.find_owner(job) == "upstream"
    assert list(board.iterjobs(only_unclaimed=True)) == []
    with pytest.raises(exc.UnclaimableJob):
        board.claim(job, "me")
    client.delete(job.lock_path)  # as when upstream's session ends
    board.claim(job, "me")
    board.consume(job, "me")


def test_a_renewal_never_overwrites_a_lock_made_since(make, zk_hosts, client):
    holder = make("holder", lease=60)  # the heartbeat stays out of the way
    job = holder.post("j")
    holder.claim(job, "me")
    _expire(zk_hosts, holder)
    deadline = time.monotonic() + 10
    while client.exists(job.lock_path):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Upstream claims the job meanwhile (a fresh lock, data version 0, the record as it was).
    upstream = json.dumps({"owner": "upstream"}).encode()
    client.create(job.lock_path, upstream, ephemeral=True)
    deadline = time.monotonic() + 10
    while True:  # until the holder's client has a session again
        try:
            assert not holder.store.renew(job.uuid, "me", 1, 60)
            break
        except exc.JobFailure:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert client.get(job.lock_path)[0] == upstream


def test_session_timeout_defaults_to_the_lease(make):
    assert make("a").store.session_timeout == 3.0
    assert make("b", lease=7).store.session_timeout == 7.0
    assert make("c", lease=7, timeout=12).store.session_timeout == 12.0


# -- waiting and notifications ----------------------------------------------------------------


def test_an_idle_waiter_wakes_on_a_post_at_once(make):
    waiter, poster = make("waiter"), make("poster")
    waiter.wait_for_change(0.2)  # the initial (spurious) wake-up, if any
    woke: list[float] = []

    def wait() -> None:
        if waiter.wait_for_change(30):
            woke.append(time.monotonic())

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    posted = time.monotonic()
    poster.post("j")
    thread.join(30)
    assert woke
    assert woke[0] - posted < 2.0  # a watch, not a poll (typically a few ms)


def test_notifications_of_other_processes_changes(make):
    listener, quiet, writer = make("listener"), make("quiet", emit_notifications=False), make("w")
    events: list[tuple[str, str]] = []
    cond = threading.Condition()

    def record(event, details) -> None:
        with cond:
            events.append((event, details["job"].name))
            cond.notify_all()

    listener.notifier.register(listener.notifier.ANY, record)
    quiet.notifier.register(quiet.notifier.ANY, record)
    job = writer.post("j")
    with cond:
        assert cond.wait_for(lambda: (POSTED, "j") in events, 30)
    writer.claim(job, "w")
    writer.trash(job, "w")
    with cond:
        assert cond.wait_for(lambda: (REMOVAL, "j") in events, 30)
    assert events == [(POSTED, "j"), (REMOVAL, "j")]  # nothing from the quiet board


# -- bad input --------------------------------------------------------------------------------


def test_unknown_znodes_and_bad_locks_do_not_break_listing(make, client, root, caplog):
    board = make()
    job = board.post("j")
    client.create(f"{root}/jobs/stray", b"?")
    client.create(job.lock_path, b"\xff garbage", ephemeral=True)
    with caplog.at_level(logging.WARNING, logger="taskflow.jobs"):
        (seen,) = list(board.iterjobs())
        list(board.iterjobs())
    assert seen.state == states.CLAIMED  # someone holds it, whoever it is
    with pytest.raises(exc.UnclaimableJob):
        board.claim(seen, "me")
    stray = [r for r in caplog.records if "stray" in r.getMessage()]
    assert len(stray) == 1  # warned about once, not on every listing


def test_a_posting_too_big_for_a_znode_is_refused(make):
    board = make()
    with pytest.raises(exc.JobFailure, match="more than a ZooKeeper node holds"):
        board.post("big", details={"blob": "x" * (1024 * 1024)})
    assert board.job_count == 0


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"path": "relative/path"}, "'path'"),
        ({"path": "/"}, "'path'"),
        ({"timeout": "soon"}, "'timeout'"),
        ({"timeout": -1}, "'timeout'"),
        ({"lease": 0}, "'lease'"),
        ({"check_compatible": "perhaps"}, "check_compatible"),
        ({"handler": "carrier-pigeon"}, "handler"),
    ],
)
def test_bad_conf_names_the_key(conf, key):
    with pytest.raises(ValueError, match=key):
        backends.fetch("b", {"board": "zookeeper", **conf})


def test_unreachable_zookeeper_is_a_job_failure_within_the_timeout():
    board = backends.fetch("b", {"board": "zookeeper", "hosts": "127.0.0.1:1"})
    started = time.monotonic()
    with pytest.raises(exc.JobFailure, match=r"Could not connect to ZooKeeper at 127\.0\.0\.1:1"):
        board.connect(timeout=1.0)
    assert time.monotonic() - started < 10
    assert not board.connected


def test_a_given_client_is_used_and_left_running(make, client):
    board = make(client=client)
    board.post("j")
    assert board.store._client is client
    board.close()
    assert client.connected


def test_upstreams_layout_names(make, root):
    board = make()
    cls = impl_zookeeper.ZookeeperJobBoard
    assert (cls.DEFAULT_PATH, cls.JOB_PREFIX, cls.LOCK_POSTFIX) == (
        "/taskflow/jobs",
        "job",
        ".lock",
    )
    assert (cls.TRASH_FOLDER, cls.ENTITY_FOLDER) == (".trash", ".entities")
    assert cls.MIN_ZK_VERSION == (3, 4, 0)
    job = board.post("j")
    assert job.root == board.path == f"{root}/jobs"
    assert job.path == f"{job.root}/{cls.JOB_PREFIX}0000000000"
    assert job.lock_path == job.path + cls.LOCK_POSTFIX
    assert board.trash_path == f"{root}/{cls.TRASH_FOLDER}"
