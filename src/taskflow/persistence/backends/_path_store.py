"""The persistence connection of the path-based backends, over one small record-store contract.

Theory of operation. The memory, directory and ZooKeeper backends keep upstream TaskFlow's
tree of records under a root path::

    <root>/books/<book uuid>             the book's own fields; a link per flow (named by its uuid)
    <root>/flow_details/<flow uuid>      the flow's own fields; a link per atom
    <root>/atom_details/<atom uuid>      the atom's fields and its type
    <root>/owners/<flow uuid>            who runs the flow (see RecordStore.swap_owner)

:class:`PathConnection` implements :class:`taskflow.persistence.base.Connection` once over
that layout: which records a call reads or writes, lazy loading, which object it returns and
how destroy and clear_all plan their deletes. A backend supplies two things:

* a :class:`RecordStore`, translating the few operations below to its medium (a dict, files,
  znodes) and its driver's errors to taskflow's, in one place;
* a :class:`Codec`, turning models into the records its store holds and back (JSON-ready
  dicts, or -- in memory -- the model objects themselves).

A record holds a detail's own fields, never its children: those are *links*, named after the
child's uuid, under the parent's record. Saving a detail replaces its record by the detail's
fields, unread (so the engine's update of an atom writes one record and reads nothing), and
only ever adds links to a parent, so what other writers linked stays: that is how a saved
book or flow merges into the stored one. Stores that hold live objects (memory) merge the
given detail into the stored object instead; :class:`Stored` tells the connection whether
what the caller holds still stands for what is stored, or must be read back.
"""

from __future__ import annotations

import abc
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from taskflow import _serialization
from taskflow import exceptions as exc
from taskflow.persistence import base, models

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

__all__ = [
    "ATOMS",
    "ATTEMPTS",
    "BOOKS",
    "FLOWS",
    "JSON",
    "Codec",
    "Conflict",
    "Delete",
    "Entry",
    "JsonRecords",
    "OWNERS",
    "PathConnection",
    "RecordStore",
    "Stored",
    "Transaction",
    "Write",
    "check_values",
    "corrupt",
    "join",
    "ordered",
    "pack_owner",
    "pause",
    "unpack_owner",
]

#: The three directories under the root, in the order stores list them.
BOOKS, FLOWS, ATOMS = "books", "flow_details", "atom_details"
#: The directory of the flows' ownership records, beside the three. Trees written before
#: flows had owners lack it until ``upgrade()`` or a first claim creates it.
OWNERS = "owners"

#: How many times an operation that met a concurrent change is planned again, with a
#: random pause of up to min(_BACKOFF * 2**attempt, _MAX_BACKOFF) seconds in between.
ATTEMPTS = 8
_BACKOFF = 0.01
_MAX_BACKOFF = 0.25

R = TypeVar("R")
B = TypeVar("B", bound=base.Backend)
_D = TypeVar("_D")


def join(parent: str, name: str) -> str:
    """``parent/name`` (``/`` as the root gives ``/name``)."""
    return f"{parent.rstrip('/')}/{name}"


def pause(attempt: int) -> None:
    """Wait before trying again; random, growing pauses spread competing writers apart."""
    time.sleep(random.uniform(0, min(_BACKOFF * 2**attempt, _MAX_BACKOFF)))


def corrupt(where: str, err: Exception) -> exc.StorageFailure:
    """The error for a stored record that can not be read back (``where`` names it)."""
    return exc.StorageFailure(f"Corrupt record '{where}': {type(err).__name__}: {err}")


def pack_owner(ownership: base.Ownership) -> bytes:
    """An ownership record as the stores that serialise keep it (compact UTF-8 JSON)."""
    return json.dumps(ownership.to_dict(), separators=(",", ":")).encode()


def unpack_owner(data: bytes, where: str) -> base.Ownership:
    """Read back :func:`pack_owner`'s bytes.

    Raises:
        taskflow.exceptions.StorageFailure: not an ownership record (naming ``where``).
    """
    try:
        record = json.loads(data.decode())
        if not isinstance(record, dict):
            raise TypeError(f"expected a JSON object, got {type(record).__name__}")
        return base.Ownership.from_dict(record)
    except (ValueError, TypeError, exc.StorageFailure) as err:  # JSON and Unicode errors too
        raise corrupt(where, err) from err


# -- the record-store contract ----------------------------------------------------------------


class Entry(NamedTuple, Generic[R]):
    """A record as read, with the names of its links (in link order; [] unless asked)."""

    record: R
    links: list[str]


class Stored(NamedTuple):
    """What a committed write left in the store.

    Attributes:
        kept: the caller's record may stand for the stored one: the store holds it as
            given, or (a store isolating its objects) merged it into a stored record of
            the same name, which now reads back equal. False when a reader gets something
            else (a copy of a new record, a shared object merged into).
        links: every link of the record after the commit, in order ([] for a leaf).
    """

    kept: bool
    links: list[str]


class Write(NamedTuple, Generic[R]):
    """Make the record at ``path`` hold ``record``.

    Attributes:
        create: create the record if missing (else a missing record is ``NotFound``).
        links: None for a leaf (a record that never has links, e.g. an atom's); for a
            parent, the names to link under it: new ones are added after its existing
            links, which stay (an empty list adds none).
        into: the directory holding the records ``links`` name.
    """

    path: str
    record: R
    create: bool = False
    links: Sequence[str] | None = None
    into: str = ""


class Delete(NamedTuple):
    """Remove the record at ``path`` (nothing if it is missing) and its links.

    Attributes:
        links: None for a leaf; for a parent, the links it has as the caller read them.
            If it has others by the time the delete applies (a writer linked more
            meanwhile), the commit raises :class:`Conflict` instead.
    """

    path: str
    links: Sequence[str] | None = None


@dataclass(slots=True)
class Transaction(Generic[R]):
    """Writes and deletes applied together, in order, by :meth:`RecordStore.commit`.

    Callers order them children first: records before the parents linking them, so a
    reader never follows a link to a record not written yet, and children deleted before
    their parent, so an interrupted delete can be finished by deleting the parent again.
    """

    ops: list[Write[R] | Delete] = field(default_factory=list)
    #: ``(flow uuid, token)``: commit only while that flow's ownership token is this one
    #: (checked atomically with the writes); else ``OwnershipLost`` and nothing is written.
    fence: tuple[str, int] | None = None

    def set(
        self,
        path: str,
        record: R,
        *,
        create: bool = False,
        links: Sequence[str] | None = None,
        into: str = "",
    ) -> None:
        """Add a :class:`Write`."""
        self.ops.append(Write(path, record, create, links, into))

    def delete(self, path: str, links: Sequence[str] | None = None) -> None:
        """Add a :class:`Delete`."""
        self.ops.append(Delete(path, links))


class Conflict(Exception):
    """A delete met links the caller did not read: read again and plan again."""


class RecordStore(abc.ABC, Generic[R]):
    """Records at paths, with named links under them: what a path-based backend stores in.

    Records sit in directories (``<root>/books``...); a record's path is its directory and
    its name. Every method turns the medium's errors into
    :class:`~taskflow.exceptions.StorageFailure` (one context manager per store), and a
    record the store can not decode into one naming it (see :func:`corrupt`).
    """

    #: What one value (a result, revert result or meta) may be; the connection checks
    #: every value against it before anything is written (:func:`check_values`). None: the
    #: store holds anything as it is (the memory store sharing the caller's objects).
    limits: _serialization.Limits | None = None

    @abc.abstractmethod
    def read(self, paths: Sequence[str], links: bool = False) -> list[Entry[R] | None]:
        """The records at ``paths`` (None where missing), with their links if asked.

        Each record is read whole (never half of a concurrent write); the records of one
        call need not be one snapshot. Links come back in the order they were made; links
        without a recorded order (written by upstream TaskFlow) follow, oldest first where
        the medium knows it.
        """

    @abc.abstractmethod
    def children(self, paths: Sequence[str]) -> list[list[str] | None]:
        """The names under each path: a directory's records, or a record's links.

        Ordered as :meth:`read` orders links; a directory's records in a stable order
        (oldest first where the medium knows it). None where the path is missing. Works
        on records that can not be decoded (so that they can be deleted).
        """

    @abc.abstractmethod
    def commit(self, txn: Transaction[R]) -> dict[str, Stored]:
        """Apply ``txn``; durable on return.

        Atomic as the medium allows (each store says how): every record is written whole,
        and a transaction fails before writing anything when a :class:`Write` without
        ``create`` finds no record (``NotFound``) or a record can not be encoded
        (``TypeError``).

        Returns:
            For each written path, what the write left (:class:`Stored`).

        Raises:
            Conflict: a :class:`Delete` met links it was not given.
        """

    @abc.abstractmethod
    def upgrade(self, directories: Sequence[str]) -> None:
        """Create the directories (and what leads to them) if missing; idempotent."""

    @abc.abstractmethod
    def validate(self, directories: Sequence[str]) -> None:
        """Check the medium is reachable and usable; ``StorageFailure`` if not."""

    def where(self, path: str) -> str:
        """How error messages name the record at ``path`` (e.g. its file)."""
        return path

    def read_owner(self, flow_uuid: str) -> base.Ownership | None:
        """The flow's ownership record (None if the flow was never claimed)."""
        raise exc.NotImplementedError(f"{type(self).__name__} does not record flow ownership")

    def swap_owner(self, flow_uuid: str, expected_token: int | None, new: base.Ownership) -> bool:
        """Store ``new`` as the flow's ownership if its token is ``expected_token`` (None: if
        there is no record yet); atomic against other swaps and fenced commits. True if done.
        """
        raise exc.NotImplementedError(f"{type(self).__name__} does not record flow ownership")

    def drop_owners(self, flow_uuids: Sequence[str]) -> None:
        """Forget the ownership records of these (destroyed) flows; missing ones are skipped."""

    def close(self) -> None:
        """Release what the store keeps open between calls (it reopens it if used again)."""

    @staticmethod
    def fenced_out(txn: Transaction[Any], current: base.Ownership | None) -> None:
        """Raise ``OwnershipLost`` if ``txn`` is fenced by a token ``current`` no longer has."""
        fence = txn.fence
        if fence is not None and (current is None or current.token != fence[1]):
            held = base.Connection._lost_message(fence[0], fence[1], current)
            raise exc.OwnershipLost(held)


class Codec(Protocol[R]):
    """Turns models into the records a store holds, and records back into models.

    ``to_book`` and ``to_flow`` give details to which the connection adds the children it
    reads, unless ``lazy``: then they must come without any (a store of live objects hands
    out a copy without the children its stored object holds).
    """

    def book(self, book: models.LogBook, /) -> R: ...
    def flow(self, fd: models.FlowDetail, /) -> R: ...
    def atom(self, ad: models.AtomDetail, /) -> R: ...
    def to_book(self, record: R, lazy: bool, /) -> models.LogBook: ...
    def to_flow(self, record: R, lazy: bool, /) -> models.FlowDetail: ...
    def to_atom(self, record: R, /) -> models.AtomDetail: ...


class _JsonCodec:
    """Models as the JSON objects upstream TaskFlow stores (values still Python values).

    Atoms are ``{"atom": ad.to_dict(), "type": "TASK_DETAIL"|"RETRY_DETAIL"}``, a retry's
    history entries ``[value, {atom name: failure dict}]`` arrays; books carry their times
    as ``{year, month, ...}`` dicts.
    """

    def book(self, book: models.LogBook, /) -> dict[str, Any]:
        return book.to_dict(marshal_time=True)

    def flow(self, fd: models.FlowDetail, /) -> dict[str, Any]:
        return fd.to_dict()

    def atom(self, ad: models.AtomDetail, /) -> dict[str, Any]:
        data = ad.to_dict()
        if isinstance(ad, models.RetryDetail):
            # Entries as arrays (upstream's shape); the tuple encoding is for values only.
            data["results"] = [[value, failures] for value, failures in data["results"]]
        return {"atom": data, "type": models.atom_detail_type(ad)}

    def to_book(self, record: dict[str, Any], lazy: bool, /) -> models.LogBook:
        return models.LogBook.from_dict(record, unmarshal_time=True)

    def to_flow(self, record: dict[str, Any], lazy: bool, /) -> models.FlowDetail:
        return models.FlowDetail.from_dict(record)

    def to_atom(self, record: dict[str, Any], /) -> models.AtomDetail:
        return models.atom_detail_class(record["type"]).from_dict(record["atom"])


#: The codec of the stores that serialise records (directory, ZooKeeper).
JSON: Codec[dict[str, Any]] = _JsonCodec()


class JsonRecords:
    """Records as JSON text, with a parent's link order kept in its record (key ``order_key``).

    Values are encoded with :mod:`taskflow._serialization`, so tuples and sets round-trip.
    The order lives in the record itself so that a record and its order are written by one
    atomic replace; readers trust links for membership and the order only for ordering.

    Args:
        order_key: the record key holding the order.
        encoding: the text encoding of the stored bytes.
    """

    def __init__(self, order_key: str, encoding: str = "utf-8") -> None:
        self._key = order_key
        self._encoding = encoding

    @staticmethod
    def encode(record: Any) -> Any:
        """``record`` as plain JSON data; done before writing anything.

        Raises:
            TypeError: a value JSON can not hold.
        """
        return _serialization.to_jsonable(record)

    def pack(self, encoded: Any, order: list[str] | None = None) -> bytes:
        """The bytes of an :meth:`encode`-d record, with its link order if given."""
        if order is not None:
            encoded = {**encoded, self._key: order}
        return json.dumps(encoded, separators=(",", ":")).encode(self._encoding)

    def unpack(self, data: bytes, where: str) -> tuple[dict[str, Any], list[Any] | None]:
        """(record, link order or None) from stored bytes.

        Raises:
            taskflow.exceptions.StorageFailure: not a JSON object (naming ``where``).
        """
        try:
            record = _serialization.loads(data.decode(self._encoding))
        except ValueError as err:  # JSON and Unicode errors alike
            raise corrupt(where, err) from err
        if not isinstance(record, dict):
            raise corrupt(where, TypeError(f"expected a JSON object, got {type(record).__name__}"))
        order = record.pop(self._key, None)
        return record, order if isinstance(order, list) else None

    def order(self, data: bytes) -> list[Any] | None:
        """The link order in stored bytes; None if there is none or they are unreadable."""
        try:
            return self.unpack(data, "")[1]
        except exc.StorageFailure:
            return None


def ordered(names: Sequence[str], order: list[Any] | None) -> tuple[list[str], list[str]]:
    """(``names`` in the recorded ``order``, the rest in the order given)."""
    present = set(names)
    recorded = (name for name in order or () if isinstance(name, str))
    known = [name for name in dict.fromkeys(recorded) if name in present]
    listed = set(known)
    return known, [name for name in names if name not in listed]


def check_values(
    detail: models.LogBook | models.FlowDetail | models.AtomDetail, limits: _serialization.Limits
) -> None:
    """Check every value of ``detail``'s own record can be stored within ``limits``.

    Raises:
        taskflow._serialization.UnstorableValue: one can not; the message names the detail,
            the value and why.
    """
    check = _serialization.dumps_checked
    try:
        if isinstance(detail, models.AtomDetail):
            results = detail.results
            if isinstance(detail, models.RetryDetail):
                # History entries are (value, {atom name: failure}); failures are data.
                results = [value for value, _ in results]
            check(results, limits, "results")
            check(detail.revert_results, limits, "revert_results")
        check(detail.meta, limits, "meta")
    except _serialization.UnstorableValue as err:
        kind = {models.LogBook: "Log book", models.FlowDetail: "Flow detail"}.get(
            type(detail), "Atom"
        )
        # The same error, naming the record (the message already says what and why).
        raise _serialization.UnstorableValue(
            f"{kind} '{detail.name}' ({detail.uuid}): {err}"
        ) from None


# -- the connection --------------------------------------------------------------------------


class PathConnection(base.Connection, Generic[R, B]):
    """A :class:`~taskflow.persistence.base.Connection` over a :class:`RecordStore`.

    ``update_flow_details`` and ``update_atom_details`` also accept ``ignore_missing=True``,
    which creates a detail that was never saved instead of raising ``NotFound`` (outside any
    book, respectively outside any flow, until a parent links it).

    Attributes:
        book_path, flow_path, atom_path: the three directories of the tree.
        owner_path: the directory of the flows' ownership records.
    """

    def __init__(self, backend: B, store: RecordStore[R], codec: Codec[R], root: str) -> None:
        self._backend = backend
        self._store = store
        self._codec = codec
        self.book_path = join(root, BOOKS)
        self.flow_path = join(root, FLOWS)
        self.atom_path = join(root, ATOMS)
        self.owner_path = join(root, OWNERS)

    @property
    def backend(self) -> B:
        return self._backend

    def close(self) -> None:
        """Release what the store keeps open for this connection (see RecordStore.close)."""
        self._store.close()

    def upgrade(self) -> None:
        self._store.upgrade([self.book_path, self.flow_path, self.atom_path, self.owner_path])

    def validate(self) -> None:
        self._store.validate([self.book_path, self.flow_path, self.atom_path])

    def _book(self, uuid: str) -> str:
        return f"{self.book_path}/{uuid}"

    def _flow(self, uuid: str) -> str:
        return f"{self.flow_path}/{uuid}"

    def _atom(self, uuid: str) -> str:
        return f"{self.atom_path}/{uuid}"

    # -- reading ------------------------------------------------------------------------------

    def _decode(self, load: Callable[[R], _D], path: str, record: R) -> _D:
        try:
            return load(record)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise corrupt(self._store.where(path), err) from err

    def _missing(self, path: str, parent: str) -> exc.NotFound:
        """The error for a linked record that is gone (named as :func:`corrupt` names one)."""
        where = self._store.where
        return exc.NotFound(
            f"Missing record '{where(path)}': '{where(parent)}' links to it (removed outside"
            " taskflow, or by a destroy that was interrupted: destroying the book finishes it)"
        )

    def _load_atoms(
        self, uuids: list[str], parents: Mapping[str, str] | None = None
    ) -> dict[str, models.AtomDetail]:
        """The atoms that exist among ``uuids``.

        ``parents`` (uuid -> path of the flow linking it) says the atoms were reached
        through links: then a missing one is an error, never left out (a resumed engine
        would create it afresh and run its task again).
        """
        paths = [self._atom(uuid) for uuid in uuids]
        atoms: dict[str, models.AtomDetail] = {}
        for uuid, path, entry in zip(uuids, paths, self._store.read(paths), strict=True):
            if entry is not None:
                atoms[uuid] = self._decode(self._codec.to_atom, path, entry.record)
            elif parents is not None:
                raise self._missing(path, parents[uuid])
        return atoms

    def _load_flows(
        self, uuids: list[str], lazy: bool, parents: Mapping[str, str] | None = None
    ) -> dict[str, models.FlowDetail]:
        """The flows that exist among ``uuids``, with their atoms unless ``lazy``.

        ``parents`` (uuid -> path of the book linking it): as for :meth:`_load_atoms`.
        """
        paths = [self._flow(uuid) for uuid in uuids]
        found: dict[str, tuple[models.FlowDetail, list[str]]] = {}
        for uuid, path, entry in zip(
            uuids, paths, self._store.read(paths, links=not lazy), strict=True
        ):
            if entry is not None:
                fd = self._decode(lambda r: self._codec.to_flow(r, lazy), path, entry.record)
                found[uuid] = (fd, entry.links)
            elif parents is not None:
                raise self._missing(path, parents[uuid])
        if not lazy:
            # Every flow's atoms in one read (one round trip where the store pipelines).
            linked = {
                atom: self._flow(uuid) for uuid, (_, links) in found.items() for atom in links
            }
            atoms = self._load_atoms(list(linked), linked)
            for fd, links in found.values():
                for uuid in links:
                    fd.add(atoms[uuid])
        return {uuid: fd for uuid, (fd, _) in found.items()}

    def _load_books(self, uuids: list[str], lazy: bool) -> list[models.LogBook]:
        paths = [self._book(uuid) for uuid in uuids]
        found: list[tuple[models.LogBook, list[str]]] = []
        for path, entry in zip(paths, self._store.read(paths, links=not lazy), strict=True):
            if entry is not None:
                book = self._decode(lambda r: self._codec.to_book(r, lazy), path, entry.record)
                found.append((book, entry.links))
        if not lazy:
            linked = {uuid: self._book(book.uuid) for book, links in found for uuid in links}
            flows = self._load_flows(list(linked), lazy=False, parents=linked)
            for book, links in found:
                stamp = book.updated_at
                for uuid in links:
                    book.add(flows[uuid])
                book.updated_at = stamp  # add() stamps it; the stored stamp is the one to show
        return [book for book, _ in found]

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        for book in self._load_books([book_uuid], lazy):
            return book
        raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        """Every book (none before :meth:`upgrade` created the tree)."""
        uuids = self._store.children([self.book_path])[0] or []
        return iter(self._load_books(uuids, lazy))

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[models.FlowDetail]:
        entry = self._store.read([self._book(book_uuid)], links=True)[0]
        if entry is None:
            raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")
        path = self._book(book_uuid)
        flows = self._load_flows(entry.links, lazy, dict.fromkeys(entry.links, path))
        return iter([flows[uuid] for uuid in entry.links])

    def get_flow_details(self, flow_uuid: str, lazy: bool = False) -> models.FlowDetail:
        flows = self._load_flows([flow_uuid], lazy)
        if flow_uuid not in flows:
            raise exc.NotFound(f"No flow details found with uuid '{flow_uuid}'")
        return flows[flow_uuid]

    def get_atom_details(self, atom_uuid: str) -> models.AtomDetail:
        atoms = self._load_atoms([atom_uuid])
        if atom_uuid not in atoms:
            raise exc.NotFound(f"No atom details found with uuid '{atom_uuid}'")
        return atoms[atom_uuid]

    def get_atoms_for_flow(self, flow_uuid: str) -> Iterator[models.AtomDetail]:
        return iter(self.get_flow_details(flow_uuid))

    # -- writing ------------------------------------------------------------------------------

    def _check(self, *details: models.LogBook | models.FlowDetail | models.AtomDetail) -> None:
        """:func:`check_values` of each detail, if the store has limits."""
        limits = self._store.limits
        if limits is not None:
            for detail in details:
                check_values(detail, limits)

    def _put_flow(self, txn: Transaction[R], fd: models.FlowDetail, create: bool) -> None:
        """The flow's atoms, then the flow linking them (see :class:`Transaction`)."""
        self._check(fd, *fd)
        for ad in fd:
            txn.set(self._atom(ad.uuid), self._codec.atom(ad), create=True)
        links = [ad.uuid for ad in fd]
        txn.set(
            self._flow(fd.uuid),
            self._codec.flow(fd),
            create=create,
            links=links,
            into=self.atom_path,
        )

    def read_ownership(self, flow_uuid: str) -> base.Ownership | None:
        return self._store.read_owner(flow_uuid)

    def swap_ownership(
        self, flow_uuid: str, expected_token: int | None, new: base.Ownership
    ) -> bool:
        return self._store.swap_owner(flow_uuid, expected_token, new)

    def _apply(self, txn: Transaction[R]) -> dict[str, Stored]:
        """Commit ``txn``, fenced by this connection's ownership of a flow, if it has one."""
        txn.fence = self._fence
        return self._store.commit(txn)

    def _commit(self, txn: Transaction[R]) -> bool:
        """Commit ``txn``; True when what the caller holds is what is stored (no need to
        read it back: nothing merged, no links beyond the caller's)."""
        stored = self._apply(txn)
        for op in txn.ops:
            if isinstance(op, Write):
                kept, links = stored[op.path]
                if not kept or (op.links is not None and not set(links) <= set(op.links)):
                    return False
        return True

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        """Create or merge ``book`` with its flows and atoms in one transaction.

        Returns:
            ``book`` itself when the store holds nothing more for it; else the stored
            book, read back.

        Raises:
            TypeError: a value the store can not hold (raised before anything is written).
        """
        self._check(book)
        txn: Transaction[R] = Transaction()
        for fd in book:
            self._put_flow(txn, fd, create=True)
        links = [fd.uuid for fd in book]
        record = self._codec.book(book)
        txn.set(self._book(book.uuid), record, create=True, links=links, into=self.flow_path)
        return book if self._commit(txn) else self.get_logbook(book.uuid)

    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        """Write the flow's record and its atoms' records in one transaction.

        Returns:
            ``flow_detail`` itself when the store holds no other atoms for it; else the
            stored flow, read back.

        Raises:
            taskflow.exceptions.NotFound: the flow was never saved (unless
                ``ignore_missing``).
            TypeError: a value the store can not hold (raised before anything is written).
        """
        txn: Transaction[R] = Transaction()
        self._put_flow(txn, flow_detail, create=ignore_missing)
        return flow_detail if self._commit(txn) else self.get_flow_details(flow_detail.uuid)

    def update_flow_record(self, flow_detail: models.FlowDetail) -> None:
        """Write only the flow's own record, keeping its atoms' links and their order.

        Raises:
            taskflow.exceptions.NotFound: the flow was never saved.
            TypeError: a value the store can not hold (raised before anything is written).
        """
        self._check(flow_detail)
        txn: Transaction[R] = Transaction()
        txn.set(self._flow(flow_detail.uuid), self._codec.flow(flow_detail), links=())
        self._apply(txn)

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        """Write the atom's record: the engine's hot path, one record and no read.

        Returns:
            ``atom_detail`` itself, unless the store merged it into its own record (memory):
            then that record, as a reader gets it.

        Raises:
            taskflow.exceptions.NotFound: the atom was never saved (unless ``ignore_missing``).
            TypeError: a value the store can not hold (raised before anything is written).
        """
        self._check(atom_detail)
        txn: Transaction[R] = Transaction()
        txn.set(self._atom(atom_detail.uuid), self._codec.atom(atom_detail), create=ignore_missing)
        return atom_detail if self._commit(txn) else self.get_atom_details(atom_detail.uuid)

    def _retrying(self, plan: Callable[[], Transaction[R]], what: str) -> None:
        """Commit what ``plan`` reads and plans, planning again while a delete conflicts."""
        for attempt in range(ATTEMPTS):
            try:
                self._apply(plan())
                return
            except Conflict as err:
                last = err
                pause(attempt)
        raise exc.StorageFailure(f"{what}: it kept changing ({last})") from last

    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete the book, its flows and their atoms (children first), in one transaction.

        Raises:
            taskflow.exceptions.NotFound: no such book.
        """
        path = self._book(book_uuid)
        destroyed: list[str] = []

        def plan() -> Transaction[R]:
            flows = self._store.children([path])[0]
            if flows is None:
                raise exc.NotFound(f"No logbook found with uuid '{book_uuid}'")
            destroyed[:] = flows
            txn: Transaction[R] = Transaction()
            flow_paths = [self._flow(uuid) for uuid in flows]
            for flow_path, atoms in zip(flow_paths, self._store.children(flow_paths), strict=True):
                if atoms is not None:
                    for uuid in atoms:
                        txn.delete(self._atom(uuid))
                    txn.delete(flow_path, atoms)
            txn.delete(path, flows)
            return txn

        self._retrying(plan, f"Could not destroy logbook '{book_uuid}'")
        self._store.drop_owners(destroyed)

    def clear_all(self) -> None:
        """Delete every book, flow detail and atom detail; the directories stay."""
        flows: list[str] = []

        def plan() -> Transaction[R]:
            txn: Transaction[R] = Transaction()
            parents = [self.book_path, self.flow_path]
            listed = self._store.children([*parents, self.atom_path])
            flows[:] = listed[1] or ()
            for directory, names in zip(parents, listed[:2], strict=True):
                paths = [join(directory, name) for name in names or ()]
                for record, links in zip(paths, self._store.children(paths), strict=True):
                    if links is not None:
                        txn.delete(record, links)
            for name in listed[-1] or ():
                txn.delete(join(self.atom_path, name))
            return txn

        self._retrying(plan, "Could not clear the store")
        self._store.drop_owners(flows)
