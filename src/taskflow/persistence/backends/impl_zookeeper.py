"""A persistence backend that keeps log books, flow details and atom details in ZooKeeper.

Theory of operation. Under the configured root path (``/taskflow`` by default) the tree
has the same shape as the memory and directory backends::

    <root>/books/<book uuid>              the book's JSON; one child per flow, named by
                                          the flow's uuid, with no data (a link)
    <root>/flow_details/<flow uuid>       the flow's JSON; one child link per atom
    <root>/atom_details/<atom uuid>       {"atom": <to_dict()>, "type": "TASK_DETAIL"|...}

Values are encoded with :mod:`taskflow._serialization` (tuples stay tuples). Book and flow
records also carry an ``"order"`` list: the uuids of their children in the order they were
added, because ZooKeeper lists children in no particular order. Readers trust the links
for membership and the list only for ordering (records written by upstream TaskFlow have
no list; their children are read back sorted).

Writes:

* ``update_atom_details`` -- the engine's hot path -- is a single ``set`` of the atom's
  znode: the whole record, no read first, so no concurrent writer's change can be lost
  in between and no version check is needed.
* ``save_logbook`` and ``update_flow_details`` read the parent records and child lists in
  one pipelined round trip, then write every record and missing link in ONE transaction,
  children before the links naming them. The parent's ``order`` list is read, extended and
  written back, so that write is a compare-and-set on the version read; a conflicting
  concurrent change (version moved, node created or deleted meanwhile) makes the
  transaction fail as a whole and it is planned again from a fresh read, a bounded number
  of times. A transaction too large for one ZooKeeper request (~1 MiB) is split, in the
  same order, so a link never names a record that does not exist yet; each part is then
  atomic on its own (each record still is).
* ``destroy_logbook`` deletes the book, its links, flows and atoms in one transaction.

Every request waits at most ``timeout`` seconds (the session timeout, 10 by default); a
lost connection, an expired session or a timeout becomes
:class:`~taskflow.exceptions.StorageFailure` -- nothing here retries forever. (kazoo keeps
reconnecting in the background; a write that timed out may still be applied if the
connection comes back, so a StorageFailure means "outcome unknown".)
ZooKeeper writes are logged (and by default fsynced) by a quorum before they are
acknowledged, so a record is durable once the call returns.
"""

from __future__ import annotations

import contextlib
import posixpath
import random
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from taskflow import _serialization
from taskflow import exceptions as exc
from taskflow.persistence import base, models
from taskflow.utils import kazoo_utils

try:
    from kazoo import exceptions as k_exc
except ImportError as _err:  # pragma: no cover - kazoo_utils already checked this
    raise ImportError(
        "ZooKeeper support needs the kazoo package: pip install taskflow[zookeeper]",
        name="kazoo",
    ) from _err

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["MIN_ZK_VERSION", "ZkBackend", "ZkConnection"]

#: The oldest ZooKeeper server this backend works with (it needs transactions).
MIN_ZK_VERSION = (3, 4, 0)

_DEFAULT_TIMEOUT = 10.0
#: Record key holding the uuids of a book's flows / a flow's atoms, in insertion order.
_ORDER = "order"
#: How many times a transaction that conflicted with a concurrent change is tried, with a
#: random pause of up to min(_BACKOFF * 2**attempt, _MAX_BACKOFF) seconds in between.
_ATTEMPTS = 8
_BACKOFF = 0.01
_MAX_BACKOFF = 0.25
#: Budget (bytes) of one transaction; ZooKeeper rejects requests above ~1 MiB by default.
_TXN_BYTES = 512 * 1024
_OP_OVERHEAD = 64
#: Transaction failures caused by a concurrent change (worth planning again).
_CONFLICTS = (
    k_exc.BadVersionError,
    k_exc.NoNodeError,
    k_exc.NodeExistsError,
    k_exc.NotEmptyError,
)
_FALSE_STRINGS = frozenset(("0", "f", "false", "n", "no", "off", ""))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def _normalize_root(path: str) -> str:
    root = posixpath.normpath(path)
    # normpath keeps a leading '//' (POSIX allows it); ZooKeeper paths have one slash.
    return "/" + root.lstrip("/")


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


# -- records ------------------------------------------------------------------------------


def _encode_atom(ad: models.AtomDetail) -> bytes:
    data = ad.to_dict()
    if isinstance(ad, models.RetryDetail):
        # History entries are [value, {atom: failure}] arrays, as upstream stores them;
        # only the values inside use the tuple-preserving encoding.
        data["results"] = [[value, failures] for value, failures in data["results"]]
    record = {"atom": data, "type": models.atom_detail_type(ad)}
    return _serialization.dumps(record).encode("utf-8")


def _encode_flow(fd: models.FlowDetail, order: list[str]) -> bytes:
    record = fd.to_dict()
    record[_ORDER] = order
    return _serialization.dumps(record).encode("utf-8")


def _encode_book(book: models.LogBook, order: list[str]) -> bytes:
    record = book.to_dict(marshal_time=True)
    record[_ORDER] = order
    return _serialization.dumps(record).encode("utf-8")


def _unreadable(path: str, err: Exception) -> exc.StorageFailure:
    return exc.StorageFailure(f"Unreadable record at '{path}': {err!r}")


def _decode_record(path: str, data: bytes) -> dict[str, Any]:
    try:
        record = _serialization.loads(data)
    except ValueError as err:
        raise _unreadable(path, err) from err
    if not isinstance(record, dict):
        raise _unreadable(path, TypeError(f"expected a JSON object, got {type(record)}"))
    return record


def _decode_atom(path: str, data: bytes) -> models.AtomDetail:
    record = _decode_record(path, data)
    try:
        return models.atom_detail_class(record["type"]).from_dict(record["atom"])
    except (KeyError, TypeError, ValueError) as err:
        raise _unreadable(path, err) from err


def _flow_from(path: str, record: dict[str, Any]) -> models.FlowDetail:
    try:
        return models.FlowDetail.from_dict(record)
    except (KeyError, TypeError, ValueError) as err:
        raise _unreadable(path, err) from err


def _book_from(path: str, record: dict[str, Any]) -> models.LogBook:
    try:
        return models.LogBook.from_dict(record, unmarshal_time=True)
    except (KeyError, TypeError, ValueError) as err:
        raise _unreadable(path, err) from err


def _ordered(children: Iterable[str], order: Any) -> list[str]:
    """``children`` in the order a record lists them; unlisted ones last, sorted."""
    present = set(children)
    known = [uuid for uuid in order if uuid in present] if isinstance(order, list) else []
    listed = set(known)
    return known + sorted(present - listed)


class _Node(NamedTuple):
    """A parent record as read: its decoded JSON, data version, children and creation."""

    record: dict[str, Any]
    version: int
    children: list[str]
    czxid: int


class _Op(NamedTuple):
    kind: str  # "create", "set" or "delete"
    path: str
    data: bytes = b""
    version: int = -1


def _pause(attempt: int) -> None:
    # Random, growing pauses spread competing writers apart so that one of them wins.
    time.sleep(random.uniform(0, min(_BACKOFF * 2**attempt, _MAX_BACKOFF)))


def _is_conflict(err: kazoo_utils.KazooTransactionException) -> bool:
    return any(isinstance(failure, _CONFLICTS) for _, failure in err.failures)


class ZkBackend(base.Backend):
    """Stores log books, flow details and atom details in a ZooKeeper tree.

    Args:
        conf: ``path`` -- absolute root of the tree (default ``/taskflow``); ``hosts`` --
            servers (see :func:`taskflow.utils.kazoo_utils.make_client`; when absent, the
            ``hostname`` of a ``zookeeper://host:port`` URI, else ``localhost:2181``);
            ``timeout`` -- session timeout and the longest any request waits, in seconds
            (default 10); ``check_compatible`` -- check the server is ZooKeeper >=
            3.4.0 on first use (default True); and every other
            :func:`~taskflow.utils.kazoo_utils.make_client` key.
        client: a kazoo client to use instead of making one; it is started if needed but
            never stopped by :meth:`close` (its owner does that).

    Raises:
        ValueError: ``path`` is not absolute.
    """

    #: Root of the tree when the configuration has no ``path``.
    DEFAULT_PATH = "/taskflow"

    def __init__(self, conf: Mapping[str, Any] | None, client: Any = None) -> None:
        super().__init__(conf)
        path = self._conf.get("path") or self.DEFAULT_PATH
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("Zookeeper path must be absolute")
        self._path = path
        self._root = _normalize_root(path)
        self._timeout = float(self._conf.get("timeout", _DEFAULT_TIMEOUT))
        if client is None:
            client_conf = dict(self._conf)
            if "hosts" not in client_conf and self._conf.get("hostname"):
                client_conf["hosts"] = self._conf["hostname"]
            client = kazoo_utils.make_client(client_conf)
            self._owned = True
        else:
            self._owned = False
        self._client = client
        self._lock = threading.Lock()
        self._started = False
        self._validated = False

    @property
    def path(self) -> str:
        """The root path of the tree, as configured."""
        return self._path

    def get_connection(self) -> ZkConnection:
        """A connection sharing this backend's client (started and validated on first use).

        Raises:
            taskflow.exceptions.StorageFailure: the servers cannot be reached within
                ``timeout`` seconds.
            taskflow.exceptions.IncompatibleVersion: the server is older than 3.4.0.
        """
        conn = ZkConnection(self, self._client, self._conf)
        if not self._validated:
            conn.validate()
            self._validated = True
        return conn

    def close(self) -> None:
        """Stop and close the client if this backend made it; idempotent."""
        with self._lock:
            self._started = False
            self._validated = False
            if self._owned:
                kazoo_utils.finalize_client(self._client)

    def _start(self) -> None:
        """Connect the client unless this backend already did (bounded by ``timeout``)."""
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            if not self._client.connected:
                try:
                    self._client.start(timeout=self._timeout)
                except self._client.handler.timeout_exception as err:
                    # kazoo stops the client itself, so nothing keeps retrying behind us.
                    hosts = ",".join(f"{h}:{p}" for h, p in getattr(self._client, "hosts", ()))
                    raise exc.StorageFailure(
                        f"Could not connect to ZooKeeper at {hosts or '?'}"
                        f" within {self._timeout:g} seconds"
                    ) from err
            self._started = True


class ZkConnection(base.Connection):
    """A connection to a :class:`ZkBackend` (cheap; connections share the client).

    ``update_flow_details`` and ``update_atom_details`` accept ``ignore_missing=True``,
    which creates a detail that was never saved instead of raising ``NotFound`` (outside
    any book, respectively outside any flow).

    Attributes:
        book_path, flow_path, atom_path: the three directories of the tree.
    """

    def __init__(self, backend: ZkBackend, client: Any, conf: Mapping[str, Any]) -> None:
        self._backend = backend
        self._client = client
        self._conf = conf
        self._timeout = backend._timeout
        self._timeout_error: type[Exception] = client.handler.timeout_exception
        root = backend._root
        self.book_path = _join(root, "books")
        self.flow_path = _join(root, "flow_details")
        self.atom_path = _join(root, "atom_details")
        self._dirs = (self.book_path, self.flow_path, self.atom_path)

    @property
    def backend(self) -> ZkBackend:
        return self._backend

    def close(self) -> None:
        """Nothing to release (the client belongs to the backend)."""

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn kazoo, socket and timeout errors into StorageFailure (the one place)."""
        try:
            yield
        except k_exc.NoNodeError as err:
            raise exc.NotFound("Storage backend node not found") from err
        except kazoo_utils.KazooTransactionException as err:
            raise exc.StorageFailure(f"ZooKeeper transaction failed: {err}") from err
        except k_exc.KazooException as err:
            detail = f": {err}" if str(err) else ""
            raise exc.StorageFailure(
                f"ZooKeeper request failed ({type(err).__name__}{detail})"
            ) from err
        except OSError as err:
            raise exc.StorageFailure(f"ZooKeeper request failed ({err!r})") from err
        except Exception as err:
            if isinstance(err, self._timeout_error):
                raise exc.StorageFailure(
                    f"ZooKeeper did not answer within {self._timeout:g} seconds"
                ) from err
            raise

    def _collect(self, pending: list[Any], ignore: tuple[type[Exception], ...] = ()) -> list[Any]:
        """Wait for pipelined requests (one shared deadline); a missing node gives None."""
        deadline = time.monotonic() + self._timeout
        results: list[Any] = []
        for request in pending:
            try:
                results.append(request.get(timeout=max(deadline - time.monotonic(), 0.0)))
            except (k_exc.NoNodeError, *ignore):
                results.append(None)
        return results

    def _read_nodes(self, paths: list[str]) -> list[_Node | None]:
        """Parent records with their children, in one round trip (None: missing)."""
        client = self._client
        pending: list[Any] = []
        for path in paths:
            pending.append(client.get_async(path))
            pending.append(client.get_children_async(path))
        got = self._collect(pending)
        nodes: list[_Node | None] = []
        for index, path in enumerate(paths):
            node, children = got[2 * index], got[2 * index + 1]
            if node is None or children is None:
                nodes.append(None)
                continue
            data, stat = node
            nodes.append(_Node(_decode_record(path, data), stat.version, children, stat.czxid))
        return nodes

    def _commit(self, ops: list[_Op]) -> None:
        """Apply ``ops`` in one transaction (in order-preserving chunks if too large)."""
        chunk: list[_Op] = []
        size = 0
        for op in ops:
            cost = _OP_OVERHEAD + len(op.path) + len(op.data)
            if chunk and size + cost > _TXN_BYTES:
                self._commit_chunk(chunk)
                chunk, size = [], 0
            chunk.append(op)
            size += cost
        if chunk:
            self._commit_chunk(chunk)

    def _commit_chunk(self, ops: list[_Op]) -> None:
        txn = self._client.transaction()
        for op in ops:
            if op.kind == "create":
                txn.create(op.path, op.data)
            elif op.kind == "set":
                txn.set_data(op.path, op.data, op.version)
            else:
                txn.delete(op.path, op.version)
        kazoo_utils.checked_commit(txn, timeout=self._timeout)

    def _book(self, uuid: str) -> str:
        return f"{self.book_path}/{uuid}"

    def _flow(self, uuid: str) -> str:
        return f"{self.flow_path}/{uuid}"

    def _atom(self, uuid: str) -> str:
        return f"{self.atom_path}/{uuid}"

    # -- structure --------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create the root and its three directories if missing (idempotent)."""
        with self._errors():
            pending = [self._client.create_async(path, b"", makepath=True) for path in self._dirs]
            self._collect(pending, ignore=(k_exc.NodeExistsError,))

    def validate(self) -> None:
        """Connect if needed, check the server version (``check_compatible``) and answer.

        Raises:
            taskflow.exceptions.StorageFailure: the server cannot be reached or used.
            taskflow.exceptions.IncompatibleVersion: the server is older than 3.4.0.
        """
        with self._errors():
            self._backend._start()
            if _as_bool(self._conf.get("check_compatible", True)):
                kazoo_utils.check_compatible(self._client, MIN_ZK_VERSION)
            self._collect([self._client.exists_async(self._backend._root)])

    def clear_all(self) -> None:
        """Delete every book, flow detail and atom detail (the directories stay)."""
        with self._errors():
            for _ in range(_ATTEMPTS):
                self._clear_once()
                listed = self._collect([self._client.get_children_async(top) for top in self._dirs])
                if not any(listed):
                    return
            raise exc.StorageFailure("Could not clear the store: it kept being written to")

    def _clear_once(self) -> None:
        """One pass deleting the children of the three directories (and their links)."""
        client = self._client
        for top in self._dirs:
            names = self._collect([client.get_children_async(top)])[0] or []
            paths = [_join(top, name) for name in names]
            links = self._collect([client.get_children_async(path) for path in paths])
            self._collect(
                [
                    client.delete_async(_join(path, link))
                    for path, found in zip(paths, links, strict=True)
                    for link in found or ()
                ]
            )
            # Not empty: a link was added meanwhile; the caller's next pass gets it.
            self._collect(
                [client.delete_async(path) for path in paths], ignore=(k_exc.NotEmptyError,)
            )

    # -- reads ------------------------------------------------------------------------------

    def _load_atoms(self, uuids: list[str]) -> dict[str, models.AtomDetail]:
        paths = [self._atom(uuid) for uuid in uuids]
        got = self._collect([self._client.get_async(path) for path in paths])
        return {
            uuid: _decode_atom(path, node[0])
            for uuid, path, node in zip(uuids, paths, got, strict=True)
            if node is not None
        }

    def _load_flows(self, uuids: list[str], lazy: bool) -> dict[str, models.FlowDetail]:
        flows: dict[str, models.FlowDetail] = {}
        atom_orders: dict[str, list[str]] = {}
        paths = [self._flow(uuid) for uuid in uuids]
        for uuid, path, node in zip(uuids, paths, self._read_nodes(paths), strict=True):
            if node is not None:
                flows[uuid] = _flow_from(path, node.record)
                atom_orders[uuid] = _ordered(node.children, node.record.get(_ORDER))
        if not lazy:
            atoms = self._load_atoms([a for order in atom_orders.values() for a in order])
            for uuid, fd in flows.items():
                for atom_uuid in atom_orders[uuid]:
                    ad = atoms.get(atom_uuid)
                    # A link whose record is gone was cut by a concurrent delete.
                    if ad is not None:
                        fd.add(ad)
        return flows

    def _load_books(self, uuids: list[str], lazy: bool) -> list[models.LogBook]:
        """The books that exist among ``uuids``, oldest first."""
        found: list[tuple[int, models.LogBook]] = []
        flow_orders: dict[str, list[str]] = {}
        paths = [self._book(uuid) for uuid in uuids]
        for uuid, path, node in zip(uuids, paths, self._read_nodes(paths), strict=True):
            if node is not None:
                found.append((node.czxid, _book_from(path, node.record)))
                flow_orders[uuid] = _ordered(node.children, node.record.get(_ORDER))
        if not lazy:
            flows = self._load_flows([f for order in flow_orders.values() for f in order], False)
            for _, book in found:
                stamp = book.updated_at
                for flow_uuid in flow_orders[book.uuid]:
                    if flow_uuid in flows:
                        book.add(flows[flow_uuid])
                # add() stamps updated_at; the stored stamp is the one to show.
                book.updated_at = stamp
        found.sort(key=lambda pair: pair[0])
        return [book for _, book in found]

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        with self._errors():
            books = self._load_books([book_uuid], lazy)
        if not books:
            raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")
        return books[0]

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        """Every book, oldest first (none before :meth:`upgrade` created the tree)."""
        with self._errors():
            uuids = self._collect([self._client.get_children_async(self.book_path)])[0]
            books = self._load_books(uuids or [], lazy)
        return iter(books)

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        with self._errors():
            node = self._read_nodes([self._book(book_uuid)])[0]
            if node is None:
                raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")
            order = _ordered(node.children, node.record.get(_ORDER))
            flows = self._load_flows(order, lazy)
        return iter([flows[uuid] for uuid in order if uuid in flows])

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> models.FlowDetail:
        with self._errors():
            flows = self._load_flows([flow_uuid], lazy)
        if flow_uuid not in flows:
            raise exc.NotFound(f"No flow details found with uuid '{flow_uuid}'")
        return flows[flow_uuid]

    def get_atom_details(self, atom_uuid: str) -> models.AtomDetail:
        with self._errors():
            atoms = self._load_atoms([atom_uuid])
        if atom_uuid not in atoms:
            raise exc.NotFound(f"No atom details found with uuid '{atom_uuid}'")
        return atoms[atom_uuid]

    def get_atoms_for_flow(self, flow_uuid: str) -> Iterator[models.AtomDetail]:
        return iter(self.get_flow_details(flow_uuid))

    # -- writes -----------------------------------------------------------------------------

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        """Overwrite the atom's record with one ``set`` (durable on return).

        Returns:
            ``atom_detail`` itself: the stored record now equals it.

        Raises:
            TypeError: a value JSON cannot hold (nothing is written).
            taskflow.exceptions.NotFound: the atom was never saved (unless
                ``ignore_missing``, which creates it outside any flow).
        """
        data = _encode_atom(atom_detail)
        path = self._atom(atom_detail.uuid)
        with self._errors():
            try:
                self._client.set_async(path, data).get(timeout=self._timeout)
            except k_exc.NoNodeError:
                if not ignore_missing:
                    raise exc.NotFound(
                        f"No atom details found with uuid '{atom_detail.uuid}'"
                    ) from None
                self._collect(
                    [self._client.create_async(path, data)], ignore=(k_exc.NodeExistsError,)
                )
                # Created concurrently by someone else: ours is the latest word.
                self._client.set_async(path, data).get(timeout=self._timeout)
        return atom_detail

    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        """Write the flow's record and all its atoms' records in one transaction.

        Returns:
            ``flow_detail`` itself when the store holds no other atoms for it, else the
            flow as now stored.

        Raises:
            TypeError: a value JSON cannot hold (nothing is written).
            taskflow.exceptions.NotFound: the flow was never saved (unless
                ``ignore_missing``, which creates it outside any book).
        """
        with self._errors():
            _, (node,) = self._save(None, [flow_detail], create_flows=ignore_missing)
        if node is None or set(node.children) <= {ad.uuid for ad in flow_detail}:
            return flow_detail
        return self.get_flow_details(flow_detail.uuid)

    def update_flow_record(self, flow_detail: models.FlowDetail) -> None:
        """Overwrite only the flow's own record (state, meta...), keeping its atoms' order.

        One versioned ``set`` (re-read and retried if another writer changed the record
        meanwhile); no atom record is read or written.

        Raises:
            TypeError: a value JSON cannot hold (nothing is written).
            taskflow.exceptions.NotFound: the flow was never saved.
        """
        path = self._flow(flow_detail.uuid)
        with self._errors():
            for attempt in range(_ATTEMPTS):
                (node,) = self._read_nodes([path])
                if node is None:
                    raise exc.NotFound(f"No flow details found with uuid '{flow_detail.uuid}'")
                order = _ordered(node.children, node.record.get(_ORDER))
                data = _encode_flow(flow_detail, order)
                try:
                    self._client.set_async(path, data, node.version).get(timeout=self._timeout)
                    return
                except k_exc.BadVersionError:
                    _pause(attempt)
            raise exc.StorageFailure(
                f"Flow record '{flow_detail.uuid}' kept changing under {_ATTEMPTS} attempts"
            )

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        """Create or overwrite the book, its flows and their atoms in one transaction.

        Flows and atoms stored earlier but absent from ``book`` are kept.

        Returns:
            ``book`` itself when the store holds nothing more for it, else the book as
            now stored.

        Raises:
            TypeError: a value JSON cannot hold (nothing is written).
        """
        flows = list(book)
        with self._errors():
            book_node, flow_nodes = self._save(book, flows, create_flows=True)
        complete = book_node is None or set(book_node.children) <= {fd.uuid for fd in flows}
        for fd, node in zip(flows, flow_nodes, strict=True):
            if node is not None and not set(node.children) <= {ad.uuid for ad in fd}:
                complete = False
        return book if complete else self.get_logbook(book.uuid)

    def _save(
        self, book: models.LogBook | None, flows: list[models.FlowDetail], create_flows: bool
    ) -> tuple[_Node | None, list[_Node | None]]:
        """Write ``book`` (if given) and ``flows`` with their atoms; the nodes as read."""
        last: kazoo_utils.KazooTransactionException | None = None
        for attempt in range(_ATTEMPTS):
            paths = [self._flow(fd.uuid) for fd in flows]
            if book is not None:
                paths.append(self._book(book.uuid))
            nodes = self._read_nodes(paths)
            book_node = nodes.pop() if book is not None else None
            if not create_flows:
                for fd, node in zip(flows, nodes, strict=True):
                    if node is None:
                        raise exc.NotFound(f"No flow details found with uuid '{fd.uuid}'")
            # First guess: linked atoms have records (links are written after them) and
            # unlinked ones do not. A wrong guess fails the transaction; then every atom
            # is looked up.
            stored: dict[str, bool] | None = None
            if attempt:
                uuids = [ad.uuid for fd in flows for ad in fd]
                stats = self._collect([self._client.exists_async(self._atom(u)) for u in uuids])
                stored = {u: stat is not None for u, stat in zip(uuids, stats, strict=True)}
            ops = self._flow_ops(flows, nodes, stored)
            if book is not None:
                ops.extend(self._book_ops(book, book_node, flows))
            try:
                self._commit(ops)
            except kazoo_utils.KazooTransactionException as err:
                if not _is_conflict(err):
                    raise
                last = err
                _pause(attempt)
                continue
            return book_node, nodes
        raise exc.StorageFailure(
            f"ZooKeeper transaction failed {_ATTEMPTS} times (concurrent writers, or missing"
            f" nodes: has upgrade() run?): {last}"
        ) from last

    def _flow_ops(
        self,
        flows: list[models.FlowDetail],
        nodes: list[_Node | None],
        stored: dict[str, bool] | None,
    ) -> list[_Op]:
        """Atom records, then flow records, then the new atom links."""
        atom_ops: list[_Op] = []
        flow_ops: list[_Op] = []
        link_ops: list[_Op] = []
        for fd, node in zip(flows, nodes, strict=True):
            flow_path = self._flow(fd.uuid)
            linked = set(node.children) if node is not None else set()
            new_links: list[str] = []
            for ad in fd:
                exists = ad.uuid in linked if stored is None else stored[ad.uuid]
                kind = "set" if exists else "create"
                atom_ops.append(_Op(kind, self._atom(ad.uuid), _encode_atom(ad)))
                if ad.uuid not in linked:
                    new_links.append(ad.uuid)
            if node is None:
                flow_ops.append(_Op("create", flow_path, _encode_flow(fd, new_links)))
            else:
                order = _ordered(node.children, node.record.get(_ORDER)) + new_links
                flow_ops.append(_Op("set", flow_path, _encode_flow(fd, order), node.version))
            link_ops.extend(_Op("create", _join(flow_path, uuid)) for uuid in new_links)
        return atom_ops + flow_ops + link_ops

    def _book_ops(
        self, book: models.LogBook, node: _Node | None, flows: list[models.FlowDetail]
    ) -> list[_Op]:
        """The book record, then its new flow links."""
        path = self._book(book.uuid)
        linked = set(node.children) if node is not None else set()
        new_links = [fd.uuid for fd in flows if fd.uuid not in linked]
        if node is None:
            ops = [_Op("create", path, _encode_book(book, new_links))]
        else:
            order = _ordered(node.children, node.record.get(_ORDER)) + new_links
            ops = [_Op("set", path, _encode_book(book, order), node.version)]
        ops.extend(_Op("create", _join(path, uuid)) for uuid in new_links)
        return ops

    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete the book, its flows and their atoms in one transaction."""
        with self._errors():
            last: kazoo_utils.KazooTransactionException | None = None
            for attempt in range(_ATTEMPTS):
                ops = self._destroy_ops(book_uuid, check_atoms=attempt > 0)
                try:
                    self._commit(ops)
                except kazoo_utils.KazooTransactionException as err:
                    if not _is_conflict(err):
                        raise
                    last = err
                    _pause(attempt)
                    continue
                return
            raise exc.StorageFailure(
                f"Could not destroy logbook '{book_uuid}': it kept changing ({last})"
            ) from last

    def _destroy_ops(self, book_uuid: str, check_atoms: bool) -> list[_Op]:
        book_path = self._book(book_uuid)
        book_node = self._read_nodes([book_path])[0]
        if book_node is None:
            raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")
        flow_uuids = book_node.children
        flow_nodes = self._read_nodes([self._flow(uuid) for uuid in flow_uuids])
        atom_uuids = [a for node in flow_nodes if node is not None for a in node.children]
        present = set(atom_uuids)
        if check_atoms:
            stats = self._collect([self._client.exists_async(self._atom(a)) for a in atom_uuids])
            present = {a for a, stat in zip(atom_uuids, stats, strict=True) if stat is not None}
        # Children before parents; the book goes last so an interrupted (split) delete
        # can be finished by calling this again.
        ops: list[_Op] = []
        for flow_uuid, node in zip(flow_uuids, flow_nodes, strict=True):
            flow_path = self._flow(flow_uuid)
            for atom_uuid in node.children if node is not None else ():
                ops.append(_Op("delete", _join(flow_path, atom_uuid)))
                if atom_uuid in present:
                    ops.append(_Op("delete", self._atom(atom_uuid)))
            ops.append(_Op("delete", _join(book_path, flow_uuid)))
            if node is not None:
                ops.append(_Op("delete", flow_path))
        ops.append(_Op("delete", book_path))
        return ops
