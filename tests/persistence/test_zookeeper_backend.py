"""The ZooKeeper backend beyond the shared contract: configuration, the znode layout and data
format (shared with upstream TaskFlow), compatibility checks, concurrency, large flows and
what happens when the server is unreachable or the connection is lost."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.persistence import backends, models
from taskflow.types.failure import Failure
from tests.helpers import ownership, services

kazoo_client = services.need_module("kazoo.client", "zookeeper")
impl_zookeeper = services.need_module("taskflow.persistence.backends.impl_zookeeper", "zookeeper")

# Configuration tests need no server, the others use the `zk_hosts` fixture.
pytestmark = pytest.mark.zookeeper


def _failure(message: str) -> Failure:
    try:
        raise ValueError(message)
    except ValueError:
        return Failure()


def _book(atoms: int = 2) -> models.LogBook:
    book = models.LogBook("book")
    book.meta = {"k": "v"}
    fd = models.FlowDetail("flow", str(uuid.uuid4()))
    fd.state = states.RUNNING
    for i in range(atoms):
        cls = models.RetryDetail if i % 2 else models.TaskDetail
        ad = cls(f"atom-{i}", str(uuid.uuid4()))
        ad.state = states.PENDING
        fd.add(ad)
    book.add(fd)
    return book


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def raw(zk_hosts):
    """A plain kazoo client to look at (and clean up) what the backend wrote."""
    client = kazoo_client.KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def root(raw):
    """A fresh root path per test (so tests never share znodes), deleted afterwards."""
    path = f"/taskflow-test-{uuid.uuid4().hex}"
    yield path
    raw.delete(path, recursive=True)


@pytest.fixture
def backend(zk_hosts, root):
    be = impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root, "timeout": 10})
    with be.get_connection() as conn:
        conn.upgrade()
    yield be
    be.close()


@pytest.fixture
def conn(backend):
    with backend.get_connection() as connection:
        yield connection


# -- configuration (no server needed) ---------------------------------------------------------


def test_defaults_and_absolute_path_rule():
    be = impl_zookeeper.ZkBackend({})
    assert impl_zookeeper.ZkBackend.DEFAULT_PATH == "/taskflow"
    assert be.path == "/taskflow"
    assert impl_zookeeper.ZkBackend({"path": ""}).path == "/taskflow"
    assert impl_zookeeper.MIN_ZK_VERSION == (3, 4, 0)
    for bad in ("taskflow", "relative/path", "./x"):
        with pytest.raises(ValueError, match="Zookeeper path must be absolute"):
            impl_zookeeper.ZkBackend({"path": bad})


def test_paths_of_a_connection_are_normalised():
    be = impl_zookeeper.ZkBackend({"path": "/a//b/"})
    assert be.path == "/a//b/"  # kept as configured
    conn = impl_zookeeper.ZkConnection(be, be._client, {})
    assert (conn.book_path, conn.flow_path, conn.atom_path) == (
        "/a/b/books",
        "/a/b/flow_details",
        "/a/b/atom_details",
    )
    top = impl_zookeeper.ZkConnection(impl_zookeeper.ZkBackend({"path": "/"}), be._client, {})
    assert top.book_path == "/books"


def test_fetch_builds_a_zk_backend_from_a_uri():
    be = backends.fetch("zookeeper://zk1.example:2182?path=/flows&timeout=3")
    assert isinstance(be, impl_zookeeper.ZkBackend)
    assert be.path == "/flows"
    # The URI's host is used when no 'hosts' key is given.
    assert be._client.hosts == [("zk1.example", 2182)]
    be = backends.fetch({"connection": "zookeeper://ignored", "hosts": ["h1:1", "h2:2"]})
    assert be._client.hosts == [("h1", 1), ("h2", 2)]


def test_a_given_client_is_used_and_left_open_on_close():
    client = kazoo_client.KazooClient(hosts="127.0.0.1:1")
    be = impl_zookeeper.ZkBackend({"path": "/x"}, client=client)
    assert be._client is client
    closed: list[str] = []
    client.stop = lambda: closed.append("stop")
    client.close = lambda: closed.append("close")
    be.close()
    assert closed == []
    owned = impl_zookeeper.ZkBackend({"hosts": "127.0.0.1:1"})
    owned._client.close = lambda: closed.append("close")
    owned.close()
    assert closed == ["close"]


def test_unreachable_server_is_a_storage_failure_within_the_timeout():
    be = impl_zookeeper.ZkBackend({"hosts": f"127.0.0.1:{_closed_port()}", "timeout": 1})
    started = time.monotonic()
    with pytest.raises(exc.StorageFailure, match="Could not connect to ZooKeeper"):
        be.get_connection()
    assert time.monotonic() - started < 5
    # kazoo gave up and stopped: nothing keeps reconnecting in the background.
    assert not be._client.connected
    assert be._client._stopped.is_set()
    be.close()


# -- with a server ------------------------------------------------------------------------------


def test_layout_and_data_format(conn, raw, root):
    book = _book(atoms=2)
    fd = next(iter(book))
    task, retry = list(fd)
    task.put(states.SUCCESS, {"pair": (1, 2)})
    retry.put(states.SUCCESS, "first")
    retry.results[-1][1]["atom-0"] = _failure("bad")
    conn.save_logbook(book)

    assert sorted(raw.get_children(root)) == ["atom_details", "books", "flow_details", "owners"]
    assert raw.get_children(f"{root}/books") == [book.uuid]
    assert raw.get_children(f"{root}/books/{book.uuid}") == [fd.uuid]
    assert raw.get(f"{root}/books/{book.uuid}/{fd.uuid}")[0] == b""
    assert sorted(raw.get_children(f"{root}/flow_details/{fd.uuid}")) == sorted(
        [task.uuid, retry.uuid]
    )

    book_record = json.loads(raw.get(f"{root}/books/{book.uuid}")[0])
    assert book_record["name"] == "book"
    assert book_record["uuid"] == book.uuid
    assert book_record["meta"] == {"k": "v"}
    assert set(book_record["created_at"]) == {
        "year", "month", "day", "hour", "minute", "second", "microsecond"
    }  # fmt: skip
    assert book_record["order"] == [fd.uuid]
    flow_record = json.loads(raw.get(f"{root}/flow_details/{fd.uuid}")[0])
    assert flow_record == {
        "name": "flow",
        "meta": {},
        "state": states.RUNNING,
        "uuid": fd.uuid,
        "order": [task.uuid, retry.uuid],
    }
    task_record = json.loads(raw.get(f"{root}/atom_details/{task.uuid}")[0])
    assert task_record["type"] == "TASK_DETAIL"
    assert set(task_record["atom"]) == set(task.to_dict())
    assert task_record["atom"]["results"] == {"pair": {"__tuple__": [1, 2]}}
    retry_record = json.loads(raw.get(f"{root}/atom_details/{retry.uuid}")[0])
    assert retry_record["type"] == "RETRY_DETAIL"
    # History entries are [value, {atom: failure dict}] arrays, as upstream writes them.
    [[value, failures]] = retry_record["atom"]["results"]
    assert value == "first"
    assert failures["atom-0"]["exception_str"] == "bad"


# Written by upstream TaskFlow 6.5.0's ZkBackend (save_logbook), read back znode by znode.
_UPSTREAM_TREE = {
    "/": "",
    "/atom_details": "",
    "/atom_details/7a3c2b1d-0e9f-4a8b-9c7d-6e5f4a3b2c03": '{"atom": {"failure": null, "revert_failure": null, "meta": {}, "name": "fetch", "results": {"answer": 42, "pair": [1, "two"]}, "revert_results": null, "state": "SUCCESS", "version": "1.0", "intention": "EXECUTE", "uuid": "7a3c2b1d-0e9f-4a8b-9c7d-6e5f4a3b2c03"}, "type": "TASK_DETAIL"}',  # noqa: E501
    "/atom_details/8b4d3c2e-1f0a-4b9c-8d7e-5f6a7b8c9d04": '{"atom": {"failure": {"exception_str": "went wrong", "traceback_str": "  File \\"/tmp/zkprobe/up_write.py\\", line 15, in <module>\\n    raise RuntimeError(\'went wrong\')\\n", "exc_type_names": ["RuntimeError", "Exception"], "version": 1, "exc_args": ["went wrong"], "causes": []}, "revert_failure": null, "meta": {}, "name": "broken", "results": null, "revert_results": null, "state": "FAILURE", "version": "1.0", "intention": "REVERT", "uuid": "8b4d3c2e-1f0a-4b9c-8d7e-5f6a7b8c9d04"}, "type": "TASK_DETAIL"}',  # noqa: E501
    "/atom_details/9c5e4d3f-2a1b-4c0d-9e8f-7a6b5c4d3e05": '{"atom": {"failure": null, "revert_failure": null, "meta": {}, "name": "again", "results": [[1, {"broken": {"exception_str": "went wrong", "traceback_str": "  File \\"/tmp/zkprobe/up_write.py\\", line 15, in <module>\\n    raise RuntimeError(\'went wrong\')\\n", "exc_type_names": ["RuntimeError", "Exception"], "version": 1, "exc_args": ["went wrong"], "causes": []}}], [2, {}]], "revert_results": null, "state": "SUCCESS", "version": "1.0", "intention": "EXECUTE", "uuid": "9c5e4d3f-2a1b-4c0d-9e8f-7a6b5c4d3e05"}, "type": "RETRY_DETAIL"}',  # noqa: E501
    "/books": "",
    "/books/0b9fc5a4-6d3e-4d3c-9a51-5b8f2f4a1c01": '{"name": "upstream-book", "meta": {"owner": "upstream", "pair": [1, 2]}, "uuid": "0b9fc5a4-6d3e-4d3c-9a51-5b8f2f4a1c01", "updated_at": {"day": 27, "month": 11, "year": 2026, "hour": 9, "minute": 34, "second": 27, "microsecond": 177434}, "created_at": {"day": 27, "month": 11, "year": 2026, "hour": 9, "minute": 34, "second": 27, "microsecond": 176876}}',  # noqa: E501
    "/books/0b9fc5a4-6d3e-4d3c-9a51-5b8f2f4a1c01/5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02": "",
    "/flow_details": "",
    "/flow_details/5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02": '{"name": "upstream-flow", "meta": {"store": {"x": 1}}, "state": "SUCCESS", "uuid": "5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02"}',  # noqa: E501
    "/flow_details/5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02/7a3c2b1d-0e9f-4a8b-9c7d-6e5f4a3b2c03": "",
    "/flow_details/5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02/8b4d3c2e-1f0a-4b9c-8d7e-5f6a7b8c9d04": "",
    "/flow_details/5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02/9c5e4d3f-2a1b-4c0d-9e8f-7a6b5c4d3e05": "",
}
_UP_BOOK = "0b9fc5a4-6d3e-4d3c-9a51-5b8f2f4a1c01"
_UP_FLOW = "5d0e6a8e-2c1f-4b8e-8f7d-3b2a1c0d9e02"
_UP_FETCH = "7a3c2b1d-0e9f-4a8b-9c7d-6e5f4a3b2c03"
_UP_BROKEN = "8b4d3c2e-1f0a-4b9c-8d7e-5f6a7b8c9d04"
_UP_AGAIN = "9c5e4d3f-2a1b-4c0d-9e8f-7a6b5c4d3e05"


def _load_upstream_tree(raw, root):
    for path in sorted(_UPSTREAM_TREE):
        raw.create(root if path == "/" else root + path, _UPSTREAM_TREE[path].encode())


def test_reads_a_tree_written_by_upstream(zk_hosts, raw, root):
    _load_upstream_tree(raw, root)
    with impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root}) as be:
        conn = be.get_connection()
        [book] = list(conn.get_logbooks())
        assert (book.uuid, book.name) == (_UP_BOOK, "upstream-book")
        assert book.meta == {"owner": "upstream", "pair": [1, 2]}
        assert book.created_at == datetime(2026, 11, 27, 9, 34, 27, 176876, tzinfo=UTC)
        [fd] = list(book)
        assert (fd.uuid, fd.name, fd.state, fd.meta) == (
            _UP_FLOW,
            "upstream-flow",
            states.SUCCESS,
            {"store": {"x": 1}},
        )
        # No order recorded by upstream: children come back sorted by uuid.
        assert [ad.uuid for ad in fd] == sorted([_UP_FETCH, _UP_BROKEN, _UP_AGAIN])
        fetch = conn.get_atom_details(_UP_FETCH)
        assert isinstance(fetch, models.TaskDetail)
        assert fetch.results == {"answer": 42, "pair": [1, "two"]}
        broken = conn.get_atom_details(_UP_BROKEN)
        assert broken.intention == states.REVERT
        assert broken.failure is not None
        assert broken.failure.exception_str == "went wrong"
        assert broken.failure.check(RuntimeError)
        again = conn.get_atom_details(_UP_AGAIN)
        assert isinstance(again, models.RetryDetail)
        assert [value for value, _ in again.results] == [1, 2]
        assert again.results[0][1]["broken"].exception_str == "went wrong"

        # And it can carry on writing that tree.
        fetch = fd.find(_UP_FETCH)
        fetch.put(states.SUCCESS, {"answer": 43})
        conn.update_atom_details(fetch)
        fd.state = states.RUNNING
        conn.update_flow_details(fd)
        assert conn.get_atom_details(_UP_FETCH).results == {"answer": 43}
        assert conn.get_flow_details(_UP_FLOW).state == states.RUNNING


def test_check_compatible(zk_hosts, root, monkeypatch):
    # The real server is new enough; pretend the minimum is higher to see the refusal.
    impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root}).get_connection()
    monkeypatch.setattr(impl_zookeeper, "MIN_ZK_VERSION", (99, 0, 0))
    be = impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root})
    with pytest.raises(exc.IncompatibleVersion, match=r"zookeeper >= 99\.0\.0 required"):
        be.get_connection()
    be.close()
    for off in (False, "false", "0"):
        be = impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root, "check_compatible": off})
        be.get_connection().validate()
        be.close()


def test_backend_can_be_reopened_after_close(zk_hosts, root):
    be = impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root})
    be.get_connection().upgrade()
    be.close()
    conn = be.get_connection()
    book = _book()
    conn.save_logbook(book)
    assert conn.get_logbook(book.uuid).name == "book"
    be.close()


def test_given_client_is_started_and_not_stopped(zk_hosts, root):
    client = kazoo_client.KazooClient(hosts=zk_hosts)
    try:
        with impl_zookeeper.ZkBackend({"path": root}, client=client) as be:
            be.get_connection().upgrade()
            assert client.connected
        assert client.connected
    finally:
        client.stop()
        client.close()


def test_nothing_before_upgrade(zk_hosts, root):
    with impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root}) as be:
        conn = be.get_connection()
        assert list(conn.get_logbooks()) == []
        with pytest.raises(exc.NotFound):
            conn.get_logbook(str(uuid.uuid4()))
        with pytest.raises(exc.StorageFailure, match="has upgrade"):
            conn.save_logbook(_book())


def test_unstorable_values_raise_type_error_and_write_nothing(conn):
    book = _book(atoms=1)
    conn.save_logbook(book)
    fd = next(iter(book))
    ad = next(iter(fd))
    ad.put(states.SUCCESS, {"ok": object()})
    with pytest.raises(TypeError, match="object"):
        conn.update_atom_details(ad)
    assert conn.get_atom_details(ad.uuid).state == states.PENDING

    ad.put(states.SUCCESS, "storable")
    extra = models.TaskDetail("extra", str(uuid.uuid4()))
    fd.add(extra)
    fd.meta = {"bad": b"bytes"}
    with pytest.raises(TypeError, match="bytes"):
        conn.update_flow_details(fd)
    with pytest.raises(exc.NotFound):
        conn.get_atom_details(extra.uuid)
    assert conn.get_flow_details(fd.uuid).meta == {}


def test_ignore_missing_creates_details(conn):
    ad = models.TaskDetail("loose", str(uuid.uuid4()))
    ad.state = states.SUCCESS
    assert conn.update_atom_details(ad, ignore_missing=True) is ad
    assert conn.get_atom_details(ad.uuid).state == states.SUCCESS
    fd = models.FlowDetail("loose-flow", str(uuid.uuid4()))
    fd.add(ad)
    conn.update_flow_details(fd, ignore_missing=True)
    assert [a.uuid for a in conn.get_flow_details(fd.uuid)] == [ad.uuid]


def test_atom_order_survives_merges(conn):
    book = _book(atoms=5)
    conn.save_logbook(book)
    fd = next(iter(book))
    later = [models.TaskDetail(f"later-{i}", str(uuid.uuid4())) for i in range(4)]
    change = models.FlowDetail(fd.name, fd.uuid)
    for ad in later:
        change.add(ad)
    returned = conn.update_flow_details(change)
    expected = [ad.uuid for ad in fd] + [ad.uuid for ad in later]
    # The store holds more atoms than the update carried: the stored flow comes back.
    assert [ad.uuid for ad in returned] == expected
    assert [ad.uuid for ad in conn.get_flow_details(fd.uuid)] == expected
    assert [ad.uuid for ad in conn.get_atoms_for_flow(fd.uuid)] == expected


def test_flows_and_books_come_back_in_the_order_they_were_added(conn):
    books = []
    for _ in range(3):
        book = _book(atoms=0)
        for i in range(4):
            book.add(models.FlowDetail(f"more-{i}", str(uuid.uuid4())))
        conn.save_logbook(book)
        books.append(book)
    assert [b.uuid for b in conn.get_logbooks()] == [b.uuid for b in books]
    for book in books:
        want = [fd.uuid for fd in book]
        assert [fd.uuid for fd in conn.get_flows_for_book(book.uuid)] == want
        assert [fd.uuid for fd in conn.get_logbook(book.uuid)] == want


def test_concurrent_flow_updates_keep_every_new_atom(zk_hosts, root, backend):
    """Two writers adding atoms to one flow at once: the compare-and-set keeps both."""
    book = _book(atoms=1)
    backend.get_connection().save_logbook(book)
    fd = next(iter(book))
    others = [impl_zookeeper.ZkBackend({"hosts": zk_hosts, "path": root}) for _ in range(3)]
    added: list[str] = []
    errors: list[BaseException] = []

    def writer(be: impl_zookeeper.ZkBackend, index: int) -> None:
        try:
            conn = be.get_connection()
            for step in range(8):
                change = models.FlowDetail(fd.name, fd.uuid)
                ad = models.TaskDetail(f"w{index}-{step}", str(uuid.uuid4()))
                change.add(ad)
                conn.update_flow_details(change)
                added.append(ad.uuid)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(be, i)) for i, be in enumerate(others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for be in others:
        be.close()
    assert errors == []
    stored = [ad.uuid for ad in backend.get_connection().get_flow_details(fd.uuid)]
    assert sorted(stored) == sorted([next(iter(fd)).uuid, *added])
    # Each writer's atoms keep the order they were added in.
    names = [ad.name for ad in backend.get_connection().get_atoms_for_flow(fd.uuid)]
    for i in range(3):
        assert [n for n in names if n.startswith(f"w{i}-")] == [f"w{i}-{s}" for s in range(8)]


@pytest.mark.slow
def test_flow_larger_than_one_request_is_saved_whole(conn):
    """~1.3 MB of atom records: more than ZooKeeper takes in one request."""
    book = _book(atoms=0)
    fd = next(iter(book))
    for i in range(320):
        ad = models.TaskDetail(f"big-{i}", str(uuid.uuid4()))
        ad.put(states.SUCCESS, "x" * 4000)
        fd.add(ad)
    conn.save_logbook(book)
    stored = conn.get_flow_details(fd.uuid)
    assert [ad.uuid for ad in stored] == [ad.uuid for ad in fd]
    assert all(ad.results == "x" * 4000 for ad in stored)
    fd.state = states.SUCCESS
    conn.update_flow_details(fd)
    assert conn.get_flow_details(fd.uuid, lazy=True).state == states.SUCCESS
    conn.destroy_logbook(book.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_flow_details(fd.uuid)


def test_clear_all_keeps_the_directories(conn, raw, root):
    conn.save_logbook(_book(atoms=3))
    loose = models.TaskDetail("loose", str(uuid.uuid4()))
    conn.update_atom_details(loose, ignore_missing=True)
    conn.clear_all()
    for name in ("books", "flow_details", "atom_details"):
        assert raw.get_children(f"{root}/{name}") == []


class _Proxy:
    """A TCP forwarder in front of the server; :meth:`cut` drops it like a network failure."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    near.close()
                    return
                try:
                    far = socket.create_connection(self._target)
                except OSError:
                    near.close()
                    continue
                self._sockets += [near, far]
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        with self._lock:
            self._cut = True
            # shutdown() wakes the thread blocked in accept(); close() alone may not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_lost_connection_is_a_storage_failure_within_the_timeout(zk_hosts, root):
    host, _, port = zk_hosts.split(",")[0].partition(":")
    proxy = _Proxy((host or "127.0.0.1", int(port or 2181)))
    be = impl_zookeeper.ZkBackend({"hosts": f"127.0.0.1:{proxy.port}", "path": root, "timeout": 2})
    try:
        conn = be.get_connection()
        conn.upgrade()
        book = _book(atoms=1)
        conn.save_logbook(book)
        ad = next(iter(next(iter(book))))
        proxy.cut()
        # kazoo keeps trying to reconnect in the background; calls must not wait for it.
        for call in (
            lambda: conn.update_atom_details(ad),
            lambda: conn.get_logbook(book.uuid),
            lambda: conn.save_logbook(book),
        ):
            started = time.monotonic()
            with pytest.raises(exc.StorageFailure):
                call()
            assert time.monotonic() - started < 5
    finally:
        be.close()


def test_missing_kazoo_names_the_extra_to_install():
    code = (
        "import sys; sys.modules['kazoo'] = None\n"
        "from taskflow.persistence import backends\n"
        "try:\n"
        "    backends.fetch('zookeeper://localhost')\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install taskflow[zookeeper]" in out.stdout


_WRITER = """
import sys
from taskflow import states
from taskflow.persistence import models
from taskflow.persistence.backends import impl_zookeeper

hosts, root, atom_uuid = sys.argv[1:]
be = impl_zookeeper.ZkBackend({"hosts": hosts, "path": root})
conn = be.get_connection()
ad = models.TaskDetail("counter", atom_uuid)
step = 0
while True:
    step += 1
    ad.put(states.SUCCESS, step)
    conn.update_atom_details(ad)
    print(step, flush=True)
"""


def test_update_is_durable_when_the_writer_is_killed(zk_hosts, root, conn):
    """A write that returned survives the writer being SIGKILLed right after it."""
    book = _book(atoms=1)
    conn.save_logbook(book)
    ad = next(iter(next(iter(book))))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, zk_hosts, root, ad.uuid],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        acknowledged = 0
        while acknowledged < 20:
            acknowledged = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    stored = conn.get_atom_details(ad.uuid)
    assert stored.state == states.SUCCESS
    assert stored.results >= acknowledged


# -- ownership ---------------------------------------------------------------------------------


def _claimed(conn) -> tuple[models.LogBook, models.FlowDetail]:
    book = _book(atoms=2)
    conn.save_logbook(book)
    fd = next(iter(book))
    conn.claim_flow(fd.uuid, lease=30)
    return book, fd


def test_two_processes_claiming_one_flow_at_once_one_wins(zk_hosts, root, conn):
    flows = []
    for _ in range(10):
        book = _book()
        conn.save_logbook(book)
        flows.append(next(iter(book)).uuid)
    conf = {"connection": "zookeeper://", "hosts": zk_hosts, "path": root}
    answers = ownership.race_claims(conf, flows)
    assert [sorted(each) for each in answers] == [["owned", "won 1"]] * len(flows)
    assert all(conn.read_ownership(flow).held for flow in flows)


def test_ownership_layout_and_a_tree_from_before_owners(conn, backend, raw, root):
    raw.delete(f"{root}/owners")  # as a tree written before flows had owners
    _, fd = _claimed(conn)
    mine = conn.read_ownership(fd.uuid)
    node = f"{root}/owners/{fd.uuid}"
    assert json.loads(raw.get(node)[0]) == mine.to_dict()
    assert raw.get_children(node) == ["token"]
    token, stat = raw.get(f"{node}/token")
    assert token == b"1"
    # Renewals and releases leave the token node alone (fenced writes check its version)...
    conn.renew_flow(fd.uuid, mine.token, lease=30)
    conn.release_flow(fd.uuid, mine.token)
    assert raw.get(f"{node}/token")[1].version == stat.version
    # ...which only claims change.
    with backend.get_connection() as other:
        other.claim_flow(fd.uuid, lease=30)
    assert raw.get(f"{node}/token")[0] == b"2"


def test_corrupt_ownership_record_is_a_storage_failure_naming_it(conn, raw, root):
    _, fd = _claimed(conn)
    node = f"{root}/owners/{fd.uuid}"
    for content in (b"{nope", b"[]", b'{"owner": "x"}'):
        raw.set(node, content)
        with pytest.raises(exc.StorageFailure, match="Corrupt record") as info:
            conn.read_ownership(fd.uuid)
        assert node in str(info.value)


def test_an_owner_writes_through_renewals(conn, backend):
    _, fd = _claimed(conn)
    with backend.get_connection() as reader:
        ownership.check_owner_writes(conn, reader, fd)


def test_an_owner_that_wrote_is_fenced_after_a_takeover(backend):
    with backend.get_connection() as owner, backend.get_connection() as thief:
        ownership.check_takeover_fences(owner, thief, lease=0.2)


def test_a_fence_this_connection_never_read_is_looked_up_once(conn, backend):
    """The version a fenced write checks comes from the claim; a connection given the
    fence otherwise (the engine's own, say) reads it once, then writes in one request."""
    _, fd = _claimed(conn)
    ad = next(iter(fd))
    with backend.get_connection() as writer:
        writer._fence = conn._fence
        ad.state = states.RUNNING
        writer.update_atom_details(ad)
        with backend.get_connection() as thief:
            conn.release_flow(fd.uuid, conn._fence[1])
            thief.claim_flow(fd.uuid, lease=30)
        with pytest.raises(exc.OwnershipLost):
            writer.update_atom_details(ad)
    assert conn.get_atom_details(ad.uuid).state == states.RUNNING


def test_destroy_and_clear_remove_the_flows_ownership(conn, raw, root):
    book, fd = _claimed(conn)
    _, other = _claimed(conn)
    conn.destroy_logbook(book.uuid)
    assert conn.read_ownership(fd.uuid) is None
    assert raw.get_children(f"{root}/owners") == [other.uuid]
    conn.clear_all()
    assert raw.get_children(f"{root}/owners") == []


def test_ownership_and_fencing_under_a_chroot(zk_hosts, raw, root):
    raw.ensure_path(root)
    be = impl_zookeeper.ZkBackend({"hosts": f"{zk_hosts}{root}", "path": "/tf"})
    try:
        with be.get_connection() as owner, be.get_connection() as other:
            owner.upgrade()
            _, fd = _claimed(owner)
            fd.state = states.RUNNING
            owner.update_flow_details(fd)
            owner.release_flow(fd.uuid, owner._fence[1])
            other.claim_flow(fd.uuid, lease=30)
            owner._fence = (fd.uuid, 1)  # as if the release had never happened
            with pytest.raises(exc.OwnershipLost):
                owner.update_atom_details(next(iter(fd)))
            assert raw.exists(f"{root}/tf/owners/{fd.uuid}/token")
    finally:
        be.close()
