"""Helpers for talking to Redis through redis-py, as upstream TaskFlow's ``redis_utils``.

:class:`RedisClient` is a ``redis.Redis`` that refuses every command once closed (instead of
quietly reconnecting); :func:`get_expiry` and :func:`apply_expiry` read and set a key's
expiry in seconds with millisecond precision; :func:`is_server_new_enough` compares the
server's version with a minimum.

Importing this module needs redis-py (``pip install taskflow[redis]``).
"""

from __future__ import annotations

import enum
import re
from typing import Any

try:
    import redis
    from redis import exceptions as redis_exceptions
except ImportError as _err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "Redis support needs the redis package: pip install taskflow[redis]", name="redis"
    ) from _err

__all__ = [
    "DOES_NOT_EXPIRE",
    "KEY_NOT_FOUND",
    "RedisClient",
    "UnknownExpire",
    "apply_expiry",
    "get_expiry",
    "is_server_new_enough",
]


class RedisClient(redis.Redis):
    """A ``redis.Redis`` client that can be closed for good.

    After :meth:`close`, every command (``execute_command``, ``transaction``, ``pubsub``)
    raises ``redis.exceptions.ConnectionError`` rather than opening a new connection, so a
    closed jobboard's client cannot silently keep talking to the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise redis_exceptions.ConnectionError("Connection has been closed")

    def close(self) -> None:
        """Disconnect and refuse further commands (idempotent)."""
        self.closed = True
        super().close()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self._check_open()
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def transaction(self, *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return super().transaction(*args, **kwargs)

    def pubsub(self, **kwargs: Any) -> Any:
        self._check_open()
        return super().pubsub(**kwargs)


class UnknownExpire(enum.IntEnum):
    """What :func:`get_expiry` returns when a key has no expiry in seconds to report."""

    #: The key exists and never expires (Redis' ``PTTL`` answer -1).
    DOES_NOT_EXPIRE = -1
    #: The key does not exist (Redis' ``PTTL`` answer -2).
    KEY_NOT_FOUND = -2


DOES_NOT_EXPIRE = UnknownExpire.DOES_NOT_EXPIRE
KEY_NOT_FOUND = UnknownExpire.KEY_NOT_FOUND

_UNKNOWN_EXPIRES = {int(member): member for member in UnknownExpire}
# A trailing pre-release tag (``2.6.0rc1``) is ignored when comparing versions.
_PRE_RELEASE = re.compile(r"(a|alpha|b|beta|rc)\d+$")


def get_expiry(client: Any, key: Any, prior_version: str | None = None) -> float | UnknownExpire:
    """Seconds until ``key`` expires (millisecond precision), or an :class:`UnknownExpire`.

    Args:
        client: a redis-py client.
        key: the key.
        prior_version: accepted for upstream compatibility; every supported server (2.6 or
            newer) has ``PTTL``, so it changes nothing.
    """
    millis = int(client.pttl(key))
    unknown = _UNKNOWN_EXPIRES.get(millis)
    if unknown is not None:
        return unknown
    return millis / 1000.0


def apply_expiry(client: Any, key: Any, expiry: float, prior_version: str | None = None) -> bool:
    """Make ``key`` expire ``expiry`` seconds from now (truncated to milliseconds).

    As Redis' ``PEXPIRE``, an expiry of less than a millisecond (or a negative one) deletes
    the key at once.

    Args:
        client: a redis-py client.
        key: the key.
        expiry: seconds.
        prior_version: accepted for upstream compatibility; changes nothing.

    Returns:
        Whether the key existed (and so was given the expiry).

    Raises:
        TypeError: ``expiry`` is not a number.
    """
    millis = int(expiry * 1000.0)
    return bool(client.pexpire(key, millis))


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in _PRE_RELEASE.sub("", text).split("."))


def is_server_new_enough(
    client: Any,
    min_version: tuple[int, ...],
    default: bool = False,
    prior_version: str | None = None,
) -> tuple[bool, str]:
    """Whether the server's version is at least ``min_version``, and that version's text.

    Args:
        client: a redis-py client (asked with ``INFO`` unless ``prior_version`` is given).
        min_version: the minimum, a tuple of ints such as ``(2, 6)``; compared as tuples,
            so ``(3, 0)`` is newer than ``(3,)``.
        default: the answer when the server does not say its version.
        prior_version: a version text already known (``'7.0.15'``); the server is not asked.

    Raises:
        ValueError: the version text is not made of dot-separated integers.
    """
    version = prior_version
    if not version:
        version = client.info().get("redis_version", "")
    if not version:
        return default, ""
    if not isinstance(version, str):
        raise TypeError(f"expected the version as a string, not {type(version).__name__}")
    return _version_tuple(version) >= min_version, version
