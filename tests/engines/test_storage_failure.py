"""A backend that fails mid-run: StorageFailure reaches the caller, nothing unwritten counts.

The failure is real: a task terminates the engine's PostgreSQL sessions, so the next write
the engine makes fails on a dead connection (as when a database restarts under a worker).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends
from taskflow.utils import persistence_utils
from tests.persistence.test_contract_sql import isolated_postgres

pytestmark = pytest.mark.postgres

RAN: list[str] = []
APP = "taskflow-under-test"  # the sessions CutTheDatabase terminates: the engine's only


class Step(task.Task):
    def execute(self) -> str:
        RAN.append(self.name)
        return self.name.upper()


class CutTheDatabase(task.Task):
    """Terminates the engine's database sessions (those named ``APP``)."""

    def __init__(self, url: str, **kwargs):
        super().__init__(**kwargs)
        self.url = url

    def execute(self) -> str:
        RAN.append(self.name)
        engine = sa.create_engine(self.url)
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": APP},
            )
        engine.dispose()
        return "cut"


@pytest.fixture
def pg(postgres_url):
    with isolated_postgres(postgres_url) as url:
        yield str(sa.make_url(url).update_query_dict({"application_name": APP}))


def test_storage_failure_surfaces_and_the_flow_resumes(pg):
    RAN.clear()
    backend = backends.fetch({"connection": pg})
    with backend.get_connection() as conn:
        conn.upgrade()
    flow = lf.Flow("f").add(Step("a"), CutTheDatabase(pg, name="cut"), Step("b"))
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(flow, flow_detail=fd, backend=backend)
    with pytest.raises(exc.StorageFailure):
        engine.run()
    assert RAN == ["a", "cut"]  # b never started: cut's result was not written
    # What the database holds: a done, cut not marked done (its result write failed).
    with backend.get_connection() as conn:
        stored = {ad.name: ad.state for ad in conn.get_flow_details(fd.uuid)}
    assert stored["a"] == states.SUCCESS
    assert stored["cut"] == states.RUNNING
    assert stored["b"] == states.PENDING
    # The database is back (new sessions): a new engine on the stored records resumes: cut
    # runs again (it may have been cut mid-way), a does not.
    RAN.clear()
    with backend.get_connection() as conn:
        reloaded = conn.get_flow_details(fd.uuid)  # as a new process would find it
    engine2 = engines.load(
        lf.Flow("f").add(Step("a"), Step("cut"), Step("b")),
        flow_detail=reloaded,
        backend=backend,
    )
    engine2.run()
    assert RAN == ["cut", "b"]
    with backend.get_connection() as conn:
        stored = {ad.name: ad.state for ad in conn.get_flow_details(fd.uuid)}
    assert stored == {"a": states.SUCCESS, "cut": states.SUCCESS, "b": states.SUCCESS}
    backend.close()


def test_same_engine_reloads_after_a_storage_failure(pg):
    RAN.clear()
    backend = backends.fetch({"connection": pg})
    with backend.get_connection() as conn:
        conn.upgrade()
    flow = lf.Flow("f").add(Step("a"), CutTheDatabase(pg, name="cut"), Step("b"))
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(flow, flow_detail=fd, backend=backend)
    with pytest.raises(exc.StorageFailure):
        engine.run()
    # In memory the engine had marked cut SUCCESS; after the failure it trusts the backend
    # again: cut (RUNNING there) runs again, and cuts again, so the run fails the same way.
    assert engine.storage.get_atom_state("cut") == states.RUNNING
    RAN.clear()
    with pytest.raises(exc.StorageFailure):
        engine.run()
    assert RAN == ["cut"]
    backend.close()
