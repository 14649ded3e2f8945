"""A backend that fails mid-run: StorageFailure reaches the caller, nothing unwritten counts.

Two real failures. On PostgreSQL a task terminates the engine's database sessions, so the
next write the engine makes fails on a dead connection (as when a database restarts under
a worker). On the fault-injecting memory backend (``tests/helpers/faulty_backend.py``) a
chosen write fails before touching the store; it runs without a service, so it also walks
a failure through every write of a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow._serialization import UnstorableValue
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends
from taskflow.utils import persistence_utils
from tests.helpers import services
from tests.helpers.databases import isolated_postgres
from tests.helpers.faulty_backend import FaultyMemoryBackend, records

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from taskflow.persistence.base import Backend

RAN: list[str] = []
APP = "taskflow-under-test"  # the sessions a postgres cut terminates: the engine's only


class Step(task.Task):
    def execute(self) -> str:
        RAN.append(self.name)
        return self.name.upper()

    def revert(self, **kwargs: Any) -> None:
        RAN.append(f"revert {self.name}")


class Boom(task.Task):
    def execute(self) -> str:
        RAN.append(self.name)
        raise RuntimeError("boom")

    def revert(self, **kwargs: Any) -> None:
        RAN.append(f"revert {self.name}")


class Cut(task.Task):
    """Makes the engine's next write fail (``cut`` stands for the database going away)."""

    def __init__(self, cut: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cut = cut

    def execute(self) -> str:
        RAN.append(self.name)
        self.cut()
        return "cut"


@dataclasses.dataclass
class Store:
    backend: Backend
    cut: Callable[[], None]


def _terminate_sessions(url: str) -> None:
    sa = services.need_module("sqlalchemy", "postgresql")

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": APP},
        )
    engine.dispose()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A backend, upgraded, and how to make the engine's next write to it fail."""
    RAN.clear()
    if request.param == "memory":
        memory = FaultyMemoryBackend()
        yield Store(memory, lambda: memory.faults.fail_nth(1))
        return
    sa = services.need_module("sqlalchemy", "postgresql")
    with isolated_postgres(request.getfixturevalue("postgres_url")) as url:
        url = str(sa.make_url(url).update_query_dict({"application_name": APP}))
        backend = backends.fetch({"connection": url})
        with backend.get_connection() as conn:
            conn.upgrade()
        yield Store(backend, lambda: _terminate_sessions(url))
        backend.close()


def _states(backend: Backend, flow_uuid: str) -> dict[str, str | None]:
    with backend.get_connection() as conn:
        return {ad.name: ad.state for ad in conn.get_flow_details(flow_uuid)}


def test_storage_failure_surfaces_and_the_flow_resumes(store):
    backend = store.backend
    flow = lf.Flow("f").add(Step("a"), Cut(store.cut, name="cut"), Step("b"))
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(flow, flow_detail=fd, backend=backend)
    with pytest.raises(exc.StorageFailure):
        engine.run()
    assert RAN == ["a", "cut"]  # b never started: cut's result was not written
    # What the backend holds: a done, cut not marked done (its result write failed).
    assert _states(backend, fd.uuid) == {
        "a": states.SUCCESS,
        "cut": states.RUNNING,
        "b": states.PENDING,
    }
    # The backend is back: a new engine on the stored records resumes; cut runs again (it
    # may have been cut mid-way), a does not.
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
    assert _states(backend, fd.uuid) == {
        "a": states.SUCCESS,
        "cut": states.SUCCESS,
        "b": states.SUCCESS,
    }
    with backend.get_connection() as conn:
        results = {ad.name: ad.results for ad in conn.get_flow_details(fd.uuid)}
    assert results == {"a": "A", "cut": "CUT", "b": "B"}


def test_same_engine_reloads_after_a_storage_failure(store):
    backend = store.backend
    flow = lf.Flow("f").add(Step("a"), Cut(store.cut, name="cut"), Step("b"))
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


# -- memory only: a failure at each write, by kind, during an outage ---------------------------


def _linear() -> lf.Flow:
    return lf.Flow("f").add(Step("a"), Step("b"), Step("c"))


def _reverting() -> lf.Flow:
    return lf.Flow("f").add(Step("a"), Step("b"), Boom("boom"))


def _reference(make_flow: Callable[[], lf.Flow]) -> tuple[list[dict[str, Any]], list[str]]:
    """Records after each write of a run without faults (the first: before any), and RAN."""
    backend = FaultyMemoryBackend()
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(make_flow(), flow_detail=fd, backend=backend)
    snapshots = [records(backend, fd.uuid)]
    backend.faults.watch(lambda kind, record: snapshots.append(records(backend, fd.uuid)))
    RAN.clear()
    with contextlib.suppress(RuntimeError):  # the reverting flow's boom; checked by the caller
        engine.run()
    return snapshots, list(RAN)


def _run_failing_at(make_flow: Callable[[], lf.Flow], n: int) -> tuple[FaultyMemoryBackend, str]:
    backend = FaultyMemoryBackend()
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(make_flow(), flow_detail=fd, backend=backend)
    backend.faults.fail_nth(n)
    with pytest.raises(exc.StorageFailure) as caught:
        engine.run()
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert len(backend.faults.injected) == 1
    return backend, fd.uuid


def _resume(backend: FaultyMemoryBackend, flow_uuid: str, make_flow: Callable[[], lf.Flow]) -> Any:
    with backend.get_connection() as conn:
        reloaded = conn.get_flow_details(flow_uuid)  # as a new process would find it
    RAN.clear()
    return engines.load(make_flow(), flow_detail=reloaded, backend=backend)


def test_a_failed_write_anywhere_leaves_the_last_written_records_and_resumes():
    snapshots, ran = _reference(_linear)
    assert ran == ["a", "b", "c"]
    assert len(snapshots) > 7  # atoms created, flow and each atom's RUNNING and SUCCESS
    for n in range(1, len(snapshots)):
        backend, flow_uuid = _run_failing_at(_linear, n)
        at_failure = records(backend, flow_uuid)
        assert at_failure == snapshots[n - 1], f"failing write {n}"
        done = [name for name, fields in at_failure["atoms"].items() if fields[0] == states.SUCCESS]
        _resume(backend, flow_uuid, _linear).run()
        # Only what the backend did not hold as done runs again, in order.
        expected = [name for name in ("a", "b", "c") if name not in done]
        assert expected == RAN, f"failing write {n}"
        assert records(backend, flow_uuid) == snapshots[-1], f"failing write {n}"


def test_a_failed_write_while_reverting_leaves_the_last_written_records_and_resumes():
    snapshots, ran = _reference(_reverting)
    assert ran == ["a", "b", "boom", "revert boom", "revert b", "revert a"]
    final = snapshots[-1]
    assert final["state"] == states.REVERTED
    for n in range(1, len(snapshots)):
        backend, flow_uuid = _run_failing_at(_reverting, n)
        at_failure = records(backend, flow_uuid)
        assert at_failure == snapshots[n - 1], f"failing write {n}"
        held = {name: fields[0] for name, fields in at_failure["atoms"].items()}
        with pytest.raises(RuntimeError, match="boom"):
            _resume(backend, flow_uuid, _reverting).run()
        resumed = records(backend, flow_uuid)
        assert resumed["state"] == states.REVERTED, f"failing write {n}"
        # Every atom reverted, exactly as in the run without faults (failure text aside).
        assert {name: fields[:2] for name, fields in resumed["atoms"].items()} == {
            name: fields[:2] for name, fields in final["atoms"].items()
        }, f"failing write {n}"
        # Only what the backend did not hold as finished runs again: executions of atoms
        # never recorded done, reverts of atoms not recorded REVERTED, in reverse order.
        executed = [name for name in RAN if not name.startswith("revert ")]
        assert all(
            held.get(name, states.PENDING) in (states.PENDING, states.RUNNING) for name in executed
        ), f"failing write {n}: {RAN} after {held}"
        reverted = [name for name in RAN if name.startswith("revert ")]
        expected = [
            f"revert {name}" for name in ("boom", "b", "a") if held.get(name) != states.REVERTED
        ]
        assert expected == reverted, f"failing write {n}: {RAN} after {held}"


def test_a_kind_of_write_failing_stops_the_run_before_any_task():
    backend = FaultyMemoryBackend()
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(_linear(), flow_detail=fd, backend=backend)
    backend.faults.fail_every("update_flow_record")
    RAN.clear()
    with pytest.raises(exc.StorageFailure):
        engine.run()
    # The flow's RUNNING state was never written, so nothing may have started.
    assert RAN == []
    held = records(backend, fd.uuid)
    assert held["state"] != states.RUNNING
    assert {fields[0] for fields in held["atoms"].values()} == {states.PENDING}
    backend.faults.clear()
    engine.run()
    assert RAN == ["a", "b", "c"]
    assert records(backend, fd.uuid)["state"] == states.SUCCESS


def test_an_outage_fails_the_run_without_changing_the_records():
    backend = FaultyMemoryBackend()
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(_linear(), flow_detail=fd, backend=backend)
    before = records(backend, fd.uuid)
    RAN.clear()
    with backend.faults.outage(), pytest.raises(exc.StorageFailure):
        engine.run()
    assert RAN == []
    assert records(backend, fd.uuid) == before
    engine.run()  # the backend is back
    assert RAN == ["a", "b", "c"]


def test_the_faulty_backend_fails_exactly_the_chosen_writes():
    from taskflow.persistence import models

    backend = FaultyMemoryBackend()
    faults = backend.faults
    book = models.LogBook("b")
    fd = models.FlowDetail("f", "f-uuid")
    book.add(fd)
    ad = models.TaskDetail("t", "t-uuid")
    fd.add(ad)
    with backend.get_connection() as conn:
        conn.save_logbook(book)
        faults.fail_nth(2, "update_atom_details", when=lambda rec: rec.state == states.SUCCESS)
        for state in (states.RUNNING, states.SUCCESS, states.FAILURE):
            ad.state = state
            conn.update_atom_details(ad)
        ad.state = states.SUCCESS  # the 2nd SUCCESS write of an atom: fails
        with pytest.raises(exc.StorageFailure, match="update_atom_details"):
            conn.update_atom_details(ad)
        assert conn.get_atom_details("t-uuid").state == states.FAILURE  # not applied
        faults.fail_every("update_flow_record")
        fd.state = states.RUNNING
        with pytest.raises(exc.StorageFailure):
            conn.update_flow_record(fd)  # one write, though it delegates to another
        conn.update_flow_details(fd)
    assert faults.injected == [("update_atom_details", "t"), ("update_flow_record", "f")]
    assert faults.writes == 5
    with pytest.raises(ValueError, match="deep_copy"):
        FaultyMemoryBackend({"deep_copy": False})
    with pytest.raises(ValueError, match="not a write"):
        faults.fail_nth(1, "get_logbook")


class _CheckedAtomWrites(FaultyMemoryBackend):
    """A memory backend that calls :meth:`check` before each atom write, which may raise."""

    def check(self, ad: Any) -> None:
        """Called with the atom detail about to be written."""

    def get_connection(self) -> Any:
        conn = super().get_connection()
        update = conn.update_atom_details

        def update_atom_details(ad: Any, ignore_missing: bool = False) -> Any:
            self.check(ad)
            return update(ad, ignore_missing=ignore_missing)

        conn.update_atom_details = update_atom_details  # type: ignore[method-assign]
        return conn


class _DriverErrorBackend(_CheckedAtomWrites):
    """A user's backend whose atom writes can raise its driver's own error, untranslated."""

    fail_at: int | None = None  # the n-th atom write (from 1) raises ConnectionResetError

    def check(self, ad: Any) -> None:
        if self.fail_at is not None:
            self.fail_at -= 1
            if self.fail_at == 0:
                self.fail_at = None
                raise ConnectionResetError("the driver lost its socket")


def test_a_backends_own_error_makes_the_next_run_start_from_the_backend():
    backend = _DriverErrorBackend()
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(_linear(), flow_detail=fd, backend=backend)
    engine.compile()
    engine.prepare()
    backend.fail_at = 4  # a: RUNNING, SUCCESS; b: RUNNING, then b's SUCCESS fails
    RAN.clear()
    with pytest.raises(ConnectionResetError):
        engine.run()
    assert RAN == ["a", "b"]
    held = records(backend, fd.uuid)
    assert held["atoms"]["b"][0] == states.RUNNING  # what the backend holds for b
    # The same engine starts again from those records: b runs again, a does not.
    RAN.clear()
    engine.run()
    assert RAN == ["b", "c"]
    assert records(backend, fd.uuid)["state"] == states.SUCCESS


# -- an unstorable value is a StorageFailure, but no outage -------------------------------------


class Unstorable(task.Task):
    def execute(self) -> object:
        RAN.append(self.name)
        return object()


def test_an_unstorable_result_fails_its_task_and_the_flow_reverts(tmp_path):
    # UnstorableValue is a StorageFailure (``except StorageFailure`` catches it) but nothing
    # is wrong with the backend: the task fails and the flow reverts and ends REVERTED, in the
    # backend as in the engine, rather than stopping as if a write had been lost.
    services.need_module("sqlalchemy", "database")
    with backends.backend(f"sqlite:///{tmp_path / 'flows.db'}") as backend:
        _book, fd = persistence_utils.temporary_flow_detail(backend)
        flow = lf.Flow("f").add(Step("a"), Unstorable(name="bad"), Step("b"))
        engine = engines.load(flow, flow_detail=fd, backend=backend)
        RAN.clear()
        with pytest.raises(exc.StorageFailure, match="result of atom 'bad' can not be stored"):
            engine.run()
        assert RAN == ["a", "bad", "revert a"]
        assert engine.storage.get_flow_state() == states.REVERTED
        with backend.get_connection() as conn:
            assert conn.get_flow_details(fd.uuid).state == states.REVERTED
        assert _states(backend, fd.uuid) == {
            "a": states.REVERTED,
            "bad": states.REVERTED,
            "b": states.PENDING,
        }


class _UnstorableFailureBackend(_CheckedAtomWrites):
    """A backend that can not hold any atom's failure (as a size limit could refuse one)."""

    def check(self, ad: Any) -> None:
        if ad.state == states.FAILURE:
            raise UnstorableValue(f"Atom '{ad.name}': its failure is too big")


def test_an_unstorable_value_outside_any_atom_fails_the_run_not_as_an_outage():
    # The engine turns an unstorable result into its task's failure; an unstorable value in
    # a write that fails no atom (here the failure itself) ends the run FAILURE, as any error
    # outside an atom does, instead of leaving the flow RUNNING as after an outage.
    backend = _UnstorableFailureBackend()
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    engine = engines.load(_reverting(), flow_detail=fd, backend=backend)
    RAN.clear()
    with pytest.raises(UnstorableValue, match="too big"):
        engine.run()
    assert RAN == ["a", "b", "boom"]  # nothing reverted: boom's failure was never recorded
    assert records(backend, fd.uuid)["state"] == states.FAILURE
    assert engine.storage.get_flow_state() == states.FAILURE
