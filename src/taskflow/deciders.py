"""How far a decider's "no" reaches when it skips part of a graph flow.

A decider is attached to a graph flow link (``graph_flow.Flow.link(u, v, decider=...)``).
When it returns a falsy value, the link's target is skipped (its state and intention become
IGNORE), together with more or fewer of the atoms after it depending on the link's
:class:`Depth`.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Depth", "pick_widest"]


class Depth(enum.StrEnum):
    """Which atoms a negative decision skips, from the widest to the narrowest."""

    #: The target and everything after it, nested flows included (the default).
    ALL = "ALL"
    #: The target and what follows it in the same flow, without entering nested flows
    #: or crossing retries.
    FLOW = "FLOW"
    #: The target and the tasks directly after it.
    NEIGHBORS = "NEIGHBORS"
    #: The target atom only.
    ATOM = "ATOM"

    @classmethod
    def translate(cls, desired_depth: object) -> Depth:
        """Turn a depth or its name (any letter case) into a :class:`Depth`.

        Args:
            desired_depth: a :class:`Depth` member or a string such as ``"flow"``.

        Returns:
            The matching member.

        Raises:
            TypeError: ``desired_depth`` is not a string.
            ValueError: the string names no depth.
        """
        if isinstance(desired_depth, cls):
            return desired_depth
        if not isinstance(desired_depth, str):
            raise TypeError(
                f"Unexpected desired depth type, string type expected, not {type(desired_depth)}"
            )
        try:
            return cls(desired_depth.upper())
        except ValueError:
            names = sorted(member.value for member in cls)
            raise ValueError(
                f"Unexpected decider depth value, one of {names} (case-insensitive)"
                f" is expected and not {desired_depth!r}"
            ) from None


# Position of each depth from widest (0) to narrowest; member order already says this.
_WIDTH_RANK = {depth: rank for rank, depth in enumerate(Depth)}


def pick_widest(depths: Iterable[Depth]) -> Depth:
    """The widest of several depths (used when several deciders vote "no" at once).

    Raises:
        ValueError: ``depths`` is empty or holds something that is not a depth.
    """
    widest: Depth | None = None
    for depth in depths:
        rank = _WIDTH_RANK.get(depth)
        if rank is None:
            raise ValueError(f"Unknown decider depth {depth!r}")
        if widest is None or rank < _WIDTH_RANK[widest]:
            widest = depth
    if widest is None:
        raise ValueError("At least one decider depth is needed to pick the widest")
    return widest
