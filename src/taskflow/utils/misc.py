"""Small helpers used across taskflow: conversions, URIs, failures, reflection, sequences."""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib
import inspect
import io
import json
import os
import re
import socket
import sys
import threading
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload
from urllib import parse

from taskflow.types import failure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "NUMERIC_TYPES",
    "UNKNOWN_HOSTNAME",
    "BytesIO",
    "ParsedUri",
    "StringIO",
    "as_int",
    "binary_decode",
    "binary_encode",
    "capture_failure",
    "clamp",
    "cachedproperty",
    "countdown_iter",
    "decode_json",
    "decode_msgpack",
    "disallow_when_frozen",
    "extract_driver_and_conf",
    "find_subclasses",
    "fix_newlines",
    "get_all_class_names",
    "get_callable_name",
    "get_class_name",
    "get_hostname",
    "get_version_string",
    "is_iterable",
    "match_type",
    "merge_uri",
    "millis_to_datetime",
    "parse_uri",
    "pick_first_not_none",
    "reverse_enumerate",
    "safe_copy_dict",
    "sequence_minus",
]

T = TypeVar("T")
N = TypeVar("N", int, float)
F = TypeVar("F", bound="Callable[..., Any]")

NUMERIC_TYPES = (int, float)
#: What :func:`get_hostname` answers when the host name cannot be found.
UNKNOWN_HOSTNAME = "<unknown>"

# RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'.
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


# -- conversions ------------------------------------------------------------------------------


def as_int(obj: Any, quiet: bool = False) -> Any:
    """``obj`` as an int (``'5'``, ``'5.0'`` and ``5.7`` all give 5).

    Args:
        quiet: return ``obj`` unchanged instead of raising when it cannot be converted.

    Raises:
        TypeError: ``obj`` cannot be converted (and ``quiet`` is false).
    """
    try:
        return int(obj)
    except (ValueError, TypeError):
        pass
    try:
        return int(float(obj))
    except (ValueError, TypeError, OverflowError):
        if quiet:
            return obj
        raise TypeError(f"Can not translate '{obj}' ({type(obj)}) to an integer")


def clamp(value: N, minimum: N, maximum: N, on_clamped: Callable[[], Any] | None = None) -> N:
    """``value`` limited to ``[minimum, maximum]``; ``on_clamped()`` is called if it was.

    Raises:
        ValueError: ``minimum`` is greater than ``maximum``.
    """
    if minimum > maximum:
        raise ValueError(
            f"Provided minimum '{minimum}' must be less than or equal to"
            f" the provided maximum '{maximum}'"
        )
    clamped = min(max(value, minimum), maximum)
    if on_clamped is not None and clamped != value:
        on_clamped()
    return clamped


def binary_encode(text: str | bytes, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``text`` as bytes (bytes are returned unchanged).

    Raises:
        TypeError: ``text`` is neither str nor bytes.
    """
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode(encoding, errors)
    raise TypeError(f"{type(text)} can't be encoded")


def binary_decode(data: str | bytes, encoding: str = "utf-8", errors: str = "strict") -> str:
    """``data`` as text (str is returned unchanged).

    Raises:
        TypeError: ``data`` is neither bytes nor str.
    """
    if isinstance(data, str):
        return data
    if isinstance(data, bytes):
        return data.decode(encoding, errors)
    raise TypeError(f"{type(data)} can't be decoded")


def decode_json(raw_data: str | bytes, root_types: tuple[type, ...] = (dict,)) -> Any:
    """Parse JSON text (or utf-8 bytes) whose top-level value must be one of ``root_types``.

    Raises:
        ValueError: the data is not JSON, or its top-level value has another type.
    """
    try:
        data = json.loads(binary_decode(raw_data))
    except UnicodeDecodeError as e:
        raise ValueError(f"Expected UTF-8 decodable data: {e}") from e
    except ValueError as e:
        raise ValueError(f"Expected JSON decodable data: {e}") from e
    if root_types and not isinstance(data, root_types):
        expected = root_types[0] if len(root_types) == 1 else root_types
        raise ValueError(f"Expected '{expected}' root type not '{type(data)}'")
    return data


def decode_msgpack(raw_data: bytes, root_types: tuple[type, ...] = (dict,)) -> Any:
    """Unpack msgpack bytes whose top-level value must be one of ``root_types``.

    Only plain msgpack types are understood (no extension types); an empty ``root_types``
    accepts any top-level value. The ``msgpack`` package is imported on first use, so it is
    only needed by callers of this function.

    Raises:
        ImportError: the ``msgpack`` package is not installed.
        ValueError: the data is not msgpack, or its top-level value has another type.
    """
    try:
        msgpack = importlib.import_module("msgpack")
    except ImportError as e:
        raise ImportError(
            "decode_msgpack needs the 'msgpack' package (pip install msgpack)", name="msgpack"
        ) from e
    try:
        data = msgpack.unpackb(raw_data, raw=False)
    except Exception as e:
        # msgpack reports bad input with several exception types (and TypeError for str).
        raise ValueError(f"Expected msgpack decodable data: {e}") from e
    if root_types and not isinstance(data, root_types):
        if len(root_types) == 1:
            raise ValueError(f"Expected '{root_types[0]}' root type not '{type(data)}'")
        raise ValueError(f"Expected {list(root_types)} root types not '{type(data)}'")
    return data


def fix_newlines(text: str, replacement: str = "\n") -> str:
    """``text`` with every line ending replaced by ``replacement`` (no trailing one)."""
    return replacement.join(text.splitlines())


def millis_to_datetime(milliseconds: float) -> datetime.datetime:
    """A naive UTC datetime from milliseconds since the epoch."""
    seconds = milliseconds / 1000.0
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).replace(tzinfo=None)


def get_hostname(unknown_hostname: str = UNKNOWN_HOSTNAME) -> str:
    """This machine's host name (``unknown_hostname`` if it cannot be found)."""
    try:
        return socket.getfqdn() or unknown_hostname
    except OSError:
        return unknown_hostname


def get_version_string(obj: Any) -> str | None:
    """``obj.version`` as text: a version tuple ``(1, 0)`` gives ``'1.0'``; None if absent."""
    version = getattr(obj, "version", None)
    if isinstance(version, list | tuple):
        return ".".join(str(part) for part in version)
    return version


# -- URIs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedUri:
    """The parts of a URI (as :func:`parse_uri` found them).

    ``query`` maps each parameter to its value, or to the list of its values when it is
    repeated. ``port`` is None when absent or not a single number (a ZooKeeper-style
    ``h1:2181,h2:2181`` host list is kept whole in ``netloc``).
    """

    scheme: str
    netloc: str
    username: str | None
    password: str | None
    hostname: str | None
    port: int | None
    path: str
    query: dict[str, str | list[str]] = field(default_factory=dict)
    fragment: str = ""

    @property
    def hosts(self) -> str:
        """The part of ``netloc`` after any credentials (host, port, or a host list)."""
        return self.netloc.rpartition("@")[2]


def parse_uri(uri: str) -> ParsedUri:
    """Split ``scheme://user:pass@host:port/path?query#fragment`` into its parts.

    Raises:
        TypeError: ``uri`` is not a string.
        ValueError: ``uri`` does not start with a scheme.
    """
    if not isinstance(uri, str):
        raise TypeError(f"Can only parse string types to uri data, and not '{uri}' ({type(uri)})")
    if not _SCHEME_RE.match(uri):
        raise ValueError(f"Uri '{uri}' does not start with a RFC 3986 compliant scheme")
    split = parse.urlsplit(uri)
    try:
        port = split.port
    except ValueError:
        port = None
    query: dict[str, str | list[str]] = {}
    for key, value in parse.parse_qsl(split.query, keep_blank_values=True):
        existing = query.get(key)
        if existing is None:
            query[key] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            query[key] = [existing, value]
    return ParsedUri(
        scheme=split.scheme,
        netloc=split.netloc,
        username=split.username,
        password=split.password,
        hostname=split.hostname,
        port=port,
        path=split.path,
        query=query,
        fragment=split.fragment,
    )


def merge_uri(uri: ParsedUri, conf: dict[str, Any]) -> dict[str, Any]:
    """Fill ``conf`` (in place, and return it) with what ``uri`` says and ``conf`` lacks.

    Keys set: ``username``, ``password``, ``hostname`` (the URI's hosts, port included, as
    upstream TaskFlow did, so host lists survive), ``port``, and every query parameter (the
    last value when repeated). Keys already in ``conf`` win; the path is not merged.
    """
    parts: tuple[tuple[str, str | int | None], ...] = (
        ("username", uri.username),
        ("password", uri.password),
        ("hostname", uri.hosts or None),
        ("port", uri.port),
    )
    for key, part in parts:
        if part is not None and key not in conf:
            conf[key] = part
    for key, value in uri.query.items():
        if key not in conf:
            conf[key] = value[-1] if isinstance(value, list) else value
    return conf


def extract_driver_and_conf(
    conf: str | Mapping[str, Any], conf_key: str
) -> tuple[Any, dict[str, Any]]:
    """The driver name a configuration selects, and a copy of it filled from its URI.

    ``conf`` is either the value itself (``'redis://host:6379?db=1'``) or a mapping holding
    it under ``conf_key``. When the value is a URI its scheme is the driver (kept whole:
    ``'mysql+pymysql'``) and the copy gains what :func:`merge_uri` takes from it; any other
    value (``'memory'``) is the driver name as it is.

    Raises:
        KeyError: the mapping has no ``conf_key``.
    """
    if isinstance(conf, str):
        conf = {conf_key: conf}
    merged = dict(conf)
    value = merged[conf_key]
    if isinstance(value, str) and _SCHEME_RE.match(value):
        uri = parse_uri(value)
        return uri.scheme, merge_uri(uri, merged)
    return value, merged


# -- failures ---------------------------------------------------------------------------------


@contextlib.contextmanager
def capture_failure() -> Iterator[failure.Failure]:
    """Yield a :class:`~taskflow.types.failure.Failure` of the exception being handled.

    Use inside an ``except`` block (``with capture_failure() as f: ...``).

    Raises:
        RuntimeError: no exception is being handled.
    """
    if sys.exc_info()[1] is None:
        raise RuntimeError("No active exception is being handled")
    yield failure.Failure()


# -- reflection -------------------------------------------------------------------------------


def get_class_name(obj: Any, fully_qualified: bool = True) -> str:
    """The name of ``obj``'s class (or of ``obj`` if it is a class).

    Builtins are bare (``'KeyError'``), other classes ``'module.Name'`` unless
    ``fully_qualified`` is false.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    if not fully_qualified or cls.__module__ == "builtins":
        return cls.__name__
    return f"{cls.__module__}.{cls.__name__}"


def get_all_class_names(
    obj: Any, up_to: type = object, fully_qualified: bool = True
) -> Iterator[str]:
    """Names of ``obj``'s class and its bases (in MRO order), stopping after ``up_to``."""
    cls = obj if isinstance(obj, type) else type(obj)
    for base in cls.__mro__:
        yield get_class_name(base, fully_qualified=fully_qualified)
        if base is up_to:
            break


def get_callable_name(function: Any) -> str:
    """A qualified name for a callable: ``'module.QualName'`` (``'__main__.<lambda>'``).

    Methods are named after their defining class (``'mod.Class.method'``), callable objects
    after their class, and partials as ``'functools.partial'``.
    """
    target = function
    if isinstance(target, types.MethodType):
        target = target.__func__
    qualname = getattr(target, "__qualname__", None)
    if qualname is None or not (inspect.isroutine(target) or isinstance(target, type)):
        # A callable instance (or a partial): name it after its class.
        cls = type(target)
        return f"{cls.__module__}.{cls.__qualname__}"
    module = getattr(target, "__module__", None)
    if module is None:
        owner = getattr(target, "__objclass__", None)
        module = getattr(owner, "__module__", None) or "builtins"
    return f"{module}.{qualname}"


def find_subclasses(
    locations: Iterable[Any], base_cls: type[T], exclude_hidden: bool = True
) -> set[type[T]]:
    """Subclasses of ``base_cls`` (itself included) found at ``locations``.

    Each location is a module name or module (every public class in it that subclasses
    ``base_cls``; with ``exclude_hidden=False`` also ``_private`` ones), a ``'module:Class'``
    string, or a class.

    Raises:
        TypeError: a named or given class is not a subclass, or a location has another type.
        ImportError: a module cannot be imported.
    """
    found: set[type[T]] = set()
    for location in locations:
        members: list[tuple[str, Any]]
        if isinstance(location, str) and ":" in location:
            module_name, _, class_name = location.partition(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            if not (isinstance(cls, type) and issubclass(cls, base_cls)):
                raise TypeError(
                    f"Object '{location}' ({type(location)}) is not a '{base_cls}' subclass"
                )
            found.add(cls)
            continue
        if isinstance(location, type):
            if not issubclass(location, base_cls):
                raise TypeError(
                    f"Object '{location}' ({type(location)}) is not a '{base_cls}' subclass"
                )
            found.add(location)
            continue
        if isinstance(location, str):
            module = importlib.import_module(location)
        elif isinstance(location, types.ModuleType):
            module = location
        else:
            raise TypeError(f"Object '{location}' ({type(location)}) is an unexpected type")
        members = inspect.getmembers(module, inspect.isclass)
        for name, member in members:
            if exclude_hidden and name.startswith("_"):
                continue
            if issubclass(member, base_cls):
                found.add(member)
    return found


def match_type(obj: Any, matchers: Iterable[tuple[type | tuple[type, ...], T]]) -> T | None:
    """The value paired with the first type ``obj`` is an instance of, or None."""
    for match_types, value in matchers:
        if isinstance(obj, match_types):
            return value
    return None


# -- sequences --------------------------------------------------------------------------------


def is_iterable(obj: Any) -> bool:
    """Whether ``obj`` can be iterated and is not a string (bytes count as iterable)."""
    if isinstance(obj, str):
        return False
    try:
        iter(obj)
    except TypeError:
        return False
    return True


def sequence_minus(seq1: Iterable[T], seq2: Iterable[T]) -> list[T]:
    """``seq1`` without the items of ``seq2``, as a multiset difference keeping order.

    Each item of ``seq2`` removes one occurrence (the earliest) from ``seq1``:
    ``sequence_minus([1, 2, 3, 2, 1], [2, 5, 1]) == [3, 2, 1]``.
    """
    result = list(seq1)
    removals = list(seq2)
    try:
        pending = Counter(removals)
    except TypeError:
        # Unhashable items: fall back to removing one by one.
        for item in removals:
            with contextlib.suppress(ValueError):
                result.remove(item)
        return result
    kept = []
    for item in result:
        if pending[item] > 0:
            pending[item] -= 1
        else:
            kept.append(item)
    return kept


def countdown_iter(start_at: int, decr: int = 1) -> Iterator[int]:
    """``start_at``, ``start_at - decr``, ... while positive.

    Raises:
        ValueError: ``decr`` is not positive.
    """
    if decr <= 0:
        raise ValueError(f"Decrement value must be greater than zero and not {decr}")
    while start_at > 0:
        yield start_at
        start_at -= decr


def reverse_enumerate(items: Sequence[T]) -> Iterator[tuple[int, T]]:
    """``(index, item)`` pairs from the last item to the first."""
    for index in range(len(items) - 1, -1, -1):
        yield index, items[index]


def pick_first_not_none(*values: Any) -> Any:
    """The first value that is not None (None if all are)."""
    for value in values:
        if value is not None:
            return value
    return None


def safe_copy_dict(obj: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> dict[str, Any]:
    """A shallow dict copy of ``obj`` (a mapping or key/value pairs); ``{}`` for None."""
    if obj is None:
        return {}
    return dict(obj)


# -- streams ----------------------------------------------------------------------------------


class BytesIO(io.BytesIO):
    """An in-memory bytes stream that can be emptied and rewound in one call."""

    def reset(self) -> None:
        """Drop the contents and go back to position 0."""
        self.seek(0)
        self.truncate()


class StringIO(io.StringIO):
    """An in-memory text stream with a helper for writing whole lines."""

    def write_nl(self, value: str, linesep: str = os.linesep) -> None:
        """Write ``value`` followed by ``linesep``."""
        self.write(value)
        self.write(linesep)


# -- decorators -------------------------------------------------------------------------------

_NOT_CACHED: Any = object()


class cachedproperty(Generic[T]):  # lower case, like the builtin ``property``
    """A read-only property computed on first access and then kept on the instance.

    The value is stored in an instance attribute (``_<function name>`` unless a name is
    given), so instances need a ``__dict__`` or a matching slot. Usable bare or configured::

        @cachedproperty
        def size(self): ...

        @cachedproperty("_cached_size")
        def size(self): ...

        @cachedproperty(require_lock=False)
        def size(self): ...

    Args:
        fget: the function computing the value, or the attribute name to store it under.
        require_lock: compute under a lock so concurrent first accesses compute once; without
            it two threads may both compute (the last one stored wins).

    Raises:
        TypeError: ``fget`` is neither a callable, a string nor None.
    """

    def __init__(
        self, fget: Callable[[Any], T] | str | None = None, require_lock: bool = True
    ) -> None:
        self._lock = threading.RLock() if require_lock else None
        self._attr_name: str | None = None
        self._fget: Callable[[Any], T] | None = None
        self.__doc__ = None
        if isinstance(fget, str):
            self._attr_name = fget
        elif fget is not None:
            self._bind(fget)

    def _bind(self, fget: Callable[[Any], T]) -> None:
        if not callable(fget):
            raise TypeError(f"Expected a callable or an attribute name, not {fget!r}")
        self._fget = fget
        if self._attr_name is None:
            self._attr_name = f"_{fget.__name__}"
        self.__doc__ = fget.__doc__

    def __call__(self, fget: Callable[[Any], T]) -> cachedproperty[T]:
        """Take the function to cache (when the decorator was given arguments)."""
        self._bind(fget)
        return self

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError("can't set attribute")

    def __delete__(self, instance: Any) -> None:
        raise AttributeError("can't delete attribute")

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cachedproperty[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | cachedproperty[T]:
        if instance is None:
            return self
        name = self._attr_name
        fget = self._fget
        if name is None or fget is None:
            raise TypeError("cachedproperty was never given a function to cache")
        value = getattr(instance, name, _NOT_CACHED)
        if value is not _NOT_CACHED:
            return cast("T", value)
        if self._lock is None:
            computed = fget(instance)
            setattr(instance, name, computed)
            return computed
        with self._lock:
            # Another thread may have stored it while this one waited for the lock.
            value = getattr(instance, name, _NOT_CACHED)
            if value is _NOT_CACHED:
                value = fget(instance)
                setattr(instance, name, value)
            return cast("T", value)


def disallow_when_frozen(excp_cls: type[BaseException]) -> Callable[[F], F]:
    """Decorate methods that must fail once their object is frozen.

    The decorated method raises ``excp_cls()`` instead of running while ``self.frozen`` is
    true (the object must have a ``frozen`` attribute).
    """

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.frozen:
                raise excp_cls()
            return func(self, *args, **kwargs)

        return cast("F", wrapper)

    return decorator
