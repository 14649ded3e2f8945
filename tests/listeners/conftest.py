"""Engine loaders shared by the listener tests.

Every test runs real engines; ``load`` is parametrized over the serial engine and the
parallel (threaded) engine where a test's expectations do not depend on ordering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskflow import engines

Loader = Callable[..., Any]


@pytest.fixture(params=["serial", "parallel"])
def load(request: pytest.FixtureRequest) -> Loader:
    """``load(flow, **kw)``: an engine of the parametrized kind."""

    def loader(flow: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("engine", request.param)
        return engines.load(flow, **kwargs)

    return loader


@pytest.fixture
def load_serial() -> Loader:
    """``load(flow, **kw)``: a serial engine (for tests asserting exact event order)."""

    def loader(flow: Any, **kwargs: Any) -> Any:
        return engines.load(flow, engine="serial", **kwargs)

    return loader
