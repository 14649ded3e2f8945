"""Resuming from a flow detail saved in a (memory) backend, by a new engine (spec §9)."""

from __future__ import annotations

import pytest

from taskflow import engines, retry, states, task
from taskflow import exceptions as exc
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.persistence import models
from taskflow.types.failure import Failure
from taskflow.utils import persistence_utils
from tests.helpers.engine_tasks import FailUnless, Recorder, Work, atom_states, failure_messages

ERRORS = (RuntimeError, exc.WrappedFailure)


def reloaded(backend, flow_detail):
    """A fresh copy of the flow detail, read back from the backend."""
    return backend.get_connection().get_flow_details(flow_detail.uuid)


def two_step():
    return lf.Flow("f").add(
        Work("a", value=1, provides="x"), Work("b", value=2, provides="y", requires="x")
    )


class Suspender(task.Task):
    engine = None

    def execute(self):
        self.engine.suspend()
        return "s"


def test_resume_suspended_flow_skips_finished_atoms(load_local, memory_backend):
    book = models.LogBook("book")
    flow_detail = models.FlowDetail("f", uuid="fd-1")
    book.add(flow_detail)
    memory_backend.get_connection().save_logbook(book)

    def make_flow():
        stopper = Suspender("s")
        flow = lf.Flow("f").add(
            Work("a", value=1, provides="x"),
            stopper,
            Work("b", value=2, provides="y", requires="x"),
        )
        return flow, stopper

    flow, stopper = make_flow()
    engine = load_local(flow, flow_detail=flow_detail, book=book, backend=memory_backend)
    stopper.engine = engine
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED

    saved = reloaded(memory_backend, flow_detail)
    assert saved.state == states.SUSPENDED
    assert sorted((ad.name, ad.state, ad.intention) for ad in saved) == [
        ("a", states.SUCCESS, states.EXECUTE),
        ("b", states.PENDING, states.EXECUTE),
        ("s", states.SUCCESS, states.EXECUTE),
    ]

    flow, stopper = make_flow()
    resumed = load_local(flow, flow_detail=saved, backend=memory_backend)
    rec = Recorder(resumed)
    resumed.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.SUSPENDED),
        ("b", states.RUNNING, states.PENDING),
        ("b", states.SUCCESS, states.RUNNING),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert resumed.storage.fetch_all() == {"x": 1, "y": 2}
    assert reloaded(memory_backend, flow_detail).state == states.SUCCESS


def test_resume_after_closed_run_iter(load, memory_backend):
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    engine = load(two_step(), flow_detail=flow_detail, backend=memory_backend)
    iterator = engine.run_iter()
    for _ in range(5):
        next(iterator)
    iterator.close()
    saved = reloaded(memory_backend, flow_detail)
    assert saved.state == states.SUSPENDED
    assert sorted((ad.name, ad.state) for ad in saved) == [
        ("a", states.SUCCESS),
        ("b", states.PENDING),
    ]
    resumed = load(two_step(), flow_detail=saved, backend=memory_backend)
    rec = Recorder(resumed)
    resumed.run()
    assert rec.names_in(states.RUNNING) == ["b"]
    assert resumed.storage.fetch_all() == {"x": 1, "y": 2}


def test_atom_left_running_is_run_again(load, memory_backend):
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    engine = load(two_step(), flow_detail=flow_detail, backend=memory_backend)
    engine.compile()
    engine.prepare()
    engine.storage.save("a", 1)
    engine.storage.set_atom_state("b", states.RUNNING)
    engine.storage.set_flow_state(states.RUNNING)

    resumed = load(
        two_step(), flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend
    )
    rec = Recorder(resumed)
    resumed.run()
    assert rec.flow_states == [
        states.RESUMING,
        states.SUSPENDED,
        states.RUNNING,
        states.SUCCESS,
    ]
    assert rec.atom_events("a") == []
    assert rec.results[("b", states.SUCCESS)] == [2]
    assert resumed.storage.fetch_all() == {"x": 1, "y": 2}
    assert atom_states(resumed, "a", "b") == {
        "a": (states.SUCCESS, states.EXECUTE),
        "b": (states.SUCCESS, states.EXECUTE),
    }


def test_flow_left_mid_revert_finishes_reverting(load, memory_backend):
    flow = lf.Flow("f").add(
        Work("a", value=1, provides="x"), Work("b", value=2, provides="y"), Work("c")
    )
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    engine = load(flow, flow_detail=flow_detail, backend=memory_backend)
    engine.compile()
    engine.prepare()
    storage = engine.storage
    storage.save("a", 1)
    storage.save("b", 2)
    try:
        raise RuntimeError("woot")
    except RuntimeError:
        storage.save("c", Failure(), states.FAILURE)
    for name in "abc":
        storage.set_atom_intention(name, states.REVERT)
    storage.set_atom_state("c", states.REVERTED)
    storage.set_atom_state("b", states.REVERTING)
    storage.set_flow_state(states.RUNNING)

    resumed = load(flow, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(resumed)
    with pytest.raises(ERRORS) as info:
        resumed.run()
    assert failure_messages(info.value) == ["RuntimeError: woot"]
    assert rec.atom_events("c") == []
    assert rec.names_in(states.REVERTED) == ["b", "a"]
    assert resumed.storage.get_revert_result("b") == {
        "result": ("result", 2),
        "flow_failures": {"c": "woot"},
    }
    assert resumed.storage.get_revert_result("a")["result"] == ("result", 1)
    assert resumed.storage.get_flow_state() == states.REVERTED
    assert atom_states(resumed, "a", "b", "c") == dict.fromkeys(
        "abc", (states.REVERTED, states.REVERT)
    )


def test_unresolved_failure_is_resolved_on_reload(load, memory_backend):
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"), Work("c", fail=True))
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    with pytest.raises(ERRORS):
        load(flow, flow_detail=flow_detail, backend=memory_backend, never_resolve=True).run()
    assert reloaded(memory_backend, flow_detail).state == states.FAILURE

    resumed = load(flow, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(resumed)
    with pytest.raises(ERRORS) as info:
        resumed.run()
    assert failure_messages(info.value) == ["RuntimeError: boom c"]
    assert rec.events == [
        ("flow", states.RUNNING, states.FAILURE),
        ("c", states.REVERTING, states.FAILURE),
        ("c", states.REVERTED, states.REVERTING),
        ("a", states.REVERTING, states.SUCCESS),
        ("a", states.REVERTED, states.REVERTING),
        ("flow", states.REVERTED, states.RUNNING),
    ]


def test_unresolved_failure_under_retry_is_retried_on_reload(load, memory_backend):
    flow = lf.Flow("f", retry.Times(3, name="r", provides="v")).add(FailUnless("b", ok=[2]))
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    with pytest.raises(ERRORS):
        load(flow, flow_detail=flow_detail, backend=memory_backend, never_resolve=True).run()

    resumed = load(flow, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(resumed)
    resumed.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.FAILURE),
        ("b", states.REVERTING, states.FAILURE),
        ("b", states.REVERTED, states.REVERTING),
        ("r", states.RETRYING, states.SUCCESS),
        ("b", states.PENDING, states.REVERTED),
        ("r", states.RUNNING, states.RETRYING),
        ("r", states.SUCCESS, states.RUNNING),
        ("b", states.RUNNING, states.PENDING),
        ("b", states.SUCCESS, states.RUNNING),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert resumed.storage.fetch_all() == {"v": 2}
    history = resumed.storage.get_retry_history("r")
    assert [(value, sorted(fails)) for value, fails in history] == [(1, ["b"]), (2, [])]


def test_reloaded_success_flow_does_nothing(load, memory_backend):
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    load(flow, flow_detail=flow_detail, backend=memory_backend).run()
    resumed = load(flow, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(resumed)
    resumed.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.SUCCESS),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert resumed.storage.fetch_all() == {"x": 1}


def test_reloaded_reverted_flow_runs_from_scratch(load, memory_backend):
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"), Work("c", fail=True))
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    with pytest.raises(ERRORS):
        load(flow, flow_detail=flow_detail, backend=memory_backend).run()
    resumed = load(flow, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(resumed)
    with pytest.raises(ERRORS):
        resumed.run()
    assert rec.events[:3] == [
        ("a", states.PENDING, states.REVERTED),
        ("c", states.PENDING, states.REVERTED),
        ("flow", states.PENDING, states.REVERTED),
    ]
    assert rec.names_in(states.RUNNING) == ["a", "c"]
    assert rec.flow_states[-1] == states.REVERTED


def test_new_atoms_run_and_removed_atoms_are_ignored(load, memory_backend):
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    load(
        lf.Flow("f").add(Work("a", value=1, provides="x")),
        flow_detail=flow_detail,
        backend=memory_backend,
    ).run()

    grown = lf.Flow("f").add(Work("a", value=1, provides="x"), Work("b", value=2, provides="y"))
    resumed = load(grown, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(resumed)
    resumed.run()
    assert rec.names_in(states.RUNNING) == ["b"]
    assert resumed.storage.fetch_all() == {"x": 1, "y": 2}

    shrunk = lf.Flow("f").add(Work("b", value=2, provides="y"))
    again = load(shrunk, flow_detail=reloaded(memory_backend, flow_detail), backend=memory_backend)
    rec = Recorder(again)
    again.run()
    assert rec.atom_events() == []
    assert again.storage.fetch_all() == {"y": 2}


def test_store_is_visible_after_reload(load, memory_backend):
    flow = lf.Flow("f").add(Work("e1", provides="o", requires="x"))
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    engine = load(flow, flow_detail=flow_detail, backend=memory_backend, store={"x": 5})
    engine.compile()
    engine.prepare()
    saved = reloaded(memory_backend, flow_detail)
    assert sorted(ad.name for ad in saved) == ["_TaskFlow_INJECTOR", "e1"]
    resumed = load(flow, flow_detail=saved, backend=memory_backend)
    assert resumed.storage.fetch("x") == 5
    resumed.run()
    assert resumed.storage.fetch_all() == {"x": 5, "o": None}


def test_parallel_resume_of_unordered_flow(memory_backend):
    flow = uf.Flow("u").add(
        Work("a", value=1, provides="x"), Work("b", fail=True), Work("c", value=3, provides="z")
    )
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    with pytest.raises(ERRORS):
        engines.load(
            flow,
            flow_detail=flow_detail,
            backend=memory_backend,
            engine="parallel",
            never_resolve=True,
        ).run()
    resumed = engines.load(
        flow,
        flow_detail=reloaded(memory_backend, flow_detail),
        backend=memory_backend,
        engine="parallel",
    )
    with pytest.raises(ERRORS):
        resumed.run()
    assert resumed.storage.get_flow_state() == states.REVERTED
    assert atom_states(resumed, "a", "b", "c") == dict.fromkeys(
        "abc", (states.REVERTED, states.REVERT)
    )


class SuspendWhen:
    """An atom listener suspending ``engine`` once atom ``name`` enters ``state``."""

    def __init__(self, engine, name, state):
        self.engine, self.name, self.state = engine, name, state
        engine.atom_notifier.register("*", self)

    def __call__(self, state, details):
        if details.get("task_name") == self.name and state == self.state:
            self.engine.suspend()


def test_requirements_of_every_atom_are_checked_again_after_a_suspend(load_local):
    # b already ran when the flow was suspended; its requirement, removed meanwhile, is still
    # checked by the next run (as upstream), which refuses to start.
    engine = load_local(lf.Flow("f").add(Work("b", requires="foo"), Work("c")))
    engine.storage.inject({"foo": "bar"})
    SuspendWhen(engine, "b", states.SUCCESS)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "b", "c")["c"] == (states.PENDING, states.EXECUTE)

    engine.storage.save(engine.storage.injector_name, {}, states.SUCCESS)
    with pytest.raises(exc.MissingDependencies) as info:
        engine.run()
    assert info.value.missing_requirements == ["foo"]
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "c")["c"] == (states.PENDING, states.EXECUTE)


def test_failure_of_a_task_gone_from_the_flow_is_still_raised(load_local, memory_backend):
    _book, flow_detail = persistence_utils.temporary_flow_detail(memory_backend)
    engine = load_local(
        lf.Flow("f").add(Work("a"), Work("b"), Work("c", fail=True)),
        flow_detail=flow_detail,
        backend=memory_backend,
    )
    SuspendWhen(engine, "b", states.REVERTED)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "a", "b", "c") == {
        "a": (states.SUCCESS, states.REVERT),
        "b": (states.REVERTED, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
    }

    # The flow object run next has no task c; the flow detail still records c's failure,
    # which a finishes reverting with and the run raises (as upstream).
    resumed = load_local(
        lf.Flow("f").add(Work("a"), Work("b")),
        flow_detail=reloaded(memory_backend, flow_detail),
        backend=memory_backend,
    )
    rec = Recorder(resumed)
    with pytest.raises(RuntimeError, match=r"^boom c$"):
        resumed.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.SUSPENDED),
        ("a", states.REVERTING, states.SUCCESS),
        ("a", states.REVERTED, states.REVERTING),
        ("flow", states.REVERTED, states.RUNNING),
    ]
    assert resumed.storage.get_revert_result("a")["flow_failures"] == {"c": "boom c"}


def test_retry_caught_retrying_resets_its_scope_and_runs_again(load):
    # Resumed with the retry RETRYING, its first task already back to PENDING and the others
    # still REVERTED: those are reset (notified), then the retry and its tasks run, as upstream.
    flow = lf.Flow("f", retry.Times(3, name="r")).add(Work("t1"), Work("t2"), Work("t3"))
    engine = load(flow)
    engine.compile()
    engine.prepare()
    storage = engine.storage
    storage.set_atom_state("r", states.RETRYING)
    storage.set_atom_state("t2", states.REVERTED)
    storage.set_atom_state("t3", states.REVERTED)
    rec = Recorder(engine)
    engine.run()
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("t2", states.PENDING, states.REVERTED),
        ("t3", states.PENDING, states.REVERTED),
        ("r", states.RUNNING, states.RETRYING),
        ("r", states.SUCCESS, states.RUNNING),
        ("t1", states.RUNNING, states.PENDING),
        ("t1", states.SUCCESS, states.RUNNING),
        ("t2", states.RUNNING, states.PENDING),
        ("t2", states.SUCCESS, states.RUNNING),
        ("t3", states.RUNNING, states.PENDING),
        ("t3", states.SUCCESS, states.RUNNING),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert rec.results[("r", states.SUCCESS)] == [1]
    assert atom_states(engine, "r", "t1", "t2", "t3") == dict.fromkeys(
        ("r", "t1", "t2", "t3"), (states.SUCCESS, states.EXECUTE)
    )
