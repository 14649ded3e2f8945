"""Runs the backend contract suite (``contract.py``) against every backend.

To cover a new backend, add a parameter to the ``_backend`` fixture: a factory returning
``(backend, isolated)``. Backends needing a service read its address from the environment
and skip when it is unset.
"""

from __future__ import annotations

import pytest

from taskflow.persistence.backends import impl_memory

from .contract import *  # noqa: F403  (the contract tests themselves)


def _memory(deep_copy: bool):
    return impl_memory.MemoryBackend({"deep_copy": deep_copy}), deep_copy


_BACKENDS = {
    "memory": lambda: _memory(True),
    "memory-shared": lambda: _memory(False),
}


@pytest.fixture(params=sorted(_BACKENDS))
def _backend(request):
    backend, isolated = _BACKENDS[request.param]()
    with backend:
        with backend.get_connection() as conn:
            conn.upgrade()
            conn.clear_all()
        yield backend, isolated


@pytest.fixture
def connection(_backend):
    """An upgraded, empty connection to the backend under test."""
    backend, _ = _backend
    with backend.get_connection() as conn:
        yield conn


@pytest.fixture
def isolated(_backend):
    """Whether the backend hands out copies rather than its stored objects."""
    return _backend[1]
