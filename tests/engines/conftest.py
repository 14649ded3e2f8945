"""Fixtures loading engines of every local kind.

``load`` is parametrized over the serial engine and the parallel engine on threads, on child
processes and on a user's ``ThreadPoolExecutor``; ``load_local`` only over the kinds whose
tasks share this process (for tasks that call back into the engine or the test).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskflow import engines

ALL_KINDS = ("serial", "threads", "processes", "executor")
LOCAL_KINDS = ("serial", "threads", "executor")

Loader = Callable[..., Any]


def _loader(kind: str, pools: list[cf.Executor]) -> Loader:
    def load(flow: Any, **kwargs: Any) -> Any:
        if kind == "serial":
            kwargs.setdefault("engine", "serial")
        elif kind == "threads":
            kwargs.setdefault("engine", "parallel")
            kwargs.setdefault("executor", "threads")
        elif kind == "processes":
            kwargs.setdefault("engine", "parallel")
            kwargs.setdefault("executor", "processes")
            kwargs.setdefault("max_workers", 2)
        else:
            pool = cf.ThreadPoolExecutor(4)
            pools.append(pool)
            kwargs.setdefault("engine", "parallel")
            kwargs.setdefault("executor", pool)
        return engines.load(flow, **kwargs)

    return load


@pytest.fixture(params=ALL_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def load(engine_kind: str) -> Iterator[Loader]:
    """``load(flow, **kw)`` → an engine of the parametrized kind (all local kinds)."""
    pools: list[cf.Executor] = []
    yield _loader(engine_kind, pools)
    for pool in pools:
        pool.shutdown(wait=True)


@pytest.fixture(params=LOCAL_KINDS)
def load_local(request: pytest.FixtureRequest) -> Iterator[Loader]:
    """Like ``load`` but only kinds running tasks in this process."""
    pools: list[cf.Executor] = []
    yield _loader(str(request.param), pools)
    for pool in pools:
        pool.shutdown(wait=True)


@pytest.fixture
def memory_backend() -> Any:
    from taskflow.persistence import backends

    return backends.fetch({"connection": "memory://"})
