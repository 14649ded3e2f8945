"""The conductor contract: claim jobs from a jobboard and run each job's flow to its end.

A job names a logbook (``job.book_uuid``) and, in its details, optionally the flow detail
to run (``flow_uuid``) and values to inject (``store``). A conductor turns it into an engine
with :meth:`Conductor._engine_from_job` (the flow is rebuilt from the factory saved with
:func:`taskflow.engines.save_factory_details`) and decides from the run's outcome whether the
job is done (consumed), should be retried by anyone (abandoned) or can never run (trashed).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskflow import engines
from taskflow import exceptions as exc
from taskflow._conductors.events import EngineLogger
from taskflow._jobs.board import Board
from taskflow.types import entity, notifier
from taskflow.utils import misc

if TYPE_CHECKING:
    from taskflow.engines.base import Engine
    from taskflow.jobs.base import Job, JobBoard
    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import FlowDetail, LogBook

__all__ = ["Conductor"]

LOG = logging.getLogger(__name__)


class Conductor(abc.ABC):
    """Claims jobs on ``jobboard`` under ``name`` and runs them.

    Args:
        name: the name jobs are claimed with; conductors that share it can take over each
            other's jobs (a restarted conductor, say).
        jobboard: the board to take jobs from (any :class:`taskflow.jobs.base.JobBoard`).
        persistence: the backend the jobs' logbooks are in; the engines write to it.
        engine: the engine kind (or URI) the flows run with (None: the default).
        engine_options: options every engine gets.

    Notifier events (:attr:`notifier`), with details ``{'job', 'engine', 'conductor'}``:
    ``compilation_start/_end``, ``preparation_start/_end``, ``validation_start/_end``,
    ``running_start/_end`` (an ``_end`` is skipped when its step raised); and with details
    ``{'job', 'conductor', 'persistence'}``: ``job_consumed``, ``job_abandoned``,
    ``job_trashed``.
    """

    #: The ``kind`` of the entity a conductor registers on its board.
    ENTITY_KIND = "conductor"

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._jobboard = jobboard
        self._persistence = persistence
        self._engine = engine
        self._engine_options = dict(engine_options or {})
        self._notifier = notifier.Notifier()
        #: Where the conductor logs (kinds take a ``log`` argument to change it).
        self._log: logging.Logger | logging.LoggerAdapter[Any] = LOG

    @functools.cached_property
    def conductor(self) -> entity.Entity:
        """This conductor as an entity: ``'<name>@<host>:<pid>'`` with its host and pid."""
        hostname = misc.get_hostname()
        pid = os.getpid()
        return entity.Entity(
            self.ENTITY_KIND, f"{self._name}@{hostname}:{pid}", {"hostname": hostname, "pid": pid}
        )

    @property
    def notifier(self) -> notifier.Notifier:
        """Where the conductor's events are published (see the class docstring)."""
        return self._notifier

    def connect(self) -> None:
        """Connect the jobboard (unless it already is)."""
        if not self._jobboard.connected:
            self._jobboard.connect()

    def close(self) -> None:
        """Close the jobboard (claims it holds lapse or are lost with it)."""
        self._jobboard.close()

    @abc.abstractmethod
    def run(self, max_dispatches: int | None = None) -> None:
        """Claim and run jobs until :meth:`stop` (or ``max_dispatches`` jobs were taken)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask :meth:`run` to return: no new job is claimed and running ones are suspended."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`run` has returned; False if ``timeout`` seconds passed first."""

    @abc.abstractmethod
    def _dispatch_job(self, job: Job) -> Any:
        """Run one claimed job and finish it on the board."""

    # -- from a job to an engine ---------------------------------------------------------------

    def _book_from_job(self, job: Job) -> LogBook | None:
        # Read from our own backend on every dispatch, not ``job.book``: the board may have
        # none, and a book cached on a job object seen earlier could be stale.
        if self._persistence is not None and job.book_uuid is not None:
            with contextlib.closing(self._persistence.get_connection()) as conn:
                return conn.get_logbook(job.book_uuid)
        return job.book

    def _flow_detail_from_job(self, job: Job) -> FlowDetail:
        """The flow detail ``job`` runs: ``details['flow_uuid']``, or its book's only one.

        Raises:
            taskflow.exceptions.NotFound: no book, or no such flow detail in it.
            taskflow.exceptions.MultipleChoices: no ``flow_uuid`` and several flow details.
        """
        book = self._book_from_job(job)
        if book is None:
            raise exc.NotFound(f"No book found in job {job.name!r} ({job.uuid})")
        details = job.details if isinstance(job.details, Mapping) else {}
        flow_uuid = details.get("flow_uuid")
        if flow_uuid is not None:
            flow_detail = book.find(flow_uuid)
            if flow_detail is None:
                raise exc.NotFound(
                    f"No flow detail {flow_uuid} in book {book.name!r} ({book.uuid})"
                    f" of job {job.name!r} ({job.uuid})"
                )
            return flow_detail
        choices = list(book)
        if not choices:
            raise exc.NotFound(
                f"No flow detail in book {book.name!r} ({book.uuid}) of job {job.name!r}"
                f" ({job.uuid})"
            )
        if len(choices) > 1:
            raise exc.MultipleChoices(
                f"Book {book.name!r} ({book.uuid}) of job {job.name!r} ({job.uuid}) has"
                f" {len(choices)} flow details and the job names none ('flow_uuid')"
            )
        return choices[0]

    def _engine_from_job(self, job: Job) -> Engine:
        """An engine that resumes the job's flow detail, its store and fencing token set.

        The store is the flow detail's ``meta['store']`` updated by the job's
        ``details['store']``. A job with a fencing token (``job.token``, from taskflow's
        boards) runs with the engine options ``fencing_token`` and ``fencing_key`` (the
        job's uuid): the engine's ownership of the flow then takes over from a holder of an
        older claim of the job and fences it out, and a holder of an older claim is refused
        the flow even after a newer one finished it. On taskflow's boards it also runs with
        ``fencing_check``, the board's :meth:`~taskflow._jobs.board.Board.confirm` of the
        claim: an engine continued after a pause past its lease neither writes nor starts
        anything once another conductor has claimed the job, even before that one claims
        the flow.

        Unless a subclass replaces this method, the conductor itself uses
        :meth:`_load_job` and injects the store under the run's own ownership of the flow
        (one claim for the whole job instead of one more for the injection).
        """
        engine, store = self._load_job(job)
        if store:
            engine.storage.inject(store)
        return engine

    def _load_job(self, job: Job) -> tuple[Engine, dict[str, Any]]:
        """:meth:`_engine_from_job`'s engine before the store is injected, and that store."""
        flow_detail = self._flow_detail_from_job(job)
        store: dict[str, Any] = {}
        meta_store = (flow_detail.meta or {}).get("store")
        if meta_store:
            store.update(meta_store)
        details = job.details if isinstance(job.details, Mapping) else {}
        if details.get("store"):
            store.update(details["store"])
        options = dict(self._engine_options)
        token = getattr(job, "token", None)
        if token is not None:
            options["fencing_token"] = token
            options["fencing_key"] = job.uuid
            if isinstance(self._jobboard, Board):
                options["fencing_check"] = functools.partial(self._jobboard.confirm, job)
        engine = engines.load_from_detail(
            flow_detail, engine=self._engine, backend=self._persistence, **options
        )
        return engine, store

    def _listeners_from_job(
        self, job: Job, engine: Engine
    ) -> list[contextlib.AbstractContextManager[Any]]:
        """Listeners attached to ``engine`` while it runs ``job`` (entered as context managers).

        Subclasses extend the list (``super()._listeners_from_job(job, engine) + [...]``).
        The default logs the engine's state changes at DEBUG to the conductor's log.
        """
        return [EngineLogger(engine, self._log)]
