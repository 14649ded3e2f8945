"""Machinery behind taskflow's jobboards: one board over one small storage contract.

Theory of operation
-------------------
Every board kind (SQL, Redis, ZooKeeper, etcd...) implements only
:class:`~taskflow._jobs.store.BoardStore`, a handful of atomic operations on its storage.
:class:`~taskflow._jobs.board.Board` (a :class:`taskflow.jobs.base.NotifyingJobBoard`)
holds every rule once on top of it: ordering, ``only_unclaimed``, ``who`` validation,
errors, job objects, lazy book loading, notifications, and the lease heartbeat. A new board
kind is a store plus a three-line face module in ``taskflow/jobs/backends/`` (see
``impl_sqlalchemy.py``) and an entry in ``taskflow._plugins.BUILTINS``.

Claims are leases. A claim is ``(owner, token, lease expiry)`` on the job's record. The
board that made a claim renews it from a heartbeat thread every ``lease / 3`` seconds until
the claim ends or the board closes; a holder that dies or is paused stops renewing, its
lease runs out and the job is claimable again (by anyone, a replacement with the same name
included). Each claim gets a fencing token larger than every earlier token of that job, so
storage that the holder writes to (the flow's persistence) can refuse a stale holder.

What a store must guarantee
---------------------------
``connect(timeout)``
    Opens connections and creates/migrates its schema; fails with ``JobFailure`` within
    about ``timeout`` seconds when the service is unreachable. ``close()`` is idempotent
    and releases every resource (threads, sockets); claims are *not* released.
``post(posting)``
    Atomic: readers see either no job or the whole posting, whatever crashes when.
    Assigns ``sequence``: larger than that of every posting on the board posted before
    this one returned (the "oldest first" key; gaps are fine).
``listings()`` / ``get(uuid)``
    The live jobs (not consumed, not trashed) with their claim as of now: a claim whose
    lease has expired is reported as no claim (owner None) and counted in ``attempts``.
    A record that cannot be decoded is skipped with a warning naming it (use
    :func:`~taskflow._jobs.postings.decode`), never raised. No ordering required.
``claim(uuid, owner, lease)``
    Atomic compare-and-set: succeeds only if the job is live and has no unexpired claim;
    returns the new token, strictly greater than any token the job had (a counter stored
    with the job, incremented by the claim itself). Taking over an expired claim adds
    one to ``attempts``. Raises ``NotFound`` (no such live job) or ``UnclaimableJob``
    (held, by anyone, the same owner included).
``renew(uuid, owner, token, lease)``
    Extends the lease to ``lease`` seconds from now if ``(owner, token)`` is still the
    job's claim (even if it expired meanwhile, as long as nobody claimed it since);
    returns False otherwise. Must never extend someone else's claim.
``release(uuid, owner, token, outcome, reason)``
    Atomic. Checks first: no live job -> ``NotFound``; no claim (or an expired one whose
    token is not ``token``) -> ``NotFound``; another owner -> ``JobFailure``; ``token``
    given and not the job's current token -> ``JobFailure`` (the caller lost its claim to
    a replacement of the same name). Then ``CONSUME`` deletes the job, ``ABANDON`` clears
    the claim and adds one to ``attempts``, ``TRASH`` moves it to the trash with
    ``reason`` (listed by ``trash()``, never by ``listings()``).
``wait_changed(timeout)``
    Blocks until the jobs may have changed since the previous call returned (or since
    ``connect``), or ``timeout`` passes; True/False. Spurious True is fine, a missed
    change is not (for changes made through any store on the same board). Called by one
    thread at a time (the board's watcher). Push where the service offers it (LISTEN/
    NOTIFY, watches, keyspace events), else cheap polling at ~10 ms. ``interrupt()``
    (called from another thread when the board closes) makes a blocked call return soon.
``register_entity(kind, name, metadata)``
    Records (or replaces) an entity; informational.

Every method but ``wait_changed`` may be called from several threads at once. Service
errors are raised as ``JobFailure`` (chained to the driver's error).
"""

from __future__ import annotations

__all__: list[str] = []
