"""Engines run flows: ``load`` one (or ``run`` it directly), resume one from its details."""

from __future__ import annotations

from taskflow.engines.base import Engine
from taskflow.engines.helpers import (
    ENGINE_DEFAULT,
    ENGINES_NAMESPACE,
    flow_from_detail,
    load,
    load_from_detail,
    load_from_factory,
    run,
    save_factory_details,
)

__all__ = [
    "ENGINES_NAMESPACE",
    "ENGINE_DEFAULT",
    "Engine",
    "flow_from_detail",
    "load",
    "load_from_detail",
    "load_from_factory",
    "run",
    "save_factory_details",
]
