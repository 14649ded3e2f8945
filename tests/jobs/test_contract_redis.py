"""Runs the jobboard contract (``contract.py``) on the Redis board, against the real server of
``tests/conftest.py`` (``TASKFLOW_TEST_REDIS_URL``)."""

from __future__ import annotations

import pytest

from tests.helpers import services
from tests.helpers.redis_boards import isolated_namespace, raw_client
from tests.jobs.conftest import board_factory

from .contract import *  # noqa: F403  (the contract tests themselves)

services.need_module("redis", "redis")
msgpack = services.need_module("msgpack", "redis")

pytestmark = pytest.mark.redis


def _injector(url: str, namespace: str):
    """Writes listings no reader can use: garbage bytes, msgpack of the wrong shape, missing
    keys, a bad priority, an unknown extension type, a posting whose uuid is not its field.
    Returns the fields the warnings must name."""

    def inject() -> list[str]:
        created = msgpack.ExtType(
            1,
            msgpack.packb(
                {"day": 1, "month": 1, "year": 2024, "hour": 0, "minute": 0, "second": 0}
            ),
        )

        def posting(uuid: str, **changes) -> bytes:
            fields = {
                "uuid": uuid,
                "name": "x",
                "priority": "HIGH",
                "created_on": created,
                "details": {},
                "sequence": 7,
            }
            fields.update(changes)
            return msgpack.packb(fields)

        bad = {
            "garbage": b"\x00\xff not msgpack {",
            "list": msgpack.packb([1, 2, 3]),
            "missing": msgpack.packb({"name": "x", "priority": "HIGH"}),
            "badprio": posting("badprio", priority="??"),
            "badext": posting("badext", details={"x": msgpack.ExtType(42, b"?")}),
            "badseq": posting("badseq", sequence="first"),
            "mismatch": posting("someone-else"),
        }
        client = raw_client(url)
        try:
            client.hset(f"{namespace}:listings", mapping=bad)
        finally:
            client.close()
        return list(bad)

    return inject


@pytest.fixture
def boards(redis_url):
    """Boards on a namespace of the test's own (its own keys and counters), deleted after."""
    with isolated_namespace(redis_url, prefix="tfjobs") as (conf, namespace):
        with board_factory(conf, _injector(redis_url, namespace)) as factory:
            yield factory
