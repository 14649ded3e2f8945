"""The jobboard store on etcd v3, through its gRPC gateway (the ``etcd3gw`` client).

Theory of operation
-------------------
The keys are upstream TaskFlow's, so both can share a board (``R`` is
``/taskflow/jobs/<path>``)::

    R/sequence                  the last sequence number handed out (decimal text)
    R/job<seq>.data             the posting (JSON, written once)
    R/job<seq>.lock             {"owner": ..., "lease_id": ...}, attached to the claim's lease
    R/job<seq>.last_modified    {"last_modified": ..., "claims": n, "owner": ...}
    /taskflow/.trash/<path>/job<seq>        a trashed job's posting (+ reason, attempts)
    /taskflow/.entities/<path>/<kind>/<name> registered entities (ours only)

Every change is one etcd transaction whose compares pin the revisions it read, retried
when another writer got there first:

* post: ``sequence`` +1 and ``job<n>.data`` together (a crash leaves no job or a whole one);
* claim: ``job<n>.lock`` is created on a lease (only if absent, with the data still there)
  together with ``.last_modified`` counting the claim;
* consume/abandon/trash: the claim is checked (owner, token) and the keys are deleted or
  moved in one transaction pinned to the lock's revision.

A claim lapses through etcd itself: nobody renews the lease of a dead or paused holder, etcd
deletes the lock key when the lease ends, and the job is claimable again. etcd leases are
whole seconds and at least its minimum TTL (2 s with default settings), so a lease below
that lasts that minimum. The board's heartbeat renews a held claim's lease (keep-alive).
The claims of one store share a lease (see :meth:`EtcdStore._lease`): granting one is a
replicated write, and they lapse together anyway, when the store's process stops renewing.

Fencing token: the revision of the claim's transaction, which is the lock key's
``create_revision``. etcd revisions only grow, so each claim of a job gets a larger token
than every earlier one, whoever made it (upstream's claims included). ``.last_modified`` is
written by the same transaction, so its ``mod_revision`` equals the token until the job is
next claimed or released: that is how a claim that lapsed with nobody claiming since is
still recognised, to be renewed (the lock is re-created on a new lease, carrying the old
token in its value) or released, as the store contract asks.

Waking waiters: a watch on ``R/`` (a streaming request of the watch thread's own,
reconnected from the next unseen revision, so no change is missed across reconnections)
sets a flag that :meth:`EtcdStore.wait_changed` waits on; this store's own writes set it
too. Nothing read from etcd is ever unpickled: postings are checked JSON
(:mod:`~taskflow._jobs.postings`) and the other records are plain JSON objects.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import math
import re
import socket
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib import parse

from taskflow import exceptions as exc
from taskflow._config import as_float, as_int
from taskflow._jobs import postings
from taskflow._jobs.store import Listing, Outcome, TrashEntry

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import requests
    from etcd3gw.client import Etcd3Client

    from taskflow._jobs.store import Posting

__all__ = ["DEFAULT_PATH", "ENTITIES_PATH", "ROOT_PATH", "TRASH_PATH", "EtcdStore", "Layout"]

LOG = logging.getLogger("taskflow.jobs")

DEFAULT_PATH = "jobboard"
ROOT_PATH = "/taskflow/jobs"
TRASH_PATH = "/taskflow/.trash"
ENTITIES_PATH = "/taskflow/.entities"
#: Seconds each etcd request may take unless the ``timeout`` key says otherwise.
DEFAULT_TIMEOUT = 10.0
#: Seconds a silent watch stream is kept before it is re-opened (from the next unseen
#: revision, so nothing is lost): bounds how long a dead TCP connection can go unnoticed.
_WATCH_IDLE = 5.0
#: How often a transaction that lost a race is retried before giving up.
_RETRIES = 100
_JOB_KEY = re.compile(r"job(\d+)\.(data|lock|last_modified)")
_PAST = {Outcome.CONSUME: "consumed", Outcome.ABANDON: "abandoned", Outcome.TRASH: "trashed"}
# upstream's timestamp format (naive, UTC): kept so that its readers parse ours.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def _prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (etcd's ``range_end``)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # prefixes here end in "/", never in 0xff
    return _b64(bytes(raw))


def _now_text() -> str:
    return datetime.now(UTC).replace(tzinfo=None).strftime(_TIME_FORMAT)


def _parse_time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where the board's keys are, from its ``path``."""

    path: str

    @property
    def root(self) -> str:
        """Every job key starts with this (``/taskflow/jobs/<path>/``)."""
        return f"{ROOT_PATH}/{self.path}/"

    @property
    def sequence(self) -> str:
        return self.root + "sequence"

    def job(self, seq: int, suffix: str) -> str:
        """``suffix`` is ``data``, ``lock`` or ``last_modified``."""
        return f"{self.root}job{seq}.{suffix}"

    @property
    def trash_root(self) -> str:
        return f"{TRASH_PATH}/{self.path}/"

    def trash(self, seq: int) -> str:
        return f"{self.trash_root}job{seq}"

    def entity(self, kind: str, name: str) -> str:
        return f"{ENTITIES_PATH}/{self.path}/{kind}/{name}"


@dataclasses.dataclass(frozen=True, slots=True)
class _KV:
    key: str
    value: bytes
    create: int
    mod: int
    lease: int

    @classmethod
    def parse(cls, item: Mapping[str, Any]) -> _KV:
        # The gateway writes int64 fields as strings and omits zero and empty fields.
        return cls(
            key=base64.b64decode(item["key"]).decode("utf-8", "replace"),
            value=base64.b64decode(item.get("value", "")),
            create=int(item.get("create_revision", 0)),
            mod=int(item.get("mod_revision", 0)),
            lease=int(item.get("lease", 0)),
        )


@dataclasses.dataclass(slots=True)
class _Job:
    """The keys of one ``job<seq>`` as read together."""

    seq: int
    data: _KV | None = None
    lock: _KV | None = None
    last_modified: _KV | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Claim:
    owner: str
    token: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Stamp:
    """What ``.last_modified`` says (all empty when missing or malformed)."""

    claims: int = 0
    moment: datetime | None = None
    owner: str | None = None


def _revision(response: Mapping[str, Any]) -> int:
    return int(response.get("header", {}).get("revision", 0))


def _put(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    request: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        request["lease"] = lease
    return {"request_put": request}


def _delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": _b64(key)}}


def _mod_is(key: str, revision: int) -> dict[str, Any]:
    """Compare: ``key`` was last written at ``revision`` (0: the key does not exist)."""
    return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}


def _validate_conf(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The client's settings and the board's path from ``conf``.

    Raises:
        ValueError: a malformed key, named.
    """
    path = conf.get("path", DEFAULT_PATH)
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(f"'path' must be a non-empty string, not {path!r}")
    host = conf.get("host")
    if host is None and conf.get("hostname"):
        # From a URI (etcd://host:port), whose ``hostname`` may carry the port too.
        host = parse.urlsplit(f"//{conf['hostname']}").hostname
    host = "localhost" if host is None else host
    if not isinstance(host, str) or not host:
        raise ValueError(f"'host' must be a non-empty string, not {host!r}")
    port = as_int(conf, "port", 2379)
    if not 0 < port < 65536:
        raise ValueError(f"'port' must be a TCP port (1-65535), not {conf['port']!r}")
    protocol = conf.get("protocol", "http")
    if protocol not in ("http", "https"):
        raise ValueError(f"'protocol' must be 'http' or 'https', not {protocol!r}")
    for key in ("ca_cert", "cert_key", "cert_cert", "api_path"):
        value = conf.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"{key!r} must be a non-empty string, not {value!r}")
    timeout = as_float(conf, "timeout", DEFAULT_TIMEOUT)
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"'timeout' must be a positive number of seconds, not {conf['timeout']!r}")
    return {
        "path": path.strip("/"),
        "host": host,
        "port": port,
        "protocol": protocol,
        "ca_cert": conf.get("ca_cert"),
        "cert_key": conf.get("cert_key"),
        "cert_cert": conf.get("cert_cert"),
        "api_path": conf.get("api_path"),
        "timeout": timeout,
    }


def _import_client() -> type[Etcd3Client]:
    try:
        from etcd3gw.client import Etcd3Client
    except ImportError as err:
        raise ImportError(
            "The etcd jobboard needs etcd3gw: pip install 'taskflow[etcd]'", name="etcd3gw"
        ) from err
    return Etcd3Client


class EtcdStore:
    """A :class:`~taskflow._jobs.store.BoardStore` on etcd (see the module docstring).

    Args:
        conf: the board's configuration (see ``taskflow.jobs.backends.impl_etcd``); checked
            here, before anything connects.
        client: an ``etcd3gw`` client to use instead of one built from ``conf`` (it is not
            closed by :meth:`close`).
    """

    def __init__(self, conf: Mapping[str, Any], client: Etcd3Client | None = None) -> None:
        settings = _validate_conf(conf)
        self.layout = Layout(settings.pop("path"))
        self._settings = settings
        self._given = client
        self.client: Etcd3Client | None = None
        #: "host:port" of the server, for messages.
        self.where = f"{settings['host']}:{settings['port']}"
        if client is not None:
            self.where = f"{client.host}:{client.port}"
        # A posting never changes once written, so the uuid -> seq mapping can be cached.
        self._seqs: dict[str, int] = {}
        # The keys of each job as last read or written here. Only a claim's or release's
        # first try uses them (its transaction pins every revision, so a stale view just
        # fails and is read again): a listing then claim, or a claim then consume, costs
        # one request less. Replaced by every full listing, so it never outgrows the board.
        self._views: dict[int, _Job] = {}
        # Decoded postings by key, with the revision they were decoded at: a posting never
        # changes once written, and decoding (JSON, schema check) is most of what a listing
        # costs. Replaced by every full listing, so it never outgrows the board.
        self._decoded: dict[str, tuple[int, Posting]] = {}
        self._counter: _KV | None = None  # the ``sequence`` key as this store last wrote it
        self._wake = threading.Event()
        self._watch: _Watch | None = None
        # Shared claim leases by TTL: (lease id, reuse it until this monotonic time).
        self._leases: dict[int, tuple[int, float]] = {}
        self._leases_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    def connect(self, timeout: float) -> None:
        if self.client is not None:
            return
        if self._given is not None:
            client = self._given
        else:
            settings = dict(self._settings)
            client = _import_client()(**{k: v for k, v in settings.items() if v is not None})
        self.client = client
        try:
            # The first request also discovers the API path: bounded by the connect timeout.
            request_timeout, client.timeout = client.timeout, timeout
            try:
                with self._translate(f"connect to etcd at {self.where}"):
                    revision = _revision(self._range(self.layout.root, count_only=True))
            finally:
                client.timeout = request_timeout
            self._watch = _Watch(self, revision + 1, timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        client, self.client = self.client, None
        if client is not None and client is not self._given:
            client.session.close()
        self._wake.set()

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Driver errors -> JobFailure naming the operation (the one place this happens)."""
        from etcd3gw import exceptions as etcd_exc
        from requests import RequestException

        try:
            yield
        except etcd_exc.Etcd3Exception as err:
            detail = err.detail_text or " ".join(str(arg) for arg in err.args) or type(err).__name__
            raise exc.JobFailure(f"etcd jobboard could not {what}: {detail}") from err
        except (RequestException, OSError, ValueError, KeyError) as err:
            raise exc.JobFailure(f"etcd jobboard could not {what}: {err}") from err

    def _client(self) -> Etcd3Client:
        client = self.client
        if client is None:
            raise exc.JobFailure(f"etcd jobboard on {self.where} is not connected")
        return client

    def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        client = self._client()
        result: dict[str, Any] = client.post(client.get_url(path), json=payload)
        return result

    def _range(self, prefix: str, **options: Any) -> dict[str, Any]:
        return self._call(
            "/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix), **options}
        )

    def _txn(self, compare: list[Any], success: list[Any]) -> tuple[bool, int]:
        """(succeeded, revision) of one transaction."""
        result = self._call("/kv/txn", {"compare": compare, "success": success, "failure": []})
        return bool(result.get("succeeded", False)), _revision(result)

    def _lease(self, lease: float, dedicated: bool = False) -> int:
        """A lease for a new claim lasting ``lease`` seconds.

        Claims of this store share one lease per duration (granting is a replicated write
        in etcd, as is each claim: sharing halves the writes of a claim). They live and
        lapse together, which is right: the board renews all of them or, dead or paused,
        none. A lease is reused while more than half its TTL is left (renewals push that
        on); older, a new one is granted and the old one ends with its last claim.
        ``dedicated`` leases (claims nobody renews) are never shared.
        """
        # etcd leases are whole seconds (and etcd raises a shorter one to its minimum).
        ttl = max(1, math.ceil(lease))
        if not dedicated:
            with self._leases_lock:
                cached = self._leases.get(ttl)
            if cached is not None and time.monotonic() < cached[1]:
                return cached[0]
        started = time.monotonic()
        answer = self._call("/lease/grant", {"TTL": ttl, "ID": 0})
        lease_id = int(answer["ID"])
        if not dedicated:
            with self._leases_lock:
                self._leases[ttl] = (lease_id, started + int(answer.get("TTL", ttl)) / 2)
        return lease_id

    def _kept_alive(self, lease_id: int, started: float, ttl: int) -> None:
        with self._leases_lock:
            for key, (cached, _) in list(self._leases.items()):
                if cached == lease_id:
                    self._leases[key] = (lease_id, started + ttl / 2)

    def _forget_lease(self, lease_id: int) -> None:
        with self._leases_lock:
            for key, (cached, _) in list(self._leases.items()):
                if cached == lease_id:
                    del self._leases[key]

    def _txn_on_lease(
        self, lease_id: int, compare: list[Any], success: list[Any]
    ) -> tuple[bool, int] | None:
        """:meth:`_txn` putting keys on ``lease_id``; None if that lease has ended."""
        from etcd3gw import exceptions as etcd_exc

        try:
            return self._txn(compare, success)
        except etcd_exc.Etcd3Exception as err:
            if "lease not found" not in str(err.detail_text):
                raise
            self._forget_lease(lease_id)
            return None

    # -- reading --------------------------------------------------------------------------------

    def _scan(self, prefix: str) -> dict[int, _Job]:
        """Every ``job<seq>`` under ``prefix`` (the whole board, or one job's keys)."""
        jobs: dict[int, _Job] = {}
        for item in self._range(prefix).get("kvs", ()):
            kv = _KV.parse(item)
            match = _JOB_KEY.fullmatch(kv.key[len(self.layout.root) :])
            if match is None:
                continue  # "sequence", or keys of no job
            seq = int(match[1])
            job = jobs.setdefault(seq, _Job(seq))
            setattr(job, match[2], kv)
        return jobs

    def _read(self, seq: int) -> _Job:
        # The trailing dot keeps job1 from matching job10's keys.
        job = self._scan(f"{self.layout.root}job{seq}.").get(seq, _Job(seq))
        self._remember(job)
        return job

    def _remember(self, job: _Job) -> None:
        if job.data is None:
            self._views.pop(job.seq, None)
        else:
            self._views[job.seq] = job

    def _view(self, uuid: str, what: str, attempt: int) -> tuple[_Job | None, bool]:
        """(the keys of job ``uuid``, whether just read): the remembered view on a first
        ``attempt``, else (or without one) read now. Decide errors on fresh views only."""
        if attempt == 0:
            seq = self._seqs.get(uuid)
            view = None if seq is None else self._views.get(seq)
            if view is not None:
                return view, False
        return self._job(uuid, what), True

    def _posting(self, kv: _KV, seq: int) -> Posting | None:
        cached = self._decoded.get(kv.key)
        if cached is not None and cached[0] == kv.mod and cached[1].sequence == seq:
            return cached[1]
        where = f"{kv.key!r} on etcd {self.where}"
        try:
            text = kv.value.decode("utf-8")
        except UnicodeDecodeError:
            LOG.warning("Skipping malformed job record %s: it is not UTF-8 text", where)
            return None
        posting = postings.decode(text, where, seq)
        if posting is not None and kv.mod:
            self._decoded[kv.key] = (kv.mod, posting)
        return posting

    def _claim_of(self, kv: _KV) -> _Claim | None:
        """The claim a lock key records, or None (logged) when it is malformed."""
        try:
            document = json.loads(kv.value)
            owner = document["owner"]
            if not isinstance(owner, str) or not owner:
                raise ValueError(f"its owner is {owner!r}")
        except Exception as err:  # any malformation: a reader must never crash on one record
            LOG.warning("Skipping malformed job record %r on etcd %s: %s", kv.key, self.where, err)
            return None
        token = document.get("token")
        if not isinstance(token, int) or isinstance(token, bool):
            token = kv.create  # the revision of the transaction that claimed
        return _Claim(owner, token)

    def _stamp_of(self, kv: _KV | None) -> _Stamp:
        if kv is None:
            return _Stamp()
        try:
            document = json.loads(kv.value)
            claims = document.get("claims", 0)
            owner = document.get("owner")
            moment = document.get("last_modified")
            return _Stamp(
                claims=claims if isinstance(claims, int) and claims >= 0 else 0,
                moment=None if moment is None else _parse_time(moment),
                owner=owner if isinstance(owner, str) else None,
            )
        except Exception as err:  # informational only: the job stays listed without it
            LOG.warning("Ignoring malformed record %r on etcd %s: %s", kv.key, self.where, err)
            return _Stamp()

    def _listing(self, job: _Job) -> Listing | None:
        if job.data is None:
            return None  # its lock or stamp outlived it (a consume by a non-atomic writer)
        posting = self._posting(job.data, job.seq)
        if posting is None:
            return None
        claim = None
        if job.lock is not None:
            claim = self._claim_of(job.lock)
            if claim is None:
                return None
        stamp = self._stamp_of(job.last_modified)
        self._seqs[posting.uuid] = job.seq
        return Listing(
            posting=posting,
            owner=None if claim is None else claim.owner,
            token=None if claim is None else claim.token,
            # Each claim counts itself; every claim but a live one ended without consume.
            attempts=max(0, stamp.claims - (claim is not None)),
            last_modified=stamp.moment,
        )

    def listings(self) -> list[Listing]:
        with self._translate("list jobs"):
            jobs = self._scan(self.layout.root)
        self._views = {seq: job for seq, job in jobs.items() if job.data is not None}
        decoded = self._decoded
        self._decoded = {
            job.data.key: decoded[job.data.key]
            for job in self._views.values()
            if job.data is not None and job.data.key in decoded
        }
        found: dict[str, Listing] = {}
        for seq in sorted(jobs):
            listing = self._listing(jobs[seq])
            if listing is None:
                continue
            uuid = listing.posting.uuid
            if uuid in found:
                LOG.warning(
                    "Skipping malformed job record %r on etcd %s: it repeats job %s",
                    self.layout.job(seq, "data"),
                    self.where,
                    uuid,
                )
                continue
            found[uuid] = listing
        return list(found.values())

    def _seq(self, uuid: str) -> int | None:
        seq = self._seqs.get(uuid)
        if seq is None:
            self.listings()  # fills the cache with every live job
            seq = self._seqs.get(uuid)
        return seq

    def _job(self, uuid: str, what: str) -> _Job | None:
        """The keys of job ``uuid`` (None: no such live job)."""
        with self._translate(what):
            seq = self._seq(uuid)
            if seq is None:
                return None
            job = self._read(seq)
        if job.data is None:
            self._seqs.pop(uuid, None)
            return None
        return job

    def get(self, uuid: str) -> Listing | None:
        job = self._job(uuid, f"read job {uuid}")
        return None if job is None else self._listing(job)

    def trash(self) -> list[TrashEntry]:
        with self._translate("list the trash"):
            items = self._range(self.layout.trash_root).get("kvs", ())
        entries: list[tuple[int, TrashEntry]] = []
        for item in items:
            kv = _KV.parse(item)
            seq_text = kv.key[len(self.layout.trash_root) :].removeprefix("job")
            posting = self._posting(kv, int(seq_text) if seq_text.isdigit() else 0)
            if posting is None:
                continue
            # Upstream's trash holds the bare posting; ours adds why and when.
            extra = json.loads(kv.value).get("trash")
            extra = extra if isinstance(extra, dict) else {}
            try:
                moment = (
                    None if extra.get("trashed_on") is None else _parse_time(extra["trashed_on"])
                )
            except ValueError:
                moment = None
            reason = extra.get("reason")
            attempts = extra.get("attempts", 0)
            entry = TrashEntry(
                posting,
                reason if isinstance(reason, str) else None,
                attempts if isinstance(attempts, int) else 0,
                moment,
            )
            entries.append((kv.mod, entry))
        entries.sort(key=lambda pair: pair[0])  # the revision it was trashed at
        return [entry for _, entry in entries]

    # -- writing --------------------------------------------------------------------------------

    def post(self, posting: Posting) -> Posting:
        document = json.loads(postings.encode(posting))  # unstorable details fail here
        layout = self.layout
        with self._translate(f"post job {posting.name!r}"):
            floor = 0
            for attempt in range(_RETRIES):
                # The counter as this store last left it is usually still right (one poster).
                current = self._counter
                if attempt or current is None:
                    found = self._call("/kv/range", {"key": _b64(layout.sequence)}).get("kvs", ())
                    current = _KV.parse(found[0]) if found else None
                counter = b"0" if current is None else current.value
                if not counter.strip().isdigit():
                    raise exc.JobFailure(
                        f"etcd jobboard could not post job {posting.name!r}: {layout.sequence!r}"
                        f" on etcd {self.where} holds {counter[:40]!r}, not a number"
                    )
                last = int(counter)
                seq = max(last + 1, floor)
                document["sequence"] = seq
                data = layout.job(seq, "data")
                # Both the counter and a free data key are pinned: a concurrent poster (ours
                # or upstream's, which writes the two apart) makes this one try again.
                compare = [_mod_is(layout.sequence, 0 if current is None else current.mod)]
                compare.append(_mod_is(data, 0))
                text = json.dumps(document)
                success = [_put(layout.sequence, str(seq)), _put(data, text)]
                done, revision = self._txn(compare, success)
                if done:
                    self._counter = _KV(layout.sequence, str(seq).encode(), 0, revision, 0)
                    self._seqs[posting.uuid] = seq
                    self._remember(_Job(seq, _KV(data, text.encode(), revision, revision, 0)))
                    self._wake.set()
                    return dataclasses.replace(posting, sequence=seq)
                self._counter = None
                if current is not None and self._mod(layout.sequence) == current.mod:
                    floor = seq + 1  # the counter is behind a job that exists: skip it
        raise exc.JobFailure(
            f"etcd jobboard could not post job {posting.name!r}: too much contention"
        )

    def _mod(self, key: str) -> int:
        found = self._call("/kv/range", {"key": _b64(key), "keys_only": True}).get("kvs", ())
        return _KV.parse(found[0]).mod if found else 0

    def claim(self, uuid: str, owner: str, lease: float, dedicated: bool = False) -> int:
        """Also ``dedicated``: the claim gets a lease of its own (one nobody renews)."""
        what = f"claim job {uuid}"
        for attempt in range(_RETRIES):
            job, fresh = self._view(uuid, what, attempt)
            if (job is None or job.data is None or job.lock is not None) and not fresh:
                continue  # what was remembered says no: ask etcd
            if job is None or job.data is None:
                raise exc.NotFound(f"Job {uuid} not found to be claimed")
            if job.lock is not None:
                claim = self._claim_of(job.lock)
                holder = "someone" if claim is None else repr(claim.owner)
                raise exc.UnclaimableJob(f"Job {uuid} already claimed by {holder}")
            stamp = self._stamp_of(job.last_modified)
            layout = self.layout
            with self._translate(what):
                lease_id = self._lease(lease, dedicated)
                lock = json.dumps({"owner": owner, "lease_id": lease_id})
                mark = {
                    "last_modified": _now_text(),
                    "claims": stamp.claims + 1,
                    "owner": owner,
                }
                compare = [
                    _mod_is(job.data.key, job.data.mod),
                    _mod_is(layout.job(job.seq, "lock"), 0),
                    _mod_is(
                        layout.job(job.seq, "last_modified"),
                        job.last_modified.mod if job.last_modified else 0,
                    ),
                ]
                success = [
                    _put(layout.job(job.seq, "lock"), lock, lease_id),
                    _put(layout.job(job.seq, "last_modified"), json.dumps(mark)),
                ]
                answer = self._txn_on_lease(lease_id, compare, success)
            if answer is not None and answer[0]:
                revision = answer[1]
                lock_key, stamp_key = (
                    layout.job(job.seq, "lock"),
                    layout.job(job.seq, "last_modified"),
                )
                lock_kv = _KV(lock_key, lock.encode(), revision, revision, lease_id)
                created = revision if job.last_modified is None else job.last_modified.create
                stamp_kv = _KV(stamp_key, json.dumps(mark).encode(), created, revision, 0)
                self._remember(_Job(job.seq, job.data, lock_kv, stamp_kv))
                self._wake.set()
                return revision
            if dedicated:  # lost the race: nobody else will ever use it
                self._revoke(lease_id)
        raise exc.JobFailure(f"etcd jobboard could not {what}: too much contention")

    def _revoke(self, lease_id: int) -> None:
        """Best effort: an unrevoked lease ends by itself after its TTL."""
        with contextlib.suppress(Exception), self._translate("revoke a lease"):
            self._call("/kv/lease/revoke", {"ID": lease_id})

    def renew(self, uuid: str, owner: str, token: int, lease: float) -> bool:
        what = f"renew the claim on job {uuid}"
        layout = self.layout
        for _ in range(3):
            job = self._job(uuid, what)
            if job is None or job.data is None:
                return False
            if job.lock is not None:
                claim = self._claim_of(job.lock)
                if claim != _Claim(owner, token) or not job.lock.lease:
                    return False
                if self.keep_alive(job.lock.lease):
                    return True
                continue  # the lease ended just now: its lock is gone, see below
            # The claim lapsed. If nobody claimed or released since (the stamp the claim
            # wrote is untouched), it is revived on a new lease under the same token.
            stamp_kv = job.last_modified
            if stamp_kv is None or stamp_kv.mod != token or self._stamp_of(stamp_kv).owner != owner:
                return False
            with self._translate(what):
                lease_id = self._lease(lease)
                lock = json.dumps({"owner": owner, "lease_id": lease_id, "token": token})
                compare = [
                    _mod_is(job.data.key, job.data.mod),
                    _mod_is(layout.job(job.seq, "lock"), 0),
                    _mod_is(stamp_kv.key, token),
                ]
                put = [_put(layout.job(job.seq, "lock"), lock, lease_id)]
                revived = self._txn_on_lease(lease_id, compare, put)
            if revived is not None and revived[0]:
                LOG.info("Revived the lapsed claim of %s on job %s (token %s)", owner, uuid, token)
                return True
        return False

    def release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None:
        verb, what = outcome.value, f"{outcome.value} job {uuid}"
        layout = self.layout
        for attempt in range(_RETRIES):
            job, fresh = self._view(uuid, what, attempt)
            if job is None or job.data is None:
                if not fresh:
                    continue
                raise exc.NotFound(f"Job {uuid} not found to be {_PAST[outcome]}")
            stamp = self._stamp_of(job.last_modified)
            claim: _Claim | None = None
            if job.lock is not None:
                claim = self._claim_of(job.lock)
            elif (
                token is not None
                and job.last_modified is not None
                and job.last_modified.mod == token
                and stamp.owner == owner
            ):
                claim = _Claim(owner, token)  # lapsed, and nobody claimed it since
            if not fresh and (claim is None or claim.owner != owner or token != claim.token):
                continue  # what was remembered says no: ask etcd
            if claim is None:
                raise exc.NotFound(
                    f"Can not {verb} job {uuid} which we can not determine the owner of"
                )
            if claim.owner != owner:
                raise exc.JobFailure(
                    f"Can not {verb} job {uuid} which is not owned by {owner}"
                    f" (it is actively owned by {claim.owner})"
                )
            if token is not None and token != claim.token:
                raise exc.JobFailure(
                    f"Can not {verb} job {uuid}: the claim of {owner} with token {token} was"
                    f" lost (the job is now claimed with token {claim.token})"
                )
            stamp_key = layout.job(job.seq, "last_modified")
            compare = [
                _mod_is(job.data.key, job.data.mod),
                _mod_is(layout.job(job.seq, "lock"), 0 if job.lock is None else job.lock.mod),
                _mod_is(stamp_key, 0 if job.last_modified is None else job.last_modified.mod),
            ]
            success = [_delete(layout.job(job.seq, "lock"))]
            if outcome is Outcome.ABANDON:
                mark = {"last_modified": _now_text(), "claims": stamp.claims}
                success.append(_put(stamp_key, json.dumps(mark)))
            else:
                success += [_delete(job.data.key), _delete(stamp_key)]
            if outcome is Outcome.TRASH:
                document = json.loads(job.data.value)  # decoded by the listing that found it
                document["trash"] = {
                    "reason": reason,
                    "attempts": max(0, stamp.claims - 1),
                    "trashed_on": datetime.now(UTC).isoformat(),
                }
                success.append(_put(layout.trash(job.seq), json.dumps(document)))
            with self._translate(what):
                done, revision = self._txn(compare, success)
            if done:
                if outcome is Outcome.ABANDON:
                    created = revision if job.last_modified is None else job.last_modified.create
                    stamp_kv = _KV(stamp_key, json.dumps(mark).encode(), created, revision, 0)
                    self._remember(_Job(job.seq, job.data, None, stamp_kv))
                else:
                    self._seqs.pop(uuid, None)
                    self._views.pop(job.seq, None)
                # The lock's lease is left to end by itself: it may hold other claims.
                self._wake.set()
                return
        raise exc.JobFailure(f"etcd jobboard could not {what}: too much contention")

    # -- the claim's lease (upstream's EtcdJob.lease, expires_in, extend_expiry) -----------

    def claim_lease(self, uuid: str) -> int | None:
        """The etcd lease id job ``uuid``'s claim lives on, read now (None: not claimed)."""
        job = self._job(uuid, f"read the claim of job {uuid}")
        if job is None or job.lock is None or not job.lock.lease:
            return None
        return job.lock.lease

    def lease_ttl(self, lease_id: int) -> int:
        """Seconds lease ``lease_id`` has left (-1: it has ended)."""
        with self._translate(f"read lease {lease_id}"):
            answer = self._call("/kv/lease/timetolive", {"ID": lease_id})
        return int(answer.get("TTL", -1))

    def keep_alive(self, lease_id: int) -> bool:
        """Renew lease ``lease_id`` for its whole TTL; False if it has ended."""
        with self._translate(f"renew lease {lease_id}"):
            started = time.monotonic()
            answer = self._call("/lease/keepalive", {"ID": lease_id})
        ttl = int(answer.get("result", {}).get("TTL", 0))
        if ttl > 0:
            self._kept_alive(lease_id, started, ttl)
        return ttl > 0

    def register_entity(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        text = json.dumps(metadata, default=str)
        with self._translate(f"register {kind} {name!r}"):
            self._call(
                "/kv/put", {"key": _b64(self.layout.entity(kind, name)), "value": _b64(text)}
            )

    # -- waiting --------------------------------------------------------------------------------

    def interrupt(self) -> None:
        self._wake.set()

    def wait_changed(self, timeout: float) -> bool:
        if self.client is None:
            raise exc.JobFailure(f"etcd jobboard on {self.where} is not connected")
        if self._wake.wait(max(0.0, timeout)):
            # Cleared before the caller reads, so a change after this is never lost.
            self._wake.clear()
            return True
        return False


class _Watch:
    """A thread streaming etcd's watch of the board's keys; each change sets ``store._wake``.

    The stream is opened from ``revision`` and, whenever it ends (idle for
    :data:`_WATCH_IDLE`, a server restart, a network error), re-opened from the revision
    after the last event seen, so changes made while it was closed are still delivered.
    """

    def __init__(self, store: EtcdStore, revision: int, connect_timeout: float) -> None:
        import requests

        client = store._client()
        self._store = store
        self._url = client.get_url("/watch")
        self._revision = revision
        self._connect_timeout = connect_timeout
        # A session of its own: its long-lived connection stays out of the client's pool.
        self._session = requests.Session()
        self._session.verify = client.session.verify
        self._session.cert = client.session.cert
        self._response: requests.Response | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"etcd-jobboard-watch-{store.layout.path}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            response = self._response
        if response is not None:
            _interrupt(response)
        self._thread.join(timeout=self._connect_timeout + _WATCH_IDLE)
        self._session.close()

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                self._stream()
                delay = 0.05
            except Exception as err:
                if self._stop.is_set():
                    return
                LOG.debug("etcd jobboard watch on %s ended: %s", self._store.where, err)
                # Wake waiters anyway: an error may hide a compaction we did not see.
                self._store._wake.set()
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)

    def _stream(self) -> None:
        root = self._store.layout.root
        request: dict[str, Any] = {
            "create_request": {
                "key": _b64(root),
                "range_end": _prefix_end(root),
                "start_revision": self._revision,
            }
        }
        response = self._session.post(
            self._url,
            json=request,
            stream=True,
            timeout=(min(self._connect_timeout, _WATCH_IDLE), _WATCH_IDLE),
        )
        with self._lock:
            self._response = response
        try:
            if self._stop.is_set():
                return
            response.raise_for_status()
            pending = b""
            for chunk in response.iter_content(chunk_size=None):
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip() and not self._handle(json.loads(line)):
                        return
        except Exception as err:
            if self._stop.is_set() or _idle(err):
                return  # closing, or a quiet stream: re-opened from the same revision
            raise
        finally:
            with self._lock:
                self._response = None
            response.close()

    def _handle(self, message: Mapping[str, Any]) -> bool:
        """Take one watch response; False when the stream must be re-opened."""
        if "error" in message:
            raise exc.JobFailure(f"etcd watch failed: {message['error']}")
        result = message.get("result", {})
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            # Events before ``compacted`` are gone: resume there and assume a change.
            self._revision = max(self._revision, compacted)
            self._store._wake.set()
            return False
        events = result.get("events")
        if events:
            last = max(int(event["kv"].get("mod_revision", 0)) for event in events)
            self._revision = max(self._revision, last + 1)
            self._store._wake.set()
        return not result.get("canceled", False)


def _idle(err: BaseException) -> bool:
    """Whether ``err`` is the read timeout of a stream that had nothing to say."""
    from urllib3.exceptions import ReadTimeoutError

    # requests wraps urllib3's timeout in its ConnectionError while streaming.
    return isinstance(err, ReadTimeoutError) or any(
        isinstance(arg, ReadTimeoutError) for arg in getattr(err, "args", ())
    )


def _interrupt(response: requests.Response) -> None:
    """Unblock a thread reading ``response``'s stream (closing alone does not)."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()
