"""Retry controllers in running engines: decisions, nesting, histories and delays."""

from __future__ import annotations

import time

import pytest

from taskflow import exceptions as exc
from taskflow import retry, states
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from tests.helpers.engine_tasks import (
    FailUnless,
    Recorder,
    Work,
    atom_states,
    failure_messages,
    history_summary,
)

ERRORS = (RuntimeError, ValueError, exc.WrappedFailure)

S, E, RV, RT = states.SUCCESS, states.EXECUTE, states.REVERTED, states.REVERT


def run_failing(engine):
    with pytest.raises(ERRORS) as info:
        engine.run()
    return failure_messages(info.value)


def test_times_retries_until_success(load):
    flow = lf.Flow("f", retry.Times(3, name="r", provides="v")).add(
        Work("a"), FailUnless("b", ok=[3])
    )
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    attempt = [
        ("r", states.RUNNING, states.PENDING),
        ("r", states.SUCCESS, states.RUNNING),
        ("a", states.RUNNING, states.PENDING),
        ("a", states.SUCCESS, states.RUNNING),
        ("b", states.RUNNING, states.PENDING),
    ]
    retry_again = [
        ("b", states.FAILURE, states.RUNNING),
        ("b", states.REVERTING, states.FAILURE),
        ("b", states.REVERTED, states.REVERTING),
        ("a", states.REVERTING, states.SUCCESS),
        ("a", states.REVERTED, states.REVERTING),
        ("r", states.RETRYING, states.SUCCESS),
        ("a", states.PENDING, states.REVERTED),
        ("b", states.PENDING, states.REVERTED),
        ("r", states.RUNNING, states.RETRYING),
    ]
    again = attempt[1:]
    assert rec.events == [
        ("flow", states.RUNNING, states.PENDING),
        *attempt,
        *retry_again,
        *again,
        *retry_again,
        *again,
        ("b", states.SUCCESS, states.RUNNING),
        ("flow", states.SUCCESS, states.RUNNING),
    ]
    assert history_summary(engine.storage.get_retry_history("r")) == [
        (1, {"b": "fail b 1"}),
        (2, {"b": "fail b 2"}),
        (3, {}),
    ]
    assert engine.storage.fetch_all() == {"v": 3}
    assert atom_states(engine, "r", "a", "b") == dict.fromkeys(("r", "a", "b"), (S, E))


def test_times_exhausted_reverts_everything(load):
    flow = lf.Flow("f", retry.Times(2, name="r", provides="v")).add(Work("a"), FailUnless("b"))
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b 2"]
    assert rec.names_in(states.RUNNING) == ["r", "a", "b", "r", "a", "b"]
    assert rec.events[-3:] == [
        ("r", states.REVERTING, states.SUCCESS),
        ("r", states.REVERTED, states.REVERTING),
        ("flow", states.REVERTED, states.RUNNING),
    ]
    assert atom_states(engine, "r", "a", "b") == dict.fromkeys(("r", "a", "b"), (RV, RT))
    assert len(engine.storage.get_retry_history("r")) == 0
    assert engine.storage.fetch_all() == {}


def test_for_each_uses_next_value(load):
    flow = lf.Flow("f", retry.ForEach([1, 2, 3], name="r", provides="v")).add(
        FailUnless("b", ok=[2])
    )
    engine = load(flow)
    engine.run()
    assert history_summary(engine.storage.get_retry_history("r")) == [
        (1, {"b": "fail b 1"}),
        (2, {}),
    ]
    assert engine.storage.fetch_all() == {"v": 2}
    assert engine.storage.get("b") == 2


def test_for_each_exhausted(load):
    flow = lf.Flow("f", retry.ForEach([1, 2], name="r", provides="v")).add(FailUnless("b"))
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b 2"]
    assert rec.names_in(states.RUNNING) == ["r", "b", "r", "b"]
    assert atom_states(engine, "r", "b") == {"r": (RV, RT), "b": (RV, RT)}


def test_parameterized_for_each_reads_values(load):
    flow = lf.Flow("f", retry.ParameterizedForEach(name="r", provides="v", rebind=["vals"])).add(
        FailUnless("b", ok=[5])
    )
    engine = load(flow, store={"vals": [4, 5, 6]})
    engine.run()
    assert history_summary(engine.storage.get_retry_history("r")) == [
        (4, {"b": "fail b 4"}),
        (5, {}),
    ]
    assert engine.storage.fetch_all() == {"vals": [4, 5, 6], "v": 5}


def test_always_revert_only_reverts_its_subflow(load):
    flow = lf.Flow("o").add(
        Work("x"), lf.Flow("f", retry.AlwaysRevert("r")).add(Work("a"), FailUnless("b"))
    )
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b None"]
    assert rec.names_in(states.REVERTING) == ["b", "a", "r"]
    assert atom_states(engine, "x", "r", "a", "b") == {
        "x": (S, E),
        "r": (RV, RT),
        "a": (RV, RT),
        "b": (RV, RT),
    }
    assert engine.storage.get_flow_state() == states.REVERTED


def test_always_revert_all_reverts_outer_atoms(load):
    flow = lf.Flow("o").add(
        Work("x"), lf.Flow("f", retry.AlwaysRevertAll("r")).add(Work("a"), FailUnless("b"))
    )
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b None"]
    assert rec.names_in(states.REVERTING) == ["b", "a", "r", "x"]
    assert atom_states(engine, "x", "r", "a", "b") == dict.fromkeys(("x", "r", "a", "b"), (RV, RT))


def test_times_revert_all_when_exhausted(load):
    flow = lf.Flow("o").add(
        Work("x"),
        lf.Flow("f", retry.Times(1, name="r", revert_all=True)).add(FailUnless("b")),
    )
    engine = load(flow)
    run_failing(engine)
    assert atom_states(engine, "x", "r", "b") == dict.fromkeys(("x", "r", "b"), (RV, RT))


def test_retry_in_unordered_parallel_subflow_resets_all_atoms(load):
    flow = uf.Flow("f", retry.Times(3, name="r", provides="v")).add(
        FailUnless("b", ok=[2]), Work("c", value=5, provides="cc")
    )
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert rec.names_in(states.RUNNING).count("c") == 2
    assert engine.storage.fetch_all() == {"cc": 5, "v": 2}
    assert atom_states(engine, "r", "b", "c") == dict.fromkeys(("r", "b", "c"), (S, E))


# -- nesting --------------------------------------------------------------------------------


def test_inner_exhausted_outer_retries(load):
    inner = lf.Flow("i", retry.Times(2, name="ri", provides="iv")).add(
        FailUnless("b", rebind={"v": "iv"})
    )
    flow = lf.Flow("o", retry.Times(2, name="ro", provides="ov")).add(Work("x"), inner)
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b 2"]
    assert rec.names_in(states.RUNNING).count("b") == 4
    assert rec.names_in(states.RUNNING).count("x") == 2
    assert atom_states(engine, "ro", "x", "ri", "b") == {
        "ro": (S, E),
        "x": (S, E),
        "ri": (RV, RT),
        "b": (RV, RT),
    }
    assert engine.storage.get_flow_state() == states.REVERTED
    assert len(engine.storage.get_retry_history("ri")) == 0
    assert engine.storage.fetch_all() == {"ov": 2}


def test_outer_history_records_inner_retry_as_failed_atom(load):
    inner = lf.Flow("i", retry.Times(2, name="ri", provides="iv")).add(
        FailUnless("b", rebind={"v": "iv"})
    )
    flow = lf.Flow("o", retry.Times(2, name="ro", provides="ov")).add(Work("x"), inner)
    engine = load(flow)
    run_failing(engine)
    assert history_summary(engine.storage.get_retry_history("ro")) == [
        (1, {"ri": "fail b 2"}),
        (2, {"ri": "fail b 2"}),
    ]


def test_inner_revert_all_reverts_everything(load):
    inner = lf.Flow("i", retry.Times(1, name="ri", provides="iv", revert_all=True)).add(
        FailUnless("b", rebind={"v": "iv"})
    )
    flow = lf.Flow("o", retry.Times(3, name="ro", provides="ov")).add(Work("x"), inner)
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b 1"]
    assert rec.names_in(states.RUNNING) == ["ro", "x", "ri", "b"]
    assert atom_states(engine, "ro", "x", "ri", "b") == dict.fromkeys(
        ("ro", "x", "ri", "b"), (RV, RT)
    )
    assert len(engine.storage.get_retry_history("ro")) == 0


def test_inner_revert_outer_revert_keeps_outer_atoms(load):
    inner = lf.Flow("i", retry.AlwaysRevert("ri")).add(FailUnless("b"))
    flow = lf.Flow("o", retry.AlwaysRevert("ro")).add(Work("x"), inner)
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b None"]
    assert rec.names_in(states.REVERTING) == ["b", "ri"]
    assert atom_states(engine, "ro", "x", "ri", "b") == {
        "ro": (S, E),
        "x": (S, E),
        "ri": (RV, RT),
        "b": (RV, RT),
    }
    assert history_summary(engine.storage.get_retry_history("ro")) == [
        (None, {"ri": "fail b None"})
    ]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_inner_revert_outer_retry_succeeds(load):
    inner = lf.Flow("i", retry.AlwaysRevert("ri")).add(FailUnless("b", ok=[2], rebind={"v": "ov"}))
    flow = lf.Flow("o", retry.Times(2, name="ro", provides="ov")).add(Work("x"), inner)
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert rec.names_in(states.RUNNING) == ["ro", "x", "ri", "b", "ro", "x", "ri", "b"]
    assert atom_states(engine, "ro", "x", "ri", "b") == dict.fromkeys(
        ("ro", "x", "ri", "b"), (S, E)
    )
    assert history_summary(engine.storage.get_retry_history("ro")) == [
        (1, {"ri": "fail b 1"}),
        (2, {}),
    ]
    assert history_summary(engine.storage.get_retry_history("ri")) == [(None, {})]
    assert engine.storage.fetch_all() == {"ov": 2}


def test_defer_reverts_hands_revert_to_outer_levels(load):
    inner = lf.Flow("i", retry.AlwaysRevert("ri")).add(FailUnless("b"))
    outer = lf.Flow("o", retry.AlwaysRevert("ro")).add(Work("x"), inner)
    flow = lf.Flow("top").add(Work("y"), outer)
    engine = load(flow, defer_reverts=True)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b None"]
    assert rec.names_in(states.REVERTING) == ["b", "ri", "x", "ro", "y"]
    assert atom_states(engine, "y", "ro", "x", "ri", "b") == dict.fromkeys(
        ("y", "ro", "x", "ri", "b"), (RV, RT)
    )


def test_without_defer_reverts_only_inner_subflow_reverts(load):
    inner = lf.Flow("i", retry.AlwaysRevert("ri")).add(FailUnless("b"))
    outer = lf.Flow("o", retry.AlwaysRevert("ro")).add(Work("x"), inner)
    flow = lf.Flow("top").add(Work("y"), outer)
    engine = load(flow)
    run_failing(engine)
    assert atom_states(engine, "y", "ro", "x", "ri", "b") == {
        "y": (S, E),
        "ro": (S, E),
        "x": (S, E),
        "ri": (RV, RT),
        "b": (RV, RT),
    }


class _BrokenRetry(retry.Times):
    def execute(self, history, *args, **kwargs):
        raise RuntimeError("retry exec boom")


def test_retry_execute_failure_reverts_flow(load):
    flow = lf.Flow("top").add(Work("y"), lf.Flow("o", _BrokenRetry(name="br")).add(Work("x")))
    engine = load(flow)
    assert run_failing(engine) == ["RuntimeError: retry exec boom"]
    assert atom_states(engine, "y", "br", "x") == {
        "y": (RV, RT),
        "br": (RV, RT),
        "x": (states.PENDING, RT),
    }
    history = engine.storage.get_retry_history("br")
    assert len(history) == 0
    assert history.failure is not None
    assert history.failure.exception_str == "retry exec boom"


class _BogusDecision(retry.Retry):
    def execute(self, history):
        return 1

    def on_failure(self, history):
        return "bogus"


def test_unknown_decision_fails_the_flow(load):
    engine = load(lf.Flow("f", _BogusDecision("r")).add(FailUnless("b")))
    with pytest.raises(ValueError, match="bogus"):
        engine.run()
    assert engine.storage.get_flow_state() == states.FAILURE
    assert atom_states(engine, "r", "b") == {"r": (S, E), "b": (states.FAILURE, E)}


class _Watching(retry.Times):
    """Records what ``on_failure`` and ``revert`` see (this process only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def on_failure(self, history, *args, **kwargs):
        self.seen.append(
            (
                "on_failure",
                len(history),
                [sorted(fails) for _value, fails in history],
                history.caused_by(RuntimeError),
                list(history.provided_iter()),
            )
        )
        return super().on_failure(history, *args, **kwargs)

    def revert(self, history, *args, **kwargs):
        self.seen.append(("revert", len(history), sorted(kwargs.get("flow_failures", {}))))


def test_retry_sees_history_in_on_failure(load):
    watcher = _Watching(3, name="r", provides="v")
    engine = load(lf.Flow("f", watcher).add(FailUnless("b", ok=[3])))
    engine.run()
    assert watcher.seen == [
        ("on_failure", 1, [["b"]], True, [1]),
        ("on_failure", 2, [["b"], ["b"]], True, [1, 2]),
    ]


def test_retry_revert_gets_history_and_flow_failures(load):
    watcher = _Watching(2, name="r")
    engine = load(lf.Flow("f", watcher).add(FailUnless("b")))
    run_failing(engine)
    assert watcher.seen[-1] == ("revert", 2, ["b"])


# -- delays (ours only: upstream has no retry delay) -----------------------------------------


def test_retry_delay_waits_between_attempts(load):
    controller = retry.Times(3, name="r", provides="v", delay=0.05)
    expected = controller.delay_for(1) + controller.delay_for(2)
    assert expected >= 0.1
    engine = load(lf.Flow("f", controller).add(FailUnless("b", ok=[3])))
    started = time.monotonic()
    engine.run()
    assert time.monotonic() - started >= expected
    assert engine.storage.fetch_all() == {"v": 3}


def test_no_delay_by_default():
    controller = retry.Times(3, name="r")
    assert controller.delay_for(1) == 0.0
    assert controller.delay_for(2) == 0.0


def _consumer_after_retried_subflow(attempts):
    """``a`` needs ``x`` from ``b``, inside a subflow [b, c] whose retry gives ``attempts``;
    the retry, ``b`` and ``a`` have results already (as upstream's tests seed storage)."""
    from taskflow.patterns import graph_flow as gf

    sub = lf.Flow("sub", retry.Times(attempts, name="r")).add(
        Work("b", value=5, provides="x"), Work("c", fail=True)
    )
    return gf.Flow("root").add(Work("a", requires="x"), sub)


def _seeded(load, flow):
    engine = load(flow)
    engine.compile()
    engine.prepare()
    engine.storage.save("r", 1)
    engine.storage.save("b", 5)
    engine.storage.save("a", 5)
    return engine


REVERT_A_C_B = [
    ("c", states.RUNNING, states.PENDING),
    ("c", states.FAILURE, states.RUNNING),
    ("a", states.REVERTING, states.SUCCESS),
    ("a", states.REVERTED, states.REVERTING),
    ("c", states.REVERTING, states.FAILURE),
    ("c", states.REVERTED, states.REVERTING),
    ("b", states.REVERTING, states.SUCCESS),
    ("b", states.REVERTED, states.REVERTING),
]


def test_retry_reverts_and_reruns_atoms_that_used_its_subflows_results(load):
    # As upstream: a retry's decision covers its subflow and everything after it, so `a`
    # (outside, but fed by `b`) is reverted first, then reset and left to run again.
    engine = _seeded(load, _consumer_after_retried_subflow(2))
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: boom c"]
    assert rec.atom_events() == [
        *REVERT_A_C_B,
        ("r", states.RETRYING, states.SUCCESS),
        ("b", states.PENDING, states.REVERTED),
        ("c", states.PENDING, states.REVERTED),
        ("a", states.PENDING, states.REVERTED),
        ("r", states.RUNNING, states.RETRYING),
        ("r", states.SUCCESS, states.RUNNING),
        ("b", states.RUNNING, states.PENDING),
        ("b", states.SUCCESS, states.RUNNING),
        ("c", states.RUNNING, states.PENDING),
        ("c", states.FAILURE, states.RUNNING),
        ("c", states.REVERTING, states.FAILURE),
        ("c", states.REVERTED, states.REVERTING),
        ("b", states.REVERTING, states.SUCCESS),
        ("b", states.REVERTED, states.REVERTING),
        ("r", states.REVERTING, states.SUCCESS),
        ("r", states.REVERTED, states.REVERTING),
    ]
    assert engine.storage.get_flow_state() == states.REVERTED
    assert atom_states(engine, "r", "b", "c", "a") == {
        "r": (RV, RT),
        "b": (RV, RT),
        "c": (RV, RT),
        "a": (states.PENDING, RT),
    }


def test_retry_reverting_reverts_atoms_that_used_its_subflows_results(load):
    engine = _seeded(load, _consumer_after_retried_subflow(1))
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: boom c"]
    assert rec.atom_events() == [
        *REVERT_A_C_B,
        ("r", states.REVERTING, states.SUCCESS),
        ("r", states.REVERTED, states.REVERTING),
    ]
    assert atom_states(engine, "r", "b", "c", "a") == dict.fromkeys("rbca", (RV, RT))


def test_atoms_after_a_reverted_retry_subflow_are_marked_reverted_too(load):
    # What comes after the subflow never ran, but it belongs to what the retry reverted: its
    # intention says so (as upstream), and the flow still ends REVERTED.
    flow = lf.Flow("o").add(
        Work("x"), lf.Flow("f", retry.Times(2, name="r")).add(FailUnless("b")), Work("after")
    )
    engine = load(flow)
    rec = Recorder(engine)
    assert run_failing(engine) == ["RuntimeError: fail b None"]
    assert "after" not in rec.names_in(states.RUNNING)
    assert atom_states(engine, "x", "r", "b", "after") == {
        "x": (S, E),
        "r": (RV, RT),
        "b": (RV, RT),
        "after": (states.PENDING, RT),
    }
    assert engine.storage.get_flow_state() == states.REVERTED


def test_a_retry_writes_nothing_for_atoms_after_it_that_never_ran(load, memory_backend):
    # The atoms after a retried subflow belong to what the retry reverts and resets; those
    # that never ran need no record written for that (two writes each per attempt otherwise).
    flow = lf.Flow("o").add(
        lf.Flow("f", retry.Times(3, name="r", provides="v")).add(FailUnless("b", ok=[3])),
        *(Work(f"after{i}") for i in range(3)),
    )
    engine = load(flow, backend=memory_backend)
    writes: list[tuple[str, str, str]] = []
    save = engine.storage.save_atom_detail

    def recording_save(ad):
        writes.append((ad.name, ad.state, ad.intention))
        save(ad)

    engine.storage.save_atom_detail = recording_save
    engine.run()
    assert [w for w in writes if w[0].startswith("after")] == [
        (f"after{i}", state, E) for i in range(3) for state in (states.RUNNING, S)
    ]
    assert len(engine.storage.get_retry_history("r")) == 3
