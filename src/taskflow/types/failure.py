"""An exception captured as data, so it can be stored, sent and compared.

Theory of operation: a :class:`Failure` is either *live* (built from an exception, so it
holds ``exc_info`` and can re-raise the original) or *data only* (built from a dict or
keyword arguments, after a trip through storage or the network). Both kinds expose the same
data (type names, message, JSON-safe arguments, traceback text, causes). ``matches`` compares
that data, so a live failure matches its own ``from_dict(to_dict())`` round trip; ``==``
(upstream's rule) also wants equal ``exc_info``, so live and data-only failures are unequal.

Engines build one live failure per failing atom, so building one is cheap: the class names
come from a cache and the traceback text, the argument copy and the cause chain are only
computed when first asked for.
"""

from __future__ import annotations

import math
import sys
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeAlias

from taskflow import exceptions as exc

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Failure"]

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]

# Marks a lazily computed field that has not been computed yet (None is a valid value).
_UNSET: Any = object()

# Values json represents exactly (and gives back with an equal value).
_JSON_SCALARS = frozenset((str, int, bool, type(None)))


# Class -> its type names; bounded so classes made on the fly cannot grow it forever.
_NAMES_CACHE: dict[type, tuple[str, ...]] = {}
_NAMES_CACHE_SIZE = 1024


def _type_names(exc_type: type[BaseException]) -> tuple[str, ...]:
    """The names of ``exc_type`` and its bases, up to ``Exception`` (or ``BaseException``)."""
    names = _NAMES_CACHE.get(exc_type)
    if names is None:
        found = []
        for cls in exc_type.__mro__:
            found.append(_class_name(cls))
            if cls is Exception or cls is BaseException:
                break
        names = tuple(found)
        if len(_NAMES_CACHE) >= _NAMES_CACHE_SIZE:
            _NAMES_CACHE.clear()
        _NAMES_CACHE[exc_type] = names
    return names


def _class_name(cls: type) -> str:
    # Builtins are stored bare ('KeyError'); the rest as 'module.Name' (upstream's format,
    # kept so persisted failures stay comparable across both implementations).
    if cls.__module__ == "builtins":
        return cls.__name__
    return f"{cls.__module__}.{cls.__name__}"


def _json_safe(value: Any) -> Any:
    """``value`` if json can carry it unchanged, else its repr (recursively for containers).

    Tuples become lists because that is what they come back as from json.
    """
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if kind is list or kind is tuple:
        return [_json_safe(item) for item in value]
    if kind is dict and all(type(key) is str for key in value):
        return {key: _json_safe(item) for key, item in value.items()}
    return repr(value)


def _safe_str(value: BaseException) -> str:
    try:
        return str(value)
    except Exception:
        # A broken __str__ must not turn the capture of one error into another error.
        return f"<unprintable {type(value).__name__} object>"


def _next_in_chain(value: BaseException) -> BaseException | None:
    if value.__cause__ is not None:
        return value.__cause__
    if value.__suppress_context__:
        return None
    return value.__context__


def _format_tb(tb: TracebackType | None) -> str:
    return "".join(traceback.format_tb(tb)) if tb is not None else ""


#: The keywords of a Failure built from data (``Failure(exception_str=..., ...)``).
_DATA_KEYWORDS = frozenset(
    ("exception_str", "exc_type_names", "exc_args", "traceback_str", "causes")
)


class Failure:
    """An exception (with its traceback and causes) captured as comparable, storable data.

    ``Failure()`` inside an ``except`` block captures the exception being handled;
    ``Failure(exc_info)`` captures a ``sys.exc_info()``-style tuple. With keyword arguments the
    failure is built from data instead: ``exception_str`` (required), ``exc_type_names``,
    ``exc_args``, ``traceback_str`` and ``causes`` (failures).

    A failure :meth:`matches` its own round trip through :meth:`to_dict`/:meth:`from_dict`,
    json or pickle; ``==`` also compares ``exc_info`` (see :meth:`__eq__`). Failures are not
    hashable.

    Raises:
        TypeError: no exception is being handled, or it is not an ``Exception`` (a
            ``SystemExit`` or ``KeyboardInterrupt``); unknown keyword arguments.
        KeyError: data is given without ``exception_str``.
    """

    #: Version written by :meth:`to_dict` and required by :meth:`from_dict`.
    DICT_VERSION: ClassVar[int] = 1
    #: Names one of which must end every ``exc_type_names`` list.
    BASE_EXCEPTIONS: ClassVar[tuple[str, ...]] = ("BaseException", "Exception")

    #: JSON schema (draft 4 style) of :meth:`to_dict` output, causes nested recursively.
    #: Extra keys are allowed so newer writers stay readable.
    SCHEMA: ClassVar[dict[str, Any]] = {
        "$ref": "#/definitions/cause",
        "definitions": {
            "cause": {
                "type": "object",
                "required": ["exception_str", "traceback_str", "exc_type_names"],
                "additionalProperties": True,
                "properties": {
                    "exception_str": {"type": "string"},
                    # Failures rebuilt from data without a traceback write None.
                    "traceback_str": {"type": ["string", "null"]},
                    "exc_type_names": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                    },
                    "version": {"type": "integer", "minimum": 0},
                    "exc_args": {"type": "array"},
                    "causes": {"type": "array", "items": {"$ref": "#/definitions/cause"}},
                },
            },
        },
    }

    __slots__ = (
        "_causes",
        "_exc_args",
        "_exc_info",
        "_exc_type_names",
        "_exception_str",
        "_traceback_str",
    )

    # Invariants: _exc_info is None for data-only failures. _exc_args, _traceback_str and
    # _causes may be _UNSET only while _exc_info is set (they are derived from it on demand).
    _exc_info: ExcInfo | None
    _exception_str: str
    _exc_type_names: tuple[str, ...]
    _exc_args: tuple[Any, ...]
    _traceback_str: str | None
    _causes: tuple[Failure, ...]

    def __init__(self, exc_info: Any = None, **kwargs: Any) -> None:
        if not kwargs:
            if exc_info is None:
                exc_info = sys.exc_info()
            exc_type = exc_info[0]
            # Only errors are captured: SystemExit, KeyboardInterrupt and friends are meant
            # to stop the program, not to be stored and reverted around (upstream's rule and
            # its message, which names the type).
            if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
                raise TypeError(f"Invalid exception type '{exc_type!r}' ({type(exc_type)})")
            self._capture(exc_info[1], exc_info[2])
            return
        # Unknown keywords are named first (the rule; upstream 6.5 raised a bare
        # KeyError('exception_str') for Failure(hi=1) instead).
        unexpected = [key for key in kwargs if key not in _DATA_KEYWORDS]
        if unexpected:
            raise TypeError(
                f"Failure.__init__ got unexpected keyword argument(s): {', '.join(unexpected)}"
            )
        self._exc_info = _as_exc_info(exc_info) if exc_info is not None else None
        self._exception_str = kwargs["exception_str"]
        self._exc_type_names = tuple(kwargs.get("exc_type_names", ()))
        self._exc_args = tuple(_json_safe(list(kwargs.get("exc_args", ()))))
        self._traceback_str = kwargs.get("traceback_str")
        self._causes = tuple(kwargs.get("causes", ()))

    def _capture(self, value: Any, tb: TracebackType | None) -> None:
        if not isinstance(value, BaseException):
            raise TypeError(f"Invalid exception type '{value!r}' ({type(value)})")
        self._exc_info = (type(value), value, tb)
        self._exception_str = _safe_str(value)
        self._exc_type_names = _type_names(type(value))
        self._exc_args = _UNSET
        self._traceback_str = _UNSET
        self._causes = _UNSET

    @classmethod
    def from_exception(cls, exception: BaseException) -> Failure:
        """Capture ``exception`` (with its ``__traceback__``, if it was raised).

        Unlike ``Failure()`` this accepts any ``BaseException``: the engine uses it to report
        a future that died of one (a task that raised ``SystemExit`` in a worker thread),
        where refusing would leave the engine waiting for a result that never comes.
        """
        failure = cls.__new__(cls)
        failure._capture(exception, getattr(exception, "__traceback__", None))
        return failure

    # -- data accessors -------------------------------------------------------------------

    @property
    def exception(self) -> BaseException | None:
        """The captured exception (None for a data-only failure)."""
        return self._exc_info[1] if self._exc_info is not None else None

    @property
    def exc_info(self) -> ExcInfo | None:
        """The captured ``(type, value, traceback)`` (None for a data-only failure)."""
        return self._exc_info

    @property
    def exception_str(self) -> str:
        """``str()`` of the exception."""
        return self._exception_str

    @property
    def exception_args(self) -> tuple[Any, ...]:
        """The exception's arguments, each kept as is when json can carry it, else its repr."""
        args = self._exc_args
        if args is _UNSET:
            assert self._exc_info is not None
            args = self._exc_args = tuple(_json_safe(list(self._exc_info[1].args)))
        return args

    @property
    def traceback_str(self) -> str | None:
        """The traceback as text, without header and exception line ('' if never raised)."""
        text = self._traceback_str
        if text is _UNSET:
            assert self._exc_info is not None
            text = self._traceback_str = _format_tb(self._exc_info[2])
        return text

    @property
    def causes(self) -> tuple[Failure, ...]:
        """Failures of the exceptions this one was raised from, nearest first.

        Follows ``__cause__``, else ``__context__`` unless suppressed (``raise ... from
        None``); each entry holds the rest of the chain as its own causes.
        """
        causes = self._causes
        if causes is _UNSET:
            assert self._exc_info is not None
            causes = self._causes = self._chain(self._exc_info[1])
        return causes

    @classmethod
    def _chain(cls, value: BaseException) -> tuple[Failure, ...]:
        chain: list[BaseException] = []
        seen = {id(value)}
        current = _next_in_chain(value)
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            chain.append(current)
            current = _next_in_chain(current)
        causes: tuple[Failure, ...] = ()
        # Build from the far end so each failure's causes are the already-built tail.
        for link in reversed(chain):
            failure = cls.__new__(cls)
            failure._capture(link, link.__traceback__)
            failure._causes = causes
            causes = (failure, *causes)
        return causes

    # -- comparison -----------------------------------------------------------------------

    def check(self, *exc_classes: type[BaseException] | str) -> type[BaseException] | str | None:
        """The first of ``exc_classes`` (classes or type names) this failure is an instance of."""
        names = self._exc_type_names
        for candidate in exc_classes:
            name = candidate if isinstance(candidate, str) else _class_name(candidate)
            if name in names:
                return candidate
        return None

    def matches(self, other: object) -> bool:
        """Whether ``other`` is a failure of the same error, wherever each side came from.

        Compares type names, message, arguments, traceback text and causes (each cause with
        :meth:`matches` too). When both sides still hold ``exc_info`` they must also be
        equal (``==``); a data-only side (from a dict, json or pickle) matches on data
        alone, so a live failure matches its own round trip through storage.
        """
        if self is other:
            return True
        if not isinstance(other, Failure):
            return False
        if self._exc_info is not None and other._exc_info is not None:
            return self == other
        return self._same_data(other) and all(
            a.matches(b) for a, b in zip(self.causes, other.causes, strict=True)
        )

    def __eq__(self, other: object) -> bool:
        """Equal data *and* equal ``exc_info`` (upstream's rule).

        A live failure and a data-only one are never equal, even when one is the round
        trip of the other: use :meth:`matches` to compare across storage. Two ``exc_info``
        are equal when they hold the same exception class, the same message and the same
        traceback text, so the same error raised twice from the same place gives equal
        failures, while one re-raised elsewhere (its traceback grew) does not.
        """
        if self is other:
            return True
        if not isinstance(other, Failure):
            return NotImplemented
        return (
            self._same_data(other)
            and self.causes == other.causes
            and _same_exc_info(self._exc_info, other._exc_info)
        )

    def _same_data(self, other: Failure) -> bool:
        """Whether the data (causes aside, left to the caller's rule) is the same."""
        return (
            self._exception_str == other._exception_str
            and self._exc_type_names == other._exc_type_names
            and self.exception_args == other.exception_args
            and self.traceback_str == other.traceback_str
            and len(self.causes) == len(other.causes)
        )

    # Failures compare by (mutable-looking) data, so they must not be dict keys.
    __hash__ = None  # type: ignore[assignment]

    def __iter__(self) -> Iterator[str]:
        """Iterate over the exception type names, most specific first."""
        return iter(self._exc_type_names)

    # -- raising --------------------------------------------------------------------------

    def reraise(self) -> NoReturn:
        """Raise the original exception, or a ``WrappedFailure`` when there is none."""
        if self._exc_info is not None:
            raise self._exc_info[1].with_traceback(self._exc_info[2])
        raise exc.WrappedFailure([self])

    @staticmethod
    def reraise_if_any(failures: Iterable[Failure]) -> None:
        """Re-raise one failure as itself, several as a ``WrappedFailure``, none not at all."""
        failures = list(failures)
        if len(failures) == 1:
            failures[0].reraise()
        elif failures:
            raise exc.WrappedFailure(failures)

    # -- rendering ------------------------------------------------------------------------

    def pformat(self, traceback: bool = False) -> str:
        """``Failure: Type: message``, followed by the traceback text if asked."""
        if self._exc_type_names:
            text = f"Failure: {self._exc_type_names[0]}: {self._exception_str}"
        else:
            text = f"Failure: {self._exception_str}"
        if traceback:
            tb_text = self.traceback_str
            if tb_text:
                text += "\nTraceback (most recent call last):\n" + tb_text.rstrip()
            else:
                text += "\nTraceback not available."
        return text

    def __str__(self) -> str:
        return self.pformat()

    def __repr__(self) -> str:
        return f"<{self.pformat()}>"

    # -- serialization --------------------------------------------------------------------

    @classmethod
    def validate(cls, data: Any) -> None:
        """Check that ``data`` is a failure dict (as :meth:`to_dict` writes).

        Raises:
            taskflow.exceptions.InvalidFormat: naming the first problem found.
        """
        problem = _problem_in(data, "failure")
        if problem is not None:
            raise exc.InvalidFormat(f"Failure data not of the expected format: {problem}")
        _check_roots(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        """Rebuild a (data-only) failure from :meth:`to_dict` output.

        Raises:
            ValueError: the dict's version is not :attr:`DICT_VERSION`.
        """
        version = data.get("version")
        if version != cls.DICT_VERSION:
            raise ValueError(f"Invalid dict version of failure object: {version!r}")
        return cls(
            exception_str=data["exception_str"],
            exc_type_names=data.get("exc_type_names", ()),
            exc_args=data.get("exc_args") or (),
            traceback_str=data.get("traceback_str"),
            causes=[cls.from_dict(cause) for cause in data.get("causes") or ()],
        )

    def to_dict(self, include_args: bool = True) -> dict[str, Any]:
        """This failure as plain json-compatible data (``exc_args`` empty unless asked)."""
        return {
            "exception_str": self._exception_str,
            "traceback_str": self.traceback_str,
            "exc_type_names": list(self._exc_type_names),
            "version": self.DICT_VERSION,
            "exc_args": list(self.exception_args) if include_args else [],
            "causes": [cause.to_dict(include_args=include_args) for cause in self.causes],
        }

    def copy(self) -> Failure:
        """A copy sharing the same (immutable) data and ``exc_info``."""
        clone = type(self).__new__(type(self))
        for slot in Failure.__slots__:
            setattr(clone, slot, getattr(self, slot))
        return clone

    def __copy__(self) -> Failure:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> Failure:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        # Tracebacks cannot be pickled and exceptions may not be: ship the data only.
        return (type(self).from_dict, (self.to_dict(),))


def _same_exc_info(a: ExcInfo | None, b: ExcInfo | None) -> bool:
    """Whether two ``exc_info`` are equal: both absent, or same class, message and traceback.

    The exception objects themselves are not compared (exceptions compare by identity), and
    tracebacks compare by their text since two raises never share a traceback object.
    """
    if a is None or b is None:
        return a is b
    if a[0] is not b[0]:
        return False
    if a[1] is not b[1] and _safe_str(a[1]) != _safe_str(b[1]):
        return False
    return a[2] is b[2] or _format_tb(a[2]) == _format_tb(b[2])


def _as_exc_info(value: Any) -> ExcInfo:
    exc_type, exc_value, tb = value
    if not isinstance(exc_value, BaseException):
        raise TypeError(f"Invalid exception type '{exc_value!r}' ({type(exc_value)})")
    return (exc_type, exc_value, tb)


def _problem_in(data: Any, where: str) -> str | None:
    """The first format problem of failure dict ``data`` (None if it has none)."""
    if not isinstance(data, dict):
        return f"{where} is not a dict but {type(data).__name__}"
    for key in ("exception_str", "traceback_str", "exc_type_names"):
        if key not in data:
            return f"'{key}' is a required property of {where}"
    if not isinstance(data["exception_str"], str):
        return f"{where} 'exception_str' is not a string: {data['exception_str']!r}"
    # None is accepted because failures built from data without a traceback write it.
    if data["traceback_str"] is not None and not isinstance(data["traceback_str"], str):
        return f"{where} 'traceback_str' is not a string: {data['traceback_str']!r}"
    names = data["exc_type_names"]
    if not isinstance(names, list | tuple) or not names:
        return f"{where} 'exc_type_names' is not a non-empty list: {names!r}"
    if not all(isinstance(name, str) for name in names):
        return f"{where} 'exc_type_names' holds a non-string: {names!r}"
    version = data.get("version", 0)
    if type(version) is not int or version < 0:
        return f"{where} 'version' is not a non-negative integer: {version!r}"
    if not isinstance(data.get("exc_args", ()), list | tuple):
        return f"{where} 'exc_args' is not a list: {data['exc_args']!r}"
    causes = data.get("causes", ())
    if not isinstance(causes, list | tuple):
        return f"{where} 'causes' is not a list: {causes!r}"
    for index, cause in enumerate(causes):
        problem = _problem_in(cause, f"{where} cause {index}")
        if problem is not None:
            return problem
    return None


def _check_roots(data: dict[str, Any]) -> None:
    root = data["exc_type_names"][-1]
    if root not in Failure.BASE_EXCEPTIONS:
        raise exc.InvalidFormat(
            "Failure data 'exc_type_names' must have an initial exception type that is one"
            f" of {Failure.BASE_EXCEPTIONS} types: '{root}' is not one of those types"
        )
    for cause in data.get("causes", ()):
        _check_roots(cause)
