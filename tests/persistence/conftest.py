"""Fixtures the persistence contract (``contract.py``) runs on.

Each ``test_contract_<backend>.py`` defines a ``_backend`` fixture yielding
``(backend, isolated)``: an upgraded, emptied backend, and whether it hands out copies
rather than its stored objects.
"""

from __future__ import annotations

import pytest


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
