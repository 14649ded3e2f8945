"""The jobboard store on Redis, sharing upstream TaskFlow 6.5's on-board layout.

Theory of operation
-------------------
A board is a *namespace* (``taskflow`` by default); all its keys start with ``<ns>:``.
These keys are upstream's, written exactly as upstream writes them, so upstream's boards
and ours can share one namespace during a migration (a mixed fleet):

===============================  ==========================================================
``<ns>:listings``                hash: job uuid -> posting (msgpack, see
                                 :mod:`~taskflow._jobs.msgpack_postings`)
``<ns>:sequence``                string: counter ``INCR``\\ ed by every posting; the
                                 posting's ``sequence`` (oldest first order)
``<ns>:<uuid>.owned``            string: the claim's owner, raw text; a claim exists
                                 exactly while this key does. Its ``PEXPIRE`` is the lease
``<ns>:<uuid>.last_modified``    string: msgpack datetime of the last claim or abandon
``<ns>:trash``                   hash: job uuid -> posting of a trashed job
===============================  ==========================================================

and these are ours, which upstream never reads:

===============================  ==========================================================
``<ns>:claims``                  hash: job uuid -> JSON ``{"token", "attempts", "holder",
                                 "stamp", "reason", "trashed_on"}``: the fencing token
                                 counter, the attempts, our current (or lapsed) claim, and
                                 a trashed job's reason and time
``<ns>:changes``                 string: counter bumped by every change we make, polled by
                                 waiters (with ``sequence`` and the listings' length, which
                                 upstream's posts and removals change)
``<ns>:entities``                hash: ``<kind>:<name>`` -> JSON metadata
===============================  ==========================================================

Every change is one Lua script, so it is atomic (a crash leaves no job or a whole one, no
half-claimed job). A claim sets the owner key with the lease as its ``PEXPIRE`` (on the
server's clock), increments the job's token and records the claim as ours with a *stamp*:
the SHA-1 of the ``last_modified`` value it wrote. Upstream's claim rewrites that value, so
a renewal or release compares the stamp to tell our claim from a later claim by an
upstream board, even one using the same owner name, and fences the former holder. Our
record is left behind when an upstream board consumes a job; listing removes such orphans
now and then. Reads of all jobs are one script too (one round trip, one snapshot).

Upstream's claims never lapse unless made with an ``expiry``; ours always do (the board
renews them). A re-claim by the holder fails without refreshing the lease (upstream
refreshes it, so a replacement with the same name kept a dead holder's job alive).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_exc
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from taskflow import exceptions as exc
from taskflow._config import as_float, as_int, to_bool
from taskflow._jobs import msgpack_postings
from taskflow._jobs.store import Listing, Outcome, TrashEntry
from taskflow.utils import redis_utils

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from taskflow._jobs.store import Posting

__all__ = [
    "CLIENT_CONF_TRANSFERS",
    "DEFAULT_NAMESPACE",
    "KEY_PIECE_SEP",
    "LAST_MODIFIED_POSTFIX",
    "MIN_REDIS_VERSION",
    "NAMESPACE_SEP",
    "OWNED_POSTFIX",
    "RedisStore",
    "client_options",
    "make_client",
    "namespace_of",
]

LOG = logging.getLogger("taskflow.jobs")

DEFAULT_NAMESPACE = "taskflow"
NAMESPACE_SEP = b":"
KEY_PIECE_SEP = b"."
OWNED_POSTFIX = b".owned"
LAST_MODIFIED_POSTFIX = b".last_modified"
#: Lua scripting (``EVALSHA``), ``PEXPIRE`` and ``PTTL`` arrived in Redis 2.6.
MIN_REDIS_VERSION = (2, 6)
#: Seconds between two polls of the change counters by a waiter.
POLL_INTERVAL = 0.01
#: Seconds between two removals of our records of jobs gone through an upstream board.
_ORPHAN_SWEEP_INTERVAL = 60.0


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


#: The client options upstream reads from the configuration, with their conversions (a
#: value that does not convert is an error naming its key).
CLIENT_CONF_TRANSFERS: tuple[tuple[str, Callable[[Any, str], Any]], ...] = (
    ("host", lambda v, k: _to_str(v)),
    ("port", lambda v, k: as_int({k: v}, k, None)),
    ("username", lambda v, k: _to_str(v)),
    ("password", lambda v, k: _to_str(v)),
    ("encoding", lambda v, k: _to_str(v)),
    ("encoding_errors", lambda v, k: _to_str(v)),
    ("socket_timeout", lambda v, k: as_float({k: v}, k, None)),
    ("socket_connect_timeout", lambda v, k: as_float({k: v}, k, None)),
    ("retry_on_timeout", to_bool),
    ("health_check_interval", lambda v, k: as_int({k: v}, k, None)),
    ("unix_socket_path", lambda v, k: _to_str(v)),
    ("ssl", to_bool),
    ("ssl_keyfile", lambda v, k: _to_str(v)),
    ("ssl_certfile", lambda v, k: _to_str(v)),
    ("ssl_cert_reqs", lambda v, k: _to_str(v)),
    ("ssl_ca_certs", lambda v, k: _to_str(v)),
    ("db", lambda v, k: as_int({k: v}, k, None)),
)

# -- Lua -----------------------------------------------------------------------------------------
# Every script reads our record of a job with load(): a missing or unreadable one is empty.
_LOAD = """
local function load(raw)
  if not raw then return {} end
  local ok, rec = pcall(cjson.decode, raw)
  if ok and type(rec) == 'table' then return rec end
  return {}
end
"""

# KEYS: listings, sequence, changes. ARGV: uuid, the posting up to its "sequence" key.
_POST = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return false end
local sequence = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. cmsgpack.pack(sequence))
redis.call('INCR', KEYS[3])
return sequence
"""

# KEYS: listings, owned, last_modified, claims, changes.
# ARGV: uuid, owner, lease (ms), last_modified value.
_CLAIM = (
    _LOAD
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'missing'} end
local owner = redis.call('GET', KEYS[2])
if owner then return {'held', owner} end
local rec = load(redis.call('HGET', KEYS[4], ARGV[1]))
local attempts = tonumber(rec.attempts) or 0
if rec.holder then attempts = attempts + 1 end  -- our earlier claim lapsed
local token = (tonumber(rec.token) or 0) + 1
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
rec.token = token
rec.attempts = attempts
rec.holder = ARGV[2]
rec.stamp = redis.sha1hex(ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(rec))
redis.call('INCR', KEYS[5])
return {'ok', token}
"""
)

# KEYS: listings, owned, last_modified, claims, changes. ARGV: uuid, owner, token, lease (ms).
_RENEW = (
    _LOAD
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local rec = load(redis.call('HGET', KEYS[4], ARGV[1]))
if rec.holder ~= ARGV[2] or tonumber(rec.token) ~= tonumber(ARGV[3]) then return 0 end
-- An upstream board's claim since ours rewrote last_modified.
if rec.stamp ~= redis.sha1hex(redis.call('GET', KEYS[3]) or '') then return 0 end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[2] then return 0 end
if not owner then
  -- Lapsed, and nobody claimed it since: it is ours again.
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('INCR', KEYS[5])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""
)

# KEYS: listings, owned, last_modified, claims, trash, changes.
# ARGV: uuid, owner, token ('' = any claim of that owner), outcome, last_modified value,
#       reason, '1' if there is a reason, trashed_on.
_RELEASE = (
    _LOAD
    + """
local posting = redis.call('HGET', KEYS[1], ARGV[1])
if not posting then return {'missing'} end
local owner = redis.call('GET', KEYS[2])
local rec = load(redis.call('HGET', KEYS[4], ARGV[1]))
local stamped = rec.holder ~= nil and rec.stamp == redis.sha1hex(redis.call('GET', KEYS[3]) or '')
local ours = stamped and rec.holder == ARGV[2]
local token = ARGV[3]
if not owner then
  -- Lapsed: still releasable by its holder if nobody claimed it since.
  if token == '' or not ours or tonumber(rec.token) ~= tonumber(token) then
    return {'unowned'}
  end
elseif owner ~= ARGV[2] then
  return {'other', owner}
elseif token ~= '' and not (ours and tonumber(rec.token) == tonumber(token)) then
  return {'lost', tostring(rec.token or 0)}
end
local attempts = tonumber(rec.attempts) or 0
if rec.holder and not ours then attempts = attempts + 1 end  -- a lapsed claim of ours before
rec.holder = nil
rec.stamp = nil
if ARGV[4] == 'consume' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HDEL', KEYS[4], ARGV[1])
elseif ARGV[4] == 'abandon' then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[3], ARGV[5])
  rec.attempts = attempts + 1
  redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(rec))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[5], ARGV[1], posting)
  redis.call('DEL', KEYS[2], KEYS[3])
  rec.attempts = attempts
  rec.trashed_on = ARGV[8]
  if ARGV[7] == '1' then rec.reason = ARGV[6] end
  redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(rec))
end
redis.call('INCR', KEYS[6])
return {'ok'}
"""
)

# KEYS: listings, claims. ARGV: key prefix ('<ns>:').
# Returns uuid, posting, owner, last_modified, record for each job (missing ones as nil).
_LIST = """
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local uuid = all[i]
  out[#out + 1] = uuid
  out[#out + 1] = all[i + 1]
  out[#out + 1] = redis.call('GET', ARGV[1] .. uuid .. '.owned')
  out[#out + 1] = redis.call('GET', ARGV[1] .. uuid .. '.last_modified')
  out[#out + 1] = redis.call('HGET', KEYS[2], uuid)
end
return out
"""

# KEYS: trash, claims. Returns uuid, posting, record for each trashed job.
_TRASHED = """
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  out[#out + 1] = all[i]
  out[#out + 1] = all[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], all[i])
end
return out
"""

# KEYS: listings, trash, claims. Drops our records of jobs that are neither.
_SWEEP = """
local dropped = 0
for _, uuid in ipairs(redis.call('HKEYS', KEYS[3])) do
  if redis.call('HEXISTS', KEYS[1], uuid) == 0 and redis.call('HEXISTS', KEYS[2], uuid) == 0 then
    redis.call('HDEL', KEYS[3], uuid)
    dropped = dropped + 1
  end
end
return dropped
"""


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Driver errors -> JobFailure naming the operation (the one place this happens)."""
    try:
        yield
    except (redis_exc.RedisError, OSError) as err:
        raise exc.JobFailure(f"Redis jobboard could not {what}: {err}") from err


def _host_of(hostname: str, port: Any) -> str:
    """The host of a board URI's ``hostname`` (``host`` or ``host:port``, IPv6 too)."""
    if hostname.startswith("["):
        return hostname[1 : hostname.index("]")]
    suffix = f":{port}"
    if port is not None and hostname.endswith(suffix):
        return hostname[: -len(suffix)]
    return hostname


def _parse_sentinel(text: str) -> tuple[str, int]:
    """``'host:port'`` (``'[::1]:26379'``) of a fallback sentinel.

    Raises:
        ValueError: not ``host:port`` with an integer port.
    """
    host, sep, port = str(text).rpartition(":")
    if not sep:
        raise ValueError(f"'sentinel_fallbacks' entries must be 'host:port', not {text!r}")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"'sentinel_fallbacks' entry {text!r} has no integer port") from None


def _fallbacks(conf: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The ``sentinel_fallbacks`` key: a list of ``'host:port'`` (a URI gives them
    comma-separated)."""
    fallbacks = conf.get("sentinel_fallbacks") or []
    if isinstance(fallbacks, str):
        fallbacks = [item for item in fallbacks.split(",") if item.strip()]
    return [_parse_sentinel(item) for item in fallbacks]


def client_options(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The redis-py client keywords ``conf`` gives (``CLIENT_CONF_TRANSFERS``).

    Raises:
        ValueError: a value that does not convert (the key is named).
    """
    options: dict[str, Any] = {}
    for key, convert in CLIENT_CONF_TRANSFERS:
        value = conf.get(key)
        if value is not None:
            options[key] = convert(value, key)
    if "host" not in options and conf.get("hostname"):
        # What a board URI (redis://host:port) carries; upstream ignores it.
        options["host"] = _host_of(str(conf["hostname"]), conf.get("port"))
    if not options.get("ssl"):
        options = {k: v for k, v in options.items() if not k.startswith("ssl")}
    return options


def make_client(conf: Mapping[str, Any], connect_timeout: float) -> Any:
    """A (not yet connected) client for ``conf``: a plain server or through sentinels.

    Raises:
        ValueError: a bad configuration value (the key is named).
    """
    options = client_options(conf)
    options.setdefault("socket_connect_timeout", connect_timeout)
    # A few quick retries ride out a dropped connection; redis-py's default backs off for
    # up to ten seconds, far longer than a lease.
    options["retry"] = Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)
    with contextlib.suppress(ImportError):
        from redis.maint_notifications import MaintNotificationsConfig

        # Maintenance push notifications need RESP3; a board speaks RESP2.
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    master = conf.get("sentinel")
    if not master:
        return redis_utils.RedisClient(**options)
    from redis import sentinel

    sentinels = [(options.pop("host", "localhost"), options.pop("port", 26379))]
    sentinels.extend(_fallbacks(conf))
    sentinel_kwargs = conf.get("sentinel_kwargs")
    if sentinel_kwargs is not None and not isinstance(sentinel_kwargs, dict):
        raise ValueError(f"'sentinel_kwargs' must be a dict, not {sentinel_kwargs!r}")
    manager = sentinel.Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **options)
    return manager.master_for(str(master), redis_class=redis_utils.RedisClient)


def namespace_of(conf: Mapping[str, Any]) -> str:
    """The ``namespace`` key (:data:`DEFAULT_NAMESPACE` when absent).

    Raises:
        ValueError: not a non-empty string.
    """
    namespace = conf.get("namespace", DEFAULT_NAMESPACE)
    if isinstance(namespace, bytes):
        namespace = namespace.decode("utf-8")
    if not isinstance(namespace, str) or not namespace:
        raise ValueError(f"'namespace' must be a non-empty string, not {namespace!r}")
    return namespace


def _now() -> datetime:
    return datetime.now(UTC)


class RedisStore:
    """A :class:`~taskflow._jobs.store.BoardStore` on one Redis namespace.

    Args:
        conf: the board's configuration (see ``taskflow.jobs.backends.impl_redis``);
            checked here, before anything connects.
        client: a redis-py client to use instead of making one from ``conf`` (not closed
            by :meth:`close`: it belongs to the caller).
    """

    def __init__(self, conf: Mapping[str, Any], client: Any = None) -> None:
        self.conf = dict(conf)
        self.namespace = namespace_of(conf)
        # Probe the client options now, so a bad one is reported at construction.
        self._options = client_options(conf)
        if conf.get("sentinel"):
            _fallbacks(conf)
        self.encoding = self._options.get("encoding", "utf-8")
        self.encoding_errors = self._options.get("encoding_errors", "strict")
        if self._options.get("unix_socket_path"):
            self.where = f"unix://{self._options['unix_socket_path']}"
        else:
            host = self._options.get("host", "localhost")
            self.where = f"redis://{host}:{self._options.get('port', 6379)}"
        if conf.get("sentinel"):
            self.where = f"sentinel master {conf['sentinel']!r} via {self.where}"
        self.where += f" (namespace {self.namespace!r})"
        self._given = client
        self.client: Any = None
        self.server_version = ""
        prefix = self.namespace.encode("utf-8") + NAMESPACE_SEP
        self.prefix = prefix
        self.listings_key = prefix + b"listings"
        self.sequence_key = prefix + b"sequence"
        self.trash_key = prefix + b"trash"
        self.claims_key = prefix + b"claims"
        self.changes_key = prefix + b"changes"
        self.entities_key = prefix + b"entities"
        self._scripts: dict[str, Any] = {}
        self._wake = threading.Event()
        self._seen: tuple[Any, ...] | None = None
        # Decoded postings by uuid, with the bytes they came from: postings never change.
        self._decoded: dict[str, tuple[bytes, Posting | None]] = {}
        self._decoded_lock = threading.Lock()
        self._next_sweep = 0.0

    # -- keys -----------------------------------------------------------------------------------

    def join(self, *pieces: str | bytes) -> bytes:
        """``<ns>:`` followed by ``pieces`` joined with ``.`` (upstream's key scheme)."""
        encoded = [p if isinstance(p, bytes) else p.encode("utf-8") for p in pieces]
        return self.prefix + KEY_PIECE_SEP.join(encoded)

    def owner_key(self, uuid: str) -> bytes:
        return self.join(uuid) + OWNED_POSTFIX

    def last_modified_key(self, uuid: str) -> bytes:
        return self.join(uuid) + LAST_MODIFIED_POSTFIX

    # -- lifecycle ------------------------------------------------------------------------------

    def connect(self, timeout: float) -> None:
        client = self._given if self._given is not None else make_client(self.conf, timeout)
        try:
            version = self._probe(client, timeout)
        except BaseException:
            if client is not self._given:
                client.close()
            raise
        self.client, self.server_version = client, version
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("post", _POST),
                ("claim", _CLAIM),
                ("renew", _RENEW),
                ("release", _RELEASE),
                ("list", _LIST),
                ("trashed", _TRASHED),
                ("sweep", _SWEEP),
            )
        }
        self._seen = self._poll()

    def _probe(self, client: Any, timeout: float) -> str:
        """The server's version, asked within ``timeout`` seconds.

        Raises:
            taskflow.exceptions.JobFailure: no answer in time, an error, or a server older
                than :data:`MIN_REDIS_VERSION`.
        """
        answer: list[Any] = []

        def ask() -> None:
            try:
                answer.append(redis_utils.is_server_new_enough(client, MIN_REDIS_VERSION))
            except BaseException as err:
                answer.append(err)

        # The client's own timeouts and retries may add up to more than ``timeout``: ask
        # from a thread and stop waiting for it at the deadline.
        asker = threading.Thread(target=ask, name="redis-jobboard-connect", daemon=True)
        asker.start()
        asker.join(timeout)
        if not answer:
            raise exc.JobFailure(f"Redis jobboard at {self.where} did not answer in {timeout} s")
        result = answer[0]
        if isinstance(result, BaseException):
            with _translate(f"connect to {self.where}"):
                raise result
        new_enough, version = result
        if not new_enough:
            wanted = ".".join(map(str, MIN_REDIS_VERSION))
            raise exc.JobFailure(
                f"Redis jobboard at {self.where} needs Redis {wanted} or newer, not {version}"
            )
        return str(version)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and client is not self._given:
            with contextlib.suppress(Exception):
                client.close()
        self._wake.set()

    def _connected(self) -> Any:
        client = self.client
        if client is None:
            raise exc.JobFailure(f"Redis jobboard at {self.where} is not connected")
        return client

    def _run(self, name: str, keys: list[bytes], args: list[Any], what: str) -> Any:
        client = self._connected()
        with _translate(what):
            return self._scripts[name](keys=keys, args=args, client=client)

    # -- reading --------------------------------------------------------------------------------

    def _text(self, raw: bytes) -> str:
        return raw.decode(self.encoding, self.encoding_errors)

    def _record(self, raw: bytes | None) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            record = json.loads(self._text(raw))
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def _posting(self, uuid: str, raw: bytes, where: bytes) -> Posting | None:
        with self._decoded_lock:
            cached = self._decoded.get(uuid)
        if cached is not None and cached[0] == raw:
            return cached[1]
        label = f"{uuid!r} of {where.decode('utf-8', 'replace')} in {self.where}"
        posting = msgpack_postings.decode(raw, label, uuid)
        with self._decoded_lock:
            self._decoded[uuid] = (raw, posting)
        return posting

    def _listing(
        self, uuid: str, raw: bytes, owner_raw: bytes | None, modified: bytes | None, rec: Any
    ) -> Listing | None:
        posting = self._posting(uuid, raw, self.listings_key)
        if posting is None:
            return None
        record = self._record(rec)
        holder = record.get("holder")
        owner = None if owner_raw is None else self._text(owner_raw)
        stamp = hashlib.sha1(modified or b"").hexdigest()
        attempts = _int(record.get("attempts"))
        token: int | None = None
        if owner is not None and holder == owner and record.get("stamp") == stamp:
            token = _int(record.get("token"))  # our claim, live
        elif holder is not None:
            attempts += 1  # our claim lapsed (and maybe an upstream board claimed since)
        return Listing(
            posting=posting,
            owner=owner,
            token=token,
            attempts=attempts,
            last_modified=msgpack_postings.decode_datetime(modified),
        )

    def listings(self) -> list[Listing]:
        flat = self._run("list", [self.listings_key, self.claims_key], [self.prefix], "list jobs")
        listings = []
        seen = set()
        for i in range(0, len(flat), 5):
            uuid = self._text(flat[i])
            seen.add(uuid)
            listing = self._listing(uuid, *flat[i + 1 : i + 5])
            if listing is not None:
                listings.append(listing)
        with self._decoded_lock:
            for uuid in [u for u in self._decoded if u not in seen]:
                del self._decoded[uuid]
        self._sweep_orphans()
        return listings

    def get(self, uuid: str) -> Listing | None:
        client = self._connected()
        with _translate(f"read job {uuid}"):
            pipe = client.pipeline(transaction=True)
            pipe.hget(self.listings_key, uuid)
            pipe.get(self.owner_key(uuid))
            pipe.get(self.last_modified_key(uuid))
            pipe.hget(self.claims_key, uuid)
            raw, owner, modified, rec = pipe.execute()
        if raw is None:
            return None
        return self._listing(uuid, raw, owner, modified, rec)

    def trash(self) -> list[TrashEntry]:
        flat = self._run("trashed", [self.trash_key, self.claims_key], [], "list the trash")
        entries = []
        for i in range(0, len(flat), 3):
            uuid = self._text(flat[i])
            posting = msgpack_postings.decode(
                flat[i + 1], f"{uuid!r} of {self.trash_key.decode()} in {self.where}", uuid
            )
            if posting is None:
                continue
            record = self._record(flat[i + 2])
            trashed_on = None
            with contextlib.suppress(TypeError, ValueError):
                trashed_on = datetime.fromisoformat(record["trashed_on"])
            reason = record.get("reason")
            entries.append(
                TrashEntry(
                    posting,
                    reason if isinstance(reason, str) else None,
                    _int(record.get("attempts")),
                    trashed_on,
                )
            )
        oldest = datetime.min.replace(tzinfo=UTC)
        entries.sort(key=lambda e: (e.trashed_on or oldest, e.posting.sequence))
        return entries

    def _sweep_orphans(self) -> None:
        """Drop our records of jobs an upstream board consumed (at most once a minute)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _ORPHAN_SWEEP_INTERVAL
        keys = [self.listings_key, self.trash_key, self.claims_key]
        dropped = self._run("sweep", keys, [], "sweep job records")
        if dropped:
            LOG.debug("Redis jobboard %s: dropped %d orphaned claim records", self.where, dropped)

    # -- writing --------------------------------------------------------------------------------

    def post(self, posting: Posting) -> Posting:
        prefix = msgpack_postings.encode_prefix(posting)  # bad details fail before any write
        keys = [self.listings_key, self.sequence_key, self.changes_key]
        sequence = self._run("post", keys, [posting.uuid, prefix], f"post job {posting.name!r}")
        if sequence is None:
            raise exc.JobFailure(f"Job {posting.uuid} is already on {self.where}")
        self._wake.set()
        return dataclasses.replace(posting, sequence=int(sequence))

    def _job_keys(self, uuid: str) -> list[bytes]:
        return [
            self.listings_key,
            self.owner_key(uuid),
            self.last_modified_key(uuid),
            self.claims_key,
        ]

    def claim(self, uuid: str, owner: str, lease: float) -> int:
        modified = msgpack_postings.encode_datetime(_now())
        answer = self._run(
            "claim",
            [*self._job_keys(uuid), self.changes_key],
            [uuid, owner, _millis(lease), modified],
            f"claim job {uuid}",
        )
        status = answer[0]
        if status == b"missing":
            raise exc.NotFound(f"Job {uuid} not found to be claimed")
        if status == b"held":
            raise exc.UnclaimableJob(f"Job {uuid} already claimed by {self._text(answer[1])}")
        self._wake.set()
        return int(answer[1])

    def renew(self, uuid: str, owner: str, token: int, lease: float) -> bool:
        kept = self._run(
            "renew",
            [*self._job_keys(uuid), self.changes_key],
            [uuid, owner, token, _millis(lease)],
            f"renew the claim on job {uuid}",
        )
        return bool(kept)

    def release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None:
        verb = outcome.value
        answer = self._run(
            "release",
            [*self._job_keys(uuid), self.trash_key, self.changes_key],
            [
                uuid,
                owner,
                "" if token is None else token,
                verb,
                msgpack_postings.encode_datetime(_now()),
                reason or "",
                "0" if reason is None else "1",
                _now().isoformat(),
            ],
            f"{verb} job {uuid}",
        )
        status = answer[0]
        past = {Outcome.CONSUME: "consumed", Outcome.ABANDON: "abandoned"}.get(outcome, "trashed")
        if status == b"missing":
            raise exc.NotFound(f"Job {uuid} not found to be {past}")
        if status == b"unowned":
            raise exc.NotFound(f"Can not {verb} job {uuid} which we can not determine the owner of")
        if status == b"other":
            raise exc.JobFailure(
                f"Can not {verb} job {uuid} which is not owned by {owner}"
                f" (it is actively owned by {self._text(answer[1])})"
            )
        if status == b"lost":
            raise exc.JobFailure(
                f"Can not {verb} job {uuid}: the claim of {owner} with token {token} was lost"
                f" (the job is now claimed with token {self._text(answer[1])})"
            )
        self._wake.set()

    def register_entity(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        client = self._connected()
        text = json.dumps(metadata, default=str)
        with _translate(f"register {kind} {name!r}"):
            client.hset(self.entities_key, f"{kind}:{name}", text)

    # -- expiry (RedisJob) ----------------------------------------------------------------------

    def expires_in(self, uuid: str) -> float | redis_utils.UnknownExpire:
        """Seconds left on the claim of job ``uuid`` (see :func:`redis_utils.get_expiry`)."""
        client = self._connected()
        with _translate(f"read the expiry of job {uuid}"):
            return redis_utils.get_expiry(client, self.owner_key(uuid))

    def extend_expiry(self, uuid: str, expiry: float) -> bool:
        """Make the claim on job ``uuid`` lapse ``expiry`` seconds from now; whether held."""
        client = self._connected()
        with _translate(f"extend the expiry of job {uuid}"):
            return redis_utils.apply_expiry(client, self.owner_key(uuid), expiry)

    # -- waiting --------------------------------------------------------------------------------

    def _poll(self) -> tuple[Any, ...]:
        client = self._connected()
        with _translate("poll for changes"):
            pipe = client.pipeline(transaction=False)
            pipe.mget([self.changes_key, self.sequence_key])
            pipe.hlen(self.listings_key)
            counters, length = pipe.execute()
        return (*counters, length)

    def wait_changed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            state = self._poll()
            if state != self._seen:
                self._seen = state
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._wake.wait(min(POLL_INTERVAL, left)):
                # Our own write (seen at the next poll anyway) or interrupt(): answer now.
                self._wake.clear()
                with contextlib.suppress(exc.JobFailure):
                    self._seen = self._poll()  # this True covers what the poll sees
                return True

    def interrupt(self) -> None:
        self._wake.set()


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
