"""What gets persisted: log books holding flow details holding atom details.

A :class:`LogBook` groups the runs of related flows; each run is a :class:`FlowDetail`
(flow state and metadata) holding one :class:`AtomDetail` per task (:class:`TaskDetail`) or
retry controller (:class:`RetryDetail`) of the flow: its state, intention, results or
failure, revert results or failure, metadata and version.

These objects are plain in-memory data. Backends copy them in and out (``merge``/``copy``),
and serialising backends store ``to_dict()`` output encoded with
:mod:`taskflow._serialization` (so tuples survive) and rebuild with ``from_dict()``.

The engine touches an atom detail on every transition, so its fields are plain slotted
attributes and :meth:`AtomDetail.copy` is shallow.
"""

from __future__ import annotations

import abc
import copy as copylib
import os
import uuid as uuidlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from taskflow import exceptions as exc
from taskflow import states
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "ATOM_TYPES",
    "AtomDetail",
    "FlowDetail",
    "LogBook",
    "RetryDetail",
    "TaskDetail",
    "atom_detail_class",
    "atom_detail_type",
]

#: Atom detail ``meta`` key under which atom-level injected arguments are kept.
META_INJECTED = "injected"
#: Atom detail ``meta`` key holding a task's last reported progress (0.0 to 1.0).
META_PROGRESS = "progress"
#: Atom detail ``meta`` key holding the details sent with that progress report.
META_PROGRESS_DETAILS = "progress_details"

_TIME_FIELDS = ("year", "month", "day", "hour", "minute", "second", "microsecond")


# Values deep copies may share: immutable, and by far the most common results and fields.
_ATOMIC = frozenset((type(None), bool, int, float, str, bytes))


def _clone(value: Any) -> Any:
    """A deep copy, skipping the generic machinery for atomic values and empty containers."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if (kind is dict or kind is list) and not value:
        return kind()
    return copylib.deepcopy(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _marshal_time(when: datetime | None) -> dict[str, int] | None:
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return {field: getattr(when, field) for field in _TIME_FIELDS}


def _unmarshal_time(data: Mapping[str, int] | None) -> datetime | None:
    if data is None:
        return None
    # Stored times are UTC; naive ones written by upstream TaskFlow are UTC too.
    return datetime(**{field: int(data.get(field, 0)) for field in _TIME_FIELDS}, tzinfo=UTC)


def _format_time(when: datetime) -> str:
    # Rendered as naive UTC, the way upstream TaskFlow prints it.
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when.isoformat()


def _format_meta_value(key: Any, value: Any) -> Any:
    # Progress reads as a percentage, as upstream prints it.
    if key == META_PROGRESS and isinstance(value, int | float):
        return f"{value * 100:0.2f}%"
    return value


def _format_meta(meta: Mapping[str, Any], pad: str) -> list[str]:
    if not meta:
        return []
    return [
        f"{pad} - metadata:",
        *(f"{pad}   + {k} = {_format_meta_value(k, v)}" for k, v in meta.items()),
    ]


def _failure_from(data: Any) -> Failure | None:
    if data is None or isinstance(data, Failure):
        return data
    return Failure.from_dict(data)


def _failure_to(failure: Failure | None) -> dict[str, Any] | None:
    return None if failure is None else failure.to_dict()


def _copy_failure(failure: Failure | None) -> Failure | None:
    return None if failure is None else failure.copy()


def _failure_changed(old: Any, new: Any) -> bool:
    if old is new:
        return False
    if old is None or new is None:
        return True
    return bool(old != new)


class LogBook:
    """A named collection of flow details (usually the runs belonging to one job or user).

    Args:
        name: a human readable name.
        uuid: unique id; a random one is generated when not given.

    Attributes:
        uuid: unique id (the key stores use).
        name: the given name.
        meta: free-form JSON-compatible metadata.
        created_at: when the book was created (timezone-aware UTC).
        updated_at: when a flow detail was last added (None until then).
    """

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self.uuid: str = uuid or str(uuidlib.uuid4())
        self.name = name
        self.meta: dict[str, Any] = {}
        self.created_at: datetime | None = _now()
        self.updated_at: datetime | None = None
        self._flowdetails_by_id: dict[str, FlowDetail] = {}

    def add(self, fd: FlowDetail) -> None:
        """Add (or replace, by uuid) a flow detail; updates :attr:`updated_at`."""
        self._flowdetails_by_id[fd.uuid] = fd
        self.updated_at = _now()

    def find(self, flow_uuid: str) -> FlowDetail | None:
        """The flow detail with that uuid, or None."""
        return self._flowdetails_by_id.get(flow_uuid)

    def __iter__(self) -> Iterator[FlowDetail]:
        return iter(list(self._flowdetails_by_id.values()))

    def __len__(self) -> int:
        return len(self._flowdetails_by_id)

    def merge(self, lb: LogBook, deep_copy: bool = False) -> Self:
        """Take ``lb``'s metadata and timestamps (not its name or flow details).

        Args:
            lb: the book to merge from (normally the same uuid).
            deep_copy: deep-copy the metadata instead of sharing it.

        Returns:
            This book.
        """
        if lb is self:
            return self
        self.meta = _clone(lb.meta) if deep_copy else lb.meta
        self.created_at = lb.created_at
        self.updated_at = lb.updated_at
        return self

    def copy(self, retain_contents: bool = True) -> LogBook:
        """A shallow copy (same flow detail objects, unless ``retain_contents`` is False)."""
        clone = LogBook(self.name, self.uuid)
        clone.meta = dict(self.meta)
        clone.created_at = self.created_at
        clone.updated_at = self.updated_at
        if retain_contents:
            clone._flowdetails_by_id = dict(self._flowdetails_by_id)
        return clone

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """A multi-line description of this book and everything in it."""
        pad = " " * indent
        lines = [f"{pad}LogBook: '{self.name}'", f"{pad} - uuid = {self.uuid}"]
        lines.extend(_format_meta(self.meta, pad))
        if self.created_at is not None:
            lines.append(f"{pad} - created_at = {_format_time(self.created_at)}")
        if self.updated_at is not None:
            lines.append(f"{pad} - updated_at = {_format_time(self.updated_at)}")
        lines.extend(fd.pformat(indent + 1, linesep) for fd in self)
        return linesep.join(lines)

    def to_dict(self, marshal_time: bool = False) -> dict[str, Any]:
        """This book's own fields (not its flow details).

        Args:
            marshal_time: give times as ``{year, month, day, hour, minute, second,
                microsecond}`` dicts (UTC) instead of datetimes.
        """
        if marshal_time:
            created: Any = _marshal_time(self.created_at)
            updated: Any = _marshal_time(self.updated_at)
        else:
            created, updated = self.created_at, self.updated_at
        return {
            "name": self.name,
            "meta": self.meta,
            "uuid": self.uuid,
            "updated_at": updated,
            "created_at": created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], unmarshal_time: bool = False) -> LogBook:
        """Rebuild a book (without flow details) from :meth:`to_dict` output."""
        book = cls(data["name"], data["uuid"])
        book.meta = data.get("meta") or {}
        created, updated = data.get("created_at"), data.get("updated_at")
        if unmarshal_time:
            created, updated = _unmarshal_time(created), _unmarshal_time(updated)
        book.created_at = created
        book.updated_at = updated
        return book


class FlowDetail:
    """The persisted state of one flow run: its state, metadata and atom details.

    Args:
        name: the flow's name.
        uuid: unique id of this detail.

    Attributes:
        uuid, name: as given.
        state: the flow's state (None before it first runs).
        meta: free-form JSON-compatible metadata (the engine keeps e.g. ``factory`` and
            ``store`` there).
    """

    def __init__(self, name: str, uuid: str) -> None:
        self.uuid = uuid
        self.name = name
        self.state: str | None = None
        self.meta: dict[str, Any] = {}
        self._atomdetails_by_id: dict[str, AtomDetail] = {}

    def add(self, ad: AtomDetail) -> None:
        """Add (or replace, by uuid) an atom detail."""
        self._atomdetails_by_id[ad.uuid] = ad

    def find(self, ad_uuid: str) -> AtomDetail | None:
        """The atom detail with that uuid, or None."""
        return self._atomdetails_by_id.get(ad_uuid)

    def __iter__(self) -> Iterator[AtomDetail]:
        return iter(list(self._atomdetails_by_id.values()))

    def __len__(self) -> int:
        return len(self._atomdetails_by_id)

    def update(self, fd: FlowDetail) -> Self:
        """Take ``fd``'s state, metadata and atom details (sharing them, not its name).

        Returns:
            This flow detail.
        """
        if fd is not self:
            self.state = fd.state
            self.meta = fd.meta
            self._atomdetails_by_id = dict(fd._atomdetails_by_id)
        return self

    def merge(self, fd: FlowDetail, deep_copy: bool = False) -> Self:
        """Take ``fd``'s state and metadata (not its name or atom details).

        Args:
            fd: the detail to merge from (normally the same uuid).
            deep_copy: deep-copy the metadata instead of sharing it.

        Returns:
            This flow detail.
        """
        if fd is self:
            return self
        self.state = fd.state
        self.meta = _clone(fd.meta) if deep_copy else fd.meta
        return self

    def copy(self, retain_contents: bool = True) -> FlowDetail:
        """A shallow copy (same atom detail objects, unless ``retain_contents`` is False)."""
        clone = FlowDetail(self.name, self.uuid)
        clone.state = self.state
        clone.meta = dict(self.meta)
        if retain_contents:
            clone._atomdetails_by_id = dict(self._atomdetails_by_id)
        return clone

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """A multi-line description of this flow detail and its atoms."""
        pad = " " * indent
        lines = [
            f"{pad}FlowDetail: '{self.name}'",
            f"{pad} - uuid = {self.uuid}",
            f"{pad} - state = {self.state}",
        ]
        lines.extend(_format_meta(self.meta, pad))
        lines.extend(ad.pformat(indent + 1, linesep) for ad in self)
        return linesep.join(lines)

    def to_dict(self) -> dict[str, Any]:
        """This detail's own fields (not its atom details)."""
        return {"name": self.name, "meta": self.meta, "state": self.state, "uuid": self.uuid}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowDetail:
        """Rebuild a flow detail (without atom details) from :meth:`to_dict` output."""
        fd = cls(data["name"], data["uuid"])
        fd.state = data.get("state")
        fd.meta = data.get("meta") or {}
        return fd


#: The fields one atom detail takes from another when updated from it (all but identity).
_SHARED_FIELDS = (
    "state",
    "intention",
    "results",
    "failure",
    "revert_results",
    "revert_failure",
    "meta",
    "version",
)


class AtomDetail(abc.ABC):
    """The persisted state of one atom of a flow run.

    Args:
        name: the atom's name (unique within its flow).
        uuid: unique id of this detail.

    Attributes:
        uuid, name: as given.
        state: the atom's state (None until the engine first sets it).
        intention: what the engine means to do next (``EXECUTE``, ``REVERT``, ``RETRY``,
            ``IGNORE``).
        results: the execute result (a retry's whole history, see :class:`RetryDetail`).
        failure: the execute :class:`~taskflow.types.failure.Failure`, if it failed.
        revert_results: what ``revert`` returned.
        revert_failure: the failure of ``revert``, if it failed.
        meta: free-form JSON-compatible metadata (progress, injected arguments...).
        version: the atom's version string when it was recorded.
    """

    # Plain slots: the engine reads and writes these on every transition.
    __slots__ = (
        "failure",
        "intention",
        "meta",
        "name",
        "results",
        "revert_failure",
        "revert_results",
        "state",
        "uuid",
        "version",
    )

    def __init__(self, name: str, uuid: str) -> None:
        self.uuid = uuid
        self.name = name
        self.state: str | None = None
        self.intention: str | None = states.EXECUTE
        self.results: Any = None
        self.failure: Failure | None = None
        self.revert_results: Any = None
        self.revert_failure: Failure | None = None
        self.meta: dict[str, Any] = {}
        self.version: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} uuid={self.uuid} state={self.state}>"

    @property
    def last_results(self) -> Any:
        """The most recent execute result."""
        return self.results

    def update(self, ad: AtomDetail) -> Self:
        """Take every field of ``ad`` except its name and uuid, sharing the values.

        Returns:
            This detail.
        """
        if ad is not self:
            for name in _SHARED_FIELDS:
                setattr(self, name, getattr(ad, name))
        return self

    def _merge_common(self, other: AtomDetail, deep_copy: bool) -> None:
        self.state = other.state
        self.intention = other.intention
        self.version = other.version
        if deep_copy:
            self.meta = _clone(other.meta)
            self.failure = _copy_failure(other.failure)
            self.revert_results = _clone(other.revert_results)
            self.revert_failure = _copy_failure(other.revert_failure)
        else:
            self.meta = other.meta
            self.failure = other.failure
            self.revert_results = other.revert_results
            self.revert_failure = other.revert_failure

    def _copy_common(self, clone: AtomDetail) -> None:
        clone.state = self.state
        clone.intention = self.intention
        clone.version = self.version
        clone.meta = dict(self.meta)
        clone.failure = self.failure
        clone.revert_results = self.revert_results
        clone.revert_failure = self.revert_failure

    @abc.abstractmethod
    def merge(self, other: AtomDetail, deep_copy: bool = False) -> Self:
        """Take ``other``'s fields (not its name), sharing or deep-copying the values.

        Raises:
            taskflow.exceptions.NotImplementedError: ``other`` is of another detail type.

        Returns:
            This detail.
        """

    @abc.abstractmethod
    def copy(self) -> Self:
        """A cheap copy: containers are copied one level deep, values are shared."""

    @abc.abstractmethod
    def put(self, state: str, result: Any) -> bool:
        """Record ``result`` for ``state`` (see the subclasses); True if anything changed."""

    @abc.abstractmethod
    def reset(self, state: str) -> None:
        """Clear results and failures, set ``state`` and the ``EXECUTE`` intention."""

    def to_dict(self) -> dict[str, Any]:
        """All fields as a dict; failures become dicts (``Failure.to_dict()``)."""
        return {
            "failure": _failure_to(self.failure),
            "revert_failure": _failure_to(self.revert_failure),
            "meta": self.meta,
            "name": self.name,
            "results": self.results,
            "revert_results": self.revert_results,
            "state": self.state,
            "version": self.version,
            "intention": self.intention,
            "uuid": self.uuid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a detail from :meth:`to_dict` output (failure dicts become Failures)."""
        ad = cls(data["name"], data["uuid"])
        ad.state = data.get("state")
        ad.intention = data.get("intention")
        ad.results = data.get("results")
        ad.failure = _failure_from(data.get("failure"))
        ad.revert_results = data.get("revert_results")
        ad.revert_failure = _failure_from(data.get("revert_failure"))
        ad.meta = data.get("meta") or {}
        ad.version = data.get("version")
        return ad

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """A multi-line description of this detail."""
        pad = " " * indent
        lines = [
            f"{pad}{type(self).__name__}: '{self.name}'",
            f"{pad} - uuid = {self.uuid}",
            f"{pad} - state = {self.state}",
            f"{pad} - version = {self.version}",
            f"{pad} - results = {self.results}",
            f"{pad} - failure = {self.failure is not None}",
        ]
        lines.extend(_format_meta(self.meta, pad))
        return linesep.join(lines)


class TaskDetail(AtomDetail):
    """The persisted state of one task; ``results`` is what its ``execute`` returned."""

    __slots__ = ()

    def put(self, state: str, result: Any) -> bool:
        """Record ``result`` for ``state``; True if any field changed.

        * ``SUCCESS``: ``results`` = result; failure and revert data cleared.
        * ``FAILURE``: ``failure`` = result; results and revert data cleared.
        * ``REVERTED``: ``revert_results`` = result; ``revert_failure`` cleared.
        * ``REVERT_FAILURE``: ``revert_failure`` = result; results and revert results
          cleared (the execute failure, if any, is kept).
        * any other state: only ``state`` changes.

        Results are compared by identity, failures by equality.
        """
        changed = self.state != state
        self.state = state
        if state == states.SUCCESS:
            changed = changed or not (
                self.results is result
                and self.failure is None
                and self.revert_results is None
                and self.revert_failure is None
            )
            self.results = result
            self.failure = self.revert_results = self.revert_failure = None
        elif state == states.FAILURE:
            changed = (
                changed
                or _failure_changed(self.failure, result)
                or self.results is not None
                or self.revert_results is not None
                or self.revert_failure is not None
            )
            self.failure = result
            self.results = self.revert_results = self.revert_failure = None
        elif state == states.REVERTED:
            changed = (
                changed or self.revert_results is not result or self.revert_failure is not None
            )
            self.revert_results = result
            self.revert_failure = None
        elif state == states.REVERT_FAILURE:
            changed = (
                changed
                or _failure_changed(self.revert_failure, result)
                or self.results is not None
                or self.revert_results is not None
            )
            self.revert_failure = result
            self.results = self.revert_results = None
        return changed

    def reset(self, state: str) -> None:
        """Clear results and failures, set ``state`` and the ``EXECUTE`` intention."""
        self.state = state
        self.intention = states.EXECUTE
        self.results = self.failure = self.revert_results = self.revert_failure = None

    def merge(self, other: AtomDetail, deep_copy: bool = False) -> Self:
        """Take ``other``'s fields (not its name); see :meth:`AtomDetail.merge`."""
        if not isinstance(other, TaskDetail):
            raise exc.NotImplementedError("Can only merge with other task details")
        if other is self:
            return self
        self._merge_common(other, deep_copy)
        self.results = _clone(other.results) if deep_copy else other.results
        return self

    def copy(self) -> Self:
        """A cheap copy: ``meta`` is a new dict, results and failures are shared."""
        clone = type(self)(self.name, self.uuid)
        self._copy_common(clone)
        clone.results = self.results
        return clone


#: One entry of a retry's history: (what the retry returned, {atom name: its Failure}).
_HistoryEntry = tuple[Any, dict[str, Failure]]


class RetryDetail(AtomDetail):
    """The persisted state of one retry controller.

    ``results`` is the retry's history: a list of ``(value, {atom name: Failure})``, one
    entry per ``execute`` of the retry, holding the failures its subflow met with that
    value.
    """

    __slots__ = ()

    def __init__(self, name: str, uuid: str) -> None:
        super().__init__(name, uuid)
        self.results = []

    @property
    def last_results(self) -> Any:
        """The value of the latest history entry.

        Raises:
            taskflow.exceptions.NotFound: the history is empty.
        """
        try:
            return self.results[-1][0]
        except IndexError as err:
            raise exc.NotFound("Last results not found", cause=err) from err

    @property
    def last_failures(self) -> dict[str, Failure]:
        """The failures recorded for the latest history entry.

        Raises:
            taskflow.exceptions.NotFound: the history is empty.
        """
        try:
            failures: dict[str, Failure] = self.results[-1][1]
        except IndexError as err:
            raise exc.NotFound("Last failures not found", cause=err) from err
        return failures

    def put(self, state: str, result: Any) -> bool:
        """Record ``result`` for ``state``; True if any field changed.

        * ``SUCCESS``: appends ``(result, {})`` to the history; failure and revert data
          cleared.
        * ``FAILURE``: ``failure`` = result; revert data cleared (history kept).
        * ``REVERTED``: ``revert_results`` = result; ``revert_failure`` cleared.
        * ``REVERT_FAILURE``: ``revert_failure`` = result; ``revert_results`` cleared.
        * any other state: only ``state`` changes.
        """
        changed = self.state != state
        self.state = state
        if state == states.SUCCESS:
            self.results.append((result, {}))
            self.failure = self.revert_results = self.revert_failure = None
            changed = True
        elif state == states.FAILURE:
            changed = (
                changed
                or _failure_changed(self.failure, result)
                or self.revert_results is not None
                or self.revert_failure is not None
            )
            self.failure = result
            self.revert_results = self.revert_failure = None
        elif state == states.REVERTED:
            changed = (
                changed or self.revert_results is not result or self.revert_failure is not None
            )
            self.revert_results = result
            self.revert_failure = None
        elif state == states.REVERT_FAILURE:
            changed = (
                changed
                or _failure_changed(self.revert_failure, result)
                or self.revert_results is not None
            )
            self.revert_failure = result
            self.revert_results = None
        return changed

    def reset(self, state: str) -> None:
        """Empty the history, clear failures, set ``state`` and the ``EXECUTE`` intention."""
        self.state = state
        self.intention = states.EXECUTE
        self.results = []
        self.failure = self.revert_results = self.revert_failure = None

    def merge(self, other: AtomDetail, deep_copy: bool = False) -> Self:
        """Take ``other``'s fields (not its name); the history list is always copied."""
        if not isinstance(other, RetryDetail):
            raise exc.NotImplementedError("Can only merge with other retry details")
        if other is self:
            return self
        self._merge_common(other, deep_copy)
        if deep_copy:
            self.results = [
                (_clone(value), {name: f.copy() for name, f in failures.items()})
                for value, failures in other.results
            ]
        else:
            self.results = [(value, dict(failures)) for value, failures in other.results]
        return self

    def copy(self) -> Self:
        """A cheap copy: new history list and failure dicts, values shared."""
        clone = type(self)(self.name, self.uuid)
        self._copy_common(clone)
        clone.results = [(value, dict(failures)) for value, failures in self.results]
        return clone

    def to_dict(self) -> dict[str, Any]:
        """All fields as a dict; the history's failures become dicts too."""
        data = super().to_dict()
        data["results"] = [
            (value, {name: f.to_dict() for name, f in failures.items()})
            for value, failures in self.results
        ]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a retry detail; its history round-trips unchanged.

        Each entry's value is kept as stored and its failure dicts become Failures
        (upstream TaskFlow overwrote the value with a failure dict here).
        """
        ad = super().from_dict(data)
        history: list[_HistoryEntry] = []
        for value, failures in data.get("results") or ():
            history.append(
                (
                    value,
                    {
                        name: Failure.from_dict(f) if isinstance(f, dict) else f
                        for name, f in (failures or {}).items()
                    },
                )
            )
        ad.results = history
        return ad


_DETAIL_TO_NAME: dict[type[AtomDetail], str] = {
    RetryDetail: "RETRY_DETAIL",
    TaskDetail: "TASK_DETAIL",
}
_NAME_TO_DETAIL: dict[str, type[AtomDetail]] = {name: cls for cls, name in _DETAIL_TO_NAME.items()}

#: The names stores record for each atom detail type.
ATOM_TYPES: list[str] = sorted(_NAME_TO_DETAIL)


def atom_detail_class(atom_type: str) -> type[AtomDetail]:
    """The detail class for a stored type name (``'TASK_DETAIL'`` or ``'RETRY_DETAIL'``).

    Raises:
        TypeError: unknown type name.
    """
    try:
        return _NAME_TO_DETAIL[atom_type]
    except KeyError:
        raise TypeError(f"Unknown atom type '{atom_type}'") from None


def atom_detail_type(atom_detail: AtomDetail) -> str:
    """The stored type name of an atom detail (``'TASK_DETAIL'`` or ``'RETRY_DETAIL'``).

    Raises:
        TypeError: not a task or retry detail.
    """
    try:
        return _DETAIL_TO_NAME[type(atom_detail)]
    except KeyError:
        pass
    for cls, name in _DETAIL_TO_NAME.items():
        if isinstance(atom_detail, cls):
            return name
    raise TypeError(f"Unknown atom '{atom_detail}' ({type(atom_detail)})")
