"""What only the etcd board does: configuration, key layout, leases, fencing tokens, the watch,
connect errors, and sharing a board with upstream TaskFlow 6.5 (when an interpreter with it is
available)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow._jobs.store import Outcome
from taskflow.jobs import backends
from tests.helpers import services
from tests.helpers.etcd import etcd_path, host_port, items, put
from tests.jobs.conftest import board_factory
from tests.jobs.contract import MARGIN, _claim_within, _find, _read

services.need_module("etcd3gw", "etcd")
etcd = services.need_module("taskflow._jobs.etcd", "etcd")
impl = services.need_module("taskflow.jobs.backends.impl_etcd", "etcd")

#: What etcd makes of a lease shorter than its minimum (2 s with default settings), plus
#: the half second its lessor may take to notice.
ETCD_MIN_LEASE = 2.5


@pytest.fixture
def boards(request, etcd_address):
    """Boards on a path of the test's own, deleted after."""
    with etcd_path(etcd_address, request.node.name) as (conf, path):
        with board_factory(conf, list) as factory:
            factory.path = path
            factory.address = etcd_address
            yield factory


def _keys(boards) -> dict:
    return items(boards.address, f"/taskflow/jobs/{boards.path}/")


# -- configuration --------------------------------------------------------------------------


@pytest.mark.etcd
def test_fetch_forms(etcd_address):
    host, port = host_port(etcd_address)
    for conf in (
        {"board": "etcd", "host": host, "port": str(port), "path": "test/forms"},
        f"etcd://{host}:{port}?path=test/forms",
        {"board": f"etcd://{host}:{port}", "path": "/test/forms/", "ttl": 4},
    ):
        with backends.backend("b", conf) as board:
            assert isinstance(board, impl.EtcdJobBoard)
            assert board.path == "/taskflow/jobs/test/forms"
            assert board.connected
        assert not board.connected


def test_ttl_is_the_lease_unless_lease_is_given():
    assert backends.fetch("b", {"board": "etcd", "ttl": 7}).lease == 7
    assert backends.fetch("b", {"board": "etcd", "ttl": 7, "lease": 2}).lease == 2
    assert backends.fetch("b", {"board": "etcd"}).lease == 3


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"path": ""}, "'path'"),
        ({"path": "///"}, "'path'"),
        ({"path": 5}, "'path'"),
        ({"host": ""}, "'host'"),
        ({"port": "http"}, "'port'"),
        ({"port": 70000}, "'port'"),
        ({"protocol": "ftp"}, "'protocol'"),
        ({"ca_cert": 5}, "'ca_cert'"),
        ({"api_path": ""}, "'api_path'"),
        ({"timeout": "soon"}, "'timeout'"),
        ({"timeout": 0}, "'timeout'"),
        ({"lease": 0}, "'lease'"),
        ({"ttl": "soon"}, "'ttl'"),
        ({"ttl": -1}, "'ttl'"),
        ({"connect_timeout": "x"}, "connect_timeout"),
    ],
)
def test_bad_conf_names_the_key(conf, key):
    with pytest.raises(ValueError, match=key):
        backends.fetch("b", {"board": "etcd", **conf})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_a_job_failure_naming_it():
    port = _free_port()  # nothing listens there
    board = backends.fetch("b", {"board": "etcd", "host": "127.0.0.1", "port": port})
    started = time.monotonic()
    with pytest.raises(exc.JobFailure, match=f"could not connect to etcd at 127.0.0.1:{port}"):
        board.connect()
    assert time.monotonic() - started < 5
    assert not board.connected


def test_a_silent_server_fails_within_the_connect_timeout():
    # Accepts connections (the kernel does, into the backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        conf = {"board": "etcd", "host": "127.0.0.1", "port": port, "connect_timeout": 0.5}
        board = backends.fetch("b", conf)
        started = time.monotonic()
        with pytest.raises(exc.JobFailure, match="could not connect"):
            board.connect()
        assert time.monotonic() - started < 0.5 + MARGIN
        assert not board.connected


# -- layout ---------------------------------------------------------------------------------


@pytest.mark.etcd
def test_keys_follow_upstreams_layout(boards):
    board = boards.make(lease=1)
    root = f"/taskflow/jobs/{boards.path}/"
    first = board.post("first", details={"pair": (1, 2)}, priority="high")
    second = board.post("second")
    keys = _keys(boards)
    assert set(keys) == {root + "sequence", root + "job1.data", root + "job2.data"}
    assert keys[root + "sequence"][0] == b"2"
    data = json.loads(keys[root + "job1.data"][0])
    assert data["uuid"] == first.uuid
    assert data["name"] == "first"
    assert data["priority"] == "HIGH"
    assert data["sequence"] == 1
    assert data["book"] is None
    assert datetime.fromisoformat(data["created_on"]).tzinfo is not None
    # One transaction wrote the counter and the posting: no half job is ever visible.
    assert (
        keys[root + "job1.data"][1]["mod_revision"]
        == keys[root + "job1.data"][1]["create_revision"]
    )
    assert (second.sequence, first.sequence) == (2, 1)
    # Upstream's EtcdJob names its keys' prefix 'key' and its board's prefix 'root'.
    listed = {job.uuid: job for job in board.iterjobs(ensure_fresh=True)}
    for job in (first, listed[first.uuid]):
        assert isinstance(job, impl.EtcdJob)
        assert (job.root, job.key) == (root.rstrip("/"), root + "job1")

    board.claim(first, "me")
    keys = _keys(boards)
    lock_value, lock = keys[root + "job1.lock"]
    assert json.loads(lock_value) == {"owner": "me", "lease_id": lock["lease"]}
    assert lock["lease"] != 0
    # The fencing token is the claim's revision: the lock's create_revision.
    assert first.token == lock["create_revision"]
    stamp_value, stamp = keys[root + "job1.last_modified"]
    assert stamp["mod_revision"] == first.token
    stamp_doc = json.loads(stamp_value)
    assert stamp_doc["claims"] == 1
    assert stamp_doc["owner"] == "me"
    datetime.strptime(stamp_doc["last_modified"], "%Y-%m-%dT%H:%M:%S.%f")  # upstream's format

    board.trash(first, "me", reason="bad flow")
    keys = _keys(boards)
    assert not any(key.startswith(root + "job1.") for key in keys)
    trash = items(boards.address, f"/taskflow/.trash/{boards.path}/")
    trashed = json.loads(trash[f"/taskflow/.trash/{boards.path}/job1"][0])
    assert trashed["uuid"] == first.uuid
    assert trashed["trash"]["reason"] == "bad flow"

    board.claim(second, "me")
    board.consume(second, "me")
    assert set(_keys(boards)) == {root + "sequence"}


@pytest.mark.etcd
def test_upstream_shaped_records_are_read(boards):
    root = f"/taskflow/jobs/{boards.path}/"
    posting = {
        "uuid": "u-up",
        "name": "from-upstream",
        "priority": "LOW",
        "created_on": "2024-05-01T12:00:00.123456",
        "details": {"store": {"x": [1, 2]}},
        "book": {"name": "bk", "uuid": "b-1"},
        "sequence": 7,
    }
    put(boards.address, root + "sequence", "7")
    put(boards.address, root + "job7.data", json.dumps(posting))
    put(boards.address, root + "job7.lock", json.dumps({"owner": "upstream-conductor"}))
    put(boards.address, root + "job7.last_modified", '{"last_modified": "2024-05-01T12:00:01"}')
    board = boards.make()
    (job,) = list(board.iterjobs())
    assert (job.uuid, job.name, job.priority.value, job.sequence) == (
        "u-up",
        "from-upstream",
        "LOW",
        7,
    )
    assert job.details == {"store": {"x": [1, 2]}}
    assert (job.book_name, job.book_uuid) == ("bk", "b-1")
    assert job.created_on == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert job.last_modified == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert board.find_owner(job) == "upstream-conductor"
    assert job.state == states.CLAIMED
    assert job.attempts == 0
    # Our next post continues upstream's counter.
    assert board.post("ours").sequence == 8


@pytest.mark.etcd
def test_a_counter_that_is_not_a_number_fails_posting_naming_it(boards):
    put(boards.address, f"/taskflow/jobs/{boards.path}/sequence", "seven")
    board = boards.make()
    with pytest.raises(exc.JobFailure, match="sequence"):
        board.post("j")
    assert board.job_count == 0


@pytest.mark.etcd
def test_a_counter_behind_existing_jobs_is_skipped_past(boards):
    board = boards.make()
    job = board.post("a")
    put(boards.address, f"/taskflow/jobs/{boards.path}/sequence", "0")  # reset by hand
    later = board.post("b")
    assert later.sequence > job.sequence
    assert [j.name for j in board.iterjobs()] == ["a", "b"]


@pytest.mark.etcd
def test_concurrent_posters_get_distinct_sequences(boards):
    posters = [boards.make(f"poster-{i}") for i in range(4)]
    posted: list = []

    def post(board) -> None:
        posted.extend(board.post(f"{board.name}-{n}").sequence for n in range(15))

    threads = [threading.Thread(target=post, args=(board,)) for board in posters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(posted) == list(range(1, 61))  # no sequence twice, none skipped
    assert posters[0].job_count == 60


# -- leases and tokens ----------------------------------------------------------------------


@pytest.mark.etcd
@pytest.mark.slow
def test_a_killed_holders_lock_key_goes_with_its_lease(boards):
    board = boards.make()
    job = board.post("j")
    child = boards.child("hold", "doomed", job.uuid, lease=1)
    token = _read(child)["token"]
    lock_key = f"/taskflow/jobs/{boards.path}/job{job.sequence}.lock"
    assert _keys(boards)[lock_key][1]["create_revision"] == token
    time.sleep(ETCD_MIN_LEASE + 0.5)
    assert lock_key in _keys(boards)  # renewed by the living holder past its lease
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    deadline = time.monotonic() + ETCD_MIN_LEASE + MARGIN
    while lock_key in _keys(boards):
        assert time.monotonic() < deadline, "etcd did not end the dead holder's lease"
        time.sleep(0.05)
    assert board.find_owner(job) is None
    assert _find(board, job).attempts == 1
    board.claim(job, "rescuer")
    assert job.token > token
    board.consume(job, "rescuer")


@pytest.mark.etcd
@pytest.mark.slow
def test_a_lapsed_claim_nobody_took_is_revived_by_its_holder(boards):
    board = boards.make()
    store = board.store
    job = board.post("j")
    token = store.claim(job.uuid, "me", 1)  # not renewed: the board did not make it
    lock_key = f"/taskflow/jobs/{boards.path}/job{job.sequence}.lock"
    deadline = time.monotonic() + ETCD_MIN_LEASE + MARGIN
    while lock_key in _keys(boards):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.renew(job.uuid, "me", token, 1) is True
    assert store.renew(job.uuid, "other", token, 1) is False
    listing = store.get(job.uuid)
    assert (listing.owner, listing.token) == ("me", token)
    assert json.loads(_keys(boards)[lock_key][0])["token"] == token
    store.release(job.uuid, "me", token, Outcome.CONSUME, None)
    assert store.get(job.uuid) is None


@pytest.mark.etcd
@pytest.mark.slow
def test_a_lapsed_claim_can_still_be_released_until_someone_claims(boards):
    board = boards.make()
    store = board.store
    job = board.post("j")
    token = store.claim(job.uuid, "me", 1)
    _claim_within(boards.make("other"), _find(board, job), "other", ETCD_MIN_LEASE + MARGIN)
    # Too late: another claim came in between.
    with pytest.raises(exc.JobFailure):
        store.release(job.uuid, "me", token, Outcome.CONSUME, None)
    assert store.renew(job.uuid, "me", token, 1) is False
    assert board.find_owner(job) == "other"


@pytest.mark.etcd
@pytest.mark.slow
def test_claim_with_expiry_lapses_without_renewal(boards):
    board = boards.make(lease=10)
    job = board.post("j")
    board.claim(job, "me", expiry=1)
    assert board.find_owner(job) == "me"
    assert not board.holds(job)
    _claim_within(boards.make("other"), _find(board, job), "other", ETCD_MIN_LEASE + MARGIN)
    with pytest.raises(ValueError, match="lease"):
        board.claim(board.post("k"), "me", expiry=0)


# -- the watch ------------------------------------------------------------------------------


@pytest.mark.etcd
def test_the_watch_misses_nothing_across_reconnections(boards, monkeypatch):
    monkeypatch.setattr(etcd, "_WATCH_IDLE", 0.2)  # the stream is re-opened every 0.2 s
    waiter, poster = boards.make("waiter"), boards.make("poster")
    time.sleep(0.5)
    assert waiter.wait_for_change(1.0) is False  # re-opening a quiet stream wakes nobody
    for name in ("a", "b", "c"):
        woke = threading.Event()

        def wait(woke=woke) -> None:
            if waiter.wait_for_change(30):
                woke.set()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.3)
        poster.post(name)
        assert woke.wait(10)
        thread.join()


@pytest.mark.etcd
def test_an_idle_waiter_wakes_quickly(boards):
    waiter, poster = boards.make("waiter"), boards.make("poster")
    delays = []
    for i in range(5):
        result: list[float] = []

        def wait(result=result) -> None:
            list(waiter.wait(timeout=30))
            result.append(time.monotonic())

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.2)
        posted = time.monotonic()
        job = poster.post(f"j{i}")
        thread.join(timeout=30)
        delays.append(result[0] - posted)
        poster.claim(job, "w")
        poster.consume(job, "w")
    # Behaviour, not speed: woken by the watch, far sooner than any poll or timeout would.
    assert sorted(delays)[2] < 2.0, delays


@pytest.mark.etcd
def test_closing_stops_every_thread(boards):
    before = {t.name for t in threading.enumerate()}
    board = boards.make()
    board.post("j")
    board.close()
    time.sleep(0.1)
    left = {t.name for t in threading.enumerate()} - before
    assert not [name for name in left if "etcd" in name or "jobboard" in name], left


# -- sharing a board with upstream ----------------------------------------------------------

_UPSTREAM_SCRIPT = r"""
import json, sys
from taskflow.jobs import backends
conf, action = json.loads(sys.argv[1]), sys.argv[2]
board = backends.fetch("upstream", conf)
board.connect()
try:
    if action == "post":
        job = board.post("from-upstream", details={"store": {"x": 1}}, priority="HIGH")
        print(json.dumps({"uuid": job.uuid}))
    elif action == "list":
        print(json.dumps([[j.uuid, j.name, j.details, j.state] for j in board.iterjobs()]))
    elif action == "run":
        job = next(j for j in board.iterjobs() if j.uuid == sys.argv[3])
        board.claim(job, "upstream-conductor")
        board.consume(job, "upstream-conductor")
        print(json.dumps({"state": job.state}))
finally:
    board.close()
"""


def _upstream_python() -> str:
    """An interpreter with upstream TaskFlow 6.5 and etcd3gw (``TASKFLOW_TEST_UPSTREAM_PYTHON``,
    default ``/work/upstream-venv/bin/python``), or skip: it is a development aid, not a
    service CI provides."""
    python = os.environ.get("TASKFLOW_TEST_UPSTREAM_PYTHON", "/work/upstream-venv/bin/python")
    if not Path(python).exists():
        pytest.skip(f"no upstream TaskFlow interpreter at {python}")
    probe = (
        "import taskflow.jobs.backends.impl_etcd, etcd3gw, importlib.metadata as m;"
        " print(m.version('taskflow'))"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.startswith("6.5"):
        pytest.skip(f"{python} has no upstream TaskFlow 6.5 with etcd3gw")
    return python


def _upstream(python: str, conf: dict, *args: str):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [python, "-c", _UPSTREAM_SCRIPT, json.dumps(conf), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.etcd
@pytest.mark.slow
def test_upstream_and_ours_share_a_board(boards):
    python = _upstream_python()
    conf = dict(boards.conf)
    board = boards.make()

    # Upstream posts; ours lists, claims and consumes.
    posted = _upstream(python, conf, "post")
    (job,) = list(board.iterjobs())
    assert (job.uuid, job.name, job.details) == (
        posted["uuid"],
        "from-upstream",
        {"store": {"x": 1}},
    )
    assert job.priority.value == "HIGH"
    board.claim(job, "ours")
    assert _upstream(python, conf, "list")[0][3] == states.CLAIMED
    board.consume(job, "ours")
    assert _upstream(python, conf, "list") == []

    # Ours posts; upstream lists, claims and consumes.
    ours = board.post("from-ours", details={"store": {"y": [1, 2]}}, priority="low")
    assert _upstream(python, conf, "list") == [
        [ours.uuid, "from-ours", {"store": {"y": [1, 2]}}, states.UNCLAIMED]
    ]
    board.claim(ours, "ours")
    board.abandon(ours, "ours")
    assert _upstream(python, conf, "run", ours.uuid) == {"state": states.COMPLETE}
    assert ours.state == states.COMPLETE
    assert list(board.iterjobs()) == []


@pytest.mark.etcd
def test_a_claims_lease_as_upstreams_etcd_job_shows_it(boards):
    board = boards.make(lease=7)
    other = boards.make("other")
    job = board.post("leased")
    # Unclaimed: no lease (upstream raises TypeError here; -1 is its "no lease" answer).
    assert (job.lease, job.expires_in(), job.extend_expiry(30)) == (None, -1, False)
    board.claim(job, "me")
    lease_id = _keys(boards)[f"/taskflow/jobs/{boards.path}/job1.lock"][1]["lease"]
    seen = next(iter(other.iterjobs(ensure_fresh=True)))  # any board's view of the job
    for view in (job, seen):
        assert view.lease is not None
        assert view.lease.id == lease_id
        assert 0 < view.expires_in() <= 7
    assert seen.lease.ttl() == seen.expires_in() or seen.lease.ttl() == seen.expires_in() - 1
    # Renewing keeps the claim's lease alive for its whole TTL again.
    time.sleep(1.2)
    before = seen.expires_in()
    assert seen.extend_expiry(30) is True
    assert seen.expires_in() > before
    board.consume(job, "me")
    assert job.expires_in() == -1
    assert job.lease is None
