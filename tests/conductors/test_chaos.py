"""High availability under chaos, on every board: conductor processes SIGKILLed at random
moments mid-job (replaced, some under the same name) and one SIGSTOPped past its lease, yet
every job is done exactly once, right, and no task is worked by two live holders at once.

The schedule is drawn from a seed printed by each test (shown with a failure);
``TASKFLOW_CHAOS_SEED=<seed>`` replays it. See ``chaos.py`` for what is checked, and
``benchmarks/chaos.py`` for bigger runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conductors.chaos import BOARDS, Chaos, Plan, board_env, seed
from tests.helpers import services

if TYPE_CHECKING:
    from pathlib import Path

#: The fixture giving each board kind's server address (None: SQLite, no server).
_ADDRESSES = {
    "sqlite": None,
    "postgresql": "postgres_url",
    "redis": "redis_url",
    "zookeeper": "zk_hosts",
    "etcd": "etcd_address",
}
_MARKS = {"postgresql": "postgres", "redis": "redis", "zookeeper": "zookeeper", "etcd": "etcd"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(kind, marks=[getattr(pytest.mark, _MARKS[kind])] if kind in _MARKS else [])
        for kind in BOARDS
    ],
)
def test_every_job_is_done_once_despite_kills_and_a_pause(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
):
    if kind == "redis":
        services.need_module("redis", "redis")
    fixture = _ADDRESSES[kind]
    address = None if fixture is None else request.getfixturevalue(fixture)
    with board_env(kind, tmp_path, address, request.node.name) as env:
        chaos = Chaos(env, Plan(seed=seed()))
        chaos.run()
        chaos.check()
