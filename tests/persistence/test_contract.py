"""Runs the backend contract suite (``contract.py``) against every backend.

This file covers the memory backend. Each other backend has its own
``test_contract_<backend>.py`` that imports the same contract and defines a ``_backend``
fixture yielding ``(backend, isolated)``; ``conftest.py`` builds ``connection`` on it.
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
