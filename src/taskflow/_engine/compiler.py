"""Compile a flow tree once into an immutable plan that the runner executes cheaply.

Theory of operation: the tree of flows is flattened into one graph of *nodes*. Each atom is a
node; each flow adds two zero-cost *join* nodes, its start and its end, so that a link between
two subflows costs one edge instead of one per pair of their atoms. A flow's retry controller
sits right after the flow's start and before every child; the nodes governed by a retry are
allocated after it and end with the flow's end join, so a retry's scope is a contiguous range
of node ids.

Every argument of every atom is resolved here to the ordered list of atoms that may provide it
(the scope walk of the specification): the runner only reads those providers' results.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from taskflow import exceptions as exc
from taskflow.atom import Atom
from taskflow.flow import Flow
from taskflow.retry import Retry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from taskflow.deciders import Depth

__all__ = ["Binding", "Compilation", "Decider", "Plan", "compile_flow"]


_RETRY_CLASSES: dict[type, bool] = {}
_KINDS: dict[type, type | None] = {}


def _is_retry(cls: type) -> bool:
    """Whether ``cls`` is a retry controller (cached: ABC checks are slow per object)."""
    known = _RETRY_CLASSES.get(cls)
    if known is None:
        known = _RETRY_CLASSES[cls] = issubclass(cls, Retry)
    return known


def _kind(cls: type) -> type | None:
    """Flow, Atom or None for a child's class (cached, like :func:`_is_retry`)."""
    try:
        return _KINDS[cls]
    except KeyError:
        kind = Flow if issubclass(cls, Flow) else Atom if issubclass(cls, Atom) else None
        _KINDS[cls] = kind
        return kind


@dataclass(slots=True)
class Binding:
    """Where one argument of an atom comes from.

    ``providers`` are ``(node, key, is_retry)`` triples, nearest scope first; ``key`` is
    None for a whole result, else the index/key into it.
    """

    arg: str
    symbol: str
    optional: bool
    providers: tuple[tuple[int, Any, bool], ...]


@dataclass(slots=True)
class Decider:
    """A decider guarding the link into ``target`` (a node id)."""

    target: int
    sources: tuple[int, ...]  # atom nodes whose results form the decider's history
    decider: Callable[[dict[str, Any]], Any]
    depth: Depth
    link_flow: int  # index into Plan.flows of the flow holding the link
    target_child: Any  # the child (atom or flow) the link points at


class _FlowInfo:
    """One flow of the tree: its joins, retry, children and the links between them."""

    __slots__ = ("_pred", "_succ", "children", "end", "flow", "links", "retry", "spans", "start")

    def __init__(self, flow: Flow | None, start: int, end: int, retry: int) -> None:
        self.flow = flow
        self.start = start
        self.end = end
        self.retry = retry  # node of the flow's retry, -1 if none
        self.spans: list[tuple[int, int]] = []  # child position -> (first, last) node
        self.children: list[Any] = []
        self.links: list[tuple[int, int]] = []  # (position, position) pairs
        self._succ: dict[int, list[int]] | None = None
        self._pred: dict[int, list[int]] | None = None

    @property
    def child_succ(self) -> dict[int, list[int]]:
        """Child position -> positions linked after it (built on first use)."""
        if self._succ is None:
            self._succ = {}
            for u, v in self.links:
                self._succ.setdefault(u, []).append(v)
        return self._succ

    @property
    def child_pred(self) -> dict[int, list[int]]:
        """Child position -> positions linked before it (built on first use)."""
        if self._pred is None:
            self._pred = {}
            for u, v in self.links:
                self._pred.setdefault(v, []).append(u)
        return self._pred


#: A child's place in the tree, innermost first: ((flow index, position), outer path) | None.
Path: TypeAlias = "tuple[tuple[int, int], Any] | None"


class Plan:
    """The compiled, immutable form of a flow (see the module docstring)."""

    def __init__(self) -> None:
        self.atoms: list[Atom | None] = []  # per node: the atom, None for joins
        self.is_retry: list[bool] = []  # per node: a retry controller?
        self.succ: list[list[int]] = []
        self.pred: list[list[int]] = []
        self.owner: list[int] = []  # per node: the retry node governing it, -1 for none
        self.scope_end: dict[int, int] = {}  # retry node -> last node of its scope
        self.flows: list[_FlowInfo] = []
        self.node_flow: list[int] = []  # per node: the flow (index) that directly holds it
        self.node_pos: dict[int, tuple[int, int]] = {}  # atom node -> (flow index, position)
        self.deciders: dict[int, list[Decider]] = {}
        self.bindings: dict[int, tuple[Binding, ...]] = {}
        self.revert_bindings: dict[int, tuple[Binding, ...]] = {}
        self.atom_nodes: list[int] = []
        self.by_name: dict[str, int] = {}
        self.root: Any = None

    def _add(self, atom: Atom | None, owner: int, flow_index: int) -> int:
        node = len(self.atoms)
        self.atoms.append(atom)
        self.is_retry.append(atom is not None and _is_retry(type(atom)))
        self.succ.append([])
        self.pred.append([])
        self.owner.append(owner)
        self.node_flow.append(flow_index)
        if atom is not None:
            self.atom_nodes.append(node)
        return node

    def _link(self, u: int, v: int) -> None:
        self.succ[u].append(v)
        self.pred[v].append(u)

    def scope(self, retry_node: int) -> range:
        """Nodes governed by a retry (excluding the retry itself)."""
        return range(retry_node + 1, self.scope_end[retry_node] + 1)

    def atoms_between(self, start: int, end: int) -> Iterator[int]:
        for node in range(start, end + 1):
            if self.atoms[node] is not None:
                yield node


class Compilation:
    """What ``engine.compilation`` exposes: the plan and an atom-level execution graph."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._graph: Any = None

    @property
    def execution_graph(self) -> Any:
        """A networkx DiGraph of atoms, with joins collapsed (built on first use)."""
        if self._graph is None:
            import networkx as nx

            plan = self.plan
            graph = nx.DiGraph()
            for node in plan.atom_nodes:
                graph.add_node(plan.atoms[node])
            for node in plan.atom_nodes:
                source = plan.atoms[node]
                seen: set[int] = set()
                todo = list(plan.succ[node])
                while todo:
                    nxt = todo.pop()
                    if nxt in seen:
                        continue
                    seen.add(nxt)
                    target = plan.atoms[nxt]
                    if target is None:
                        todo.extend(plan.succ[nxt])
                    else:
                        graph.add_edge(source, target)
            self._graph = graph
        return self._graph

    @property
    def hierarchy(self) -> Any:
        return self.plan.root


class _Compiler:
    def __init__(self) -> None:
        self.plan = Plan()
        self.seen: set[int] = set()
        # Per flow: symbol -> list of (child position, provider atom nodes latest first).
        self.flow_providers: list[dict[str, list[tuple[int, list[int]]]]] = []
        # Per node: chain of (flow index, child position) from innermost outward.
        self.node_path: dict[int, Any] = {}
        self.flow_paths: dict[int, Any] = {}  # flow index -> that flow's own path

    def compile(self, root: Flow | Atom) -> Plan:
        plan = self.plan
        plan.root = root
        if isinstance(root, Atom):
            self._check_item(root)
            info = _FlowInfo(None, -1, -1, -1)
            plan.flows.append(info)
            self.flow_providers.append({})
            node = self._atom_node(root, -1, 0, None)
            info.children.append(root)
            info.spans.append((node, node))
        elif isinstance(root, Flow):
            self._check_item(root)
            self._flow(root, -1, None)
        else:
            raise TypeError(f"Unknown object '{root}' ({type(root)}) requested to compile")
        self._bind_all()
        return plan

    def _check_item(self, item: Any) -> None:
        if id(item) in self.seen:
            raise ValueError(f"Already compiled item '{item}' ({type(item)}), duplicate flow/atom")
        self.seen.add(id(item))

    def _atom_node(self, atom: Atom, owner: int, flow_index: int, path: Any) -> int:
        plan = self.plan
        if atom.name in plan.by_name:
            raise exc.Duplicate(f"Atoms with duplicate names found: ['{atom.name}']")
        node = plan._add(atom, owner, flow_index)
        plan.by_name[atom.name] = node
        self.node_path[node] = path
        return node

    def _flow(self, flow: Flow, owner: int, path: Path) -> tuple[int, int]:
        plan = self.plan
        index = len(plan.flows)
        self.flow_paths[index] = path
        start = plan._add(None, owner, index)
        info = _FlowInfo(flow, start, -1, -1)
        plan.flows.append(info)
        providers: dict[str, list[tuple[int, list[int]]]] = {}
        self.flow_providers.append(providers)
        entry = start
        inner_owner = owner
        if flow.retry is not None:
            retry = flow.retry
            self._check_item(retry)
            # The retry resolves its own arguments from the enclosing levels only.
            entry = info.retry = self._atom_node(retry, owner, index, path)
            plan._link(start, entry)
            inner_owner = entry
        children: list[Any] = [child for child, _meta in flow.iter_nodes()]
        info.children = children
        spans = info.spans
        seen = self.seen
        by_name = plan.by_name
        node_pos = plan.node_pos
        atoms = plan.atoms
        # The per-atom work below is _add() and _atom_node() inlined: flows of thousands of
        # atoms spend most of their compile time in this loop.
        succ, pred, owners, node_flow = plan.succ, plan.pred, plan.owner, plan.node_flow
        is_retry, atom_nodes = plan.is_retry, plan.atom_nodes
        for pos, child in enumerate(children):
            key = id(child)
            if key in seen:
                raise ValueError(
                    f"Already compiled item '{child}' ({type(child)}), duplicate flow/atom"
                )
            seen.add(key)
            where = (index, pos)
            kind = _kind(type(child))
            if kind is Atom:
                name = child.name
                if name in by_name:
                    raise exc.Duplicate(f"Atoms with duplicate names found: ['{name}']")
                node = len(atoms)
                atoms.append(child)
                succ.append([])
                pred.append([])
                owners.append(inner_owner)
                node_flow.append(index)
                is_retry.append(_is_retry(type(child)))
                atom_nodes.append(node)
                by_name[name] = node
                node_pos[node] = where
                spans.append((node, node))
                for symbol in child.save_as:
                    entries = providers.get(symbol)
                    if entries is None:
                        providers[symbol] = [(pos, [node])]
                    else:
                        entries.append((pos, [node]))
            elif kind is Flow:
                first, last = self._flow(child, inner_owner, (where, path))
                spans.append((first, last))
                symbols: dict[str, list[int]] = {}
                for node in range(last, first - 1, -1):
                    atom = atoms[node]
                    if atom is not None:
                        for symbol in atom.save_as:
                            symbols.setdefault(symbol, []).append(node)
                for symbol, nodes in symbols.items():
                    providers.setdefault(symbol, []).append((pos, nodes))
            else:
                raise TypeError(f"Unknown object '{child}' ({type(child)}) requested to compile")
        end = plan._add(None, inner_owner, index)
        info.end = end
        if inner_owner != owner:
            plan.scope_end[inner_owner] = end
        links = info.links
        linked_in = [False] * len(children)
        linked_out = [False] * len(children)
        position: dict[int, int] | None = None
        last_pos = -1
        for u, v, meta in flow.iter_links():
            # Linear flows link consecutive children: guess the next pair before hashing.
            if last_pos + 1 < len(children) and children[last_pos + 1] is u:
                pu = last_pos + 1
            else:
                if position is None:
                    position = {id(child): p for p, child in enumerate(children)}
                pu = position[id(u)]
            if pu + 1 < len(children) and children[pu + 1] is v:
                pv = pu + 1
            else:
                if position is None:
                    position = {id(child): p for p, child in enumerate(children)}
                pv = position[id(v)]
            last_pos = pu
            linked_out[pu] = True
            linked_in[pv] = True
            links.append((pu, pv))
            target = spans[pv][0]
            source = spans[pu][1]
            succ[source].append(target)
            pred[target].append(source)
            decider = meta.get("decider") if meta else None
            if decider is not None:
                from taskflow.deciders import Depth

                first, last = spans[pu]
                sources = tuple(plan.atoms_between(first, last))
                depth = meta.get("decider_depth") or Depth.ALL
                plan.deciders.setdefault(target, []).append(
                    Decider(target, sources, decider, Depth.translate(depth), index, v)
                )
        for pos in range(len(children)):
            first, last = spans[pos]
            if not linked_in[pos]:
                plan._link(entry, first)
            if not linked_out[pos]:
                plan._link(last, end)
        if not children:
            plan._link(entry, end)
        return start, end

    # -- argument binding (the scope walk, done once) -------------------------------------------

    def _bind_all(self) -> None:
        plan = self.plan
        # Per (flow, child position): lazily grown backward BFS over sibling links.
        ancestry: dict[tuple[int, int], tuple[dict[int, int], deque[int]]] = {}

        def rank(flow_index: int, pos: int, target: int) -> int | None:
            """BFS distance order of sibling ``target`` before ``pos`` (None if not before)."""
            key = (flow_index, pos)
            state = ancestry.get(key)
            if state is None:
                state = ({}, deque([pos]))
                ancestry[key] = state
            order, frontier = state
            if target in order:
                return order[target]
            preds = self.plan.flows[flow_index].child_pred
            while frontier:
                current = frontier.popleft()
                for before in preds.get(current, ()):
                    if before not in order:
                        order[before] = len(order)
                        frontier.append(before)
                if target in order:
                    return order[target]
            return None

        def levels(node: int) -> Iterator[tuple[int, int]]:
            # An atom child's path is its place plus its flow's path (kept once per flow);
            # retries and a lone root atom have theirs recorded by _atom_node.
            if node in self.node_path:
                cell = self.node_path[node]
            else:
                where = plan.node_pos[node]
                cell = (where, self.flow_paths[where[0]])
            while cell is not None:
                where, cell = cell
                yield where

        def providers_for(node: int, symbol: str) -> tuple[tuple[int, Any, bool], ...]:
            for flow_index, pos in levels(node):
                found: list[tuple[int, int]] = []
                for child_pos, nodes in self.flow_providers[flow_index].get(symbol, ()):
                    if child_pos == pos:
                        continue
                    r = rank(flow_index, pos, child_pos)
                    if r is not None:
                        found.extend((r, n) for n in nodes)
                retry = plan.flows[flow_index].retry
                level = [n for _r, n in sorted(found, key=lambda item: item[0])]
                if retry != -1 and retry != node:
                    retry_atom = plan.atoms[retry]
                    assert retry_atom is not None
                    if symbol in retry_atom.save_as:
                        level.append(retry)
                if level:
                    result = []
                    for n in level:
                        atom = plan.atoms[n]
                        assert atom is not None
                        result.append((n, atom.save_as[symbol], plan.is_retry[n]))
                    return tuple(result)
            return ()

        empty: tuple[Binding, ...] = ()
        for node in plan.atom_nodes:
            atom = plan.atoms[node]
            assert atom is not None
            if not atom.rebind and not atom.revert_rebind:
                plan.bindings[node] = plan.revert_bindings[node] = empty
                continue
            found: dict[str, tuple[tuple[int, Any, bool], ...]] = {}

            def lookup(
                symbol: str, node: int = node, found: dict[str, Any] = found
            ) -> tuple[tuple[int, Any, bool], ...]:
                providers = found.get(symbol)
                if providers is None:
                    providers = found[symbol] = providers_for(node, symbol)
                return providers

            rebind = atom.rebind
            plan.bindings[node] = (
                tuple(
                    Binding(arg, symbol, symbol in atom.optional, lookup(symbol))
                    for arg, symbol in rebind.items()
                )
                if rebind
                else empty
            )
            revert_rebind = atom.revert_rebind
            if not revert_rebind:
                plan.revert_bindings[node] = empty
            elif revert_rebind == rebind and set(atom.revert_optional) == set(atom.optional):
                plan.revert_bindings[node] = plan.bindings[node]
            else:
                plan.revert_bindings[node] = tuple(
                    Binding(arg, symbol, symbol in atom.revert_optional, lookup(symbol))
                    for arg, symbol in revert_rebind.items()
                )


def compile_flow(root: Flow | Atom) -> Plan:
    """Compile ``root`` (a flow, or a lone atom) into a :class:`Plan`."""
    return _Compiler().compile(root)
