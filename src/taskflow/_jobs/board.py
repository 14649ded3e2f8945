"""The one jobboard implementation, over any :class:`~taskflow._jobs.store.BoardStore`.

Threads: the caller's, plus two of the board's own while it is connected. The *heartbeat*
renews the leases of the claims this board object made, every ``lease / 3`` seconds, until
each claim ends or the board closes; a renewal the store refuses means another claimant
took the job (our lease had run out), and the claim is dropped with a warning. The
*watcher* sits in ``store.wait_changed`` and bumps a generation counter under a condition
on each change, so any number of threads can wait for changes (``wait``,
``wait_for_change``, ``Job.wait``) without stealing each other's wake-ups; when listeners
are registered it also lists the board to emit POSTED/REMOVAL for other processes' changes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid as uuidlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from taskflow import exceptions as exc
from taskflow import states
from taskflow._config import as_float
from taskflow._jobs.store import BookRef, Listing, Outcome, Posting
from taskflow.jobs import base

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from taskflow._jobs.store import BoardStore
    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import LogBook
    from taskflow.types.entity import Entity

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_LEASE", "Board", "BoardJob", "lease_from_conf"]

LOG = logging.getLogger("taskflow.jobs")

#: Seconds a claim lasts without renewal unless the ``lease`` key says otherwise: a dead
#: holder's job is claimable again this long after its last renewal.
DEFAULT_LEASE = 3.0
#: Seconds ``connect()`` may take unless ``connect_timeout`` says otherwise.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Longest single wait of the watcher in the store (it checks for close() in between).
_WATCH_SLICE = 1.0


def lease_from_conf(conf: Mapping[str, Any]) -> float:
    """The ``lease`` key in seconds (:data:`DEFAULT_LEASE` when absent).

    Raises:
        ValueError: not a positive finite number (the message names the key).
    """
    lease = as_float(conf, "lease", DEFAULT_LEASE)
    if not (lease > 0 and math.isfinite(lease)):
        raise ValueError(f"'lease' must be a positive number of seconds, not {conf['lease']!r}")
    return lease


class BoardJob(base.Job):
    """A job of a :class:`Board`. ``state`` asks the store; the rest is as last listed."""

    def __init__(self, board: Board, listing: Listing, backend: Backend | None) -> None:
        posting = listing.posting
        book = posting.book
        super().__init__(
            board,
            posting.name,
            uuid=posting.uuid,
            details=posting.details,
            backend=backend,
            book_data=None if book is None else {"name": book.name, "uuid": book.uuid},
        )
        self._posting = posting
        self._listing = listing

    @property
    def state(self) -> str:
        listing = self._board_impl.store.get(self.uuid)
        if listing is None:
            return states.COMPLETE
        self._listing = listing
        return states.UNCLAIMED if listing.owner is None else states.CLAIMED

    @property
    def priority(self) -> base.JobPriority:
        return self._posting.priority

    @property
    def created_on(self) -> datetime:
        return self._posting.created_on

    @property
    def last_modified(self) -> datetime | None:
        return self._listing.last_modified

    @property
    def sequence(self) -> int:
        """Its place in the board's posting order (older jobs have smaller numbers)."""
        return self._posting.sequence

    @property
    def token(self) -> int | None:
        """The fencing token of the claim on this job as last seen (None: unclaimed).

        Every claim of a job gets a larger token than the claims before it; pass it to the
        storage the holder writes to, so that a holder whose lease lapsed is refused.
        """
        return self._listing.token

    @property
    def attempts(self) -> int:
        """Claims of this job that ended without consume (abandoned or lapsed), as last seen."""
        return self._listing.attempts

    @property
    def _board_impl(self) -> Board:
        board = self._board
        assert isinstance(board, Board)
        return board

    def wait(
        self,
        timeout: float | None = None,
        delay: float = 0.01,
        delay_multiplier: float = 2.0,
        max_delay: float = 60.0,
        sleep_func: Any = time.sleep,
    ) -> bool:
        """Wait until the job is COMPLETE; True if so, False once ``timeout`` passes.

        Wakes on the board's change signal rather than polling on the delays (which are
        accepted for compatibility).
        """
        board = self._board_impl
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = board.generation
            if self.state == states.COMPLETE:
                return True
            left = 60.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            board.wait_generation(seen, min(left, max_delay))

    def _update(self, listing: Listing) -> None:
        self._listing = listing

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoardJob):
            return NotImplemented
        return self.uuid == other.uuid and self._board is other._board

    def __hash__(self) -> int:
        return hash(self.uuid)

    def __repr__(self) -> str:
        return f"<{self}>"


class Board(base.NotifyingJobBoard):
    """A jobboard over ``store``; kinds subclass it to build their store from ``conf``.

    Args:
        name: the board's name.
        conf: its configuration; this class reads ``lease`` and ``connect_timeout``.
        store: the storage of the board.
        persistence: the backend jobs' books are loaded from.
        emit_notifications: whether :attr:`notifier` gets POSTED/REMOVAL events.
    """

    #: The class of the jobs this board hands out (a kind may add methods, as Redis's
    #: ``expires_in``); it is built as ``job_class(board, listing, persistence)``.
    job_class: ClassVar[type[BoardJob]] = BoardJob

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        store: BoardStore,
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        super().__init__(name, conf)
        self.store = store
        #: Seconds each claim of this board lasts without renewal.
        self.lease = lease_from_conf(conf)
        self.connect_timeout = as_float(conf, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self._persistence = persistence
        self._emit = emit_notifications
        # Claims this object made: job uuid -> (owner, token). Renewed by the heartbeat
        # unless in _lost (the store refused a renewal: someone else claimed the job since);
        # a lost claim's token is kept so that releasing it is refused, not done by name.
        self._held: dict[str, tuple[str, int]] = {}
        self._lost: set[str] = set()
        # When (time.monotonic()) the request that last made or renewed each held claim was
        # sent: the claim is surely ours until a lease after that, whatever our pauses.
        self._confirmed: dict[str, float] = {}
        self._held_lock = threading.Lock()
        # Jobs listed so far, by uuid: the same object is handed out for one job, and the
        # set tells POSTED/REMOVAL apart from jobs already seen. Removed jobs are dropped.
        self._known: dict[str, BoardJob] = {}
        self._known_lock = threading.Lock()
        # Invariant: generation only grows; bumped (with notify_all) on every change seen.
        self._changed = threading.Condition()
        self.generation = 0
        self._stop: threading.Event | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._stop is not None

    def connect(self, timeout: float | None = None) -> None:
        """Connect the store and start the heartbeat and watcher threads.

        Raises:
            taskflow.exceptions.JobFailure: the store is unreachable (within ``timeout``,
                default the ``connect_timeout`` key or 10 seconds).
        """
        if self._stop is not None:
            return
        self.store.connect(self.connect_timeout if timeout is None else timeout)
        stop = threading.Event()
        self._stop = stop
        self._threads = [
            threading.Thread(
                target=self._heartbeat, args=(stop,), name=f"jobboard-{self.name}-leases"
            ),
            threading.Thread(
                target=self._watch, args=(stop,), name=f"jobboard-{self.name}-watcher"
            ),
        ]
        for thread in self._threads:
            thread.daemon = True  # a board left open must not keep the process alive
            thread.start()

    def close(self) -> None:
        """Stop renewing claims (they lapse after the lease) and close the store."""
        stop, self._stop = self._stop, None
        if stop is None:
            return
        stop.set()
        self._wake()
        self.store.interrupt()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads = []
        self.store.close()
        with self._held_lock:
            self._held.clear()
            self._lost.clear()
            self._confirmed.clear()

    def _connected(self) -> None:
        if self._stop is None:
            raise exc.JobFailure(f"Jobboard {self.name!r} is not connected")

    # -- reading --------------------------------------------------------------------------------

    def _job(self, listing: Listing) -> BoardJob:
        job = self._known.get(listing.posting.uuid)
        if job is None:
            job = self.job_class(self, listing, self._persistence)
        else:
            job._update(listing)
        return job

    def _refresh(self) -> list[BoardJob]:
        """Every live job in hand-out order; emits POSTED/REMOVAL for what changed."""
        listings = self.store.listings()
        listings.sort(key=lambda item: (item.posting.priority.rank, item.posting.sequence))
        with self._known_lock:
            jobs = [self._job(listing) for listing in listings]
            current = {job.uuid: job for job in jobs}
            posted = [job for uuid, job in current.items() if uuid not in self._known]
            removed = [job for uuid, job in self._known.items() if uuid not in current]
            self._known = current
        self._notify(base.POSTED, posted)
        self._notify(base.REMOVAL, removed)
        return jobs

    def _notify(self, event: str, jobs: list[BoardJob]) -> None:
        if self._emit and jobs and self.notifier:
            for job in jobs:
                self.notifier.notify(event, {"job": job})

    def _fetch(self, only_unclaimed: bool) -> list[base.Job]:
        self._connected()
        jobs = self._refresh()
        if only_unclaimed:
            return [job for job in jobs if job._listing.owner is None]
        return list(jobs)

    def iterjobs(
        self, only_unclaimed: bool = False, ensure_fresh: bool = False
    ) -> base.JobBoardIterator:
        # Listed states come with the listing: the iterator must not query each job again.
        return base.JobBoardIterator(
            self,
            LOG,
            board_fetch_func=lambda _fresh: self._fetch(only_unclaimed),
            ensure_fresh=ensure_fresh,
        )

    @property
    def job_count(self) -> int:
        self._connected()
        return len(self.store.listings())

    def find_owner(self, job: base.Job) -> str | None:
        self._connected()
        listing = self.store.get(job.uuid)
        return None if listing is None else listing.owner

    def iter_trash(self) -> Iterator[base.TrashedJob]:
        self._connected()
        for entry in self.store.trash():
            listing = Listing(entry.posting, None, None, entry.attempts, entry.trashed_on)
            job = self.job_class(self, listing, self._persistence)
            yield base.TrashedJob(job, entry.reason, entry.trashed_on)

    # -- waiting --------------------------------------------------------------------------------

    def wait_generation(self, seen: int, timeout: float) -> bool:
        """Block until :attr:`generation` passes ``seen`` or ``timeout``; whether it did."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self.generation != seen or self._stop is None, max(0.0, timeout)
            )

    def wait_for_change(self, timeout: float) -> bool:
        self._connected()
        return self.wait_generation(self.generation, timeout)

    def wait(self, timeout: float | None = None) -> base.JobBoardIterator:
        self._connected()
        started = time.monotonic()
        while True:
            seen = self.generation
            if self._refresh():
                return self.iterjobs()
            left = 60.0 if timeout is None else timeout - (time.monotonic() - started)
            if left <= 0:
                waited = time.monotonic() - started
                raise exc.NotFound(f"Expired waiting for jobs to arrive; waited {waited} seconds")
            self.wait_generation(seen, left)
            self._connected()

    def _wake(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                changed = self.store.wait_changed(_WATCH_SLICE)
            except Exception:
                if stop.is_set():
                    break
                LOG.warning("Jobboard %r: waiting for changes failed", self.name, exc_info=True)
                stop.wait(0.5)
                changed = True  # we may have missed one
            if changed and not stop.is_set():
                self._wake()
                if self._emit and self.notifier:
                    try:
                        self._refresh()
                    except Exception:
                        LOG.warning("Jobboard %r: listing failed", self.name, exc_info=True)

    # -- writing --------------------------------------------------------------------------------

    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: Any = None,
        priority: base.JobPriority | str = base.JobPriority.NORMAL,
    ) -> BoardJob:
        self._connected()
        posting = Posting(
            uuid=str(uuidlib.uuid4()),
            name=name,
            priority=base.JobPriority.convert(priority),
            details=details if details is not None else {},
            book=None if book is None else BookRef(book.name, book.uuid),
            created_on=datetime.now(UTC),
        )
        posting = self.store.post(posting)
        job = self.job_class(self, Listing(posting, None, None, 0, None), self._persistence)
        if book is not None:
            job._book = book
        # Remembered (so that POSTED is not emitted again) only while somebody listens: the
        # watcher then lists the board on every change, which forgets the job once it is
        # gone. A board that only posts would otherwise keep every job it ever posted.
        if self._emit and self.notifier:
            with self._known_lock:
                fresh = posting.uuid not in self._known
                self._known[posting.uuid] = job
            if fresh:
                self._notify(base.POSTED, [job])
        return job

    @base.check_who
    def claim(self, job: base.Job, who: str) -> None:
        self._connected()
        sent = time.monotonic()
        token = self.store.claim(job.uuid, who, self.lease)
        with self._held_lock:
            self._held[job.uuid] = (who, token)
            self._lost.discard(job.uuid)
            self._confirmed[job.uuid] = sent
        if isinstance(job, BoardJob):
            old = job._listing
            job._update(Listing(old.posting, who, token, old.attempts, datetime.now(UTC)))

    def _release(self, job: base.Job, who: str, outcome: Outcome, reason: str | None) -> None:
        self._connected()
        with self._held_lock:
            held = self._held.get(job.uuid)
        # The token proves this object's claim is still the job's (not a same-named
        # replacement's); a board that did not make the claim can only match the name.
        token = held[1] if held is not None and held[0] == who else None
        try:
            self.store.release(job.uuid, who, token, outcome, reason)
        finally:
            with self._held_lock:
                if self._held.get(job.uuid) == held:
                    self._held.pop(job.uuid, None)
                    self._lost.discard(job.uuid)
                    self._confirmed.pop(job.uuid, None)
        if isinstance(job, BoardJob):
            old = job._listing
            attempts = old.attempts + (outcome is Outcome.ABANDON)
            job._update(Listing(old.posting, None, None, attempts, datetime.now(UTC)))
        if outcome is not Outcome.ABANDON:
            with self._known_lock:
                gone = self._known.pop(job.uuid, None)
            if gone is not None:
                self._notify(base.REMOVAL, [gone])

    @base.check_who
    def consume(self, job: base.Job, who: str) -> None:
        self._release(job, who, Outcome.CONSUME, None)

    @base.check_who
    def abandon(self, job: base.Job, who: str) -> None:
        self._release(job, who, Outcome.ABANDON, None)

    @base.check_who
    def trash(self, job: base.Job, who: str, reason: str | None = None) -> None:
        """Set ``job`` aside for good; ``reason`` is kept and listed by :meth:`iter_trash`."""
        self._release(job, who, Outcome.TRASH, reason)

    def register_entity(self, entity: Entity) -> None:
        self._connected()
        self.store.register_entity(entity.kind, entity.name, dict(entity.metadata))

    # -- leases ---------------------------------------------------------------------------------

    def holds(self, job: base.Job) -> bool:
        """Whether this board object holds a claim on ``job`` that it still renews."""
        with self._held_lock:
            return job.uuid in self._held and job.uuid not in self._lost

    def confirm(self, job: base.Job) -> None:
        """Make sure this board still holds its claim on ``job``, before its holder acts.

        A holder that was paused (a long collection, a frozen VM, SIGSTOP) may wake up after
        its lease ran out and another claimant took the job, before anything told it so:
        whatever it does next must first pass here. Free while the heartbeat keeps the
        lease fresh (the last renewal was sent less than two thirds of a lease ago); past
        that, the claim is renewed now, which succeeds only if nobody claimed the job since.

        Raises:
            taskflow.exceptions.OwnershipLost: the claim is lost (or ended), or could not
                be renewed (the store is unreachable: it may have lapsed).
        """
        uuid = job.uuid
        with self._held_lock:
            held = self._held.get(uuid)
            lost = uuid in self._lost
            confirmed = self._confirmed.get(uuid, -math.inf)
        if held is None or lost:
            raise exc.OwnershipLost(f"Jobboard {self.name!r} holds no claim on job {uuid}")
        if time.monotonic() - confirmed < self.lease * 2 / 3:
            return
        owner, token = held
        try:
            kept = self._renew(uuid, owner, token)
        except exc.JobFailure as err:
            raise exc.OwnershipLost(
                f"Jobboard {self.name!r} could not renew the claim of {owner} on job {uuid}"
                f" (token {token}), which may have lapsed: {err}"
            ) from err
        if not kept:
            raise exc.OwnershipLost(
                f"Jobboard {self.name!r}: the claim of {owner} on job {uuid} (token {token})"
                " was lost: another claimant took the job"
            )

    def _renew(self, uuid: str, owner: str, token: int) -> bool:
        """Renew one claim and record the outcome; whether the store kept it."""
        sent = time.monotonic()
        kept = self.store.renew(uuid, owner, token, self.lease)
        with self._held_lock:
            # Released meanwhile: a refused renewal says nothing then (the job is gone).
            held = self._held.get(uuid) == (owner, token)
            if held and kept:
                self._confirmed[uuid] = max(sent, self._confirmed.get(uuid, sent))
            elif held:
                self._lost.add(uuid)
        if held and not kept:
            LOG.warning(
                "Jobboard %r: claim of %s on job %s (token %s) was lost",
                self.name,
                owner,
                uuid,
                token,
            )
        return kept

    def _heartbeat(self, stop: threading.Event) -> None:
        interval = self.lease / 3
        while not stop.wait(interval):
            with self._held_lock:
                held = [item for item in self._held.items() if item[0] not in self._lost]
            for uuid, (owner, token) in held:
                try:
                    self._renew(uuid, owner, token)
                except Exception:
                    # The store is unreachable: try again next beat; the lease may lapse.
                    LOG.warning("Jobboard %r: renewing claim on %s failed", self.name, uuid)
