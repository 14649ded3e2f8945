"""A small ordered tree of items, used to describe nested flows."""

from __future__ import annotations

import os
from collections import deque
from typing import TYPE_CHECKING, Any

from taskflow.types import graph

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["FrozenNode", "Node"]


class FrozenNode(Exception):
    """Raised when a frozen node (or one of its children) is modified."""


class Node:
    """A tree node holding ``item``, its children (in order) and free-form metadata.

    Keyword arguments become the node's :attr:`metadata`. Iterating a node yields its direct
    children; ``len(node)`` counts them (a childless node is still truthy).
    """

    #: Drawing characters used by :meth:`pformat`.
    STARTING_PREFIX = ""
    EMPTY_SPACE_SEP = " "
    HORIZONTAL_CONN = "__"
    VERTICAL_CONN = "|"
    LINE_SEP = os.linesep

    def __init__(self, item: Any, **kwargs: Any) -> None:
        self.item = item
        self.parent: Node | None = None
        self.metadata: dict[str, Any] = dict(kwargs)
        self.frozen = False
        self._children: list[Node] = []

    def _check_mutable(self) -> None:
        if self.frozen:
            raise FrozenNode("Frozen node(s) can't be modified")

    def add(self, child: Node) -> None:
        """Append ``child`` (which becomes this node's child).

        Raises:
            FrozenNode: this node is frozen.
        """
        self._check_mutable()
        child.parent = self
        self._children.append(child)

    def freeze(self) -> None:
        """Make this node and everything below it read-only, in place."""
        for node in self.dfs_iter(include_self=True):
            node.frozen = True

    def empty(self) -> bool:
        """Whether this node has no children."""
        return not self._children

    def child_count(self, only_direct: bool = True) -> int:
        """How many children (or, with ``only_direct=False``, descendants) this node has."""
        if only_direct:
            return len(self._children)
        return sum(1 for _node in self.dfs_iter())

    def find_first_match(
        self, matcher: Callable[[Node], bool], only_direct: bool = False, include_self: bool = True
    ) -> Node | None:
        """The first node (depth first, this node first) that ``matcher`` accepts."""
        if only_direct:
            candidates: Iterator[Node] = iter(self._children)
            if include_self:
                candidates = iter([self, *self._children])
        else:
            candidates = self.dfs_iter(include_self=include_self)
        for node in candidates:
            if matcher(node):
                return node
        return None

    def find(self, item: Any, only_direct: bool = False, include_self: bool = True) -> Node | None:
        """The first node holding ``item`` (compared with ``==``), or None."""
        return self.find_first_match(
            lambda node: node.item == item, only_direct=only_direct, include_self=include_self
        )

    def index(self, item: Any) -> int:
        """The position of the direct child holding ``item``.

        Raises:
            ValueError: no direct child holds it.
        """
        for index, child in enumerate(self._children):
            if child.item == item:
                return index
        raise ValueError(f"{item} is not contained in any child")

    def remove(self, item: Any, only_direct: bool = False, include_self: bool = True) -> Node:
        """Detach the first node holding ``item`` from its parent and return it.

        Raises:
            ValueError: no such node (or it is the root, which has no parent to leave).
            FrozenNode: its parent is frozen.
        """
        node = self.find(item, only_direct=only_direct, include_self=include_self)
        if node is None or node.parent is None:
            raise ValueError(f"Item '{item}' not found to remove")
        node.parent._check_mutable()
        node.parent._children = [child for child in node.parent._children if child is not node]
        node.parent = None
        return node

    def disassociate(self) -> int:
        """Detach this node from its parent; returns how many links were removed.

        Raises:
            FrozenNode: this node is frozen (even a root, which has nothing to detach from).
        """
        # Upstream guards the node itself, not its parent: detaching rewrites this node's
        # parent link, and a frozen tree (freeze covers every descendant) stays whole.
        self._check_mutable()
        parent = self.parent
        if parent is None:
            return 0
        kept = [child for child in parent._children if child is not self]
        removed = len(parent._children) - len(kept)
        parent._children = kept
        self.parent = None
        return removed

    def path_iter(self, include_self: bool = True) -> Iterator[Node]:
        """This node (if asked), then its parent, and so on up to the root."""
        node = self if include_self else self.parent
        while node is not None:
            yield node
            node = node.parent

    def dfs_iter(self, include_self: bool = False, right_to_left: bool = True) -> Iterator[Node]:
        """Depth-first, pre-order walk.

        With the default ``right_to_left=True`` children come in insertion order (they are
        pushed on the stack right to left); ``False`` walks the last child first.
        """
        stack = [self] if include_self else self._pushed(self, right_to_left)
        while stack:
            node = stack.pop()
            yield node
            stack.extend(self._pushed(node, right_to_left))

    @staticmethod
    def _pushed(node: Node, right_to_left: bool) -> list[Node]:
        return node._children[::-1] if right_to_left else list(node._children)

    def bfs_iter(self, include_self: bool = False, right_to_left: bool = False) -> Iterator[Node]:
        """Breadth-first walk; by default each level comes last child first, and in insertion
        order with ``right_to_left=True``."""
        queue: deque[Node] = deque()
        if include_self:
            queue.append(self)
        else:
            queue.extend(self._queued(self, right_to_left))
        while queue:
            node = queue.popleft()
            yield node
            queue.extend(self._queued(node, right_to_left))

    @staticmethod
    def _queued(node: Node, right_to_left: bool) -> list[Node]:
        return list(node._children) if right_to_left else node._children[::-1]

    def reverse_iter(self) -> Iterator[Node]:
        """The direct children, last first."""
        return reversed(self._children)

    def pformat(
        self,
        stringify_node: Callable[[Node], str] | None = None,
        linesep: str = LINE_SEP,
        vertical_conn: str = VERTICAL_CONN,
        horizontal_conn: str = HORIZONTAL_CONN,
        empty_space: str = EMPTY_SPACE_SEP,
        starting_prefix: str = STARTING_PREFIX,
    ) -> str:
        """Draw the tree as text, one node per line::

        root
        |__a
        |  |__c
        |__b
        """
        render = stringify_node if stringify_node is not None else (lambda node: str(node.item))
        lines = [starting_prefix + render(self)]
        # Entries: (node, text drawn before its connector, whether it is its parent's last).
        stack = [
            (self._children[i], "", i == len(self._children) - 1)
            for i in range(len(self._children) - 1, -1, -1)
        ]
        while stack:
            node, prefix, is_last = stack.pop()
            lines.append(starting_prefix + prefix + vertical_conn + horizontal_conn + render(node))
            # Below a last child the vertical line stops (upstream pads with one space).
            filler = empty_space if is_last else vertical_conn
            child_prefix = prefix + filler + empty_space * len(horizontal_conn)
            count = len(node._children)
            for index in range(count - 1, -1, -1):
                stack.append((node._children[index], child_prefix, index == count - 1))
        return linesep.join(lines)

    def to_digraph(self) -> graph.OrderedDiGraph:
        """This tree as a directed graph of items (parent -> child).

        Each node's :attr:`metadata` becomes the attributes of its item's graph node (a
        shallow copy: the values are shared).
        """
        result = graph.OrderedDiGraph()
        # Level by level, in insertion order (so node and edge order follow the tree's).
        for node in self.bfs_iter(include_self=True, right_to_left=True):
            result.add_node(node.item)
            # update() rather than **metadata: metadata keys need not be strings.
            result.nodes[node.item].update(node.metadata)
            if node.parent is not None and node is not self:
                result.add_edge(node.parent.item, node.item)
        return result

    def __iter__(self) -> Iterator[Node]:
        return iter(self._children)

    def __len__(self) -> int:
        return len(self._children)

    def __bool__(self) -> bool:
        # A leaf has no children but is still a node: keep ``if node:`` meaning "not None".
        return True

    def __getitem__(self, index: int) -> Node:
        return self._children[index]

    def __contains__(self, item: object) -> bool:
        return self.find(item) is not None

    def __repr__(self) -> str:
        return f"<Node {self.item!r} ({len(self._children)} children)>"
