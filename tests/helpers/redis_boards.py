"""Redis boards of a test's own: a fresh namespace on the server of ``redis_url``.

Tests share one Redis server (and database), so each gets a namespace no other test uses
(every board key starts with ``<namespace>:``); its keys are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator


def board_conf(url: str, namespace: str) -> dict[str, Any]:
    """The board configuration reaching the server of ``url`` (``redis://[user:pw@]h:p/db``)."""
    parts = urlsplit(url)
    conf: dict[str, Any] = {
        "board": "redis",
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 6379,
        "namespace": namespace,
    }
    db = parts.path.strip("/")
    if db:
        conf["db"] = int(db)
    if parts.username:
        conf["username"] = unquote(parts.username)
    if parts.password:
        conf["password"] = unquote(parts.password)
    return conf


def raw_client(url: str) -> Any:
    """A plain redis-py client on the server of ``url`` (bytes in and out)."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)


def delete_namespace(client: Any, namespace: str) -> None:
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)


@contextlib.contextmanager
def isolated_namespace(url: str, prefix: str = "tf-test") -> Iterator[tuple[dict[str, Any], str]]:
    """``(board conf, namespace)`` of a namespace of the test's own, deleted after."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client = raw_client(url)
    try:
        yield board_conf(url, namespace), namespace
    finally:
        try:
            delete_namespace(client, namespace)
        finally:
            client.close()
