"""Finds the implementation behind a plugin name (a backend, engine, jobboard, conductor).

Every ``backends.fetch``-style helper calls :func:`load`. Built-in implementations are
looked up in a table first, so they work without installed package metadata and without
importing anything else; then ``importlib.metadata`` entry points of the same group (the
group names are upstream TaskFlow's, so third-party plugins keep working). Only the chosen
implementation's module is imported.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from taskflow import exceptions as exc

__all__ = ["BUILTINS", "load"]

#: group -> {name -> "module:attribute"} for implementations shipped with taskflow.
BUILTINS: dict[str, dict[str, str]] = {
    "taskflow.persistence": {
        "memory": "taskflow.persistence.backends.impl_memory:MemoryBackend",
        "sqlite": "taskflow.persistence.backends.impl_sqlalchemy:SQLAlchemyBackend",
        "mysql": "taskflow.persistence.backends.impl_sqlalchemy:SQLAlchemyBackend",
        "postgresql": "taskflow.persistence.backends.impl_sqlalchemy:SQLAlchemyBackend",
        "zookeeper": "taskflow.persistence.backends.impl_zookeeper:ZkBackend",
        "dir": "taskflow.persistence.backends.impl_dir:DirBackend",
        "file": "taskflow.persistence.backends.impl_dir:DirBackend",
    },
    "taskflow.jobboards": {
        "sqlite": "taskflow.jobs.backends.impl_sqlalchemy:SQLAlchemyJobBoard",
        "postgresql": "taskflow.jobs.backends.impl_sqlalchemy:SQLAlchemyJobBoard",
        "mysql": "taskflow.jobs.backends.impl_sqlalchemy:SQLAlchemyJobBoard",
        "redis": "taskflow.jobs.backends.impl_redis:RedisJobBoard",
        "etcd": "taskflow.jobs.backends.impl_etcd:EtcdJobBoard",
        "zookeeper": "taskflow.jobs.backends.impl_zookeeper:ZookeeperJobBoard",
    },
    "taskflow.conductors": {
        "blocking": "taskflow.conductors.backends.impl_blocking:BlockingConductor",
        "nonblocking": "taskflow.conductors.backends.impl_nonblocking:NonBlockingConductor",
    },
    "taskflow.engines": {
        "default": "taskflow.engines.action_engine.engine:SerialActionEngine",
        "serial": "taskflow.engines.action_engine.engine:SerialActionEngine",
        "parallel": "taskflow.engines.action_engine.engine:ParallelActionEngine",
        "worker-based": "taskflow.engines.worker_based.engine:WorkerBasedActionEngine",
        "workers": "taskflow.engines.worker_based.engine:WorkerBasedActionEngine",
    },
}


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj


def load(group: str, name: str) -> Any:
    """The object registered as ``name`` in plugin ``group``.

    Args:
        group: entry point group, e.g. ``'taskflow.persistence'``.
        name: plugin name within the group, e.g. ``'memory'``.

    Raises:
        taskflow.exceptions.NotFound: nothing is registered under that name.
        ImportError: the implementation's module (or an optional driver it needs) is
            missing; the message names what to install.
    """
    target = BUILTINS.get(group, {}).get(name)
    if target is not None:
        return _import(target)
    for entry_point in metadata.entry_points(group=group, name=name):
        return entry_point.load()
    raise exc.NotFound(f"No '{group}' driver found, looking for '{name}'")
