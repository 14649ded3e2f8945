"""A record its parent links to but that is gone is an error naming it, never re-created.

A directory (or ZooKeeper) tree whose atom record was removed behind taskflow's back used
to read as a flow without that atom: a resumed engine then created a fresh record for it and
ran its task again. Reading such a flow now raises NotFound naming the missing record, as a
corrupt record raises StorageFailure naming it; destroying the book still works.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends, models
from tests.helpers.databases import isolated_zookeeper_root

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

RAN: list[str] = []


class Step(task.Task):
    def execute(self) -> str:
        RAN.append(self.name)
        return self.name


class Suspend(task.Task):
    engine: Any = None

    def execute(self) -> None:
        RAN.append(self.name)
        self.engine.suspend()


@contextlib.contextmanager
def _dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    def remove(kind: str, uuid: str) -> None:
        shutil.rmtree(tmp_path / kind / uuid)

    yield {"connection": f"dir://{tmp_path}"}, remove


@contextlib.contextmanager
def _zookeeper(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    from kazoo.client import KazooClient

    hosts = request.getfixturevalue("zk_hosts")
    with isolated_zookeeper_root(hosts) as root:
        client = KazooClient(hosts=hosts)
        client.start(timeout=10)

        def remove(kind: str, uuid: str) -> None:
            client.delete(f"{root}/{kind}/{uuid}", recursive=True)

        try:
            yield {"connection": "zookeeper", "hosts": hosts, "path": root}, remove
        finally:
            client.stop()
            client.close()


@pytest.fixture(params=["dir", pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Any, Callable[[str, str], None]]]:
    """An upgraded backend and ``remove(kind, uuid)``, deleting a record behind its back."""
    make = _dir if request.param == "dir" else _zookeeper
    with make(request, tmp_path) as (conf, remove):
        backend = backends.fetch(conf)
        with backend:
            with backend.get_connection() as conn:
                conn.upgrade()
            yield backend, remove


def test_a_resumed_flow_missing_an_atom_record_is_refused_not_run_again(store) -> None:
    backend, remove = store
    RAN.clear()

    def make_flow() -> tuple[lf.Flow, Suspend]:
        stopper = Suspend("stop")
        return lf.Flow("f").add(Step("a"), stopper, Step("b")), stopper

    flow, stopper = make_flow()
    engine = engines.load(flow, backend=backend)
    stopper.engine = engine
    engine.run()
    assert RAN == ["a", "stop"]
    flow_detail = engine.storage._flowdetail
    assert flow_detail.state == states.SUSPENDED
    gone = flow_detail.find(engine.storage.get_atom_uuid("a"))
    assert gone is not None
    remove("atom_details", gone.uuid)

    def resume_all() -> None:
        """The README's resume loop."""
        with backend.get_connection() as conn:
            for book in conn.get_logbooks():
                for fd in book:
                    if fd.state not in (states.SUCCESS, states.REVERTED):
                        flow, stopper = make_flow()
                        stopper.engine = engines.load(flow, flow_detail=fd, backend=backend)
                        stopper.engine.run()

    with pytest.raises(exc.NotFound, match=f"Missing record '.*{gone.uuid}"):
        resume_all()
    assert RAN == ["a", "stop"]


def test_reading_a_link_to_a_missing_record_names_it(store) -> None:
    backend, remove = store
    book = models.LogBook("book")
    flow = models.FlowDetail("flow", "fd-1")
    flow.add(models.TaskDetail("kept", "ad-kept"))
    flow.add(models.TaskDetail("lost", "ad-lost"))
    book.add(flow)
    book.add(models.FlowDetail("other", "fd-2"))
    with backend.get_connection() as conn:
        conn.save_logbook(book)
        remove("atom_details", "ad-lost")
        for read in (
            lambda: conn.get_flow_details("fd-1"),
            lambda: conn.get_logbook(book.uuid),
            lambda: list(conn.get_logbooks()),
            lambda: list(conn.get_flows_for_book(book.uuid)),
            lambda: list(conn.get_atoms_for_flow("fd-1")),
        ):
            with pytest.raises(exc.NotFound, match=r"atom_details/ad-lost.*flow_details/fd-1"):
                read()
        with pytest.raises(exc.NotFound, match="ad-lost"):
            conn.get_atom_details("ad-lost")
        assert conn.get_atom_details("ad-kept").name == "kept"
        assert [ad.name for ad in conn.get_flow_details("fd-1", lazy=True)] == []

        remove("flow_details", "fd-2")
        assert conn.get_logbook(book.uuid, lazy=True).name == "book"
        with pytest.raises(exc.NotFound, match=r"flow_details/fd-2.*books/"):
            conn.get_logbook(book.uuid)
        # Destroying the book (as after an interrupted destroy) still removes what is left.
        conn.destroy_logbook(book.uuid)
        assert list(conn.get_logbooks()) == []
        with pytest.raises(exc.NotFound):
            conn.get_atom_details("ad-kept")
