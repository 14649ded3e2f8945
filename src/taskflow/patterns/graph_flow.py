"""Graph flow: children ordered by the data they exchange, plus explicit links.

Theory of operation
-------------------
Children are the nodes of a directed acyclic graph kept as two adjacency dicts
(``_succ`` and ``_pred``, sharing one metadata dict per edge). Two indexes map each
symbol to the children that provide it and to those that require it, so adding a child
finds its links by looking up its own symbols instead of scanning the whole graph.

Adding child ``n`` (one at a time, in argument order):

* ``resolve_requires``: each symbol ``n`` needs that the flow's retry does not provide
  is linked from its single provider (several providers is ambiguous).
* ``resolve_existing``: ``n`` is linked to each child that needs one of its symbols and
  still lacks it. A child present before the call lacks a symbol if no ancestor gave it
  at the start of the call and no link of the call brought it since; a child added
  earlier by the same call lacks what had no provider when it was added (and is not
  considered at all when the call does not resolve requirements).

A cycle can only appear when ``n`` gets both incoming and outgoing edges; then one
depth-first search from ``n``'s successors looks for its predecessors. A cycle is
reported once the whole call is processed (an ambiguity found later wins). Nothing is
ever copied: a failing ``add`` removes the children it had inserted, so the flow is left
exactly as it was.

The symbols of each child are recorded when it is added. A nested flow that grows later
(its length changes) is re-indexed before the next lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from taskflow import deciders, exceptions, flow

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator

    from taskflow.retry import Retry

__all__ = ["Flow", "TargetedFlow"]

_CYCLE_MESSAGE = (
    "No path through the node(s) in the graph produces an ordering that will allow for"
    " logical edge traversal"
)

_Meta = dict[str, Any]


class Flow(flow.Flow):
    """Children ordered by their data dependencies and by explicit :meth:`link` calls.

    Args:
        name: the flow's name.
        retry: optional retry controlling the children; the symbols it provides satisfy
            the children's requirements without any link.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        # Invariant: _nodes, _succ, _pred, _provides_of and _requires_of have the same
        # keys; _succ[u][v] is _pred[v][u] (one shared metadata dict per edge).
        self._nodes: dict[flow.Node, _Meta] = {}
        self._succ: dict[flow.Node, dict[flow.Node, _Meta]] = {}
        self._pred: dict[flow.Node, dict[flow.Node, _Meta]] = {}
        self._provides_of: dict[flow.Node, tuple[str, ...]] = {}
        self._requires_of: dict[flow.Node, tuple[str, ...]] = {}
        # Insertion rank of each child (only ever compared, never contiguous).
        self._position: dict[flow.Node, int] = {}
        self._added = 0
        # symbol -> children, in insertion order (dicts used as ordered sets).
        self._providers: dict[str, dict[flow.Node, None]] = {}
        self._requirers: dict[str, dict[flow.Node, None]] = {}
        # Nested flows -> their length when last indexed (to notice later growth).
        self._subflows: dict[flow.Flow, int] = {}
        self._retry_provides: frozenset[str] = (
            frozenset(retry.provides) if retry is not None else frozenset()
        )
        # Topological order of the visible nodes; None when the graph changed.
        self._order: list[flow.Node] | None = None

    # -- building ---------------------------------------------------------------

    def add(
        self, *nodes: flow.Node, resolve_requires: bool = True, resolve_existing: bool = True
    ) -> Self:
        """Add children and infer links from what they require and provide.

        Args:
            *nodes: atoms or flows; those already present are skipped.
            resolve_requires: link each new child from the single child providing each
                symbol it requires.
            resolve_existing: link each new child to the children already present that
                require one of its symbols and do not get it from an ancestor yet.

        Returns:
            This flow.

        Raises:
            AmbiguousDependency: several children provide a symbol a new child requires.
            DependencyFailure: the inferred links would form a cycle. The flow is then
                left unchanged.
            ValueError: one of ``nodes`` is None (then none of them is added).
        """
        if None in nodes:
            raise self._none_child()
        self._refresh_subflows()
        batch = _Batch()
        has_cycle = False
        try:
            for node in nodes:
                if node in self._nodes:
                    continue
                provides, requires = _symbols_of(node)
                incoming: dict[flow.Node, set[str]] = {}
                if resolve_requires:
                    incoming, unresolved = self._find_providers(node, requires)
                outgoing = self._find_requirers(provides, batch) if resolve_existing else {}
                if not has_cycle and incoming and outgoing:
                    has_cycle = self._reaches(outgoing, incoming)
                self._insert(node, provides, requires)
                batch.added.append(node)
                batch.fresh.add(node)
                if resolve_requires:
                    batch.open[node] = unresolved
                for provider, reasons in incoming.items():
                    self._add_edge(provider, node, {flow.LINK_REASONS: reasons})
                for requirer, reasons in outgoing.items():
                    self._add_edge(node, requirer, {flow.LINK_REASONS: reasons})
                    batch.satisfy(requirer, reasons)
            # Reported last, like a check of the finished graph: an ambiguity found
            # later in the same call takes precedence.
            if has_cycle:
                raise exceptions.DependencyFailure(_CYCLE_MESSAGE)
        except BaseException:
            for node in reversed(batch.added):
                self._remove(node)
            raise
        finally:
            if batch.added:
                self._changed()
        return self

    def link(
        self,
        u: flow.Node,
        v: flow.Node,
        decider: Callable[[dict[str, Any]], Any] | None = None,
        decider_depth: deciders.Depth | str | None = None,
    ) -> Self:
        """Make ``v`` run after ``u``, optionally only when ``decider`` agrees.

        Linking an already linked pair updates that link's metadata.

        Args:
            u: the child that runs first.
            v: the child that runs after it.
            decider: called with ``{atom name: result}`` of the atoms before ``v``; a
                falsy answer skips ``v`` (and more, see ``decider_depth``).
            decider_depth: how much a negative decision skips (a
                :class:`~taskflow.deciders.Depth` or its name); the engine uses
                ``Depth.ALL`` when a decider is given without one.

        Returns:
            This flow.

        Raises:
            ValueError: ``u`` or ``v`` is not a child, ``decider`` is not callable,
                ``decider_depth`` comes without ``decider`` or names no depth.
            TypeError: ``decider_depth`` is neither a depth nor a string.
            DependencyFailure: the link would close a cycle.
        """
        if u not in self._nodes:
            raise ValueError(f"Node '{u}' not found to link from")
        if v not in self._nodes:
            raise ValueError(f"Node '{v}' not found to link to")
        if decider is not None and not callable(decider):
            raise ValueError("Decider boolean callback must be callable")
        depth: deciders.Depth | None = None
        if decider_depth is not None:
            if decider is None:
                raise ValueError("Decider depth requires a decider to be provided along with it")
            depth = deciders.Depth.translate(decider_depth)
        meta = self._succ[u].get(v)
        if meta is None:
            if u is v or self._reaches((v,), (u,)):
                raise exceptions.DependencyFailure(_CYCLE_MESSAGE)
            meta = {}
            self._add_edge(u, v, meta)
            self._changed()
        meta[flow.LINK_MANUAL] = True
        if decider is not None:
            meta[flow.LINK_DECIDER] = decider
        if depth is not None:
            meta[flow.LINK_DECIDER_DEPTH] = depth
        return self

    # -- reading ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._visible())

    def __iter__(self) -> Iterator[flow.Node]:
        return iter(self._topological_order())

    def iter_nodes(self) -> Iterator[tuple[flow.Node, dict[str, Any]]]:
        """Each child with its metadata, in a topological order of the links."""
        nodes = self._nodes
        for node in self._topological_order():
            yield node, nodes[node]

    def iter_links(self) -> Iterator[tuple[flow.Node, flow.Node, dict[str, Any]]]:
        """Each link ``(u, v, metadata)``, grouped by ``u`` in insertion order.

        Metadata holds ``reasons`` (symbols that inferred the link), ``manual`` (made
        by :meth:`link`), ``decider`` and ``decider_depth`` as applicable.
        """
        visible = self._visible()
        whole = visible is self._nodes
        for u in visible:
            for v, meta in self._succ[u].items():
                if whole or v in visible:
                    yield u, v, meta

    @property
    def provides(self) -> frozenset[str]:
        """Every symbol the (visible) children and the retry produce."""
        self._refresh_subflows()
        provided = set(self._retry_provides)
        for node in self._visible():
            provided.update(self._provides_of[node])
        return frozenset(provided)

    @property
    def requires(self) -> frozenset[str]:
        """Symbols some child needs that neither an ancestor of it nor the retry gives."""
        self._refresh_subflows()
        required: set[str] = set()
        if self._retry is not None:
            required.update(self._retry.requires)
        for node in self._visible():
            required.update(self._unsatisfied(node))
        return frozenset(required)

    # -- internals --------------------------------------------------------------

    def _visible(self) -> Collection[flow.Node]:
        """The children this flow currently exposes (all of them here)."""
        return self._nodes

    def _changed(self) -> None:
        """Forget what was derived from the edges."""
        self._order = None

    def _insert(
        self, node: flow.Node, provides: tuple[str, ...], requires: tuple[str, ...]
    ) -> None:
        self._nodes[node] = {}
        self._position[node] = self._added
        self._added += 1
        self._succ[node] = {}
        self._pred[node] = {}
        self._index(node, provides, requires)
        if isinstance(node, flow.Flow):
            self._subflows[node] = len(node)

    def _remove(self, node: flow.Node) -> None:
        for pred in self._pred.pop(node):
            del self._succ[pred][node]
        for succ in self._succ.pop(node):
            del self._pred[succ][node]
        self._unindex(node)
        del self._nodes[node]
        del self._position[node]
        if isinstance(node, flow.Flow):
            del self._subflows[node]

    def _index(self, node: flow.Node, provides: tuple[str, ...], requires: tuple[str, ...]) -> None:
        self._provides_of[node] = provides
        self._requires_of[node] = requires
        for symbol in provides:
            self._providers.setdefault(symbol, {})[node] = None
        for symbol in requires:
            self._requirers.setdefault(symbol, {})[node] = None

    def _unindex(self, node: flow.Node) -> None:
        for index, symbols in (
            (self._providers, self._provides_of.pop(node)),
            (self._requirers, self._requires_of.pop(node)),
        ):
            for symbol in symbols:
                holders = index[symbol]
                del holders[node]
                if not holders:
                    del index[symbol]

    def _refresh_subflows(self) -> None:
        """Re-index nested flows whose length changed since they were indexed."""
        for sub, seen in self._subflows.items():
            size = len(sub)
            if size != seen:
                self._unindex(sub)
                self._index(sub, *_symbols_of(sub))
                self._subflows[sub] = size

    def _add_edge(self, u: flow.Node, v: flow.Node, meta: _Meta) -> None:
        self._succ[u][v] = meta
        self._pred[v][u] = meta

    def _find_providers(
        self, node: flow.Node, requires: Iterable[str]
    ) -> tuple[dict[flow.Node, set[str]], set[str]]:
        """Links into a new child from the sole provider of each symbol it requires.

        Returns:
            The links (provider -> symbols) and the symbols that nothing provides yet.
        """
        incoming: dict[flow.Node, set[str]] = {}
        unresolved: set[str] = set()
        for symbol in requires:
            if symbol in self._retry_provides:
                continue
            providers = self._providers.get(symbol)
            if not providers:
                unresolved.add(symbol)
                continue
            if len(providers) > 1:
                names = sorted(str(p.name) for p in providers)
                raise exceptions.AmbiguousDependency(
                    f"Resolution error detected when adding '{node.name}', multiple"
                    f" providers {names} found for required symbol '{symbol}'"
                )
            incoming.setdefault(next(iter(providers)), set()).add(symbol)
        return incoming, unresolved

    def _find_requirers(self, provides: Iterable[str], batch: _Batch) -> dict[flow.Node, set[str]]:
        """Links from a new child to the children still lacking one of its symbols.

        A child present before this ``add`` call lacks a symbol when none of its
        ancestors provided it at the start of the call and no child of the call was
        linked to it for it since. A child added by the call lacks the symbols that had
        no provider when it was added (if it resolved its requirements at all).
        """
        found: dict[flow.Node, set[str]] = {}
        fresh = batch.fresh
        for symbol in provides:
            if symbol in self._retry_provides:
                continue
            for requirer in self._requirers.get(symbol, ()):
                if requirer in fresh:
                    if symbol not in batch.open.get(requirer, ()):
                        continue
                elif symbol in batch.linked.get(requirer, ()) or self._provided_by_ancestor(
                    requirer, symbol, fresh
                ):
                    continue
                found.setdefault(requirer, set()).add(symbol)
        if len(found) < 2:
            return found
        # Link in the order the requirers were added, whatever the symbol order.
        position = self._position
        return {r: found[r] for r in sorted(found, key=position.__getitem__)}

    def _provided_by_ancestor(
        self, node: flow.Node, symbol: str, skip: Collection[flow.Node]
    ) -> bool:
        """Whether an ancestor of ``node`` provides ``symbol``, ignoring ``skip`` nodes
        (and paths through them)."""
        providers = self._providers.get(symbol)
        if not providers:
            return False
        candidates = {p for p in providers if p is not node and p not in skip}
        if not candidates:
            return False
        preds = self._pred[node]
        # Inferred links come straight from the provider, so check parents first.
        if any(p in preds for p in candidates):
            return True
        seen: set[flow.Node] = set()
        stack = [p for p in preds if p not in skip]
        while stack:
            current = stack.pop()
            if current in candidates:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(p for p in self._pred[current] if p not in skip)
        return False

    def _unsatisfied(self, node: flow.Node) -> list[str]:
        """The requirements of ``node`` that no ancestor and not the retry provides."""
        missing: list[str] = []
        preds = self._pred[node]
        ancestors: set[flow.Node] | None = None
        for symbol in self._requires_of[node]:
            if symbol in self._retry_provides:
                continue
            providers = self._providers.get(symbol)
            if not providers:
                missing.append(symbol)
                continue
            if any(p in preds for p in providers):
                continue
            if ancestors is None:
                ancestors = self._ancestors(node)
            if not any(p in ancestors for p in providers):
                missing.append(symbol)
        return missing

    def _ancestors(self, node: flow.Node) -> set[flow.Node]:
        seen: set[flow.Node] = set()
        stack = list(self._pred[node])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._pred[current])
        return seen

    def _reaches(self, starts: Iterable[flow.Node], targets: Collection[flow.Node]) -> bool:
        """Whether a path leads from one of ``starts`` to one of ``targets``."""
        seen: set[flow.Node] = set()
        stack = list(starts)
        while stack:
            current = stack.pop()
            if current in targets:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(self._succ[current])
        return False

    def _topological_order(self) -> list[flow.Node]:
        """Visible nodes generation by generation (Kahn), each in insertion order."""
        if self._order is not None:
            return self._order
        visible = self._visible()
        # Visible sets are closed under ancestors, so every parent counts.
        pending = {node: len(self._pred[node]) for node in visible}
        generation = [node for node, count in pending.items() if count == 0]
        order = list(generation)
        while generation:
            following: list[flow.Node] = []
            for node in generation:
                for succ in self._succ[node]:
                    count = pending.get(succ)
                    if count is None:
                        continue
                    if count == 1:
                        following.append(succ)
                    pending[succ] = count - 1
            order.extend(following)
            generation = following
        self._order = order
        return order


class TargetedFlow(Flow):
    """A graph flow that can be narrowed to one target child and what it depends on.

    Args:
        name: the flow's name.
        retry: optional retry controlling the children.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        self._target: flow.Node | None = None
        # The target and its ancestors in insertion order; None when not computed yet.
        self._subgraph: dict[flow.Node, None] | None = None

    def set_target(self, target_node: flow.Node) -> None:
        """Expose only ``target_node`` and its transitive predecessors.

        Raises:
            ValueError: ``target_node`` is not a child of this flow.
        """
        if target_node not in self._nodes:
            raise ValueError(f"Node '{target_node}' not found")
        self._target = target_node
        self._changed()

    def reset_target(self) -> None:
        """Expose every child again."""
        self._target = None
        self._changed()

    def _changed(self) -> None:
        super()._changed()
        self._subgraph = None

    def _visible(self) -> Collection[flow.Node]:
        target = self._target
        if target is None:
            return self._nodes
        if self._subgraph is None:
            keep = self._ancestors(target)
            keep.add(target)
            self._subgraph = dict.fromkeys(n for n in self._nodes if n in keep)
        return self._subgraph


class _Batch:
    """What one ``add`` call has done so far (undone if the call fails)."""

    __slots__ = ("added", "fresh", "linked", "open")

    def __init__(self) -> None:
        self.added: list[flow.Node] = []
        self.fresh: set[flow.Node] = set()
        # Children of this call that resolved their requirements -> symbols still unmet.
        self.open: dict[flow.Node, set[str]] = {}
        # Children present before the call -> symbols this call linked to them.
        self.linked: dict[flow.Node, set[str]] = {}

    def satisfy(self, requirer: flow.Node, symbols: set[str]) -> None:
        """Record that ``requirer`` got ``symbols`` through a new link."""
        if requirer in self.fresh:
            self.open[requirer] -= symbols
        else:
            self.linked.setdefault(requirer, set()).update(symbols)


def _symbols_of(node: flow.Node) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What ``node`` provides and requires, captured when it is indexed.

    Flows report frozensets; sorting them keeps link order independent of hashing.
    """
    provides, requires = node.provides, node.requires
    if isinstance(provides, frozenset):
        return tuple(sorted(provides)), tuple(sorted(requires))
    return tuple(provides), tuple(requires)
