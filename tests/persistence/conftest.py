"""Fixtures the persistence contract (``contract.py``) runs on.

Each ``test_contract_<backend>.py`` defines a ``_backend`` fixture yielding
``(backend, isolated)``: an upgraded, emptied backend, and whether it hands out copies
rather than its stored objects.
"""

from __future__ import annotations

import pytest

from tests.helpers.databases import isolated_zookeeper_root


@pytest.fixture
def connection(_backend):
    """An upgraded, empty connection to the backend under test."""
    backend, _ = _backend
    with backend.get_connection() as conn:
        yield conn


@pytest.fixture
def other_connection(_backend):
    """A second connection to the same backend (another engine, say)."""
    backend, _ = _backend
    with backend.get_connection() as conn:
        yield conn


@pytest.fixture
def isolated(_backend):
    """Whether the backend hands out copies rather than its stored objects."""
    return _backend[1]


@pytest.fixture
def zk_backend(zk_hosts):
    """An upgraded, empty ZkBackend rooted at a fresh ``/taskflow-test-<uuid>`` path.

    Every test gets its own root path (a chroot of the tree) on the shared server, so
    tests never see each other's books, runs of the suite can overlap on one server (CI
    jobs, developers), and a crashed run leaves nothing that later runs would read. The
    root is deleted recursively afterwards so the server does not fill up.
    """
    from taskflow.persistence.backends import impl_zookeeper

    with isolated_zookeeper_root(zk_hosts) as root:
        backend = impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root, "timeout": 10})
        try:
            with backend.get_connection() as conn:
                conn.upgrade()
            yield backend
        finally:
            backend.close()
