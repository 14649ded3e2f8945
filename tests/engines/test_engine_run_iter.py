"""run_iter state sequences, suspension (from a task, by send(True), by closing)."""

from __future__ import annotations

import pytest

from taskflow import engines, retry, states, task
from taskflow.engines.action_engine.engine import ActionEngine
from taskflow.patterns import linear_flow as lf
from tests.helpers.engine_tasks import FailUnless, Recorder, Work, atom_states

RESUMING, SCHEDULING, WAITING, ANALYZING = (
    states.RESUMING,
    states.SCHEDULING,
    states.WAITING,
    states.ANALYZING,
)
CYCLE = [SCHEDULING, WAITING, ANALYZING]


@pytest.fixture(params=["serial", "parallel"])
def kind(request):
    return request.param


def collect(engine):
    seen = []
    try:
        for state in engine.run_iter():
            seen.append(state)
    except Exception as err:
        seen.append(type(err).__name__)
    return seen


def test_run_iter_one_task(kind):
    engine = engines.load(lf.Flow("f").add(Work("a")), engine=kind)
    assert collect(engine) == [RESUMING, *CYCLE, states.SUCCESS]


def test_run_iter_two_tasks(kind):
    engine = engines.load(lf.Flow("f").add(Work("a"), Work("b")), engine=kind)
    assert collect(engine) == [RESUMING, *CYCLE, *CYCLE, states.SUCCESS]


def test_run_iter_failure_yields_reverted_then_raises(kind):
    engine = engines.load(lf.Flow("f").add(Work("a"), Work("c", fail=True)), engine=kind)
    # Two cycles run a and c, two more revert c then a.
    assert collect(engine) == [RESUMING, *(CYCLE * 4), states.REVERTED, "RuntimeError"]


def test_run_iter_with_retry(kind):
    flow = lf.Flow("f", retry.Times(2, name="r", provides="v")).add(FailUnless("b", ok=[2]))
    engine = engines.load(flow, engine=kind)
    assert collect(engine) == [RESUMING, *(CYCLE * 5), states.SUCCESS]


def test_run_iter_after_success_is_short(kind):
    engine = engines.load(lf.Flow("f").add(Work("a")), engine=kind)
    engine.run()
    assert collect(engine) == [RESUMING, *CYCLE, states.SUCCESS]


def test_flow_is_running_while_iterating():
    engine = engines.load(lf.Flow("f").add(Work("a", value=1, provides="x"), Work("b")))
    seen = [(state, engine.storage.get_flow_state()) for state in engine.run_iter()]
    assert seen[0] == (RESUMING, states.RUNNING)
    assert {flow_state for state, flow_state in seen[:-1]} == {states.RUNNING}
    assert engine.storage.get_flow_state() == states.SUCCESS


class Suspender(task.Task):
    """Asks its engine (set after loading) to suspend, then finishes normally."""

    engine = None

    def execute(self):
        self.engine.suspend()
        return self.name

    def revert(self, *args, **kwargs):
        return None


def suspending_flow():
    stopper = Suspender("s")
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"), stopper, Work("b", value=2))
    return flow, stopper


def test_suspend_from_task(load_local):
    flow, stopper = suspending_flow()
    engine = load_local(flow)
    stopper.engine = engine
    rec = Recorder(engine)
    assert collect(engine) == [RESUMING, *CYCLE, *CYCLE, states.SUSPENDED]
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("a", states.RUNNING, states.PENDING),
        ("a", states.SUCCESS, states.RUNNING),
        ("s", states.RUNNING, states.PENDING),
        ("flow", states.SUSPENDING, states.RUNNING),
        ("s", states.SUCCESS, states.RUNNING),
        ("flow", states.SUSPENDED, states.SUSPENDING),
    ]
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "a", "s", "b") == {
        "a": (states.SUCCESS, states.EXECUTE),
        "s": (states.SUCCESS, states.EXECUTE),
        "b": (states.PENDING, states.EXECUTE),
    }


def test_resume_after_suspend_runs_the_rest(load_local):
    flow, stopper = suspending_flow()
    engine = load_local(flow)
    stopper.engine = engine
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    rec = Recorder(engine)
    assert collect(engine) == [RESUMING, *CYCLE, states.SUCCESS]
    assert rec.events == [
        ("flow", states.RUNNING, states.SUSPENDED),
        ("b", states.RUNNING, states.PENDING),
        ("b", states.SUCCESS, states.RUNNING),
        ("flow", states.SUCCESS, states.RUNNING),
    ]


def test_suspend_by_last_task_still_succeeds(load_local):
    stopper = Suspender("s")
    engine = load_local(lf.Flow("f").add(Work("a"), stopper))
    stopper.engine = engine
    rec = Recorder(engine)
    assert collect(engine) == [RESUMING, *CYCLE, *CYCLE, states.SUCCESS]
    assert rec.flow_states == [states.RUNNING, states.SUSPENDING, states.SUCCESS]


def test_suspend_then_failure_on_resume(load_local):
    stopper = Suspender("s")
    engine = load_local(lf.Flow("f").add(Work("a"), stopper, Work("c", fail=True)))
    stopper.engine = engine
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    rec = Recorder(engine)
    assert collect(engine)[-2:] == [states.REVERTED, "RuntimeError"]
    assert rec.names_in(states.REVERTED) == ["c", "s", "a"]


class _SuspendInRevert(task.Task):
    engine = None

    def execute(self):
        return 1

    def revert(self, *args, **kwargs):
        self.engine.suspend()


def test_suspend_during_revert_then_finish_reverting(load_local):
    stopper = _SuspendInRevert("s")
    engine = load_local(lf.Flow("f").add(Work("a"), stopper, Work("c", fail=True)))
    stopper.engine = engine
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "a", "s", "c") == {
        "a": (states.SUCCESS, states.REVERT),
        "s": (states.REVERTED, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
    }
    with pytest.raises(RuntimeError, match="boom c"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert atom_states(engine, "a")["a"] == (states.REVERTED, states.REVERT)


def test_send_true_suspends():
    engine = engines.load(lf.Flow("f").add(Work("a", value=1), Work("b"), Work("c")))
    rec = Recorder(engine)
    iterator = engine.run_iter()
    seen = [next(iterator) for _ in range(4)]
    assert seen == [RESUMING, *CYCLE]
    seen.append(iterator.send(True))
    seen.extend(iterator)
    assert seen == [RESUMING, *CYCLE, states.SUSPENDED]
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("a", states.RUNNING, states.PENDING),
        ("flow", states.SUSPENDING, states.RUNNING),
        ("a", states.SUCCESS, states.RUNNING),
        ("flow", states.SUSPENDED, states.SUSPENDING),
    ]
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "a", "b", "c") == {
        "a": (states.SUCCESS, states.EXECUTE),
        "b": (states.PENDING, states.EXECUTE),
        "c": (states.PENDING, states.EXECUTE),
    }
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_closing_run_iter_suspends():
    engine = engines.load(lf.Flow("f").add(Work("a"), Work("b"), Work("c")))
    rec = Recorder(engine)
    iterator = engine.run_iter()
    seen = [next(iterator) for _ in range(5)]
    iterator.close()
    assert seen == [RESUMING, *CYCLE, SCHEDULING]
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("a", states.RUNNING, states.PENDING),
        ("a", states.SUCCESS, states.RUNNING),
        ("flow", states.SUSPENDING, states.RUNNING),
        ("flow", states.SUSPENDED, states.SUSPENDING),
    ]
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert atom_states(engine, "b", "c") == {
        "b": (states.PENDING, states.EXECUTE),
        "c": (states.PENDING, states.EXECUTE),
    }
    assert collect(engine) == [RESUMING, *CYCLE, *CYCLE, states.SUCCESS]
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_closed_run_iter_releases_the_lock():
    engine = engines.load(lf.Flow("f").add(Work("a"), Work("b")))
    iterator = engine.run_iter()
    next(iterator)
    iterator.close()
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS


@pytest.mark.parametrize("steps", range(1, 8))
def test_an_exception_thrown_into_run_iter_ends_the_flow_in_failure(load_local, steps):
    # Whatever state it is thrown at, the error comes out of throw() (as upstream) and the
    # flow is recorded FAILURE, not left RUNNING; the generator is then finished.
    engine = load_local(lf.Flow("f").add(Work("a"), Work("b"), Work("c")))
    it = engine.run_iter()
    for _ in range(steps):
        assert next(it) in ActionEngine.IGNORABLE_STATES
    with pytest.raises(OSError, match="disk gone"):
        it.throw(OSError("disk gone"))
    assert engine.storage.get_flow_state() == states.FAILURE
    assert next(it, None) is None
    # The engine is free again: a new run resolves and finishes the flow.
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_a_keyboard_interrupt_thrown_into_run_iter_stops_the_run_and_frees_it(tmp_path):
    # As Ctrl-C in run(): the interrupt comes out of throw(), and the run inside has ended:
    # its ownership of the flow released, its lease thread gone, the engine free again.
    import threading

    from taskflow import engines
    from taskflow.persistence import backends
    from tests.helpers import services

    services.need_module("sqlalchemy", "database")
    conf = {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    with backends.backend(conf) as backend:
        engine = engines.load(lf.Flow("f").add(Work("a"), Work("b")), backend=backend)
        it = engine.run_iter()
        next(it)
        next(it)
        with pytest.raises(KeyboardInterrupt) as caught:
            it.throw(KeyboardInterrupt())
        # The traceback stays alive (as an interactive session keeps its last one): the
        # run must have ended already, not when the traceback is dropped.
        assert caught.tb is not None
        flow_uuid = engine.storage.flow_uuid
        with backend.get_connection() as conn:
            assert not conn.read_ownership(flow_uuid).held
        assert not [t for t in threading.enumerate() if t.name == "taskflow-lease"]
        assert next(it, None) is None
        engine.run()  # not locked: a new run finishes the flow
        assert engine.storage.get_flow_state() == states.SUCCESS
