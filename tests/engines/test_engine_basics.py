"""Running flows to success: ordering, notifications, results, options, lifecycle."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any

import networkx as nx
import pytest

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow.engines import base as engines_base
from taskflow.engines.action_engine.engine import (
    ActionEngine,
    ParallelActionEngine,
    SerialActionEngine,
)
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from tests.helpers.engine_tasks import Add, Progress, Recorder, Work, atom_states


def test_linear_flow_notifications(load):
    flow = lf.Flow("f").add(
        Work("a", value=1, provides="x"), Work("b", value=2, provides="y", requires="x")
    )
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("a", states.RUNNING, states.PENDING),
        ("a", states.SUCCESS, states.RUNNING),
        ("b", states.RUNNING, states.PENDING),
        ("b", states.SUCCESS, states.RUNNING),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert rec.results == {("a", states.SUCCESS): [1], ("b", states.SUCCESS): [2]}
    assert engine.storage.fetch_all() == {"x": 1, "y": 2}
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert atom_states(engine, "a", "b") == {
        "a": (states.SUCCESS, states.EXECUTE),
        "b": (states.SUCCESS, states.EXECUTE),
    }


def test_notification_details(load):
    engine = load(lf.Flow("f").add(Work("a", value=7)))
    flow_details, atom_details = [], []
    engine.notifier.register("*", lambda state, details: flow_details.append(details))
    engine.atom_notifier.register("*", lambda state, details: atom_details.append(details))
    engine.run()
    assert [sorted(d) for d in flow_details] == [
        ["engine", "flow_name", "flow_uuid", "old_state"]
    ] * 2
    assert flow_details[0]["engine"] is engine
    assert flow_details[0]["flow_name"] == "f"
    assert flow_details[0]["flow_uuid"] == engine.storage.flow_uuid
    assert [sorted(d) for d in atom_details] == [
        ["old_state", "task_name", "task_uuid"],
        ["old_state", "result", "task_name", "task_uuid"],
    ]
    assert atom_details[1]["result"] == 7
    assert atom_details[1]["task_uuid"] == engine.storage.get_atom_uuid("a")


def test_unordered_flow_runs_everything(load):
    flow = uf.Flow("u").add(*(Work(f"t{i}", value=i, provides=f"r{i}") for i in range(5)))
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert sorted(rec.names_in(states.SUCCESS)) == [f"t{i}" for i in range(5)]
    assert engine.storage.fetch_all() == {f"r{i}": i for i in range(5)}


def test_unordered_flow_serial_schedules_all_at_once():
    flow = uf.Flow("u").add(Work("a"), Work("b"))
    assert list(engines.load(flow, engine="serial").run_iter()) == [
        states.RESUMING,
        states.SCHEDULING,
        states.WAITING,
        states.ANALYZING,
        states.SUCCESS,
    ]


def test_graph_flow_orders_by_dependencies(load):
    flow = gf.Flow("g").add(
        Work("c", value=3, provides="z", requires="y"),
        Work("b", value=2, provides="y", requires="x"),
        Work("a", value=1, provides="x"),
    )
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert rec.names_in(states.RUNNING) == ["a", "b", "c"]
    assert engine.storage.fetch_all() == {"x": 1, "y": 2, "z": 3}


def test_graph_flow_manual_links(load):
    a, b, c = Work("a"), Work("b"), Work("c")
    flow = gf.Flow("g").add(a, b, c)
    flow.link(c, b)
    flow.link(b, a)
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert rec.names_in(states.RUNNING) == ["c", "b", "a"]


def test_nested_flows_respect_boundaries(load):
    flow = lf.Flow("f").add(
        Work("a"),
        uf.Flow("u").add(Work("b", sleep=0.02), Work("c")),
        Work("d"),
    )
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    events = rec.events
    a_done = events.index(("a", states.SUCCESS, states.RUNNING))
    d_start = events.index(("d", states.RUNNING, states.PENDING))
    for name in ("b", "c"):
        assert a_done < events.index((name, states.RUNNING, states.PENDING))
        assert events.index((name, states.SUCCESS, states.RUNNING)) < d_start
    assert sorted(rec.names_in(states.SUCCESS)) == ["a", "b", "c", "d"]


def test_graph_nested_in_linear(load):
    inner = gf.Flow("g").add(
        Work("g2", value=2, provides="y", requires="x"), Work("g1", value=1, provides="x")
    )
    flow = lf.Flow("f").add(
        Work("first", value=0, provides="w"), inner, Add("sum", provides="s", rebind=["x", "y"])
    )
    engine = load(flow)
    engine.run()
    assert engine.storage.fetch_all() == {"w": 0, "x": 1, "y": 2, "s": 3}


def test_run_helper_returns_fetch_all():
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"), Work("b", value=2, provides="y"))
    assert engines.run(flow) == {"x": 1, "y": 2}


def test_lone_task_can_be_run(load):
    engine = load(Add("s", provides="z"), store={"a": 1, "b": 2})
    engine.run()
    assert engine.storage.fetch_all() == {"a": 1, "b": 2, "z": 3}
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_empty_flow_succeeds(load):
    engine = load(lf.Flow("empty"))
    rec = Recorder(engine)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert rec.flow_states == [states.RUNNING, states.SUCCESS]
    assert engine.storage.fetch_all() == {}


def test_statistics_after_run(load):
    engine = load(lf.Flow("f").add(Work("a"), Work("b")))
    engine.run()
    stats = engine.statistics
    assert set(stats) == {
        "active_for",
        "awaiting",
        "completed",
        "discarded_failures",
        "incomplete",
        "seconds_per_state",
    }
    assert set(stats["seconds_per_state"]) == {"analyzing", "resuming", "scheduling", "waiting"}
    assert stats["completed"] == 2
    assert stats["incomplete"] == 0
    assert stats["discarded_failures"] == 0
    assert stats["active_for"] >= 0


def test_statistics_can_be_disabled():
    engine = engines.load(lf.Flow("f").add(Work("a")), gather_statistics=False)
    engine.run()
    assert engine.statistics == {}


def test_statistics_is_part_of_the_engine_contract():
    assert "statistics" in engines_base.Engine.__abstractmethods__
    assert "statistics" not in ActionEngine.__abstractmethods__

    class NoStatistics(engines_base.Engine):
        storage = compile = prepare = validate = run = run_iter = suspend = reset = None

    with pytest.raises(TypeError, match="statistics"):
        NoStatistics(lf.Flow("f"), None, None, None)


def test_run_iter_yields_ignorable_states_until_the_final_one(load):
    engine = load(lf.Flow("f").add(Work("a"), Work("b")))
    rec = Recorder(engine)
    seen = list(engine.run_iter())
    assert seen[-1] == states.SUCCESS
    assert set(seen[:-1]) <= ActionEngine.IGNORABLE_STATES
    assert set(seen[:-1]) == {states.RESUMING, states.SCHEDULING, states.WAITING, states.ANALYZING}
    assert not set(rec.flow_states) & ActionEngine.IGNORABLE_STATES
    assert isinstance(ActionEngine.IGNORABLE_STATES, frozenset)


def test_no_reraising_states_are_the_quiet_final_states():
    assert {states.SUCCESS, states.SUSPENDED} == ActionEngine.NO_RERAISING_STATES
    assert ActionEngine.MAX_MACHINE_STATES_RETAINED == 10
    engine = engines.load(lf.Flow("f").add(Work("a")))
    engine.run()
    assert engine.storage.get_flow_state() in ActionEngine.NO_RERAISING_STATES


def test_execution_graph_has_atoms_and_edges():
    flow = lf.Flow("f").add(Work("a"), uf.Flow("u").add(Work("b"), Work("c")), Work("d"))
    engine = engines.load(flow)
    engine.compile()
    graph = engine.compilation.execution_graph
    by_name = {getattr(n, "name", None): n for n in graph.nodes}
    assert {"a", "b", "c", "d"} <= set(by_name)
    for u, v in [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")]:
        assert nx.has_path(graph, by_name[u], by_name[v]), (u, v)
    for u, v in [("b", "c"), ("c", "b"), ("d", "a"), ("b", "a")]:
        assert not nx.has_path(graph, by_name[u], by_name[v]), (u, v)


def test_execution_graph_is_a_taskflow_digraph():
    from taskflow.types import graph as tf_graph

    for root in (lf.Flow("f").add(Work("a"), Work("b")), Work("alone")):
        engine = engines.load(root)
        engine.compile()
        graph = engine.compilation.execution_graph
        assert isinstance(graph, tf_graph.DiGraph)
        assert {atom.name for atom in graph.nodes} <= {"a", "b", "alone"}


def test_execution_graph_orders_retry_before_its_atoms():
    from taskflow import retry

    flow = lf.Flow("f", retry.Times(2, name="r")).add(Work("a"), Work("b"))
    engine = engines.load(flow)
    engine.compile()
    graph = engine.compilation.execution_graph
    by_name = {getattr(n, "name", None): n for n in graph.nodes}
    assert {"r", "a", "b"} <= set(by_name)
    assert nx.has_path(graph, by_name["r"], by_name["a"])
    assert nx.has_path(graph, by_name["a"], by_name["b"])
    assert not nx.has_path(graph, by_name["b"], by_name["r"])


def test_run_twice_does_not_reexecute(load):
    engine = load(lf.Flow("f").add(Work("a", value=1, provides="x")))
    engine.run()
    rec = Recorder(engine)
    engine.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.SUCCESS),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert engine.storage.fetch_all() == {"x": 1}


def test_reset_then_run_again(load):
    engine = load(lf.Flow("f").add(Work("a", value=1, provides="x"), Work("b")))
    engine.run()
    engine.reset()
    assert atom_states(engine, "a", "b") == {
        "a": (states.PENDING, states.EXECUTE),
        "b": (states.PENDING, states.EXECUTE),
    }
    assert engine.storage.get_flow_state() == states.PENDING
    assert engine.storage.fetch_all() == {}
    rec = Recorder(engine)
    engine.run()
    assert rec.names_in(states.RUNNING) == ["a", "b"]
    assert engine.storage.fetch_all() == {"x": 1}


def test_reset_before_compile_is_invalid():
    with pytest.raises(exc.InvalidState):
        engines.load(lf.Flow("f").add(Work("a"))).reset()


def test_prepare_and_validate_need_earlier_steps():
    engine = engines.load(lf.Flow("f").add(Work("a")))
    with pytest.raises(exc.InvalidState):
        engine.prepare()
    with pytest.raises(exc.InvalidState):
        engine.validate()


def test_explicit_compile_prepare_validate_run():
    engine = engines.load(lf.Flow("f").add(Work("a", value=5, provides="x")))
    engine.compile()
    engine.compile()  # idempotent
    engine.prepare()
    engine.validate()
    assert engine.storage.get_atom_state("a") == states.PENDING
    engine.run()
    assert engine.storage.fetch("x") == 5


class _Blocker(task.Task):
    def __init__(self, name, started, release):
        super().__init__(name=name)
        self.started = started
        self.release = release

    def execute(self):
        self.started.set()
        assert self.release.wait(5)


@pytest.mark.parametrize("kind", ["serial", "parallel"])
def test_engine_is_locked_while_running(kind):
    started, release = threading.Event(), threading.Event()
    engine = engines.load(lf.Flow("f").add(_Blocker("blk", started, release)), engine=kind)
    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        assert started.wait(5)
        with pytest.raises(exc.ExecutionFailure, match="Engine currently locked"):
            engine.run()
    finally:
        release.set()
        runner.join(5)
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_engine_kinds_by_name():
    flow = lf.Flow("f").add(Work("a"))
    assert isinstance(engines.load(flow), SerialActionEngine)
    assert isinstance(engines.load(flow, engine="serial"), SerialActionEngine)
    assert isinstance(engines.load(flow, engine="default"), SerialActionEngine)
    assert isinstance(engines.load(flow, engine="parallel"), ParallelActionEngine)


def test_engine_none_means_the_default_engine():
    # Upstream TaskFlow treats engine=None as "the default engine", as callers passing an
    # optional setting straight through rely on.
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
    assert isinstance(engines.load(flow, engine=None), SerialActionEngine)
    assert engines.run(lf.Flow("g").add(Work("a", value=2, provides="x")), engine=None) == {"x": 2}


def test_unknown_engine_kind():
    with pytest.raises(exc.NotFound):
        engines.load(lf.Flow("f").add(Work("a")), engine="nope")


def test_engine_uri_options():
    engine = engines.load(lf.Flow("f").add(Work("a")), engine="parallel://?max_workers=2")
    assert isinstance(engine, ParallelActionEngine)
    assert str(engine.options["max_workers"]) == "2"
    assert engines.run(
        lf.Flow("f").add(Work("a", value=3, provides="x")), engine="parallel://?max_workers=2"
    ) == {"x": 3}


def test_explicit_options_win_over_uri():
    engine = engines.load(
        lf.Flow("f").add(Work("a")), engine="parallel://?max_workers=2", max_workers=3
    )
    assert engine.options["max_workers"] == 3


@pytest.mark.parametrize("executor", ["threads", "THREADED", "thread", "greenthreads"])
def test_parallel_executor_strings(executor):
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
    assert engines.run(flow, engine="parallel", executor=executor) == {"x": 1}


def test_parallel_processes_executor_works():
    flow = uf.Flow("f").add(Work("a", value=1, provides="x"), Work("b", value=2, provides="y"))
    assert engines.run(flow, engine="parallel", executor="processes") == {"x": 1, "y": 2}


def test_parallel_bad_executor_string():
    with pytest.raises(ValueError, match="bogus"):
        engines.load(lf.Flow("f").add(Work("a")), engine="parallel", executor="bogus")


def test_parallel_bad_executor_object():
    with pytest.raises(TypeError):
        engines.load(lf.Flow("f").add(Work("a")), engine="parallel", executor=object())


def test_user_executor_is_not_shut_down():
    with cf.ThreadPoolExecutor(2) as pool:
        flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
        assert engines.run(flow, engine="parallel", executor=pool) == {"x": 1}
        assert engines.run(flow, engine="parallel", executor=pool) == {"x": 1}
        assert pool.submit(lambda: 42).result() == 42


def test_progress_is_reported_and_stored(load_local):
    prog = Progress("p")
    seen = []
    prog.notifier.register(
        task.EVENT_UPDATE_PROGRESS, lambda event, details: seen.append(details["progress"])
    )
    engine = load_local(lf.Flow("f").add(prog))
    engine.run()
    assert seen == [0.0, 0.5, 1.0]
    assert engine.storage.get_task_progress("p") == 1.0


def test_progress_from_child_process_is_replayed():
    prog = Progress("p")
    seen = []
    prog.notifier.register(
        task.EVENT_UPDATE_PROGRESS, lambda event, details: seen.append(details["progress"])
    )
    engine = engines.load(lf.Flow("f").add(prog), engine="parallel", executor="processes")
    engine.run()
    assert 0.5 in seen
    assert seen[-1] == 1.0
    assert engine.storage.get_task_progress("p") == 1.0


def test_priority_orders_ready_atoms_in_serial_engine():
    tasks = []
    for i, priority in enumerate([0, 5, -1, 3]):
        t = Work(f"t{i}")
        t.priority = priority
        tasks.append(t)
    engine = engines.load(uf.Flow("u").add(*tasks))
    rec = Recorder(engine)
    engine.run()
    assert rec.names_in(states.RUNNING) == ["t1", "t3", "t0", "t2"]


def test_statistics_count_failures_nothing_could_act_on():
    revert_failed = threading.Event()

    class RevertBreaks(task.Task):
        def execute(self) -> None:
            raise RuntimeError("first")

        def revert(self, **kwargs: Any) -> None:
            raise RuntimeError("revert broke")

    class FailsLater(task.Task):
        def execute(self) -> None:
            revert_failed.wait(10)
            raise RuntimeError("too late")

    flow = uf.Flow("f").add(RevertBreaks("a"), FailsLater("b"))
    engine = engines.load(flow, engine="parallel", max_workers=2)
    # Notified from the engine's loop once it has handled a's revert failure.
    engine.atom_notifier.register(states.REVERT_FAILURE, lambda state, details: revert_failed.set())
    with pytest.raises(RuntimeError, match="revert broke"):
        engine.run()
    stats = engine.statistics
    # b's failure arrived after a's revert had failed: recorded, but nothing acted on it.
    assert stats["discarded_failures"] == 1
    assert engine.storage.get_atom_state("b") == states.FAILURE
    assert stats["awaiting"] == 0
    assert stats["completed"] == 0
    assert stats["incomplete"] == 2
