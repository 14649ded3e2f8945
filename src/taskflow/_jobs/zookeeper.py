"""The jobboard store on ZooKeeper (kazoo), in upstream TaskFlow's on-board layout.

Theory of operation
-------------------
The tree is upstream TaskFlow 6.5's, so that upstream's conductors and ours can share a
board during a migration (each reads what the other writes)::

    <path>                          the jobs directory (default /taskflow/jobs)
    <path>/jobNNNNNNNNNN            a job: persistent *sequential* znode holding the posting
                                    {"uuid", "name", "priority", "details"[, "book"]}
    <path>/jobNNNNNNNNNN.lock       its claim: *ephemeral* znode {"owner": who}
                                    (ours add "token" and "lease", see below)
    <parent>/.trash/jobNNNNNNNNNN   a trashed job: the posting, moved
    <parent>/.entities/<kind>/<n>   ephemeral {"kind", "name", "metadata"}
    <parent>/.clock                 empty; written to read ZooKeeper's time (ours only)

``<parent>`` is the parent of ``<path>``. A job's ``created_on`` is its znode's creation
time (the server's clock) and its sequence the znode's number, assigned by the server: the
"oldest first" order needs no clock agreement. Posting is one ``create`` of the whole
record, so a crash leaves no job or a whole one.

What we add, as extra JSON keys (upstream 6.5 ignores them, and tolerates the data version
moving under its claims; both checked by ``tests/jobs/test_zookeeper_interop.py``):

* ``"claims"`` in the job's record: how many claims *this* implementation made on the job.
  A claim is one ZooKeeper transaction: a compare-and-set of the record (data version)
  with ``claims + 1``, and the creation of the lock with
  ``{"owner", "token": claims + 1, "lease": seconds}``.
  Two claimants cannot both succeed (the lock exists, or the version moved), and the new
  count is the claim's **fencing token**: it only increases for a job, starts at 1 and
  stays far below 2**31 (what the persistence layer's flow ownership accepts). The lock's
  creation zxid would also only increase, but it is a 64-bit number (epoch << 32 | counter)
  that no longer fits the persistence layer's tokens, and it is unknown until the lock
  exists; the counter is exact. ``attempts`` (claims that ended without consume) is
  ``claims`` minus the claim that still holds the lock, if it is ours.
* ``"reason"`` and ``"attempts"`` in a trashed record.

Claims lapse two ways, whichever comes first:

* with the holder's *session*, as upstream's do: the lock is ephemeral, so ZooKeeper deletes
  it when the holder closes its session or stops talking to the server (killed, paused by
  SIGSTOP, partitioned) for the session timeout. The timeout is the ``timeout`` key, or the
  board's ``lease`` when there is none; the server rounds it into its own bounds (by
  default at least 2 ticks, 4 s, and expiries happen on tick boundaries), so this alone
  would free a dead holder's job only after 4 to 6 s.
* with the claim's *lease*, which our locks carry (``"lease"``: seconds) and only ours: the
  board's heartbeat renews it every ``lease / 3`` seconds by rewriting the lock, which moves
  the lock's ``mtime``. A lock not rewritten for ``lease`` seconds has lapsed, and the next
  claimant deletes it (pinned to the version it read, so a renewal in between wins) and
  claims in the same transaction. Upstream's locks carry no lease: they are respected
  until their session ends, and upstream respects ours as any lock (it never reads the
  lease), so a mixed fleet keeps working.

Whose clock says that a lease has run out? ZooKeeper's own: every ``mtime`` is stamped by
the ensemble's leader when it orders the write, the renewal's as well as that of a write
the claimant makes to ``<parent>/.clock`` just before taking a lock over. Both stamps come
from one clock, so the holders' and claimants' clocks never need to agree, with the server
or with each other: a holder paused or on a machine whose clock is off loses its claim after
``lease`` seconds of ZooKeeper's time all the same. Between writes a store estimates that
time as the stamp of its latest write plus its *monotonic* time since the answer arrived
(:class:`_ServerClock`): a lower bound of the server's time (the stamp preceded the
answer), used to report lapsed claims in listings and to wake waiters when one lapses
(no znode changes then, so no watch fires). The takeover itself is always decided by a
fresh stamp. What this assumes: the leader's clock does not jump, and the ensemble's
clocks agree to well within a lease across a change of leader; a clock ahead ends claims
early, one behind ends them late. Either way there are never two holders that can both
write: the taken-over holder's renewals and releases are refused (below), and its fencing
token is lower than the new one, so the flow's persistence refuses its writes.

A renewal is one transaction: a *check* of the job record's data version as of the claim
(every claim of ours moves it) and a *set* of the lock pinned to the lock's data version.
Either fails once the claim is someone else's: ours moves the record, and a lock created
afresh (by upstream, after our session ended) is at version 0, which a renewal never
expects, because our claims create the lock *and* set it in their transaction (version 1).
A holder whose lease lapsed but whose lock nobody took over renews it as if nothing had
happened (the store contract allows that); one whose session ended finds no lock.

Waiting (:meth:`ZookeeperStore.wait_changed`): a children watch on ``<path>`` (kazoo's
``ChildrenWatch``, re-armed on every event and after reconnections). Every change a waiter
cares about creates or deletes a child there: a post, a claim (lock created), a release
or a session's end (lock deleted), a consume or trash (job deleted). An idle waiter wakes
within one server round trip. A lease running out changes nothing on the server, so each
listing also arms a timer for the earliest lapse among the other sessions' leased locks it
saw, and the waiter wakes when it fires (a renewal since then makes that wake-up spurious).

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
import weakref
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
    from collections.abc import Iterable, Iterator, Mapping

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
#: Beside the trash: the znode written to read ZooKeeper's time (see the module docstring).
CLOCK_NODE = ".clock"
#: A znode holds at most ~1 MiB (the server's ``jute.maxbuffer``); a larger request would
#: cost the connection rather than fail cleanly, so postings are checked first.
MAX_POSTING_BYTES = 1024 * 1024 - 4096
#: Extra keys of ours in a job's / trashed job's record (see the module docstring).
CLAIMS_KEY = "claims"
REASON_KEY = "reason"
ATTEMPTS_KEY = "attempts"
#: Extra keys of ours in a lock: the claim's fencing token and its lease in seconds.
TOKEN_KEY = "token"
LEASE_KEY = "lease"

_JOB_NAME = re.compile(r"^job(-?\d+)$")
_PAST = {Outcome.CONSUME: "consumed", Outcome.ABANDON: "abandoned", Outcome.TRASH: "trashed"}
_PRIORITIES = {p.value for p in JobPriority}
#: Times a compare-and-set is tried again after a concurrent change before giving up.
_CAS_TRIES = 20
#: Seconds a sample of ZooKeeper's time is extrapolated before a fresh one is taken: bounds
#: how far this machine's monotonic clock and the server's may drift apart in between.
_SAMPLE_MAX_AGE = 30.0


class _Record(NamedTuple):
    """A job's record as last read (``posting`` None: malformed, skipped)."""

    document: dict[str, Any] | None
    posting: Posting | None
    claims: int
    version: int
    mtime: datetime


class _Held(NamedTuple):
    """A claim this store made, with what its next renewal pins (module docstring)."""

    name: str
    owner: str
    token: int
    #: The job record's data version as the claim left it (only our claims move it).
    record_version: int
    #: The lock's data version as the last claim or renewal left it (never 0).
    lock_version: int


class _ServerClock:
    """ZooKeeper's time (ms since the epoch, as it stamps ``mtime``) between our writes.

    :meth:`observe` takes the stamp of a write this store made; :meth:`now` adds this
    machine's *monotonic* time since the answer arrived. The stamp preceded the answer, so
    the estimate is never ahead of the server's clock (while both run at the same rate) and
    behind it by at most the sample's round trip.
    """

    def __init__(self) -> None:
        # (stamp in ms, monotonic seconds when its answer arrived), or None before any write.
        self._sample: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def observe(self, stat: Any) -> None:
        sample = (float(stat.mtime), time.monotonic())
        with self._lock:
            self._sample = sample

    def now(self) -> float | None:
        """The estimate in ms; None without a sample younger than ``_SAMPLE_MAX_AGE``."""
        with self._lock:
            sample = self._sample
        if sample is None:
            return None
        age = time.monotonic() - sample[1]
        return None if age > _SAMPLE_MAX_AGE else sample[0] + age * 1000.0

    def when(self, stamp: float) -> float | None:
        """The monotonic time at which :meth:`now` reaches ``stamp`` (ms), if sampled."""
        with self._lock:
            sample = self._sample
        return None if sample is None else sample[1] + (stamp - sample[0]) / 1000.0


def _expiry(lock: tuple[dict[str, Any], Any]) -> float | None:
    """When (ZooKeeper's time, ms) ``lock``'s lease runs out unless renewed; None for a
    lock without a lease (upstream's), which only its session's end releases."""
    document, stat = lock
    lease = document.get(LEASE_KEY)
    if (
        not isinstance(lease, int | float)
        or isinstance(lease, bool)
        or not 0 < lease < float("inf")
        or not isinstance(document.get(TOKEN_KEY), int)
    ):
        return None
    return float(stat.mtime) + lease * 1000.0


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


#: One lock per kazoo client, held while a store starts it. Boards that share a client may
#: connect from several threads at once, and kazoo refuses to start a client whose start is
#: already under way ("connection routine already active"): the first store starts it, the
#: others wait and then find it connected.
_START_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_START_LOCKS_GUARD = threading.Lock()


def _start_lock(client: Any) -> threading.Lock:
    with _START_LOCKS_GUARD:
        return _START_LOCKS.setdefault(client, threading.Lock())


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
        self.clock_path = _join(_parent(self.path), CLOCK_NODE)
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
        # Claims this store made and may renew, by job uuid (dropped when they end).
        self._held: dict[str, _Held] = {}
        self._clock = _ServerClock()
        # The waiter's wake-ups, under _cond: _dirty is set by every change seen (and by
        # interrupt); _lapse_at is the monotonic time the earliest lease seen in a listing
        # runs out (None: none), set by the listing that started last (_lapse_read).
        self._cond = threading.Condition()
        self._dirty = False
        self._lapse_at: float | None = None
        self._lapse_read = 0
        self._reads = 0
        self._children: frozenset[str] | None = None
        self._watching = False
        # The locks the latest listing saw (None: no listing since connecting): a lock the
        # children watch shows now but that listing did not is a claim made since.
        self._listed_locks: frozenset[str] | None = None

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
            with _start_lock(client):
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
                self._listed_locks = None
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
        with self._lock:
            self._held.clear()
        self._signal()

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
            self._signal()
        return True

    def _on_state(self, state: str) -> None:
        if state != KazooState.CONNECTED:
            # Watches may be missed while suspended and are gone with a lost session: forget
            # everything they guard, and wake the waiter (claims may have lapsed).
            with self._lock:
                self._records.clear()
                self._listed_locks = None
            self._signal()

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
            self._listed_locks = frozenset(name for name in children if name.endswith(LOCK_SUFFIX))
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

    def _server_now(self) -> float:
        """ZooKeeper's time now (ms), stamped on a write of our own to the clock znode."""
        client = self._connected()
        try:
            stat = self._wait(client.set_async(self.clock_path, b""))
        except k_exc.NoNodeError:
            with contextlib.suppress(k_exc.NodeExistsError):
                self._wait(client.create_async(self.clock_path, b"", makepath=True))
            stat = self._wait(client.set_async(self.clock_path, b""))
        self._clock.observe(stat)
        return float(stat.mtime)

    def _now(self, locks: Iterable[tuple[dict[str, Any], Any]]) -> float | None:
        """ZooKeeper's time as estimated here (a write if there is no recent sample), or
        None if none of ``locks`` has a lease (no need to know)."""
        if all(_expiry(lock) is None for lock in locks):
            return None
        now = self._clock.now()
        return self._server_now() if now is None else now

    def _lapsed(self, lock: tuple[dict[str, Any], Any]) -> bool:
        """Whether ``lock``'s lease has run out, as a fresh stamp says (the estimate, never
        ahead of the server, only spares that write while the lease clearly runs)."""
        expiry = _expiry(lock)
        if expiry is None:
            return False
        now = self._clock.now()
        if now is not None and now <= expiry:
            return False
        if self._server_now() > expiry:
            return True
        self._signal()  # the estimate was ahead (the server's clock stepped back): list again
        return False

    @staticmethod
    def _listing(
        record: _Record, lock: tuple[dict[str, Any], Any] | None, now: float | None
    ) -> Listing:
        """``record``'s job with ``lock`` as its claim, unless the lock's lease ran out
        before ``now`` (ZooKeeper's time, ms)."""
        posting = record.posting
        assert posting is not None
        if lock is not None and now is not None:
            expiry = _expiry(lock)
            if expiry is not None and now > expiry:
                # Lapsed, not yet taken over: free, and counted as an attempt.
                return Listing(posting, None, None, record.claims, _time(lock[1]))
        if lock is None:
            # Never claimed through us and unmodified: no "last claimed or released" time.
            modified = record.mtime if record.version > 0 else None
            return Listing(posting, None, None, record.claims, modified)
        document, stat = lock
        owner = document.get("owner")
        token = document.get(TOKEN_KEY)
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
        with self._lock:
            self._reads += 1
            read = self._reads
        with self._errors("list jobs"):
            records, locks = self._read_board()
            now = self._now(locks.values())
        self._arm(read, self._next_lapse(locks.values(), now))
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
            listings.append(self._listing(record, locks.get(name), now))
        return listings

    def _next_lapse(
        self, locks: Iterable[tuple[dict[str, Any], Any]], now: float | None
    ) -> float | None:
        """The monotonic time the first of ``locks`` still running lapses unless renewed
        (locks of this session are left out: their renewals are ours to make)."""
        if now is None:
            return None
        client = self._client
        session = None if client is None else client.client_id
        ours = None if session is None else session[0]
        expiries = [
            expiry
            for lock in locks
            if lock[1].ephemeralOwner != ours
            and (expiry := _expiry(lock)) is not None
            and expiry >= now
        ]
        if not expiries:
            return None
        at = self._clock.when(min(expiries))
        # A millisecond late: by then the estimate is past the expiry, not on it.
        return None if at is None else at + 0.001

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
            return self._listing(record, lock, self._now([] if lock is None else [lock]))

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
            else:
                self._clock.observe(stat)  # a free sample of ZooKeeper's time
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

    def _unlocked_record(self, uuid: str, name: str) -> tuple[dict[str, Any], int] | None:
        """(a copy of the document, the data version) of job ``name``'s cached record if the
        watches say that nobody holds it, for a claim without a read first (the
        transaction's version checks make a stale answer fail, never succeed wrongly).

        Raises UnclaimableJob if they say it was claimed since the latest listing: from a
        listing's leftovers, conductors would otherwise try each job the others just took
        (one round trip each). Such a fresh claim has not lapsed, or the next listing, which
        sees its lock, reads it and takes it over.
        """
        lock_name = name + LOCK_SUFFIX
        with self._lock:
            children, listed = self._children, self._listed_locks
            record = self._records.get(name)
        if children is None:
            return None
        if lock_name in children:
            if listed is not None and lock_name not in listed:
                raise exc.UnclaimableJob(f"Job {uuid} already claimed (since it was listed)")
            return None
        if record is None or record.document is None:
            return None
        return dict(record.document), record.version

    def claim(self, uuid: str, owner: str, lease: float) -> int:
        with self._errors(f"claim job {uuid}"):
            name = self._name_of(uuid)
            if name is None:
                raise exc.NotFound(f"Job {uuid} not found to be claimed")
            client = self._connected()
            path, lock_path = self._job_path(name), self._job_path(name + LOCK_SUFFIX)
            known = self._unlocked_record(uuid, name)
            for _ in range(_CAS_TRIES):
                lock: tuple[dict[str, Any], Any] | None = None
                if known is not None:
                    (document, version), known = known, None
                else:
                    job, lock = self._read_job(name)
                    if job is None:
                        raise exc.NotFound(f"Job {uuid} not found to be claimed")
                    if lock is not None and not self._lapsed(lock):
                        raise exc.UnclaimableJob(
                            f"Job {uuid} already claimed by {lock[0].get('owner', '?')}"
                        )
                    try:
                        document = _check_document(json.loads(job[0]))
                    except ValueError:
                        raise exc.NotFound(f"Job {uuid} not found to be claimed") from None
                    version = job[1].version
                token = _claims(document) + 1
                document[CLAIMS_KEY] = token
                data = _dumps({"owner": owner, TOKEN_KEY: token, LEASE_KEY: lease})
                txn = client.transaction()
                if lock is not None:
                    # Taking over a lapsed lease: a renewal since (a new version) wins.
                    txn.delete(lock_path, version=lock[1].version)
                txn.set_data(path, _dumps(document), version=version)
                txn.create(lock_path, data, ephemeral=True)
                txn.set_data(lock_path, data)  # version 1: see renew()
                try:
                    results = self._commit(txn)
                except kazoo_utils.KazooTransactionException as err:
                    failures = [failure for _, failure in err.failures]
                    if lock is None and any(isinstance(f, k_exc.NoNodeError) for f in failures):
                        raise exc.NotFound(f"Job {uuid} not found to be claimed") from None
                    # Claimed, renewed or gone meanwhile (NodeExists, BadVersion, NoNode):
                    # the next read says which.
                    continue
                finally:
                    self._forget(name)
                record_stat, lock_stat = results[-3], results[-1]
                self._clock.observe(lock_stat)
                with self._lock:
                    self._held[uuid] = _Held(
                        name, owner, token, record_stat.version, lock_stat.version
                    )
                return token
            raise exc.UnclaimableJob(f"Job {uuid} is changing too fast to be claimed")

    def _read_held(self, uuid: str, owner: str, token: int) -> _Held | None:
        """The claim ``(owner, token)`` of this session on job ``uuid`` as it is now, or
        None if it is not the job's claim any more."""
        with self._lock:
            name = self._names.get(uuid)
        if name is None:
            return None
        job, lock = self._read_job(name)
        session = self._connected().client_id
        if job is None or lock is None or session is None:
            return None
        document, stat = lock
        if (
            document.get("owner") != owner
            or document.get(TOKEN_KEY) != token
            or stat.ephemeralOwner != session[0]
        ):
            return None
        try:
            claims = _claims(_check_document(json.loads(job[0])))
        except ValueError:
            return None
        if claims != token:
            return None
        return _Held(name, owner, token, job[1].version, stat.version)

    def renew(self, uuid: str, owner: str, token: int, lease: float) -> bool:
        # Rewriting the lock moves its mtime: the lease runs from now (ZooKeeper's time).
        # Pinned to the record's and the lock's versions (module docstring), it fails once
        # the claim is someone else's; a version known here may be stale (a renewal whose
        # answer was lost), so a failure is looked at again before the claim counts as lost.
        with self._errors(f"renew the claim on job {uuid}"):
            client = self._connected()
            with self._lock:
                held = self._held.get(uuid)
            data = _dumps({"owner": owner, TOKEN_KEY: token, LEASE_KEY: lease})
            for reread in (False, True):
                if reread or held is None or (held.owner, held.token) != (owner, token):
                    held = self._read_held(uuid, owner, token)
                    if held is None:
                        break
                txn = client.transaction()
                txn.check(self._job_path(held.name), held.record_version)
                txn.set_data(
                    self._job_path(held.name + LOCK_SUFFIX), data, version=held.lock_version
                )
                try:
                    results = self._commit(txn)
                except kazoo_utils.KazooTransactionException:
                    continue
                except BaseException:
                    with self._lock:  # it may have been applied: read the versions next time
                        self._held.pop(uuid, None)
                    raise
                self._clock.observe(results[-1])
                with self._lock:
                    self._held[uuid] = held._replace(lock_version=results[-1].version)
                return True
            with self._lock:
                self._held.pop(uuid, None)
            return False

    def release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None:
        try:
            self._release(uuid, owner, token, outcome, reason)
        finally:
            with self._lock:  # ended, or not ours to renew any more
                self._held.pop(uuid, None)

    def _release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None:
        verb = outcome.value
        with self._errors(f"{verb} job {uuid}"):
            name = self._name_of(uuid)
            if name is None:
                raise exc.NotFound(f"Job {uuid} not found to be {_PAST[outcome]}")
            client = self._connected()
            path, lock_path = self._job_path(name), self._job_path(name + LOCK_SUFFIX)
            if outcome is not Outcome.TRASH and self._release_held(uuid, owner, token, outcome):
                return
            trash_name = name
            for _ in range(_CAS_TRIES):
                job, lock = self._read_job(name)
                if job is None:
                    raise exc.NotFound(f"Job {uuid} not found to be {_PAST[outcome]}")
                if lock is None:
                    raise exc.NotFound(
                        f"Can not {verb} job {uuid} which we can not determine the owner of"
                    )
                held_by, held_token = lock[0].get("owner"), lock[0].get(TOKEN_KEY)
                if (token is None or token != held_token) and self._lapsed(lock):
                    # Only the holder itself may still end a lapsed claim (nobody took
                    # it over yet), as on every board.
                    raise exc.NotFound(
                        f"Can not {verb} job {uuid} which we can not determine the owner of"
                    )
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

    def _release_held(self, uuid: str, owner: str, token: int | None, outcome: Outcome) -> bool:
        """End claim ``(owner, token)`` in one transaction pinned to the versions this store
        last saw it at (no read first); False if that is not known or no longer true, and
        the caller reads the job to find out why."""
        with self._lock:
            held = self._held.get(uuid)
        if token is None or held is None or (held.owner, held.token) != (owner, token):
            return False
        path = self._job_path(held.name)
        txn = self._connected().transaction()
        txn.delete(self._job_path(held.name + LOCK_SUFFIX), version=held.lock_version)
        if outcome is Outcome.ABANDON:
            txn.check(path, held.record_version)
        else:
            txn.delete(path, version=held.record_version)
        try:
            self._commit(txn)
        except kazoo_utils.KazooTransactionException:
            return False
        finally:
            self._forget(held.name)
        return True

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

    def _signal(self) -> None:
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def _arm(self, read: int, lapse_at: float | None) -> None:
        """Wake the waiter at ``lapse_at``: what listing number ``read`` saw (older ones
        are ignored, their leases may since have been renewed or taken over)."""
        with self._cond:
            if read < self._lapse_read:
                return
            self._lapse_read = read
            self._lapse_at = lapse_at
            self._cond.notify_all()  # it may be waiting for a later time

    def interrupt(self) -> None:
        self._signal()

    def wait_changed(self, timeout: float) -> bool:
        self._connected()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                if self._dirty:
                    # Cleared before returning: whatever set it happened before the caller
                    # reads.
                    self._dirty = False
                    return True
                now = time.monotonic()
                lapse_at = self._lapse_at
                if lapse_at is not None and now >= lapse_at:
                    self._lapse_at = None  # the next listing arms the next one
                    return True
                if now >= deadline:
                    return False
                self._cond.wait((deadline if lapse_at is None else min(deadline, lapse_at)) - now)
