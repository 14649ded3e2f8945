"""The abstract flow: a named container of atoms and nested flows.

A flow only describes structure; engines compile it. Each pattern (linear, unordered,
graph) decides how its direct children are ordered, which it reports through
:meth:`Flow.iter_nodes` and :meth:`Flow.iter_links`. Links only ever connect direct
children; a child may itself be a flow.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Self, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Iterator

    from taskflow.atom import Atom
    from taskflow.retry import Retry

__all__ = [
    "LINK_DECIDER",
    "LINK_DECIDER_DEPTH",
    "LINK_INVARIANT",
    "LINK_MANUAL",
    "LINK_REASONS",
    "LINK_RETRY",
    "Flow",
]

#: Link metadata key: the order is part of the pattern and can never be dropped.
LINK_INVARIANT = "invariant"
#: Link metadata key: the link was made explicitly by ``graph_flow.Flow.link``.
LINK_MANUAL = "manual"
#: Link metadata key: the link ties a retry to the atoms it controls.
LINK_RETRY = "retry"
#: Link metadata key: the set of symbols that made a graph flow infer the link.
LINK_REASONS = "reasons"
#: Link metadata key: callable deciding whether the link's target runs.
LINK_DECIDER = "decider"
#: Link metadata key: the :class:`taskflow.deciders.Depth` a negative decision reaches.
LINK_DECIDER_DEPTH = "decider_depth"

#: Anything a flow can hold: an atom (task or retry) or another flow.
Node: TypeAlias = "Atom | Flow"

# Upstream prints its own patterns without their package prefix ("linear_flow.Flow").
_PATTERNS_PREFIX = "taskflow.patterns."


class Flow(abc.ABC):
    """Base of every flow pattern.

    Args:
        name: the flow's name (shown in logs and persisted with its details).
        retry: optional retry controlling the flow's children; it runs before all of
            them. A retry created without a name is renamed ``<name>_retry``.
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        self._name = name
        self._retry = retry
        # Atoms keep ``name=None`` when none was given; only such a retry is renamed.
        if retry is not None and retry.name is None:
            retry.name = f"{name}_retry"

    @property
    def name(self) -> str:
        """The flow's name."""
        return self._name

    @property
    def retry(self) -> Retry | None:
        """The retry that controls this flow's children, if any."""
        return self._retry

    @abc.abstractmethod
    def add(self, *items: Node) -> Self:
        """Add children (atoms or flows); adding a child already present does nothing.

        Returns:
            This flow, so calls can be chained.
        """

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of direct children."""

    def __iter__(self) -> Iterator[Node]:
        """The direct children, in the pattern's order."""
        for node, _meta in self.iter_nodes():
            yield node

    @abc.abstractmethod
    def iter_nodes(self) -> Iterator[tuple[Node, dict[str, Any]]]:
        """Each direct child with its metadata dict, in the pattern's order."""

    @abc.abstractmethod
    def iter_links(self) -> Iterator[tuple[Node, Node, dict[str, Any]]]:
        """Each ordering constraint ``(before, after, metadata)`` between direct children.

        Metadata keys are the ``LINK_*`` constants of this module.
        """

    @property
    def provides(self) -> frozenset[str]:
        """Every symbol that the children (and the retry) produce."""
        provided: set[str] = set()
        if self._retry is not None:
            provided.update(self._retry.provides)
        for node in self:
            provided.update(node.provides)
        return frozenset(provided)

    @property
    @abc.abstractmethod
    def requires(self) -> frozenset[str]:
        """The symbols this flow needs from outside (not produced inside it in time)."""

    def _none_child(self) -> ValueError:
        """The error for ``None`` given to ``add`` (upstream TaskFlow raises ValueError too).

        ``add`` checks its whole call with ``None in items`` (identity first: atoms and flows
        do not override ``==``) before adding anything; ``None`` would otherwise only fail
        when the flow is compiled, far from the mistake.
        """
        return ValueError(
            f"None can not be added to flow '{self._name}': children are atoms or flows"
        )

    def __str__(self) -> str:
        cls = type(self)
        kind = f"{cls.__module__}.{cls.__qualname__}".removeprefix(_PATTERNS_PREFIX)
        return f'"{kind}: {self._name}(len={len(self)})"'


class _ChildrenInOrder(Flow):
    """Children kept in insertion order, each once: what the linear and unordered flows share.

    A dict keeps insertion order and makes "already present?" O(1).
    """

    def __init__(self, name: str, retry: Retry | None = None) -> None:
        super().__init__(name, retry)
        self._children: dict[Node, None] = {}

    def add(self, *items: Node) -> Self:
        """Add children; a child already present stays where it is.

        Raises:
            ValueError: one of ``items`` is None (then none of them is added).
        """
        if None in items:
            raise self._none_child()
        for item in items:
            self._children.setdefault(item, None)
        return self

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._children)

    def iter_nodes(self) -> Iterator[tuple[Node, dict[str, Any]]]:
        for child in self._children:
            yield child, {}
