"""Tasks: atoms that do one piece of work and know how to undo it.

Subclass :class:`Task` and implement ``execute`` (and usually ``revert``), or wrap plain
callables with :class:`FunctorTask`, :class:`MapFunctorTask` or :class:`ReduceFunctorTask`.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from taskflow.atom import Atom, Provides, Rebind, Requires
from taskflow.types.notifier import RestrictedNotifier

__all__ = [
    "REVERT_RESULT",
    "REVERT_FLOW_FAILURES",
    "EVENT_UPDATE_PROGRESS",
    "Task",
    "FunctorTask",
    "MapFunctorTask",
    "ReduceFunctorTask",
]

LOG = logging.getLogger(__name__)

#: Keyword under which revert receives the execute result (or the task's own Failure).
REVERT_RESULT = "result"
#: Keyword under which revert receives ``{atom name: Failure}`` of the flow's failures.
REVERT_FLOW_FAILURES = "flow_failures"
#: Event notified by :meth:`Task.update_progress`, with details ``{'progress': float}``.
EVENT_UPDATE_PROGRESS = "update_progress"


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def _callable_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a function or method, else of the callable's class."""
    target: Any = func.__func__ if inspect.ismethod(func) else func
    if not (inspect.isfunction(target) or inspect.isclass(target)):
        target = type(target)
    return f"{target.__module__}.{target.__qualname__}"


def _named_parameter_count(func: Callable[..., Any]) -> int:
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = inspect.signature(func).parameters.values()
    return sum(1 for param in params if param.kind not in skip)


def _check_requires_iterable(requires: object) -> None:
    if isinstance(requires, str) or not isinstance(requires, Iterable):
        raise TypeError(
            f"{type(requires)} type was provided for requires. Requires must be an iterable."
        )


#: Where the engine running the current call records its progress: ``[task, sink, token]``,
#: the engine wanting ``sink(token, progress, details)`` for that task; set by the engine's
#: executor around each call. A context variable, not an attribute of the task, because one
#: task object may run in several engines (and threads) at once.
PROGRESS_SINK: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "taskflow_progress_sink", default=None
)


class _TaskNotifier(RestrictedNotifier):
    """A task's notifier: progress events notified during the task's call are also recorded.

    As upstream, the engine records every ``update_progress`` event the task emits while the
    engine calls it, ``update_progress()`` or a direct ``notifier.notify`` alike, with the
    event's other keys as the progress details (none erase earlier ones).
    """

    def notify(self, event_type: str, details: dict[str, Any]) -> None:
        super().notify(event_type, details)
        if event_type == EVENT_UPDATE_PROGRESS and details and "progress" in details:
            call = PROGRESS_SINK.get()
            if call is not None and getattr(call[0], "_notifier", None) is self:
                rest = {key: value for key, value in details.items() if key != "progress"}
                call[1](call[2], details["progress"], rest)


class Task(Atom):
    """An atom whose execute does work and whose revert undoes it.

    ``revert`` receives, besides its mapped arguments, ``result=`` (what execute returned,
    or the task's own Failure) and ``flow_failures=`` (``{atom name: Failure}``); so it must
    accept those keywords (or ``**kwargs``).

    Args:
        name: Defaults to the task class's ``module.ClassName``.
        provides, requires, auto_extract, rebind, inject, ignore_list, revert_rebind,
        revert_requires: As for :class:`~taskflow.atom.Atom`.
    """

    #: Events listeners may register for on :attr:`notifier` (any name can be notified).
    TASK_EVENTS: ClassVar[tuple[str, ...]] = (EVENT_UPDATE_PROGRESS,)

    _revert_ignore = frozenset({REVERT_RESULT, REVERT_FLOW_FAILURES})

    def __init__(
        self,
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        inject: Mapping[str, Any] | None = None,
        ignore_list: Iterable[str] | None = None,
        revert_rebind: Rebind = None,
        revert_requires: Requires = None,
    ) -> None:
        if name is None:
            name = _class_name(type(self))
        super().__init__(
            name,
            provides,
            requires,
            auto_extract,
            rebind,
            inject,
            ignore_list,
            revert_rebind,
            revert_requires,
        )
        self._notifier = _TaskNotifier(self.TASK_EVENTS)

    @property
    def notifier(self) -> RestrictedNotifier:
        """Notifier of this task's own events (progress updates and custom events)."""
        return self._notifier

    def copy(self, retain_listeners: bool = True) -> Task:
        """A shallow copy of this task, with a notifier of its own.

        Args:
            retain_listeners: Give the copy the same registrations (else none).
        """
        clone = copy.copy(self)
        if retain_listeners:
            clone._notifier = self._notifier.copy()
        else:
            clone._notifier = _TaskNotifier(self.TASK_EVENTS)
        return clone

    def __getstate__(self) -> dict[str, Any]:
        # Listeners are callbacks of this process (often closures): a pickled task (shipped to
        # a child process) travels without them and gets a fresh notifier.
        state = self.__dict__.copy()
        state["_notifier"] = _TaskNotifier(self.TASK_EVENTS)
        return state

    def update_progress(self, progress: float) -> None:
        """Report progress between 0.0 and 1.0 (values outside are clamped, with a warning).

        Listeners of :attr:`notifier` hear every report. The engine records the progress of
        the call it is making (``execute`` or ``revert``), from the thread running that call;
        reports made from other threads the task starts, or after the call returned, are
        notified but not recorded.
        """
        if progress > 1.0:
            LOG.warning("Progress %r of task %s is above 1.0; using 1.0", progress, self.name)
            progress = 1.0
        elif progress < 0.0:
            LOG.warning("Progress %r of task %s is below 0.0; using 0.0", progress, self.name)
            progress = 0.0
        self._notifier.notify(EVENT_UPDATE_PROGRESS, {"progress": progress})


class FunctorTask(Task):
    """A task whose execute (and optionally revert) is a given callable.

    The callable's signature is what gets mapped; without ``revert`` reverting does nothing.

    Args:
        execute: Called with the mapped arguments; its result is the task's result.
        name: Defaults to the callable's ``module.qualname``.
        revert: Called to revert (with the mapped arguments plus ``result=`` and
            ``flow_failures=``).
        version: Version of the task (default ``(1, 0)``).

    Raises:
        ValueError: ``execute`` or ``revert`` is not callable.
    """

    def __init__(
        self,
        execute: Callable[..., Any],
        name: str | None = None,
        provides: Provides = None,
        requires: Requires = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        revert: Callable[..., Any] | None = None,
        version: tuple[int, ...] | None = None,
        inject: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(execute):
            raise ValueError("Function to use for executing must be callable")
        if revert is not None and not callable(revert):
            raise ValueError("Function to use for reverting must be callable")
        if name is None:
            name = _callable_name(execute)
        self._execute = execute
        self._revert = revert
        super().__init__(name, provides, requires, auto_extract, rebind, inject)
        if version is not None:
            self.version = version

    def _execute_callable(self) -> Callable[..., Any]:
        return self._execute

    def _revert_callable(self) -> Callable[..., Any]:
        # Without a revert callable, revert is mapped like execute (upstream behaves the
        # same), so both sides fetch the same arguments.
        return self._revert if self._revert is not None else self._execute

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._execute(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self._revert is not None:
            return self._revert(*args, **kwargs)
        return None


class _ValuesFunctorTask(Task):
    """What the map and reduce tasks share: a callable over the required values, in order."""

    _functor: Callable[..., Any]
    _arg_order: tuple[str, ...]

    def _bind_functor(
        self,
        functor: Callable[..., Any],
        names: list[str],
        name: str | None,
        provides: Provides,
        auto_extract: bool,
        rebind: Rebind,
        inject: Mapping[str, Any] | None,
    ) -> None:
        self._functor = functor
        Task.__init__(
            self,
            name=name if name is not None else _callable_name(functor),
            provides=provides,
            requires=names,
            auto_extract=auto_extract,
            rebind=rebind,
            inject=inject,
        )
        # The values reach execute in the order of ``requires`` (rebind keeps that order).
        self._arg_order = tuple(self.rebind)


class MapFunctorTask(_ValuesFunctorTask):
    """Applies a one-argument callable to each required value: ``list(map(f, values))``.

    Values are taken in the order of ``requires``.

    Args:
        functor: Callable taking exactly one argument.
        requires: Names (a non-string iterable) of the values to map over.

    Raises:
        ValueError: ``functor`` is not callable or does not take exactly one argument.
        TypeError: ``requires`` is a string or not iterable.
    """

    def __init__(
        self,
        functor: Callable[[Any], Any],
        requires: Iterable[str],
        name: str | None = None,
        provides: Provides = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        inject: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(functor):
            raise ValueError("Function to use for map must be callable")
        count = _named_parameter_count(functor)
        if count != 1:
            raise ValueError(
                f"{count} arguments were provided. Map functor must take exactly 1 argument."
            )
        _check_requires_iterable(requires)
        self._bind_functor(functor, list(requires), name, provides, auto_extract, rebind, inject)

    def execute(self, **kwargs: Any) -> list[Any]:
        return [self._functor(kwargs[name]) for name in self._arg_order]


class ReduceFunctorTask(_ValuesFunctorTask):
    """Folds the required values with a two-argument callable (``functools.reduce``).

    Values are taken in the order of ``requires``.

    Args:
        functor: Callable taking exactly two arguments.
        requires: Names (a non-string iterable of at least two) of the values to fold.

    Raises:
        ValueError: ``functor`` is not callable or does not take exactly two arguments, or
            fewer than two names are required.
        TypeError: ``requires`` is a string or not iterable.
    """

    def __init__(
        self,
        functor: Callable[[Any, Any], Any],
        requires: Iterable[str],
        name: str | None = None,
        provides: Provides = None,
        auto_extract: bool = True,
        rebind: Rebind = None,
        inject: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(functor):
            raise ValueError("Function to use for reduce must be callable")
        count = _named_parameter_count(functor)
        if count != 2:
            raise ValueError(
                f"{count} arguments were provided. Reduce functor must take exactly 2 arguments."
            )
        _check_requires_iterable(requires)
        names = list(requires)
        if len(names) < 2:
            raise ValueError(
                f"{len(names)} elements were provided. Requires must have at least 2 elements."
            )
        self._bind_functor(functor, names, name, provides, auto_extract, rebind, inject)

    def execute(self, **kwargs: Any) -> Any:
        return functools.reduce(self._functor, (kwargs[name] for name in self._arg_order))
