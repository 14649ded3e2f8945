"""The contract every persistence backend fulfils.

A :class:`Backend` is configured once (a dict, usually built by
:func:`taskflow.persistence.backends.fetch` from a URI) and hands out :class:`Connection`
objects. Connections read and write :mod:`~taskflow.persistence.models` objects: log books,
the flow details in them and the atom details in those.

Guarantees every backend gives (the contract suite in ``tests/persistence`` checks them):

* **Atomic.** Each write method either fully happens or not at all; a reader never sees a
  torn record. ``save_logbook`` and ``update_flow_details`` write several records and are
  atomic per record (a crash may leave some of the children saved, never half of one).
* **Durable on return.** When a write method returns, the data survives a crash of the
  calling process (for the memory backend: lives as long as the backend object).
* **Copies, not aliases.** Objects read back are the caller's to mutate, except where a
  backend documents otherwise (the memory backend with ``deep_copy=False`` shares them).
* **NotFound** (:class:`taskflow.exceptions.NotFound`) for unknown uuids; driver errors
  become :class:`taskflow.exceptions.StorageFailure`.
* **One owner per running flow.** :meth:`Connection.claim_flow` makes the connection the
  flow's owner, with a lease and a fencing token that only increases; once another connection
  claims the flow, every write of the old owner's connection is refused with
  :class:`taskflow.exceptions.OwnershipLost` (checked by the write itself, in the same atomic
  operation: no extra round trip).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType

    from taskflow.persistence import models

__all__ = ["Backend", "Connection", "Ownership"]

#: Seconds an owner's lease lasts unless renewed (engines renew it while they run).
DEFAULT_LEASE = 30.0


@dataclasses.dataclass(frozen=True)
class Ownership:
    """Who runs a flow detail, as its backend records it.

    Attributes:
        owner: the owner's unique name (host, pid and a random part).
        host: the owner's host name.
        pid: the owner's process id on that host.
        token: the fencing token; every claim of the flow gets a larger one.
        expires: when the lease lapses (``time.time()`` seconds); None once released.
        fence_key: what the claim was made for, elsewhere (a conductor's job uuid), if any;
            kept when the flow is released, and by claims made without one.
        fence_token: the token of that outside claim (the job's claim token).
    """

    owner: str | None
    host: str | None
    pid: int | None
    token: int
    expires: float | None
    fence_key: str | None = None
    fence_token: int | None = None

    @property
    def held(self) -> bool:
        """Whether somebody holds the flow now (claimed, not released, lease not lapsed)."""
        return self.owner is not None and self.expires is not None and self.expires > time.time()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ownership:
        """Read back :meth:`to_dict`'s output (as stored by path-based backends).

        Raises:
            taskflow.exceptions.StorageFailure: the record is not an ownership record.
        """
        try:
            return cls(
                owner=None if data["owner"] is None else str(data["owner"]),
                host=None if data["host"] is None else str(data["host"]),
                pid=None if data["pid"] is None else int(data["pid"]),
                token=int(data["token"]),
                expires=None if data["expires"] is None else float(data["expires"]),
                fence_key=None if data.get("fence_key") is None else str(data["fence_key"]),
                fence_token=None if data.get("fence_token") is None else int(data["fence_token"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise exc.StorageFailure(f"Unreadable ownership record: {data!r}") from err


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (one we may not signal still runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_fencing_token(value: Any) -> int | None:
    """A fencing token as given to :meth:`Connection.claim_flow`: None, or a positive integer.

    Raises:
        ValueError: anything else (a bool, a float, zero...), named in the message.
    """
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"A fencing token must be a positive integer, not {value!r}")
    return value


def claimable(current: Ownership | None, now: float, host: str) -> bool:
    """Whether a flow with ``current`` ownership may be claimed by a newcomer on ``host``."""
    if current is None or current.owner is None or current.expires is None:
        return True  # never claimed, or released
    if current.expires <= now:
        return True  # the lease lapsed
    return current.host == host and current.pid is not None and _process_gone(current.pid)


class Backend(abc.ABC):
    """A configured persistence store that hands out connections.

    Use it as a context manager to have it closed on exit.

    Args:
        conf: backend options (plus ``connection``, the URI it was fetched with); each
            backend documents the keys it reads.
    """

    def __init__(self, conf: Mapping[str, Any] | None) -> None:
        self._conf: dict[str, Any] = dict(conf) if conf else {}

    @abc.abstractmethod
    def get_connection(self) -> Connection:
        """A connection to this backend (cheap; may be called per operation)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's resources; idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Connection(abc.ABC):
    """Reads and writes log books, flow details and atom details of one backend.

    Use it as a context manager to have it closed on exit.
    """

    @property
    @abc.abstractmethod
    def backend(self) -> Backend:
        """The backend this connection belongs to."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release this connection's resources (not the backend's); idempotent."""

    @abc.abstractmethod
    def upgrade(self) -> None:
        """Create or migrate the store's structure (tables, directories); idempotent."""

    @abc.abstractmethod
    def validate(self) -> None:
        """Check the store is reachable and usable; raises ``StorageFailure`` if not."""

    @abc.abstractmethod
    def clear_all(self) -> None:
        """Delete every log book, flow detail and atom detail.

        The store stays usable (no new ``upgrade()`` is needed). Durable on return; not
        necessarily atomic across books.
        """

    @abc.abstractmethod
    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        """Create ``book`` or merge it into the stored one, with all its children.

        The book's fields, every flow detail in it and every atom detail in those are
        created or merged (children stored but absent from ``book`` are kept). Each record
        is written atomically; durable on return.

        Returns:
            The book as now stored.
        """

    @abc.abstractmethod
    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete a book and, with it, its flow details and their atom details.

        Raises:
            taskflow.exceptions.NotFound: no such book.
        """

    @abc.abstractmethod
    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        """A stored book, with its flow details and their atom details.

        Args:
            book_uuid: the book's uuid.
            lazy: leave the book's flow details out.

        Raises:
            taskflow.exceptions.NotFound: no such book.
        """

    @abc.abstractmethod
    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        """Iterate over every stored book (``lazy``: without their flow details)."""

    @abc.abstractmethod
    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        """Iterate over a book's flow details (``lazy``: without their atom details).

        Raises:
            taskflow.exceptions.NotFound: no such book.
        """

    # The uuid parameters below keep the abstract names upstream TaskFlow gives them
    # (fd_uuid/ad_uuid); concrete backends name them flow_uuid/atom_uuid, as upstream's do,
    # so portable callers pass these uuids positionally.
    @abc.abstractmethod
    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> models.FlowDetail:
        """A stored flow detail, with its atom details unless ``lazy``.

        Raises:
            taskflow.exceptions.NotFound: no such flow detail.
        """

    @abc.abstractmethod
    def get_atom_details(self, ad_uuid: str) -> models.AtomDetail:
        """A stored atom detail.

        Raises:
            taskflow.exceptions.NotFound: no such atom detail.
        """

    @abc.abstractmethod
    def get_atoms_for_flow(self, fd_uuid: str) -> Iterator[models.AtomDetail]:
        """Iterate over a flow detail's atom details.

        Raises:
            taskflow.exceptions.NotFound: no such flow detail.
        """

    @abc.abstractmethod
    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        """Merge ``flow_detail`` into the stored one, with all its atom details.

        Atom details new to the store are created; stored ones are merged. Each record is
        written atomically; durable on return.

        Returns:
            The flow detail as now stored (possibly ``flow_detail`` itself, when it
            already equals the stored record).

        Raises:
            taskflow.exceptions.NotFound: the flow detail was never saved (unless
                ``ignore_missing``: then it is created).
        """

    def update_flow_record(self, flow_detail: models.FlowDetail) -> None:
        """Write only the flow detail's own fields (state, meta, name), not its atoms.

        Engines call this on flow state changes, which must not cost a write per atom.
        Beyond upstream's contract; this default delegates to :meth:`update_flow_details`,
        and backends override it with a single-record write (atomic, durable on return).

        Raises:
            taskflow.exceptions.NotFound: the flow detail was never saved.
        """
        self.update_flow_details(flow_detail)

    @abc.abstractmethod
    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        """Merge ``atom_detail`` into the stored one.

        The engine calls this on every atom transition; the record is written atomically
        and durably before this returns (the write-ahead rule relies on it).

        Returns:
            The atom detail as now stored (possibly ``atom_detail`` itself, when it
            already equals the stored record).

        Raises:
            taskflow.exceptions.NotFound: the atom detail was never saved (save it through
                its flow detail first).
        """

    # -- ownership (one owner per running flow, fenced) ------------------------------------

    #: The flow this connection owns and its token: its writes are fenced by them.
    _fence: tuple[str, int] | None = None

    def read_ownership(self, flow_uuid: str) -> Ownership | None:
        """The flow's recorded ownership (None if it was never claimed)."""
        raise exc.NotImplementedError(f"{type(self).__name__} does not record flow ownership")

    def swap_ownership(self, flow_uuid: str, expected_token: int | None, new: Ownership) -> bool:
        """Replace the flow's ownership record by ``new`` if its token is ``expected_token``.

        ``expected_token`` None means no record exists yet (it is created). Atomic: of two
        connections swapping from the same token, one wins. True if this one did.
        """
        raise exc.NotImplementedError(f"{type(self).__name__} does not record flow ownership")

    def claim_flow(
        self,
        flow_uuid: str,
        lease: float = DEFAULT_LEASE,
        fencing_token: int | None = None,
        fencing_key: str | None = None,
    ) -> Ownership:
        """Make this connection the owner of the flow detail ``flow_uuid`` for ``lease`` s.

        Succeeds when nobody owns the flow, when its owner's lease lapsed, or when its owner
        runs on this host and its process is gone. The new token is larger than every
        earlier one; from now on, this connection's writes are refused with
        :class:`~taskflow.exceptions.OwnershipLost` once another connection claims the flow.

        ``fencing_token`` and ``fencing_key`` name a claim made elsewhere for this run: a
        conductor's claim of a job (its token, which only grows per job, and the job's
        uuid). They are recorded with the ownership, and among claims for the same key the
        larger token wins: such a claim takes the flow at once from a live owner that
        claimed for a smaller token (a holder paused past its job's lease), and a claim for
        a smaller token than the one recorded is refused even once the flow is released (a
        stale holder waking up after its successor finished must not run the flow again).

        Raises:
            taskflow.exceptions.FlowOwned: another owner holds the flow, or a newer claim
                for the same key has (named in the message).
            ValueError: ``fencing_token`` is not a positive integer.
        """
        fencing_token = check_fencing_token(fencing_token)
        host = socket.gethostname()
        name = f"{host}:{os.getpid()}:{os.urandom(4).hex()}"
        while True:
            current = self.read_ownership(flow_uuid)
            now = time.time()
            # The token recorded for the same key, if this claim has one to compare with.
            recorded = (
                current.fence_token
                if fencing_token is not None
                and current is not None
                and current.fence_key == fencing_key
                else None
            )
            if recorded is not None and fencing_token is not None and recorded > fencing_token:
                raise exc.FlowOwned(
                    f"Flow detail '{flow_uuid}' was claimed for a newer claim (token"
                    f" {recorded}) of {fencing_key!r} than this one (token {fencing_token}):"
                    " this claim is stale"
                )
            newer = recorded is not None and fencing_token is not None and recorded < fencing_token
            if not newer and not claimable(current, now, host):
                assert current is not None
                raise exc.FlowOwned(
                    f"Flow detail '{flow_uuid}' is being run by '{current.owner}' (pid"
                    f" {current.pid} on {current.host}, lease until"
                    f" {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(current.expires))})"
                )
            token = current.token + 1 if current is not None else 1
            fence: tuple[str | None, int | None]
            if fencing_token is not None:
                fence = (fencing_key, fencing_token)
            elif current is not None:
                fence = (current.fence_key, current.fence_token)  # a plain claim keeps it
            else:
                fence = (None, None)
            mine = Ownership(name, host, os.getpid(), token, now + lease, *fence)
            if self.swap_ownership(flow_uuid, None if current is None else current.token, mine):
                self._fence = (flow_uuid, token)
                return mine
            # Somebody else changed the record between our read and our swap: look again.

    def renew_flow(self, flow_uuid: str, token: int, lease: float = DEFAULT_LEASE) -> Ownership:
        """Extend this owner's lease by ``lease`` seconds from now.

        Raises:
            taskflow.exceptions.OwnershipLost: the flow has been claimed by another since.
        """
        current = self.read_ownership(flow_uuid)
        if current is None or current.token != token or current.owner is None:
            raise exc.OwnershipLost(self._lost_message(flow_uuid, token, current))
        renewed = dataclasses.replace(current, expires=time.time() + lease)
        if not self.swap_ownership(flow_uuid, token, renewed):
            raise exc.OwnershipLost(
                self._lost_message(flow_uuid, token, self.read_ownership(flow_uuid))
            )
        return renewed

    def release_flow(self, flow_uuid: str, token: int) -> None:
        """Give the flow up (does nothing if another owner has it since); the token stays."""
        if self._fence == (flow_uuid, token):
            self._fence = None
        current = self.read_ownership(flow_uuid)
        if current is not None and current.token == token and current.owner is not None:
            released = dataclasses.replace(current, owner=None, host=None, pid=None, expires=None)
            self.swap_ownership(flow_uuid, token, released)

    @staticmethod
    def _lost_message(flow_uuid: str, token: int, current: Ownership | None) -> str:
        now_held = (
            f"'{current.owner}' (pid {current.pid} on {current.host}, token {current.token})"
            if current is not None and current.owner is not None
            else "nobody"
        )
        return (
            f"Ownership of flow detail '{flow_uuid}' (token {token}) was lost: it is now held"
            f" by {now_held}; this engine's writes are refused"
        )

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
