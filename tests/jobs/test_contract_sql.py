"""Runs the jobboard contract (``contract.py``) on SQL boards: a SQLite file, PostgreSQL and
MariaDB/MySQL (the last two against the real servers of ``tests/conftest.py``)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import services
from tests.helpers.databases import isolated_mysql, isolated_postgres
from tests.jobs.conftest import board_factory

from .contract import *  # noqa: F403  (the contract tests themselves)

sa = services.need_module("sqlalchemy", "database")
services.need_module("jsonschema", "database")
sql = services.need_module("taskflow._jobs.sql", "database")


def _injector(url: str, namespace: str):
    """Writes rows no reader can use: garbage text, JSON of the wrong shape, missing keys,
    a posting whose uuid is not its row's. Returns the uuids the warnings must name."""

    def inject() -> list[str]:
        bad = {
            f"garbage-{uuid.uuid4().hex[:6]}": "\xff\xfe not json {",
            f"list-{uuid.uuid4().hex[:6]}": json.dumps([1, 2, 3]),
            f"missing-{uuid.uuid4().hex[:6]}": json.dumps({"name": "x", "priority": "HIGH"}),
            f"badprio-{uuid.uuid4().hex[:6]}": json.dumps(
                {"uuid": "u", "name": "x", "priority": "??", "details": {}, "created_on": "now"}
            ),
        }
        mismatch = f"mismatch-{uuid.uuid4().hex[:6]}"
        bad[mismatch] = json.dumps(
            {
                "uuid": "someone-else",
                "name": "x",
                "priority": "HIGH",
                "details": {},
                "book": None,
                "created_on": "2024-01-01T00:00:00+00:00",
            }
        )
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                for key, text in bad.items():
                    conn.execute(
                        sa.insert(sql.JOBS).values(
                            namespace=namespace,
                            uuid=key,
                            priority=0,
                            posting=text,
                            token=0,
                            attempts=0,
                            status="live",
                        )
                    )
        finally:
            engine.dispose()
        return list(bad)

    return inject


def _sqlite(request, tmp_path):
    """A fresh database file in the test's own ``tmp_path``."""
    yield f"sqlite:///{tmp_path / 'jobs.db'}"


def _postgres(request, tmp_path):
    """A schema of the test's own (its own tables and LISTEN channel), dropped after."""
    with isolated_postgres(request.getfixturevalue("postgres_url"), prefix="tfjobs") as url:
        yield url


def _mysql(request, tmp_path):
    """A database of the test's own, dropped after."""
    with isolated_mysql(request.getfixturevalue("mysql_url"), prefix="tfjobs") as url:
        yield url


_VARIANTS = {"sqlite": _sqlite, "postgresql": _postgres, "mysql": _mysql}
_MARKS = {"postgresql": [pytest.mark.postgres], "mysql": [pytest.mark.mysql]}


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, [])) for name in _VARIANTS])
def boards(request, tmp_path):
    """Boards on one SQL database of the test's own (see each variant's docstring)."""
    for url in _VARIANTS[request.param](request, tmp_path):
        conf = {"board": request.param, "connection": url, "namespace": "contract"}
        with board_factory(conf, _injector(url, "contract")) as factory:
            yield factory
