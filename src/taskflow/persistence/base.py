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
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import TracebackType

    from taskflow.persistence import models

__all__ = ["Backend", "Connection"]


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

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
