"""A persistence backend that keeps log books, flow details and atom details in ZooKeeper.

Theory of operation. This is the path-based connection
(:mod:`taskflow.persistence.backends._path_store`) over a store of znodes. Under the
configured root path (``/taskflow`` by default) the tree has the same shape as the memory
and directory backends::

    <root>/books/<book uuid>              the book's JSON; one child per flow, named by
                                          the flow's uuid, with no data (a link)
    <root>/flow_details/<flow uuid>       the flow's JSON; one child link per atom
    <root>/atom_details/<atom uuid>       {"atom": <to_dict()>, "type": "TASK_DETAIL"|...}
    <root>/owners/<flow uuid>             Ownership.to_dict(): who runs the flow
    <root>/owners/<flow uuid>/token       its token (changed by claims only: see below)

Values are encoded with :mod:`taskflow._serialization` (tuples stay tuples). Book and flow
records also carry an ``"order"`` list: the uuids of their children in the order they were
added, because ZooKeeper lists children in no particular order. Readers trust the links
for membership and the list only for ordering; children no list names (records written by
upstream TaskFlow, the three directories) come back oldest first.

Writes:

* A transaction of one leaf record (``update_atom_details``, the engine's hot path) is a
  single ``set`` of its znode: the whole record, no read first, so no concurrent writer's
  change can be lost in between and no version check is needed. With a fence (below), the
  same ``set`` in a transaction after the fence's check: still one round trip.
* Any other transaction reads the parent records it writes (data, version and children)
  in one pipelined round trip, then writes every record and missing link in ONE ZooKeeper
  transaction, children before the links naming them. A parent's ``order`` list is read,
  extended and written back, so that write is a compare-and-set on the version read; a
  conflicting concurrent change (version moved, node created or deleted meanwhile) makes
  the transaction fail as a whole and it is planned again from a fresh read, a bounded
  number of times. A transaction too large for one ZooKeeper request (~1 MiB) is split, in
  the same order, so a link never names a record that does not exist yet; each part is then
  atomic on its own (each record still is).

Every request waits at most ``timeout`` seconds (the session timeout, 10 by default); a
lost connection, an expired session or a timeout becomes
:class:`~taskflow.exceptions.StorageFailure` -- nothing here retries forever. (kazoo keeps
reconnecting in the background; a write that timed out may still be applied if the
connection comes back, so a StorageFailure means "outcome unknown".)
ZooKeeper writes are logged (and by default fsynced) by a quorum before they are
acknowledged, so a record is durable once the call returns.

Ownership. A swap of a flow's ownership record is a versioned ``set`` of its znode (a
``create`` when there is none yet: of two, one fails with NodeExists). Fencing needs a
version that only a *claim* moves, since renewals rewrite the record: that is the record's
``token`` child, rewritten in the same transaction as the record whenever the token
changes. A fenced write carries ``check(token node, version)`` as the first operation of
its own transaction, so the check and the write are one atomic request; the version comes
from this connection's claim (or, once, from reading the token node back), so fencing adds
no round trip. A check that fails (a new claim, or a dropped record) is looked at again:
a token still ours (its node rewritten with the same value) retries, any other refuses
the write with OwnershipLost.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from taskflow import _config, _serialization
from taskflow import exceptions as exc
from taskflow.persistence import base
from taskflow.persistence.backends import _path_store as ps
from taskflow.utils import kazoo_utils

try:
    from kazoo import exceptions as k_exc
    from kazoo import security as k_security
    from kazoo.protocol import serialization as k_proto
except ImportError as _err:  # pragma: no cover - kazoo_utils already checked this
    raise ImportError(
        "ZooKeeper support needs the kazoo package: pip install taskflow[zookeeper]",
        name="kazoo",
    ) from _err

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = ["MIN_ZK_VERSION", "ZkBackend", "ZkConnection"]

#: The oldest ZooKeeper server this backend works with (it needs transactions).
MIN_ZK_VERSION = (3, 4, 0)

_DEFAULT_TIMEOUT = 10.0
#: ``max_value_bytes`` unless configured: a znode holds at most ~1 MiB (the server's
#: ``jute.maxbuffer``), and an atom's record holds its result, its revert result, a failure
#: and metadata; a larger request loses the connection instead of failing cleanly.
_DEFAULT_MAX_VALUE_BYTES = 256 * 1024
#: Record key holding the uuids of a book's flows / a flow's atoms, in insertion order.
_ORDER = "order"
#: Budget (bytes) of one transaction; ZooKeeper rejects requests above ~1 MiB by default.
_TXN_BYTES = 512 * 1024
_OP_OVERHEAD = 64
#: The child of a flow's ownership record holding its token (see the module docstring).
_TOKEN = "token"
#: Transaction failures caused by a concurrent change (worth planning again).
_CONFLICTS = (
    k_exc.BadVersionError,
    k_exc.NoNodeError,
    k_exc.NodeExistsError,
    k_exc.NotEmptyError,
)


def _normalize_root(path: str) -> str:
    root = posixpath.normpath(path)
    # normpath keeps a leading '//' (POSIX allows it); ZooKeeper paths have one slash.
    return "/" + root.lstrip("/")


class _Node(NamedTuple):
    """A record as read: its bytes, data version and links (in order)."""

    data: bytes
    version: int
    links: list[str]


class _Op(NamedTuple):
    kind: str  # "create", "set", "delete" or "check"
    path: str
    data: bytes = b""
    version: int = -1


#: ``(flow uuid, token)`` a write is fenced by (see Transaction.fence), or None.
_Fence = tuple[str, int] | None


def _token_bytes(token: int) -> bytes:
    """The data of a token node."""
    return str(token).encode()


class _Multi:
    """A ZooKeeper transaction of kazoo requests, for :func:`kazoo_utils.checked_commit`.

    Made of kazoo's request types directly (see ``_Store._request``): the fenced hot path
    then costs little more than a plain ``set``. ``client.transaction()`` would validate,
    normalise and log every path on every write.
    """

    def __init__(self, client: Any, operations: list[Any]) -> None:
        self._client = client
        self.operations = operations

    def commit_async(self) -> Any:
        """Send it (what ``TransactionRequest.commit_async`` does); the async result."""
        result = self._client.handler.async_result()
        self._client._call(k_proto.Transaction(self.operations), result)
        return result


def _failed_with(err: kazoo_utils.KazooTransactionException, kinds: Any) -> bool:
    return any(isinstance(failure, kinds) for _, failure in err.failures)


class ZkBackend(base.Backend):
    """Stores log books, flow details and atom details in a ZooKeeper tree.

    Args:
        conf: ``path`` -- absolute root of the tree (default ``/taskflow``); ``hosts`` --
            servers (see :func:`taskflow.utils.kazoo_utils.make_client`; when absent, the
            ``hostname`` of a ``zookeeper://host:port`` URI, else ``localhost:2181``);
            ``timeout`` -- session timeout and the longest any request waits, in seconds
            (default 10); ``check_compatible`` -- check the server is ZooKeeper >=
            3.4.0 on first use (default True); ``max_value_bytes`` -- the most bytes of
            JSON one stored value (a result, revert result or metadata) may take (default
            256 KiB, so that a record fits in a znode); and every other
            :func:`~taskflow.utils.kazoo_utils.make_client` key.
        client: a kazoo client to use instead of making one; it is started if needed but
            never stopped by :meth:`close` (its owner does that).

    Raises:
        ValueError: ``path`` is not absolute, or ``max_value_bytes`` not a positive integer.
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
        self._timeout = _config.as_float(self._conf, "timeout", _DEFAULT_TIMEOUT)
        self._limits = _serialization.limits_from_conf(self._conf, _DEFAULT_MAX_VALUE_BYTES)
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
        if self._owned:
            # A backend dropped without close() still stops the client it made: the client's
            # threads hold it (not the backend), so it would otherwise run on for good. (Its
            # threads are daemons: at exit there is nothing to stop.)
            weakref.finalize(self, _stop_dropped, client).atexit = False

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


def _stop_dropped(client: Any) -> None:
    """Stop the client of a backend dropped without being closed, from a thread of its own.

    The collector runs this in whatever thread it happens to run, maybe one of the client's
    own, where stopping the client would wait for that very thread.
    """
    with contextlib.suppress(RuntimeError):  # no new threads once the interpreter shuts down
        threading.Thread(
            target=kazoo_utils.finalize_client,
            args=(client,),
            name="taskflow-zookeeper-stop",
            daemon=True,
        ).start()


class _Store(ps.RecordStore[dict[str, Any]]):
    """Records as znodes (see the module docstring), through the backend's kazoo client."""

    def __init__(self, backend: ZkBackend, client: Any, conf: Mapping[str, Any]) -> None:
        self._backend = backend
        self._client = client
        self._conf = conf
        self._timeout = backend._timeout
        self._timeout_error: type[Exception] = client.handler.timeout_exception
        self._json = ps.JsonRecords(_ORDER)
        self.limits = backend._limits
        self._owners = ps.join(backend._root, ps.OWNERS)
        # Flow uuid -> (token, check of its token node's version): our claims' fence checks.
        self._fences: dict[str, tuple[int, Any]] = {}
        # What kazoo adds to the requests it builds: the client's chroot, the default ACL.
        self._chroot = (getattr(client, "chroot", None) or "").rstrip("/")
        self._acl = getattr(client, "default_acl", None) or k_security.OPEN_ACL_UNSAFE

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
            except (k_exc.NoNodeError, *ignore) as err:
                # The request keeps the exception it raised, and raising it chained this
                # frame (holding the requests) to it: a cycle that would keep a dropped
                # backend, and its client's threads, alive until a full collection.
                err.__traceback__ = None
                results.append(None)
        return results

    def _nodes(self, paths: Sequence[str]) -> list[_Node | None]:
        """Nodes with their links in order: one round trip (two if a record lists not all)."""
        client = self._client
        got = self._collect(
            [
                req
                for path in paths
                for req in (client.get_async(path), client.get_children_async(path))
            ]
        )
        nodes: list[_Node | None] = []
        unlisted: list[tuple[list[str], str, Any]] = []
        for index, path in enumerate(paths):
            node, names = got[2 * index], got[2 * index + 1]
            if node is None or names is None:
                nodes.append(None)
                continue
            data, stat = node
            known, rest = ps.ordered(names, self._json.order(data) if data else None)
            nodes.append(_Node(data, stat.version, known))
            unlisted.extend(
                (known, name, client.exists_async(ps.join(path, name))) for name in rest
            )
        if unlisted:
            # Oldest first: a link is created with its zxid, and creations are totally ordered.
            stats = self._collect([request for _, _, request in unlisted])
            found = [
                (stat.czxid, name, links)
                for (links, name, _), stat in zip(unlisted, stats, strict=True)
                if stat is not None
            ]
            for _, name, links in sorted(found, key=lambda item: item[:2]):
                links.append(name)
        return nodes

    def read(
        self, paths: Sequence[str], links: bool = False
    ) -> list[ps.Entry[dict[str, Any]] | None]:
        with self._errors():
            if links:
                found = [None if n is None else (n.data, n.links) for n in self._nodes(paths)]
            else:
                got = self._collect([self._client.get_async(path) for path in paths])
                found = [None if g is None else (g[0], []) for g in got]
        return [
            None if item is None else ps.Entry(self._json.unpack(item[0], path)[0], item[1])
            for path, item in zip(paths, found, strict=True)
        ]

    def children(self, paths: Sequence[str]) -> list[list[str] | None]:
        with self._errors():
            return [None if node is None else node.links for node in self._nodes(paths)]

    def commit(self, txn: ps.Transaction[dict[str, Any]]) -> dict[str, ps.Stored]:
        encoded = [
            self._json.encode(op.record) if isinstance(op, ps.Write) else None for op in txn.ops
        ]
        last: kazoo_utils.KazooTransactionException | None = None
        with self._errors():
            leaf = txn.ops[0] if len(txn.ops) == 1 else None
            if isinstance(leaf, ps.Write) and leaf.links is None:
                self._set_leaf(leaf, self._json.pack(encoded[0]), txn.fence)
                return {leaf.path: ps.Stored(True, [])}
            for attempt in range(ps.ATTEMPTS):
                ops, stored = self._plan(txn, encoded, checked=attempt > 0)
                try:
                    self._commit(ops, txn.fence)
                except kazoo_utils.KazooTransactionException as err:
                    if _failed_with(err, k_exc.NotEmptyError):
                        raise ps.Conflict(str(err)) from err  # the caller's plan is stale
                    if not _failed_with(err, _CONFLICTS):
                        raise
                    last = err
                    ps.pause(attempt)
                    continue
                return stored
        raise exc.StorageFailure(
            f"ZooKeeper transaction failed {ps.ATTEMPTS} times (concurrent writers, or missing"
            f" nodes: has upgrade() run?): {last}"
        ) from last

    def _set_leaf(self, op: ps.Write[dict[str, Any]], data: bytes, fence: _Fence) -> None:
        try:
            self._write_leaf("set", op.path, data, fence)
        except k_exc.NoNodeError:
            if not op.create:
                raise exc.NotFound(f"Node not found: {op.path}") from None
            try:
                self._write_leaf("create", op.path, data, fence)
            except k_exc.NodeExistsError:  # created concurrently by someone else
                self._write_leaf("set", op.path, data, fence)  # ours is the latest

    def _write_leaf(self, kind: str, path: str, data: bytes, fence: _Fence) -> None:
        """One ``set`` or ``create`` request; with a fence, a transaction checking it first.

        Raises:
            kazoo.exceptions.KazooException: the write's own error (as without a fence).
            taskflow.exceptions.OwnershipLost: the fence no longer holds.
        """
        if fence is None:
            write = self._client.set_async if kind == "set" else self._client.create_async
            write(path, data).get(timeout=self._timeout)
            return
        try:
            self._send([_Op(kind, path, data)], fence)
        except kazoo_utils.KazooTransactionException as err:
            raise err.failures[-1][1] from None  # the write is the last operation

    def _plan(
        self, txn: ps.Transaction[dict[str, Any]], encoded: list[Any], checked: bool
    ) -> tuple[list[_Op], dict[str, ps.Stored]]:
        """The znode operations of ``txn`` (records, then new links) and what they leave.

        Unless ``checked``, guesses which leaves exist: those linked from a parent read
        (links are written after the records they name); deleted nodes are all assumed to
        exist. A wrong guess fails the transaction; then (``checked``) every one is looked up.
        """
        parents = [op for op in txn.ops if isinstance(op, ps.Write) and op.links is not None]
        nodes = self._parent_nodes(parents)
        if checked:
            exists: set[str] | None = self._existing(txn)
        else:
            exists = None
        known = exists if exists is not None else self._linked(parents, nodes)
        records: list[_Op] = []
        links: list[_Op] = []
        stored: dict[str, ps.Stored] = {}
        deleted: set[str] = set()
        for op, data in zip(txn.ops, encoded, strict=True):
            if isinstance(op, ps.Delete):
                records.extend(self._delete_ops(op, deleted, exists))
            elif op.links is None:
                records.append(self._leaf_op(op, data, known, checked))
                stored[op.path] = ps.Stored(True, [])
            else:
                record, new_links, order = self._parent_ops(op, data, nodes[op.path])
                records.append(record)
                links.extend(new_links)
                stored[op.path] = ps.Stored(True, order)
        return records + links, stored

    def _parent_nodes(self, parents: list[ps.Write[dict[str, Any]]]) -> dict[str, _Node | None]:
        """The stored nodes of the parent records written (NotFound if one must exist)."""
        paths = [op.path for op in parents]
        nodes = dict(zip(paths, self._nodes(paths), strict=True))
        for parent in parents:
            if nodes[parent.path] is None and not parent.create:
                raise exc.NotFound(f"Node not found: {parent.path}")
        return nodes

    def _existing(self, txn: ps.Transaction[dict[str, Any]]) -> set[str]:
        """Which of the leaves written and nodes deleted (links included) exist, looked up."""
        looked = [op.path for op in txn.ops if not isinstance(op, ps.Write) or op.links is None]
        looked += [
            ps.join(op.path, name)
            for op in txn.ops
            if isinstance(op, ps.Delete)
            for name in op.links or ()
        ]
        stats = self._collect([self._client.exists_async(path) for path in looked])
        return {path for path, stat in zip(looked, stats, strict=True) if stat is not None}

    @staticmethod
    def _linked(
        parents: list[ps.Write[dict[str, Any]]], nodes: dict[str, _Node | None]
    ) -> set[str]:
        """The leaves the parents read link to: the guess of which leaves exist."""
        return {
            ps.join(op.into, name)
            for op in parents
            if (node := nodes[op.path])
            for name in node.links
        }

    @staticmethod
    def _delete_ops(op: ps.Delete, deleted: set[str], exists: set[str] | None) -> list[_Op]:
        """Delete a node's links, then the node (each path once; only existing ones if known)."""
        ops = []
        for path in (*(ps.join(op.path, n) for n in op.links or ()), op.path):
            if path not in deleted and (exists is None or path in exists):
                ops.append(_Op("delete", path))
                deleted.add(path)
        return ops

    def _leaf_op(
        self, op: ps.Write[dict[str, Any]], data: Any, exists: set[str], checked: bool
    ) -> _Op:
        """Write a leaf record: set when it exists (or must), else create."""
        if checked and not op.create and op.path not in exists:
            raise exc.NotFound(f"Node not found: {op.path}")
        kind = "set" if op.path in exists or not op.create else "create"
        return _Op(kind, op.path, self._json.pack(data))

    def _parent_ops(
        self, op: ps.Write[dict[str, Any]], data: Any, node: _Node | None
    ) -> tuple[_Op, list[_Op], list[str]]:
        """Write a parent record (versioned) and create its new links; the links' order."""
        linked = node.links if node is not None else []
        known = set(linked)
        added = [name for name in dict.fromkeys(op.links or ()) if name not in known]
        order = linked + added
        record = self._json.pack(data, order)
        if node is None:
            write = _Op("create", op.path, record)
        else:
            write = _Op("set", op.path, record, node.version)
        return write, [_Op("create", ps.join(op.path, name)) for name in added], order

    def _commit(self, ops: list[_Op], fence: _Fence = None) -> None:
        """Apply ``ops`` in one transaction (in order-preserving chunks if too large, each
        checking the fence)."""
        chunk: list[_Op] = []
        size = 0
        for op in ops:
            cost = _OP_OVERHEAD + len(op.path) + len(op.data)
            if chunk and size + cost > _TXN_BYTES:
                self._send(chunk, fence)
                chunk, size = [], 0
            chunk.append(op)
            size += cost
        if chunk:
            self._send(chunk, fence)

    def _send(self, ops: list[_Op], fence: _Fence = None) -> list[Any]:
        """Apply ``ops`` in one ZooKeeper transaction, first checking ``fence`` if given.

        Returns:
            The results of ``ops`` (paths created, stats of nodes set...).

        Raises:
            kazoo_utils.KazooTransactionException: one of ``ops`` failed (nothing applied).
            taskflow.exceptions.OwnershipLost: the fence no longer holds (nothing applied).
        """
        flow = "" if fence is None else fence[0]
        requests = [self._request(op) for op in ops]
        for _ in range(ps.ATTEMPTS):
            check = None if fence is None else self._fence_check(fence)
            txn = _Multi(self._client, requests if check is None else [check, *requests])
            try:
                results = kazoo_utils.checked_commit(txn, timeout=self._timeout)
            except kazoo_utils.KazooTransactionException as err:
                if check is None or not any(
                    op is txn.operations[0]
                    and isinstance(failure, (k_exc.BadVersionError, k_exc.NoNodeError))
                    for op, failure in err.failures
                ):
                    raise
                self._fences.pop(flow, None)  # moved since: read it again
                continue
            return results if check is None else results[1:]
        raise exc.StorageFailure(f"The ownership token of flow detail '{flow}' kept changing")

    def _request(self, op: _Op) -> Any:
        """The kazoo request of ``op``."""
        path = self._chroot + op.path
        if op.kind == "create":
            return k_proto.Create(path, op.data, self._acl, 0)
        if op.kind == "set":
            return k_proto.SetData(path, op.data, op.version)
        if op.kind == "check":
            return k_proto.CheckVersion(path, op.version)
        return k_proto.Delete(path, op.version)

    # -- ownership ----------------------------------------------------------------------------

    def _owner(self, flow_uuid: str) -> str:
        return ps.join(self._owners, flow_uuid)

    def _fence_check(self, fence: tuple[str, int]) -> Any:
        """The check that ``fence``'s token is its flow's (reading it if not known yet).

        Raises:
            taskflow.exceptions.OwnershipLost: it is not.
        """
        flow_uuid, token = fence
        known = self._fences.get(flow_uuid)
        if known is not None and known[0] == token:
            return known[1]
        path = ps.join(self._owner(flow_uuid), _TOKEN)
        got = self._collect([self._client.get_async(path)])[0]
        if got is None or got[0] != _token_bytes(token):
            lost = base.Connection._lost_message(flow_uuid, token, self.read_owner(flow_uuid))
            raise exc.OwnershipLost(lost)
        return self._remember(flow_uuid, token, got[1].version)

    def _remember(self, flow_uuid: str, token: int, version: int) -> Any:
        """Note that ``flow_uuid``'s token node holds ``token`` at ``version``; its check."""
        path = ps.join(self._owner(flow_uuid), _TOKEN)
        check = self._request(_Op("check", path, version=version))
        self._fences[flow_uuid] = (token, check)
        return check

    def read_owner(self, flow_uuid: str) -> base.Ownership | None:
        path = self._owner(flow_uuid)
        with self._errors():
            got = self._collect([self._client.get_async(path)])[0]
        return None if got is None else ps.unpack_owner(got[0], path)

    def swap_owner(self, flow_uuid: str, expected_token: int | None, new: base.Ownership) -> bool:
        """A create of the record and its token node (expected None), else a versioned set
        of the record (and of its token node if the token changes), in one transaction."""
        path = self._owner(flow_uuid)
        token_path = ps.join(path, _TOKEN)
        data = ps.pack_owner(new)
        with self._errors():
            # ...and what our transaction fails with when another swap (or a drop) came first.
            lost: tuple[type[Exception], ...]
            if expected_token is None:
                ops = [
                    _Op("create", path, data),
                    _Op("create", token_path, _token_bytes(new.token)),
                ]
                lost = (k_exc.NodeExistsError,)
            else:
                got = self._collect([self._client.get_async(path)])[0]
                if got is None or ps.unpack_owner(got[0], path).token != expected_token:
                    return False
                ops = [_Op("set", path, data, got[1].version)]
                if new.token != expected_token:
                    ops.append(_Op("set", token_path, _token_bytes(new.token)))
                lost = (k_exc.BadVersionError, k_exc.NoNodeError)
            made = False
            while True:
                try:
                    results = self._send(ops)
                    break
                except kazoo_utils.KazooTransactionException as err:
                    if _failed_with(err, lost):
                        return False  # somebody else came first
                    if made or not _failed_with(err, k_exc.NoNodeError):
                        raise
                # A tree from before flows had owners: make their directory, then again.
                self.upgrade([self._owners])
                made = True
            if len(ops) == 2:  # a new token: what our fenced writes will check
                version = 0 if ops[1].kind == "create" else results[1].version
                self._remember(flow_uuid, new.token, version)
            return True

    def drop_owners(self, flow_uuids: Sequence[str]) -> None:
        """Delete the records (with their token nodes) of those flows that have one."""
        with self._errors():
            present = self._collect([self._client.get_children_async(self._owners)])[0] or []
            pending = []
            for flow_uuid in set(flow_uuids).intersection(present):
                self._fences.pop(flow_uuid, None)
                path = self._owner(flow_uuid)
                ops = [_Op("delete", ps.join(path, _TOKEN)), _Op("delete", path)]
                requests = [self._request(op) for op in ops]
                pending.append(_Multi(self._client, requests).commit_async())
            self._collect(pending)  # failed ones (dropped meanwhile) come back as results

    def upgrade(self, directories: Sequence[str]) -> None:
        """Create the root and its directories if missing (idempotent)."""
        with self._errors():
            pending = [self._client.create_async(path, b"", makepath=True) for path in directories]
            self._collect(pending, ignore=(k_exc.NodeExistsError,))

    def validate(self, directories: Sequence[str]) -> None:
        """Connect if needed, check the server version (``check_compatible``) and answer.

        Raises:
            taskflow.exceptions.StorageFailure: the server cannot be reached or used.
            taskflow.exceptions.IncompatibleVersion: the server is older than 3.4.0.
        """
        with self._errors():
            self._backend._start()
            if _config.as_bool(self._conf, "check_compatible", True):
                kazoo_utils.check_compatible(self._client, MIN_ZK_VERSION)
            self._collect([self._client.exists_async(self._backend._root)])


class ZkConnection(ps.PathConnection[dict[str, Any], ZkBackend]):
    """A connection to a :class:`ZkBackend` (cheap; connections share the client).

    ``update_flow_details`` and ``update_atom_details`` accept ``ignore_missing=True``,
    which creates a detail that was never saved instead of raising ``NotFound`` (outside
    any book, respectively outside any flow).

    Attributes:
        book_path, flow_path, atom_path: the three directories of the tree.
    """

    def __init__(self, backend: ZkBackend, client: Any, conf: Mapping[str, Any]) -> None:
        super().__init__(backend, _Store(backend, client, conf), ps.JSON, backend._root)
