"""The JSON encoding every serialising persistence backend uses for stored values.

Results, failures and metadata are persisted as JSON, never pickled. Plain JSON would turn
tuples and sets into lists (and drop non-string dict keys to strings), so a task returning
``(1, 2)`` would read back ``[1, 2]`` after a resume. This module adds a tiny, documented
layer on top of JSON so that such values round-trip unchanged:

=========================  =====================================================
Python value               JSON form
=========================  =====================================================
``None``, bool, int,       themselves (subclasses such as ``IntEnum`` are stored
float, str                 as their base type)
list                       a JSON array
tuple                      ``{"__tuple__": [items...]}``
set                        ``{"__set__": [items...]}``
frozenset                  ``{"__frozenset__": [items...]}`` (so it stays hashable
                           inside sets and as a dict key)
dict with only ``str``     a JSON object
keys, none of them a
marker
any other dict             ``{"__dict__": [[key, value], ...]}`` -- this both keeps
                           non-string keys (``{1: "a"}``, tuple keys) and escapes
                           dicts that happen to use a marker key
=========================  =====================================================

The markers are ``"__tuple__"``, ``"__set__"``, ``"__frozenset__"`` and ``"__dict__"``; a
JSON object is decoded as a marker only when it has exactly one key and that key is a
marker. Set items are written sorted when they are mutually comparable, so equal sets give
equal text. Anything else (bytes, datetimes, arbitrary objects...) raises :class:`TypeError`
naming its type at the moment it is encoded, never later when it is read back.

``dumps``/``loads`` work on text; ``to_jsonable``/``from_jsonable`` work on the plain
structures a driver with native JSON support (PostgreSQL ``JSONB``) exchanges.

Models' ``to_dict()`` returns Python values (tuples included); stores call
``dumps(model.to_dict())`` to write and ``Model.from_dict(loads(text))`` to read.
"""

from __future__ import annotations

import json
import math
import reprlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskflow import exceptions as exc
from taskflow._config import as_int

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "INT_DIGITS",
    "Limits",
    "UnstorableValue",
    "dumps",
    "dumps_checked",
    "from_jsonable",
    "limits_from_conf",
    "loads",
    "to_jsonable",
]

_TUPLE = "__tuple__"
_SET = "__set__"
_FROZENSET = "__frozenset__"
_DICT = "__dict__"
_MARKERS = frozenset((_TUPLE, _SET, _FROZENSET, _DICT))

# Values JSON holds as they are; checked by exact type first since it is the common case.
_SCALARS = (str, int, float, bool, type(None))


#: Containers nested deeper than this are refused. JSON parsers recurse once per level,
#: and so does encoding: a value that contains itself stops here too, far from the
#: interpreter's recursion limit (where a finalizer the collector runs would fail).
_MAX_DEPTH = 200


def _items(values: set[Any] | frozenset[Any], depth: int) -> list[Any]:
    try:
        ordered = sorted(values)
    except TypeError:
        # Mixed or unorderable items: any order still round-trips to an equal set.
        ordered = list(values)
    return [_jsonable(v, depth) for v in ordered]


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON types using the encoding described above.

    Args:
        obj: a value made of JSON scalars, lists, tuples, dicts, sets and frozensets.

    Returns:
        A structure of ``dict``/``list``/scalars that :func:`json.dumps` writes losslessly.

    Raises:
        TypeError: ``obj`` contains a value of a type that cannot be stored (the message
            names the type), or nests containers more than 200 deep (a value that contains
            itself does). The error is an :class:`UnstorableValue`.
    """
    return _jsonable(obj, 0)


def _jsonable(obj: Any, depth: int) -> Any:
    """:func:`to_jsonable` of a value ``depth`` containers deep."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    depth += 1
    if depth > _MAX_DEPTH:
        raise UnstorableValue(
            f"Containers nested more than {_MAX_DEPTH} deep (or one containing itself)"
            " cannot be stored as JSON"
        )
    if kind is list:
        return [_jsonable(v, depth) for v in obj]
    if kind is dict:
        if all(type(k) is str and k not in _MARKERS for k in obj):
            return {k: _jsonable(v, depth) for k, v in obj.items()}
        return {_DICT: [[_jsonable(k, depth), _jsonable(v, depth)] for k, v in obj.items()]}
    if kind is tuple:
        return {_TUPLE: [_jsonable(v, depth) for v in obj]}
    if kind is set:
        return {_SET: _items(obj, depth)}
    if kind is frozenset:
        return {_FROZENSET: _items(obj, depth)}
    # Subclasses (IntEnum, StrEnum, OrderedDict, namedtuple...) are stored as their base.
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, dict):
        return _jsonable(dict(obj), depth - 1)
    if isinstance(obj, tuple):
        return _jsonable(tuple(obj), depth - 1)
    if isinstance(obj, list):
        return _jsonable(list(obj), depth - 1)
    raise UnstorableValue(
        f"Object of type '{kind.__module__}.{kind.__qualname__}' cannot be stored as JSON"
        " (supported: None, bool, int, float, str, list, tuple, dict, set, frozenset)"
    )


class UnstorableValue(exc.StorageFailure, TypeError):
    """A value (an atom's result, an injected value...) that JSON can not hold.

    Raised before anything is written, so the stored record is left as it was. It is a
    :class:`~taskflow.exceptions.StorageFailure` (a save failed: ``except StorageFailure``
    catches it) and, as before, a ``TypeError``. Unlike an outage, retrying the same save
    fails the same way: an engine fails the atom whose value it is, and reverts.
    """

    def __str__(self) -> str:
        # The message alone: each one already says why, so the cause is not repeated.
        return Exception.__str__(self)


def _decode_object(obj: dict[str, Any]) -> Any:
    """Turn one already-decoded JSON object back into the value it encodes."""
    if len(obj) != 1:
        return obj
    key, value = next(iter(obj.items()))
    if key not in _MARKERS or type(value) is not list:
        return obj
    if key == _TUPLE:
        return tuple(value)
    if key == _SET:
        return set(value)
    if key == _FROZENSET:
        return frozenset(value)
    return dict(value)


def from_jsonable(obj: Any) -> Any:
    """Rebuild the value :func:`to_jsonable` encoded (inverse of it).

    Args:
        obj: plain JSON data, as parsed by :func:`json.loads` or a database driver.

    Returns:
        The original value, with tuples, sets, frozensets and non-string keys restored.
    """
    kind = type(obj)
    if kind is list:
        return [from_jsonable(v) for v in obj]
    if kind is dict:
        return _decode_object({k: from_jsonable(v) for k, v in obj.items()})
    return obj


def dumps(obj: Any) -> str:
    """Encode ``obj`` as JSON text (see the module docstring for the encoding).

    Raises:
        TypeError: ``obj`` contains a value that cannot be stored as JSON.
    """
    return json.dumps(to_jsonable(obj), separators=(",", ":"))


def loads(s: str | bytes) -> Any:
    """Decode JSON text written by :func:`dumps` back into the original value."""
    # object_hook runs bottom-up, so nested markers are decoded before their parents.
    return json.loads(s, object_hook=_decode_object)


# -- checked encoding: what a backend can store ----------------------------------------------

#: The most digits an integer may have: what Python's JSON parser reads back by default
#: (``sys.int_info.default_max_str_digits``). Every backend stores JSON text, which the
#: databases accept with any number of digits, so this reader's limit is the one that binds.
INT_DIGITS = 4300

# Values JSON holds as they are (exact types; subclasses take the general path).
_PLAIN = frozenset((str, int, float, bool, type(None)))
_STR = frozenset((str,))
_CONTAINERS = (list, tuple, dict, set, frozenset)
# allow_nan=False: NaN and infinities are not JSON; a database (PostgreSQL) rejects them.
_STRICT = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40


@dataclass(frozen=True, slots=True)
class Limits:
    """What one stored value may be, as a backend sets it.

    Attributes:
        max_bytes: the most bytes of JSON text one value may take (None: no limit).
        max_int_digits: the most digits an integer may have.
    """

    max_bytes: int | None = None
    max_int_digits: int = INT_DIGITS

    def capped(self, max_bytes: int) -> Limits:
        """These limits with at most ``max_bytes`` bytes (a column that holds less)."""
        if self.max_bytes is not None and self.max_bytes <= max_bytes:
            return self
        return Limits(max_bytes, self.max_int_digits)


def limits_from_conf(conf: Mapping[str, Any], default_max_bytes: int | None) -> Limits:
    """The limits a backend's configuration sets: ``max_value_bytes``, else the default.

    Raises:
        ValueError: ``max_value_bytes`` is not a positive integer.
    """
    max_bytes = as_int(conf, "max_value_bytes", default_max_bytes)
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"'max_value_bytes' must be a positive integer, not {max_bytes!r}")
    return Limits(max_bytes)


def dumps_checked(obj: Any, limits: Limits, name: str = "the value") -> str:
    """Encode ``obj`` as :func:`dumps` does, refusing what a backend could not store.

    Refused: NaN and infinities, integers of more than ``limits.max_int_digits`` digits,
    a value that contains itself (or nests too deeply), types JSON can not hold, and text
    over ``limits.max_bytes``. Nothing is written by whoever calls this before it returns.

    Args:
        obj: the value.
        limits: the backend's limits.
        name: what the value is (``"results"``), as the error message names it.

    Raises:
        UnstorableValue: the value can not be stored; the message names ``name``, where in
            it the problem is, and why.
    """
    kind = type(obj)
    try:
        if kind in _PLAIN:
            text = _STRICT(obj)
        elif (
            kind is dict
            and _MARKERS.isdisjoint(obj)
            and _STR.issuperset(map(type, obj))
            and _PLAIN.issuperset(map(type, obj.values()))
        ):
            # The common case (an atom's meta, like {"progress": 1.0}): flat, string keys
            # and plain values need no marker encoding, so skip the recursive walk. (Set
            # operations over map(): checked without a Python frame per item.)
            text = _STRICT(obj)
        else:
            text = _STRICT(to_jsonable(obj))
    except (ValueError, TypeError, RecursionError) as err:
        # UnstorableValue (a TypeError) included: find where the problem is, to name it.
        # (RecursionError only when called from deep down a stack already.)
        raise UnstorableValue(_find_problem(obj, limits, name) or f"{name}: {err}") from None
    if limits.max_bytes is not None and len(text) > limits.max_bytes:
        # ASCII text (the encoder escapes the rest), so characters are bytes.
        raise UnstorableValue(
            f"{name} takes {len(text)} bytes of JSON, over this backend's limit of"
            f" {limits.max_bytes} ('max_value_bytes')"
        )
    if len(text) > limits.max_int_digits and not _digits_enforced(limits.max_int_digits):
        # Only text this long can hold a longer integer, and the interpreter's own limit
        # (which the encoder applies) was raised past ours: look for one.
        problem = _find_problem(obj, limits, name)
        if problem:
            raise UnstorableValue(problem)
    return text


def _digits_enforced(max_digits: int) -> bool:
    limit = sys.get_int_max_str_digits()
    return 0 < limit <= max_digits


def _int_digits(value: int) -> int:
    """How many decimal digits ``value`` has (without converting it to text)."""
    magnitude = abs(value)
    if magnitude < 10:
        return 1
    digits = int(magnitude.bit_length() * math.log10(2))  # the digits, or one fewer
    return digits + 1 if magnitude >= 10**digits else digits


def _find_problem(obj: Any, limits: Limits, name: str) -> str | None:
    """Why ``obj`` can not be stored, naming where in it (None if nothing is wrong)."""
    # Depth first, children in order; ("leave", id) entries close a container, so that
    # ``open_ids`` holds exactly the containers on the current path (a cycle re-enters one).
    todo: list[tuple[Any, str, int | None]] = [(obj, name, None)]
    open_ids: set[int] = set()
    while todo:
        value, where, leaving = todo.pop()
        if leaving is not None:
            open_ids.discard(leaving)
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                return f"{where} is {value!r}, which JSON can not hold"
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > 3 * limits.max_int_digits:  # 10**n needs > 3n bits
                digits = _int_digits(value)
                if digits > limits.max_int_digits:
                    return (
                        f"{where} is an integer of {digits} digits; JSON readers parse at"
                        f" most {limits.max_int_digits}"
                    )
        elif isinstance(value, _CONTAINERS):
            ident = id(value)
            if ident in open_ids:
                return f"{where} is a container that holds it: a value can not contain itself"
            if len(open_ids) >= _MAX_DEPTH:
                return f"{name} nests containers more than {_MAX_DEPTH} levels deep"
            open_ids.add(ident)
            todo.append((None, where, ident))
            todo.extend(reversed(_children(value, where)))
        elif not isinstance(value, str) and value is not None:
            kind = type(value)
            return (
                f"{where} is of type '{kind.__module__}.{kind.__qualname__}', which can not be"
                " stored as JSON (supported: None, bool, int, float, str, list, tuple, dict,"
                " set, frozenset)"
            )
    return None


def _children(value: Any, where: str) -> list[tuple[Any, str, None]]:
    """The items of a container, each with its path (keys are checked too)."""
    if isinstance(value, dict):
        found: list[tuple[Any, str, None]] = []
        for key, item in value.items():
            found.append((key, f"{where} key {_REPR.repr(key)}", None))
            found.append((item, f"{where}[{_REPR.repr(key)}]", None))
        return found
    if isinstance(value, set | frozenset):
        return [(item, f"{where} item {_REPR.repr(item)}", None) for item in value]
    return [(item, f"{where}[{index}]", None) for index, item in enumerate(value)]
