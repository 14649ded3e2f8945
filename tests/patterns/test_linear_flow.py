"""Linear flows: insertion order, consecutive links, requirements left unmet by earlier children."""

from __future__ import annotations

import pytest

from taskflow import flow, retry, task
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf


class Noop(task.Task):
    def execute(self, *args, **kwargs):
        return None


def make(name, provides=None, requires=None):
    return Noop(name=name, provides=provides, requires=requires)


def names(nodes):
    return [node.name for node in nodes]


def test_link_metadata_keys():
    assert flow.LINK_INVARIANT == "invariant"
    assert flow.LINK_MANUAL == "manual"
    assert flow.LINK_RETRY == "retry"
    assert flow.LINK_REASONS == "reasons"
    assert flow.LINK_DECIDER == "decider"
    assert flow.LINK_DECIDER_DEPTH == "decider_depth"


def test_base_flow_is_abstract():
    with pytest.raises(TypeError):
        flow.Flow("f")  # type: ignore[abstract]


def test_add_returns_flow_and_keeps_order():
    a, b, c = make("a"), make("b"), make("c")
    f = lf.Flow("f")
    assert f.add(a, b) is f
    f.add(c)
    assert len(f) == 3
    assert list(f) == [a, b, c]
    assert f.name == "f"
    assert f.retry is None


@pytest.mark.parametrize(
    "pattern",
    [lf.Flow, uf.Flow, gf.Flow, gf.TargetedFlow],
    ids=["linear", "unordered", "graph", "targeted"],
)
def test_adding_none_is_refused_at_once(pattern):
    # Upstream TaskFlow raises ValueError at add(); accepting None would only fail later, at
    # compile time, far from the mistake. Nothing of the call is added.
    a = make("a")
    f = pattern("f").add(a)
    with pytest.raises(ValueError, match="None can not be added to flow 'f'"):
        f.add(None)
    with pytest.raises(ValueError, match="None can not be added"):
        f.add(make("b"), None)
    assert list(f) == [a]


def test_readding_a_child_is_a_noop():
    a, b = make("a"), make("b")
    f = lf.Flow("f").add(a, b, a)
    f.add(b)
    assert list(f) == [a, b]


def test_nodes_and_links():
    a, b, c = make("a"), make("b"), make("c")
    f = lf.Flow("f").add(a, b, c)
    assert list(f.iter_nodes()) == [(a, {}), (b, {}), (c, {})]
    assert list(f.iter_links()) == [(a, b, {"invariant": True}), (b, c, {"invariant": True})]


def test_no_links_below_two_children():
    assert list(lf.Flow("e").iter_links()) == []
    assert list(lf.Flow("one").add(make("a")).iter_links()) == []


def test_requires_are_what_earlier_children_do_not_provide():
    f = lf.Flow("f").add(
        make("a", provides="x", requires="w"),
        make("b", provides="y", requires=["x", "z"]),
        make("c", requires=["y", "late"]),
        make("d", provides="late"),
    )
    assert f.requires == frozenset({"w", "z", "late"})
    assert f.provides == frozenset({"x", "y", "late"})
    assert isinstance(f.requires, frozenset)
    assert isinstance(f.provides, frozenset)


def test_a_child_does_not_satisfy_itself():
    f = lf.Flow("f").add(make("a", provides="x", requires="x"))
    assert f.requires == frozenset({"x"})


def test_retry_requires_and_provides():
    r = retry.Times(2, provides="attempt", requires="budget")
    f = lf.Flow("f", retry=r).add(
        make("a", provides="budget", requires="attempt"), make("b", requires="other")
    )
    # The retry runs first: children can use its value, but cannot feed it.
    assert f.requires == frozenset({"budget", "other"})
    assert f.provides == frozenset({"attempt", "budget"})
    assert f.retry is r


def test_unnamed_retry_is_named_after_flow():
    r = retry.Times(2)
    assert r.name is None
    lf.Flow("deploy", retry=r)
    assert r.name == "deploy_retry"
    # Already named now: attaching it elsewhere keeps the name.
    uf.Flow("other", retry=r)
    assert r.name == "deploy_retry"


def test_named_retry_keeps_its_name():
    r = retry.Times(2, name="mine")
    gf.Flow("g", retry=r)
    assert r.name == "mine"


def test_nested_flows_are_single_children():
    a = make("a", provides="x")
    inner = lf.Flow("inner").add(make("b", requires=["x", "y"], provides="z"), make("c"))
    outer = lf.Flow("outer").add(make("p", provides="y"), inner, a)
    assert len(outer) == 3
    assert names(outer) == ["p", "inner", "a"]
    links = list(outer.iter_links())
    assert [(u.name, v.name) for u, v, _ in links] == [("p", "inner"), ("inner", "a")]
    # "x" comes from a child added after the nested flow: still required.
    assert outer.requires == frozenset({"x"})
    assert outer.provides == frozenset({"x", "y", "z"})


def test_str():
    f = lf.Flow("f").add(make("a"), make("b"))
    assert str(f) == '"linear_flow.Flow: f(len=2)"'
    assert str(lf.Flow("empty")) == '"linear_flow.Flow: empty(len=0)"'


def test_str_of_a_user_subclass_names_its_module():
    class Custom(lf.Flow):
        pass

    text = str(Custom("c"))
    assert text.startswith(f'"{__name__}.')
    assert text.endswith('Custom: c(len=0)"')
