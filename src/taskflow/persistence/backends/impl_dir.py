"""A persistence backend that keeps every record in its own file under one directory.

Theory of operation. The layout is upstream TaskFlow's, so a directory written by it opens
here (and upstream reads ours, tuples showing as our encoding's marker dicts)::

    <path>/books/<book uuid>/metadata            book.to_dict(marshal_time=True)
    <path>/books/<book uuid>/lock                empty; flock()ed by multi-file writers
    <path>/books/<book uuid>/<flow uuid>         symlink to ../../flow_details/<flow uuid>
    <path>/flow_details/<flow uuid>/metadata     flow.to_dict() plus "atom_order"
    <path>/flow_details/<flow uuid>/<atom uuid>  symlink to ../../atom_details/<atom uuid>
    <path>/atom_details/<atom uuid>/metadata     {"atom": atom.to_dict(), "type": ...}

A link is resolved by its *name* (the child's uuid), never by following it, so trees can be
moved or copied (upstream writes absolute link targets; ours are relative). Flow records
carry an extra ``"atom_order"`` list because a directory listing has no order and atoms
must read back in the order they were added; records without it (upstream's) list their
atoms by link age. Names starting with ``.`` belong to this backend (files and records
being written or deleted) and are never read as records.

Durability. No file is ever written in place. A record is written to a temporary file in
the same directory, synced, ``os.replace()``-d onto ``metadata`` and the directory is
synced; a new record is built completely in a temporary directory (metadata and lock
file), synced, renamed into place and its parent synced; a new link is synced through its
directory. A crash may leave hidden temporary files, which are ignored (``upgrade()`` sweeps
the hidden directories of dead writers). So a reader sees a record whole or not at all,
whenever the writer is killed, and a write that returned survives a power loss. Deleting
renames the record out of sight first (atomic), then removes it. Children are written before
the links that name them, so a link can only dangle after an interrupted delete; readers
skip such links.

Locking. ``update_atom_details`` replaces one file and takes no lock. Writes spanning several
files lock the ``lock`` file of the book or flow they change (``fcntl.flock``: exclusive
between processes and between threads, since every holder opens its own descriptor), always
book before flow, so they cannot deadlock.

POSIX only (symlinks, ``flock``).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import itertools
import json
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib import parse

from taskflow import _serialization
from taskflow import exceptions as exc
from taskflow.persistence import base, models

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Connection", "DirBackend"]

_BOOKS = "books"
_FLOWS = "flow_details"
_ATOMS = "atom_details"
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


def _replace_file(directory: str, data: bytes) -> None:
    """Atomically and durably make ``directory/metadata`` hold ``data``.

    Raises:
        FileNotFoundError: ``directory`` does not exist (or was deleted meanwhile).
    """
    while True:
        temp = _unique(directory, "metadata") + ".tmp"
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
        os.replace(temp, os.path.join(directory, _METADATA))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_dir(directory)


def _link_target(root_name: str, uuid: str) -> str:
    # Relative, so the tree keeps working when moved; resolved from <top>/<item>/<link>.
    return os.path.join(os.pardir, os.pardir, root_name, uuid)


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


def _add_links(item: str, root_name: str, uuids: Iterable[str]) -> None:
    added = False
    for uuid in uuids:
        try:
            os.symlink(_link_target(root_name, uuid), os.path.join(item, uuid))
            added = True
        except FileExistsError:
            pass
    if added:
        _sync_dir(item)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _children(item: str, order: Any = None) -> list[str]:
    """The uuids an item links to: those in ``order`` first, the rest oldest link first."""
    try:
        names = [n for n in os.listdir(item) if n not in _NOT_CHILDREN and n[0] != "."]
    except FileNotFoundError:  # deleted while being read
        return []
    present = set(names)
    ordered: list[str] = []
    if isinstance(order, list):
        for name in order:
            if isinstance(name, str) and name in present:
                ordered.append(name)
                present.discard(name)
    if present:

        def age(name: str) -> tuple[int, str]:
            try:
                return os.lstat(os.path.join(item, name)).st_mtime_ns, name
            except FileNotFoundError:
                return 0, name

        ordered.extend(sorted(present, key=age))
    return ordered


def _acquire(item: str) -> int:
    """Take the exclusive lock of record directory ``item``; the descriptor to close.

    Raises:
        FileNotFoundError: the record does not exist (or was deleted while waiting).
    """
    lock_path = os.path.join(item, _LOCK)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
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
def _translate(what: str) -> Iterator[None]:
    """Turn OS errors into StorageFailure (taskflow's own errors pass unchanged)."""
    try:
        yield
    except exc.TaskFlowException:
        raise
    except OSError as err:
        raise exc.StorageFailure(f"{what} failed: {err}") from err


# -- encoding -------------------------------------------------------------------------------


def _dump(data: Any, encoding: str) -> bytes:
    # ``data`` is already encoded by _serialization.to_jsonable: dump it as is.
    return json.dumps(data, separators=(",", ":")).encode(encoding)


def _atom_jsonable(ad: models.AtomDetail) -> dict[str, Any]:
    data = ad.to_dict()
    if isinstance(ad, models.RetryDetail):
        # History entries as JSON lists (upstream's shape); values keep our encoding.
        data["results"] = [[value, failures] for value, failures in data["results"]]
    return {"atom": _serialization.to_jsonable(data), "type": models.atom_detail_type(ad)}


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

    Raises:
        ValueError: no path, a URI naming a host, or a bad ``max_cache_size``.
        LookupError: unknown ``encoding``.
    """

    #: Encoding used when the configuration names none.
    DEFAULT_FILE_ENCODING = "utf-8"
    #: There is no default directory: ``path`` must be given.
    DEFAULT_PATH: str | None = None

    def __init__(self, conf: Mapping[str, Any]) -> None:
        super().__init__(conf)
        path = self._conf.get("path") or _path_from_uri(self._conf.get("connection"))
        if not path:
            raise ValueError("Empty path is disallowed")
        #: Absolute path of the directory holding the records.
        self.path: str = os.path.abspath(os.fspath(path))
        self.encoding: str = self._conf.get("encoding") or self.DEFAULT_FILE_ENCODING
        codecs.lookup(self.encoding)
        size = self._conf.get("max_cache_size")
        self.max_cache_size: int | None = None if size is None else int(size)
        if self.max_cache_size is not None and self.max_cache_size < 1:
            raise ValueError("Maximum cache size must be greater than or equal to one")

    def get_connection(self) -> Connection:
        """A new connection (cheap: connections hold no resources)."""
        return Connection(self)

    def close(self) -> None:
        """Nothing to release."""


class Connection(base.Connection):
    """Reads and writes the records of a :class:`DirBackend`.

    ``update_flow_details`` and ``update_atom_details`` also accept ``ignore_missing=True``,
    which creates a record that was never saved instead of raising ``NotFound``.
    """

    def __init__(self, backend: DirBackend) -> None:
        self._backend = backend
        self._encoding = backend.encoding
        self._books = os.path.join(backend.path, _BOOKS)
        self._flows = os.path.join(backend.path, _FLOWS)
        self._atoms = os.path.join(backend.path, _ATOMS)

    @property
    def backend(self) -> DirBackend:
        return self._backend

    @property
    def book_path(self) -> str:
        """The directory holding the log books."""
        return self._books

    @property
    def flow_path(self) -> str:
        """The directory holding the flow details."""
        return self._flows

    @property
    def atom_path(self) -> str:
        """The directory holding the atom details."""
        return self._atoms

    def close(self) -> None:
        """Nothing to release."""

    # -- structure ------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create the directories (durably) and sweep what dead writers left behind."""
        with _translate(f"Creating '{self._backend.path}'"):
            for root in (self._books, self._flows, self._atoms):
                self._make_dir(root)
            for root in (self._books, self._flows, self._atoms):
                self._sweep(root)

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

    def validate(self) -> None:
        """Check the directories exist and are writable.

        Raises:
            taskflow.exceptions.StorageFailure: they are not (``upgrade()`` creates them).
        """
        for root in (self._books, self._flows, self._atoms):
            if not os.path.isdir(root) or not os.access(root, os.W_OK | os.X_OK):
                raise exc.StorageFailure(
                    f"Directory '{root}' is missing or not writable (run upgrade() first?)"
                )

    def clear_all(self) -> None:
        """Delete every record; each disappears atomically (not all at once)."""
        with _translate("Clearing all records"):
            for root in (self._books, self._flows, self._atoms):
                names = [n for n in os.listdir(root) if n[0] != "."]
                trash = [_discard(root, name) for name in names]
                _sync_dir(root)
                _remove(trash)
                self._sweep(root)

    # -- reading --------------------------------------------------------------------------

    def _item(self, root: str, uuid: str, writing: bool = False) -> str:
        """The directory of record ``uuid`` under ``root``."""
        if not uuid or "/" in uuid or "\0" in uuid or uuid[0] == "." or os.sep in uuid:
            if writing:
                raise ValueError(f"'{uuid}' can not be stored by a directory backend")
            raise exc.NotFound(f"Item not found: {os.path.join(root, str(uuid), _METADATA)}")
        return os.path.join(root, uuid)

    def _load(self, item: str) -> tuple[Any, str]:
        """The decoded JSON of a record and its file path.

        Raises:
            taskflow.exceptions.NotFound: no such record.
            taskflow.exceptions.StorageFailure: the file can't be read or isn't valid JSON.
        """
        path = os.path.join(item, _METADATA)
        try:
            raw = _read(path)
        except (FileNotFoundError, NotADirectoryError):
            raise exc.NotFound(f"Item not found: {path}") from None
        except OSError as err:
            raise exc.StorageFailure(f"Reading '{path}' failed: {err}") from err
        try:
            return _serialization.loads(raw.decode(self._encoding)), path
        except ValueError as err:  # JSON and Unicode errors alike
            raise exc.StorageFailure(f"Corrupt record '{path}': {err}") from err

    @staticmethod
    def _corrupt(path: str, err: Exception) -> exc.StorageFailure:
        return exc.StorageFailure(f"Corrupt record '{path}': {type(err).__name__}: {err}")

    def _get_atom(self, uuid: str) -> models.AtomDetail:
        data, path = self._load(self._item(self._atoms, uuid))
        try:
            return models.atom_detail_class(data["type"]).from_dict(data["atom"])
        except Exception as err:  # whatever is wrong in it, the record is unusable
            raise self._corrupt(path, err) from err

    def _get_flow(self, uuid: str, lazy: bool) -> models.FlowDetail:
        item = self._item(self._flows, uuid)
        data, path = self._load(item)
        try:
            fd = models.FlowDetail.from_dict(data)
        except Exception as err:
            raise self._corrupt(path, err) from err
        if not lazy:
            for atom_uuid in _children(item, data.get(_ORDER)):
                try:
                    fd.add(self._get_atom(atom_uuid))
                except exc.NotFound:  # link left by an interrupted delete
                    continue
        return fd

    def _get_book(self, uuid: str, lazy: bool) -> models.LogBook:
        item = self._item(self._books, uuid)
        data, path = self._load(item)
        try:
            book = models.LogBook.from_dict(data, unmarshal_time=True)
        except Exception as err:
            raise self._corrupt(path, err) from err
        if not lazy:
            updated_at = book.updated_at
            for flow_uuid in _children(item):
                try:
                    book.add(self._get_flow(flow_uuid, lazy=False))
                except exc.NotFound:
                    continue
            book.updated_at = updated_at  # add() stamps it; keep the stored value
        return book

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        with _translate(f"Reading logbook '{book_uuid}'"):
            return self._get_book(book_uuid, lazy)

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        """Iterate over every book, read one at a time (books deleted meanwhile are skipped)."""
        with _translate("Listing logbooks"):
            names = sorted(n for n in os.listdir(self._books) if n[0] != ".")
        for name in names:
            with _translate(f"Reading logbook '{name}'"):
                try:
                    book = self._get_book(name, lazy)
                except exc.NotFound:
                    continue
            yield book

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        with _translate(f"Reading flows of logbook '{book_uuid}'"):
            item = self._item(self._books, book_uuid)
            self._load(item)
            flows = []
            for flow_uuid in _children(item):
                with contextlib.suppress(exc.NotFound):
                    flows.append(self._get_flow(flow_uuid, lazy))
        return iter(flows)

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> models.FlowDetail:
        with _translate(f"Reading flow detail '{flow_uuid}'"):
            return self._get_flow(flow_uuid, lazy)

    def get_atom_details(self, atom_uuid: str) -> models.AtomDetail:
        with _translate(f"Reading atom detail '{atom_uuid}'"):
            return self._get_atom(atom_uuid)

    def get_atoms_for_flow(self, flow_uuid: str) -> Iterator[models.AtomDetail]:
        with _translate(f"Reading atoms of flow detail '{flow_uuid}'"):
            return iter(list(self._get_flow(flow_uuid, lazy=False)))

    # -- writing --------------------------------------------------------------------------

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        """Replace the atom's record with all of ``atom_detail``'s fields, atomically.

        One file is replaced (temporary file, sync, rename, directory sync); no other record
        is read or written. No lock is taken: the rename is atomic, so concurrent writers of
        the same atom leave one whole record (the last one renamed), which is what any lock
        order would give, and readers never wait.

        Returns:
            ``atom_detail`` itself (it is what is now stored).

        Raises:
            taskflow.exceptions.NotFound: the atom was never saved (unless ``ignore_missing``:
                then it is created, linked to no flow).
            TypeError: a value JSON can't hold (raised before anything is written).
        """
        data = _dump(_atom_jsonable(atom_detail), self._encoding)
        item = self._item(self._atoms, atom_detail.uuid, writing=True)
        try:
            try:
                _replace_file(item, data)
            except FileNotFoundError:
                if not ignore_missing:
                    raise exc.NotFound(f"Item not found: {os.path.join(item, _METADATA)}") from None
                if not _create_item(self._atoms, atom_detail.uuid, data):
                    _replace_file(item, data)  # created meanwhile by another writer
        except OSError as err:
            raise exc.StorageFailure(
                f"Saving atom detail '{atom_detail.uuid}' failed: {err}"
            ) from err
        return atom_detail

    def _prepare_flow(
        self, fd: models.FlowDetail
    ) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        """Encode a flow and its atoms up front, so an unstorable value fails before writing."""
        atoms = []
        for ad in fd:
            self._item(self._atoms, ad.uuid, writing=True)
            atoms.append((ad.uuid, _dump(_atom_jsonable(ad), self._encoding)))
        self._item(self._flows, fd.uuid, writing=True)
        return _serialization.to_jsonable(fd.to_dict()), atoms

    @contextlib.contextmanager
    def _hold(self, root: str, uuid: str, initial: bytes | None) -> Iterator[tuple[str, bytes]]:
        """Lock record ``root/uuid``, creating it with ``initial`` if missing and given.

        Yields:
            (record directory, its stored metadata bytes).

        Raises:
            taskflow.exceptions.NotFound: missing, and no ``initial`` to create it with.
        """
        item = os.path.join(root, uuid)
        path = os.path.join(item, _METADATA)
        while True:
            try:
                lock = _acquire(item)
                break
            except FileNotFoundError:
                if initial is None:
                    raise exc.NotFound(f"Item not found: {path}") from None
                _create_item(root, uuid, initial)  # or another writer just did: lock it
        try:
            try:
                stored = _read(path)
            except FileNotFoundError:  # a directory without a record (a dead upstream writer)
                if initial is None:
                    raise exc.NotFound(f"Item not found: {path}") from None
                _replace_file(item, initial)
                stored = initial
            yield item, stored
        finally:
            os.close(lock)

    def _put_atoms(self, atoms: list[tuple[str, bytes]]) -> None:
        """Create or replace atom records, skipping those already holding their data."""
        missing = []
        for uuid, data in atoms:
            item = os.path.join(self._atoms, uuid)
            try:
                # Already holding it (the engine's atoms usually are): a read is far cheaper
                # than a synced write, and the bytes got there through an atomic replace.
                if _read(os.path.join(item, _METADATA)) == data:
                    continue
            except FileNotFoundError:
                missing.append((uuid, data))
                continue
            _replace_file(item, data)
        # New ones in one batch: a flow's atoms are mostly created together, at its start.
        for uuid, data in _create_items(self._atoms, missing):
            _replace_file(os.path.join(self._atoms, uuid), data)

    def _write_flow(
        self,
        fd: models.FlowDetail,
        prepared: dict[str, Any],
        atoms: list[tuple[str, bytes]],
        create: bool,
    ) -> bool:
        """Merge a prepared flow and its atoms; True if the stored flow has no other atoms."""
        wanted = [uuid for uuid, _ in atoms]
        initial = _dump({**prepared, _ORDER: wanted}, self._encoding) if create else None
        with self._hold(self._flows, fd.uuid, initial) as (item, stored):
            try:
                old_order = json.loads(stored.decode(self._encoding)).get(_ORDER)
            except (ValueError, AttributeError):  # unreadable: it is being replaced anyway
                old_order = None
            linked = _children(item, old_order)
            self._put_atoms(atoms)
            known = set(linked)
            _add_links(item, _ATOMS, [uuid for uuid in wanted if uuid not in known])
            order = linked + [uuid for uuid in dict.fromkeys(wanted) if uuid not in known]
            data = _dump({**prepared, _ORDER: order}, self._encoding)
            if data != stored:
                _replace_file(item, data)
        return len(order) == len(fd)

    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        """Merge ``flow_detail`` and its atoms into the store, under the flow's lock.

        New atoms are created and linked, stored ones replaced (only if they differ), then
        the flow record is replaced; each file atomically and durably.

        Returns:
            ``flow_detail`` itself when the stored flow has no other atoms; else the stored
            flow, read back.

        Raises:
            taskflow.exceptions.NotFound: the flow was never saved (unless ``ignore_missing``).
            TypeError: a value JSON can't hold (raised before anything is written).
        """
        prepared, atoms = self._prepare_flow(flow_detail)
        with _translate(f"Saving flow detail '{flow_detail.uuid}'"):
            if self._write_flow(flow_detail, prepared, atoms, create=ignore_missing):
                return flow_detail
            return self._get_flow(flow_detail.uuid, lazy=False)

    def update_flow_record(self, flow_detail: models.FlowDetail) -> None:
        """Replace only the flow's own record (state, meta...), keeping its atom links.

        One file replaced atomically under the flow's lock; no atom record is read or
        written (engines call this on every flow state change).

        Raises:
            taskflow.exceptions.NotFound: the flow was never saved.
            TypeError: a value JSON can't hold (raised before anything is written).
        """
        prepared = _serialization.to_jsonable(flow_detail.to_dict())
        self._item(self._flows, flow_detail.uuid, writing=True)
        with (
            _translate(f"Saving flow detail '{flow_detail.uuid}'"),
            self._hold(self._flows, flow_detail.uuid, None) as (item, stored),
        ):
            try:
                order = json.loads(stored.decode(self._encoding)).get(_ORDER)
            except (ValueError, AttributeError):
                order = None
            record = prepared if order is None else {**prepared, _ORDER: order}
            data = _dump(record, self._encoding)
            if data != stored:
                _replace_file(item, data)

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        """Create or merge ``book`` with its flows and atoms, under the book's lock.

        A new book is created first (without flows), then each flow is merged as by
        ``update_flow_details`` and linked, then the book record is replaced; each file
        atomically and durably.

        Returns:
            ``book`` itself when the store holds nothing more for it; else the stored book,
            read back.

        Raises:
            TypeError: a value JSON can't hold (raised before anything is written).
        """
        data = _dump(_serialization.to_jsonable(book.to_dict(marshal_time=True)), self._encoding)
        self._item(self._books, book.uuid, writing=True)
        flows = [(fd, *self._prepare_flow(fd)) for fd in book]
        with _translate(f"Saving logbook '{book.uuid}'"):
            with self._hold(self._books, book.uuid, data) as (item, stored):
                linked = _children(item)
                complete = True
                for fd, prepared, atoms in flows:
                    complete = self._write_flow(fd, prepared, atoms, create=True) and complete
                known = set(linked)
                _add_links(item, _FLOWS, [fd.uuid for fd in book if fd.uuid not in known])
                if data != stored:
                    _replace_file(item, data)
            if complete and known <= {fd.uuid for fd in book}:
                return book
            return self._get_book(book.uuid, lazy=False)

    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete a book with its flows and their atoms, children first.

        Each record disappears atomically; if interrupted, the book is still there (with
        links to what is already gone) and destroying it again finishes the job.

        Raises:
            taskflow.exceptions.NotFound: no such book.
        """
        item = self._item(self._books, book_uuid)
        trash: list[str | None] = []
        with _translate(f"Deleting logbook '{book_uuid}'"):
            with self._hold(self._books, book_uuid, None):
                for flow_uuid in _children(item):
                    flow = os.path.join(self._flows, flow_uuid)
                    try:
                        lock = _acquire(flow)
                    except FileNotFoundError:  # already gone
                        continue
                    try:
                        atoms = _children(flow)
                        trash.extend(_discard(self._atoms, atom_uuid) for atom_uuid in atoms)
                        if atoms:
                            _sync_dir(self._atoms)
                        trash.append(_discard(self._flows, flow_uuid))
                    finally:
                        os.close(lock)
                _sync_dir(self._flows)
                trash.append(_discard(self._books, book_uuid))
                _sync_dir(self._books)
            _remove(trash)
