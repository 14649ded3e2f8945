"""``dumps_checked``: what a backend refuses to store, and why, before anything is written."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from taskflow import _serialization as ser


def _cycle() -> list[Any]:
    value: list[Any] = [1]
    value.append({"again": value})
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "^results is nan, which JSON can not hold$"),
        ([1, {"x": float("inf")}], r"^results\[1\]\['x'\] is inf"),
        ({float("-inf"): 1}, "^results key -inf is -inf"),
        (10**5000, "^results is an integer of 5001 digits; JSON readers parse at most 4300$"),
        ((1, -(10**4300)), r"^results\[1\] is an integer of 4301 digits"),
        (_cycle(), r"^results\[1\]\['again'\] is a container that holds it"),
        ([object()], r"^results\[0\] is of type 'builtins.object'"),
        ({"k": {1, b"x"}}, r"^results\['k'\] item b'x' is of type 'builtins.bytes'"),
        ("x" * 101, r"^results takes 103 bytes of JSON, over this backend's limit of 100"),
    ],
    ids=["nan", "inf", "inf-key", "huge-int", "long-int", "cycle", "object", "bytes", "size"],
)
def test_what_can_not_be_stored_is_named_with_where_and_why(value: Any, message: str) -> None:
    with pytest.raises(ser.UnstorableValue, match=message):
        ser.dumps_checked(value, ser.Limits(max_bytes=100), "results")


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    inner = value
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return value


def test_deep_nesting_is_refused() -> None:
    assert ser.dumps_checked(_nested(200), ser.Limits()) == "[" * 200 + "]" * 200
    with pytest.raises(ser.UnstorableValue, match=r"^the value nests .* more than 200 levels"):
        ser.dumps_checked(_nested(201), ser.Limits())
    with pytest.raises(ser.UnstorableValue, match="more than 200 deep"):
        ser.dumps(_nested(5000))


def test_a_cycle_is_refused_far_from_the_recursion_limit() -> None:
    # At the limit, a finalizer the collector happens to run (a dropped backend closing its
    # pool) would fail with RecursionError and never release what it holds.
    deepest = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            depth = 0
            while frame is not None:
                depth, frame = depth + 1, frame.f_back
            deepest[0] = max(deepest[0], depth)

    cycle: list[Any] = [1]
    cycle.append({"again": cycle})
    sys.setprofile(profile)
    try:
        with pytest.raises(ser.UnstorableValue, match=r"\[1\]\['again'\] is a container"):
            ser.dumps_checked(cycle, ser.Limits(), "results")
    finally:
        sys.setprofile(None)
    assert deepest[0] < sys.getrecursionlimit() - 300


@pytest.mark.parametrize(
    "value",
    [None, 0, -(10**4299) + 1, 1.5, "text", [1, (2, 3)], {"a": {1, 2}}, {1: "one"}, {"p": 1.0}],
    ids=lambda value: type(value).__name__,
)
def test_storable_values_encode_as_dumps_does(value: Any) -> None:
    assert ser.dumps_checked(value, ser.Limits(max_bytes=10_000)) == ser.dumps(value)


def test_a_shared_value_is_not_a_cycle() -> None:
    shared = [1, 2]
    assert ser.dumps_checked([shared, {"s": shared}], ser.Limits()) == '[[1,2],{"s":[1,2]}]'


def test_long_integers_are_refused_even_when_the_interpreter_allows_them() -> None:
    # Written here, the value could not be read back by an interpreter at the default limit.
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        with pytest.raises(ser.UnstorableValue, match=r"\[0\] is an integer of 4301 digits"):
            ser.dumps_checked([10**4300], ser.Limits())
    finally:
        sys.set_int_max_str_digits(old)


def test_limits_come_from_max_value_bytes() -> None:
    assert ser.limits_from_conf({}, 1000) == ser.Limits(1000)
    assert ser.limits_from_conf({}, None) == ser.Limits(None)
    assert ser.limits_from_conf({"max_value_bytes": "2048"}, 1000) == ser.Limits(2048)
    for bad in (0, -1, "lots", 1.5):
        with pytest.raises(ValueError, match="max_value_bytes"):
            ser.limits_from_conf({"max_value_bytes": bad}, 1000)
    assert ser.Limits(1000).capped(500) == ser.Limits(500)
    assert ser.Limits(100).capped(500) == ser.Limits(100)
    assert ser.Limits(None).capped(500) == ser.Limits(500)
