"""One owner per running flow: concurrent resumes, takeovers and fencing, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskflow import engines, exceptions, states, task
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends
from tests.helpers import services
from tests.helpers.databases import isolated_postgres, isolated_zookeeper_root
from tests.helpers.ownership import saved_flow

CHILD = Path(__file__).with_name("ownership_child.py")
ROOT = Path(__file__).resolve().parents[2]


def _conf(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "sqlite":
        services.need_module("sqlalchemy", "database")
        yield {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    elif kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        with isolated_postgres(url) as isolated:
            yield {"connection": isolated}
    elif kind == "dir":
        yield {"connection": f"dir://{tmp_path / 'store'}"}
    elif kind == "zookeeper":
        hosts = request.getfixturevalue("zk_hosts")
        services.need_module("kazoo", "zookeeper")
        with isolated_zookeeper_root(hosts) as root:
            yield {"connection": "zookeeper", "hosts": hosts, "path": root}
    else:
        yield {"connection": "memory://"}


@pytest.fixture(params=["sqlite", "postgres", "dir", "zookeeper", "memory"])
def conf(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A backend of each kind, shared by the engines (threads) of one test."""
    yield from _conf(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "postgres", "dir", "zookeeper"])
def shared_conf(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A backend several processes share."""
    yield from _conf(request.param, request, tmp_path)


def _spawn(conf: dict[str, Any], flow_uuid: str, journal: Path, *extra: str, **env: str) -> Any:
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(conf), flow_uuid, str(journal), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **env},
    )


def _executions(journal: Path) -> Counter[str]:
    if not journal.exists():
        return Counter()
    return Counter(line.split()[1] for line in journal.read_text().splitlines())


def test_two_processes_resuming_one_flow_run_it_once(shared_conf: dict[str, Any], tmp_path: Path):
    conf = shared_conf
    with backends.backend(conf) as backend:
        detail = saved_flow(backend)
    journal = tmp_path / "journal"
    gate = tmp_path / "gate"
    children = [_spawn(conf, detail.uuid, journal, OWNERSHIP_GATE=str(gate)) for _ in range(2)]
    # The winner's tasks wait at the gate until the other process was refused: on a loaded
    # machine the second could otherwise start only after the first had finished.
    deadline = time.monotonic() + 60
    while all(child.poll() is None for child in children) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()
    outputs = [child.communicate(timeout=60)[0] for child in children]
    codes = sorted(child.returncode for child in children)
    assert codes == [0, 3], outputs
    assert any("is being run by" in out for out in outputs)
    # Every task ran exactly once, by the winner.
    assert _executions(journal) == Counter({f"t{i}": 1 for i in range(8)})
    with backends.backend(conf) as backend, backend.get_connection() as conn:
        stored = conn.get_flow_details(detail.uuid)
        assert stored.state == states.SUCCESS
        assert sorted(ad.name for ad in stored if ad.name.startswith("t")) == sorted(
            f"t{i}" for i in range(8)
        )
        assert len(stored) == 9  # and the injector's record: no duplicate of any
        assert conn.read_ownership(detail.uuid).held is False  # released at the end


class Slow(task.Task):
    def __init__(self, name: str, started: threading.Event, gate: threading.Event) -> None:
        super().__init__(name)
        self.started, self.gate = started, gate

    def execute(self) -> None:
        self.started.set()
        self.gate.wait(10)


def test_two_threads_with_fresh_flow_details_do_not_both_run(conf: dict[str, Any]):
    started, gate = threading.Event(), threading.Event()
    with backends.backend(conf) as backend:
        detail = saved_flow(backend)

        def load() -> Any:
            with backend.get_connection() as conn:
                fresh = conn.get_flow_details(detail.uuid)
            flow = lf.Flow("owned").add(Slow("a", started, gate), Slow("b", started, gate))
            return engines.load(flow, flow_detail=fresh, backend=backend)

        first, second = load(), load()
        errors: list[BaseException] = []
        runner = threading.Thread(target=lambda: first.run())
        runner.start()
        assert started.wait(10)
        try:
            second.run()
        except exceptions.FlowOwned as err:
            errors.append(err)
        gate.set()
        runner.join(20)
        assert len(errors) == 1
        with backend.get_connection() as conn:
            stored = conn.get_flow_details(detail.uuid)
        assert stored.state == states.SUCCESS
        assert sorted(ad.name for ad in stored) == ["a", "b"]  # not four records


def test_ownership_is_released_however_a_run_ends(conf: dict[str, Any]):
    class Boom(task.Task):
        def execute(self) -> None:
            raise RuntimeError("boom")

    with backends.backend(conf) as backend:
        detail = saved_flow(backend)
        engine = engines.load(lf.Flow("f").add(Boom("x")), flow_detail=detail, backend=backend)
        with pytest.raises(RuntimeError):
            engine.run()
        with backend.get_connection() as conn:
            after_failure = conn.read_ownership(detail.uuid)
        assert after_failure is not None
        assert not after_failure.held
        # Another engine may run it now (and gets the next token).
        with backend.get_connection() as conn:
            fresh = conn.get_flow_details(detail.uuid)
        other = engines.load(lf.Flow("f").add(Boom("x")), flow_detail=fresh, backend=backend)
        with pytest.raises(RuntimeError):
            other.run()
        with backend.get_connection() as conn:
            assert conn.read_ownership(detail.uuid).token == after_failure.token + 1


def test_a_paused_owner_is_taken_over_after_its_lease_and_then_fenced(tmp_path: Path):
    services.need_module("sqlalchemy", "database")
    conf = {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    with backends.backend(conf) as backend:
        detail = saved_flow(backend)
    journal = tmp_path / "journal"
    slow = {"OWNERSHIP_STEP": "0.3"}
    first = _spawn(conf, detail.uuid, journal, "1.0", **slow)
    assert first.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 20
    while not _executions(journal) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGSTOP)  # paused mid-run: its lease stops being renewed
    try:
        time.sleep(1.5)  # past the lease
        second = _spawn(conf, detail.uuid, journal, "30")
        output = second.communicate(timeout=60)[0]
        assert second.returncode == 0, output
    finally:
        os.kill(first.pid, signal.SIGCONT)
    output = first.communicate(timeout=60)[0]
    assert first.returncode == 4, output  # woke up, was refused, stopped
    with backends.backend(conf) as backend, backend.get_connection() as conn:
        stored = conn.get_flow_details(detail.uuid)
        assert stored.state == states.SUCCESS
        assert {ad.name: ad.state for ad in stored if ad.name.startswith("t")} == {
            f"t{i}": states.SUCCESS for i in range(8)
        }
        owner = conn.read_ownership(detail.uuid)
        assert not owner.held  # released by the second process
    # The paused process did at most the one task it was in the middle of after waking.
    runs = _executions(journal)
    assert all(count <= 2 for count in runs.values())
    assert sum(count - 1 for count in runs.values()) <= 1


def test_a_run_with_a_larger_fencing_token_takes_the_flow_from_a_live_engine(tmp_path: Path):
    """A conductor's engine runs with its job claim's token: a holder paused past the job's
    lease still owns the flow (its flow lease is long), and the job's next holder takes it."""
    services.need_module("sqlalchemy", "database")
    conf = {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    started, stale_gate, open_gate = threading.Event(), threading.Event(), threading.Event()
    open_gate.set()
    with backends.backend(conf) as backend:
        detail = saved_flow(backend)

        def load(token: int, gate: threading.Event) -> Any:
            with backend.get_connection() as conn:
                fresh = conn.get_flow_details(detail.uuid)
            flow = lf.Flow("owned").add(Slow("a", started, gate), Slow("b", started, gate))
            return engines.load(
                flow, flow_detail=fresh, backend=backend, fencing_token=token, ownership_lease=60
            )

        stale, current = load(1, stale_gate), load(2, open_gate)
        outcome: list[BaseException] = []

        def run_stale() -> None:
            try:
                stale.run()
            except BaseException as err:
                outcome.append(err)

        runner = threading.Thread(target=run_stale)
        runner.start()
        try:
            assert started.wait(10)  # the stale engine is inside its first task...
            current.run()  # ...and the next holder runs the whole flow meanwhile
        finally:
            stale_gate.set()
            runner.join(20)
        # Its first task's end could not be recorded: it stopped there.
        assert len(outcome) == 1
        assert isinstance(outcome[0], exceptions.OwnershipLost)
        with backend.get_connection() as conn:
            stored = conn.get_flow_details(detail.uuid)
            owner = conn.read_ownership(detail.uuid)
        assert stored.state == states.SUCCESS
        assert owner.fence_token == 2
        assert not owner.held


@pytest.mark.parametrize("bad", [0, -3, "x", 1.5, True])
def test_a_bad_fencing_token_option_is_refused_when_the_engine_is_made(bad: Any):
    with pytest.raises(ValueError, match="fencing_token"):
        engines.load(
            lf.Flow("f").add(Slow("a", threading.Event(), threading.Event())), fencing_token=bad
        )


@pytest.mark.postgres
def test_a_run_started_during_an_injection_from_another_thread_owns_the_flow(postgres_url: str):
    # Thread B's persisted inject claims the flow (its write guard) and is held up in its
    # write; the run started meanwhile must own the flow once B is done, not run unowned
    # (and unfenced) because B's ownership was there when it started.
    sa = services.need_module("sqlalchemy", "postgresql")
    started, gate = threading.Event(), threading.Event()
    with isolated_postgres(postgres_url) as url, backends.backend({"connection": url}) as backend:
        detail = saved_flow(backend)
        engine = engines.load(
            lf.Flow("owned").add(Slow("a", started, gate)), flow_detail=detail, backend=backend
        )
        engine.storage.inject({"extra": 0})  # the injector's row exists from now on
        blocker = sa.create_engine(url, poolclass=sa.pool.NullPool)
        threads: list[threading.Thread] = []
        try:
            with blocker.connect() as lock:
                lock.exec_driver_sql(
                    "SELECT uuid FROM atomdetails WHERE name = '_TaskFlow_INJECTOR' FOR UPDATE"
                )
                injector = threading.Thread(target=lambda: engine.storage.inject({"extra": 1}))
                injector.start()
                threads.append(injector)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # until the injection has claimed the flow
                    with backend.get_connection() as conn:
                        if conn.read_ownership(detail.uuid).held:
                            break
                    time.sleep(0.01)
                runner = threading.Thread(target=engine.run)
                runner.start()
                threads.append(runner)
                time.sleep(0.2)  # the run is waiting behind the injection now
                lock.rollback()  # the injection's write goes through, and it leaves
            assert started.wait(10)
            with backend.get_connection() as conn:
                during = conn.read_ownership(detail.uuid)
        finally:
            gate.set()
            for thread in threads:
                thread.join(20)
            blocker.dispose()
        assert during is not None
        assert during.held  # the run owns the flow while it runs
        with backend.get_connection() as conn:
            assert not conn.read_ownership(detail.uuid).held
            assert conn.get_flow_details(detail.uuid).state == states.SUCCESS
        assert engine.storage.fetch("extra") == 1


def test_an_injection_from_another_thread_leaves_the_runs_ownership_held(tmp_path: Path):
    # The write guard around a persisted inject enters the engine's ownership too; leaving
    # it must not release the flow under the run (which would then write unfenced).
    services.need_module("sqlalchemy", "database")
    conf = {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    started, gate = threading.Event(), threading.Event()
    with backends.backend(conf) as backend:
        detail = saved_flow(backend)
        engine = engines.load(
            lf.Flow("owned").add(Slow("a", started, gate)), flow_detail=detail, backend=backend
        )
        runner = threading.Thread(target=engine.run)
        runner.start()
        try:
            assert started.wait(10)
            with backend.get_connection() as conn:
                held = conn.read_ownership(detail.uuid)
            injector = threading.Thread(target=lambda: engine.storage.inject({"extra": 1}))
            injector.start()
            injector.join(10)
            with backend.get_connection() as conn:
                during = conn.read_ownership(detail.uuid)
        finally:
            gate.set()
            runner.join(20)
        assert held is not None
        assert held.held
        assert during == held  # still the run's, not released by the injection
        with backend.get_connection() as conn:
            after = conn.read_ownership(detail.uuid)
            stored = conn.get_flow_details(detail.uuid)
        assert not after.held  # released once the run ended
        assert stored.state == states.SUCCESS
        assert engine.storage.fetch("extra") == 1


def test_owning_holds_the_flow_in_one_claim_across_injection_and_run(conf: dict[str, Any]):
    class Echo(task.Task):
        def execute(self, x: int) -> int:
            return x

    with backends.backend(conf) as backend:
        detail = saved_flow(backend)
        engine = engines.load(lf.Flow("f").add(Echo("e")), flow_detail=detail, backend=backend)
        with backend.get_connection() as conn:
            with engine.owning():
                claimed = conn.read_ownership(detail.uuid)
                assert claimed is not None
                assert claimed.held
                with engine.owning():  # re-entrant
                    engine.storage.inject({"x": 5})
                engine.run()
                # The injection and the run wrote under that claim: no other was made.
                still = conn.read_ownership(detail.uuid)
                assert (still.token, still.held) == (claimed.token, True)
                fresh = conn.get_flow_details(detail.uuid)
                other = engines.load(
                    lf.Flow("f").add(Echo("e")), flow_detail=fresh, backend=backend
                )
                with pytest.raises(exceptions.FlowOwned):
                    other.storage.inject({"x": 6})
            released = conn.read_ownership(detail.uuid)
            assert (released.token, released.held) == (claimed.token, False)
            stored = conn.get_flow_details(detail.uuid)
        assert stored.state == states.SUCCESS
        assert {ad.name: ad.results for ad in stored if ad.name == "e"} == {"e": 5}


def test_an_engine_without_a_backend_owns_nothing():
    engine = engines.load(lf.Flow("f").add(task.FunctorTask(lambda: 1, name="t", provides="one")))
    with engine.owning():
        engine.run()
    assert engine.storage.fetch("one") == 1
    assert engine.storage.get_flow_state() == states.SUCCESS
