"""Runs the backend contract suite (``contract.py``) against the ZooKeeper backend.

Needs a ZooKeeper server (``TASKFLOW_TEST_ZK_HOSTS``, default ``127.0.0.1:2181``); skipped
without one unless ``TASKFLOW_TEST_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import uuid

import pytest

from .contract import *  # noqa: F403  (the contract tests themselves)

pytestmark = pytest.mark.zookeeper


@pytest.fixture
def _backend(zk_hosts):
    """An upgraded, empty ZkBackend rooted at a fresh ``/taskflow-test-<uuid>`` path.

    Every test gets its own root path (a chroot of the tree) on the shared server, so
    tests never see each other's books, runs of the suite can overlap on one server (CI
    jobs, developers), and a crashed run leaves nothing that later runs would read. The
    root is deleted recursively afterwards so the server does not fill up.
    """
    from kazoo.client import KazooClient

    from taskflow.persistence.backends import impl_zookeeper

    root = f"/taskflow-test-{uuid.uuid4().hex}"
    backend = impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root, "timeout": 10})
    try:
        with backend.get_connection() as conn:
            conn.upgrade()
            conn.clear_all()
        yield backend, True
    finally:
        backend.close()
        cleaner = KazooClient(hosts=zk_hosts)
        cleaner.start(timeout=10)
        try:
            cleaner.delete(root, recursive=True)
        finally:
            cleaner.stop()
            cleaner.close()
