"""The record-store contract (``backends/_path_store.py``), against every store that has it.

The memory (isolating and sharing), directory and ZooKeeper backends each translate the same
few operations -- read, children, commit of a transaction of writes and deletes -- to their
medium; ``PathConnection`` relies on exactly what is tested here. Each store is taken from a
real, upgraded connection of its backend, with records made by that backend's codec.
"""

from __future__ import annotations

from typing import Any

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.persistence import models
from taskflow.persistence.backends import _path_store as ps
from taskflow.persistence.backends import impl_dir, impl_memory


class Store:
    """A store under test, taken from a connection of its backend.

    Args:
        conn: the connection (``PathConnection``) the store belongs to.
        atomic: a failing transaction leaves nothing of itself applied.
        serialises: records are encoded (values JSON can not hold are refused).
    """

    def __init__(self, conn: Any, atomic: bool, serialises: bool) -> None:
        self.conn = conn
        self.store: ps.RecordStore[Any] = conn._store
        self.codec: ps.Codec[Any] = conn._codec
        self.flows: str = conn.flow_path  # a directory of parent records
        self.atoms: str = conn.atom_path  # a directory of leaf records
        self.atomic = atomic
        self.serialises = serialises

    def atom(self, name: str, result: Any = None) -> tuple[str, Any]:
        ad = models.TaskDetail(name, name)
        ad.put(states.SUCCESS, result)
        return ps.join(self.atoms, name), self.codec.atom(ad)

    def flow(self, name: str, state: str = states.RUNNING) -> tuple[str, Any]:
        fd = models.FlowDetail(name, name)
        fd.state = state
        return ps.join(self.flows, name), self.codec.flow(fd)

    def commit(self, *ops: ps.Write[Any] | ps.Delete) -> dict[str, ps.Stored]:
        return self.store.commit(ps.Transaction(list(ops)))

    def get(self, path: str, links: bool = False) -> ps.Entry[Any] | None:
        return self.store.read([path], links=links)[0]


@pytest.fixture(
    params=[
        "memory",
        "memory-shared",
        "dir",
        pytest.param("zookeeper", marks=pytest.mark.zookeeper),
    ]
)
def store(request, tmp_path):
    """An upgraded, empty store of a fresh backend of its own (ZooKeeper: a fresh root)."""
    if request.param == "zookeeper":
        return Store(request.getfixturevalue("zk_backend").get_connection(), True, True)
    if request.param == "dir":
        conn = impl_dir.DirBackend({"path": str(tmp_path)}).get_connection()
    else:
        conn = impl_memory.MemoryBackend({"deep_copy": request.param == "memory"}).get_connection()
    conn.upgrade()
    return Store(conn, atomic=request.param != "dir", serialises=request.param == "dir")


def _names(s: Store, directory: str) -> list[str]:
    return s.store.children([directory])[0] or []


def test_missing_paths_read_as_none(store):
    path = ps.join(store.atoms, "nope")
    assert store.store.read([path], links=True) == [None]
    assert store.store.read([path]) == [None]
    assert store.store.children([path]) == [None]
    assert _names(store, store.atoms) == []


def test_a_written_record_reads_back(store):
    path, record = store.atom("a", {"pair": (1, 2)})
    assert store.commit(ps.Write(path, record, create=True))[path].links == []
    entry = store.get(path)
    assert entry is not None
    ad = store.codec.to_atom(entry.record)
    assert (ad.name, ad.state, ad.results) == ("a", states.SUCCESS, {"pair": (1, 2)})
    assert type(ad.results["pair"]) is tuple
    assert _names(store, store.atoms) == ["a"]


def test_writing_an_equal_record_again_keeps_it(store):
    # (A new record may not be kept as given: an isolating memory store keeps a copy.)
    path, record = store.atom("a", 1)
    store.commit(ps.Write(path, record, create=True))
    assert store.commit(ps.Write(path, record)) == {path: ps.Stored(True, [])}


def test_a_missing_record_is_not_found_unless_created(store):
    path, record = store.atom("a")
    with pytest.raises(exc.NotFound):
        store.commit(ps.Write(path, record))
    assert store.get(path) is None


def test_a_missing_parent_fails_the_transaction_before_anything_is_written(store):
    leaf, atom = store.atom("a")
    parent, flow = store.flow("f")
    with pytest.raises(exc.NotFound):
        store.commit(
            ps.Write(leaf, atom, create=True),
            ps.Write(parent, flow, links=["a"], into=store.atoms),
        )
    assert store.get(leaf) is None
    assert store.get(parent) is None


def test_links_come_back_in_the_order_they_were_made(store):
    for name in "cabd":
        path, record = store.atom(name)
        store.commit(ps.Write(path, record, create=True))
    parent, flow = store.flow("f")
    stored = store.commit(
        ps.Write(parent, flow, create=True, links=["c", "a", "b"], into=store.atoms)
    )
    assert stored[parent].links == ["c", "a", "b"]
    # Already linked names keep their place; new ones follow; duplicates count once.
    stored = store.commit(ps.Write(parent, flow, links=["d", "a", "d"], into=store.atoms))
    assert stored[parent].links == ["c", "a", "b", "d"]
    # A write adding no links keeps them, in order.
    _, changed = store.flow("f", states.SUCCESS)
    assert store.commit(ps.Write(parent, changed, links=()))[parent].links == ["c", "a", "b", "d"]
    entry = store.get(parent, links=True)
    assert entry is not None
    assert entry.links == ["c", "a", "b", "d"]
    assert store.codec.to_flow(entry.record, True).state == states.SUCCESS
    assert store.store.children([parent]) == [["c", "a", "b", "d"]]
    lazy = store.get(parent)
    assert lazy is not None
    assert lazy.links == []


def test_deletes_remove_records_and_their_links(store):
    leaf, atom = store.atom("a")
    parent, flow = store.flow("f")
    store.commit(
        ps.Write(leaf, atom, create=True),
        ps.Write(parent, flow, create=True, links=["a"], into=store.atoms),
    )
    store.commit(ps.Delete(leaf), ps.Delete(parent, ["a"]))
    assert store.store.read([leaf, parent], links=True) == [None, None]
    assert _names(store, store.flows) == []
    assert _names(store, store.atoms) == []
    # Deleting what is already gone does nothing.
    store.commit(ps.Delete(leaf), ps.Delete(parent, ["a"]))
    # A record deleted can be written again, without its old links.
    store.commit(ps.Write(parent, flow, create=True, links=[], into=store.atoms))
    assert store.store.children([parent]) == [[]]


def test_a_delete_that_missed_a_link_conflicts_and_deletes_nothing(store):
    parent, flow = store.flow("f")
    for name in "ab":
        path, record = store.atom(name)
        store.commit(ps.Write(path, record, create=True))
    store.commit(ps.Write(parent, flow, create=True, links=["a", "b"], into=store.atoms))
    with pytest.raises(ps.Conflict):
        store.commit(ps.Delete(parent, ["a"]))
    assert store.store.children([parent]) == [["a", "b"]]


def test_a_failing_transaction_applies_nothing(store):
    if not store.atomic:
        pytest.skip("this store applies a transaction record by record, each atomically")
    parent, flow = store.flow("f")
    store.commit(ps.Write(parent, flow, create=True, links=[], into=store.atoms))
    leaf, atom = store.atom("a")
    store.commit(ps.Write(leaf, atom, create=True))
    store.commit(ps.Write(parent, flow, links=["a"], into=store.atoms))
    new, record = store.atom("new")
    _, changed = store.flow("f", states.SUCCESS)
    with pytest.raises(ps.Conflict):
        store.commit(
            ps.Write(new, record, create=True),
            ps.Write(parent, changed, links=[]),
            ps.Delete(parent, []),  # the caller did not know about link "a"
        )
    assert store.get(new) is None
    entry = store.get(parent, links=True)
    assert entry is not None
    assert store.codec.to_flow(entry.record, True).state == states.RUNNING
    assert entry.links == ["a"]


def test_unstorable_values_fail_before_anything_is_written(store):
    if not store.serialises:
        pytest.skip("this store holds objects, not encodings of them")
    first, atom = store.atom("first")
    bad, unstorable = store.atom("bad", object())
    with pytest.raises(TypeError, match="object"):
        store.commit(ps.Write(first, atom, create=True), ps.Write(bad, unstorable, create=True))
    assert store.store.read([first, bad]) == [None, None]


class _WriterFirst(ps.RecordStore[Any]):
    """A store that lets ``writer`` run just before its first commit (a concurrent writer,
    interleaved where it hurts: after the caller planned, before it commits)."""

    def __init__(self, store: ps.RecordStore[Any], writer: Any) -> None:
        self._store = store
        self._writer = writer
        self.commits = 0

    def commit(self, txn: ps.Transaction[Any]) -> dict[str, ps.Stored]:
        self.commits += 1
        if self.commits == 1:
            self._writer()
        return self._store.commit(txn)

    def read(self, paths: Any, links: bool = False) -> Any:
        return self._store.read(paths, links)

    def children(self, paths: Any) -> Any:
        return self._store.children(paths)

    def upgrade(self, directories: Any) -> None:
        self._store.upgrade(directories)

    def validate(self, directories: Any) -> None:
        self._store.validate(directories)


def test_destroy_plans_again_when_a_flow_is_added_meanwhile(store):
    conn = store.conn
    book = models.LogBook("b")
    book.add(models.FlowDetail("first", "first-" + book.uuid))
    conn.save_logbook(book)
    late = models.FlowDetail("late", "late-" + book.uuid)
    late.add(models.TaskDetail("t", "t-" + book.uuid))

    def add_late_flow() -> None:
        again = models.LogBook(book.name, book.uuid)
        again.add(late)
        conn.save_logbook(again)

    racing = _WriterFirst(store.store, add_late_flow)
    root = store.flows.rpartition("/")[0] or "/"
    ps.PathConnection(conn.backend, racing, store.codec, root).destroy_logbook(book.uuid)
    assert racing.commits == 2
    assert list(conn.get_logbooks()) == []
    for directory in (store.flows, store.atoms):
        assert _names(store, directory) == []
