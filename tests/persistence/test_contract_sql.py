"""Runs the backend contract suite (``contract.py``) against the SQL backend.

Variants: a SQLite file in both durability modes, PostgreSQL (psycopg 3) and MariaDB/MySQL
(PyMySQL), the last two against the real servers of ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from taskflow.persistence.backends import impl_sqlalchemy

from .contract import *  # noqa: F403  (the contract tests themselves)

if TYPE_CHECKING:
    from collections.abc import Iterator


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _sqlite(request, tmp_path, synchronous):
    """A fresh database file in the test's own ``tmp_path``: nothing is shared between tests."""
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    yield impl_sqlalchemy.SQLAlchemyBackend({"connection": url, "sqlite_synchronous": synchronous})


@contextlib.contextmanager
def isolated_postgres(server: str) -> Iterator[str]:
    """The URL of a schema of its own (``CREATE SCHEMA`` + ``search_path``), dropped after.

    A schema isolates tables, enum types and ``alembic_version`` like a database would, but
    costs a fraction of ``CREATE DATABASE``; dropping it with CASCADE removes everything the
    test left, whatever state it ended in.
    """
    schema = _unique("tf")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = sa.make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@contextlib.contextmanager
def isolated_mysql(server: str) -> Iterator[str]:
    """The URL of a database of its own, dropped after.

    In MySQL a schema *is* a database, so this is the same isolation as PostgreSQL's schema:
    tests never see each other's rows or tables, and a failed test leaves nothing behind.
    """
    database = _unique("tf")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    try:
        yield sa.make_url(server).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {database}")
        admin.dispose()


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
