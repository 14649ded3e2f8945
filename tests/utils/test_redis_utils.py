"""``taskflow.utils.redis_utils`` behaves as upstream 6.5's (observed black-box): expiry in
seconds with millisecond precision, the two unknown-expiry markers, a client that stays
closed, and server version checks."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import services

redis = services.need_module("redis", "redis")
redis_utils = services.need_module("taskflow.utils.redis_utils", "redis")


class _Fake:
    """Answers PTTL/PEXPIRE/INFO as told, and records PEXPIRE calls."""

    def __init__(self, pttl: int = 0, pexpire=1, info: dict | None = None) -> None:
        self._pttl, self._pexpire, self._info = pttl, pexpire, info or {}
        self.pexpired: list[tuple[str, int]] = []
        self.asked_info = 0

    def pttl(self, key):
        return self._pttl

    def pexpire(self, key, millis):
        self.pexpired.append((key, millis))
        return self._pexpire

    def info(self):
        self.asked_info += 1
        return self._info


def test_unknown_expire_markers():
    assert redis_utils.DOES_NOT_EXPIRE is redis_utils.UnknownExpire.DOES_NOT_EXPIRE
    assert redis_utils.KEY_NOT_FOUND is redis_utils.UnknownExpire.KEY_NOT_FOUND
    assert [int(m) for m in redis_utils.UnknownExpire] == [-1, -2]
    assert redis_utils.DOES_NOT_EXPIRE == -1


@pytest.mark.parametrize(
    ("pttl", "expected"),
    [(-2, redis_utils.KEY_NOT_FOUND), (-1, redis_utils.DOES_NOT_EXPIRE), (2500, 2.5), (0, 0.0)],
)
def test_get_expiry(pttl, expected):
    got = redis_utils.get_expiry(_Fake(pttl=pttl), "k")
    assert got == expected
    assert type(got) is type(expected)
    assert redis_utils.get_expiry(_Fake(pttl=pttl), "k", prior_version="2.4") == expected


@pytest.mark.parametrize(
    ("expiry", "millis"), [(1.5, 1500), (1.9999, 1999), (0.0009, 0), (-1, -1000), (True, 1000)]
)
def test_apply_expiry_sends_milliseconds(expiry, millis):
    fake = _Fake()
    assert redis_utils.apply_expiry(fake, "k", expiry) is True
    assert fake.pexpired == [("k", millis)]
    assert redis_utils.apply_expiry(_Fake(pexpire=0), "k", 3) is False
    with pytest.raises(TypeError):
        redis_utils.apply_expiry(fake, "k", "3")


@pytest.mark.parametrize(
    ("version", "minimum", "expected"),
    [
        ("7.0.15", (2, 6), True),
        ("2.6", (2, 6), True),
        ("2.4.1", (2, 6), False),
        ("3.0", (3,), True),
        ("3.0", (3, 0, 1), False),
        ("2.6.0rc1", (2, 6), True),
    ],
)
def test_is_server_new_enough(version, minimum, expected):
    fake = _Fake(info={"redis_version": version})
    assert redis_utils.is_server_new_enough(fake, minimum) == (expected, version)
    assert fake.asked_info == 1


def test_is_server_new_enough_edges():
    assert redis_utils.is_server_new_enough(_Fake(), (2, 6)) == (False, "")
    assert redis_utils.is_server_new_enough(_Fake(), (2, 6), default=True) == (True, "")
    fake = _Fake(info={"redis_version": "9.9"})
    assert redis_utils.is_server_new_enough(fake, (2, 6), prior_version="2.0") == (False, "2.0")
    assert fake.asked_info == 0
    for bad in ("2.6.0-rc1", "v2.6", "2..6"):
        with pytest.raises(ValueError):
            redis_utils.is_server_new_enough(_Fake(info={"redis_version": bad}), (2, 6))


@pytest.mark.redis
def test_against_a_real_server(redis_url):
    client = redis_utils.RedisClient.from_url(redis_url, socket_connect_timeout=5)
    assert isinstance(client, redis.Redis)
    key = f"tf-test-{uuid.uuid4().hex}"
    try:
        assert redis_utils.get_expiry(client, key) is redis_utils.KEY_NOT_FOUND
        assert redis_utils.apply_expiry(client, key, 5) is False
        client.set(key, 1)
        assert redis_utils.get_expiry(client, key) is redis_utils.DOES_NOT_EXPIRE
        assert redis_utils.apply_expiry(client, key, 1.2345) is True
        assert 1.0 < redis_utils.get_expiry(client, key) <= 1.234
        assert redis_utils.is_server_new_enough(client, (2, 6))[0] is True
        assert redis_utils.apply_expiry(client, key, 0) is True  # deleted at once
        assert client.exists(key) == 0
    finally:
        client.delete(key)
        client.close()
    for call in (lambda: client.get(key), lambda: client.pubsub(), client.ping):
        with pytest.raises(redis.exceptions.ConnectionError, match="Connection has been closed"):
            call()
    client.close()  # closing again is fine
