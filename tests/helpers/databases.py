"""Databases (and ZooKeeper roots) of a test's own on the shared servers.

Each context manager creates a fresh schema (PostgreSQL) or database (MySQL) with a unique
name, yields a URL that reaches only it, and drops it with everything in it afterwards,
whatever state the test left it in: tests never see each other's rows, tables, enum types
or ``alembic_version``. SQLAlchemy is imported only when one is used (a test skips without
it, see :func:`tests.helpers.services.need_module`).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

from tests.helpers import services

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["isolated_mysql", "isolated_postgres", "isolated_zookeeper_root", "unique_name"]


def unique_name(prefix: str) -> str:
    """``<prefix>_<12 hex digits>``: a name no other test uses (valid as an SQL identifier)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def isolated_postgres(server: str, prefix: str = "tf") -> Iterator[str]:
    """The URL of a schema of its own (``CREATE SCHEMA`` + ``search_path``), dropped after.

    A schema isolates tables, enum types and ``alembic_version`` like a database would, but
    costs a fraction of ``CREATE DATABASE``; dropping it with CASCADE removes everything the
    test left, whatever state it ended in.
    """
    sa = services.need_module("sqlalchemy", "postgresql")
    schema = unique_name(prefix)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = sa.make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.dispose()


@contextlib.contextmanager
def isolated_mysql(server: str, prefix: str = "tf") -> Iterator[str]:
    """The URL of a database of its own, dropped after.

    In MySQL a schema *is* a database, so this is the same isolation as PostgreSQL's schema:
    tests never see each other's rows or tables, and a failed test leaves nothing behind.
    """
    sa = services.need_module("sqlalchemy", "mysql")
    database = unique_name(prefix)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        try:
            yield sa.make_url(server).set(database=database).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE {database}")
    finally:
        admin.dispose()


@contextlib.contextmanager
def isolated_zookeeper_root(hosts: str, prefix: str = "taskflow-test") -> Iterator[str]:
    """A fresh root path on the shared ZooKeeper server, deleted recursively afterwards."""
    from kazoo.client import KazooClient

    root = f"/{prefix}-{uuid.uuid4().hex}"
    try:
        yield root
    finally:
        cleaner = KazooClient(hosts=hosts)
        cleaner.start(timeout=10)
        try:
            cleaner.delete(root, recursive=True)
        finally:
            cleaner.stop()
            cleaner.close()
