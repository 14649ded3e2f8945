"""Storage written from many threads at once (issue 8): no write is lost or refused.

Every storage write reads an in-memory record, changes it and saves it whole. Run from many
threads without a lock, two threads create the injector record twice (one of them is then
unknown to the backend: NotFound), or save the same record in the opposite order to the one
they changed it in (the backend keeps a stale copy). Each test starts its threads together
at a barrier and runs a few rounds, so an unsafe storage fails reliably.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

import pytest

from taskflow import engines, task
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends, models
from taskflow.storage import Storage
from taskflow.utils import persistence_utils
from tests.helpers import services
from tests.helpers.databases import isolated_postgres

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from taskflow.persistence.base import Backend

THREADS = 50
ROUNDS = 3


class Noop(task.Task):
    def execute(self) -> None:
        return None


class Sum(task.Task):
    def execute(self, **values: int) -> int:
        return sum(values.values())


def _sql_backend(url: str) -> Backend:
    services.need_module("sqlalchemy", "database")
    return backends.fetch({"connection": url})


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    """An upgraded backend of the kind named by the parameter, isolated for this test.

    SQLite gets a file in the test's own ``tmp_path``; PostgreSQL a schema of its own
    (see ``isolated_postgres``): nothing is shared with other tests.
    """
    if request.param == "memory":
        yield backends.fetch({"connection": "memory://"})
        return
    with (
        isolated_postgres(request.getfixturevalue("postgres_url"))
        if request.param == "postgresql"
        else contextlib.nullcontext(f"sqlite:///{tmp_path / 'flows.db'}")
    ) as url:
        backend = _sql_backend(url)
        try:
            with backend.get_connection() as conn:
                conn.upgrade()
            yield backend
        finally:
            backend.close()


def _new_storage(backend: Backend, atoms: int = 0) -> Storage:
    """A storage over a new saved flow detail with ``atoms`` tasks ``t0``, ``t1``..."""
    _book, flow_detail = persistence_utils.temporary_flow_detail(backend)
    storage = Storage(flow_detail, backend=backend)
    if atoms:
        storage.ensure_atoms([Noop(f"t{i}") for i in range(atoms)])
    return storage


def _in_threads(work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(i)`` for i in 0..THREADS-1, all threads released together; their errors."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as err:  # reported by the test, not lost in the thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _stored(backend: Backend, storage: Storage) -> models.FlowDetail:
    with backend.get_connection() as conn:
        return conn.get_flow_details(storage.flow_uuid)


def _injections(backend: Backend) -> None:
    """Flow-level injections from many threads: one injector record holding them all."""
    storage = _new_storage(backend)
    assert _in_threads(lambda i: storage.inject({f"k{i}": i})) == []
    expected = {f"k{i}": i for i in range(THREADS)}
    assert storage.fetch_all() == expected
    stored = {ad.name: ad for ad in _stored(backend, storage)}
    assert list(stored) == [storage.injector_name]
    assert stored[storage.injector_name].results == expected
    # A storage opened afterwards (a resumed engine) sees every value too.
    assert Storage(_stored(backend, storage), backend=backend).fetch_all() == expected


def _metadata_of_one_atom(backend: Backend) -> None:
    """Metadata updates of one atom from many threads: the stored record has every key."""
    storage = _new_storage(backend, atoms=1)
    assert _in_threads(lambda i: storage.update_atom_metadata("t0", {f"k{i}": i})) == []
    (stored,) = _stored(backend, storage)
    assert stored.meta == {f"k{i}": i for i in range(THREADS)}


def _atom_injections(backend: Backend) -> None:
    """Persisted injections for one atom from many threads: all kept, in memory and stored."""
    storage = _new_storage(backend, atoms=1)
    inject = storage.inject_atom_args
    assert _in_threads(lambda i: inject("t0", {f"k{i}": i}, transient=False)) == []
    expected = {f"k{i}": i for i in range(THREADS)}
    assert storage.atom_injections("t0") == expected
    (stored,) = _stored(backend, storage)
    assert stored.meta["injected"] == expected


def _engine_injections(backend: Backend) -> None:
    """Injections into an engine's storage, each owning the flow while it writes."""
    flow = lf.Flow("sum").add(Sum("sum", requires=[f"k{i}" for i in range(THREADS)]))
    engine = engines.load(flow, backend=backend)
    assert _in_threads(lambda i: engine.storage.inject({f"k{i}": i})) == []
    engine.run()
    assert engine.storage.get("sum") == sum(range(THREADS))


def test_concurrent_injections_are_all_stored(backend):
    for _ in range(ROUNDS):
        _injections(backend)


def test_concurrent_metadata_updates_of_one_atom_are_all_stored(backend):
    for _ in range(ROUNDS):
        _metadata_of_one_atom(backend)


def test_concurrent_atom_injections_are_all_stored(backend):
    for _ in range(ROUNDS):
        _atom_injections(backend)


def test_concurrent_injections_into_an_engine_are_all_used(backend):
    for _ in range(ROUNDS):
        _engine_injections(backend)
