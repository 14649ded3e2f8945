"""Runs the backend contract suite (``contract.py``) against the directory backend."""

from __future__ import annotations

import pytest

from taskflow.persistence import backends
from taskflow.persistence.backends import impl_dir

from .contract import *  # noqa: F403  (the contract tests themselves)


@pytest.fixture(params=["dir-conf", "file-uri"])
def _backend(request, tmp_path):
    """An upgraded, empty directory backend in a fresh directory of its own.

    Each test gets its own ``tmp_path``, so no records (or locks) are shared between tests
    and tests can run in parallel. ``dir-conf`` passes the path as the ``path`` option,
    ``file-uri`` as the path of a ``file:///...`` URI given to ``backends.fetch``.
    """
    root = tmp_path / "store"
    if request.param == "dir-conf":
        backend = impl_dir.DirBackend({"path": str(root)})
    else:
        backend = backends.fetch(f"file://{root}")
    assert isinstance(backend, impl_dir.DirBackend)
    with backend:
        with backend.get_connection() as conn:
            conn.upgrade()
            conn.clear_all()
        yield backend, True
