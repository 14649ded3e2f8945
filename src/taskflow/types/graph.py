"""networkx graphs with the few extra helpers taskflow uses (freezing, pretty printing...).

Plain dicts keep insertion order, so the ``Ordered*`` variants behave like the others; they
exist because upstream code and persisted type names refer to them.
"""

from __future__ import annotations

import html
import os
import re
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar

import networkx as nx

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator

__all__ = ["DiGraph", "Graph", "OrderedDiGraph", "OrderedGraph", "merge_graphs"]

G = TypeVar("G", bound=nx.Graph)

# DOT identifiers written bare (everything else is double quoted). The shapes follow what
# upstream's pydot writes, so exports of ordinary graphs read the same: names (underscores
# allowed in node names, not in attribute values, as pydot has it), unsigned numerals, and
# text already quoted or HTML-like (<...>). Keywords are quoted in any case since DOT reads
# them case-insensitively.
_DOT_NAME = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*")
_DOT_VALUE = re.compile(r"[A-Za-z\x80-\U0010ffff][A-Za-z0-9\x80-\U0010ffff]*")
_DOT_NUMERAL = re.compile(r"\.[0-9]+|[0-9]+(\.[0-9]*)?")
_DOT_KEYWORDS = frozenset(("strict", "graph", "digraph", "subgraph", "node", "edge"))


def _dot_id(thing: Any, bare: re.Pattern[str] = _DOT_NAME) -> str:
    text = str(thing)
    if len(text) >= 2 and (
        (text[0] == text[-1] == '"' and '"' not in text[1:-1] and text[-2] != "\\")
        or (text[0] == "<" and text[-1] == ">")
    ):
        return text
    if text.lower() not in _DOT_KEYWORDS and (bare.fullmatch(text) or _DOT_NUMERAL.fullmatch(text)):
        return text
    return _quoted(text)


def _quoted(text: str) -> str:
    if text.endswith("\\"):
        # A quoted DOT string can not end with a backslash (it would escape the closing
        # quote, and DOT has no escape for a backslash): an HTML-like string holds it as is.
        return "<" + html.escape(text, quote=False).replace("\n", "<br/>") + ">"
    return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attributes(data: dict[Any, Any]) -> str:
    if not data:
        return ""
    pairs = ", ".join(f"{_dot_id(key)}={_dot_id(value, _DOT_VALUE)}" for key, value in data.items())
    return f" [{pairs}]"


def _export_to_dot(graph: nx.Graph, directed: bool) -> str:
    kind, arrow = ("digraph", "->") if directed else ("graph", "--")
    name = graph.graph.get("name", "")
    # Graph-level attributes other than the name are left out, as upstream leaves them.
    header = f"strict {kind} "
    if name:
        # Upstream always quotes the name (escaping quotes is ours: its output broke there).
        header += _quoted(str(name)) + " "
    lines = [header + "{"]
    lines.extend(
        f"{_dot_id(node)}{_dot_attributes(data)};" for node, data in graph.nodes(data=True)
    )
    lines.extend(
        f"{_dot_id(u)} {arrow} {_dot_id(v)}{_dot_attributes(data)};"
        for u, v, data in graph.edges(data=True)
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _pformat(graph: nx.Graph, directed: bool) -> str:
    lines = [
        f"Name: {graph.graph.get('name', '')}",
        f"Type: {type(graph).__name__}",
        f"Frozen: {nx.is_frozen(graph)}",
        f"Density: {nx.density(graph):0.3f}",
        f"Nodes: {graph.number_of_nodes()}",
    ]
    for node, data in graph.nodes(data=True):
        lines.append(f"  - {node} ({data})" if data else f"  - {node}")
    lines.append(f"Edges: {graph.number_of_edges()}")
    arrow = "->" if directed else "<->"
    for u, v, data in graph.edges(data=True):
        lines.append(f"  {u} {arrow} {v} ({data})" if data else f"  {u} {arrow} {v}")
    if directed:
        cycles = list(nx.simple_cycles(graph))
        lines.append(f"Cycles: {len(cycles)}")
        for cycle in cycles:
            lines.append("  " + " --> ".join(str(node) for node in [*cycle, cycle[0]]))
    return os.linesep.join(lines)


class DiGraph(nx.DiGraph):  # type: ignore[misc]
    """A directed graph (``networkx.DiGraph``) with taskflow's helpers."""

    #: Whether :meth:`freeze` made the graph read-only (``networkx.freeze`` sets it on the
    #: instance; copies start unfrozen).
    frozen: bool = False

    def freeze(self) -> DiGraph:
        """Make this graph read-only (in place) and return it; changes then raise
        ``networkx.NetworkXError``."""
        nx.freeze(self)
        return self

    def export_to_dot(self) -> str:
        """The graph in Graphviz DOT (a ``strict digraph``), nodes then edges, with their
        attributes."""
        return _export_to_dot(self, directed=True)

    def fresh_copy(self) -> DiGraph:
        """An empty graph of the same type."""
        return type(self)()

    def pformat(self) -> str:
        """A multi-line description: name, type, nodes, edges and cycles."""
        return _pformat(self, directed=True)

    def topological_sort(self) -> Iterator[Hashable]:
        """Nodes in an order where every edge points forward.

        Raises:
            networkx.NetworkXUnfeasible: the graph has a cycle.
        """
        return nx.topological_sort(self)  # type: ignore[no-any-return]

    def is_directed_acyclic(self) -> bool:
        """Whether the graph has no cycle."""
        return bool(nx.is_directed_acyclic_graph(self))

    def no_predecessors_iter(self) -> Iterator[Hashable]:
        """Nodes that no edge points to."""
        for node, degree in self.in_degree():
            if degree == 0:
                yield node

    def no_successors_iter(self) -> Iterator[Hashable]:
        """Nodes that no edge leaves."""
        for node, degree in self.out_degree():
            if degree == 0:
                yield node

    def bfs_predecessors_iter(self, n: Hashable) -> Iterator[Hashable]:
        """Every node ``n`` can be reached from, nearest first (``n`` excluded).

        Raises:
            networkx.NetworkXError: ``n`` is not in the graph.
        """
        visited = {n}
        queue = deque(self.predecessors(n))
        while queue:
            node = queue.popleft()
            if node in visited:
                continue
            visited.add(node)
            yield node
            queue.extend(pred for pred in self.predecessors(node) if pred not in visited)


class OrderedDiGraph(DiGraph):
    """A :class:`DiGraph` that iterates nodes and edges in insertion order."""


class Graph(nx.Graph):  # type: ignore[misc]
    """An undirected graph (``networkx.Graph``) with taskflow's helpers."""

    #: Whether :meth:`freeze` made the graph read-only.
    frozen: bool = False

    def freeze(self) -> Graph:
        """Make this graph read-only (in place) and return it."""
        nx.freeze(self)
        return self

    def export_to_dot(self) -> str:
        """The graph in Graphviz DOT (a ``strict graph``), nodes then edges, with their
        attributes."""
        return _export_to_dot(self, directed=False)

    def fresh_copy(self) -> Graph:
        """An empty graph of the same type."""
        return type(self)()

    def pformat(self) -> str:
        """A multi-line description: name, type, nodes and edges."""
        return _pformat(self, directed=False)


class OrderedGraph(Graph):
    """A :class:`Graph` that iterates nodes and edges in insertion order."""


def merge_graphs(
    graph: G,
    *graphs: nx.Graph,
    overlap_detector: Callable[[nx.Graph, nx.Graph], Any] | None = None,
    allow_overlaps: bool = False,
) -> G:
    """A copy of ``graph`` with the nodes and edges of ``graphs`` added (``graph`` itself if
    there is nothing to add).

    Args:
        overlap_detector: ``f(merged_so_far, other)`` returning how many nodes overlap; the
            default counts shared nodes. Any true answer stops the merge.
        allow_overlaps: merge shared nodes instead of refusing them (no detection is done;
            the attributes of later graphs win, key by key).

    Raises:
        ValueError: ``overlap_detector`` is not callable (checked even with nothing to
            merge), or the graphs overlap and ``allow_overlaps`` is false.
    """
    if overlap_detector is None:
        overlap_detector = _count_overlaps
    elif not callable(overlap_detector):
        raise ValueError("Overlap detection callback expected to be callable")
    if not graphs:
        return graph
    merged: G = graph.copy()
    for other in graphs:
        if not allow_overlaps:
            overlaps = overlap_detector(merged, other)
            if overlaps:
                raise ValueError(
                    f"Can not merge graph {other} into {merged} since there are {overlaps}"
                    " overlapping nodes (and we do not support merging nodes)"
                )
        merged.add_nodes_from(other.nodes(data=True))
        merged.add_edges_from(other.edges(data=True))
    return merged


def _count_overlaps(merged: nx.Graph, other: nx.Graph) -> int:
    return sum(1 for node in other if node in merged)
