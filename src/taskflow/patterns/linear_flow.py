"""Linear flow: children run one after the other, in the order they were added."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow import flow

if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = ["Flow"]


class Flow(flow._ChildrenInOrder):
    """Children run sequentially, each after the one added before it.

    Args:
        name: the flow's name.
        retry: optional retry controlling the children.
    """

    def iter_links(self) -> Iterator[tuple[flow.Node, flow.Node, dict[str, Any]]]:
        previous: flow.Node | None = None
        for child in self._children:
            if previous is not None:
                yield previous, child, {flow.LINK_INVARIANT: True}
            previous = child

    @property
    def requires(self) -> frozenset[str]:
        """What the children need that no earlier child (or the retry) provides."""
        required: set[str] = set()
        provided: set[str] = set()
        if self._retry is not None:
            required.update(self._retry.requires)
            provided.update(self._retry.provides)
        for child in self._children:
            required.update(s for s in child.requires if s not in provided)
            provided.update(child.provides)
        return frozenset(required)
