"""The jobboard store on ZooKeeper (kazoo), in upstream TaskFlow's on-board layout.

Theory of operation
-------------------
The tree is upstream TaskFlow 6.5's, so that upstream's conductors and ours can share a
board during a migration (each reads what the other writes)::

    <path>                          the jobs directory (default /taskflow/jobs)
    <path>/jobNNNNNNNNNN            a job: persistent *sequential* znode holding the posting
                                    {"uuid", "name", "priority", "details"[, "book"]}
    <path>/jobNNNNNNNNNN.lock       its claim: *ephemeral* znode {"owner": who}
    <parent>/.trash/jobNNNNNNNNNN   a trashed job: the posting, moved
    <parent>/.entities/<kind>/<n>   ephemeral {"kind", "name", "metadata"}

``<parent>`` is the parent of ``<path>``. A job's ``created_on`` is its znode's creation
time (the server's clock) and its sequence the znode's number, assigned by the server: the
"oldest first" order needs no clock agreement. Posting is one ``create`` of the whole
record, so a crash leaves no job or a whole one.

What we add, as extra JSON keys (upstream 6.5 ignores them, and tolerates the data version
moving under its claims; both checked by ``tests/jobs/test_zookeeper_interop.py``):

* ``"claims"`` in the job's record: how many claims *this* implementation made on the job.
  A claim is one ZooKeeper transaction: a compare-and-set of the record (data version)
  with ``claims + 1``, and the creation of the lock with ``{"owner", "token": claims + 1}``.
  Two claimants cannot both succeed (the lock exists, or the version moved), and the new
  count is the claim's **fencing token**: it only increases for a job, starts at 1 and
  stays far below 2**31 (what the persistence layer's flow ownership accepts). The lock's
  creation zxid would also only increase, but it is a 64-bit number (epoch << 32 | counter)
  that no longer fits the persistence layer's tokens, and it is unknown until the lock
  exists; the counter is exact. ``attempts`` (claims that ended without consume) is
  ``claims`` minus the claim that still holds the lock, if it is ours.
* ``"reason"`` and ``"attempts"`` in a trashed record.

Claims lapse with the holder's *session*: the lock is ephemeral, so ZooKeeper deletes it
when the holder closes its session or stops talking to the server (killed, paused by
SIGSTOP, partitioned) for the session timeout. The timeout is the ``timeout`` key, or
the board's ``lease`` when there is none (3 s by default); the server rounds it into its
own bounds (by default at least 2 ticks, 4 s, and expiries happen on tick boundaries), so
a dead holder's job is claimable again within the negotiated timeout plus a tick. A
holder that comes back after its session expired finds its lock gone or someone else's
(another token): its renewals and releases are refused. The board's heartbeat ``renew``
only checks that the lock is still this session's, with this token.

Waiting (:meth:`ZookeeperStore.wait_changed`): a children watch on ``<path>`` (kazoo's
``ChildrenWatch``, re-armed on every event and after reconnections). Every change a waiter
cares about creates or deletes a child there: a post, a claim (lock created), a release
or a lapse (lock deleted), a consume or trash (job deleted). An idle waiter wakes within
one server round trip.

Reading: postings never change except for ``claims``, so decoded records are cached per
znode, each read setting a data watch that drops the entry when the znode changes or is
deleted (and the whole cache is dropped when the connection is suspended or the session
lost, since watches may have been missed). A listing then costs one ``get_children``
plus reads of the locks present and of records new or changed since the last listing.
Records that cannot be decoded (garbage bytes, wrong JSON, missing keys) are skipped with
a warning naming the znode, once per version of the znode. Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import posixpath
import re
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from taskflow import _serialization
from taskflow import exceptions as exc
from taskflow._config import as_bool, as_float
from taskflow._jobs.board import lease_from_conf
from taskflow._jobs.store import BookRef, Listing, Outcome, Posting, TrashEntry
from taskflow.jobs.base import JobPriority
from taskflow.utils import kazoo_utils

try:
    from kazoo import exceptions as k_exc
    from kazoo.client import KazooState
    from kazoo.recipe.watchers import ChildrenWatch
except ImportError as _err:  # pragma: no cover - kazoo_utils already checked this
    raise ImportError(
        "ZooKeeper jobboards need the kazoo package: pip install taskflow[zookeeper]",
        name="kazoo",
    ) from _err

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["DEFAULT_PATH", "LOCK_SUFFIX", "MIN_ZK_VERSION", "ZookeeperStore"]

LOG = logging.getLogger("taskflow.jobs")

#: Where jobs live when the configuration has no ``path``.
DEFAULT_PATH = "/taskflow/jobs"
#: The oldest ZooKeeper server the board works with (it needs transactions).
MIN_ZK_VERSION = (3, 4, 0)
#: A job's znode name prefix (the server appends 10 digits) and its lock's suffix.
JOB_PREFIX = "job"
LOCK_SUFFIX = ".lock"
TRASH_DIR = ".trash"
ENTITY_DIR = ".entities"
#: A znode holds at most ~1 MiB (the server's ``jute.maxbuffer``); a larger request would
#: cost the connection rather than fail cleanly, so postings are checked first.
MAX_POSTING_BYTES = 1024 * 1024 - 4096
#: Extra keys of ours in a job's / trashed job's record (see the module docstring).
CLAIMS_KEY = "claims"
REASON_KEY = "reason"
ATTEMPTS_KEY = "attempts"

_JOB_NAME = re.compile(r"^job(-?\d+)$")
_PAST = {Outcome.CONSUME: "consumed", Outcome.ABANDON: "abandoned", Outcome.TRASH: "trashed"}
_PRIORITIES = {p.value for p in JobPriority}
#: Times a compare-and-set is tried again after a concurrent change before giving up.
_CAS_TRIES = 20


class _Record(NamedTuple):
    """A job's record as last read (``posting`` None: malformed, skipped)."""

    document: dict[str, Any] | None
    posting: Posting | None
    claims: int
    version: int
    mtime: datetime


def _time(stat: Any, field: str = "ctime") -> datetime:
    return datetime.fromtimestamp(getattr(stat, field) / 1000.0, UTC)


def _sequence(name: str) -> int | None:
    match = _JOB_NAME.match(name)
    return None if match is None else int(match.group(1))


def _claims(document: dict[str, Any]) -> int:
    claims = document.get(CLAIMS_KEY, 0)
    if not isinstance(claims, int) or isinstance(claims, bool) or claims < 0:
        raise ValueError(f"{CLAIMS_KEY!r} is not a non-negative integer: {claims!r}")
    return claims


def _check_document(document: Any) -> dict[str, Any]:
    """``document`` if it is a posting as upstream writes it, else ValueError saying why."""
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, not {type(document).__name__}")
    uuid = document.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise ValueError("'uuid' is missing or not a non-empty string")
    if not isinstance(document.get("name"), str):
        raise ValueError("'name' is missing or not a string")
    if document.get("priority") not in _PRIORITIES:
        raise ValueError(f"'priority' is not one of {sorted(_PRIORITIES)}")
    book = document.get("book")
    if book is not None and not (
        isinstance(book, dict)
        and isinstance(book.get("name"), str)
        and isinstance(book.get("uuid"), str)
    ):
        raise ValueError("'book' is not null nor {'name': str, 'uuid': str}")
    _claims(document)
    return document


def _decode(raw: bytes, stat: Any, where: str, sequence: int) -> _Record:
    """The record of a job znode; a malformed one is logged (naming ``where``) and kept
    with ``posting`` None so that it is skipped silently until it changes."""
    try:
        document = _check_document(json.loads(raw))
        book = document.get("book")
        posting = Posting(
            uuid=document["uuid"],
            name=document["name"],
            priority=JobPriority(document["priority"]),
            details=_serialization.from_jsonable(document.get("details", {})),
            book=None if book is None else BookRef(book["name"], book["uuid"]),
            created_on=_time(stat),
            sequence=sequence,
        )
        return _Record(document, posting, _claims(document), stat.version, _time(stat, "mtime"))
    except Exception as err:  # any malformation: a reader must never crash on one record
        LOG.warning("Skipping malformed job record %s: %s", where, str(err) or type(err).__name__)
        return _Record(None, None, 0, stat.version, _time(stat, "mtime"))


def _lock_document(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(", ", ": ")).encode()


def _parent(path: str) -> str:
    return posixpath.dirname(path) or "/"


def _join(*parts: str) -> str:
    return posixpath.join(*parts)


def _normalize(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"'path' must be an absolute ZooKeeper path, not {path!r}")
    normalized = "/" + posixpath.normpath(path).lstrip("/")
    if normalized == "/":
        raise ValueError("'path' must not be the root '/' (the trash goes beside it)")
    return normalized


class ZookeeperStore:
    """A :class:`~taskflow._jobs.store.BoardStore` on a ZooKeeper tree (module docstring).

    Args:
        conf: ``path``, ``hosts`` (or the ``hostname`` of a ``zookeeper://`` URI),
            ``timeout`` (session timeout, default the ``lease``), ``handler``,
            ``check_compatible`` and the other keys of
            :func:`taskflow.utils.kazoo_utils.make_client`; checked here.
        client: a kazoo client to use (started if needed, never stopped by ``close``).

    Raises:
        ValueError, TypeError: a bad configuration value (the key is named).
    """

    def __init__(self, conf: Mapping[str, Any], client: Any = None) -> None:
        self.path = _normalize(conf.get("path") or DEFAULT_PATH)
        self.trash_path = _join(_parent(self.path), TRASH_DIR)
        self.entity_path = _join(_parent(self.path), ENTITY_DIR)
        lease = lease_from_conf(conf)
        #: Requested session timeout: a dead holder's claims lapse after it (see above).
        self.session_timeout = as_float(conf, "timeout", lease)
        if not self.session_timeout > 0:
            raise ValueError(f"'timeout' must be a positive number, not {conf['timeout']!r}")
        self._check_compatible = as_bool(conf, "check_compatible", True)
        client_conf = dict(conf)
        if "hosts" not in client_conf and conf.get("hostname"):
            client_conf["hosts"] = conf["hostname"]
        client_conf["timeout"] = self.session_timeout
        self._client_conf = client_conf
        kazoo_utils.make_client(client_conf)  # a bad key fails now, before any connect
        self._given = client
        self._client: Any = None
        #: Longest wait for one request: never forever, whatever the connection does.
        self._request_timeout = max(self.session_timeout, 5.0)
        self._lock = threading.Lock()
        # Cache of job records by znode name, and job uuid -> znode name; see the module
        # docstring. ``_fired[name]`` counts data-watch events per name, so that a read
        # raced by a change is not cached (its watch event may already have been consumed).
        self._records: dict[str, _Record] = {}
        self._names: dict[str, str] = {}
        self._fired: dict[str, int] = {}
        # Children of the jobs path that are neither jobs nor locks (warned about once).
        self._unknown: set[str] = set()
        self._changed = threading.Event()
        self._children: frozenset[str] | None = None
        self._watching = False

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        hosts = self._client_conf.get("hosts", "localhost:2181")
        return f"{hosts}{self.path}"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """kazoo, socket and timeout errors -> JobFailure naming the operation (the one place)."""
        try:
            yield
        except (exc.NotFound, exc.JobFailure, exc.IncompatibleVersion):
            raise
        except (k_exc.KazooException, OSError) as err:
            detail = f": {err}" if str(err) else ""
            raise exc.JobFailure(
                f"ZooKeeper jobboard at {self.where} could not {what}"
                f" ({type(err).__name__}{detail})"
            ) from err
        except Exception as err:
            client = self._client
            if client is not None and isinstance(err, client.handler.timeout_exception):
                raise exc.JobFailure(
                    f"ZooKeeper jobboard at {self.where} could not {what}: no answer within"
                    f" {self._request_timeout:g} seconds"
                ) from err
            raise

    def connect(self, timeout: float) -> None:
        client = self._given
        if client is None:
            client = kazoo_utils.make_client(self._client_conf)
        self._client = client
        try:
            if not client.connected:
                try:
                    client.start(timeout=timeout)
                except client.handler.timeout_exception as err:
                    # kazoo stops the client itself: nothing keeps retrying behind us.
                    raise exc.JobFailure(
                        f"Could not connect to ZooKeeper at"
                        f" {self._client_conf.get('hosts', 'localhost:2181')}"
                        f" within {timeout:g} seconds"
                    ) from err
            with self._errors("connect"):
                if self._check_compatible:
                    kazoo_utils.check_compatible(client, MIN_ZK_VERSION)
                client.ensure_path(self.path)
                client.ensure_path(self.trash_path)
            with self._lock:
                self._records.clear()
                self._names.clear()
                self._fired.clear()
                self._children = None
                self._watching = True
            client.add_listener(self._on_state)
            ChildrenWatch(client, self.path, self._on_children)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        client, self._client = self._client, None
        self._watching = False  # the children watch stops at its next event
        if client is not None:
            client.remove_listener(self._on_state)
            if self._given is None:
                kazoo_utils.finalize_client(client)
        self._changed.set()

    def _connected(self) -> Any:
        client = self._client
        if client is None:
            raise exc.JobFailure(f"ZooKeeper jobboard at {self.where} is not connected")
        return client

    # -- watches (kazoo's callback thread) ------------------------------------------------------

    def _on_children(self, children: list[str]) -> bool:
        if not self._watching:
            return False  # closed: stop watching
        current = frozenset(children)
        if current != self._children:
            self._children = current
            self._changed.set()
        return True

    def _on_state(self, state: str) -> None:
        if state != KazooState.CONNECTED:
            # Watches may be missed while suspended and are gone with a lost session: forget
            # everything they guard, and wake the waiter (claims may have lapsed).
            with self._lock:
                self._records.clear()
            self._changed.set()

    def _on_data(self, event: Any) -> None:
        name = posixpath.basename(event.path)
        with self._lock:
            self._fired[name] = self._fired.get(name, 0) + 1
            self._records.pop(name, None)

    # -- requests -------------------------------------------------------------------------------

    def _wait(self, request: Any) -> Any:
        return request.get(timeout=self._request_timeout)

    def _collect(self, requests: list[Any]) -> list[Any]:
        """Results of pipelined requests; a missing node gives None."""
        results: list[Any] = []
        deadline = time.monotonic() + self._request_timeout
        for request in requests:
            try:
                results.append(request.get(timeout=max(0.0, deadline - time.monotonic())))
            except k_exc.NoNodeError as err:
                err.__traceback__ = None  # no cycle through this frame (see impl_zookeeper)
                results.append(None)
        return results

    def _commit(self, txn: Any) -> list[Any]:
        return kazoo_utils.checked_commit(txn, timeout=self._request_timeout)

    # -- reading --------------------------------------------------------------------------------

    def _job_path(self, name: str) -> str:
        return f"{self.path}/{name}"

    def _read_board(self) -> tuple[dict[str, _Record], dict[str, tuple[dict[str, Any], Any]]]:
        """Every job record (by znode name, cached ones included) and every lock's
        (document, stat) by its job's name, as of now."""
        client = self._connected()
        children = self._wait(client.get_children_async(self.path))
        names = [name for name in children if not name.endswith(LOCK_SUFFIX)]
        locked = [name[: -len(LOCK_SUFFIX)] for name in children if name.endswith(LOCK_SUFFIX)]
        with self._lock:
            present = set(names)
            for gone in [name for name in self._records if name not in present]:
                del self._records[gone]
            for gone in [name for name in self._fired if name not in present]:
                del self._fired[gone]
            for uuid in [uuid for uuid, name in self._names.items() if name not in present]:
                del self._names[uuid]  # consumed or trashed: found again by listing if asked
            records = dict(self._records)
            fired = {name: self._fired.get(name, 0) for name in names if name not in records}
        to_read: list[tuple[str, int]] = []
        for name in fired:
            sequence = _sequence(name)
            if sequence is not None:
                to_read.append((name, sequence))
            elif name not in self._unknown:
                self._unknown.add(name)
                LOG.warning("Skipping unknown znode %s on the jobboard", self._job_path(name))
        requests = [
            client.get_async(self._job_path(name), watch=self._on_data) for name, _ in to_read
        ]
        requests += [client.get_async(self._job_path(name + LOCK_SUFFIX)) for name in locked]
        results = self._collect(requests)
        fresh: dict[str, _Record] = {}
        for (name, sequence), result in zip(to_read, results, strict=False):
            if result is not None:  # else deleted since listed
                fresh[name] = _decode(result[0], result[1], self._job_path(name), sequence)
        with self._lock:
            for name, record in fresh.items():
                if self._fired.get(name, 0) == fired[name]:
                    self._records[name] = record
                    if record.posting is not None:
                        self._names[record.posting.uuid] = name
        records.update(fresh)
        locks: dict[str, tuple[dict[str, Any], Any]] = {}
        for name, result in zip(locked, results[len(to_read) :], strict=False):
            if result is not None:
                locks[name] = (_lock_document(result[0]), result[1])
        return records, locks

    @staticmethod
    def _listing(record: _Record, lock: tuple[dict[str, Any], Any] | None) -> Listing:
        posting = record.posting
        assert posting is not None
        if lock is None:
            # Never claimed through us and unmodified: no "last claimed or released" time.
            modified = record.mtime if record.version > 0 else None
            return Listing(posting, None, None, record.claims, modified)
        document, stat = lock
        owner = document.get("owner")
        token = document.get("token")
        ours = isinstance(token, int) and token == record.claims
        if not isinstance(owner, str):
            owner = "?"  # an unreadable lock still holds the job
        return Listing(
            posting=posting,
            owner=owner,
            # A claim made by upstream TaskFlow has no token; it holds the last one issued.
            token=token if ours else record.claims,
            attempts=record.claims - 1 if ours else record.claims,
            last_modified=_time(stat),
        )

    def listings(self) -> list[Listing]:
        with self._errors("list jobs"):
            records, locks = self._read_board()
        listings: list[Listing] = []
        seen: set[str] = set()
        for name in sorted(records, key=lambda n: _sequence(n) or 0):
            record = records[name]
            if record.posting is None:
                continue
            if record.posting.uuid in seen:
                LOG.warning(
                    "Skipping malformed job record %s: it repeats job %s",
                    self._job_path(name),
                    record.posting.uuid,
                )
                continue
            seen.add(record.posting.uuid)
            listings.append(self._listing(record, locks.get(name)))
        return listings

    def _name_of(self, uuid: str) -> str | None:
        """The znode name of job ``uuid`` (listing the board if not yet known)."""
        with self._lock:
            name = self._names.get(uuid)
        if name is None:
            self.listings()
            with self._lock:
                name = self._names.get(uuid)
        return name

    def _read_job(
        self, name: str
    ) -> tuple[tuple[bytes, Any] | None, tuple[dict[str, Any], Any] | None]:
        """(data, stat) of a job's record and (document, stat) of its lock, fresh."""
        client = self._connected()
        job, lock = self._collect(
            [
                client.get_async(self._job_path(name)),
                client.get_async(self._job_path(name + LOCK_SUFFIX)),
            ]
        )
        return job, (None if lock is None else (_lock_document(lock[0]), lock[1]))

    def get(self, uuid: str) -> Listing | None:
        with self._errors(f"read job {uuid}"):
            name = self._name_of(uuid)
            if name is None:
                return None
            job, lock = self._read_job(name)
            sequence = _sequence(name)
            if job is None or sequence is None:
                return None
            record = _decode(job[0], job[1], self._job_path(name), sequence)
            if record.posting is None or record.posting.uuid != uuid:
                return None
            return self._listing(record, lock)

    def trash(self) -> list[TrashEntry]:
        with self._errors("list the trash"):
            client = self._connected()
            children = self._wait(client.get_children_async(self.trash_path))
            results = self._collect(
                [client.get_async(_join(self.trash_path, name)) for name in children]
            )
        found: list[tuple[int, TrashEntry]] = []
        for name, result in zip(children, results, strict=False):
            if result is None:
                continue
            data, stat = result
            where = _join(self.trash_path, name)
            record = _decode(data, stat, where, _sequence(name.split("-", 1)[0]) or 0)
            if record.posting is None or record.document is None:
                continue
            reason = record.document.get(REASON_KEY)
            attempts = record.document.get(ATTEMPTS_KEY, record.claims)
            found.append(
                (
                    stat.czxid,
                    TrashEntry(
                        record.posting,
                        reason if isinstance(reason, str) else None,
                        attempts if isinstance(attempts, int) else record.claims,
                        _time(stat),
                    ),
                )
            )
        found.sort(key=lambda item: item[0])  # creation order: oldest trashed first
        return [entry for _, entry in found]

    # -- writing --------------------------------------------------------------------------------

    def post(self, posting: Posting) -> Posting:
        document: dict[str, Any] = {
            "uuid": posting.uuid,
            "name": posting.name,
            "priority": posting.priority.value,
            "details": posting.details,
        }
        if posting.book is not None:  # upstream writes no key at all for "no book"
            document["book"] = {"name": posting.book.name, "uuid": posting.book.uuid}
        # Unstorable details fail (TypeError naming the value) before anything is written.
        data = _serialization.dumps(document).encode()
        if len(data) > MAX_POSTING_BYTES:
            raise exc.JobFailure(
                f"Job {posting.name!r} is {len(data)} bytes of JSON, more than a ZooKeeper"
                f" node holds ({MAX_POSTING_BYTES})"
            )
        with self._errors(f"post job {posting.name!r}"):
            client = self._connected()
            # One create of the whole record: no half-written job, whatever crashes when.
            try:
                path, stat = self._wait(
                    client.create_async(
                        self._job_path(JOB_PREFIX), data, sequence=True, include_data=True
                    )
                )
            except k_exc.UnimplementedError:
                # A 3.4 server has no create2 (create with the new node's stat): ask after.
                path = self._wait(
                    client.create_async(self._job_path(JOB_PREFIX), data, sequence=True)
                )
                stat = self._wait(client.exists_async(path))
        name = posixpath.basename(path)
        with self._lock:
            self._names[posting.uuid] = name
        sequence = _sequence(name)
        assert sequence is not None
        return dataclasses.replace(posting, sequence=sequence, created_on=_time(stat))

    def _forget(self, name: str) -> None:
        with self._lock:
            self._fired[name] = self._fired.get(name, 0) + 1
            self._records.pop(name, None)

    def claim(self, uuid: str, owner: str, lease: float) -> int:
        with self._errors(f"claim job {uuid}"):
            name = self._name_of(uuid)
            if name is None:
                raise exc.NotFound(f"Job {uuid} not found to be claimed")
            client = self._connected()
            path, lock_path = self._job_path(name), self._job_path(name + LOCK_SUFFIX)
            for _ in range(_CAS_TRIES):
                job, lock = self._read_job(name)
                if job is None:
                    raise exc.NotFound(f"Job {uuid} not found to be claimed")
                if lock is not None:
                    raise exc.UnclaimableJob(
                        f"Job {uuid} already claimed by {lock[0].get('owner', '?')}"
                    )
                try:
                    document = _check_document(json.loads(job[0]))
                except ValueError:
                    raise exc.NotFound(f"Job {uuid} not found to be claimed") from None
                token = _claims(document) + 1
                document[CLAIMS_KEY] = token
                txn = client.transaction()
                txn.set_data(path, _dumps(document), version=job[1].version)
                txn.create(lock_path, _dumps({"owner": owner, "token": token}), ephemeral=True)
                try:
                    self._commit(txn)
                except kazoo_utils.KazooTransactionException as err:
                    failures = [failure for _, failure in err.failures]
                    if any(isinstance(f, k_exc.NodeExistsError) for f in failures):
                        continue  # claimed meanwhile: the next read says by whom
                    if any(isinstance(f, k_exc.NoNodeError) for f in failures):
                        raise exc.NotFound(f"Job {uuid} not found to be claimed") from None
                    continue  # BadVersion: another claim moved the record; read again
                finally:
                    self._forget(name)
                return token
            raise exc.UnclaimableJob(f"Job {uuid} is changing too fast to be claimed")

    def renew(self, uuid: str, owner: str, token: int, lease: float) -> bool:
        # The lease is the session, which kazoo keeps alive: renewing is checking that the
        # lock is still this session's, with this claim's token.
        with self._errors(f"check the claim on job {uuid}"):
            with self._lock:
                name = self._names.get(uuid)
            client = self._connected()
            if name is None:
                return False
            (lock,) = self._collect([client.get_async(self._job_path(name + LOCK_SUFFIX))])
            if lock is None:
                return False
            document = _lock_document(lock[0])
            session = client.client_id
            return bool(
                document.get("owner") == owner
                and document.get("token") == token
                and session is not None
                and lock[1].ephemeralOwner == session[0]
            )

    def release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None:
        verb = outcome.value
        with self._errors(f"{verb} job {uuid}"):
            name = self._name_of(uuid)
            if name is None:
                raise exc.NotFound(f"Job {uuid} not found to be {_PAST[outcome]}")
            client = self._connected()
            path, lock_path = self._job_path(name), self._job_path(name + LOCK_SUFFIX)
            trash_name = name
            for _ in range(_CAS_TRIES):
                job, lock = self._read_job(name)
                if job is None:
                    raise exc.NotFound(f"Job {uuid} not found to be {_PAST[outcome]}")
                if lock is None:
                    raise exc.NotFound(
                        f"Can not {verb} job {uuid} which we can not determine the owner of"
                    )
                held_by, held_token = lock[0].get("owner"), lock[0].get("token")
                if held_by != owner:
                    raise exc.JobFailure(
                        f"Can not {verb} job {uuid} which is not owned by {owner}"
                        f" (it is actively owned by {held_by})"
                    )
                if token is not None and token != held_token:
                    raise exc.JobFailure(
                        f"Can not {verb} job {uuid}: the claim of {owner} with token {token}"
                        f" was lost (the job is now claimed with token {held_token})"
                    )
                # The job's data version moves with every claim of ours: checking it makes
                # the release fail (and be looked at again) if the claim changed meanwhile.
                version = job[1].version
                txn = client.transaction()
                txn.delete(lock_path)
                if outcome is Outcome.ABANDON:
                    txn.check(path, version)
                else:
                    txn.delete(path, version=version)
                if outcome is Outcome.TRASH:
                    self._add_trash(txn, trash_name, job[0], held_token, reason)
                try:
                    self._commit(txn)
                except kazoo_utils.KazooTransactionException as err:
                    failures = [failure for _, failure in err.failures]
                    if outcome is Outcome.TRASH and any(
                        isinstance(f, k_exc.NodeExistsError) for f in failures
                    ):
                        # Another board under the same parent trashed a job of the same
                        # number: keep both (the trash is only listed, never handed out).
                        trash_name = f"{name}-{uuid}"
                    continue
                finally:
                    self._forget(name)
                return
            raise exc.JobFailure(f"Job {uuid} is changing too fast to be {_PAST[outcome]}")

    def _add_trash(
        self, txn: Any, name: str, data: bytes, held_token: Any, reason: str | None
    ) -> None:
        try:
            document = _check_document(json.loads(data))
            claims = _claims(document)
        except ValueError:
            document, claims = {}, 0
        document[REASON_KEY] = reason
        # The trashing claim itself is not an attempt (it ended deliberately).
        document[ATTEMPTS_KEY] = claims - 1 if held_token == claims and claims else claims
        txn.create(_join(self.trash_path, name), _dumps(document))

    def register_entity(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        path = _join(self.entity_path, kind, name)
        data = json.dumps({"kind": kind, "name": name, "metadata": metadata}, default=str)
        with self._errors(f"register {kind} {name!r}"):
            client = self._connected()
            try:
                # Ephemeral, as upstream: an entity is listed while its process is alive.
                client.create(path, data.encode(), ephemeral=True, makepath=True)
            except k_exc.NodeExistsError:
                client.set(path, data.encode())

    # -- waiting --------------------------------------------------------------------------------

    def interrupt(self) -> None:
        self._changed.set()

    def wait_changed(self, timeout: float) -> bool:
        self._connected()
        if self._changed.wait(max(0.0, timeout)):
            # Cleared before returning: whatever set it happened before the caller reads.
            self._changed.clear()
            return True
        return False
