"""Decider depths: members, case-insensitive translation and picking the widest."""

from __future__ import annotations

import pytest

from taskflow import deciders
from taskflow.deciders import Depth


def test_members_widest_first():
    assert list(Depth) == [Depth.ALL, Depth.FLOW, Depth.NEIGHBORS, Depth.ATOM]
    assert [d.value for d in Depth] == ["ALL", "FLOW", "NEIGHBORS", "ATOM"]
    assert Depth.FLOW == "FLOW"
    assert isinstance(Depth.ATOM, str)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("all", Depth.ALL),
        ("Flow", Depth.FLOW),
        ("neighbors", Depth.NEIGHBORS),
        ("ATOM", Depth.ATOM),
        (Depth.FLOW, Depth.FLOW),
    ],
)
def test_translate(given, expected):
    assert Depth.translate(given) is expected


def test_translate_unknown_name():
    with pytest.raises(ValueError) as info:
        Depth.translate("bad")
    assert str(info.value) == (
        "Unexpected decider depth value, one of ['ALL', 'ATOM', 'FLOW', 'NEIGHBORS']"
        " (case-insensitive) is expected and not 'bad'"
    )


@pytest.mark.parametrize("given", [1, None, 2.5, b"all"])
def test_translate_non_string(given):
    with pytest.raises(TypeError) as info:
        Depth.translate(given)
    assert str(info.value) == (
        f"Unexpected desired depth type, string type expected, not {type(given)}"
    )


def test_pick_widest():
    assert deciders.pick_widest([Depth.ATOM, Depth.FLOW]) is Depth.FLOW
    assert deciders.pick_widest([Depth.NEIGHBORS, Depth.ATOM]) is Depth.NEIGHBORS
    assert deciders.pick_widest([Depth.ATOM, Depth.ALL, Depth.FLOW]) is Depth.ALL
    assert deciders.pick_widest(iter([Depth.ATOM])) is Depth.ATOM


def test_pick_widest_rejects_empty_and_unknown():
    with pytest.raises(ValueError):
        deciders.pick_widest([])
    with pytest.raises(ValueError):
        deciders.pick_widest(["flow", "atom"])  # type: ignore[list-item]
