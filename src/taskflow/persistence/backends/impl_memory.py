"""A persistence backend that keeps everything in process memory.

Theory of operation: the backend holds model objects, never serialised records. Books,
flow details and atom details are found by uuid through dicts; a stored book contains its
stored flow details and those contain their stored atom details, exactly as the models
nest.

``deep_copy`` (default True) picks how the store relates to the caller's objects:

* True -- isolation. Writes merge deep copies into private objects; reads hand out deep
  copies. Nothing the caller does afterwards changes what is stored.
* False -- sharing, for speed (the engine's default when no backend is given). The first
  save of a record keeps the very object given, and reads return the stored objects
  themselves. Saving the object that is already stored returns at once: the engine's
  ``update_atom_details`` on every transition costs a few dict lookups. Saving a different
  object with the same uuid merges it (sharing its values).

With sharing, a caller may add atom details to a stored flow detail behind the backend's
back and then save the flow; the atom index is only refreshed lazily (flows marked
*dirty*, rescanned on the next miss), so saving a flow stays O(1) however many atoms it
has.

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
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow.persistence import base, models
from taskflow.types import tree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["Connection", "FakeFilesystem", "FakeInode", "MemoryBackend"]

#: The directories of the memory tree, in the order they are listed.
_TREE_DIRS = ("books", "flow_details", "atom_details")

_FALSE_STRINGS = frozenset(("0", "false", "no", "off", "f", "n", ""))


def _as_bool(value: Any) -> bool:
    # URI query values arrive as strings ("?deep_copy=false").
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def _fresh_atom(ad: models.AtomDetail) -> models.AtomDetail:
    return type(ad)(ad.name, ad.uuid).merge(ad, deep_copy=True)


def _fresh_flow(fd: models.FlowDetail) -> models.FlowDetail:
    return models.FlowDetail(fd.name, fd.uuid).merge(fd, deep_copy=True)


def _fresh_book(book: models.LogBook) -> models.LogBook:
    return models.LogBook(book.name, book.uuid).merge(book, deep_copy=True)


def _matches(stored: models.FlowDetail, given: models.FlowDetail) -> bool:
    """Whether ``given``, just merged into ``stored``, now shows the same record."""
    return stored.name == given.name and len(stored) == len(given)


class _Store:
    """The backend's contents; every method but :meth:`shared_atom` needs the lock held."""

    def __init__(self, deep_copy: bool) -> None:
        self.deep_copy = deep_copy
        self.books: dict[str, models.LogBook] = {}
        self.flows: dict[str, models.FlowDetail] = {}
        # flow uuid -> uuid of the book holding it (None: saved on its own).
        self.flow_book: dict[str, str | None] = {}
        # atom uuid -> uuid of the flow holding it (None: saved on its own, see loose_atoms).
        # A cache: a hit is confirmed with the flow's own find() before being trusted.
        self.atom_flow: dict[str, str | None] = {}
        self.loose_atoms: dict[str, models.AtomDetail] = {}
        # Flows whose atoms may not be in atom_flow yet (shared flows saved again).
        self.dirty: set[str] = set()

    def clear(self) -> None:
        self.books.clear()
        self.flows.clear()
        self.flow_book.clear()
        self.atom_flow.clear()
        self.loose_atoms.clear()
        self.dirty.clear()

    # -- lookups --------------------------------------------------------------------------

    def shared_atom(self, ad: models.AtomDetail) -> bool:
        """Whether ``ad`` itself is the stored record (safe without the lock)."""
        flow_uuid = self.atom_flow.get(ad.uuid)
        if flow_uuid is None:
            return self.loose_atoms.get(ad.uuid) is ad
        fd = self.flows.get(flow_uuid)
        return fd is not None and fd.find(ad.uuid) is ad

    def _indexed_atom(self, atom_uuid: str) -> models.AtomDetail | None:
        if atom_uuid not in self.atom_flow:
            return None
        flow_uuid = self.atom_flow[atom_uuid]
        if flow_uuid is None:
            return self.loose_atoms.get(atom_uuid)
        fd = self.flows.get(flow_uuid)
        return None if fd is None else fd.find(atom_uuid)

    def _reindex(self) -> None:
        for flow_uuid in self.dirty:
            fd = self.flows.get(flow_uuid)
            if fd is None:
                continue
            for ad in fd:
                self.atom_flow[ad.uuid] = flow_uuid
                self.loose_atoms.pop(ad.uuid, None)
        self.dirty.clear()

    def find_atom(self, atom_uuid: str) -> models.AtomDetail | None:
        ad = self._indexed_atom(atom_uuid)
        if ad is None and self.dirty:
            self._reindex()
            ad = self._indexed_atom(atom_uuid)
        return ad

    def book(self, book_uuid: str) -> models.LogBook:
        try:
            return self.books[book_uuid]
        except KeyError:
            raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'") from None

    def flow(self, flow_uuid: str) -> models.FlowDetail:
        try:
            return self.flows[flow_uuid]
        except KeyError:
            raise exc.NotFound(f"No flow details found with uuid '{flow_uuid}'") from None

    def atom(self, atom_uuid: str) -> models.AtomDetail:
        ad = self.find_atom(atom_uuid)
        if ad is None:
            raise exc.NotFound(f"No atom details found with uuid '{atom_uuid}'")
        return ad

    # -- copies handed out ----------------------------------------------------------------

    def out_atom(self, ad: models.AtomDetail) -> models.AtomDetail:
        return _fresh_atom(ad) if self.deep_copy else ad

    def out_flow(self, fd: models.FlowDetail, lazy: bool = False) -> models.FlowDetail:
        if not self.deep_copy:
            return fd.copy(retain_contents=False) if lazy else fd
        clone = _fresh_flow(fd)
        if not lazy:
            for ad in fd:
                clone.add(_fresh_atom(ad))
        return clone

    def out_book(self, book: models.LogBook, lazy: bool = False) -> models.LogBook:
        if not self.deep_copy:
            return book.copy(retain_contents=False) if lazy else book
        clone = _fresh_book(book)
        if not lazy:
            for fd in book:
                clone.add(self.out_flow(fd))
            clone.updated_at = book.updated_at
        return clone

    # -- writes ---------------------------------------------------------------------------

    def save_atom(self, fd: models.FlowDetail, ad: models.AtomDetail) -> None:
        """Create or merge ``ad`` as a child of the stored flow ``fd``."""
        stored = fd.find(ad.uuid)
        if stored is None:
            stored = self.loose_atoms.pop(ad.uuid, None)
            if stored is None:
                stored = _fresh_atom(ad) if self.deep_copy else ad
            elif stored is not ad:
                stored.merge(ad, deep_copy=self.deep_copy)
            fd.add(stored)
            self.atom_flow[ad.uuid] = fd.uuid
        elif stored is not ad:
            stored.merge(ad, deep_copy=self.deep_copy)

    def save_flow(
        self, fd: models.FlowDetail, book_uuid: str | None, create: bool
    ) -> models.FlowDetail:
        """Create (if ``create``) or merge ``fd`` and its atoms; the stored flow."""
        stored = self.flows.get(fd.uuid)
        if stored is None:
            if not create:
                raise exc.NotFound(f"No flow details found with uuid '{fd.uuid}'")
            stored = _fresh_flow(fd) if self.deep_copy else fd
            self.flows[fd.uuid] = stored
        if book_uuid is not None or fd.uuid not in self.flow_book:
            self.flow_book[fd.uuid] = book_uuid
        if stored is fd:
            # Shared: its atoms already are the stored ones; index them on demand.
            self.dirty.add(fd.uuid)
            return stored
        stored.merge(fd, deep_copy=self.deep_copy)
        for ad in fd:
            self.save_atom(stored, ad)
        return stored

    def save_book(self, book: models.LogBook) -> models.LogBook:
        stored = self.books.get(book.uuid)
        if stored is None:
            stored = _fresh_book(book) if self.deep_copy else book
            self.books[book.uuid] = stored
        else:
            stored.merge(book, deep_copy=self.deep_copy)
        for fd in book:
            stored_fd = self.save_flow(fd, book.uuid, create=True)
            if stored.find(fd.uuid) is not stored_fd:
                stored.add(stored_fd)
        # Adding children stamps updated_at; the stored book keeps the caller's stamp.
        stored.updated_at = book.updated_at
        return stored

    def destroy_book(self, book_uuid: str) -> None:
        book = self.book(book_uuid)
        del self.books[book_uuid]
        for fd in book:
            if self.flow_book.get(fd.uuid) != book_uuid:
                continue
            stored = self.flows.pop(fd.uuid, None)
            del self.flow_book[fd.uuid]
            self.dirty.discard(fd.uuid)
            for ad in stored or ():
                if self.atom_flow.get(ad.uuid) == fd.uuid:
                    del self.atom_flow[ad.uuid]

    def all_atoms(self) -> dict[str, models.AtomDetail]:
        """Every stored atom by uuid, in the order they were saved (roughly)."""
        found: dict[str, models.AtomDetail] = {}
        for fd in self.flows.values():
            for ad in fd:
                found.setdefault(ad.uuid, ad)
        for atom_uuid, ad in self.loose_atoms.items():
            found.setdefault(atom_uuid, ad)
        return found


def _tree_paths(base_path: str) -> tuple[str, str, str]:
    """Where books, flow details and atom details sit below ``base_path``."""
    books, flows, atoms = (posixpath.join(base_path, name) for name in _TREE_DIRS)
    return books, flows, atoms


_DEFAULT_TREE_PATHS = _tree_paths("/")


class MemoryBackend(base.Backend):
    """Keeps log books, flow details and atom details in memory (lost with the process).

    Args:
        conf: optional options; ``deep_copy`` (default True) -- isolate stored objects
            from the caller's by copying on every write and read. False shares them (see
            the module docstring). ``path`` (default :attr:`DEFAULT_PATH`) -- where the
            records appear in :attr:`memory`.

    Attributes:
        memory: a read-only :class:`FakeFilesystem` view of the contents.
        lock: the lock guarding the contents (one per backend).
        path: the configured ``path``, as given.

    Raises:
        ValueError: ``path`` is not absolute.
    """

    #: The ``path`` used when the configuration gives none.
    DEFAULT_PATH = "/"

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.lock = threading.RLock()
        self._store = _Store(_as_bool(self._conf.get("deep_copy", True)))
        self.path: str = self._conf.get("path") or self.DEFAULT_PATH
        if self.path == self.DEFAULT_PATH:
            self._base_path = self.DEFAULT_PATH
            self._tree_paths = _DEFAULT_TREE_PATHS
        else:
            self._base_path = FakeFilesystem.normpath(self.path)
            self._tree_paths = _tree_paths(self._base_path)
        self.memory: FakeFilesystem = _BackendView(self)

    def get_connection(self) -> Connection:
        """A connection to this backend (all connections share the same contents)."""
        return Connection(self)

    def close(self) -> None:
        """Nothing to release; the contents stay readable (use ``clear_all`` to drop them)."""


class Connection(base.Connection):
    """A connection to a :class:`MemoryBackend`; every operation is atomic under its lock.

    ``update_flow_details`` and ``update_atom_details`` also accept ``ignore_missing=True``,
    which creates a detail that was never saved instead of raising ``NotFound`` (it is then
    stored on its own, outside any flow or book, until a flow containing it is saved).

    Attributes:
        book_path: where books appear in the backend's ``memory`` tree.
        flow_path: where flow details appear there.
        atom_path: where atom details appear there.
    """

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self._lock = backend.lock
        self._store = backend._store
        self.book_path, self.flow_path, self.atom_path = backend._tree_paths

    @property
    def backend(self) -> MemoryBackend:
        return self._backend

    def close(self) -> None:
        """Nothing to release."""

    def upgrade(self) -> None:
        """Nothing to create."""

    def validate(self) -> None:
        """Memory is always usable."""

    def clear_all(self) -> None:
        with self._lock:
            self._store.clear()

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        with self._lock:
            return self._store.out_book(self._store.save_book(book))

    def destroy_logbook(self, book_uuid: str) -> None:
        with self._lock:
            self._store.destroy_book(book_uuid)

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        with self._lock:
            return self._store.out_book(self._store.book(book_uuid), lazy)

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        with self._lock:
            books = [self._store.out_book(b, lazy) for b in self._store.books.values()]
        return iter(books)

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        with self._lock:
            flows = [self._store.out_flow(fd, lazy) for fd in self._store.book(book_uuid)]
        return iter(flows)

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> models.FlowDetail:
        with self._lock:
            return self._store.out_flow(self._store.flow(flow_uuid), lazy)

    def get_atom_details(self, atom_uuid: str) -> models.AtomDetail:
        with self._lock:
            return self._store.out_atom(self._store.atom(atom_uuid))

    def get_atoms_for_flow(self, flow_uuid: str) -> Iterator[models.AtomDetail]:
        with self._lock:
            atoms = [self._store.out_atom(ad) for ad in self._store.flow(flow_uuid)]
        return iter(atoms)

    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        with self._lock:
            stored = self._store.save_flow(flow_detail, None, create=ignore_missing)
            if self._store.deep_copy and _matches(stored, flow_detail):
                # Now equal to the stored record: no need to copy every atom back out.
                return flow_detail
            return self._store.out_flow(stored)

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        store = self._store
        # Hot path (engine, deep_copy=False): the caller's object is the stored record.
        if not store.deep_copy and store.shared_atom(atom_detail):
            return atom_detail
        with self._lock:
            stored = store.find_atom(atom_detail.uuid)
            if stored is None:
                if not ignore_missing:
                    raise exc.NotFound(f"No atom details found with uuid '{atom_detail.uuid}'")
                stored = _fresh_atom(atom_detail) if store.deep_copy else atom_detail
                store.loose_atoms[atom_detail.uuid] = stored
                store.atom_flow[atom_detail.uuid] = None
            elif stored is not atom_detail:
                stored.merge(atom_detail, deep_copy=store.deep_copy)
            if store.deep_copy and stored.name == atom_detail.name:
                # Equal to the stored record now (merge takes every field but the name).
                return atom_detail
            return store.out_atom(stored)


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
        # Reads build fresh dicts; in sharing mode their contents stay shared.
        self._copier = copylib.deepcopy if self._store.deep_copy else _no_copy

    def _inner(self, path: str) -> str | None:
        """``path`` relative to the backend's base ('/...'), None for a directory above it."""
        parts = _parts(path)
        depth = len(self._base)
        if parts[:depth] == self._base:
            return _path_of(parts[depth:])
        if self._base[: len(parts)] == parts:
            return None
        raise exc.NotFound(f"Path '{path}' not found")

    def _outer(self, inner: str) -> str:
        return _path_of(self._base + _parts(inner))

    def _node(self, inner: str) -> tuple[Any, str | None]:
        """(stored object or None for a directory, link target or None) at an inner path."""
        store = self._store
        parts = _parts(inner)
        if not parts:
            return None, None
        top, rest = parts[0], parts[1:]
        found: Any = None
        if top in _TREE_DIRS and not rest:
            return None, None
        if top == "books":
            found = store.books.get(rest[0])
            if found is not None and len(rest) == 2:
                if found.find(rest[1]) is not None:
                    return None, f"/flow_details/{rest[1]}"
                found = None
        elif top == "flow_details":
            found = store.flows.get(rest[0])
            if found is not None and len(rest) == 2:
                if found.find(rest[1]) is not None:
                    return None, f"/atom_details/{rest[1]}"
                found = None
        elif top == "atom_details" and len(rest) == 1:
            found = store.find_atom(rest[0])
        if found is None or len(rest) > 2:
            raise exc.NotFound(f"Path '{self._outer(inner)}' not found")
        return found, None

    def _child_names(self, path: str) -> list[str]:
        inner = self._inner(path)
        if inner is None:
            return [self._base[len(_parts(path))]]
        store = self._store
        if inner == "/":
            return list(_TREE_DIRS)
        if inner == "/books":
            return list(store.books)
        if inner == "/flow_details":
            return list(store.flows)
        if inner == "/atom_details":
            return list(store.all_atoms())
        node, _ = self._node(inner)
        if isinstance(node, models.LogBook | models.FlowDetail):
            return [child.uuid for child in node]
        return []

    def _link_of(self, path: str) -> str | None:
        inner = self._inner(path)
        if inner is None:
            return None
        _, target = self._node(inner)
        return None if target is None else self._outer(target)

    def _read(self, path: str) -> Any:
        inner = self._inner(path)
        if inner is None:
            return None
        node, target = self._node(inner)
        if target is not None:
            node, _ = self._node(target)
        if isinstance(node, models.LogBook):
            return node.to_dict(marshal_time=True)
        if isinstance(node, models.FlowDetail):
            return node.to_dict()
        if isinstance(node, models.AtomDetail):
            return {"atom": node.to_dict(), "type": models.atom_detail_type(node)}
        return None

    def clear(self) -> None:
        """Drop every stored record (as a connection's ``clear_all`` does)."""
        with self._lock:
            self._store.clear()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "The memory backend's tree is a read-only view: save through a connection"
        )

    ensure_path = __setitem__ = symlink = delete = __delitem__ = _refuse
