"""The directory backend beyond the shared contract: configuration, on-disk layout,
compatibility with directories written by upstream TaskFlow, durability and corruption."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.persistence import backends, models
from taskflow.persistence.backends import impl_dir
from taskflow.types.failure import Failure
from tests.helpers import ownership

FIXTURE = Path(__file__).parent / "fixtures" / "upstream_dir"
BOOK = "b0000000-0000-4000-8000-000000000001"
FLOW_A = "f0000000-0000-4000-8000-00000000000a"
FLOW_B = "f0000000-0000-4000-8000-00000000000b"


def _atom(n: int) -> str:
    return f"a0000000-0000-4000-8000-00000000000{n}"


def _open(root: Path) -> impl_dir.Connection:
    conn = impl_dir.DirBackend({"path": str(root)}).get_connection()
    conn.upgrade()
    return conn


def _failure(message: str) -> Failure:
    try:
        raise ValueError(message)
    except ValueError:
        return Failure()


def _book(atoms: int = 2) -> models.LogBook:
    book = models.LogBook("book")
    book.meta = {"k": "v"}
    fd = models.FlowDetail("flow", "flow-" + book.uuid)
    fd.state = states.RUNNING
    for i in range(atoms):
        cls = models.RetryDetail if i % 2 else models.TaskDetail
        ad = cls(f"atom-{i}", f"atom-{i}-{book.uuid}")
        ad.state = states.PENDING
        fd.add(ad)
    book.add(fd)
    return book


def _hidden(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*")]


# -- configuration ----------------------------------------------------------------------------


def test_path_is_required():
    with pytest.raises(ValueError, match="Empty path is disallowed"):
        impl_dir.DirBackend({})
    with pytest.raises(ValueError, match="Empty path is disallowed"):
        backends.fetch("dir://")


def test_uri_path_is_used_when_conf_has_none(tmp_path):
    for scheme in ("dir", "file"):
        backend = backends.fetch(f"{scheme}://{tmp_path}/a%20b")
        assert isinstance(backend, impl_dir.DirBackend)
        assert backend.path == str(tmp_path / "a b")
    backend = backends.fetch({"connection": f"dir://{tmp_path}/uri", "path": str(tmp_path / "c")})
    assert backend.path == str(tmp_path / "c")
    assert backends.fetch(f"dir://localhost{tmp_path}").path == str(tmp_path)
    with pytest.raises(ValueError, match="not a host"):
        backends.fetch("dir://somehost/flows")


def test_options_are_checked(tmp_path):
    backend = impl_dir.DirBackend({"path": str(tmp_path), "max_cache_size": "5"})
    assert (backend.max_cache_size, backend.encoding) == (5, "utf-8")
    for bad in ("abc", 0, -1):
        with pytest.raises(ValueError):
            impl_dir.DirBackend({"path": str(tmp_path), "max_cache_size": bad})
    with pytest.raises(LookupError):
        impl_dir.DirBackend({"path": str(tmp_path), "encoding": "no-such-codec"})


def test_validate_needs_upgrade(tmp_path):
    conn = impl_dir.DirBackend({"path": str(tmp_path / "new")}).get_connection()
    with pytest.raises(exc.StorageFailure, match="upgrade"):
        conn.validate()
    conn.upgrade()
    conn.validate()
    assert conn.book_path == str(tmp_path / "new" / "books")


# -- layout -----------------------------------------------------------------------------------


def test_layout_is_upstreams(tmp_path):
    conn = _open(tmp_path)
    book = _book(atoms=2)
    fd = next(iter(book))
    task, retry = list(fd)
    retry.put(states.SUCCESS, (1, "x"))
    retry.results[-1][1]["atom-0"] = _failure("boom")
    conn.save_logbook(book)

    book_dir = tmp_path / "books" / book.uuid
    assert sorted(p.name for p in book_dir.iterdir()) == sorted([fd.uuid, "lock", "metadata"])
    assert (book_dir / fd.uuid).is_symlink()
    assert (book_dir / fd.uuid).resolve() == (tmp_path / "flow_details" / fd.uuid).resolve()
    book_json = json.loads((book_dir / "metadata").read_text())
    assert book_json == json.loads(json.dumps(book.to_dict(marshal_time=True)))

    flow_dir = tmp_path / "flow_details" / fd.uuid
    for ad in fd:
        link = flow_dir / ad.uuid
        assert link.is_symlink()
        assert not os.readlink(link).startswith("/")  # relative: the tree can move
        assert link.resolve() == (tmp_path / "atom_details" / ad.uuid).resolve()
    flow_json = json.loads((flow_dir / "metadata").read_text())
    assert flow_json["atom_order"] == [task.uuid, retry.uuid]
    assert {k: flow_json[k] for k in ("name", "meta", "state", "uuid")} == fd.to_dict()

    task_json = json.loads((tmp_path / "atom_details" / task.uuid / "metadata").read_text())
    assert task_json == {"atom": task.to_dict(), "type": "TASK_DETAIL"}
    retry_json = json.loads((tmp_path / "atom_details" / retry.uuid / "metadata").read_text())
    assert retry_json["type"] == "RETRY_DETAIL"
    # History entries are JSON lists; the value inside keeps the tuple encoding.
    value, failures = retry_json["atom"]["results"][0]
    assert value == {"__tuple__": [1, "x"]}
    assert failures["atom-0"]["exception_str"] == "boom"
    assert (tmp_path / "atom_details" / retry.uuid / "lock").is_file()
    assert _hidden(tmp_path) == []


def test_moved_tree_reads_back(tmp_path):
    conn = _open(tmp_path / "here")
    book = _book(atoms=3)
    conn.save_logbook(book)
    shutil.copytree(tmp_path / "here", tmp_path / "there", symlinks=True)
    shutil.rmtree(tmp_path / "here")
    moved = _open(tmp_path / "there").get_logbook(book.uuid)
    assert [ad.uuid for ad in next(iter(moved))] == [ad.uuid for ad in next(iter(book))]


def test_upstream_fixture_opens_and_stays_writable(tmp_path):
    """A directory written by upstream TaskFlow 6.5.0 (committed under fixtures/).

    It was produced by saving, through upstream's ``DirBackend`` at
    ``/tmp/taskflow-upstream-fixture/upstream_dir``, one book with two flows: ``flow-a``
    (tasks ``fetch`` SUCCESS, ``store`` FAILURE, retry ``again`` with a two-entry history)
    and ``flow-b`` (task ``only``). Its links are absolute and point at that (now gone)
    place: they are resolved by name, never followed.
    """
    root = tmp_path / "copy"
    shutil.copytree(FIXTURE, root, symlinks=True)
    conn = _open(root)

    [book] = list(conn.get_logbooks())
    assert (book.uuid, book.name) == (BOOK, "upstream-book")
    assert book.meta == {"owner": "upstream", "tags": ["fixture"]}
    assert book.created_at == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert {fd.name for fd in book} == {"flow-a", "flow-b"}

    flow = conn.get_flow_details(FLOW_A)
    assert (flow.state, flow.meta) == (states.FAILURE, {"store": {"x": 1, "name": "café"}})
    atoms = {ad.name: ad for ad in flow}
    assert set(atoms) == {"fetch", "store", "again"}
    fetch, store, again = atoms["fetch"], atoms["store"], atoms["again"]
    assert isinstance(fetch, models.TaskDetail)
    assert fetch.results == {"answer": 42, "pair": [1, 2], "text": "naïve ✓"}
    assert (fetch.state, fetch.version, fetch.meta) == (states.SUCCESS, "1.0", {"progress": 1.0})
    assert (store.state, store.intention) == (states.FAILURE, states.REVERT)
    assert store.failure is not None
    assert store.failure.exception_str == "disk on fire"
    assert store.failure.check(ValueError)
    assert isinstance(again, models.RetryDetail)
    assert [value for value, _ in again.results] == [1, 2]
    assert again.results[1][1]["store"].exception_str == "first try"
    assert [ad.name for ad in conn.get_atoms_for_flow(FLOW_B)] == ["only"]

    # Resuming work on it: update an upstream atom, add one of ours, then delete it all.
    store.put(states.REVERTED, None)
    conn.update_atom_details(store)
    assert conn.get_atom_details(_atom(2)).state == states.REVERTED
    flow.add(models.TaskDetail("ours", "ours-" + FLOW_A))
    conn.update_flow_details(flow)
    assert [ad.name for ad in conn.get_flow_details(FLOW_A)][-1] == "ours"
    conn.destroy_logbook(BOOK)
    assert list(conn.get_logbooks()) == []
    for n in range(1, 5):
        with pytest.raises(exc.NotFound):
            conn.get_atom_details(_atom(n))


def test_dangling_links_are_named_and_destroy_finishes(tmp_path):
    conn = _open(tmp_path)
    book = _book(atoms=2)
    book.add(models.FlowDetail("second", "second-" + book.uuid))
    conn.save_logbook(book)
    first = next(iter(book))
    lost = next(iter(first)).uuid
    # As if a destroy had been interrupted after removing one atom and one flow: reading
    # the book names what is missing (leaving it out would let an engine run it again).
    shutil.rmtree(tmp_path / "atom_details" / lost)
    shutil.rmtree(tmp_path / "flow_details" / ("second-" + book.uuid))
    with pytest.raises(exc.NotFound, match=f"Missing record '.*flow_details/second-{book.uuid}"):
        conn.get_logbook(book.uuid)
    with pytest.raises(exc.NotFound, match=f"Missing record '.*atom_details/{lost}/metadata'"):
        conn.get_flow_details(first.uuid)
    conn.destroy_logbook(book.uuid)
    assert sorted(os.listdir(tmp_path / "flow_details")) == []
    assert sorted(os.listdir(tmp_path / "atom_details")) == []


def test_uuids_that_are_not_file_names_are_refused(tmp_path):
    conn = _open(tmp_path / "store")
    evil = models.TaskDetail("evil", "../../escaped")
    with pytest.raises(ValueError, match="can not be stored"):
        conn.update_atom_details(evil, ignore_missing=True)
    with pytest.raises(exc.NotFound):
        conn.get_atom_details("../../escaped")
    assert not (tmp_path / "escaped").exists()


def test_ignore_missing_creates_records(tmp_path):
    conn = _open(tmp_path)
    loose = models.TaskDetail("loose", "loose-atom")
    assert conn.update_atom_details(loose, ignore_missing=True) is loose
    assert conn.get_atom_details("loose-atom").name == "loose"
    fd = models.FlowDetail("lone", "lone-flow")
    fd.add(loose)
    assert conn.update_flow_details(fd, ignore_missing=True) is fd
    assert [ad.uuid for ad in conn.get_atoms_for_flow("lone-flow")] == ["loose-atom"]


# -- corruption and unstorable values ----------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b'{"atom": {"name": "x", "uu', b"[]", b'{"atom": {}, "type": "BOGUS"}', b"\xff\xfe{"],
    ids=["empty", "truncated", "not-an-object", "bad-type", "not-utf8"],
)
def test_corrupt_record_is_a_storage_failure_naming_the_file(tmp_path, content):
    conn = _open(tmp_path)
    book = _book(atoms=2)
    conn.save_logbook(book)
    fd = next(iter(book))
    bad, good = list(fd)
    path = tmp_path / "atom_details" / bad.uuid / "metadata"
    path.write_bytes(content)

    with pytest.raises(exc.StorageFailure, match="Corrupt record") as info:
        conn.get_atom_details(bad.uuid)
    assert str(path) in str(info.value)
    with pytest.raises(exc.StorageFailure, match=str(path)):
        conn.get_flow_details(fd.uuid)
    # Everything else stays readable, and writing the record again repairs it.
    assert conn.get_atom_details(good.uuid).name == good.name
    assert conn.get_flow_details(fd.uuid, lazy=True).name == fd.name
    assert conn.get_logbook(book.uuid, lazy=True).name == book.name
    conn.update_atom_details(bad)
    assert conn.get_flow_details(fd.uuid).find(bad.uuid) is not None


def test_corrupt_book_does_not_hide_its_flows(tmp_path):
    conn = _open(tmp_path)
    book = _book()
    conn.save_logbook(book)
    (tmp_path / "books" / book.uuid / "metadata").write_text("{nope")
    with pytest.raises(exc.StorageFailure, match="books"):
        conn.get_logbook(book.uuid)
    assert conn.get_flow_details(next(iter(book)).uuid).name == "flow"


def test_unstorable_value_fails_before_anything_is_written(tmp_path):
    conn = _open(tmp_path)
    book = _book()
    conn.save_logbook(book)
    ad = next(iter(next(iter(book))))
    path = tmp_path / "atom_details" / ad.uuid / "metadata"
    before = path.read_bytes()
    ad.put(states.SUCCESS, {"fine": 1, "bad": object()})
    with pytest.raises(TypeError, match="object"):
        conn.update_atom_details(ad)
    assert path.read_bytes() == before

    fresh = _book()
    next(iter(next(iter(fresh)))).put(states.SUCCESS, object())
    with pytest.raises(TypeError, match="object"):
        conn.save_logbook(fresh)
    with pytest.raises(exc.NotFound):
        conn.get_logbook(fresh.uuid)
    assert sorted(os.listdir(tmp_path / "books")) == [book.uuid]
    assert _hidden(tmp_path) == []


# -- durability ---------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name descriptors")
def test_writes_sync_the_file_then_rename_then_sync_the_directory(tmp_path, monkeypatch):
    conn = _open(tmp_path)
    book = _book(atoms=1)
    conn.save_logbook(book)
    ad = next(iter(next(iter(book))))
    events: list[tuple[str, str]] = []
    real = {name: getattr(os, name) for name in ("fsync", "fdatasync", "replace", "rename")}

    def syncer(name):
        def sync(fd):
            events.append(("sync", os.readlink(f"/proc/self/fd/{fd}")))
            return real[name](fd)

        return sync

    def mover(name):
        def move(src, dst):
            events.append((name, f"{os.path.basename(src)}->{dst}"))
            return real[name](src, dst)

        return move

    for name in ("fsync", "fdatasync"):
        monkeypatch.setattr(os, name, syncer(name))
    for name in ("replace", "rename"):
        monkeypatch.setattr(os, name, mover(name))

    item = str(tmp_path / "atom_details" / ad.uuid)
    ad.state = states.RUNNING
    conn.update_atom_details(ad)
    assert [kind for kind, _ in events] == ["sync", "replace", "sync"]
    assert events[0][1].startswith(item + "/.metadata.")  # the temporary file, synced first
    assert events[1][1].endswith(f"->{item}/metadata")
    assert events[2][1] == item

    events.clear()
    conn.update_atom_details(models.TaskDetail("new", "new-atom"), ignore_missing=True)
    atoms = str(tmp_path / "atom_details")
    assert [kind for kind, _ in events] == ["sync", "sync", "rename", "sync"]
    assert events[0][1].startswith(atoms + "/.new.new-atom.")  # metadata being built
    assert events[0][1].endswith("/metadata")
    assert events[1][1] == os.path.dirname(events[0][1])  # the hidden directory
    assert events[2][1].endswith(f"->{atoms}/new-atom")
    assert events[3][1] == atoms


_WRITER = textwrap.dedent(
    """
    import sys
    from taskflow import states
    from taskflow.persistence.backends import impl_dir

    conn = impl_dir.DirBackend({"path": sys.argv[1]}).get_connection()
    fd = conn.get_flow_details(sys.argv[2])
    atoms = list(fd)
    i = 0
    while True:
        i += 1
        ad = atoms[i % len(atoms)]
        n = (i * 7919) % 20000
        ad.put(states.SUCCESS, "x" * n)
        ad.meta = {"n": n}
        conn.update_atom_details(ad)
        if i % 5 == 0:
            fd.meta = {"n": n, "pad": "y" * n}
            conn.update_flow_details(fd)
        if i == 1:
            print("ready", flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_mid_write_never_leaves_an_unreadable_record(tmp_path):
    conn = _open(tmp_path)
    book = _book(atoms=3)
    conn.save_logbook(book)
    fd = next(iter(book))
    rng = random.Random(7)
    for _ in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), fd.uuid],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 0.03))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        # Every record is whole: each one's parts were written together.
        stored = conn.get_logbook(book.uuid)
        flow = next(iter(stored))
        assert flow.meta == {} or len(flow.meta["pad"]) == flow.meta["n"]
        assert [ad.uuid for ad in flow] == [ad.uuid for ad in fd]
        for ad in flow:
            if ad.state == states.SUCCESS:
                results = ad.results if isinstance(ad, models.TaskDetail) else ad.last_results
                assert results == "x" * ad.meta["n"]


_MERGER = textwrap.dedent(
    """
    import os, sys, time
    from taskflow.persistence import models
    from taskflow.persistence.backends import impl_dir

    root, flow_uuid, me = sys.argv[1:]
    conn = impl_dir.DirBackend({"path": root}).get_connection()
    print("ready", flush=True)
    while not os.path.exists(os.path.join(root, "go")):
        time.sleep(0.001)
    for i in range(15):
        fd = models.FlowDetail("flow", flow_uuid)
        fd.add(models.TaskDetail(f"{me}-{i}", f"{me}-{i}"))
        conn.update_flow_details(fd)
    """
)


def test_processes_adding_atoms_to_one_flow_all_land(tmp_path):
    conn = _open(tmp_path)
    book = _book(atoms=1)
    conn.save_logbook(book)
    fd = next(iter(book))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _MERGER, str(tmp_path), fd.uuid, f"p{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
    (tmp_path / "go").touch()
    for child in children:
        assert child.wait(timeout=60) == 0
        assert child.stdout is not None
        child.stdout.close()
    expected = {f"p{n}-{i}" for n in range(4) for i in range(15)} | {ad.uuid for ad in fd}
    assert {ad.uuid for ad in conn.get_atoms_for_flow(fd.uuid)} == expected
    # The recorded order lost nobody: the flow's updates were serialised by its lock.
    flow_json = json.loads((tmp_path / "flow_details" / fd.uuid / "metadata").read_text())
    assert set(flow_json["atom_order"]) == expected
    assert len(flow_json["atom_order"]) == len(expected)
    for n in range(4):
        mine = [u for u in flow_json["atom_order"] if u.startswith(f"p{n}-")]
        assert mine == [f"p{n}-{i}" for i in range(15)]


def test_upgrade_sweeps_what_dead_writers_left(tmp_path):
    conn = _open(tmp_path)
    atoms = tmp_path / "atom_details"
    (atoms / ".trash.x.1.1").mkdir()
    (atoms / ".new.y.1.1").mkdir()
    (atoms / ".new.z.1.2").mkdir()
    old = time.time() - 2 * 3600
    os.utime(atoms / ".new.y.1.1", (old, old))
    (tmp_path / "books" / ".new.b.1.3").mkdir()
    assert list(conn.get_logbooks()) == []  # hidden entries are never records
    conn.upgrade()
    # A fresh record under construction may belong to a live writer: it stays.
    assert sorted(os.listdir(atoms)) == [".new.z.1.2"]


def test_flow_record_update_writes_no_atom(tmp_path):
    """A flow state change rewrites the flow's record only, keeping its atoms linked."""
    from taskflow.persistence import models
    from taskflow.persistence.backends import impl_dir

    backend = impl_dir.DirBackend({"path": str(tmp_path)})
    with backend.get_connection() as conn:
        conn.upgrade()
        book = models.LogBook("b")
        fd = models.FlowDetail("f", "fd-1")
        ad = models.TaskDetail("a", "ad-1")
        fd.add(ad)
        book.add(fd)
        conn.save_logbook(book)
        atom_file = tmp_path / "atoms" / "ad-1" / "metadata"
        if not atom_file.exists():
            atom_file = next(tmp_path.rglob("ad-1/metadata"))
        before = atom_file.stat().st_mtime_ns
        ad.state = "RUNNING"  # changed in memory only: must not be written by a flow update
        fd.state = "RUNNING"
        conn.update_flow_record(fd)
        assert atom_file.stat().st_mtime_ns == before
        stored = conn.get_flow_details("fd-1")
        assert stored.state == "RUNNING"
        assert [a.uuid for a in stored] == ["ad-1"]
        assert stored.find("ad-1").state is None


# -- ownership ---------------------------------------------------------------------------------


def _claimed(tmp_path: Path) -> tuple[impl_dir.Connection, models.LogBook, models.FlowDetail]:
    conn = _open(tmp_path)
    book = _book(atoms=2)
    conn.save_logbook(book)
    fd = next(iter(book))
    conn.claim_flow(fd.uuid, lease=30)
    return conn, book, fd


def test_two_processes_claiming_one_flow_at_once_one_wins(tmp_path):
    conn = _open(tmp_path)
    flows = []
    for _ in range(10):
        book = _book()
        conn.save_logbook(book)
        flows.append(next(iter(book)).uuid)
    answers = ownership.race_claims({"connection": f"dir://{tmp_path}"}, flows)
    assert [sorted(each) for each in answers] == [["owned", "won 1"]] * len(flows)
    assert all(conn.read_ownership(flow).held for flow in flows)


def test_ownership_record_layout_and_a_tree_from_before_owners(tmp_path):
    conn = _open(tmp_path)
    shutil.rmtree(tmp_path / "owners")  # as a tree written before flows had owners
    book = _book()
    conn.save_logbook(book)
    fd = next(iter(book))
    assert conn.read_ownership(fd.uuid) is None
    mine = conn.claim_flow(fd.uuid, lease=30)
    record = tmp_path / "owners" / fd.uuid
    assert json.loads(record.read_bytes()) == mine.to_dict()
    assert sorted(os.listdir(tmp_path / "owners")) == [f".lock.{fd.uuid}", fd.uuid]
    conn.upgrade()  # and upgrading a tree that has them changes nothing
    assert conn.read_ownership(fd.uuid) == mine


def test_corrupt_ownership_record_is_a_storage_failure_naming_the_file(tmp_path):
    conn, _, fd = _claimed(tmp_path)
    record = tmp_path / "owners" / fd.uuid
    for content in (b"{nope", b"[]", b'{"owner": "x"}'):
        record.write_bytes(content)
        with pytest.raises(exc.StorageFailure, match="Corrupt record") as info:
            conn.read_ownership(fd.uuid)
        assert str(record) in str(info.value)
        # The owner's writes are refused rather than let through unchecked.
        with pytest.raises(exc.StorageFailure, match=str(record)):
            conn.update_atom_details(next(iter(fd)))


def test_an_owner_writes_through_renewals(tmp_path):
    conn, _, fd = _claimed(tmp_path)
    ownership.check_owner_writes(conn, _open(tmp_path), fd)


def test_an_owner_that_wrote_is_fenced_after_a_takeover(tmp_path):
    ownership.check_takeover_fences(_open(tmp_path), _open(tmp_path), lease=0.2)


def _open_files_under(root: Path) -> list[str]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listing the directory, closed by now
            continue
        if target.startswith(str(root)):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_connection_keeps_no_file_open_once_closed(tmp_path):
    conn, _, fd = _claimed(tmp_path)
    conn.update_atom_details(next(iter(fd)))  # keeps the owner lock and record open
    assert len(_open_files_under(tmp_path)) == 2
    conn.close()
    assert _open_files_under(tmp_path) == []


def test_a_claim_waits_for_the_owners_write_in_progress(tmp_path):
    """A fenced write holds the flow's owner lock shared: no claim lands mid-write."""
    import fcntl
    import threading

    conn, _, fd = _claimed(tmp_path)
    conn.release_flow(fd.uuid, conn.read_ownership(fd.uuid).token)
    lock = impl_dir._lock(str(tmp_path / "owners" / f".lock.{fd.uuid}"), fcntl.LOCK_SH)
    claimed = []
    other = _open(tmp_path)
    thread = threading.Thread(target=lambda: claimed.append(other.claim_flow(fd.uuid)))
    try:
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()
        assert claimed == []
    finally:
        os.close(lock)
        thread.join(10)
    assert [o.token for o in claimed] == [2]


def test_destroy_and_clear_remove_the_flows_ownership(tmp_path):
    conn, book, fd = _claimed(tmp_path)
    other = _book()
    conn.save_logbook(other)
    conn.claim_flow(next(iter(other)).uuid, lease=30)
    conn.destroy_logbook(book.uuid)
    assert conn.read_ownership(fd.uuid) is None
    assert len(os.listdir(tmp_path / "owners")) == 2  # the other book's flow's
    conn.clear_all()
    assert os.listdir(tmp_path / "owners") == []
