"""The jobboard contracts: :class:`JobBoard`, :class:`Job`, :class:`JobPriority`.

A job is a named unit of work posted on a board, usually pointing at a logbook in a
persistence backend (``book``) and carrying free-form ``details`` (``flow_uuid``,
``store``...). Workers (conductors) claim a job by name (``who``), run it, then end their
claim: ``consume`` (done, the job leaves the board), ``abandon`` (back to UNCLAIMED for
someone else) or ``trash`` (set aside, never handed out again). Jobs are handed out by
priority, then oldest first.

Beyond upstream TaskFlow, taskflow's own boards (see ``taskflow.jobs.backends``) give every
claim a lease renewed by the holder and a fencing token (``job.token``), count a job's
failed attempts (``job.attempts``), keep trashed jobs listable with a reason
(:meth:`JobBoard.iter_trash`) and wake waiters as soon as the board changes
(:meth:`JobBoard.wait_for_change`).
"""

from __future__ import annotations

import abc
import contextlib
import enum
import functools
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar

from taskflow import exceptions as exc
from taskflow import states
from taskflow.types import notifier

if TYPE_CHECKING:
    import logging
    from datetime import datetime
    from types import TracebackType

    from taskflow.persistence.base import Backend
    from taskflow.persistence.models import LogBook
    from taskflow.types.entity import Entity

__all__ = [
    "POSTED",
    "REMOVAL",
    "Job",
    "JobBoard",
    "JobBoardIterator",
    "JobPriority",
    "NotifyingJobBoard",
    "TrashedJob",
    "check_who",
    "format_posting",
]

#: Notifier event: a job appeared on the board (details: ``{'job': job}``).
POSTED = "POSTED"
#: Notifier event: a job left the board, consumed or trashed (details: ``{'job': job}``).
REMOVAL = "REMOVAL"


class JobPriority(enum.Enum):
    """How urgent a job is; boards hand out higher priorities first."""

    VERY_HIGH = "VERY_HIGH"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"
    VERY_LOW = "VERY_LOW"

    @classmethod
    def convert(cls, value: JobPriority | str) -> JobPriority:
        """``value`` as a priority: a member, or its name in any case.

        Raises:
            ValueError: not a priority.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value.upper())  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            valid = [p.value for p in cls]
            raise ValueError(
                f"'{value}' is not a valid priority, valid priorities are {valid}"
            ) from None

    @property
    def rank(self) -> int:
        """0 for VERY_HIGH up to 4 for VERY_LOW: the sort key boards order jobs by."""
        return _RANKS[self]

    @classmethod
    def reorder(cls, *values: tuple[JobPriority | str, Any]) -> Any:
        """The values of ``(priority, value)`` pairs, most urgent first (stable).

        As upstream TaskFlow, a single pair gives its value alone, not a 1-tuple.

        Raises:
            ValueError: no pairs, or a priority that is not one.
        """
        if not values:
            raise ValueError("At least one (priority, value) pair is required")
        if len(values) == 1:
            cls.convert(values[0][0])
            return values[0][1]
        ranked = sorted(
            ((cls.convert(p).rank, i, v) for i, (p, v) in enumerate(values)),
            key=lambda item: item[:2],
        )
        return tuple(v for _, _, v in ranked)


_RANKS: dict[JobPriority, int] = {p: i for i, p in enumerate(JobPriority)}

_F = TypeVar("_F", bound=Callable[..., Any])


def _validate_who(who: object) -> None:
    if not isinstance(who, str):
        raise TypeError("Job applicant must be a string type")
    if not who:
        raise ValueError("Job applicant must be non-empty")


def check_who(meth: _F) -> _F:
    """Decorate ``meth(self, job, who, ...)`` to refuse a ``who`` that is not a non-empty str.

    Raises (from the decorated method):
        TypeError: ``who`` is not a string.
        ValueError: ``who`` is empty.
    """

    @functools.wraps(meth)
    def wrapper(self: Any, job: Any, who: Any, *args: Any, **kwargs: Any) -> Any:
        _validate_who(who)
        return meth(self, job, who, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def format_posting(
    uuid: str,
    name: str,
    created_on: datetime | None = None,
    last_modified: datetime | None = None,
    details: Any = None,
    book: LogBook | None = None,
    priority: JobPriority = JobPriority.NORMAL,
) -> dict[str, Any]:
    """The dict upstream TaskFlow's boards store for a job (keys present only when set)."""
    posting: dict[str, Any] = {"uuid": uuid, "name": name, "priority": priority.value}
    if created_on is not None:
        posting["created_on"] = created_on
    if last_modified is not None:
        posting["last_modified"] = last_modified
    posting["details"] = details if details is not None else {}
    if book is not None:
        posting["book"] = {"name": book.name, "uuid": book.uuid}
    return posting


class Job(abc.ABC):
    """A job on a board. Boards create these; users read them and pass them back.

    Args:
        board: the board the job is on.
        name: the job's name (not unique).
        uuid: its identity (a fresh one when None).
        details: free-form JSON-able details (``{}`` when None).
        backend: the persistence backend :attr:`book` is loaded from.
        book: the logbook itself, when already at hand.
        book_data: ``{'name': ..., 'uuid': ...}`` of the logbook, read from the board.
    """

    def __init__(
        self,
        board: JobBoard,
        name: str,
        uuid: str | None = None,
        details: Any = None,
        backend: Backend | None = None,
        book: LogBook | None = None,
        book_data: dict[str, Any] | None = None,
    ) -> None:
        self._board = board
        self._name = name
        self._uuid = uuid if uuid is not None else str(uuidlib.uuid4())
        self._details = details if details is not None else {}
        self._backend = backend
        self._book = book
        self._book_data = book_data or {}

    @property
    @abc.abstractmethod
    def state(self) -> str:
        """UNCLAIMED, CLAIMED or COMPLETE (consumed or trashed), read from the board now."""

    @property
    @abc.abstractmethod
    def priority(self) -> JobPriority: ...

    @property
    @abc.abstractmethod
    def created_on(self) -> datetime | None: ...

    @property
    @abc.abstractmethod
    def last_modified(self) -> datetime | None:
        """When the job was last claimed or released, if known."""

    @property
    def board(self) -> JobBoard:
        return self._board

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def name(self) -> str:
        return self._name

    @property
    def details(self) -> Any:
        return self._details

    @property
    def book(self) -> LogBook | None:
        """The job's logbook, loaded from the persistence backend on first use.

        None when the job has no book, or the board was given no persistence backend.

        Raises:
            taskflow.exceptions.NotFound: the backend does not have the book.
        """
        if self._book is None and self._backend is not None and self.book_uuid is not None:
            with contextlib.closing(self._backend.get_connection()) as conn:
                self._book = conn.get_logbook(self.book_uuid)
        return self._book

    @property
    def book_uuid(self) -> str | None:
        if self._book is not None:
            return self._book.uuid
        value = self._book_data.get("uuid")
        return None if value is None else str(value)

    @property
    def book_name(self) -> str | None:
        if self._book is not None:
            return self._book.name
        value = self._book_data.get("name")
        return None if value is None else str(value)

    def wait(
        self,
        timeout: float | None = None,
        delay: float = 0.01,
        delay_multiplier: float = 2.0,
        max_delay: float = 60.0,
        sleep_func: Callable[[float], Any] = time.sleep,
    ) -> bool:
        """Wait until the job is COMPLETE; True if it is, False once ``timeout`` passes.

        The state is polled with a delay that starts at ``delay`` and grows by
        ``delay_multiplier`` up to ``max_delay``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.state == states.COMPLETE:
                return True
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sleep_func(min(delay, left))
            else:
                sleep_func(delay)
            delay = min(delay * delay_multiplier, max_delay)

    def __str__(self) -> str:
        return (
            f"{type(self).__name__}: {self.name} (priority={self.priority},"
            f" uuid={self.uuid}, details={self.details})"
        )


class TrashedJob(NamedTuple):
    """A job set aside by :meth:`JobBoard.trash`, as :meth:`JobBoard.iter_trash` lists it."""

    job: Job
    #: Why it was trashed (the ``reason`` given to ``trash``), if anyone said.
    reason: str | None
    #: When it was trashed.
    trashed_on: datetime | None


class JobBoard(abc.ABC):
    """A shared list of jobs that workers post, claim and finish.

    Usable as a context manager: ``with board:`` connects (unless connected) and closes.

    Args:
        name: the board's name (for logs).
        conf: the board's configuration.
    """

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self._name = name
        self._conf = conf

    @property
    def name(self) -> str:
        return self._name

    @abc.abstractmethod
    def iterjobs(
        self, only_unclaimed: bool = False, ensure_fresh: bool = False
    ) -> JobBoardIterator:
        """Jobs on the board by priority, then oldest first.

        Args:
            only_unclaimed: skip jobs someone holds.
            ensure_fresh: read the board now rather than from a cache (taskflow's boards
                always read it now).
        """

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> JobBoardIterator:
        """Block until the board has a job (claimed or not), then iterate the jobs.

        Raises:
            taskflow.exceptions.NotFound: ``timeout`` seconds passed with no job.
        """

    @property
    @abc.abstractmethod
    def job_count(self) -> int:
        """How many jobs the board has (claimed or not; not consumed or trashed ones)."""

    @abc.abstractmethod
    def find_owner(self, job: Job) -> str | None:
        """Who holds ``job`` now, or None."""

    @abc.abstractmethod
    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: Any = None,
        priority: JobPriority | str = JobPriority.NORMAL,
    ) -> Job:
        """Add a job to the board and return it.

        Raises:
            ValueError: ``priority`` is not one.
            taskflow.exceptions.JobFailure: the board could not store it.
        """

    @abc.abstractmethod
    def claim(self, job: Job, who: str) -> None:
        """Take ``job`` for ``who``: nobody else can claim it until it is released.

        Raises:
            TypeError, ValueError: ``who`` is not a non-empty string.
            taskflow.exceptions.NotFound: the job is gone (consumed or trashed).
            taskflow.exceptions.UnclaimableJob: someone (``who`` included) holds it.
        """

    @abc.abstractmethod
    def consume(self, job: Job, who: str) -> None:
        """Finish ``job`` held by ``who``: it leaves the board (state COMPLETE).

        Raises:
            taskflow.exceptions.NotFound: the job is gone, or nobody holds it.
            taskflow.exceptions.JobFailure: someone else holds it.
        """

    @abc.abstractmethod
    def abandon(self, job: Job, who: str) -> None:
        """Give ``job`` held by ``who`` back: UNCLAIMED again, for anyone to claim.

        Raises: as :meth:`consume`.
        """

    @abc.abstractmethod
    def trash(self, job: Job, who: str) -> None:
        """Set ``job`` held by ``who`` aside: it leaves the board, never handed out again.

        Raises: as :meth:`consume`.
        """

    @abc.abstractmethod
    def register_entity(self, entity: Entity) -> None:
        """Make ``entity`` (a conductor, say) known on the board."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection to the board's backing store."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; the board may be connected again later."""

    def wait_for_change(self, timeout: float) -> bool:
        """Block until the board may have changed, or ``timeout`` seconds pass.

        For idle workers: wake on a post, a release or a lapsed claim, without polling the
        whole list. True if something may have changed (spurious wake-ups are allowed),
        False on timeout. This default sleeps for ``timeout`` and says True; taskflow's
        boards wake as soon as the store signals a change.
        """
        time.sleep(max(0.0, timeout))
        return True

    def iter_trash(self) -> Iterator[TrashedJob]:
        """Trashed jobs with their reasons, oldest first (taskflow's boards only).

        Raises:
            taskflow.exceptions.NotImplementedError: the board keeps no trash list.
        """
        raise exc.NotImplementedError(f"{type(self).__name__} does not list its trash")

    def __enter__(self) -> Self:
        if not self.connected:
            self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class NotifyingJobBoard(JobBoard):
    """A board that tells listeners of :data:`POSTED` and :data:`REMOVAL` events.

    Register on :attr:`notifier`; callbacks get ``details={'job': job}``.
    """

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        super().__init__(name, conf)
        self.notifier = notifier.Notifier()


class JobBoardIterator:
    """Iterates a board's jobs, fetched on the first ``next()``.

    Args:
        board: the board the jobs come from.
        logger: where to log about skipped jobs.
        board_fetch_func: ``f(ensure_fresh) -> list of jobs`` in hand-out order.
        board_removal_func: called with a job found COMPLETE, so the board can forget it.
        only_unclaimed: skip jobs whose state is not UNCLAIMED.
        ensure_fresh: passed to ``board_fetch_func``.
    """

    def __init__(
        self,
        board: JobBoard,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        board_fetch_func: Callable[[bool], list[Job]] | None = None,
        board_removal_func: Callable[[Job], Any] | None = None,
        only_unclaimed: bool = False,
        ensure_fresh: bool = False,
    ) -> None:
        self._board = board
        self._logger = logger
        self._fetch = board_fetch_func
        self._remove = board_removal_func
        self.only_unclaimed = only_unclaimed
        self.ensure_fresh = ensure_fresh
        self._jobs: Iterator[Job] | None = None

    @property
    def board(self) -> JobBoard:
        return self._board

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Job:
        if self._jobs is None:
            fetched = self._fetch(self.ensure_fresh) if self._fetch is not None else []
            self._jobs = iter(fetched)
        for job in self._jobs:
            if not (self.only_unclaimed or self._remove is not None):
                return job
            state = job.state
            if state == states.COMPLETE:
                if self._remove is not None:
                    self._remove(job)
                continue
            if self.only_unclaimed and state != states.UNCLAIMED:
                continue
            return job
        raise StopIteration
