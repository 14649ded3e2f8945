"""A memory backend whose writes can be made to fail, for storage-failure tests.

:class:`FaultyMemoryBackend` is the real memory backend (``deep_copy`` isolation, so what
it holds changes only through writes) with a :class:`Faults` switchboard shared by all its
connections. A write chosen to fail raises :class:`taskflow.exceptions.StorageFailure`
(caused by :class:`InjectedFault`) *before* touching the store, as a real backend's failed
transaction leaves nothing behind: the records stay those of the last successful write.

Writes are the connection's mutating methods, named by :data:`WRITES`. Three ways to pick
the ones that fail::

    backend.faults.fail_nth(3)                          # the 3rd write from now
    backend.faults.fail_nth(1, "update_atom_details")   # the next atom write
    backend.faults.fail_every("update_flow_record")     # every flow-state write
    with backend.faults.outage():                       # every write, while inside
        ...

Each rule may also take ``when``, a predicate on the record being written (the atom
detail, flow detail or book), e.g. ``lambda ad: ad.state == states.SUCCESS``.
:meth:`Faults.watch` calls back after every successful write, e.g. to take
:func:`records` snapshots that a failed run is then compared with.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow.persistence.backends import impl_memory

if TYPE_CHECKING:
    from taskflow.persistence import models

__all__ = ["WRITES", "FaultyMemoryBackend", "Faults", "InjectedFault", "records"]

#: The connection methods that write, i.e. the kinds a fault can be limited to.
WRITES = frozenset(
    (
        "clear_all",
        "save_logbook",
        "destroy_logbook",
        "update_flow_details",
        "update_flow_record",
        "update_atom_details",
    )
)

Predicate = Callable[[Any], bool]
Watcher = Callable[[str, Any], None]


class InjectedFault(ConnectionError):
    """The cause of a write failed on purpose (as a dropped database connection would be)."""


@dataclasses.dataclass
class _Rule:
    kind: str | None  # None: any write
    when: Predicate | None  # None: any record
    skip: int  # matching writes still let through before failing
    times: int | None  # matching writes still to fail (None: all)

    def matches(self, kind: str, record: Any) -> bool:
        if self.kind is not None and self.kind != kind:
            return False
        return self.when is None or self.when(record)


class Faults:
    """Which writes of a :class:`FaultyMemoryBackend` fail; shared by its connections.

    Attributes:
        down: while true, every write fails (see :meth:`outage`).
        writes: how many writes succeeded so far.
        injected: ``(kind, record name)`` of every write failed so far, in order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.down = False
        self.writes = 0
        self.injected: list[tuple[str, str | None]] = []
        self._watchers: list[Watcher] = []

    def fail_nth(self, n: int, kind: str | None = None, when: Predicate | None = None) -> None:
        """Fail the ``n``-th matching write from now (1: the next), once."""
        if n < 1:
            raise ValueError(f"n counts writes from 1, not {n}")
        self._add(_Rule(kind, when, n - 1, 1))

    def fail_every(self, kind: str | None = None, when: Predicate | None = None) -> None:
        """Fail every matching write from now on (until :meth:`clear`)."""
        self._add(_Rule(kind, when, 0, None))

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Fail every write made inside the ``with`` block."""
        self.down = True
        try:
            yield
        finally:
            self.down = False

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(kind, record)`` after each successful write."""
        self._watchers.append(watcher)

    def clear(self) -> None:
        """Forget every rule and turn :attr:`down` off (counters are kept)."""
        with self._lock:
            self._rules.clear()
            self.down = False

    def _add(self, rule: _Rule) -> None:
        if rule.kind is not None and rule.kind not in WRITES:
            raise ValueError(f"{rule.kind!r} is not a write (one of {sorted(WRITES)})")
        with self._lock:
            self._rules.append(rule)

    def written(self, kind: str, record: Any) -> None:
        """Tell the watchers a write succeeded."""
        for watcher in self._watchers:
            watcher(kind, record)

    def check(self, kind: str, record: Any) -> None:
        """Raise ``StorageFailure`` if this write must fail; otherwise count it."""
        with self._lock:
            fail = self.down
            for rule in self._rules:
                if not rule.matches(kind, record):
                    continue
                if rule.skip:
                    rule.skip -= 1
                    continue
                if rule.times is not None:
                    rule.times -= 1
                fail = True
            self._rules = [rule for rule in self._rules if rule.times != 0]
            if not fail:
                self.writes += 1
                return
            name = getattr(record, "name", None)
            self.injected.append((kind, name))
        raise exc.StorageFailure(f"Injected failure of {kind}({name!r})") from InjectedFault(
            f"write {kind} failed on purpose"
        )


class FaultyMemoryBackend(impl_memory.MemoryBackend):
    """A :class:`~taskflow.persistence.backends.impl_memory.MemoryBackend` with :attr:`faults`.

    Always isolating (``deep_copy`` true): with shared objects the caller's changes would
    reach the store without any write, and a failed write could not leave it untouched.

    Raises:
        ValueError: ``deep_copy`` is configured false.
    """

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        conf = dict(conf or {})
        if not conf.setdefault("deep_copy", True):
            raise ValueError("A faulty memory backend must copy (deep_copy=True)")
        super().__init__(conf)
        self.faults = Faults()

    def get_connection(self) -> FaultyConnection:
        return FaultyConnection(self)


class FaultyConnection(impl_memory.Connection):
    """A memory connection that asks the backend's :class:`Faults` before each write.

    A write made from inside another (``update_flow_record``'s default delegates to
    ``update_flow_details``) is one write, checked once, under the outer one's kind.
    """

    def __init__(self, backend: FaultyMemoryBackend) -> None:
        super().__init__(backend)
        self._faults = backend.faults
        self._inside = threading.local()

    @contextlib.contextmanager
    def _write(self, kind: str, record: Any) -> Iterator[None]:
        if getattr(self._inside, "active", False):
            yield
            return
        self._faults.check(kind, record)
        self._inside.active = True
        try:
            yield
        finally:
            self._inside.active = False
        self._faults.written(kind, record)

    def clear_all(self) -> None:
        with self._write("clear_all", None):
            super().clear_all()

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        with self._write("save_logbook", book):
            return super().save_logbook(book)

    def destroy_logbook(self, book_uuid: str) -> None:
        with self._write("destroy_logbook", None):
            super().destroy_logbook(book_uuid)

    def update_flow_details(
        self, flow_detail: models.FlowDetail, ignore_missing: bool = False
    ) -> models.FlowDetail:
        with self._write("update_flow_details", flow_detail):
            return super().update_flow_details(flow_detail, ignore_missing)

    def update_flow_record(self, flow_detail: models.FlowDetail) -> None:
        with self._write("update_flow_record", flow_detail):
            super().update_flow_record(flow_detail)

    def update_atom_details(
        self, atom_detail: models.AtomDetail, ignore_missing: bool = False
    ) -> models.AtomDetail:
        with self._write("update_atom_details", atom_detail):
            return super().update_atom_details(atom_detail, ignore_missing)


def records(backend: Any, flow_uuid: str) -> dict[str, Any]:
    """What ``backend`` holds for one flow: its state and, per atom, every persisted field.

    Comparable with ``==`` between two moments (or two backends): ``{"state": ...,
    "atoms": {name: (state, intention, results, failure, revert results, revert failure)}}``.
    """
    with backend.get_connection() as conn:
        fd = conn.get_flow_details(flow_uuid)
    atoms = {
        ad.name: (
            ad.state,
            ad.intention,
            ad.results,
            None if ad.failure is None else ad.failure.to_dict(),
            ad.revert_results,
            None if ad.revert_failure is None else ad.revert_failure.to_dict(),
        )
        for ad in fd
    }
    return {"state": fd.state, "atoms": atoms}
