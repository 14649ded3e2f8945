"""Addresses of the real services the tests use, and how a missing one is handled.

Each service's address comes from the environment (defaults: the services of a developer
machine). A test that needs an unreachable service is skipped with the reason, unless
``TASKFLOW_TEST_REQUIRE_SERVICES=1`` (set by CI), in which case it fails: CI must never go
green by skipping the backends it is supposed to check.

Optional drivers follow the same rule: :func:`need_module` imports one or skips (fails
under ``TASKFLOW_TEST_REQUIRE_SERVICES=1``) with the ``taskflow[...]`` extra to install.
Called at the top of a test module (after its imports), it skips the whole module, so a
partial installation collects without errors.
"""

from __future__ import annotations

import importlib
import os
import socket
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from types import ModuleType

REQUIRE = os.environ.get("TASKFLOW_TEST_REQUIRE_SERVICES") == "1"

DEFAULTS = {
    "POSTGRES_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "MYSQL_URL": "mysql+pymysql://root@127.0.0.1:3306/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "AMQP_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "ZK_HOSTS": "127.0.0.1:2181",
    "ETCD": "127.0.0.1:2379",
}


def _missing(message: str) -> NoReturn:
    """Skip with ``message``, or fail under TASKFLOW_TEST_REQUIRE_SERVICES=1."""
    __tracebackhide__ = True  # report the test (or fixture) that needed it, not this line
    if REQUIRE:
        pytest.fail(message + "; TASKFLOW_TEST_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def need_module(name: str, extra: str) -> ModuleType:
    """Import the optional module ``name``, or skip naming ``pip install 'taskflow[extra]'``.

    Works in a test, a fixture or at module level (skipping the whole module). Under
    TASKFLOW_TEST_REQUIRE_SERVICES=1 a missing module fails instead.
    """
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ImportError as err:
        # The module missing may be a driver that ``name`` imports (then named by the cause).
        missing = err.name or getattr(err.__cause__, "name", None) or name
        _missing(f"{missing} is not installed: pip install 'taskflow[{extra}]'")


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
    __tracebackhide__ = True
    value = address(name)
    if not reachable(value, default_port):
        message = (
            f"{name.lower()} service unreachable at {value}"
            f" (set TASKFLOW_TEST_{name} to point the tests at one)"
        )
        _missing(message)
    return value
