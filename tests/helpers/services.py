"""Addresses of the real services the tests use, and how a missing one is handled.

Each service's address comes from the environment (defaults: the services of a developer
machine). A test that needs an unreachable service is skipped with the reason, unless
``TASKFLOW_TEST_REQUIRE_SERVICES=1`` (set by CI), in which case it fails: CI must never go
green by skipping the backends it is supposed to check.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

REQUIRE = os.environ.get("TASKFLOW_TEST_REQUIRE_SERVICES") == "1"

DEFAULTS = {
    "POSTGRES_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "MYSQL_URL": "mysql+pymysql://root@127.0.0.1:3306/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "AMQP_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "ZK_HOSTS": "127.0.0.1:2181",
}


def address(name: str) -> str:
    """The configured address of a service (``TASKFLOW_TEST_<NAME>`` or the default)."""
    return os.environ.get(f"TASKFLOW_TEST_{name}", DEFAULTS[name])


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    if "://" in value:
        parts = urlsplit(value)
        return parts.hostname or "127.0.0.1", parts.port or default_port
    host, _, port = value.split(",")[0].partition(":")
    return host or "127.0.0.1", int(port or default_port)


def reachable(value: str, default_port: int, timeout: float = 1.0) -> bool:
    host, port = _host_port(value, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need(name: str, default_port: int) -> str:
    """The service's address, or skip (fail under TASKFLOW_TEST_REQUIRE_SERVICES=1)."""
    value = address(name)
    if not reachable(value, default_port):
        message = (
            f"{name.lower()} service unreachable at {value}"
            f" (set TASKFLOW_TEST_{name} to point the tests at one)"
        )
        if REQUIRE:
            pytest.fail(message + "; TASKFLOW_TEST_REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)
    return value
