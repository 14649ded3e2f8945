"""Entity: a named participant with metadata."""

from __future__ import annotations

from taskflow.types.entity import Entity


def test_entity_fields_and_to_dict():
    e = Entity("conductor", "c1", {"host": "h"})
    assert (e.kind, e.name, e.metadata) == ("conductor", "c1", {"host": "h"})
    assert e.to_dict() == {"kind": "conductor", "name": "c1", "metadata": {"host": "h"}}
    assert "c1" in repr(e)
