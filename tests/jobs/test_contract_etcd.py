"""Runs the jobboard contract (``contract.py``) on the etcd board, against the real server of
``tests/conftest.py`` (``TASKFLOW_TEST_ETCD``, started on CI by ``.ci/etcd.sh``)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import services
from tests.helpers.etcd import etcd_path, put
from tests.jobs.conftest import board_factory

from .contract import *  # noqa: F403  (the contract tests themselves)

services.need_module("etcd3gw", "etcd")

pytestmark = pytest.mark.etcd


def _injector(address: str, path: str):
    """Writes jobs no reader can use under the board's keys: garbage bytes, JSON of the
    wrong shape, missing keys, a bad priority, a lock that names no owner. Returns the keys
    the warnings must name."""

    def inject() -> list[str]:
        root = f"/taskflow/jobs/{path}/"
        good_posting = {
            "uuid": "u-locked",
            "name": "x",
            "priority": "HIGH",
            "details": {},
            "created_on": "2024-01-01T00:00:00",
            "sequence": 905,
        }
        bad = {
            f"{root}job900.data": b"\x00\xff not json {",
            f"{root}job901.data": json.dumps([1, 2, 3]).encode(),
            f"{root}job902.data": json.dumps({"name": "x", "priority": "HIGH"}).encode(),
            f"{root}job903.data": json.dumps(
                {"uuid": "u", "name": "x", "priority": "??", "details": {}, "created_on": "now"}
            ).encode(),
            f"{root}job904.data": b"\xc3\x28 invalid utf-8",
            f"{root}job905.lock": b"{owner",
        }
        for key, value in bad.items():
            put(address, key, value)
        put(address, f"{root}job905.data", json.dumps(good_posting).encode())
        return list(bad)

    return inject


@pytest.fixture
def boards(request, etcd_address):
    """Boards on a ``path`` of the test's own (its own keys and watch), deleted after."""
    with etcd_path(etcd_address, request.node.name) as (conf, path):
        with board_factory(conf, _injector(etcd_address, path)) as factory:
            yield factory
