"""A jobboard on Redis, sharing its keys with upstream TaskFlow's Redis board.

``fetch('board', {'board': 'redis', 'host': 'redis.example', 'namespace': 'billing'})`` or
``fetch('board', 'redis://redis.example:6379?namespace=billing')``. Upstream TaskFlow 6.5
boards on the same namespace see the same jobs: each side lists, claims and consumes jobs
the other posted (the layout is in :mod:`taskflow._jobs.redis`), so a fleet can move over
one conductor at a time. Needs Redis 2.6 or newer and ``pip install taskflow[redis]``.

Configuration keys:

==========================  ====================================================================
``namespace``               prefix of every key of the board (default ``taskflow``)
``host``, ``port``          the server (default ``localhost:6379``; a URI's host and port too)
``db``, ``username``,       as redis-py's client takes them
``password``, ``encoding``,
``encoding_errors``,
``socket_timeout``,
``socket_connect_timeout``,
``retry_on_timeout``,
``health_check_interval``,
``unix_socket_path``
``ssl``, ``ssl_keyfile``,   TLS (the ``ssl_*`` keys are used only when ``ssl`` is true)
``ssl_certfile``,
``ssl_cert_reqs``,
``ssl_ca_certs``
``sentinel``                the master's name: ``host``/``port`` are then a Redis Sentinel's,
``sentinel_fallbacks``      with more sentinels as ``'host:port'`` strings, and
``sentinel_kwargs``         keywords for the sentinel connections
``lease``                   seconds a claim lasts without renewal (default 3); the board renews
                            the claims it holds every ``lease / 3`` seconds, so a dead or paused
                            holder's job is claimable again at most ``lease`` seconds after it
                            stopped (upstream's claims never lapse)
``connect_timeout``         seconds ``connect()`` may take (default 10)
==========================  ====================================================================

A value that does not convert is a ``ValueError`` naming its key; other keys are ignored.

Differences from upstream, on purpose: jobs are handed out by priority then *oldest* first
(upstream: newest first); every claim lapses unless renewed (see ``lease``), and a
re-claim by the holder fails without refreshing its lease; ``find_owner`` of an unclaimed
job is None (upstream raises ``TypeError``). Details with tuples, sets or non-string keys
are stored in :mod:`taskflow._serialization`'s encoding, which upstream reads as plain
dicts. Beyond upstream's API: ``job.token``, ``job.attempts``, ``board.trash(job, who,
reason=None)``, ``board.iter_trash()``, ``board.wait_for_change()`` and ``board.holds(job)``;
see :mod:`taskflow._jobs` for the guarantees.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskflow._jobs import redis as store
from taskflow._jobs.board import Board, BoardJob
from taskflow._jobs.store import Listing
from taskflow.jobs import base

if TYPE_CHECKING:
    from collections.abc import Callable

    from taskflow.persistence.base import Backend
    from taskflow.utils.redis_utils import UnknownExpire

__all__ = ["RedisJob", "RedisJobBoard"]


class RedisJob(BoardJob):
    """A job of a :class:`RedisJobBoard`."""

    @property
    def _store(self) -> store.RedisStore:
        board = self._board_impl
        assert isinstance(board.store, store.RedisStore)
        return board.store

    @property
    def key(self) -> bytes:
        """The job's field in the board's listings hash (its uuid)."""
        return self.uuid.encode("utf-8")

    @property
    def owner_key(self) -> bytes:
        """The key holding the owner's name while the job is claimed."""
        return self._store.owner_key(self.uuid)

    @property
    def last_modified_key(self) -> bytes:
        """The key holding when the job was last claimed or abandoned."""
        return self._store.last_modified_key(self.uuid)

    def expires_in(self) -> float | UnknownExpire:
        """Seconds until the claim on this job lapses.

        Returns:
            Seconds (millisecond precision), ``-1`` (``DOES_NOT_EXPIRE``: a claim that never
            lapses, made by an upstream board without ``expiry``) or ``-2``
            (``KEY_NOT_FOUND``: not claimed).
        """
        return self._store.expires_in(self.uuid)

    def extend_expiry(self, expiry: float) -> bool:
        """Make the claim on this job lapse ``expiry`` seconds from now.

        A claim the board renews gets its usual lease again at the next renewal.

        Returns:
            Whether the job was claimed (and so got the new expiry).
        """
        return self._store.extend_expiry(self.uuid, expiry)


class RedisJobBoard(Board):
    """A jobboard on Redis (configuration: the module docstring).

    Args:
        name: the board's name.
        conf: its configuration.
        client: a redis-py client to use instead of making one from ``conf`` (left open
            by :meth:`close`).
        persistence: the backend jobs' books are loaded from.
        emit_notifications: whether :attr:`notifier` gets POSTED/REMOVAL events.

    Raises:
        ValueError: a bad configuration value (the key is named); nothing connects yet.
    """

    job_class = RedisJob

    CLIENT_CONF_TRANSFERS = store.CLIENT_CONF_TRANSFERS
    DEFAULT_NAMESPACE = store.DEFAULT_NAMESPACE.encode("utf-8")
    NAMESPACE_SEP = store.NAMESPACE_SEP
    KEY_PIECE_SEP = store.KEY_PIECE_SEP
    OWNED_POSTFIX = store.OWNED_POSTFIX
    LAST_MODIFIED_POSTFIX = store.LAST_MODIFIED_POSTFIX
    MIN_REDIS_VERSION = store.MIN_REDIS_VERSION

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        client: Any = None,
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        self._redis = store.RedisStore(conf, client=client)
        super().__init__(
            name,
            conf,
            self._redis,
            persistence=persistence,
            emit_notifications=emit_notifications,
        )

    @property
    def namespace(self) -> str:
        """The prefix of the board's keys."""
        return self._redis.namespace

    def join(self, key_piece: str | bytes, *more_key_pieces: str | bytes) -> bytes:
        """The board's key made of these pieces: ``<namespace>:<piece>.<piece>...``."""
        return self._redis.join(key_piece, *more_key_pieces)

    @property
    def listings_key(self) -> bytes:
        """The hash of live jobs (uuid -> posting)."""
        return self._redis.listings_key

    @property
    def sequence_key(self) -> bytes:
        """The counter that numbers postings."""
        return self._redis.sequence_key

    @property
    def trash_key(self) -> bytes:
        """The hash of trashed jobs (uuid -> posting)."""
        return self._redis.trash_key

    @base.check_who
    def claim(self, job: base.Job, who: str, expiry: float | None = None) -> None:
        """Take ``job`` for ``who`` (see :meth:`taskflow.jobs.base.JobBoard.claim`).

        Args:
            job: the job.
            who: the claimant's name.
            expiry: None (the usual lease, renewed by this board while it is connected), or
                seconds after which the claim lapses unless extended with
                :meth:`RedisJob.extend_expiry` (not renewed by the board, as upstream).

        Raises:
            ValueError: ``expiry`` is under a millisecond.
        """
        if expiry is None:
            super().claim(job, who)
            return
        if int(expiry * 1000) <= 0:
            raise ValueError(
                "Provided expiry (when converted to milliseconds) must be greater"
                f" than zero instead of {expiry}"
            )
        self._connected()
        token = self._redis.claim(job.uuid, who, expiry)
        if isinstance(job, BoardJob):
            old = job._listing
            job._update(Listing(old.posting, who, token, old.attempts, datetime.now(UTC)))

    def wait(
        self,
        timeout: float | None = None,
        initial_delay: float = 0.005,
        max_delay: float = 1.0,
        sleep_func: Callable[[float], Any] = time.sleep,
    ) -> base.JobBoardIterator:
        """Block until the board has a job, then iterate the jobs.

        Wakes on the board's change signal; the delays are accepted for compatibility.

        Raises:
            taskflow.exceptions.NotFound: ``timeout`` seconds passed with no job.
        """
        return super().wait(timeout)
