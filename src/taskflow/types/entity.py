"""A named participant (a conductor, a worker...) described to others, e.g. on a jobboard."""

from __future__ import annotations

from typing import Any

__all__ = ["Entity"]


class Entity:
    """Something that takes part in running flows, with free-form metadata.

    Args:
        kind: what sort of entity this is (``'conductor'`` for instance).
        name: its name, unique among entities of the same kind.
        metadata: details about it (host, pid, version...).
    """

    __slots__ = ("kind", "metadata", "name")

    def __init__(self, kind: str, name: str, metadata: dict[str, Any]) -> None:
        self.kind = kind
        self.name = name
        self.metadata = metadata

    def to_dict(self) -> dict[str, Any]:
        """The entity as ``{'kind': ..., 'name': ..., 'metadata': ...}``."""
        return {"kind": self.kind, "name": self.name, "metadata": self.metadata}

    def __repr__(self) -> str:
        return f"Entity(kind={self.kind!r}, name={self.name!r}, metadata={self.metadata!r})"
