"""Targeted graph flows: narrowing to a target and its transitive predecessors."""

from __future__ import annotations

import pytest

from taskflow import task
from taskflow.patterns import graph_flow as gf


class Noop(task.Task):
    def execute(self, *args, **kwargs):
        return None


def make(name, provides=None, requires=None):
    return Noop(name=name, provides=provides, requires=requires)


def order(f):
    return [node.name for node, _ in f.iter_nodes()]


def pairs(f):
    return [(u.name, v.name) for u, v, _ in f.iter_links()]


@pytest.fixture
def built():
    a = make("a", provides="x", requires="ext")
    b = make("b", requires="x", provides="y")
    c = make("c", requires="y")
    d = make("d", provides="w")
    e = make("e", requires="w")
    return gf.TargetedFlow("tf").add(a, b, c, d, e), (a, b, c, d, e)


def test_without_target_it_is_a_graph_flow(built):
    f, _ = built
    assert isinstance(f, gf.Flow)
    assert len(f) == 5
    assert order(f) == ["a", "d", "b", "e", "c"]
    assert str(f) == '"graph_flow.TargetedFlow: tf(len=5)"'
    assert f.requires == frozenset({"ext"})


def test_target_limits_to_predecessors(built):
    f, (a, b, _c, _d, e) = built
    assert f.set_target(b) is None
    assert len(f) == 2
    assert order(f) == ["a", "b"]
    assert list(f) == [a, b]
    assert pairs(f) == [("a", "b")]
    assert f.provides == frozenset({"x", "y"})
    assert f.requires == frozenset({"ext"})
    assert str(f) == '"graph_flow.TargetedFlow: tf(len=2)"'

    f.set_target(e)
    assert order(f) == ["d", "e"]
    assert pairs(f) == [("d", "e")]
    assert f.provides == frozenset({"w"})
    assert f.requires == frozenset()


def test_adding_keeps_the_target(built):
    f, (_a, b, *_rest) = built
    f.set_target(b)
    f.add(make("f", requires="y"))
    assert order(f) == ["a", "b"]
    f.reset_target()
    assert len(f) == 6


def test_links_made_after_targeting_are_followed(built):
    f, (_a, b, _c, d, _e) = built
    f.set_target(b)
    f.link(d, b)
    assert order(f) == ["a", "d", "b"]
    assert sorted(pairs(f)) == [("a", "b"), ("d", "b")]


def test_reset_target(built):
    f, (_a, b, *_rest) = built
    f.set_target(b)
    assert f.reset_target() is None
    assert len(f) == 5
    assert order(f) == ["a", "d", "b", "e", "c"]


def test_unknown_target(built):
    f, _ = built
    with pytest.raises(ValueError) as info:
        f.set_target(make("zz"))
    assert str(info.value) == """Node '"zz==1.0"' not found"""
    assert len(f) == 5
