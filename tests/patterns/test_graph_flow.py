"""Graph flows: link inference, ambiguity and cycle errors, manual links and deciders."""

from __future__ import annotations

import pytest

from taskflow import exceptions, retry, task
from taskflow.deciders import Depth
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf

CYCLE = (
    "No path through the node(s) in the graph produces an ordering that will allow for"
    " logical edge traversal"
)


class Noop(task.Task):
    def execute(self, *args, **kwargs):
        return None


def make(name, provides=None, requires=None):
    return Noop(name=name, provides=provides, requires=requires)


def links(f):
    return [(u.name, v.name, meta) for u, v, meta in f.iter_links()]


def order(f):
    return [node.name for node, _ in f.iter_nodes()]


def never(history):
    return False


# -- adding and inference -------------------------------------------------------------


def test_add_infers_links_from_symbols():
    a, b = make("a", provides="x"), make("b", requires=["x", "y"], provides="z")
    f = gf.Flow("g")
    assert f.add(b, a) is f
    assert len(f) == 2
    assert links(f) == [("a", "b", {"reasons": {"x"}})]
    assert f.provides == frozenset({"x", "z"})
    assert f.requires == frozenset({"y"})


def test_one_link_carries_every_reason():
    f = gf.Flow("g").add(make("a", provides=["x", "y"]), make("b", requires=["x", "y"]))
    assert links(f) == [("a", "b", {"reasons": {"x", "y"}})]


def test_iteration_is_topological_generation_by_generation():
    n1, n2, n3 = make("n1", requires="x"), make("n2", provides="x"), make("n3")
    f = gf.Flow("g").add(n1, n3, n2)
    assert order(f) == ["n3", "n2", "n1"]
    assert list(f) == [n3, n2, n1]
    assert all(meta == {} for _, meta in f.iter_nodes())


def test_links_are_grouped_by_source_in_insertion_order():
    a, b, c = (
        make("a", provides="x"),
        make("b", requires="x", provides="y"),
        make("c", requires="y"),
    )
    d, e = make("d", provides="w"), make("e", requires="w")
    f = gf.Flow("g").add(a, b, c, d, e)
    assert order(f) == ["a", "d", "b", "e", "c"]
    assert [(u, v) for u, v, _ in links(f)] == [("a", "b"), ("b", "c"), ("d", "e")]


def test_readding_a_child_is_a_noop():
    a, b = make("a", provides="x"), make("b", requires="x")
    f = gf.Flow("g").add(b, resolve_existing=False)
    f.add(a, resolve_existing=False)
    f.add(b)
    f.add(a, b)
    assert len(f) == 2
    assert links(f) == []


def test_later_provider_is_linked_to_existing_requirer():
    b = make("b", requires="x")
    f = gf.Flow("g").add(b)
    assert f.requires == frozenset({"x"})
    f.add(make("a", provides="x"))
    assert links(f) == [("a", "b", {"reasons": {"x"}})]
    assert f.requires == frozenset()


def test_resolution_switches():
    a, b = make("a", provides="x"), make("b", requires="x")
    f = gf.Flow("g").add(a, b, resolve_requires=False)
    assert links(f) == []
    assert f.requires == frozenset({"x"})

    f = gf.Flow("g").add(make("c", requires="x"))
    f.add(make("p", provides="x"), resolve_existing=False)
    assert links(f) == []

    f = gf.Flow("g").add(make("c", requires="x"))
    f.add(make("p", provides="x"), resolve_requires=False)
    assert links(f) == [("p", "c", {"reasons": {"x"}})]


def test_within_one_call_only_resolving_children_are_offered_to_later_ones():
    # A requirer added by the same call is linked only if it resolved its requirements.
    assert links(gf.Flow("g").add(make("c", requires="x"), make("a", provides="x"))) == [
        ("a", "c", {"reasons": {"x"}})
    ]
    f = gf.Flow("g").add(make("c", requires="x"), make("a", provides="x"), resolve_requires=False)
    assert links(f) == []


def test_only_the_first_new_provider_feeds_an_existing_requirer():
    f = gf.Flow("g").add(make("b", requires="x"))
    f.add(make("p1", provides="x"), make("p2", provides="x"))
    assert links(f) == [("p1", "b", {"reasons": {"x"}})]
    f.add(make("p3", provides="x"))
    assert len(f) == 4
    assert links(f) == [("p1", "b", {"reasons": {"x"}})]


def test_requirer_first_then_two_providers_in_one_call_is_not_ambiguous():
    f = gf.Flow("g").add(make("c", requires="x"), make("a", provides="x"), make("b", provides="x"))
    assert links(f) == [("a", "c", {"reasons": {"x"}})]


def test_symbol_from_an_ancestor_needs_no_new_link():
    a, b, c = make("a", provides="x"), make("b"), make("c", requires="x")
    f = gf.Flow("g").add(a, b, c, resolve_requires=False, resolve_existing=False)
    assert f.requires == frozenset({"x"})
    f.link(a, b).link(b, c)
    assert f.requires == frozenset()
    f.add(make("p2", provides="x"))
    assert [(u, v) for u, v, _ in links(f)] == [("a", "b"), ("b", "c")]


def test_a_child_never_satisfies_itself():
    f = gf.Flow("g").add(make("s", provides="x", requires="x"))
    assert links(f) == []
    assert f.requires == frozenset({"x"})
    f = gf.Flow("g").add(make("a", provides="x"))
    f.add(make("s", provides="x", requires="x"))
    assert links(f) == [("a", "s", {"reasons": {"x"}})]


def test_retry_provides_satisfy_children_without_links():
    r = retry.Times(2, provides="x")
    f = gf.Flow("g", r).add(make("p", provides="x"), make("c", requires="x"))
    assert r.name == "g_retry"
    assert links(f) == []
    assert f.requires == frozenset()
    assert f.provides == frozenset({"x"})


def test_retry_requires_stay_required():
    # Upstream 6.5.0 links "p" to the retry here, making the retry a child node (len 2);
    # we deliberately keep the retry out of the graph: it runs before every child.
    f = gf.Flow("g", retry.Times(2, requires="z")).add(make("p", provides="z"))
    assert f.requires == frozenset({"z"})
    assert len(f) == 1
    assert links(f) == []


def test_nested_flows_are_nodes():
    inner = lf.Flow("inner").add(make("i", requires="q", provides="r"))
    p, z = make("p", provides="q"), make("z", requires="r")
    f = gf.Flow("g").add(p, inner, z)
    assert links(f) == [("p", "inner", {"reasons": {"q"}}), ("inner", "z", {"reasons": {"r"}})]
    assert f.requires == frozenset()
    assert f.provides == frozenset({"q", "r"})


def test_nested_flow_filled_after_being_added_is_seen():
    inner = lf.Flow("inner")
    f = gf.Flow("g").add(inner)
    inner.add(make("p", provides="x"))
    f.add(make("c", requires="x"))
    assert links(f) == [("inner", "c", {"reasons": {"x"}})]
    assert f.provides == frozenset({"x"})


# -- ambiguity and cycles ---------------------------------------------------------------


def test_several_providers_are_ambiguous():
    f = gf.Flow("g").add(make("b", provides="x"), make("a", provides="x"))
    with pytest.raises(exceptions.AmbiguousDependency) as info:
        f.add(make("c", requires="x"))
    assert str(info.value) == (
        "Resolution error detected when adding 'c', multiple providers ['a', 'b'] found"
        " for required symbol 'x'"
    )
    assert len(f) == 2


def test_ambiguity_names_nested_flows_and_undoes_the_whole_call():
    f = gf.Flow("g")
    with pytest.raises(exceptions.AmbiguousDependency) as info:
        f.add(
            make("b", provides="x"),
            lf.Flow("zed").add(make("a", provides="x")),
            make("c", requires="x"),
        )
    assert "multiple providers ['b', 'zed']" in str(info.value)
    assert len(f) == 0
    assert links(f) == []


def test_cycle_from_inference_is_refused_and_undone():
    a, b = make("a", provides="x", requires="y"), make("b", provides="y", requires="x")
    f = gf.Flow("g")
    with pytest.raises(exceptions.DependencyFailure) as info:
        f.add(a, b)
    assert type(info.value) is exceptions.DependencyFailure
    assert str(info.value) == CYCLE
    assert len(f) == 0

    f.add(a)
    with pytest.raises(exceptions.DependencyFailure):
        f.add(b)
    assert list(f) == [a]
    assert links(f) == []
    assert f.requires == frozenset({"y"})


def test_ambiguity_later_in_the_call_is_reported_before_a_cycle():
    f = gf.Flow("g")
    with pytest.raises(exceptions.AmbiguousDependency):
        f.add(
            make("a", provides="x", requires="y"),
            make("b", provides="y", requires="x"),
            make("c", provides="q"),
            make("d", provides="q"),
            make("e", requires="q"),
        )
    assert len(f) == 0


def test_failed_add_leaves_existing_requirers_unlinked():
    b = make("b", requires="x")
    f = gf.Flow("g").add(b)
    with pytest.raises(exceptions.AmbiguousDependency):
        f.add(
            make("p", provides="x"),
            make("q", provides="y"),
            make("r", provides="y"),
            make("s", requires="y"),
        )
    assert list(f) == [b]
    assert f.requires == frozenset({"x"})
    # The undone provider did not leave a trace: a new one is linked normally.
    f.add(make("p2", provides="x"))
    assert links(f) == [("p2", "b", {"reasons": {"x"}})]


# -- manual links -------------------------------------------------------------------------


def test_manual_link():
    a, b = make("a"), make("b")
    f = gf.Flow("g").add(a, b)
    assert f.link(a, b) is f
    assert links(f) == [("a", "b", {"manual": True})]
    assert order(f) == ["a", "b"]


def test_link_errors_in_order():
    a, b, x, y = make("a"), make("b"), make("x"), make("y")
    f = gf.Flow("g").add(a, b)
    with pytest.raises(ValueError, match=r"""^Node '"x==1.0"' not found to link from$"""):
        f.link(x, y)
    with pytest.raises(ValueError, match=r"""^Node '"x==1.0"' not found to link to$"""):
        f.link(a, x)
    with pytest.raises(ValueError, match=r"^Decider boolean callback must be callable$"):
        f.link(a, b, decider=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Decider boolean callback must be callable$"):
        f.link(a, a, decider=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Decider depth requires a decider"):
        f.link(a, b, decider_depth="all")
    with pytest.raises(ValueError, match=r"^Unexpected decider depth value"):
        f.link(a, b, decider=never, decider_depth="bad")
    with pytest.raises(TypeError, match=r"^Unexpected desired depth type"):
        f.link(a, b, decider=never, decider_depth=3)  # type: ignore[arg-type]
    assert links(f) == []


def test_link_not_found_message_for_a_flow():
    f = gf.Flow("g").add(make("a"))
    with pytest.raises(ValueError) as info:
        f.link(next(iter(f)), lf.Flow("zz"))
    assert str(info.value) == """Node '"linear_flow.Flow: zz(len=0)"' not found to link to"""


def test_links_closing_a_cycle_are_refused():
    a, b, c = make("a"), make("b"), make("c")
    f = gf.Flow("g").add(a, b, c)
    with pytest.raises(exceptions.DependencyFailure, match=r"^No path through the node\(s\)"):
        f.link(a, a)
    f.link(a, b).link(b, c)
    with pytest.raises(exceptions.DependencyFailure, match=r"^No path through the node\(s\)"):
        f.link(c, a)
    with pytest.raises(exceptions.DependencyFailure):
        f.link(b, a)
    assert [(u, v) for u, v, _ in links(f)] == [("a", "b"), ("b", "c")]
    # Linking again along the existing direction is fine.
    f.link(a, c)
    assert order(f) == ["a", "b", "c"]


def test_decider_metadata():
    a, b, c = make("a"), make("b"), make("c")
    f = gf.Flow("g").add(a, b, c)
    f.link(a, b, decider=never)
    f.link(b, c, decider=never, decider_depth="flow")
    assert links(f) == [
        ("a", "b", {"manual": True, "decider": never}),
        ("b", "c", {"manual": True, "decider": never, "decider_depth": Depth.FLOW}),
    ]
    assert links(f)[1][2]["decider_depth"] is Depth.FLOW


def test_relinking_updates_metadata():
    a, b = make("a", provides="x"), make("b", requires="x")
    f = gf.Flow("g").add(a, b)

    def other(history):
        return True

    f.link(a, b, decider=never)
    assert links(f) == [("a", "b", {"reasons": {"x"}, "manual": True, "decider": never})]
    f.link(a, b, decider=other, decider_depth=Depth.ATOM)
    f.link(a, b)
    assert links(f) == [
        (
            "a",
            "b",
            {"reasons": {"x"}, "manual": True, "decider": other, "decider_depth": Depth.ATOM},
        )
    ]


def test_decider_to_a_nested_flow():
    b, inner = make("b"), lf.Flow("inner")
    f = gf.Flow("g").add(b, inner)
    f.link(b, inner, decider=never, decider_depth=Depth.NEIGHBORS)
    assert links(f) == [
        ("b", "inner", {"manual": True, "decider": never, "decider_depth": Depth.NEIGHBORS})
    ]


def test_str():
    f = gf.Flow("g").add(make("a"), make("b"))
    assert str(f) == '"graph_flow.Flow: g(len=2)"'


# -- size -----------------------------------------------------------------------------------


def test_large_chain_with_fan_in():
    size = 5000
    chain = [
        make(f"t{i}", provides=f"o{i}", requires=f"o{i - 1}" if i else None) for i in range(size)
    ]
    fan_in = make("fan", requires=[f"o{i}" for i in range(size)])
    f = gf.Flow("big")
    for t in chain:
        f.add(t)
    f.add(fan_in)
    edges = list(f.iter_links())
    assert len(edges) == 2 * size - 1
    nodes = [node for node, _ in f.iter_nodes()]
    assert nodes == [*chain, fan_in]
    assert f.requires == frozenset()
    assert sum(1 for u, v, _ in edges if v is fan_in) == size
