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
from typing import Any

from taskflow import exceptions as exc

__all__ = ["UnstorableValue", "dumps", "from_jsonable", "loads", "to_jsonable"]

_TUPLE = "__tuple__"
_SET = "__set__"
_FROZENSET = "__frozenset__"
_DICT = "__dict__"
_MARKERS = frozenset((_TUPLE, _SET, _FROZENSET, _DICT))

# Values JSON holds as they are; checked by exact type first since it is the common case.
_SCALARS = (str, int, float, bool, type(None))


def _items(values: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        ordered = sorted(values)
    except TypeError:
        # Mixed or unorderable items: any order still round-trips to an equal set.
        ordered = list(values)
    return [to_jsonable(v) for v in ordered]


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON types using the encoding described above.

    Args:
        obj: a value made of JSON scalars, lists, tuples, dicts, sets and frozensets.

    Returns:
        A structure of ``dict``/``list``/scalars that :func:`json.dumps` writes losslessly.

    Raises:
        TypeError: ``obj`` contains a value of a type that cannot be stored (the message
            names the type).
    """
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if kind is list:
        return [to_jsonable(v) for v in obj]
    if kind is dict:
        if all(type(k) is str and k not in _MARKERS for k in obj):
            return {k: to_jsonable(v) for k, v in obj.items()}
        return {_DICT: [[to_jsonable(k), to_jsonable(v)] for k, v in obj.items()]}
    if kind is tuple:
        return {_TUPLE: [to_jsonable(v) for v in obj]}
    if kind is set:
        return {_SET: _items(obj)}
    if kind is frozenset:
        return {_FROZENSET: _items(obj)}
    # Subclasses (IntEnum, StrEnum, OrderedDict, namedtuple...) are stored as their base.
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, dict):
        return to_jsonable(dict(obj))
    if isinstance(obj, tuple):
        return to_jsonable(tuple(obj))
    if isinstance(obj, list):
        return to_jsonable(list(obj))
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
