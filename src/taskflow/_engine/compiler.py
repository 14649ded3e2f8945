"""Compile a flow tree once into an immutable plan that the runner executes cheaply.

Theory of operation: the tree of flows is flattened into one graph of *nodes*. Each atom is a
node; each flow adds two zero-cost *join* nodes, its start and its end, so that a link between
two subflows costs one edge instead of one per pair of their atoms. A flow's retry controller
sits right after the flow's start and before every child; the nodes governed by a retry are
allocated after it and end with the flow's end join, so a retry's scope is a contiguous range
of node ids.

Every argument of every atom is resolved here to the ordered list of atoms that may provide it
(the scope walk of the specification, :class:`_ScopeWalk`): the runner only reads those
providers' results. The walk stays with the plan, so storage's scoped lookups made later for
any symbol (``fetch_mapped_args(..., atom_name=X)``) see exactly what the engine gives X.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from taskflow import exceptions as exc
from taskflow.deciders import Depth
from taskflow.flow import Flow
from taskflow.retry import Retry
from taskflow.storage import Binding

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from taskflow.atom import Atom
    from taskflow.storage import Providers
    from taskflow.types import graph as tf_graph
    from taskflow.types import tree

__all__ = ["Compilation", "Decider", "Plan", "compile_flow"]


#: Per class: (Flow, Task or None: what it compiles as; is it a retry?; does it report
#: progress itself?).
ClassInfo: TypeAlias = "tuple[type | None, bool, bool]"
_CLASSES: dict[type, ClassInfo] = {}


def _classify(cls: type) -> ClassInfo:
    """What the compiler needs to know of a class (cached: ABC checks are slow).

    Only flows and tasks compile as a flow's children or as the root (as upstream): a retry
    has its own place, a flow's ``retry``, and refusing one anywhere else (TypeError) keeps a
    retry from being run as if it were a task; other atoms have nothing an engine can run.
    """
    known = _CLASSES.get(cls)
    if known is None:
        from taskflow.task import Task

        kind = Flow if issubclass(cls, Flow) else Task if issubclass(cls, Task) else None
        retry = issubclass(cls, Retry)
        # A task with an update_progress of its own gets the engine's 0.0/1.0 calls even
        # when nobody listens (upstream calls the method).
        progress = kind is Task and cls.update_progress is not Task.update_progress  # type: ignore[attr-defined]
        known = _CLASSES[cls] = (kind, retry, progress)
    return known


def _unknown(item: object) -> TypeError:
    """The error for something that can not be compiled (the message names it, as upstream)."""
    return TypeError(f"Unknown object '{item}' ({type(item)}) requested to compile")


@dataclass(slots=True)
class Decider:
    """A decider guarding the link into ``target`` (a node id)."""

    target: int
    sources: tuple[int, ...]  # atom nodes whose results form the decider's history
    decider: Callable[[dict[str, Any]], Any]
    depth: Depth


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
#: Flattening one flow: yields (subflow, owner, path) to flatten, is sent their (start, end)
#: joins, and returns its own.
FlowSteps: TypeAlias = "Generator[tuple[Flow, int, Path], tuple[int, int], tuple[int, int]]"
#: Adding a flow's children: yields the subflows among them, as FlowSteps does.
ChildSteps: TypeAlias = "Generator[tuple[Flow, int, Path], tuple[int, int], None]"


_JOIN: ClassInfo = (None, False, False)


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
        self.walk: _ScopeWalk | None = None  # set once the tree is flattened
        # Per node: a task whose update_progress is its own, called by the engine around
        # each call even when nobody listens (upstream calls it); other tasks get those calls
        # only while their notifier has listeners.
        self.reports_progress: list[bool] = []
        # Retry node -> its subgraph (see retry_subgraph), filled in on first use.
        self._subgraphs: dict[int, tuple[int, ...]] = {}

    def _add(self, atom: Atom | None, owner: int, flow_index: int) -> int:
        node = len(self.atoms)
        self.atoms.append(atom)
        _kind, retry, progress = _classify(type(atom)) if atom is not None else _JOIN
        self.is_retry.append(retry)
        self.reports_progress.append(progress)
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

    def retry_subgraph(self, retry_node: int) -> tuple[int, ...]:
        """The retry and every node after it: what its decisions revert, and a retry resets.

        That is the retry's scope and every other node reachable from the retry, as
        upstream has it: an atom after the retry's subflow may have used what the scope
        provided, so it is reverted (and runs again) with the scope. Depth first, the last
        linked successor first: the order in which upstream resets a retried subgraph.

        Worked out on a retry's first decision rather than at compile time: most retries never
        decide anything, and compiling a chain of many retries would pay for each one's tail.
        """
        known = self._subgraphs.get(retry_node)
        if known is None:
            succ = self.succ
            seen = {retry_node}
            order = [retry_node]
            stack = list(succ[retry_node])
            while stack:
                node = stack.pop()
                if node not in seen:
                    seen.add(node)
                    order.append(node)
                    stack.extend(succ[node])
            known = self._subgraphs[retry_node] = tuple(order)
        return known

    def atoms_between(self, start: int, end: int) -> Iterator[int]:
        for node in range(start, end + 1):
            if self.atoms[node] is not None:
                yield node

    def scope_fetcher(self, atom_name: str, symbol: str) -> Providers | None:
        """Providers of ``symbol`` visible from ``atom_name`` (a storage scope fetcher)."""
        node = self.by_name.get(atom_name)
        if node is None or self.walk is None:
            return None
        return self.walk.providers(node, symbol)


class Compilation:
    """What ``engine.compilation`` exposes: the compiled flow and queries about it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._graph: Any = None

    @property
    def execution_graph(self) -> tf_graph.DiGraph:
        """A :class:`~taskflow.types.graph.DiGraph` of atoms, joins collapsed (built once)."""
        if self._graph is None:
            from taskflow.types import graph as tf_graph

            plan = self.plan
            graph = tf_graph.DiGraph()
            for node in plan.atom_nodes:
                graph.add_node(plan.atoms[node])
            for node in plan.atom_nodes:
                source = plan.atoms[node]
                for target in self._atoms_after(node):
                    graph.add_edge(source, plan.atoms[target])
            self._graph = graph
        return self._graph  # type: ignore[no-any-return]

    def _atoms_after(self, node: int) -> Iterator[int]:
        """The atoms directly after ``node``, looking through joins."""
        plan = self.plan
        seen: set[int] = set()
        todo = list(plan.succ[node])
        while todo:
            nxt = todo.pop()
            if nxt in seen:
                continue
            seen.add(nxt)
            if plan.atoms[nxt] is None:
                todo.extend(plan.succ[nxt])
            else:
                yield nxt

    @property
    def hierarchy(self) -> Any:
        """The flow (or lone atom) that was compiled."""
        return self.plan.root

    def atom(self, name: str) -> Atom:
        """The compiled atom called ``name`` (NotFound if there is none)."""
        node = self.plan.by_name.get(name)
        if node is None:
            raise exc.NotFound(f"Unknown atom name '{name}'")
        atom = self.plan.atoms[node]
        assert atom is not None
        return atom

    def predecessors(self, name: str) -> tree.Node:
        """What runs before atom ``name``, most recent first, as a tree.

        The root (item None) holds the atom's direct predecessors; below each atom are its own
        predecessors. A subflow that ends right before an atom appears as one node of kind
        ``'flow'`` holding its last atoms, and atoms before a subflow's first atoms are found
        by stepping out through the subflow's start.
        """
        from taskflow.types import tree

        root = tree.Node(None)
        node = self.plan.by_name.get(name)
        if node is None:
            raise exc.NotFound(f"Unknown atom name '{name}'")
        self._add_predecessors(node, root)
        return root

    def _add_predecessors(self, node: int, root: tree.Node) -> None:
        """Add ``node``'s predecessors below ``root``, theirs below them, and so on.

        A depth-first walk over an explicit stack of predecessor iterators (no recursion:
        chains and nestings of any length), adding children in the order a recursive walk
        would.
        """
        from taskflow.types import tree

        plan = self.plan
        stack: list[tuple[Iterator[int], tree.Node]] = [(iter(plan.pred[node]), root)]
        while stack:
            preds, parent = stack[-1]
            pred = next(preds, None)
            if pred is None:
                stack.pop()
                continue
            atom = plan.atoms[pred]
            if atom is not None:
                child = tree.Node(atom, kind="retry" if isinstance(atom, Retry) else "task")
                parent.add(child)
                stack.append((iter(plan.pred[pred]), child))
                continue
            info = plan.flows[plan.node_flow[pred]]
            if info.end == pred:
                # A subflow's end: continue from its last atoms' predecessors (the subflow
                # itself is shown by its end, as the atoms run inside it are).
                stack.extend((iter(plan.pred[last]), parent) for last in reversed(plan.pred[pred]))
                continue
            child = tree.Node(info.flow, kind="flow", noop=True)
            parent.add(child)
            stack.append((iter(plan.pred[pred]), child))


class _ScopeWalk:
    """The scope rules of the specification: which atoms may provide a symbol to a node.

    A node looks in its own flow first, at the siblings linked before its own child position
    (nearest first, by breadth-first distance over the links), then at the flow's retry, then
    one level out, from the position of the subflow holding it, and so on to the root.
    Answers are cached per (node, symbol).
    """

    def __init__(
        self,
        plan: Plan,
        flow_providers: list[dict[str, list[tuple[int, list[int]]]]],
        node_path: dict[int, Any],
        flow_paths: dict[int, Any],
    ) -> None:
        self.plan = plan
        # Per flow: symbol -> list of (child position, provider atom nodes latest first).
        self.flow_providers = flow_providers
        # Per retry and lone root atom: its path (atom children derive theirs, see levels).
        self.node_path = node_path
        self.flow_paths = flow_paths  # flow index -> that flow's own path
        # Per (flow, child position): lazily grown backward BFS over sibling links.
        self.ancestry: dict[tuple[int, int], tuple[dict[int, int], deque[int]]] = {}
        self.cache: dict[tuple[int, str], Providers] = {}
        self.lock = threading.Lock()

    def rank(self, flow_index: int, pos: int, target: int) -> int | None:
        """BFS distance order of sibling ``target`` before ``pos`` (None if not before)."""
        key = (flow_index, pos)
        state = self.ancestry.get(key)
        if state is None:
            state = self.ancestry[key] = ({}, deque([pos]))
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

    def levels(self, node: int) -> Iterator[tuple[int, int]]:
        """``(flow index, child position)`` of ``node`` at each level, innermost first."""
        if node in self.node_path:
            cell = self.node_path[node]
        else:
            where = self.plan.node_pos[node]
            cell = (where, self.flow_paths[where[0]])
        while cell is not None:
            where, cell = cell
            yield where

    def providers(self, node: int, symbol: str) -> Providers:
        """``(provider name, key)`` pairs visible from ``node`` for ``symbol``, nearest first.

        Safe from any thread (storage lookups may come from listeners' threads): the walk's
        lazily grown state is only touched under a lock.
        """
        cached = self.cache.get((node, symbol))
        if cached is None:
            with self.lock:
                cached = self.cache[(node, symbol)] = self._find(node, symbol)
        return cached

    def _find(self, node: int, symbol: str) -> Providers:
        plan = self.plan
        for flow_index, pos in self.levels(node):
            found: list[tuple[int, int]] = []
            for child_pos, nodes in self.flow_providers[flow_index].get(symbol, ()):
                if child_pos != pos:
                    r = self.rank(flow_index, pos, child_pos)
                    if r is not None:
                        found.extend((r, n) for n in nodes)
            level = [n for _r, n in sorted(found, key=lambda item: item[0])]
            retry = plan.flows[flow_index].retry
            if retry not in (-1, node) and symbol in plan.atoms[retry].save_as:  # type: ignore[union-attr]
                level.append(retry)
            if level:
                return tuple(
                    (atom.name, atom.save_as[symbol])
                    for atom in (plan.atoms[n] for n in level)
                    if atom is not None
                )
        return ()

    def bind(self, node: int, atom: Atom) -> None:
        """Resolve ``atom``'s execute and revert arguments into ``plan.bindings``."""
        plan = self.plan
        found: dict[str, Providers] = {}  # per symbol, for both methods (not the shared cache)

        def providers(symbol: str) -> Providers:
            known = found.get(symbol)
            if known is None:
                known = found[symbol] = self._find(node, symbol)
            return known

        rebind = atom.rebind
        optional = atom.optional
        plan.bindings[node] = bindings = tuple(
            [
                Binding(arg, symbol, symbol in optional, providers(symbol))
                for arg, symbol in rebind.items()
            ]
        )
        revert_rebind = atom.revert_rebind
        if revert_rebind == rebind and set(atom.revert_optional) == set(optional):
            plan.revert_bindings[node] = bindings
        else:
            revert_optional = atom.revert_optional
            plan.revert_bindings[node] = tuple(
                [
                    Binding(arg, symbol, symbol in revert_optional, providers(symbol))
                    for arg, symbol in revert_rebind.items()
                ]
            )


class _Compiler:
    def __init__(self) -> None:
        self.plan = Plan()
        self.seen: set[int] = set()
        # Per flow: symbol -> list of (child position, provider atom nodes latest first).
        self.flow_providers: list[dict[str, list[tuple[int, list[int]]]]] = []
        # Per retry and lone root atom: chain of (flow index, child position), innermost out.
        self.node_path: dict[int, Any] = {}
        self.flow_paths: dict[int, Any] = {}  # flow index -> that flow's own path

    def compile(self, root: Flow | Atom) -> Plan:
        plan = self.plan
        plan.root = root
        kind = _classify(type(root))[0]
        if kind is None:
            raise _unknown(root)
        self._check_item(root)
        if isinstance(root, Flow):
            self._flow(root, -1, None)
        else:  # a lone task
            info = _FlowInfo(None, -1, -1, -1)
            plan.flows.append(info)
            self.flow_providers.append({})
            node = self._atom_node(root, -1, 0, None)
            info.children.append(root)
            info.spans.append((node, node))
        walk = plan.walk = _ScopeWalk(plan, self.flow_providers, self.node_path, self.flow_paths)
        empty: tuple[Binding, ...] = ()
        for node in plan.atom_nodes:
            atom = plan.atoms[node]
            assert atom is not None
            if atom.rebind or atom.revert_rebind:
                walk.bind(node, atom)
            else:
                plan.bindings[node] = plan.revert_bindings[node] = empty
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
        """Flatten ``flow`` into nodes; returns its (start, end) joins.

        Subflows are flattened by a loop over an explicit stack of :meth:`_flow_steps`
        generators, not by recursion, so that nesting depth has no limit.
        """
        stack = [self._flow_steps(flow, owner, path)]
        result: tuple[int, int] | None = None
        while True:
            try:
                subflow = stack[-1].send(result)  # type: ignore[arg-type]
            except StopIteration as finished:
                stack.pop()
                result = finished.value
                if not stack:
                    return finished.value  # type: ignore[no-any-return]
                continue
            stack.append(self._flow_steps(*subflow))
            result = None

    def _flow_steps(self, flow: Flow, owner: int, path: Path) -> FlowSteps:
        """Flatten ``flow``; yields each subflow to flatten (and is sent its joins)."""
        plan = self.plan
        index = len(plan.flows)
        self.flow_paths[index] = path
        start = plan._add(None, owner, index)
        info = _FlowInfo(flow, start, -1, -1)
        plan.flows.append(info)
        self.flow_providers.append({})
        entry = start
        inner_owner = owner
        if flow.retry is not None:
            retry = flow.retry
            self._check_item(retry)
            # The retry resolves its own arguments from the enclosing levels only.
            entry = info.retry = self._atom_node(retry, owner, index, path)
            plan._link(start, entry)
            inner_owner = entry
        info.children = [child for child, _meta in flow.iter_nodes()]
        yield from self._add_children(info, index, inner_owner, path)
        end = info.end = plan._add(None, inner_owner, index)
        if inner_owner != owner:
            plan.scope_end[inner_owner] = end
        linked_in, linked_out = self._link_children(info, index, flow)
        for pos, (first, last) in enumerate(info.spans):
            if not linked_in[pos]:
                plan._link(entry, first)
            if not linked_out[pos]:
                plan._link(last, end)
        if not info.children:
            plan._link(entry, end)
        return start, end

    def _add_children(self, info: _FlowInfo, index: int, owner: int, path: Path) -> ChildSteps:
        """Give each child of flow ``index`` its nodes and record what each provides."""
        plan = self.plan
        providers = self.flow_providers[index]
        spans = info.spans
        seen = self.seen
        by_name = plan.by_name
        node_pos = plan.node_pos
        atoms = plan.atoms
        # The per-atom work below is _add() and _atom_node() inlined: flows of thousands of
        # atoms spend most of their compile time in this loop.
        succ, pred, owners, node_flow = plan.succ, plan.pred, plan.owner, plan.node_flow
        is_retry, atom_nodes, reports = plan.is_retry, plan.atom_nodes, plan.reports_progress
        classes = _CLASSES
        for pos, child in enumerate(info.children):
            key = id(child)
            if key in seen:
                raise ValueError(
                    f"Already compiled item '{child}' ({type(child)}), duplicate flow/atom"
                )
            seen.add(key)
            cls = type(child)
            kind, retry, progress = classes[cls] if cls in classes else _classify(cls)
            if kind is Flow:
                first, last = yield (child, owner, ((index, pos), path))
                spans.append((first, last))
                self._subflow_provides(providers, pos, first, last)
                continue
            if kind is None:
                raise _unknown(child)
            name = child.name
            if name in by_name:
                raise exc.Duplicate(f"Atoms with duplicate names found: ['{name}']")
            node = len(atoms)
            atoms.append(child)
            succ.append([])
            pred.append([])
            owners.append(owner)
            node_flow.append(index)
            is_retry.append(retry)
            reports.append(progress)
            atom_nodes.append(node)
            by_name[name] = node
            node_pos[node] = (index, pos)
            spans.append((node, node))
            for symbol in child.save_as:
                entries = providers.get(symbol)
                if entries is None:
                    providers[symbol] = [(pos, [node])]
                else:
                    entries.append((pos, [node]))

    def _subflow_provides(
        self, providers: dict[str, list[tuple[int, list[int]]]], pos: int, first: int, last: int
    ) -> None:
        """Record what the subflow at ``pos`` (nodes first..last) provides, latest first."""
        atoms = self.plan.atoms
        symbols: dict[str, list[int]] = {}
        for node in range(last, first - 1, -1):
            atom = atoms[node]
            if atom is not None:
                for symbol in atom.save_as:
                    symbols.setdefault(symbol, []).append(node)
        for symbol, nodes in symbols.items():
            providers.setdefault(symbol, []).append((pos, nodes))

    def _link_children(
        self, info: _FlowInfo, index: int, flow: Flow
    ) -> tuple[list[bool], list[bool]]:
        """Add the flow's links between its children; which children got one in and out."""
        plan = self.plan
        children = info.children
        spans = info.spans
        count = len(children)
        linked_in = [False] * count
        linked_out = [False] * count
        position: dict[int, int] | None = None
        last_pos = -1
        links, succ, pred = info.links, plan.succ, plan.pred
        for u, v, meta in flow.iter_links():
            # Linear flows link consecutive children: guess the next pair before hashing.
            pu = last_pos + 1
            if pu >= count or children[pu] is not u:
                position = position or {id(child): p for p, child in enumerate(children)}
                pu = position[id(u)]
            pv = pu + 1
            if pv >= count or children[pv] is not v:
                position = position or {id(child): p for p, child in enumerate(children)}
                pv = position[id(v)]
            last_pos = pu
            linked_out[pu] = linked_in[pv] = True
            links.append((pu, pv))
            source = spans[pu][1]
            target = spans[pv][0]
            succ[source].append(target)  # plan._link(), inlined: one per link
            pred[target].append(source)
            decider = meta.get("decider") if meta else None
            if decider is not None:
                sources = tuple(plan.atoms_between(*spans[pu]))
                depth = Depth.translate(meta.get("decider_depth") or Depth.ALL)
                plan.deciders.setdefault(target, []).append(
                    Decider(target, sources, decider, depth)
                )
        return linked_in, linked_out


def compile_flow(root: Flow | Atom) -> Plan:
    """Compile ``root`` (a flow, or a lone atom) into a :class:`Plan`."""
    return _Compiler().compile(root)
