"""A persistence backend that keeps every record in its own file under one directory.

Theory of operation. This is the path-based connection
(:mod:`taskflow.persistence.backends._path_store`) over a store of files. The layout is
upstream TaskFlow's, so a directory written by it opens here (and upstream reads ours,
tuples showing as our encoding's marker dicts)::

    <path>/books/<book uuid>/metadata            book.to_dict(marshal_time=True)
    <path>/books/<book uuid>/lock                empty; flock()ed by writers of the book
    <path>/books/<book uuid>/<flow uuid>         symlink to ../../flow_details/<flow uuid>
    <path>/flow_details/<flow uuid>/metadata     flow.to_dict() plus "atom_order"
    <path>/flow_details/<flow uuid>/<atom uuid>  symlink to ../../atom_details/<atom uuid>
    <path>/atom_details/<atom uuid>/metadata     {"atom": atom.to_dict(), "type": ...}
    <path>/owners/<flow uuid>                    Ownership.to_dict(): who runs the flow
    <path>/owners/.lock.<flow uuid>              empty; flock()ed to change or check that

A link is resolved by its *name* (the child's uuid), never by following it, so trees can be
moved or copied (upstream writes absolute link targets; ours are relative). Flow records
carry an extra ``"atom_order"`` list because a directory listing has no order and atoms
must read back in the order they were added; records without it (upstream's, and books,
whose records stay exactly upstream's) list their links by age. Names starting with ``.``
belong to this backend (files and records being written or deleted) and are never read as
records.

Durability. No file is ever written in place. A record is written to a temporary file in
the same directory, synced, ``os.replace()``-d onto ``metadata`` and the directory is
synced; a new record is built completely in a temporary directory (metadata and lock
file), synced, renamed into place and its parent synced; a new link is synced through its
directory. A crash may leave hidden temporary files, which are ignored (``upgrade()`` sweeps
the hidden directories of dead writers). So a reader sees a record whole or not at all,
whenever the writer is killed, and a write that returned survives a power loss. Deleting
renames the record out of sight first (atomic), then removes it. A transaction is applied
in its order, each record atomically (not all of them at once): children are written
before the links that name them, so a link can only dangle after an interrupted delete (or
a record removed by hand: reading it raises NotFound naming the missing record), and
deleted before their parent, whose removal waits until theirs is durable, so destroying an
interrupted book again finishes the job.

Locking. A write of a single record (``update_atom_details``) replaces one file and takes no
lock: the rename is atomic, so concurrent writers leave one whole record, the last renamed.
Writing a parent record with its links, or deleting one, locks that record's ``lock`` file
(``fcntl.flock``: exclusive between processes and between threads, since every holder opens
its own descriptor) for the read-merge-write of its links and their order; one lock at a
time, so writers can not deadlock.

Ownership. A flow's ownership record is replaced like any record (temporary file, sync,
rename, directory sync), by a compare-and-swap under its ``.lock.<flow uuid>`` held
exclusively. A connection that owns a flow holds that lock *shared* while it checks its
token against the record and writes, so no claim lands between the check and the writes;
it is taken before any record lock (swaps take no other lock), so there is still no
deadlock. The lock file and the record stay open between fenced writes, so each costs a
lock, an unlock and a ``stat`` (see ``_HeldOwner``); ``close()`` releases them.

POSIX only (symlinks, ``flock``).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import itertools
import os
import shutil
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any
from urllib import parse

from taskflow import _config, _serialization
from taskflow import exceptions as exc
from taskflow.persistence import base
from taskflow.persistence.backends import _path_store as ps

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = ["Connection", "DirBackend"]

_METADATA = "metadata"
_LOCK = "lock"
_ORDER = "atom_order"
_NOT_CHILDREN = frozenset((_METADATA, _LOCK))
# Leftover records under construction older than this are from a dead writer.
_STALE_SECONDS = 3600.0
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_counter = itertools.count()


# -- durable file primitives -----------------------------------------------------------------


def _sync_file(fd: int) -> None:
    """Force a written file's data to stable storage."""
    if sys.platform == "darwin":
        # fsync on macOS stops at the drive's cache; only F_FULLFSYNC reaches the medium.
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    else:
        # The size is flushed too; the directory entry is synced separately.
        os.fdatasync(fd)


def _sync_dir(path: str) -> None:
    """Force a directory's entries (creations, renames, removals) to stable storage."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        if sys.platform == "darwin":
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
        else:
            os.fsync(fd)
    finally:
        os.close(fd)


def _unique(directory: str, stem: str) -> str:
    return os.path.join(directory, f".{stem}.{os.getpid()}.{next(_counter)}")


def _write_new(path: str, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``, synced."""
    fd = os.open(path, _NEW_FILE_FLAGS, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        _sync_file(fd)
    finally:
        os.close(fd)


def _replace_file(directory: str, data: bytes, name: str = _METADATA) -> None:
    """Atomically and durably make ``directory/name`` hold ``data``.

    Raises:
        FileNotFoundError: ``directory`` does not exist (or was deleted meanwhile).
    """
    while True:
        temp = _unique(directory, name) + ".tmp"
        try:
            _write_new(temp, data)
            break
        except FileExistsError:  # left by a dead process that had our pid: pick another
            continue
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    try:
        os.replace(temp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_dir(directory)


def _stage(root: str, uuid: str, data: bytes) -> str:
    """Build record ``uuid`` (metadata and lock file) in a new hidden directory, synced."""
    while True:
        temp = _unique(root, f"new.{uuid}")
        try:
            os.mkdir(temp)
            break
        except FileExistsError:
            continue
    try:
        _write_new(os.path.join(temp, _METADATA), data)
        os.close(os.open(os.path.join(temp, _LOCK), _NEW_FILE_FLAGS, 0o644))
        _sync_dir(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return temp


def _create_items(root: str, items: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Publish new records ``root/uuid`` holding ``data``, for each ``(uuid, data)``.

    Each record is assembled in a hidden directory and renamed into place, so it appears
    complete or not at all; ``root`` is synced once for the lot.

    Returns:
        The items whose record already existed (those were left unchanged).
    """
    staged: list[tuple[str, str, bytes]] = []
    existed: list[tuple[str, bytes]] = []
    published = False
    try:
        for uuid, data in items:
            staged.append((_stage(root, uuid, data), uuid, data))
        for temp, uuid, data in staged:
            try:
                # Replaces an empty directory, fails on a populated one: never loses a record.
                os.rename(temp, os.path.join(root, uuid))
                published = True
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                existed.append((uuid, data))
        if published:
            _sync_dir(root)
    finally:
        # What was not renamed (a collision, an error) is still hidden here: remove it.
        for temp, _, _ in staged:
            shutil.rmtree(temp, ignore_errors=True)
    return existed


def _create_item(root: str, uuid: str, data: bytes) -> bool:
    """Publish one new record (see :func:`_create_items`); False if it already existed."""
    return not _create_items(root, [(uuid, data)])


def _discard(root: str, uuid: str) -> str | None:
    """Atomically take record ``root/uuid`` out of sight; the path to remove it from."""
    trash = _unique(root, f"trash.{uuid}")
    try:
        os.rename(os.path.join(root, uuid), trash)
    except FileNotFoundError:
        return None
    return trash


def _add_links(item: str, into: str, names: Iterable[str]) -> None:
    """Link ``names`` under record directory ``item`` to the records of ``into``, synced."""
    added = False
    for name in names:
        # Relative, so the tree keeps working when moved; resolved from <top>/<item>/<link>.
        target = os.path.join(os.pardir, os.pardir, os.path.basename(into), name)
        try:
            os.symlink(target, os.path.join(item, name))
            added = True
        except FileExistsError:
            pass
    if added:
        _sync_dir(item)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _links(item: str) -> list[str] | None:
    """The names a record directory links to, unordered (None: no such record)."""
    try:
        return [n for n in os.listdir(item) if n not in _NOT_CHILDREN and n[0] != "."]
    except (FileNotFoundError, NotADirectoryError):  # deleted while being read
        return None


def _children(item: str, order: list[str] | None) -> list[str] | None:
    """The links of a record: those in ``order`` first, the rest oldest link first."""
    names = _links(item)
    if names is None:
        return None
    known, rest = ps.ordered(names, order)

    def age(name: str) -> tuple[int, str]:
        try:
            return os.lstat(os.path.join(item, name)).st_mtime_ns, name
        except FileNotFoundError:
            return 0, name

    return known + sorted(rest, key=age)


def _acquire(item: str) -> int:
    """Take the exclusive lock of record directory ``item``; the descriptor to close.

    Raises:
        FileNotFoundError: the record does not exist (or was deleted while waiting).
    """
    return _lock(os.path.join(item, _LOCK))


def _lock(lock_path: str, operation: int = fcntl.LOCK_EX) -> int:
    """Take the lock file ``lock_path`` (created if missing); the descriptor to close.

    Raises:
        FileNotFoundError: its directory does not exist, or the lock file was deleted
            while waiting (its deleter held it: what it guarded is gone).
    """
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, operation)
            # Deleted or replaced while we waited: a lock on that old file protects nothing.
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _remove(paths: Iterable[str | None]) -> None:
    for path in paths:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn OS errors into StorageFailure: the one place this backend translates them."""
    try:
        yield
    except OSError as err:
        raise exc.StorageFailure(f"Directory backend I/O failed: {err}") from err


def _valid(name: str) -> bool:
    # Hidden names are the backend's own files; the rest must be one plain file name.
    return bool(name) and name[0] != "." and "\0" not in name and os.sep not in name


class _HeldOwner:
    """The owner lock and ownership record of the flow a store's writes are fenced by, kept
    open from one fenced write to the next.

    A fenced write holds the flow's owner lock shared and checks the token of its record.
    With both kept open, that costs a lock, a ``stat`` of the record's path and an unlock:
    if the file there is still the one read (the same inode, whose number the open
    descriptor keeps from being reused), no swap happened since, as swaps rename a new file
    in, and no drop either, as drops unlink the record before its lock file; so the lock is
    still the live one and the token read still holds. Otherwise both are opened again.
    """

    def __init__(self) -> None:
        #: Held by the thread using the descriptors (a flock is per open file, not thread).
        self.mutex = threading.Lock()
        self.flow_uuid = ""
        self.paths = ("", "")  # the record, its lock file
        self.lock = -1
        self.record = -1
        self.record_stat: os.stat_result | None = None
        self.ownership: base.Ownership | None = None

    def close(self) -> None:
        for fd in (self.lock, self.record):
            if fd >= 0:
                os.close(fd)
        self.lock = self.record = -1
        self.record_stat = self.ownership = None

    def acquire(self) -> base.Ownership | None:
        """Take the lock shared (hold :attr:`mutex`, and :meth:`release` after); the flow's
        ownership record (None: none, or no owners directory)."""
        if self.record_stat is not None:
            fcntl.flock(self.lock, fcntl.LOCK_SH)
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(self.record_stat, os.stat(self.paths[0])):
                    return self.ownership
        self.close()
        try:
            self.lock = _lock(self.paths[1], fcntl.LOCK_SH)
            fd = os.open(self.paths[0], os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # no owners directory, no record, or dropped meanwhile
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            self.ownership = ps.unpack_owner(b"".join(chunks), self.paths[0])
        except BaseException:
            os.close(fd)
            raise
        self.record, self.record_stat = fd, os.fstat(fd)
        return self.ownership

    def release(self) -> None:
        if self.lock >= 0:
            fcntl.flock(self.lock, fcntl.LOCK_UN)


class _Store(ps.RecordStore[dict[str, Any]]):
    """Records as files under ``root`` (see the module docstring)."""

    def __init__(self, root: str, encoding: str, limits: _serialization.Limits) -> None:
        self._prefix = root.rstrip(os.sep) + os.sep
        self._owners = self._prefix + ps.OWNERS
        self._held = _HeldOwner()
        weakref.finalize(self, self._held.close)
        self._json = ps.JsonRecords(_ORDER, encoding)
        self.limits = limits

    def where(self, path: str) -> str:
        return os.path.join(path, _METADATA)

    def _depth(self, path: str) -> int:
        """1 for a directory, 2 for a record; 0 for what this store can not hold."""
        if not path.startswith(self._prefix):
            return 0
        names = path[len(self._prefix) :].split(os.sep)
        return len(names) if len(names) <= 2 and all(map(_valid, names)) else 0

    def _order(self, path: str) -> list[Any] | None:
        try:
            return self._json.order(_read(self.where(path)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read(
        self, paths: Sequence[str], links: bool = False
    ) -> list[ps.Entry[dict[str, Any]] | None]:
        found: list[ps.Entry[dict[str, Any]] | None] = []
        with _errors():
            for path in paths:
                where = self.where(path)
                try:
                    raw = _read(where) if self._depth(path) == 2 else None
                except (FileNotFoundError, NotADirectoryError):
                    raw = None
                if raw is None:
                    found.append(None)
                    continue
                record, order = self._json.unpack(raw, where)
                found.append(ps.Entry(record, (_children(path, order) or []) if links else []))
        return found

    def children(self, paths: Sequence[str]) -> list[list[str] | None]:
        found: list[list[str] | None] = []
        with _errors():
            for path in paths:
                depth = self._depth(path)
                if depth == 2:
                    found.append(_children(path, self._order(path)))
                elif depth == 1 and os.path.isdir(path):
                    found.append(sorted(n for n in os.listdir(path) if n[0] != "."))
                else:
                    found.append(None)
        return found

    def commit(self, txn: ps.Transaction[dict[str, Any]]) -> dict[str, ps.Stored]:
        """Apply the transaction in order, each record atomically (see the module docstring)."""
        encoded: list[Any] = []
        for op in txn.ops:  # everything checked and encoded before anything is written
            if self._depth(op.path) != 2 or not all(map(_valid, op.links or ())):
                raise ValueError(f"'{op.path}' can not be stored by a directory backend")
            encoded.append(self._json.encode(op.record) if isinstance(op, ps.Write) else None)
        stored: dict[str, ps.Stored] = {}
        with _errors(), self._fenced(txn):
            if len(txn.ops) > 1:
                for op in txn.ops:
                    missing = isinstance(op, ps.Write) and not op.create
                    if missing and not os.path.exists(self.where(op.path)):
                        raise exc.NotFound(f"Item not found: {self.where(op.path)}")
            elif txn.ops and isinstance(op := txn.ops[0], ps.Write) and op.links is None:
                # The hot path (update_atom_details): one replace, no read, no lock.
                self._put_leaf(op, self._json.pack(encoded[0]))
                return {op.path: ps.Stored(True, [])}
            leaves: list[tuple[ps.Write[dict[str, Any]], bytes]] = []
            trash: list[str | None] = []
            dirty: set[str] = set()
            try:
                for op, data in zip(txn.ops, encoded, strict=True):
                    if isinstance(op, ps.Write) and op.links is None:
                        leaves.append((op, self._json.pack(data)))
                        stored[op.path] = ps.Stored(True, [])
                        continue
                    self._put_leaves(leaves)
                    leaves = []
                    if isinstance(op, ps.Write):
                        stored[op.path] = self._put_parent(op, data)
                    else:
                        self._delete(op, trash, dirty)
                self._put_leaves(leaves)
                for directory in dirty:
                    _sync_dir(directory)
            finally:
                _remove(trash)
        return stored

    def _put_leaf(self, op: ps.Write[dict[str, Any]], data: bytes) -> None:
        try:
            _replace_file(op.path, data)
        except FileNotFoundError:
            if not op.create:
                raise exc.NotFound(f"Item not found: {self.where(op.path)}") from None
            root, name = os.path.split(op.path)
            if not _create_item(root, name, data):
                _replace_file(op.path, data)  # created meanwhile by another writer

    def _put_leaves(self, leaves: list[tuple[ps.Write[dict[str, Any]], bytes]]) -> None:
        """Create or replace records, skipping those already holding their data."""
        missing: dict[str, list[tuple[str, bytes]]] = {}
        for op, data in leaves:
            try:
                # Already holding it (a saved flow's atoms usually are): a read is far cheaper
                # than a synced write, and the bytes got there through an atomic replace.
                if _read(self.where(op.path)) == data:
                    continue
            except FileNotFoundError:
                if not op.create:
                    raise exc.NotFound(f"Item not found: {self.where(op.path)}") from None
                root, name = os.path.split(op.path)
                missing.setdefault(root, []).append((name, data))
                continue
            _replace_file(op.path, data)
        # New ones in one batch per directory: a flow's atoms are mostly created together.
        for root, items in missing.items():
            for name, data in _create_items(root, items):
                _replace_file(os.path.join(root, name), data)

    def _put_parent(self, op: ps.Write[dict[str, Any]], encoded: Any) -> ps.Stored:
        """Write a parent record and its new links under its lock (see the module docstring)."""
        ordered = os.path.basename(os.path.dirname(op.path)) == ps.FLOWS
        wanted = list(dict.fromkeys(op.links or ()))
        initial = self._json.pack(encoded, wanted if ordered else None) if op.create else None
        with self._hold(op.path, initial) as stored:
            recorded = self._json.order(stored)
            if wanted or recorded is None or not ordered:
                linked = _children(op.path, recorded) or []
            else:  # nothing to link (a flow's state change): its order lists what was linked
                linked = list(dict.fromkeys(n for n in recorded if isinstance(n, str)))
            known = set(linked)
            added = [name for name in wanted if name not in known]
            _add_links(op.path, op.into, added)
            order = linked + added
            data = self._json.pack(encoded, order if ordered else None)
            if data != stored:
                _replace_file(op.path, data)
        return ps.Stored(True, order)

    @contextlib.contextmanager
    def _hold(self, item: str, initial: bytes | None) -> Iterator[bytes]:
        """Lock record ``item``, creating it with ``initial`` if missing and given.

        Yields:
            Its stored metadata bytes.

        Raises:
            taskflow.exceptions.NotFound: missing, and no ``initial`` to create it with.
        """
        path = self.where(item)
        while True:
            try:
                lock = _acquire(item)
                break
            except FileNotFoundError:
                if initial is None:
                    raise exc.NotFound(f"Item not found: {path}") from None
                _create_item(*os.path.split(item), initial)  # or another writer just did
        try:
            try:
                stored = _read(path)
            except FileNotFoundError:  # a directory without a record (a dead upstream writer)
                if initial is None:
                    raise exc.NotFound(f"Item not found: {path}") from None
                _replace_file(item, initial)
                stored = initial
            yield stored
        finally:
            os.close(lock)

    @staticmethod
    def _delete(op: ps.Delete, trash: list[str | None], dirty: set[str]) -> None:
        """Take a record out of sight; ``dirty``: directories to sync before returning."""
        root, name = os.path.split(op.path)
        if op.links is not None:
            # Its children's removal must be durable first: if interrupted, the parent stays
            # (with dangling links) and deleting it again finishes the job.
            for directory in dirty - {root}:
                _sync_dir(directory)
                dirty.discard(directory)
            try:
                lock = _acquire(op.path)
            except FileNotFoundError:  # already gone
                return
            try:
                extra = set(_links(op.path) or ()) - set(op.links)
                if extra:
                    raise ps.Conflict(f"'{op.path}' gained links {sorted(extra)}")
                trash.append(_discard(root, name))
            finally:
                os.close(lock)
        else:
            trash.append(_discard(root, name))
        dirty.add(root)

    # -- ownership ----------------------------------------------------------------------------

    def _owner_files(self, flow_uuid: str) -> tuple[str, str]:
        """The flow's ownership record and the lock file guarding it."""
        if not _valid(flow_uuid):
            raise ValueError(f"'{flow_uuid}' can not name a flow in a directory backend")
        path = os.path.join(self._owners, flow_uuid)
        return path, os.path.join(self._owners, f".lock.{flow_uuid}")

    @staticmethod
    def _load_owner(path: str) -> base.Ownership | None:
        try:
            data = _read(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ps.unpack_owner(data, path)

    def read_owner(self, flow_uuid: str) -> base.Ownership | None:
        """The flow's ownership, read without a lock (records are replaced atomically)."""
        path, _ = self._owner_files(flow_uuid)
        with _errors():
            return self._load_owner(path)

    def swap_owner(self, flow_uuid: str, expected_token: int | None, new: base.Ownership) -> bool:
        """Compare and replace the flow's ownership record under its lock, held exclusively."""
        path, lock_path = self._owner_files(flow_uuid)
        data = ps.pack_owner(new)
        with _errors():
            try:
                lock = _lock(lock_path)
            except FileNotFoundError:  # a tree from before flows had owners (or a drop raced)
                self._make_dir(self._owners)
                lock = _lock(lock_path)
            try:
                current = self._load_owner(path)
                if (None if current is None else current.token) != expected_token:
                    return False
                _replace_file(self._owners, data, flow_uuid)
                return True
            finally:
                os.close(lock)

    @contextlib.contextmanager
    def _fenced(self, txn: ps.Transaction[Any]) -> Iterator[None]:
        """Check ``txn``'s fence and keep it valid while writing.

        The lock of the fence's flow, held shared for the check and the writes, makes them
        atomic against swaps (which hold it exclusively): a new owner's claim waits for the
        writes under way, and any write after it sees the new token and is refused.
        """
        if txn.fence is None:
            yield
            return
        held = self._held
        with held.mutex:
            if held.flow_uuid != txn.fence[0]:
                held.close()
                held.paths = self._owner_files(txn.fence[0])
                held.flow_uuid = txn.fence[0]
            try:
                self.fenced_out(txn, held.acquire())
                yield
            finally:
                held.release()

    def close(self) -> None:
        with self._held.mutex:
            self._held.close()

    def drop_owners(self, flow_uuids: Sequence[str]) -> None:
        """Delete the records (and lock files) of the flows that were ever claimed."""
        dropped = False
        with _errors():
            for flow_uuid in flow_uuids:
                path, lock_path = self._owner_files(flow_uuid)
                if not os.path.exists(lock_path):  # never claimed (created before the record)
                    continue
                try:
                    lock = _lock(lock_path)
                except FileNotFoundError:  # dropped meanwhile
                    continue
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    # Deleted while held: whoever waits for it sees that and starts over.
                    os.unlink(lock_path)
                    dropped = True
                finally:
                    os.close(lock)
            if dropped:
                _sync_dir(self._owners)

    def upgrade(self, directories: Sequence[str]) -> None:
        """Create the directories (durably) and sweep what dead writers left behind."""
        with _errors():
            for directory in directories:
                self._make_dir(directory)
            for directory in directories:
                self._sweep(directory)

    def _make_dir(self, path: str) -> None:
        if os.path.isdir(path):
            return
        parent = os.path.dirname(path)
        if parent != path:
            self._make_dir(parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        _sync_dir(parent)

    @staticmethod
    def _sweep(root: str) -> None:
        stale = time.time() - _STALE_SECONDS
        for name in os.listdir(root):
            if name.startswith(".trash."):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            elif name.startswith(".new."):
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mtime < stale:
                        shutil.rmtree(path, ignore_errors=True)

    def validate(self, directories: Sequence[str]) -> None:
        """Check the directories exist and are writable (``upgrade()`` creates them)."""
        for directory in directories:
            if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
                raise exc.StorageFailure(
                    f"Directory '{directory}' is missing or not writable (run upgrade() first?)"
                )


def _path_from_uri(uri: Any) -> str | None:
    if not isinstance(uri, str) or "://" not in uri:
        return None
    parts = parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"Directory URIs name a local path, not a host: use '{parts.scheme}:///absolute/path'"
            f" or the 'path' option (got '{uri}')"
        )
    return parse.unquote(parts.path) or None


class DirBackend(base.Backend):
    """Stores log books, flow details and atom details as files under a directory.

    Any number of processes may share the directory. Every write is atomic and durable on
    return (see the module docstring for how); a record found corrupt on disk raises
    :class:`~taskflow.exceptions.StorageFailure` naming its file, and other records stay
    readable.

    Args:
        conf: options:

            * ``path`` -- the directory (created by ``upgrade()``). Without it, the path of
              the ``connection`` URI is used: ``dir:///var/lib/flows`` or
              ``file:///var/lib/flows`` (upstream TaskFlow ignores URI paths).
            * ``encoding`` -- text encoding of the files (default ``utf-8``).
            * ``max_cache_size`` -- accepted for compatibility (an integer >= 1); nothing
              is cached: other processes may change any file at any time, and a stale
              cached record would resume a flow from an old state.
            * ``max_value_bytes`` -- the most bytes of JSON one stored value (a result,
              revert result or metadata) may take (default 16 MiB: every transition
              rewrites its atom's file, value included). A value over it, or one JSON
              can not hold (NaN, an integer of more than 4,300 digits, a value containing
              itself...), raises ``UnstorableValue`` before anything is written.

    Raises:
        ValueError: no path, a URI naming a host, a bad ``max_cache_size`` or
            ``max_value_bytes``.
        LookupError: unknown ``encoding``.
    """

    #: Encoding used when the configuration names none.
    DEFAULT_FILE_ENCODING = "utf-8"
    #: There is no default directory: ``path`` must be given.
    DEFAULT_PATH: str | None = None
    #: ``max_value_bytes`` when the configuration gives none.
    DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024

    def __init__(self, conf: Mapping[str, Any]) -> None:
        super().__init__(conf)
        path = self._conf.get("path") or _path_from_uri(self._conf.get("connection"))
        if not path:
            raise ValueError("Empty path is disallowed")
        #: Absolute path of the directory holding the records.
        self.path: str = os.path.abspath(os.fspath(path))
        self.encoding: str = self._conf.get("encoding") or self.DEFAULT_FILE_ENCODING
        codecs.lookup(self.encoding)
        self.max_cache_size = _config.as_int(self._conf, "max_cache_size", None)
        if self.max_cache_size is not None and self.max_cache_size < 1:
            raise ValueError("Maximum cache size must be greater than or equal to one")
        self._limits = _serialization.limits_from_conf(self._conf, self.DEFAULT_MAX_VALUE_BYTES)

    def get_connection(self) -> Connection:
        """A new connection (cheap: connections hold no resources)."""
        return Connection(self)

    def close(self) -> None:
        """Nothing to release."""


class Connection(ps.PathConnection[dict[str, Any], DirBackend]):
    """Reads and writes the records of a :class:`DirBackend`.

    ``update_flow_details`` and ``update_atom_details`` also accept ``ignore_missing=True``,
    which creates a record that was never saved instead of raising ``NotFound``.

    Attributes:
        book_path, flow_path, atom_path: the directories holding books, flow details and
            atom details.
    """

    def __init__(self, backend: DirBackend) -> None:
        store = _Store(backend.path, backend.encoding, backend._limits)
        super().__init__(backend, store, ps.JSON, backend.path)
