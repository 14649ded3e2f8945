"""Retry controllers: atoms that decide what happens when their part of a flow fails.

Theory of operation: a retry controller runs before every atom of its flow. When one of
those atoms fails, the engine records the failure in the controller's :class:`History`
(one entry per attempt: the value the controller's execute returned, plus the failures of
that attempt) and calls :meth:`Retry.on_failure`, whose :class:`Decision` says whether to
revert the flow and run it again (``RETRY``), revert just this flow (``REVERT``) or revert
everything (``REVERT_ALL``). On ``RETRY`` the engine waits :meth:`Retry.delay_for` seconds,
then executes the controller again, whose new value becomes the next history entry.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import math
from typing import TYPE_CHECKING, Any, overload

from taskflow.atom import Atom, Provides, Rebind, Requires
from taskflow.exceptions import NotFound

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from taskflow.types.failure import Failure

__all__ = [
    "Decision",
    "RETRY",
    "REVERT",
    "REVERT_ALL",
    "EXECUTE_REVERT_HISTORY",
    "REVERT_FLOW_FAILURES",
    "History",
    "Retry",
    "AlwaysRevert",
    "AlwaysRevertAll",
    "Times",
    "ForEachBase",
    "ForEach",
    "ParameterizedForEach",
]

#: Keyword under which execute, on_failure and revert receive the :class:`History`.
EXECUTE_REVERT_HISTORY = "history"
#: Keyword under which revert receives ``{atom name: Failure}`` of the flow's failures.
REVERT_FLOW_FAILURES = "flow_failures"


class Decision(enum.StrEnum):
    """What a retry controller wants done after a failure in its flow."""

    #: Revert this controller's flow only (an enclosing controller may still decide more).
    REVERT = "REVERT"
    #: Revert the whole flow being run, whatever the enclosing controllers say.
    REVERT_ALL = "REVERT_ALL"
    #: Revert this controller's flow, then run it again.
    RETRY = "RETRY"


REVERT = Decision.REVERT
REVERT_ALL = Decision.REVERT_ALL
RETRY = Decision.RETRY

#: One attempt: the controller's execute value and ``{atom name: Failure}`` of the attempt.
HistoryEntry = tuple[Any, dict[str, "Failure"]]


class History:
    """The attempts of a retry controller, oldest first.

    Args:
        contents: ``(value, {atom name: Failure})`` per attempt; kept as given (not copied).
        failure: The controller's own failure, if its execute failed.
    """

    __slots__ = ("_contents", "_failure")

    def __init__(self, contents: Sequence[HistoryEntry], failure: Failure | None = None) -> None:
        self._contents = contents
        self._failure = failure

    @property
    def failure(self) -> Failure | None:
        """The retry controller's own failure (None unless its execute failed)."""
        return self._failure

    def __len__(self) -> int:
        return len(self._contents)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self._contents)

    @overload
    def __getitem__(self, index: int) -> HistoryEntry: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[HistoryEntry]: ...

    def __getitem__(self, index: int | slice) -> HistoryEntry | Sequence[HistoryEntry]:
        return self._contents[index]

    def provided_iter(self) -> Iterator[Any]:
        """Yield the value the controller provided for each attempt."""
        for value, _failures in self._contents:
            yield value

    def outcomes_iter(self, index: int | None = None) -> Iterator[tuple[str, Failure]]:
        """Yield ``(atom name, Failure)`` for every attempt, or only attempt ``index``.

        Raises:
            IndexError: ``index`` is out of range (when iterated).
        """
        if index is None:
            for _value, failures in self._contents:
                yield from failures.items()
        else:
            yield from self._contents[index][1].items()

    def caused_by(
        self,
        exception_cls: type[BaseException] | str,
        index: int | None = None,
        include_retry: bool = False,
    ) -> bool:
        """Whether any recorded failure is of ``exception_cls`` (a class or a type name).

        Args:
            exception_cls: Exception class, or its name as recorded in failures.
            index: Look only at this attempt (default: all of them).
            include_retry: Also look at the controller's own :attr:`failure`.
        """
        for _name, failure in self.outcomes_iter(index=index):
            if failure.check(exception_cls) is not None:
                return True
        return bool(
            include_retry and self._failure is not None and self._failure.check(exception_cls)
        )


def _check_number(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, not {value!r}")
    return float(value)


class Retry(Atom):
    """Base of retry controllers: decides, from the history, what to do after failures.

    ``execute(history, ...)`` provides a value for each attempt; ``on_failure(history, ...)``
    returns a :class:`Decision`; ``revert(history, ...)`` also receives ``flow_failures``.
    ``history`` is supplied by the engine and never fetched from storage. ``on_failure``
    receives the same mapped arguments as ``execute``.

    Args:
        name: Unique name; an unnamed controller given to a flow is named
            ``<flow name>_retry``.
        provides, requires, auto_extract, rebind: As for :class:`~taskflow.atom.Atom`.
        delay: Seconds to wait before the first re-attempt (0 disables waiting).
        backoff: Multiplier applied to the delay for each further attempt (>= 1).
        max_delay: Upper bound of any delay (None for no bound).

    Raises:
        ValueError: ``delay``, ``backoff`` or ``max_delay`` is invalid.
    """

    _execute_ignore = frozenset({EXECUTE_REVERT_HISTORY})
    _revert_ignore = frozenset({EXECUTE_REVERT_HISTORY, REVERT_FLOW_FAILURES})

    def __init__(
        self,
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        *,
        delay: float = 0.0,
        backoff: float = 2.0,
        max_delay: float | None = None,
    ) -> None:
        self.delay: float = _check_number("delay", delay, 0.0)
        self.backoff: float = _check_number("backoff", backoff, 1.0)
        self.max_delay: float | None = (
            None if max_delay is None else _check_number("max_delay", max_delay, 0.0)
        )
        super().__init__(
            name=name,
            provides=provides,
            requires=requires,
            auto_extract=auto_extract,
            rebind=rebind,
        )

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` attempts.

        ``min(delay * backoff ** (attempt - 1), max_delay)``; 0.0 when ``delay`` is 0.

        Raises:
            ValueError: ``attempt`` is below 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, not {attempt!r}")
        if self.delay == 0.0:
            return 0.0
        try:
            seconds = self.delay * self.backoff ** (attempt - 1)
        except OverflowError:
            seconds = math.inf
        if self.max_delay is not None and seconds > self.max_delay:
            return self.max_delay
        return seconds

    @abc.abstractmethod
    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        """Provide the value for a new attempt (published as :attr:`provides`)."""

    def revert(self, history: History, *args: Any, **kwargs: Any) -> Any:
        """Undo what execute did (receives ``flow_failures`` too); does nothing by default."""

    @abc.abstractmethod
    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> Decision:
        """Decide what to do now that an atom of the flow failed."""


class AlwaysRevert(Retry):
    """Never retries: reverts its flow (:data:`REVERT`) on any failure."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def on_failure(self, *args: Any, **kwargs: Any) -> Decision:
        return REVERT


class AlwaysRevertAll(Retry):
    """Never retries: reverts everything (:data:`REVERT_ALL`) on any failure."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def on_failure(self, *args: Any, **kwargs: Any) -> Decision:
        return REVERT_ALL


class Times(Retry):
    """Runs its flow up to ``attempts`` times; execute provides the attempt number (1-based).

    Args:
        attempts: Total attempts allowed before giving up.
        revert_all: Give up with :data:`REVERT_ALL` instead of :data:`REVERT`.
    """

    def __init__(
        self,
        attempts: int = 1,
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        revert_all: bool = False,
        *,
        delay: float = 0.0,
        backoff: float = 2.0,
        max_delay: float | None = None,
    ) -> None:
        super().__init__(
            name,
            provides,
            requires,
            auto_extract,
            rebind,
            delay=delay,
            backoff=backoff,
            max_delay=max_delay,
        )
        self._attempts = attempts
        self._revert_action = REVERT_ALL if revert_all else REVERT

    def execute(self, history: History, *args: Any, **kwargs: Any) -> int:
        return len(history) + 1

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> Decision:
        if len(history) < self._attempts:
            return RETRY
        return self._revert_action


class ForEachBase(Retry):
    """Shared logic of controllers that try each of a collection of values in turn."""

    def __init__(
        self,
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        revert_all: bool = False,
        *,
        delay: float = 0.0,
        backoff: float = 2.0,
        max_delay: float | None = None,
    ) -> None:
        super().__init__(
            name,
            provides,
            requires,
            auto_extract,
            rebind,
            delay=delay,
            backoff=backoff,
            max_delay=max_delay,
        )
        self._revert_action = REVERT_ALL if revert_all else REVERT

    @staticmethod
    def _remaining(values: Iterable[Any], history: History) -> list[Any]:
        # A multiset difference, so repeated values are each tried once per occurrence;
        # list.remove (not a set) also supports unhashable values.
        remaining = list(values)
        for provided in history.provided_iter():
            with contextlib.suppress(ValueError):
                remaining.remove(provided)
        return remaining

    def _get_next_value(self, values: Iterable[Any], history: History) -> Any:
        remaining = self._remaining(values, history)
        if not remaining:
            raise NotFound(
                f"No elements left in collection of iterable retry controller {self.name}"
            )
        return remaining[0]

    def _on_failure(self, values: Iterable[Any], history: History) -> Decision:
        if self._remaining(values, history):
            return RETRY
        return self._revert_action


class ForEach(ForEachBase):
    """Runs its flow once per value of ``values`` until it succeeds; execute provides it.

    Args:
        values: The values to try, in order (any iterable; read once, at construction).
        revert_all: Give up with :data:`REVERT_ALL` instead of :data:`REVERT`.

    Raises:
        TypeError: ``values`` is not iterable.
        NotFound: (from execute) every value was already tried.
    """

    def __init__(
        self,
        values: Iterable[Any],
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        revert_all: bool = False,
        *,
        delay: float = 0.0,
        backoff: float = 2.0,
        max_delay: float | None = None,
    ) -> None:
        super().__init__(
            name,
            provides,
            requires,
            auto_extract,
            rebind,
            revert_all,
            delay=delay,
            backoff=backoff,
            max_delay=max_delay,
        )
        self._values = list(values)

    def execute(self, history: History, *args: Any, **kwargs: Any) -> Any:
        return self._get_next_value(self._values, history)

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> Decision:
        return self._on_failure(self._values, history)


class ParameterizedForEach(ForEachBase):
    """Like :class:`ForEach`, with the values taken from the ``values`` argument at run time.

    Raises:
        NotFound: (from execute) every value was already tried.
    """

    def execute(  # type: ignore[override]
        self, values: Iterable[Any], history: History, *args: Any, **kwargs: Any
    ) -> Any:
        return self._get_next_value(values, history)

    def on_failure(  # type: ignore[override]
        self, values: Iterable[Any], history: History, *args: Any, **kwargs: Any
    ) -> Decision:
        return self._on_failure(values, history)
