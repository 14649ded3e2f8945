"""Conductors are board-agnostic: the same outcomes, fast pickup, fencing token and recovery
from a killed conductor on the Redis, ZooKeeper and etcd boards (SQL boards: the other
modules). Persistence is SQLite under ``tmp_path``."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import states
from tests.conductors import flows
from tests.conductors.conftest import LEASE, PATIENCE, Env, record_events, wait_until
from tests.helpers import services

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextlib.contextmanager
def _redis(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], float]]:
    from tests.helpers.redis_boards import isolated_namespace

    services.need_module("redis", "redis")
    url = request.getfixturevalue("redis_url")
    with isolated_namespace(url, prefix="tfcond") as (conf, _namespace):
        yield {**conf, "lease": LEASE}, 0.0


@contextlib.contextmanager
def _zookeeper(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], float]]:
    from tests.helpers.databases import isolated_zookeeper_root

    hosts = request.getfixturevalue("zk_hosts")
    with isolated_zookeeper_root(hosts, prefix="tfcond") as root:
        # Its claims lapse with their lease, well before the holder's session (4 s at least).
        conf = {"board": "zookeeper", "hosts": hosts, "path": f"{root}/jobs", "lease": LEASE}
        yield conf, 0.0


@contextlib.contextmanager
def _etcd(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], float]]:
    from tests.helpers.etcd import etcd_path

    address = request.getfixturevalue("etcd_address")
    with etcd_path(address, request.node.name) as (conf, _path):
        # etcd grants no lease shorter than 2 s (whole seconds), and expires leases late by
        # up to its own check interval (500 ms).
        yield {**conf, "lease": LEASE}, ETCD_MIN_LEASE - LEASE + 0.5


#: The shortest lease etcd grants (seconds), whatever the board asks for.
ETCD_MIN_LEASE = 2.0

_BOARDS = {"redis": _redis, "zookeeper": _zookeeper, "etcd": _etcd}


@pytest.fixture(params=[pytest.param(kind, marks=getattr(pytest.mark, kind)) for kind in _BOARDS])
def board_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Env, float]]:
    """An :class:`Env` on a board of the kind, and how late a dead holder's claim may lapse."""
    with _BOARDS[request.param](request) as (conf, slack):
        environment = Env(tmp_path, conf, f"sqlite:///{tmp_path / 'flows.db'}")
        try:
            yield environment, slack
        finally:
            environment.close()


def test_outcomes_pickup_and_fencing_on_every_board(board_env: tuple[Env, float]):
    env, _ = board_env
    conductor = env.conductor("nonblocking", wait_timeout=5.0, max_attempts=1)
    events = record_events(conductor)
    tokens: list[int] = []
    conductor.notifier.register(
        "running_start", lambda event, details: tokens.append(details["job"].token)
    )
    picked: list[float] = []
    conductor.notifier.register(
        "compilation_start", lambda event, details: picked.append(time.monotonic())
    )
    env.start(conductor, max_dispatches=3)
    time.sleep(0.3)  # idle: the first job is picked up on the board's wake-up
    posted = time.monotonic()
    ok = env.post(flows.ok, "ok")
    wait_until(lambda: picked)
    pickup = picked[0] - posted
    broken = env.post(flows.broken, "broken")
    outage = env.post(flows.outage, "outage")
    assert conductor.wait(PATIENCE)
    assert pickup < 1.0, pickup  # far below wait_timeout (5 s)
    finished = {name: event for event, name in events if event.startswith("job_")}
    assert finished == {"ok": "job_consumed", "broken": "job_trashed", "outage": "job_trashed"}
    assert env.flow_detail(ok).state == states.SUCCESS
    trash = env.trash()
    assert trash[broken.uuid] == "ValueError: this factory is broken"
    assert "StorageFailure: database unreachable" in (trash[outage.uuid] or "")
    with contextlib.closing(env.persistence.get_connection()) as conn:
        ownership = conn.read_ownership(env.flow_detail(ok).uuid)
    assert ownership is not None
    assert ownership.fence_token == tokens[0]


def test_a_killed_conductors_job_is_finished_by_another_on_every_board(
    board_env: tuple[Env, float],
):
    env, slack = board_env
    job = env.post(flows.gated, "gated")
    first = env.child(name="first")
    wait_until(lambda: [p for e, n, p in flows.read_journal(env.journal) if p == first.pid])
    second = env.child(name="second")
    second.expect(lambda line: line.get("ready") is True)
    os.kill(first.pid, signal.SIGKILL)
    killed = time.monotonic()
    env.open_gate()
    assert job.wait(timeout=PATIENCE)
    elapsed = time.monotonic() - killed
    assert elapsed < LEASE + 1.0 + slack, f"took {elapsed:.2f}s"
    assert env.flow_detail(job).state == states.SUCCESS
    starts = [p for e, n, p in flows.read_journal(env.journal) if e == "start" and n == "first"]
    assert starts == [first.pid, second.pid]
