"""Direct access to the test etcd server, beside the board under test (raw keys, cleanup)."""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from etcd3gw.client import Etcd3Client


def host_port(address: str) -> tuple[str, int]:
    """``TASKFLOW_TEST_ETCD`` as (host, port): ``host:port`` or ``http://host:port``."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or 2379


def client(address: str) -> Etcd3Client:
    from etcd3gw.client import Etcd3Client

    host, port = host_port(address)
    return Etcd3Client(host=host, port=port, timeout=10)


def put(address: str, key: str, value: bytes | str) -> None:
    etcd = client(address)
    try:
        etcd.put(key, value)
    finally:
        etcd.session.close()


def items(address: str, prefix: str) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Every key under ``prefix``: key -> (value, metadata with int revisions and lease)."""
    etcd = client(address)
    try:
        found = etcd.get_prefix(prefix)
    finally:
        etcd.session.close()
    result = {}
    for value, meta in found:
        key = meta["key"].decode()
        numbers = {k: int(meta.get(k, 0)) for k in ("create_revision", "mod_revision", "lease")}
        result[key] = (value, numbers)
    return result


def delete_prefix(address: str, prefix: str) -> None:
    etcd = client(address)
    try:
        etcd.delete_prefix(prefix)
    finally:
        etcd.session.close()


@contextlib.contextmanager
def etcd_path(address: str, label: str) -> Iterator[tuple[dict[str, Any], str]]:
    """A board configuration on a ``path`` nobody else uses, and that path; its keys (jobs,
    trash, entities) are deleted afterwards, so tests can share one server."""
    path = "test/" + re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:60] + "-" + uuid.uuid4().hex[:8]
    host, port = host_port(address)
    conf = {"board": "etcd", "host": host, "port": port, "path": path}
    try:
        yield conf, path
    finally:
        for root in ("/taskflow/jobs/", "/taskflow/.trash/", "/taskflow/.entities/"):
            delete_prefix(address, f"{root}{path}/")
