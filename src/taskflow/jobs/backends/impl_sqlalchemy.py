"""A jobboard on a SQL database: SQLite for one machine, PostgreSQL for many (MySQL too).

``fetch('board', 'sqlite:////var/lib/app/jobs.db')``, ``fetch('board',
'postgresql://user@host/db')`` or ``fetch('board', {'board': 'postgresql', 'connection':
'postgresql://...', 'namespace': 'billing'})``. Several processes (conductors) may share
one SQLite file; boards on one database are kept apart by ``namespace``. The tables
(``taskflow_jobs``, ``taskflow_job_entities``) are created on ``connect()`` by Alembic,
beside (and independent of) the persistence backend's tables.

Configuration keys:

=====================  =========================================================================
``connection``         the database URI (may also be given as ``board``)
``namespace``          isolates boards that share a database (default ``taskflow``)
``lease``              seconds a claim lasts without renewal (default 3); the board renews
                       the claims it holds every ``lease / 3`` seconds, so a dead or paused
                       holder's job is claimable again at most ``lease`` seconds after it
                       stopped
``connect_timeout``    seconds ``connect()`` may take (default 10)
others                 the SQL engine options of the SQL persistence backend (pool sizes,
                       ``read_timeout``, ``sqlite_busy_timeout``...)
=====================  =========================================================================

Beyond upstream's API: ``job.token`` (the fencing token of the claim), ``job.attempts``,
``board.trash(job, who, reason=None)``, ``board.iter_trash()``, ``board.wait_for_change()``
and ``board.holds(job)``; see :mod:`taskflow._jobs` for the guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow._jobs.board import Board
from taskflow._jobs.sql import SQLStore

if TYPE_CHECKING:
    from taskflow.persistence.base import Backend

__all__ = ["SQLAlchemyJobBoard"]


class SQLAlchemyJobBoard(Board):
    """A jobboard on a SQL database (configuration: the module docstring).

    Raises:
        ValueError: a bad configuration value (the key is named); nothing connects yet.
    """

    def __init__(
        self,
        name: str,
        conf: dict[str, Any],
        persistence: Backend | None = None,
        emit_notifications: bool = True,
    ) -> None:
        super().__init__(
            name,
            conf,
            SQLStore(conf),
            persistence=persistence,
            emit_notifications=emit_notifications,
        )
