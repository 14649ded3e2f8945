"""Machinery behind taskflow's conductors (``taskflow.conductors``).

Theory of operation
-------------------
A conductor loops: list the board's unclaimed jobs (priority, then oldest first), claim the
first it can, dispatch it, repeat; with nothing to claim it waits for the board to change.
A dispatch (:mod:`~taskflow._conductors.dispatcher`) builds an engine for the job's flow
detail through the conductor's hooks, runs compile/prepare/validate/run announcing each
step, and ends the claim by the outcome rules of :mod:`~taskflow._conductors.outcomes`.

High availability rests on the board and the persistence backend, not on the conductor:

* the board renews the conductor's claim while it holds it; a conductor that dies or is
  paused stops renewing, and the job is claimable again once the lease lapses;
* each claim carries a fencing token (``job.token``) larger than the job's earlier ones.
  The engine runs with it (the ``fencing_token`` engine option), so its ownership of the
  flow detail takes over at once from an engine of an earlier claim, whose next write is
  then refused (:class:`~taskflow.exceptions.OwnershipLost`): a paused conductor that wakes
  up runs no further atom, and the board refuses its consume or abandon;
* the board counts a job's failed attempts (``job.attempts``); with ``max_attempts`` a job
  that keeps killing its conductors, or keeps failing in ways that call for another
  attempt, is trashed with its last error instead of being run forever.
"""

from __future__ import annotations

__all__: list[str] = []
