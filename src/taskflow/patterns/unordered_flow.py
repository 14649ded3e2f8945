"""Unordered flow: children have no order between them and may run at the same time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow import flow

if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = ["Flow"]


class Flow(flow._ChildrenInOrder):
    """Children are independent: none may consume another's results.

    Two children providing the same symbol are accepted here; consumers outside the
    flow then see an ambiguity when the engine validates.

    Args:
        name: the flow's name.
        retry: optional retry controlling the children.
    """

    def iter_links(self) -> Iterator[tuple[flow.Node, flow.Node, dict[str, Any]]]:
        return iter(())

    @property
    def requires(self) -> frozenset[str]:
        """Everything any child needs, minus what the retry provides."""
        required: set[str] = set()
        retry_provides: frozenset[str] = frozenset()
        if self._retry is not None:
            required.update(self._retry.requires)
            retry_provides = frozenset(self._retry.provides)
        for child in self._children:
            required.update(s for s in child.requires if s not in retry_provides)
        return frozenset(required)
