"""tree.Node: building, searching, walking and drawing."""

from __future__ import annotations

import pytest

from taskflow.types.tree import FrozenNode, Node


def build() -> Node:
    """root -> (a -> (a1 -> a11, a2), b -> (b1 -> b11, b2))"""
    root = Node("root", kind="top")
    a, b = Node("a"), Node("b")
    root.add(a)
    root.add(b)
    a.add(Node("a1"))
    a[0].add(Node("a11"))
    a.add(Node("a2"))
    b.add(Node("b1"))
    b[0].add(Node("b11"))
    b.add(Node("b2"))
    return root


def items(nodes) -> list:
    return [n.item for n in nodes]


def test_node_basics():
    root = build()
    assert root.item == "root"
    assert root.metadata == {"kind": "top"}
    assert Node("x").metadata == {}
    assert root.parent is None
    assert root[0].parent is root
    assert items(root) == ["a", "b"]
    assert len(root) == 2
    assert len(Node("leaf")) == 0
    assert bool(Node("leaf"))
    assert root.child_count() == 2
    assert root.child_count(only_direct=False) == 8
    assert not root.empty()
    assert Node("leaf").empty()
    with pytest.raises(IndexError):
        Node("leaf")[0]


def test_find():
    root = build()
    found = root.find("b11")
    assert found is not None
    assert found.item == "b11"
    assert root.find("zz") is None
    assert root.find("root") is root
    assert root.find("root", include_self=False) is None
    assert root.find("b11", only_direct=True) is None
    a = root.find("a", only_direct=True)
    assert a is not None
    assert a.item == "a"
    assert "b11" in root
    assert "zz" not in root


def test_find_first_match():
    root = build()
    match = root.find_first_match(lambda n: n.item.endswith("2"))
    assert match is not None
    assert match.item == "a2"
    assert root.find_first_match(lambda n: False) is None


def test_index():
    root = build()
    assert root.index("b") == 1
    with pytest.raises(ValueError, match="zz is not contained in any child"):
        root.index("zz")
    with pytest.raises(ValueError):
        root.index("b1")  # only direct children


def test_path_iter():
    root = build()
    leaf = root.find("b11")
    assert leaf is not None
    assert items(leaf.path_iter()) == ["b11", "b1", "b", "root"]
    assert items(leaf.path_iter(include_self=False)) == ["b1", "b", "root"]


def test_dfs_iter():
    root = build()
    assert items(root.dfs_iter()) == ["a", "a1", "a11", "a2", "b", "b1", "b11", "b2"]
    assert items(root.dfs_iter(include_self=True))[0] == "root"
    assert items(root.dfs_iter(right_to_left=False)) == [
        "b",
        "b2",
        "b1",
        "b11",
        "a",
        "a2",
        "a1",
        "a11",
    ]


def test_bfs_iter():
    root = build()
    assert items(root.bfs_iter()) == ["b", "a", "b2", "b1", "a2", "a1", "b11", "a11"]
    assert items(root.bfs_iter(include_self=True))[0] == "root"
    assert items(root.bfs_iter(right_to_left=True)) == [
        "a",
        "b",
        "a1",
        "a2",
        "b1",
        "b2",
        "a11",
        "b11",
    ]


def test_reverse_iter():
    assert items(build().reverse_iter()) == ["b", "a"]


def test_pformat():
    assert build().pformat() == "\n".join(
        [
            "root",
            "|__a",
            "|  |__a1",
            "|  |  |__a11",
            "|  |__a2",
            "|__b",
            "   |__b1",
            "   |  |__b11",
            "   |__b2",
        ]
    )


def test_pformat_options():
    root = Node("r")
    root.add(Node("x"))
    root[0].add(Node("y"))
    text = root.pformat(
        stringify_node=lambda n: n.item.upper(),
        linesep="/",
        vertical_conn="!",
        horizontal_conn="--",
        empty_space=".",
        starting_prefix=">",
    )
    assert text == ">R/>!--X/>...!--Y"


def test_remove():
    root = build()
    removed = root.remove("b11")
    assert removed.item == "b11"
    assert removed.parent is None
    assert "b11" not in root
    with pytest.raises(ValueError, match="Item 'zz' not found to remove"):
        root.remove("zz")


def test_disassociate():
    root = build()
    b = root[1]
    assert b.disassociate() == 1
    assert b.parent is None
    assert items(root) == ["a"]
    assert b.disassociate() == 0


def test_freeze():
    root = build()
    assert root.freeze() is None
    with pytest.raises(FrozenNode, match="Frozen node"):
        root.add(Node("x"))
    with pytest.raises(FrozenNode):
        root[0][0].add(Node("x"))
    with pytest.raises(FrozenNode):
        root.remove("b11")
    assert root.child_count(only_direct=False) == 8


def test_frozen_node_refuses_disassociate():
    root = build()
    root.freeze()
    for node in (root[1], root[0][0][0], root):  # a child, a leaf, the root itself
        with pytest.raises(FrozenNode, match="Frozen node"):
            node.disassociate()
    assert items(root) == ["a", "b"]
    # A frozen subtree under a mutable parent stays attached too.
    parent, child = Node("p"), Node("c")
    parent.add(child)
    child.freeze()
    with pytest.raises(FrozenNode):
        child.disassociate()
    assert child.parent is parent


def test_disassociate_guards_the_node_not_its_parent():
    # Upstream: only the node's own frozen flag counts (freeze() covers descendants).
    parent, child = Node("p"), Node("c")
    parent.add(child)
    parent.frozen = True
    assert child.disassociate() == 1
    assert child.parent is None


def test_to_digraph_keeps_metadata_as_node_attributes():
    root = Node("r", a=1)
    child = Node("c", kind="x")
    root.add(child)
    child.add(Node("d"))
    child.metadata[1] = "non-string key"
    g = root.to_digraph()
    assert list(g.nodes(data=True)) == [
        ("r", {"a": 1}),
        ("c", {"kind": "x", 1: "non-string key"}),
        ("d", {}),
    ]
    assert type(g).__name__ == "OrderedDiGraph"
    # A copy of the mapping, so editing the graph's attributes leaves the tree alone.
    g.nodes["r"]["b"] = 2
    assert root.metadata == {"a": 1}


def test_to_digraph():
    g = build().to_digraph()
    assert list(g.nodes) == ["root", "a", "b", "a1", "a2", "b1", "b2", "a11", "b11"]
    assert list(g.edges) == [
        ("root", "a"),
        ("root", "b"),
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("b", "b2"),
        ("a1", "a11"),
        ("b1", "b11"),
    ]


def test_to_digraph_of_subtree_has_no_edge_to_its_parent():
    root = build()
    g = root[0].to_digraph()
    assert "root" not in g
    assert list(g.edges) == [("a", "a1"), ("a", "a2"), ("a1", "a11")]


def test_repr():
    assert "root" in repr(build())
