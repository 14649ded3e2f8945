"""The JSON encoding stores use: tuples, sets and odd dict keys survive a round trip."""

from __future__ import annotations

import datetime
import enum
import json
import math
from collections import OrderedDict, namedtuple

import pytest

from taskflow import _serialization as ser
from taskflow import exceptions as exc

ROUND_TRIPS = [
    None,
    True,
    0,
    -3,
    2.5,
    "text",
    "",
    [],
    (),
    {},
    [1, "a", None],
    (1, "a", None),
    ((1, 2), [3, (4, 5)]),
    {"t": (1, 2), "l": [1, 2]},
    {1: "int key", (2, 3): "tuple key", None: "none key", 2.5: "float key"},
    {1, 2, 3},
    frozenset({"a", "b"}),
    {frozenset({1}), frozenset({2, 3})},
    set(),
    {"__tuple__": [1, 2]},
    {"__set__": "x", "other": 1},
    {"__dict__": []},
    [{"__frozenset__": [1]}],
    {"nested": {"deeper": [({"x": (1,)},)]}},
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=repr)
def test_dumps_loads_round_trip_keeps_types(value):
    back = ser.loads(ser.dumps(value))
    assert back == value
    assert _shape(back) == _shape(value)


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=repr)
def test_jsonable_round_trip_without_text(value):
    plain = ser.to_jsonable(value)
    # The plain form holds only what json holds natively (dicts with str keys, lists...).
    assert json.loads(json.dumps(plain)) == plain
    back = ser.from_jsonable(plain)
    assert back == value
    assert _shape(back) == _shape(value)


def _shape(value):
    """A structure naming every container type, to tell (1, 2) from [1, 2]."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), _shape(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_shape(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(repr(_shape(v)) for v in value))
    return type(value).__name__


def test_encoding_is_the_documented_one():
    assert ser.to_jsonable((1, [2, (3,)])) == {"__tuple__": [1, [2, {"__tuple__": [3]}]]}
    assert ser.to_jsonable({3, 1, 2}) == {"__set__": [1, 2, 3]}
    assert ser.to_jsonable(frozenset({"b", "a"})) == {"__frozenset__": ["a", "b"]}
    assert ser.to_jsonable({1: "a"}) == {"__dict__": [[1, "a"]]}
    assert ser.to_jsonable({"__tuple__": [1]}) == {"__dict__": [["__tuple__", [1]]]}
    assert json.loads(ser.dumps({"a": (1,)})) == {"a": {"__tuple__": [1]}}


def test_plain_json_is_read_unchanged():
    text = '{"a": [1, 2], "b": {"c": null}, "__tuple__": 1}'
    assert ser.loads(text) == json.loads(text)
    # A marker key with a non-list value is not a marker.
    assert ser.loads('{"__tuple__": 5}') == {"__tuple__": 5}


def test_sets_with_unorderable_items_still_round_trip():
    value = {1, "a", (2, "b")}
    assert ser.loads(ser.dumps(value)) == value


def test_equal_sets_give_equal_text():
    assert ser.dumps({3, 1, 2}) == ser.dumps({2, 3, 1})


def test_subclasses_are_stored_as_their_base_type():
    class Colour(enum.IntEnum):
        RED = 1

    Point = namedtuple("Point", "x y")
    back = ser.loads(ser.dumps([Colour.RED, Point(1, 2), OrderedDict(a=1)]))
    assert back == [1, (1, 2), {"a": 1}]
    assert type(back[0]) is int
    assert type(back[1]) is tuple
    assert type(back[2]) is dict


def test_special_floats_round_trip():
    back = ser.loads(ser.dumps([math.inf, -math.inf, math.nan]))
    assert back[0] == math.inf
    assert back[1] == -math.inf
    assert math.isnan(back[2])


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"bytes", "builtins.bytes"),
        (datetime.date(2020, 1, 1), "datetime.date"),
        ([1, {"x": object()}], "builtins.object"),
        ({(1, 2): 1j}, "builtins.complex"),
    ],
)
def test_unsupported_values_raise_type_error_naming_the_type(value, type_name):
    with pytest.raises(TypeError, match=type_name):
        ser.dumps(value)
    with pytest.raises(TypeError, match=type_name):
        ser.to_jsonable(value)


def test_unstorable_value_is_a_storage_failure_and_still_a_type_error():
    # ``except StorageFailure`` around a save catches it, as upstream users write; code that
    # caught the TypeError keeps working.
    with pytest.raises(exc.StorageFailure, match=r"builtins\.object") as caught:
        ser.dumps(object())
    assert isinstance(caught.value, ser.UnstorableValue)
    assert isinstance(caught.value, TypeError)
