"""A persistence backend that keeps everything in process memory.

Theory of operation: this is the path-based connection
(:mod:`taskflow.persistence.backends._path_store`) over a store of live model objects. Each
record is a model object held in a dict by path, a parent's links are an ordered dict of
names beside it, and a transaction is a dict update under the backend's lock (checked
first, so it applies whole or not at all).

``deep_copy`` (default True) picks how the store relates to the caller's objects:

* True -- isolation. Writes merge deep copies into private objects; reads hand out deep
  copies. Nothing the caller does afterwards changes what is stored. Values are held to
  what the serialising backends store (a stand-in for them in tests): a result JSON can
  not hold, NaN, an integer of more than 4,300 digits or a value containing itself raises
  ``UnstorableValue`` before anything is stored, as does a value over ``max_value_bytes``
  bytes of JSON (no limit unless configured).
* False -- sharing, for speed (the engine's default when no backend is given). The first
  save of a record keeps the very object given, and reads return the stored objects
  themselves (lazy reads: shallow copies without children). Saving the object that is
  already stored does nothing, so the engine's ``update_atom_details`` on every transition
  costs a few dict lookups; saving a different object with the same uuid merges it into
  the stored one (sharing its values).

Either way, a detail saved again is merged into the stored one, which keeps its name.

``backend.memory`` is a read-only, path-shaped view of the contents (the same layout as
the directory and ZooKeeper backends): ``/books/<book>`` with links named by flow uuid to
``/flow_details/<flow>``, with links named by atom uuid to ``/atom_details/<atom>`` (all
under the configured ``path``, ``/`` by default). :class:`FakeFilesystem` itself is also
usable on its own, as a writable in-memory tree.
"""

from __future__ import annotations

import copy as copylib
import posixpath
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from taskflow import _config, _serialization
from taskflow import exceptions as exc
from taskflow.persistence import base, models
from taskflow.persistence.backends import _path_store as ps
from taskflow.types import tree

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["Connection", "FakeFilesystem", "FakeInode", "MemoryBackend"]

_Detail = models.LogBook | models.FlowDetail | models.AtomDetail
_D = TypeVar("_D", bound=_Detail)
_P = TypeVar("_P", models.LogBook, models.FlowDetail)


def _fresh(detail: _D) -> _D:
    """A private copy of a detail's own fields (not its children), values deep-copied."""
    blank = type(detail)(detail.name, detail.uuid)
    _merge(blank, detail, deep_copy=True)
    return blank


def _merge(stored: _Detail, given: _Detail, deep_copy: bool) -> None:
    # A path only ever holds one kind of detail, so the two are of one type (mypy can not
    # see it through the union).
    stored.merge(given, deep_copy=deep_copy)  # type: ignore[arg-type]


class _Codec:
    """Details are the memory store's records: in as they are, out as copies when isolating."""

    def __init__(self, deep_copy: bool) -> None:
        self._deep = deep_copy

    def book(self, book: models.LogBook, /) -> _Detail:
        return book

    def flow(self, fd: models.FlowDetail, /) -> _Detail:
        return fd

    def atom(self, ad: models.AtomDetail, /) -> _Detail:
        return ad

    def _out(self, record: _P, lazy: bool) -> _P:
        if self._deep:
            return _fresh(record)
        return record.copy(retain_contents=False) if lazy else record

    def to_book(self, record: _Detail, lazy: bool, /) -> models.LogBook:
        if not isinstance(record, models.LogBook):
            raise TypeError(f"not a log book: {record!r}")
        return self._out(record, lazy)

    def to_flow(self, record: _Detail, lazy: bool, /) -> models.FlowDetail:
        if not isinstance(record, models.FlowDetail):
            raise TypeError(f"not a flow detail: {record!r}")
        return self._out(record, lazy)

    def to_atom(self, record: _Detail, /) -> models.AtomDetail:
        if not isinstance(record, models.AtomDetail):
            raise TypeError(f"not an atom detail: {record!r}")
        return _fresh(record) if self._deep else record


class _Store(ps.RecordStore[_Detail]):
    """Live detail objects by path, under the backend's lock.

    Commits check every write and delete first and then apply them all, so a transaction is
    atomic; nothing is durable beyond the backend object. A write over a stored record
    merges into it (the stored object stays the one readers share).
    """

    def __init__(self, lock: threading.RLock, deep_copy: bool) -> None:
        self.lock = lock
        self.deep_copy = deep_copy
        # Directory path -> record name -> record, in creation order.
        self.records: dict[str, dict[str, _Detail]] = {}
        # Record path -> link name -> the path it links to, in link order.
        self.links: dict[str, dict[str, str]] = {}
        # Flow uuid -> who owns it (see Connection.claim_flow).
        self.owners: dict[str, base.Ownership] = {}

    def read_owner(self, flow_uuid: str) -> base.Ownership | None:
        return self.owners.get(flow_uuid)

    def swap_owner(self, flow_uuid: str, expected_token: int | None, new: base.Ownership) -> bool:
        with self.lock:
            current = self.owners.get(flow_uuid)
            if (None if current is None else current.token) != expected_token:
                return False
            self.owners[flow_uuid] = new
            return True

    def drop_owners(self, flow_uuids: Sequence[str]) -> None:
        with self.lock:
            for flow_uuid in flow_uuids:
                self.owners.pop(flow_uuid, None)

    def check_fence(self, fence: tuple[str, int] | None) -> None:
        """Refuse a write fenced by a token its flow no longer has (hold the lock)."""
        if fence is not None:
            current = self.owners.get(fence[0])
            if current is None or current.token != fence[1]:
                raise exc.OwnershipLost(base.Connection._lost_message(*fence, current))

    def get(self, path: str) -> _Detail | None:
        """The record at ``path`` (hold the lock, unless a momentary answer will do)."""
        directory, _, name = path.rpartition("/")
        return self.records.get(directory, {}).get(name)

    def read(self, paths: Sequence[str], links: bool = False) -> list[ps.Entry[_Detail] | None]:
        with self.lock:
            found: list[ps.Entry[_Detail] | None] = []
            for path in paths:
                record = self.get(path)
                names = list(self.links.get(path, ())) if links else []
                found.append(None if record is None else ps.Entry(record, names))
            return found

    def children(self, paths: Sequence[str]) -> list[list[str] | None]:
        with self.lock:
            return [self.names(path) for path in paths]

    def names(self, path: str) -> list[str] | None:
        """The records of a directory or the links of a record (call with the lock held)."""
        if path in self.records:
            return list(self.records[path])
        if self.get(path) is None:
            return None
        return list(self.links.get(path, ()))

    def commit(self, txn: ps.Transaction[_Detail]) -> dict[str, ps.Stored]:
        with self.lock:
            self.check_fence(txn.fence)
            for op in txn.ops:
                if isinstance(op, ps.Write):
                    if not op.create and self.get(op.path) is None:
                        raise exc.NotFound(f"Path '{op.path}' not found")
                elif op.links is not None:
                    extra = set(self.links.get(op.path, ())) - set(op.links)
                    if extra:
                        raise ps.Conflict(f"'{op.path}' gained links {sorted(extra)}")
            stored: dict[str, ps.Stored] = {}
            for op in txn.ops:
                directory, _, name = op.path.rpartition("/")
                if isinstance(op, ps.Write):
                    stored[op.path] = self._write(self.records.setdefault(directory, {}), name, op)
                elif self.records.get(directory, {}).pop(name, None) is not None:
                    self.links.pop(op.path, None)
            return stored

    def _write(self, records: dict[str, _Detail], name: str, op: ps.Write[_Detail]) -> ps.Stored:
        old = records.get(name)
        if old is None:
            records[name] = _fresh(op.record) if self.deep_copy else op.record
            kept = not self.deep_copy
        elif old is op.record:
            kept = True
        else:
            _merge(old, op.record, self.deep_copy)
            kept = self.deep_copy and old.name == op.record.name  # see Stored.kept
        if op.links is None:
            return ps.Stored(kept, [])
        linked = self.links.setdefault(op.path, {})
        for link in op.links:
            linked.setdefault(link, ps.join(op.into, link))
        return ps.Stored(kept, list(linked))

    def upgrade(self, directories: Sequence[str]) -> None:
        with self.lock:
            for directory in directories:
                self.records.setdefault(directory, {})

    def validate(self, directories: Sequence[str]) -> None:
        """Memory is always usable."""

    def clear(self) -> None:
        """Drop every record and link."""
        with self.lock:
            for records in self.records.values():
                records.clear()
            self.links.clear()
            self.owners.clear()


class MemoryBackend(base.Backend):
    """Keeps log books, flow details and atom details in memory (lost with the process).

    Args:
        conf: optional options; ``deep_copy`` (default True) -- isolate stored objects
            from the caller's by copying on every write and read. False shares them (see
            the module docstring). ``path`` (default :attr:`DEFAULT_PATH`) -- where the
            records appear in :attr:`memory`. ``max_value_bytes`` (default: no limit) --
            the most bytes of JSON one value may take, when isolating.

    Attributes:
        memory: a read-only :class:`FakeFilesystem` view of the contents.
        lock: the lock guarding the contents (one per backend).
        path: the configured ``path``, as given.

    Raises:
        ValueError: ``path`` is not absolute, ``deep_copy`` is not a boolean or
            ``max_value_bytes`` not a positive integer.
    """

    #: The ``path`` used when the configuration gives none.
    DEFAULT_PATH = "/"

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.lock = threading.RLock()
        deep_copy = _config.as_bool(self._conf, "deep_copy", True)
        self._store = _Store(self.lock, deep_copy)
        if deep_copy:
            self._store.limits = _serialization.limits_from_conf(self._conf, None)
        self._codec = _Codec(deep_copy)
        self.path: str = self._conf.get("path") or self.DEFAULT_PATH
        self._base_path = FakeFilesystem.normpath(self.path)
        self.memory: FakeFilesystem = _BackendView(self)

    def get_connection(self) -> Connection:
        """A connection to this backend (all connections share the same contents)."""
        return Connection(self)

    def close(self) -> None:
        """Nothing to release; the contents stay readable (use ``clear_all`` to drop them)."""


class Connection(ps.PathConnection[_Detail, MemoryBackend]):
    """A connection to a :class:`MemoryBackend`; every transaction is atomic under its lock.

    ``update_flow_details`` and ``update_atom_details`` also accept ``ignore_missing=True``,
    which creates a detail that was never saved instead of raising ``NotFound`` (it is then
    stored on its own, outside any flow or book, until a flow containing it is saved).

    Attributes:
        book_path: where books appear in the backend's ``memory`` tree.
        flow_path: where flow details appear there.
        atom_path: where atom details appear there.
    """

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__(backend, backend._store, backend._codec, backend._base_path)
        self._records = backend._store

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        # The engine's hot path when sharing: the caller's object is the stored record, so
        # there is nothing to write. (Unlocked: only the caller could replace its record.)
        if self._records.get(self._atom(atom_detail.uuid)) is atom_detail:
            self._records.check_fence(self._fence)  # nothing to write, but the fence holds
            return atom_detail
        return super().update_atom_details(atom_detail, ignore_missing)


def _parts(path: str) -> list[str]:
    """The names along a normalised path (``'/'`` has none)."""
    return [name for name in path.split("/") if name]


def _path_of(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def _no_copy(value: Any) -> Any:
    return value


class FakeInode(tree.Node):
    """One entry of a :class:`FakeFilesystem`: a directory, a value, or a link.

    ``item`` is the entry's name; :attr:`metadata` holds its absolute ``path``, its
    ``value`` and, for a link, the ``target`` path it reads through.
    """

    def __init__(self, item: str, path: str, value: Any = None) -> None:
        super().__init__(item, path=path, value=value)


class FakeFilesystem:
    """An in-memory tree of absolute paths, each holding a value, with symbolic links.

    Every path is also a directory: setting ``fs['/a/b'] = v`` needs ``/a`` to exist
    (:meth:`ensure_path` makes missing parents). Values are copied on the way in and out
    (deep copies, or shallow ones with ``deep_copy=False``), so callers never share them
    with the tree. A link (:meth:`symlink`) reads as its target's value; it is not
    followed when listing or when walking a longer path through it. All operations are
    atomic under one lock.

    Args:
        deep_copy: copy values deeply (True) or shallowly (False).
    """

    #: The path of the root directory.
    root_path = "/"

    def __init__(self, deep_copy: bool = True) -> None:
        self._lock = threading.RLock()
        self._copier: Callable[[Any], Any] = copylib.deepcopy if deep_copy else copylib.copy
        self._root = FakeInode(self.root_path, self.root_path)
        # Normalised path -> node, for lookups without walking the tree.
        self._nodes: dict[str, FakeInode] = {self.root_path: self._root}

    # -- paths ----------------------------------------------------------------------------

    @classmethod
    def normpath(cls, path: str) -> str:
        """``path`` normalised (``.``/``..``/trailing slashes resolved).

        Raises:
            ValueError: the path is empty or not absolute.
        """
        if not path:
            raise ValueError("This filesystem can only normalize paths that are not empty")
        if not path.startswith(cls.root_path):
            raise ValueError(
                f"This filesystem can only normalize paths that start with /: '{path}' is not valid"
            )
        return posixpath.normpath(path)

    @staticmethod
    def split(p: str) -> tuple[str, str]:
        """``(head, tail)`` of a path, as :func:`posixpath.split` gives them."""
        return posixpath.split(p)

    @staticmethod
    def join(*pieces: str) -> str:
        """The pieces joined with ``/`` as they are (no normalisation)."""
        return "/".join(pieces)

    # -- primitives (overridden by the memory backend's view) -----------------------------

    def _fetch(self, path: str) -> FakeInode:
        node = self._nodes.get(_path_of(_parts(path)))
        if node is None:
            raise exc.NotFound(f"Path '{path}' not found")
        return node

    def _child_names(self, path: str) -> list[str]:
        """Names of the entries directly below the normalised ``path``."""
        return [child.item for child in self._fetch(path)]

    def _link_of(self, path: str) -> str | None:
        """Where the entry at the normalised ``path`` links to (None: not a link)."""
        target: str | None = self._fetch(path).metadata.get("target")
        return target

    def _read(self, path: str) -> Any:
        """The stored value at the normalised ``path``, links followed (not copied)."""
        node = self._fetch(path)
        followed: list[str] = []
        while (target := node.metadata.get("target")) is not None:
            seen = target in followed
            followed.append(target)
            if seen:
                raise ValueError(f"Recursive link following not allowed (loop {followed} detected)")
            node = self._fetch(target)
        return node.metadata["value"]

    # -- reading --------------------------------------------------------------------------

    def __getitem__(self, path: str) -> Any:
        """A copy of the value at ``path`` (a link gives its target's).

        Raises:
            taskflow.exceptions.NotFound: no such path (or a link to a missing one).
            ValueError: a malformed path, or links that loop.
        """
        path = self.normpath(path)
        with self._lock:
            return self._copier(self._read(path))

    def get(self, path: str, default: Any = None) -> Any:
        """The value at ``path``, or ``default`` if there is no such path."""
        try:
            return self[path]
        except exc.NotFound:
            return default

    def ls(self, path: str, absolute: bool = False) -> list[str]:
        """The names (or absolute paths) of the entries directly below ``path``.

        Raises:
            taskflow.exceptions.NotFound: no such path.
        """
        path = self.normpath(path)
        with self._lock:
            names = self._child_names(path)
        if absolute:
            return [posixpath.join(path, name) for name in names]
        return names

    def ls_r(self, path: str, absolute: bool = False) -> list[str]:
        """Every path below ``path``, level by level (each level's entries last first).

        Args:
            path: where to start.
            absolute: give absolute paths instead of paths relative to ``path``.
        """
        path = self.normpath(path)
        found: list[str] = []
        with self._lock:
            level = [(path, "")]
            while level:
                below: list[tuple[str, str]] = []
                for node_path, relative in level:
                    for name in reversed(self._child_names(node_path)):
                        child_rel = f"{relative}/{name}" if relative else name
                        below.append((posixpath.join(node_path, name), child_rel))
                found.extend(p if absolute else rel for p, rel in below)
                level = below
        return found

    def pformat(self) -> str:
        """The whole tree drawn as text, links shown with their targets."""
        lines = [self.root_path]
        with self._lock:
            self._draw(self.root_path, "", lines)
        return "\n".join(lines)

    def _draw(self, path: str, prefix: str, lines: list[str]) -> None:
        children = self._child_names(path)
        for index, name in enumerate(children):
            child = posixpath.join(path, name)
            target = self._link_of(child)
            label = f"{name} (link to {target})" if target else name
            lines.append(f"{prefix}|__{label}")
            last = index == len(children) - 1
            self._draw(child, prefix + ("   " if last else "|  "), lines)

    # -- writing --------------------------------------------------------------------------

    def _make(self, path: str) -> FakeInode:
        """The node at normalised ``path``, created if only it (not its parent) is missing."""
        parts = _parts(path)
        key = _path_of(parts)
        node = self._nodes.get(key)
        if node is None:
            parent = self._fetch(_path_of(parts[:-1]))
            node = FakeInode(parts[-1], key)
            parent.add(node)
            self._nodes[key] = node
        return node

    def ensure_path(self, path: str) -> None:
        """Create ``path`` and any missing directory above it (values None)."""
        parts = _parts(self.normpath(path))
        with self._lock:
            for depth in range(1, len(parts) + 1):
                self._make(_path_of(parts[:depth]))

    def __setitem__(self, path: str, value: Any) -> None:
        """Store a copy of ``value`` at ``path`` (created if its parent exists).

        Raises:
            taskflow.exceptions.NotFound: the parent directory does not exist.
        """
        path = self.normpath(path)
        value = self._copier(value)
        with self._lock:
            self._make(path).metadata["value"] = value

    def symlink(self, src_path: str, dest_path: str) -> None:
        """Make ``dest_path`` a link reading as ``src_path`` (which need not exist yet).

        Raises:
            taskflow.exceptions.NotFound: the parent directory of ``dest_path`` is missing.
        """
        target = self.normpath(src_path)
        dest_path = self.normpath(dest_path)
        with self._lock:
            self._make(dest_path).metadata["target"] = target

    def delete(self, path: str, recursive: bool = False) -> None:
        """Remove ``path``; with ``recursive`` also what is below it.

        Deleting ``/`` recursively empties the tree (the root itself stays).

        Raises:
            taskflow.exceptions.NotFound: no such path.
            ValueError: ``path`` has entries below it and ``recursive`` is false, or it is
                the root and ``recursive`` is false.
        """
        path = self.normpath(path)
        with self._lock:
            node = self._fetch(path)
            if node is self._root:
                if not recursive:
                    raise ValueError(f"Can not delete '{path}'")
                self._clear()
                return
            if len(node) and not recursive:
                raise ValueError(f"Can not delete '{path}', it has {len(node)} children")
            node.disassociate()
            for gone in node.dfs_iter(include_self=True):
                del self._nodes[gone.metadata["path"]]

    def __delitem__(self, path: str) -> None:
        """Remove ``path`` and everything below it."""
        self.delete(path, recursive=True)

    def clear(self) -> None:
        """Remove every entry (the root keeps its value)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        for child in list(self._root):
            child.disassociate()
        self._nodes = {self.root_path: self._root}


class _BackendView(FakeFilesystem):
    """A :class:`MemoryBackend`'s contents seen as a read-only :class:`FakeFilesystem`.

    Values are what the directory backend would store: a book's ``to_dict(
    marshal_time=True)``, a flow's ``to_dict()``, ``{"atom": ad.to_dict(), "type":
    "TASK_DETAIL"|"RETRY_DETAIL"}`` for an atom; directories hold None, and a link reads as
    its target. Everything sits under the backend's :attr:`~MemoryBackend.path`.
    """

    def __init__(self, backend: MemoryBackend) -> None:
        # No super().__init__(): the view has no tree of its own (every primitive reading
        # one is overridden, every write refused), and engines make a backend per run.
        self._lock = backend.lock
        self._store = backend._store
        self._base = _parts(backend._base_path)
        self._dirs = [ps.join(backend._base_path, name) for name in (ps.BOOKS, ps.FLOWS, ps.ATOMS)]
        # Reads build fresh dicts; in sharing mode their contents stay shared.
        self._copier = copylib.deepcopy if self._store.deep_copy else _no_copy

    def _above(self, path: str) -> list[str] | None:
        """The one name under ``path`` if it leads to the base path (None if it does not)."""
        parts = _parts(path)
        if len(parts) < len(self._base) and self._base[: len(parts)] == parts:
            return [self._base[len(parts)]]
        return None

    def _child_names(self, path: str) -> list[str]:
        above = self._above(path)
        if above is not None:
            return above
        if _parts(path) == self._base:
            return [posixpath.basename(directory) for directory in self._dirs]
        if path in self._dirs:
            return list(self._store.records.get(path, ()))
        names = self._store.names(path)
        if names is None:
            if self._link_of(path) is None:
                raise exc.NotFound(f"Path '{path}' not found")
            return []  # a link has no children of its own
        return names

    def _link_of(self, path: str) -> str | None:
        parent, _, name = path.rpartition("/")
        return self._store.links.get(parent, {}).get(name)

    def _read(self, path: str) -> Any:
        if self._above(path) is not None or _parts(path) == self._base or path in self._dirs:
            return None
        detail = self._store.get(self._link_of(path) or path)
        if isinstance(detail, models.LogBook):
            return detail.to_dict(marshal_time=True)
        if isinstance(detail, models.FlowDetail):
            return detail.to_dict()
        if isinstance(detail, models.AtomDetail):
            return {"atom": detail.to_dict(), "type": models.atom_detail_type(detail)}
        raise exc.NotFound(f"Path '{path}' not found")

    def clear(self) -> None:
        """Drop every stored record (as a connection's ``clear_all`` does)."""
        self._store.clear()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "The memory backend's tree is a read-only view: save through a connection"
        )

    ensure_path = __setitem__ = symlink = delete = __delitem__ = _refuse
