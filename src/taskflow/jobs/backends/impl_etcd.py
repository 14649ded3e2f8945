"""A jobboard on etcd v3 (through its gRPC gateway, with ``etcd3gw``).

``fetch('board', {'board': 'etcd', 'host': 'etcd-1', 'path': 'billing'})`` or ``fetch('board',
'etcd://etcd-1:2379?path=billing')``. The keys are upstream TaskFlow's
(``/taskflow/jobs/<path>/job<seq>.data|.lock|.last_modified`` and ``…/sequence``; trash under
``/taskflow/.trash/<path>/``), so boards of both can share a path: each lists, claims and
consumes the other's jobs. A claim is a lock key on an etcd lease that the claiming board
renews while it holds the job; when its holder dies or is paused, etcd ends the lease and
the job is claimable again.

Configuration keys:

=====================  =========================================================================
``path``               the board's place in etcd (default ``jobboard``)
``host``, ``port``     the etcd server (default ``localhost``, 2379)
``protocol``           ``http`` (default) or ``https``
``ca_cert``            CA bundle that verifies the server (https)
``cert_cert``,         client certificate and its key (https)
``cert_key``
``timeout``            seconds each etcd request may take (default 10)
``api_path``           the gateway's path (``/v3/``...; default: asked from the server)
``lease``              seconds a claim lasts without renewal (default 3; etcd rounds up to
                       whole seconds and to its minimum lease, 2 s by default); the board
                       renews its claims every ``lease / 3`` seconds
``ttl``                upstream's name for ``lease`` (used when ``lease`` is absent)
``connect_timeout``    seconds ``connect()`` may take (default 10)
=====================  =========================================================================

Beyond upstream's API: ``job.token`` (the fencing token of the claim: the etcd revision of
the claim's transaction), ``job.attempts``, ``board.trash(job, who, reason=None)``,
``board.iter_trash()``, ``board.wait_for_change()`` and ``board.holds(job)``; see
:mod:`taskflow._jobs` for the guarantees.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskflow._config import as_float
from taskflow._jobs import etcd
from taskflow._jobs.board import Board, BoardJob, lease_from_conf
from taskflow._jobs.store import Listing
from taskflow.jobs import base

if TYPE_CHECKING:
    from etcd3gw.client import Etcd3Client
    from etcd3gw.lease import Lease

    from taskflow.persistence.base import Backend

__all__ = ["EtcdJob", "EtcdJobBoard"]


class EtcdJob(BoardJob):
    """A job of an :class:`EtcdJobBoard`."""

    @property
    def root(self) -> str:
        """Its board's keys' prefix (``/taskflow/jobs/<path>``)."""
        board = self._board_impl
        assert isinstance(board, EtcdJobBoard)
        return board.path

    @property
    def key(self) -> str:
        """What its keys start with (``<root>/job<sequence>``): the posting is ``<key>.data``,
        the claim ``<key>.lock``."""
        return f"{self.root}/job{self.sequence}"

    @property
    def _store(self) -> etcd.EtcdStore:
        board = self._board_impl
        assert isinstance(board, EtcdJobBoard)
        return board._etcd

    @property
    def lease(self) -> Lease | None:
        """The etcd lease the claim on this job lives on (read now), or None when unclaimed.

        The claims of one board share a lease: renewing it renews them all.
        """
        from etcd3gw.lease import Lease

        store = self._store
        lease_id = store.claim_lease(self.uuid)
        return None if lease_id is None else Lease(lease_id, store._client())

    def expires_in(self) -> int:
        """Seconds until the claim on this job lapses unless renewed; -1 when unclaimed."""
        store = self._store
        lease_id = store.claim_lease(self.uuid)
        return -1 if lease_id is None else store.lease_ttl(lease_id)

    def extend_expiry(self, expiry: float) -> bool:
        """Renew the claim's lease for its whole TTL (an etcd lease keeps the TTL it was
        granted with, so ``expiry`` is not used, as upstream). Whether it was still live."""
        store = self._store
        lease_id = store.claim_lease(self.uuid)
        return lease_id is not None and store.keep_alive(lease_id)


class EtcdJobBoard(Board):
    """A jobboard on etcd (configuration: the module docstring).

    Args:
        name: the board's name.
        conf: its configuration.
        client: an ``etcd3gw`` client to use (then ``host``, ``port``... are not read, and
            closing the board leaves the client open).
        persistence: the backend jobs' books are loaded from.
        emit_notifications: whether :attr:`notifier` gets POSTED/REMOVAL events.

    Raises:
        ValueError: a bad configuration value (the key is named); nothing connects yet.
    """

    job_class = EtcdJob

    #: Upstream's names for the layout (see :class:`taskflow._jobs.etcd.Layout`).
    ROOT_PATH = etcd.ROOT_PATH
    TRASH_PATH = etcd.TRASH_PATH
    DEFAULT_PATH = etcd.DEFAULT_PATH
    JOB_PREFIX = "job"
    SEQUENCE_KEY = "sequence"
    DATA_POSTFIX = ".data"
    LOCK_POSTFIX = ".lock"
    LAST_MODIFIED_POSTFIX = ".last_modified"

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        client: Etcd3Client | None = None,
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        ttl = as_float(conf, "ttl", None)
        if ttl is not None:
            if not (ttl > 0 and math.isfinite(ttl)):
                raise ValueError(f"'ttl' must be a positive number of seconds, not {conf['ttl']!r}")
            if conf.get("lease") is None:
                conf = {**conf, "lease": ttl}
        store = etcd.EtcdStore(conf, client=client)
        super().__init__(
            name, conf, store, persistence=persistence, emit_notifications=emit_notifications
        )
        self._etcd = store

    @property
    def path(self) -> str:
        """The board's keys' prefix (``/taskflow/jobs/<path>``)."""
        return self._etcd.layout.root.rstrip("/")

    @base.check_who
    def claim(self, job: base.Job, who: str, expiry: float | None = None) -> None:
        """Claim ``job`` for ``who``.

        Args:
            expiry: as upstream, seconds after which this claim lapses *without* renewal
                (the board does not keep it alive). None: the board's lease, renewed
                until the claim ends.

        Raises:
            taskflow.exceptions.UnclaimableJob: the job is claimed (by anyone).
            taskflow.exceptions.NotFound: no such job.
            ValueError: ``expiry`` is not a positive number of seconds.
        """
        if expiry is None:
            super().claim(job, who)
            return
        lease = lease_from_conf({"lease": expiry})
        self._connected()
        token = self._etcd.claim(job.uuid, who, lease, dedicated=True)
        if isinstance(job, BoardJob):
            old = job._listing
            job._update(Listing(old.posting, who, token, old.attempts, datetime.now(UTC)))
