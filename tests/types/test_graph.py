"""Graph wrappers over networkx."""

from __future__ import annotations

import networkx as nx
import pytest

from taskflow.types import graph
from taskflow.types.graph import DiGraph, Graph, OrderedDiGraph, OrderedGraph, merge_graphs


def sample() -> DiGraph:
    g = DiGraph(name="x")
    g.add_node("a", meta=1)
    g.add_edge("a", "b", reason="r")
    g.add_edge("b", "c")
    g.add_node("z")
    return g


def test_types_are_networkx_graphs():
    assert issubclass(DiGraph, nx.DiGraph)
    assert issubclass(OrderedDiGraph, DiGraph)
    assert issubclass(Graph, nx.Graph)
    assert not issubclass(Graph, nx.DiGraph)
    assert issubclass(OrderedGraph, Graph)


def test_pformat_directed():
    assert sample().pformat().splitlines() == [
        "Name: x",
        "Type: DiGraph",
        "Frozen: False",
        "Density: 0.167",
        "Nodes: 4",
        "  - a ({'meta': 1})",
        "  - b",
        "  - c",
        "  - z",
        "Edges: 2",
        "  a -> b ({'reason': 'r'})",
        "  b -> c",
        "Cycles: 0",
    ]


def test_pformat_lists_cycles():
    g = DiGraph()
    g.add_edges_from([(1, 2), (2, 1)])
    lines = g.pformat().splitlines()
    assert lines[0] == "Name: "
    assert "Cycles: 1" in lines
    assert lines[-1] in ("  1 --> 2 --> 1", "  2 --> 1 --> 2")


def test_pformat_undirected():
    g = OrderedGraph()
    g.add_edge(1, 2)
    assert g.pformat().splitlines() == [
        "Name: ",
        "Type: OrderedGraph",
        "Frozen: False",
        "Density: 1.000",
        "Nodes: 2",
        "  - 1",
        "  - 2",
        "Edges: 1",
        "  1 <-> 2",
    ]


def test_freeze_makes_the_graph_read_only_in_place():
    g = sample()
    frozen = g.freeze()
    assert frozen is g
    assert nx.is_frozen(g)
    assert "Frozen: True" in g.pformat()
    with pytest.raises(nx.NetworkXError, match="Frozen graph can't be modified"):
        g.add_node("q")
    with pytest.raises(nx.NetworkXError):
        g.add_edge("q", "r")
    with pytest.raises(nx.NetworkXError):
        g.remove_node("a")
    thawed = g.copy()
    thawed.add_node("q")
    assert "q" in thawed
    assert type(thawed) is DiGraph


def test_undirected_freeze():
    g = Graph()
    g.add_edge(1, 2)
    assert g.freeze() is g
    with pytest.raises(nx.NetworkXError):
        g.add_edge(2, 3)


def test_fresh_copy_is_empty_and_same_type():
    for cls in (DiGraph, OrderedDiGraph, Graph, OrderedGraph):
        g = cls()
        g.add_edge(1, 2)
        fresh = g.fresh_copy()
        assert type(fresh) is cls
        assert len(fresh) == 0


def test_topological_sort_and_acyclic():
    g = sample()
    order = list(g.topological_sort())
    assert sorted(order) == ["a", "b", "c", "z"]
    assert order.index("a") < order.index("b") < order.index("c")
    assert g.is_directed_acyclic()
    g.add_edge("c", "a")
    assert not g.is_directed_acyclic()
    with pytest.raises(nx.NetworkXUnfeasible):
        list(g.topological_sort())


def test_no_predecessors_and_successors():
    g = sample()
    assert list(g.no_predecessors_iter()) == ["a", "z"]
    assert list(g.no_successors_iter()) == ["c", "z"]


def test_bfs_predecessors_nearest_first_each_once():
    g = DiGraph()
    g.add_edges_from([("a", "c"), ("b", "c"), ("c", "d"), ("x", "a"), ("x", "b")])
    assert list(g.bfs_predecessors_iter("d")) == ["c", "a", "b", "x"]
    assert list(g.bfs_predecessors_iter("x")) == []
    with pytest.raises(nx.NetworkXError):
        list(g.bfs_predecessors_iter("nope"))


def test_bfs_predecessors_with_cycle_terminates():
    g = DiGraph()
    g.add_edges_from([(1, 2), (2, 1), (2, 3)])
    assert list(g.bfs_predecessors_iter(3)) == [2, 1]


def test_ordered_graph_keeps_insertion_order():
    g = OrderedDiGraph()
    for node in "zyx":
        g.add_node(node)
    g.add_edge("z", "a")
    assert list(g.nodes) == ["z", "y", "x", "a"]
    assert type(g.copy()) is OrderedDiGraph
    assert type(g.freeze()) is OrderedDiGraph


def test_merge_graphs_returns_a_new_graph():
    a = DiGraph(name="q")
    a.add_edge(1, 2)
    b = DiGraph()
    b.add_edge(3, 4, w=1)
    merged = merge_graphs(a, b)
    assert merged is not a
    assert type(merged) is DiGraph
    assert list(merged.edges(data=True)) == [(1, 2, {}), (3, 4, {"w": 1})]
    assert list(a.edges) == [(1, 2)]
    assert merged.graph == {"name": "q"}


def test_merge_graphs_of_a_frozen_graph_is_mutable():
    a = DiGraph()
    a.add_edge(1, 2)
    a.freeze()
    merged = merge_graphs(a, DiGraph())
    merged.add_node(5)
    assert 5 in merged


def test_merge_nothing_returns_the_graph():
    a = DiGraph()
    assert merge_graphs(a) is a


def test_merge_graphs_rejects_overlap():
    a = DiGraph()
    a.add_edge(1, 2)
    b = DiGraph()
    b.add_edge(2, 5)
    with pytest.raises(ValueError, match="there are 1 overlapping nodes"):
        merge_graphs(a, b)


def test_merge_graphs_with_overlap_detector():
    a = DiGraph()
    a.add_edge(1, 2)
    b = DiGraph()
    b.add_edge(2, 5)
    seen = []

    def allow(left, right):
        seen.append((set(left), set(right)))
        return 0

    merged = merge_graphs(a, b, overlap_detector=allow)
    assert list(merged.edges) == [(1, 2), (2, 5)]
    assert seen == [({1, 2}, {2, 5})]
    with pytest.raises(ValueError, match="there are 7 overlapping"):
        merge_graphs(a, b, overlap_detector=lambda left, right: 7)


def test_frozen_reports_freeze():
    for cls in (DiGraph, OrderedDiGraph, Graph, OrderedGraph):
        g = cls()
        assert g.frozen is False
        g.freeze()
        assert g.frozen is True
        assert g.copy().frozen is False
    g = DiGraph()
    nx.freeze(g)
    assert g.frozen is True


def test_merge_graphs_allow_overlaps_merges_shared_nodes_without_detection():
    a = DiGraph()
    a.add_node("x", v=1, w=1)
    a.add_edge("x", "y", e=1)
    b = DiGraph()
    b.add_node("x", v=2)
    b.add_edge("x", "y", e=2, f=3)
    called = []

    def detector(left, right):
        called.append(1)
        return 1

    merged = merge_graphs(a, b, allow_overlaps=True, overlap_detector=detector)
    assert called == []
    assert list(merged.nodes(data=True)) == [("x", {"v": 2, "w": 1}), ("y", {})]
    assert list(merged.edges(data=True)) == [("x", "y", {"e": 2, "f": 3})]
    with pytest.raises(ValueError, match="there are 2 overlapping nodes"):
        merge_graphs(a, b)


@pytest.mark.parametrize("detector", [1, "x", object()])
def test_merge_graphs_refuses_a_non_callable_overlap_detector(detector):
    a = DiGraph()
    for graphs in ((), (DiGraph(),)):
        with pytest.raises(ValueError) as info:
            merge_graphs(a, *graphs, overlap_detector=detector)
        assert str(info.value) == "Overlap detection callback expected to be callable"
    with pytest.raises(ValueError, match="expected to be callable"):
        merge_graphs(a, DiGraph(), overlap_detector=detector, allow_overlaps=True)


def test_export_to_dot_writes_nodes_then_edges_with_attributes():
    g = DiGraph(name="x")
    g.add_edge("a", "b", meta=1)
    assert g.export_to_dot() == 'strict digraph "x" {\na;\nb;\na -> b [meta=1];\n}\n'
    assert DiGraph().export_to_dot() == "strict digraph {\n}\n"
    u = Graph()
    u.add_edge("a", "b", w=1)
    assert u.export_to_dot() == "strict graph {\na;\nb;\na -- b [w=1];\n}\n"


def test_export_to_dot_quotes_like_upstream():
    # What upstream (pydot) writes for the shapes a compiled flow graph has.
    g = DiGraph(name="f")
    g.add_node("linear_flow.Flow: f(len=2)", kind="flow", noop=True)
    g.add_node("a==1.0", kind="task")
    g.add_node("f[$]", kind="flow_end", noop=True)
    g.add_edge("linear_flow.Flow: f(len=2)", "a==1.0", invariant=True)
    g.add_edge("a==1.0", "f[$]", invariant=True)
    assert g.export_to_dot().splitlines() == [
        'strict digraph "f" {',
        '"linear_flow.Flow: f(len=2)" [kind=flow, noop=True];',
        '"a==1.0" [kind=task];',
        '"f[$]" [kind="flow_end", noop=True];',
        '"linear_flow.Flow: f(len=2)" -> "a==1.0" [invariant=True];',
        '"a==1.0" -> "f[$]" [invariant=True];',
        "}",
    ]


@pytest.mark.parametrize(
    ("node", "written"),
    [
        ("a_b", "a_b"),
        ("é", "é"),
        ("1", "1"),
        ("1.5", "1.5"),
        (".5", ".5"),
        ("-2", '"-2"'),
        ("1a", '"1a"'),
        ("a b", '"a b"'),
        ("a.b", '"a.b"'),
        ('x y"z', '"x y\\"z"'),
        ("a\nb", '"a\\nb"'),
        ('"quoted"', '"quoted"'),
        ("<html>", "<html>"),
        ("strict", '"strict"'),
        (("t", 1), "\"('t', 1)\""),
        # pydot writes these bare or drops them, which Graphviz can not read back.
        ("graph", '"graph"'),
        ("Node", '"Node"'),
        ('q"t', '"q\\"t"'),
        ("", '""'),
    ],
)
def test_export_to_dot_node_ids(node, written):
    g = DiGraph()
    g.add_node(node)
    assert g.export_to_dot() == f"strict digraph {{\n{written};\n}}\n"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (1, "1"),
        (None, "None"),
        ("x", "x"),
        ("x_y", '"x_y"'),
        ("a b", '"a b"'),
        ([1, 2], '"[1, 2]"'),
        ("", '""'),
        ("Graph", '"Graph"'),
    ],
)
def test_export_to_dot_attribute_values(value, written):
    g = DiGraph()
    g.add_node("n", a=value)
    assert g.export_to_dot() == f"strict digraph {{\nn [a={written}];\n}}\n"


def test_module_exports():
    assert set(graph.__all__) == {
        "DiGraph",
        "Graph",
        "OrderedDiGraph",
        "OrderedGraph",
        "merge_graphs",
    }


def test_export_to_dot_keeps_a_name_ending_in_a_backslash_valid():
    # A quoted DOT string can not end with a backslash (it would escape the closing quote):
    # such a name is written as an HTML-like string instead.
    g = graph.DiGraph()
    g.add_edge("ok", "C:\\dir\\")
    g.add_node('"quoted\\"')  # looks quoted, but its last quote is escaped
    dot = g.export_to_dot()
    assert "ok -> <C:\\dir\\>;" in dot
    assert '"\\"quoted\\\\"";' in dot
