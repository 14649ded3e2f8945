"""Runs the backend contract suite (``contract.py``) against the ZooKeeper backend.

Needs a ZooKeeper server (``TASKFLOW_TEST_ZK_HOSTS``, default ``127.0.0.1:2181``); skipped
without one unless ``TASKFLOW_TEST_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import pytest

from .contract import *  # noqa: F403  (the contract tests themselves)

pytestmark = pytest.mark.zookeeper


@pytest.fixture
def _backend(zk_backend):
    """An upgraded, empty ZkBackend at a root of its own (see ``conftest.zk_backend``)."""
    with zk_backend.get_connection() as conn:
        conn.clear_all()
    return zk_backend, True
