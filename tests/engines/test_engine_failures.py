"""Failures without retries: reverting, what reverts receive, what the engine raises."""

from __future__ import annotations

import pytest

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.types.failure import Failure
from tests.helpers.engine_tasks import Recorder, Work, atom_states, failure_messages

ERRORS = (RuntimeError, ValueError, TypeError, exc.WrappedFailure)


def three_then_fail():
    return lf.Flow("f").add(
        Work("a", value=1, provides="x"), Work("b", value=2, provides="y"), Work("c", fail=True)
    )


def test_failure_reverts_in_reverse_order(load):
    engine = load(three_then_fail())
    rec = Recorder(engine)
    with pytest.raises(ERRORS) as info:
        engine.run()
    assert failure_messages(info.value) in (["RuntimeError: boom c"],)
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("a", states.RUNNING, states.PENDING),
        ("a", states.SUCCESS, states.RUNNING),
        ("b", states.RUNNING, states.PENDING),
        ("b", states.SUCCESS, states.RUNNING),
        ("c", states.RUNNING, states.PENDING),
        ("c", states.FAILURE, states.RUNNING),
        ("c", states.REVERTING, states.FAILURE),
        ("c", states.REVERTED, states.REVERTING),
        ("b", states.REVERTING, states.SUCCESS),
        ("b", states.REVERTED, states.REVERTING),
        ("a", states.REVERTING, states.SUCCESS),
        ("a", states.REVERTED, states.REVERTING),
        ("flow", states.REVERTED, states.RUNNING),
    ]
    assert engine.storage.get_flow_state() == states.REVERTED
    assert atom_states(engine, "a", "b", "c") == dict.fromkeys(
        "abc", (states.REVERTED, states.REVERT)
    )


def test_failure_reraises_original_exception(load):
    engine = load(three_then_fail())
    with pytest.raises(RuntimeError, match=r"^boom c$"):
        engine.run()


def test_revert_receives_result_and_flow_failures(load):
    engine = load(three_then_fail())
    with pytest.raises(ERRORS):
        engine.run()
    storage = engine.storage
    assert storage.get_revert_result("a") == {
        "result": ("result", 1),
        "flow_failures": {"c": "boom c"},
    }
    assert storage.get_revert_result("b") == {
        "result": ("result", 2),
        "flow_failures": {"c": "boom c"},
    }
    assert storage.get_revert_result("c") == {
        "result": ("failure", "boom c"),
        "flow_failures": {"c": "boom c"},
    }


def test_results_are_gone_after_revert(load):
    engine = load(three_then_fail())
    with pytest.raises(ERRORS):
        engine.run()
    assert engine.storage.fetch_all() == {}
    with pytest.raises(exc.NotFound):
        engine.storage.get("a")
    with pytest.raises(exc.NotFound):
        engine.storage.fetch("x")


def test_revert_result_events_carry_revert_return(load):
    engine = load(three_then_fail())
    rec = Recorder(engine)
    with pytest.raises(ERRORS):
        engine.run()
    assert rec.results[("a", states.REVERTED)] == [
        {"result": ("result", 1), "flow_failures": {"c": "boom c"}}
    ]
    (failure,) = rec.results[("c", states.FAILURE)]
    assert isinstance(failure, Failure)
    assert failure.check(RuntimeError) is RuntimeError


class _RevertArgs(task.Task):
    def execute(self, x):
        return x * 2

    def revert(self, x, result, flow_failures):
        return (x, result, sorted(flow_failures))


class _RevertRebind(task.Task):
    def execute(self):
        return 5

    def revert(self, z, **kwargs):
        return (z, kwargs["result"])


def test_revert_gets_its_mapped_arguments(load):
    flow = lf.Flow("f").add(_RevertArgs("ra", provides="y"), Work("c", fail=True))
    engine = load(flow, store={"x": 4})
    with pytest.raises(ERRORS):
        engine.run()
    assert engine.storage.get_revert_result("ra") == (4, 8, ["c"])


def test_revert_rebind(load):
    flow = lf.Flow("f").add(
        Work("p", value=9, provides="w"),
        _RevertRebind("rb", revert_rebind={"z": "w"}),
        Work("c", fail=True),
    )
    engine = load(flow)
    with pytest.raises(ERRORS):
        engine.run()
    assert engine.storage.get_revert_result("rb") == (9, 5)


class _NoKwargsRevert(task.Task):
    def execute(self):
        return 1

    def revert(self):
        return "never"


def test_revert_without_result_parameters_fails_the_revert(load):
    engine = load(lf.Flow("f").add(_NoKwargsRevert("n"), Work("c", fail=True)))
    with pytest.raises(ERRORS) as info:
        engine.run()
    assert failure_messages(info.value)[0].startswith("TypeError: ")
    assert engine.storage.get_flow_state() == states.FAILURE
    assert atom_states(engine, "n", "c") == {
        "n": (states.REVERT_FAILURE, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
    }


def test_revert_failure_fails_the_flow(load):
    flow = lf.Flow("f").add(Work("a", revert_fail=True), Work("b"), Work("c", fail=True))
    engine = load(flow)
    rec = Recorder(engine)
    with pytest.raises(ERRORS) as info:
        engine.run()
    assert failure_messages(info.value) == ["ValueError: revert boom a"]
    assert rec.events[-4:] == [
        ("b", states.REVERTED, states.REVERTING),
        ("a", states.REVERTING, states.SUCCESS),
        ("a", states.REVERT_FAILURE, states.REVERTING),
        ("flow", states.FAILURE, states.RUNNING),
    ]
    assert engine.storage.get_flow_state() == states.FAILURE
    assert atom_states(engine, "a", "b", "c") == {
        "a": (states.REVERT_FAILURE, states.REVERT),
        "b": (states.REVERTED, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
    }
    revert_failure = engine.storage.get_revert_result("a")
    assert isinstance(revert_failure, Failure)
    assert revert_failure.exception_str == "revert boom a"
    assert set(engine.storage.get_revert_failures()) == {"a"}
    assert set(engine.storage.get_execute_failures()) == {"c"}
    assert engine.storage.has_failures()


def test_revert_failure_reraises_revert_exception(load):
    flow = lf.Flow("f").add(Work("a", revert_fail=True), Work("c", fail=True))
    with pytest.raises(ValueError, match=r"^revert boom a$"):
        load(flow).run()


def test_revert_failure_stops_further_reverts(load):
    flow = lf.Flow("f").add(Work("a"), Work("b", revert_fail=True), Work("c", fail=True))
    engine = load(flow)
    with pytest.raises(ERRORS):
        engine.run()
    assert atom_states(engine, "a", "b", "c") == {
        "a": (states.SUCCESS, states.REVERT),
        "b": (states.REVERT_FAILURE, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
    }


def test_atom_reverts_after_all_its_successors(load):
    flow = lf.Flow("f").add(Work("a"), uf.Flow("u").add(Work("b"), Work("c", fail=True)), Work("d"))
    engine = load(flow)
    rec = Recorder(engine)
    with pytest.raises(ERRORS):
        engine.run()
    events = rec.events
    a_reverting = events.index(("a", states.REVERTING, states.SUCCESS))
    assert events.index(("b", states.REVERTED, states.REVERTING)) < a_reverting
    assert events.index(("c", states.REVERTED, states.REVERTING)) < a_reverting
    assert atom_states(engine, "a", "b", "c", "d") == {
        "a": (states.REVERTED, states.REVERT),
        "b": (states.REVERTED, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
        "d": (states.PENDING, states.REVERT),
    }


def test_each_atom_reverts_once(load):
    flow = uf.Flow("u").add(Work("a", fail=True), Work("b", fail=True), Work("c"))
    engine = load(flow)
    rec = Recorder(engine)
    with pytest.raises(exc.WrappedFailure) as info:
        engine.run()
    assert failure_messages(info.value) == ["RuntimeError: boom a", "RuntimeError: boom b"]
    assert sorted(rec.names_in(states.REVERTING)) == ["a", "b", "c"]
    assert sorted(rec.names_in(states.REVERTED)) == ["a", "b", "c"]
    for name in "abc":
        assert [e for e in rec.atom_events(name) if e[1] == states.REVERTED] == [
            (name, states.REVERTED, states.REVERTING)
        ]


def test_parallel_failures_are_wrapped(load):
    flow = uf.Flow("u").add(
        Work("a", fail=True, sleep=0.02), Work("b", fail=True, sleep=0.02), Work("c")
    )
    engine = load(flow)
    with pytest.raises(exc.WrappedFailure) as info:
        engine.run()
    wrapped = info.value
    assert len(wrapped) == 2
    assert wrapped.check(RuntimeError) is RuntimeError
    assert failure_messages(wrapped) == ["RuntimeError: boom a", "RuntimeError: boom b"]
    assert engine.storage.get_flow_state() == states.REVERTED
    assert atom_states(engine, "a", "b", "c") == dict.fromkeys(
        "abc", (states.REVERTED, states.REVERT)
    )


def test_failure_reverts_independent_graph_branches(load):
    flow = gf.Flow("g")
    a, b, c = Work("a"), Work("b"), Work("c", fail=True, sleep=0.02)
    flow.add(a, b, c)
    flow.link(a, c)
    engine = load(flow)
    with pytest.raises(ERRORS):
        engine.run()
    assert atom_states(engine, "a", "b", "c") == dict.fromkeys(
        "abc", (states.REVERTED, states.REVERT)
    )


def test_never_resolve_leaves_failure_unreverted(load):
    flow = lf.Flow("f").add(Work("a"), Work("c", fail=True), Work("d"))
    engine = load(flow, never_resolve=True)
    rec = Recorder(engine)
    with pytest.raises(ERRORS) as info:
        engine.run()
    assert failure_messages(info.value) == ["RuntimeError: boom c"]
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        ("a", states.RUNNING, states.PENDING),
        ("a", states.SUCCESS, states.RUNNING),
        ("c", states.RUNNING, states.PENDING),
        ("c", states.FAILURE, states.RUNNING),
        ("flow", states.FAILURE, states.RUNNING),
    ]
    assert atom_states(engine, "a", "c", "d") == {
        "a": (states.SUCCESS, states.EXECUTE),
        "c": (states.FAILURE, states.EXECUTE),
        "d": (states.PENDING, states.EXECUTE),
    }


def test_never_resolve_rerun_does_not_execute_failed_atom_again():
    engine = engines.load(lf.Flow("f").add(Work("a"), Work("c", fail=True)), never_resolve=True)
    with pytest.raises(RuntimeError):
        engine.run()
    rec = Recorder(engine)
    with pytest.raises(RuntimeError, match="boom c"):
        engine.run()
    assert rec.atom_events() == []
    assert rec.flow_states[0] == states.RUNNING


def test_defer_reverts_without_retries_reverts_everything(load):
    flow = lf.Flow("f").add(Work("a"), Work("c", fail=True), Work("d"))
    engine = load(flow, defer_reverts=True)
    rec = Recorder(engine)
    with pytest.raises(ERRORS):
        engine.run()
    assert rec.names_in(states.REVERTING) == ["c", "a"]
    assert atom_states(engine, "a", "c", "d") == {
        "a": (states.REVERTED, states.REVERT),
        "c": (states.REVERTED, states.REVERT),
        "d": (states.PENDING, states.REVERT),
    }
    assert engine.storage.get_flow_state() == states.REVERTED


def test_run_after_revert_starts_from_scratch(load):
    engine = load(lf.Flow("f").add(Work("a", value=1), Work("c", fail=True)))
    with pytest.raises(ERRORS):
        engine.run()
    rec = Recorder(engine)
    with pytest.raises(ERRORS):
        engine.run()
    assert rec.events[:3] == [
        ("a", states.PENDING, states.REVERTED),
        ("c", states.PENDING, states.REVERTED),
        ("flow", states.PENDING, states.REVERTED),
    ]
    assert rec.names_in(states.RUNNING) == ["a", "c"]
    assert rec.names_in(states.REVERTED) == ["c", "a"]
    assert rec.flow_states[-1] == states.REVERTED


def test_reset_after_revert_notifies_atoms(load):
    engine = load(lf.Flow("f").add(Work("a"), Work("c", fail=True)))
    with pytest.raises(ERRORS):
        engine.run()
    rec = Recorder(engine)
    engine.reset()
    assert rec.events == [
        ("a", states.PENDING, states.REVERTED),
        ("c", states.PENDING, states.REVERTED),
        ("flow", states.PENDING, states.REVERTED),
    ]


def test_reset_from_failure_is_invalid():
    engine = engines.load(lf.Flow("f").add(Work("a", revert_fail=True), Work("c", fail=True)))
    with pytest.raises(ValueError):
        engine.run()
    assert engine.storage.get_flow_state() == states.FAILURE
    with pytest.raises(exc.InvalidState):
        engine.reset()
