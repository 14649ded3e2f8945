"""Runs the jobboard contract (``contract.py``) on the ZooKeeper board, against the real server
of ``tests/conftest.py`` (``zk_hosts``)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import services
from tests.helpers.databases import isolated_zookeeper_root
from tests.jobs.conftest import board_factory

from .contract import *  # noqa: F403  (the contract tests themselves)

services.need_module("kazoo", "zookeeper")

pytestmark = pytest.mark.zookeeper


def _injector(hosts: str, path: str):
    """Writes job znodes no reader can use (garbage bytes, JSON of the wrong shape, missing
    keys, a bad priority); returns their paths, which the warnings must name."""

    def inject() -> list[str]:
        from kazoo.client import KazooClient

        bad = [
            b"\x00\xff not json {",
            json.dumps([1, 2, 3]).encode(),
            json.dumps({"name": "x", "priority": "HIGH"}).encode(),
            json.dumps({"uuid": "u", "name": "x", "priority": "??", "details": {}}).encode(),
            b"",
        ]
        client = KazooClient(hosts=hosts)
        client.start(timeout=10)
        try:
            return [client.create(f"{path}/job", data, sequence=True) for data in bad]
        finally:
            client.stop()
            client.close()

    return inject


@pytest.fixture
def boards(zk_hosts):
    """Boards on a root path of the test's own (its own jobs, trash and entities), deleted
    after."""
    with isolated_zookeeper_root(zk_hosts, prefix="tfjobs") as root:
        conf = {"board": "zookeeper", "hosts": zk_hosts, "path": f"{root}/jobs"}
        with board_factory(conf, _injector(zk_hosts, f"{root}/jobs")) as factory:
            yield factory
