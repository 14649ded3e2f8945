"""Every error taskflow raises, under upstream TaskFlow's names.

::

    Exception
     +-- TaskFlowException
     |    +-- StorageFailure            a persistence backend failed
     |    |    +-- OwnershipLost         another engine took the flow over: writes refused
     |    +-- ConductorFailure
     |    +-- JobFailure                 a jobboard operation failed
     |    |    +-- UnclaimableJob
     |    +-- ExecutionFailure           an engine could not run
     |    |    +-- FlowOwned              another engine runs the flow
     |    |    +-- RequestTimeout
     |    |    +-- InvalidState
     |    +-- DependencyFailure          a flow's dependencies cannot be satisfied
     |    |    +-- AmbiguousDependency
     |    |    +-- MissingDependencies
     |    +-- CompilationFailure
     |    +-- IncompatibleVersion
     |    +-- Duplicate
     |    +-- NotFound
     |    +-- Empty
     |    +-- MultipleChoices
     |    +-- InvalidFormat
     |    +-- DisallowedAccess
     +-- WrappedFailure                  several failures raised together
    NotImplementedError (builtin)
     +-- NotImplementedError
"""

from __future__ import annotations

import builtins
import os
from typing import TYPE_CHECKING, Any, NoReturn, cast

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from taskflow.types.failure import Failure

__all__ = [
    "AmbiguousDependency",
    "CompilationFailure",
    "ConductorFailure",
    "DependencyFailure",
    "DisallowedAccess",
    "Duplicate",
    "Empty",
    "ExecutionFailure",
    "FlowOwned",
    "IncompatibleVersion",
    "InvalidFormat",
    "InvalidState",
    "JobFailure",
    "MissingDependencies",
    "MultipleChoices",
    "NotFound",
    "NotImplementedError",
    "OwnershipLost",
    "RequestTimeout",
    "StorageFailure",
    "TaskFlowException",
    "UnclaimableJob",
    "WrappedFailure",
    "raise_with_cause",
]


def raise_with_cause(exc_cls: type[Exception], message: str, *args: Any, **kwargs: Any) -> NoReturn:
    """Raise ``exc_cls(message, ...)`` chained to the exception being handled, if any."""
    import sys

    current = sys.exc_info()[1]
    if issubclass(exc_cls, TaskFlowException) and current is not None:
        kwargs.setdefault("cause", current)
    raise exc_cls(message, *args, **kwargs) from current


class TaskFlowException(Exception):
    """Base of taskflow's own errors.

    Args:
        message: what went wrong.
        cause: the exception that caused this one; stored as ``__cause__`` and readable
            as :attr:`cause`.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        """The exception this one was raised from, if any."""
        return self.__cause__

    def pformat(
        self, indent: int = 2, indent_text: str = " ", show_root_class: bool = False
    ) -> str:
        """Render this exception and its chain of causes, one indented level per cause.

        Raises:
            ValueError: ``indent`` is negative.
        """
        if indent < 0:
            raise ValueError(
                f"Provided 'indent' must be greater than or equal to zero instead of {indent}"
            )
        lines: list[str] = []
        current: BaseException | None = self
        depth = 0
        while current is not None:
            if isinstance(current, TaskFlowException):
                text = str(current.args[0]) if current.args else ""
            else:
                text = str(current)
            if current is not self or show_root_class:
                name = type(current).__name__
                text = f"{name}: {text}" if text else name
            lines.append(indent_text * (indent * depth) + text)
            if not isinstance(current, TaskFlowException):
                break  # a foreign exception's own chain is its business
            current = current.__cause__
            depth += 1
        return os.linesep.join(lines)

    def __str__(self) -> str:
        return self.pformat()


class NotFound(TaskFlowException):
    """Something looked up does not exist (or has no value yet)."""


class Duplicate(TaskFlowException):
    """Something with the same name or identity already exists."""


class Empty(TaskFlowException):
    """An operation needs something that is empty."""


class MultipleChoices(TaskFlowException):
    """Several candidates match where exactly one was expected."""


class InvalidFormat(TaskFlowException):
    """Data does not have the expected format (a corrupt or foreign record)."""


class IncompatibleVersion(TaskFlowException):
    """A stored record or a server is of a version this code cannot use."""


class DisallowedAccess(TaskFlowException):
    """Access to something was refused in its current state."""

    def __init__(
        self, message: str, cause: BaseException | None = None, state: str | None = None
    ) -> None:
        super().__init__(message, cause)
        self.state = state


class CompilationFailure(TaskFlowException):
    """A flow could not be compiled into a runnable plan."""


class DependencyFailure(TaskFlowException):
    """The dependencies between a flow's atoms cannot be satisfied."""


class MissingDependencies(DependencyFailure):
    """Requirements of an atom or flow that nothing provides.

    Args:
        who: the atom or flow whose requirements are missing.
        requirements: the missing symbol names.
        cause: a more specific error (per-atom), if any.
        method: the atom's method (``execute`` or ``revert``) that requires them.
    """

    MESSAGE_TPL = (
        "'%(who)s' requires %(requirements)s but no other entity produces said requirements"
    )
    METHOD_TPL = "'%(method)s' method on "

    def __init__(
        self,
        who: Any,
        requirements: Iterable[str],
        cause: BaseException | None = None,
        method: str | None = None,
    ) -> None:
        self.missing_requirements = requirements
        prefix = self.METHOD_TPL % {"method": method} if method else ""
        message = prefix + self.MESSAGE_TPL % {"who": who, "requirements": requirements}
        super().__init__(message, cause=cause)
        self.who = who


class AmbiguousDependency(DependencyFailure):
    """Several atoms could provide a requirement and none is preferred."""


class ExecutionFailure(TaskFlowException):
    """An engine could not run (it is already running, for instance)."""


class InvalidState(ExecutionFailure):
    """An operation was asked in a state that does not allow it (see the message)."""


class RequestTimeout(ExecutionFailure):
    """A remote request was not picked up in time."""


class StorageFailure(TaskFlowException):
    """A persistence backend failed to read or write; nothing is marked done that was not
    written. Check the backend (database up, disk not full) and resume the flow."""


class OwnershipLost(StorageFailure):
    """This engine's writes to a flow are refused: another engine took the flow over (this
    one's lease lapsed, paused or cut off). Its run stops; the new owner resumes the flow."""


class FlowOwned(ExecutionFailure):
    """Another engine (named in the message) is running the flow detail: only one may.

    Wait for it to finish, or for its lease to lapse if it died on another host; an owner
    on this host whose process is gone is taken over at once.
    """


class JobFailure(TaskFlowException):
    """A jobboard operation failed, or the caller does not own the job it acts on."""


class UnclaimableJob(JobFailure):
    """The job is already claimed (or gone) and cannot be claimed."""


class ConductorFailure(TaskFlowException):
    """A conductor failed to dispatch or manage a job."""


class NotImplementedError(builtins.NotImplementedError):
    """A feature is not implemented by this backend or engine."""


class WrappedFailure(Exception):
    """Several failures raised together (by a parallel engine, or from a reloaded flow).

    Iterating yields each :class:`~taskflow.types.failure.Failure`; nested wrapped failures
    are flattened.
    """

    def __init__(self, causes: Iterable[Failure]) -> None:
        super().__init__(causes)
        flat: list[Failure] = []
        for cause in causes:
            wrapped = cause.check(WrappedFailure)
            if wrapped is not None and cause.exception is not None:
                flat.extend(cast("WrappedFailure", cause.exception))
            else:
                flat.append(cause)
        self._causes = flat

    def __len__(self) -> int:
        return len(self._causes)

    def __iter__(self) -> Iterator[Failure]:
        return iter(self._causes)

    def __getitem__(self, index: int) -> Failure:
        return self._causes[index]

    def check(self, *exc_classes: Any) -> Any:
        """The first of ``exc_classes`` that any wrapped failure matches, or None."""
        if not exc_classes:
            return None
        for cause in self._causes:
            result = cause.check(*exc_classes)
            if result is not None:
                return result
        return None

    def __str__(self) -> str:
        return f"WrappedFailure: [{', '.join(str(c) for c in self._causes)}]"
