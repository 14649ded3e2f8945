"""The one contract each board kind implements (guarantees: the package docstring)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from taskflow.jobs.base import JobPriority

__all__ = ["BoardStore", "BookRef", "Listing", "Outcome", "Posting", "TrashEntry"]


@dataclass(frozen=True, slots=True)
class BookRef:
    """The logbook a job points at."""

    name: str
    uuid: str


@dataclass(frozen=True, slots=True)
class Posting:
    """What a job is: written once by ``post``, never changed after."""

    uuid: str
    name: str
    priority: JobPriority
    details: Any
    book: BookRef | None
    #: When it was posted (aware, UTC), by the poster's clock.
    created_on: datetime
    #: Hand-out order among equal priorities; assigned by the store's ``post`` (0 before).
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Listing:
    """A live job with its claim as of the moment it was read."""

    posting: Posting
    #: The holder of an unexpired claim, or None.
    owner: str | None
    #: The token of that claim (None when unclaimed).
    token: int | None
    #: Claims of this job that ended without consume (abandoned or lapsed).
    attempts: int
    #: When the job was last claimed or released (aware, UTC), if ever.
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class TrashEntry:
    """A trashed job."""

    posting: Posting
    reason: str | None
    attempts: int
    trashed_on: datetime | None


class Outcome(enum.Enum):
    """How a claim ends."""

    CONSUME = "consume"
    ABANDON = "abandon"
    TRASH = "trash"


class BoardStore(Protocol):
    """Storage of one board; see the ``taskflow._jobs`` docstring for each guarantee."""

    def connect(self, timeout: float) -> None: ...

    def close(self) -> None: ...

    def post(self, posting: Posting) -> Posting:
        """Store ``posting`` atomically; it back with its ``sequence`` set."""

    def listings(self) -> list[Listing]: ...

    def get(self, uuid: str) -> Listing | None: ...

    def claim(self, uuid: str, owner: str, lease: float) -> int:
        """The new claim's fencing token."""

    def renew(self, uuid: str, owner: str, token: int, lease: float) -> bool: ...

    def release(
        self, uuid: str, owner: str, token: int | None, outcome: Outcome, reason: str | None
    ) -> None: ...

    def trash(self) -> list[TrashEntry]:
        """Trashed jobs, oldest trashed first."""

    def wait_changed(self, timeout: float) -> bool: ...

    def interrupt(self) -> None:
        """Make a ``wait_changed`` blocked in another thread return soon (closing)."""

    def register_entity(self, kind: str, name: str, metadata: dict[str, Any]) -> None: ...
