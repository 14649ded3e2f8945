"""The Redis board beyond the contract: upstream's on-board layout, RedisJob's expiry,
claims with an ``expiry``, fencing against claims made by upstream boards, configuration
errors, connection failures and pickup latency."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import statistics
import threading
import time
from datetime import UTC, datetime

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.jobs import backends
from taskflow.persistence import models
from tests.helpers import services
from tests.helpers.redis_boards import isolated_namespace, raw_client

services.need_module("redis", "redis")
msgpack = services.need_module("msgpack", "redis")
impl_redis = services.need_module("taskflow.jobs.backends.impl_redis", "redis")
from taskflow._jobs import msgpack_postings  # noqa: E402  (needs msgpack, checked above)
from taskflow._jobs.store import Outcome  # noqa: E402

pytestmark = pytest.mark.redis

DATETIME_FIELDS = ["day", "month", "year", "hour", "minute", "second", "microsecond"]


@pytest.fixture
def space(redis_url):
    """(conf, namespace, raw client) of a namespace of the test's own."""
    with isolated_namespace(redis_url, prefix="tfredis") as (conf, namespace):
        client = raw_client(redis_url)
        try:
            yield conf, namespace, client
        finally:
            client.close()


@pytest.fixture
def board(space):
    conf, _namespace, _client = space
    with contextlib.closing(backends.fetch("b", conf)) as board:
        board.connect()
        yield board


def _unpack(raw: bytes):
    return msgpack.unpackb(raw, raw=False)


def _datetime(ext) -> datetime:
    assert isinstance(ext, msgpack.ExtType)
    assert ext.code == 1
    fields = _unpack(ext.data)
    assert list(fields) == DATETIME_FIELDS  # naive UTC: no "tz"
    return datetime(*(fields[k] for k in ["year", "month", "day", "hour", "minute", "second"]),
                    fields["microsecond"], tzinfo=UTC)  # fmt: skip


# -- layout ---------------------------------------------------------------------------------


def test_postings_are_written_in_upstreams_layout(board, space):
    _conf, ns, client = space
    book = models.LogBook("b")
    job = board.post("j", book=book, details={"flow_uuid": "f", "n": [1, 2.5, None]})
    plain = board.post("k", priority="very_high")
    assert client.type(f"{ns}:listings") == b"hash"
    assert client.get(f"{ns}:sequence") == b"2"
    posting = _unpack(client.hget(f"{ns}:listings", job.uuid))
    assert list(posting) == [
        "uuid",
        "name",
        "priority",
        "created_on",
        "details",
        "book",
        "sequence",
    ]
    assert posting["uuid"] == job.uuid
    assert posting["name"] == "j"
    assert posting["priority"] == "NORMAL"
    assert _datetime(posting["created_on"]) == job.created_on
    assert posting["details"] == {"flow_uuid": "f", "n": [1, 2.5, None]}
    assert posting["book"] == {"name": "b", "uuid": book.uuid}
    assert posting["sequence"] == 1 == job.sequence
    other = _unpack(client.hget(f"{ns}:listings", plain.uuid))
    assert "book" not in other
    assert (other["priority"], other["sequence"], other["details"]) == ("VERY_HIGH", 2, {})


def test_claims_and_releases_are_written_in_upstreams_layout(board, space):
    _conf, ns, client = space
    job = board.post("j")
    board.claim(job, "me")
    owned, modified = f"{ns}:{job.uuid}.owned", f"{ns}:{job.uuid}.last_modified"
    assert client.get(owned) == b"me"
    assert 0 < client.pttl(owned) <= board.lease * 1000
    claimed_at = _datetime(_unpack(client.get(modified)))
    assert abs((datetime.now(UTC) - claimed_at).total_seconds()) < 60
    record = json.loads(client.hget(f"{ns}:claims", job.uuid))
    assert record["holder"] == "me"
    assert record["token"] == job.token == 1
    assert record["stamp"] == hashlib.sha1(client.get(modified)).hexdigest()

    board.abandon(job, "me")
    assert client.exists(owned) == 0
    assert client.exists(modified) == 1  # upstream keeps the time of the abandon
    board.claim(job, "me")
    board.trash(job, "me", reason="why")
    assert client.hexists(f"{ns}:listings", job.uuid) == 0
    assert _unpack(client.hget(f"{ns}:trash", job.uuid))["uuid"] == job.uuid
    assert client.exists(owned, modified) == 0
    record = json.loads(client.hget(f"{ns}:claims", job.uuid))
    assert (record["reason"], record["attempts"], record["token"]) == ("why", 1, 2)

    consumed = board.post("c")
    board.claim(consumed, "me")
    board.consume(consumed, "me")
    assert client.hexists(f"{ns}:listings", consumed.uuid) == 0
    assert client.hexists(f"{ns}:claims", consumed.uuid) == 0
    assert client.exists(f"{ns}:{consumed.uuid}.owned", f"{ns}:{consumed.uuid}.last_modified") == 0


def test_upstream_attribute_names(board, space):
    _conf, ns, _client = space
    assert board.namespace == ns
    assert board.listings_key == f"{ns}:listings".encode()
    assert board.sequence_key == f"{ns}:sequence".encode()
    assert board.trash_key == f"{ns}:trash".encode()
    assert board.join("a", b"b") == f"{ns}:a.b".encode()
    job = board.post("j")
    assert isinstance(job, impl_redis.RedisJob)
    assert job.key == job.uuid.encode()
    assert job.owner_key == f"{ns}:{job.uuid}.owned".encode()
    assert job.last_modified_key == f"{ns}:{job.uuid}.last_modified".encode()
    assert impl_redis.RedisJobBoard.DEFAULT_NAMESPACE == b"taskflow"
    assert impl_redis.RedisJobBoard.MIN_REDIS_VERSION == (2, 6)
    assert [k for k, _ in impl_redis.RedisJobBoard.CLIENT_CONF_TRANSFERS][-1] == "db"
    assert all(isinstance(j, impl_redis.RedisJob) for j in board.iterjobs())


def test_records_written_by_hand_in_upstreams_format_are_read(board, space):
    _conf, ns, client = space
    created = datetime(2024, 5, 1, 12, 30, 15, 250, tzinfo=UTC)
    fields = {
        "uuid": "u-1",
        "name": "by-hand",
        "priority": "LOW",
        "created_on": msgpack.ExtType(1, msgpack.packb(
            {"day": 1, "month": 5, "year": 2024, "hour": 12, "minute": 30, "second": 15,
             "microsecond": 250})),
        "details": {"when": msgpack.ExtType(1, msgpack.packb(
            {"day": 2, "month": 5, "year": 2024, "hour": 0, "minute": 0, "second": 0,
             "microsecond": 0, "tz": "UTC"})),
                    "tags": msgpack.ExtType(4, msgpack.packb(["a", "b"]))},
        "sequence": 41,
    }  # fmt: skip
    client.hset(f"{ns}:listings", "u-1", msgpack.packb(fields))
    (job,) = board.iterjobs()
    assert (job.uuid, job.name, job.sequence, job.created_on) == ("u-1", "by-hand", 41, created)
    assert job.details == {"when": datetime(2024, 5, 2, tzinfo=UTC), "tags": {"a", "b"}}
    assert job.book is None
    assert job.book_uuid is None
    board.claim(job, "me")
    board.consume(job, "me")
    assert client.hlen(f"{ns}:listings") == 0


def test_tuples_round_trip_but_plain_details_are_stored_as_upstream_would(board, space):
    _conf, ns, client = space
    job = board.post("j", details={"pair": (1, 2), "plain": [1, 2]})
    stored = _unpack(client.hget(f"{ns}:listings", job.uuid))["details"]
    assert stored == {"pair": {"__tuple__": [1, 2]}, "plain": [1, 2]}
    assert next(iter(board.iterjobs())).details == {"pair": (1, 2), "plain": [1, 2]}
    with pytest.raises(TypeError, match="can not be stored"):
        board.post("huge", details={"n": 2**70})
    with pytest.raises(TypeError):
        board.post("bytes", details={"b": b"x"})
    assert board.job_count == 1


def test_codec_round_trip():
    from taskflow._jobs.store import BookRef, Posting
    from taskflow.jobs.base import JobPriority

    posting = Posting(
        uuid="u",
        name="n",
        priority=JobPriority.HIGH,
        details={"a": {1, 2}, "t": ((1, 2), "x")},
        book=BookRef("b", "bu"),
        created_on=datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        sequence=2**40,
    )
    assert msgpack_postings.decode(msgpack_postings.encode(posting), "test", "u") == posting


# -- expiry ---------------------------------------------------------------------------------


def test_expires_in_and_extend_expiry(board, space):
    _conf, ns, client = space
    job = board.post("j")
    assert job.expires_in() == -2  # KEY_NOT_FOUND: not claimed
    assert job.extend_expiry(5) is False
    board.claim(job, "me")
    assert 0 < job.expires_in() <= board.lease
    assert job.extend_expiry(30) is True
    assert 29 < job.expires_in() <= 30
    client.persist(f"{ns}:{job.uuid}.owned")  # as upstream claims without an expiry
    assert job.expires_in() == -1  # DOES_NOT_EXPIRE
    board.consume(job, "me")
    assert job.expires_in() == -2


def test_a_claim_with_an_expiry_lapses_unless_extended(board):
    job = board.post("j")
    with pytest.raises(ValueError, match="must be greater than zero"):
        board.claim(job, "me", expiry=0.0001)
    board.claim(job, "me", expiry=0.3)
    assert board.find_owner(job) == "me"
    assert 0 < job.expires_in() <= 0.3
    assert not board.holds(job)  # not renewed by the board: upstream's semantics
    time.sleep(0.5)
    assert board.find_owner(job) is None
    assert job.state == states.UNCLAIMED
    board.claim(job, "other", expiry=10)
    assert job.extend_expiry(0.2) is True
    time.sleep(0.4)
    assert job.state == states.UNCLAIMED


def test_a_reclaim_by_the_holder_does_not_refresh_the_lease(board, space):
    _conf, ns, client = space
    job = board.post("j")
    board.claim(job, "me", expiry=0.5)
    before = client.pttl(f"{ns}:{job.uuid}.owned")
    with pytest.raises(exc.UnclaimableJob):
        board.claim(job, "me", expiry=60)
    assert client.pttl(f"{ns}:{job.uuid}.owned") <= before


# -- fencing and attempts with claims made by upstream boards -------------------------------


def _upstream_claim(client, ns: str, uuid: str, owner: str) -> None:
    """What upstream's claim writes (owner without expiry, a fresh last_modified)."""
    client.set(f"{ns}:{uuid}.owned", owner)
    client.set(f"{ns}:{uuid}.last_modified", msgpack_postings.encode_datetime(datetime.now(UTC)))


def test_an_upstream_claim_after_ours_lapsed_fences_ours(board, space):
    _conf, ns, client = space
    job = board.post("j")
    store = board.store
    token = store.claim(job.uuid, "c-1", 0.1)
    time.sleep(0.3)
    (listing,) = store.listings()
    assert (listing.owner, listing.token, listing.attempts) == (None, None, 1)
    _upstream_claim(client, ns, job.uuid, "c-1")
    (listing,) = store.listings()
    assert (listing.owner, listing.token, listing.attempts) == ("c-1", None, 1)
    assert store.renew(job.uuid, "c-1", token, 5) is False
    with pytest.raises(exc.JobFailure, match="was lost"):
        store.release(job.uuid, "c-1", token, Outcome.CONSUME, None)
    # By name alone (a board that did not make the claim), the holder may release it.
    store.release(job.uuid, "c-1", None, Outcome.ABANDON, None)
    (listing,) = store.listings()
    assert (listing.owner, listing.attempts) == (None, 2)
    assert store.claim(job.uuid, "c-2", 5) == token + 1


def test_a_lapsed_claim_is_renewed_or_released_by_its_holder_if_nobody_took_it(board):
    job = board.post("j")
    store = board.store
    token = store.claim(job.uuid, "c-1", 0.1)
    time.sleep(0.3)
    assert store.renew(job.uuid, "c-1", token, 5) is True
    assert board.find_owner(job) == "c-1"
    time.sleep(0.3)
    store.release(job.uuid, "c-1", token, Outcome.CONSUME, None)
    assert job.state == states.COMPLETE


def test_records_of_jobs_consumed_by_upstream_are_swept(board, space):
    _conf, ns, client = space
    job = board.post("j")
    board.claim(job, "me")
    board.abandon(job, "me")
    assert client.hexists(f"{ns}:claims", job.uuid)
    client.hdel(f"{ns}:listings", job.uuid)  # as upstream's consume does
    board.store._next_sweep = 0.0
    assert list(board.iterjobs()) == []
    assert not client.hexists(f"{ns}:claims", job.uuid)


# -- configuration and connection -----------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"port": "abc"}, "port"),
        ({"db": 1.5}, "db"),
        ({"socket_timeout": "slow"}, "socket_timeout"),
        ({"retry_on_timeout": "maybe"}, "retry_on_timeout"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": 5}, "namespace"),
        ({"lease": 0}, "lease"),
        ({"sentinel": "m", "sentinel_fallbacks": ["nohost"]}, "sentinel_fallbacks"),
        ({"sentinel": "m", "sentinel_fallbacks": ["h:x"]}, "sentinel_fallbacks"),
    ],
)
def test_a_bad_conf_value_names_its_key(conf, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        backends.fetch("b", {"board": "redis", **conf})


def test_uri_conf_reaches_the_server_it_names(redis_url):
    host = services._host_port(redis_url, 6379)
    with isolated_namespace(redis_url) as (conf, ns):
        uri = f"redis://{host[0]}:{host[1]}?namespace={ns}&db={conf.get('db', 0)}"
        with contextlib.closing(backends.fetch("b", uri)) as board:
            assert board.namespace == ns
            board.connect()
            board.post("j")
            assert board.job_count == 1


def test_an_unreachable_server_is_a_clear_error_soon():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    board = backends.fetch("b", {"board": "redis", "host": "127.0.0.1", "port": port})
    started = time.monotonic()
    with pytest.raises(exc.JobFailure, match="Redis jobboard could not connect"):
        board.connect(timeout=2)
    assert time.monotonic() - started < 10
    assert not board.connected


def test_a_silent_server_is_a_clear_error_within_the_connect_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        port = listener.getsockname()[1]
        board = backends.fetch("b", {"board": "redis", "host": "127.0.0.1", "port": port})
        started = time.monotonic()
        with pytest.raises(exc.JobFailure, match=r"did not answer in 0\.5"):
            board.connect(timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        listener.close()


def test_an_old_server_is_refused():
    class Old:
        def info(self):
            return {"redis_version": "2.4.17"}

    board = impl_redis.RedisJobBoard("b", {}, client=Old())
    with pytest.raises(exc.JobFailure, match=r"needs Redis 2\.6 or newer, not 2\.4\.17"):
        board.connect()


def test_a_given_client_is_used_and_left_open(space):
    conf, ns, client = space
    given = raw_client(f"redis://{conf['host']}:{conf['port']}/{conf.get('db', 0)}")
    try:
        board = impl_redis.RedisJobBoard("b", {"namespace": ns}, client=given)
        with board:
            board.post("j")
        assert given.ping()
        assert client.hlen(f"{ns}:listings") == 1
    finally:
        given.close()


def test_a_closed_board_refuses_work(board):
    job = board.post("j")
    board.close()
    with pytest.raises(exc.JobFailure, match="not connected"):
        board.claim(job, "me")
    with pytest.raises(exc.JobFailure, match="not connected"):
        job.expires_in()


# -- pickup ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_idle_waiter_sees_a_new_job_within_tens_of_milliseconds(space):
    conf, _ns, _client = space
    with (
        contextlib.closing(backends.fetch("w", conf)) as waiter,
        contextlib.closing(backends.fetch("p", conf)) as poster,
    ):
        waiter.connect()
        poster.connect()
        delays = []
        for i in range(7):
            seen = threading.Event()
            found: list[float] = []

            def wait(seen=seen, found=found) -> None:
                waiter.wait_for_change(10)
                found.append(time.monotonic())
                seen.set()

            thread = threading.Thread(target=wait)
            thread.start()
            time.sleep(0.05)
            posted = time.monotonic()
            poster.post(f"j{i}")
            assert seen.wait(10)
            thread.join()
            delays.append(found[0] - posted)
        # Behaviour, with slack for a loaded machine: far below the watcher's 1 s slice.
        assert statistics.median(delays) < 0.25, delays


@pytest.mark.parametrize(
    ("hostname", "port", "host"),
    [
        ("h1:6380", 6380, "h1"),
        ("::1:6380", 6380, "::1"),
        ("[::1]:6380", 6380, "::1"),
        ("h", None, "h"),
    ],
)
def test_a_uris_host_is_used(hostname, port, host):
    from taskflow._jobs import redis as store

    conf = {"hostname": hostname, **({} if port is None else {"port": port})}
    assert store.client_options(conf)["host"] == host
    assert store.client_options({**conf, "host": "explicit"})["host"] == "explicit"


def test_sentinel_conf_makes_a_client_through_the_sentinels(monkeypatch):
    from redis import sentinel

    from taskflow._jobs import redis as store
    from taskflow.utils import redis_utils

    made: list = []

    class FakeSentinel:
        def __init__(self, sentinels, **kwargs) -> None:
            made.append((sentinels, kwargs))

        def master_for(self, name, **kwargs):
            made.append((name, kwargs))
            return "client"

    monkeypatch.setattr(sentinel, "Sentinel", FakeSentinel)
    conf = {
        "sentinel": "mymaster",
        "host": "s1",
        "port": "26379",
        "sentinel_fallbacks": ["s2:26380", "[::1]:26381"],
        "sentinel_kwargs": {"password": "sp"},
        "password": "p",
        "db": "2",
        "ssl": "false",
        "ssl_keyfile": "ignored",
    }
    assert store.make_client(conf, 3.0) == "client"
    (sentinels, kwargs), (name, master_kwargs) = made
    assert sentinels == [("s1", 26379), ("s2", 26380), ("::1", 26381)]
    assert kwargs["sentinel_kwargs"] == {"password": "sp"}
    assert (kwargs["password"], kwargs["db"], kwargs["socket_connect_timeout"]) == ("p", 2, 3.0)
    assert not any(key.startswith("ssl") for key in kwargs)
    assert name == "mymaster"
    assert master_kwargs == {"redis_class": redis_utils.RedisClient}
