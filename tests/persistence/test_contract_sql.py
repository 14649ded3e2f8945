"""Runs the backend contract suite (``contract.py``) against the SQL backend.

Variants: a SQLite file in both durability modes, PostgreSQL (psycopg 3) and MariaDB/MySQL
(PyMySQL), the last two against the real servers of ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest

from tests.helpers import services
from tests.helpers.databases import isolated_mysql, isolated_postgres

from .contract import *  # noqa: F403  (the contract tests themselves)

impl_sqlalchemy = services.need_module("taskflow.persistence.backends.impl_sqlalchemy", "database")


def _sqlite(request, tmp_path, synchronous):
    """A fresh database file in the test's own ``tmp_path``: nothing is shared between tests."""
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    yield impl_sqlalchemy.SQLAlchemyBackend({"connection": url, "sqlite_synchronous": synchronous})


def _postgres(request, tmp_path, synchronous):
    with isolated_postgres(request.getfixturevalue("postgres_url")) as url:
        yield impl_sqlalchemy.SQLAlchemyBackend({"connection": url})


def _mysql(request, tmp_path, synchronous):
    with isolated_mysql(request.getfixturevalue("mysql_url")) as url:
        yield impl_sqlalchemy.SQLAlchemyBackend({"connection": url})


_VARIANTS = {
    "sqlite-normal": (_sqlite, "normal"),
    "sqlite-full": (_sqlite, "full"),
    "postgresql": (_postgres, None),
    "mysql": (_mysql, None),
}
_MARKS = {"postgresql": [pytest.mark.postgres], "mysql": [pytest.mark.mysql]}


@pytest.fixture(
    params=[pytest.param(name, marks=_MARKS.get(name, [])) for name in _VARIANTS],
)
def _backend(request, tmp_path):
    """An upgraded, emptied SQL backend, isolated per test (see each variant's docstring)."""
    make, synchronous = _VARIANTS[request.param]
    for backend in make(request, tmp_path, synchronous):
        with backend:
            with backend.get_connection() as conn:
                conn.upgrade()
                conn.clear_all()
            yield backend, True
