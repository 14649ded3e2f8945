"""Deciders on graph links: which atoms each depth ignores, and what deciders see."""

from __future__ import annotations

import pytest

from taskflow import engines, states
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from tests.helpers.engine_tasks import Recorder, Work, atom_states

IGNORED = (states.IGNORE, states.IGNORE)
DONE = (states.SUCCESS, states.EXECUTE)


class Votes:
    """A decider that always answers ``answer`` and records the histories it saw."""

    def __init__(self, answer):
        self.answer = answer
        self.seen = []

    def __call__(self, history):
        self.seen.append(dict(history))
        return self.answer


def run_graph(load, flow):
    engine = load(flow)
    rec = Recorder(engine)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    return engine, rec


def fan_out(depth, decider):
    """a -(decider)-> b; b -> c -> f; b -> sub(d, e)."""
    flow = gf.Flow("g")
    a, b, c, f = (
        Work("a", value=1, provides="ra"),
        Work("b", value=2, provides="rb"),
        Work("c"),
        Work("f"),
    )
    sub = lf.Flow("sub").add(Work("d"), Work("e"))
    flow.add(a, b, c, f, sub)
    flow.link(a, b, decider=decider, decider_depth=depth)
    flow.link(b, c)
    flow.link(c, f)
    flow.link(b, sub)
    return flow


@pytest.mark.parametrize(
    ("depth", "ignored"),
    [
        ("ALL", {"b", "c", "f", "d", "e"}),
        ("FLOW", {"b", "c", "f"}),
        ("NEIGHBORS", {"b", "c"}),
        ("ATOM", {"b"}),
        ("all", {"b", "c", "f", "d", "e"}),
        ("atom", {"b"}),
    ],
)
def test_depths_on_an_atom_target(load, depth, ignored):
    decider = Votes(False)
    engine, rec = run_graph(load, fan_out(depth, decider))
    names = ("a", "b", "c", "d", "e", "f")
    assert atom_states(engine, *names) == {n: IGNORED if n in ignored else DONE for n in names}
    assert set(rec.names_in(states.IGNORE)) == ignored
    assert [e for e in rec.events if e[1] == states.IGNORE] == [
        (n, states.IGNORE, states.PENDING) for n in rec.names_in(states.IGNORE)
    ]
    assert set(rec.names_in(states.RUNNING)) == set(names) - ignored
    assert decider.seen == [{"a": 1}]
    assert engine.storage.fetch_all() == {"ra": 1}


def test_depth_enum_values_are_accepted(load):
    from taskflow.deciders import Depth

    engine, _rec = run_graph(load, fan_out(Depth.NEIGHBORS, Votes(False)))
    assert atom_states(engine, "b", "c", "f") == {"b": IGNORED, "c": IGNORED, "f": DONE}


def into_subflow(depth):
    """a -(no)-> sub(d, e) -> z."""
    flow = gf.Flow("g")
    a, z = Work("a", value=1), Work("z")
    sub = lf.Flow("sub").add(Work("d"), Work("e"))
    flow.add(a, sub, z)
    flow.link(a, sub, decider=Votes(False), decider_depth=depth)
    flow.link(sub, z)
    return flow


@pytest.mark.parametrize(
    ("depth", "ignored"),
    [
        ("ALL", {"d", "e", "z"}),
        ("FLOW", {"d", "e"}),
        ("NEIGHBORS", {"d", "e"}),
        ("ATOM", {"d"}),
    ],
)
def test_depths_on_a_subflow_target(load, depth, ignored):
    engine, _rec = run_graph(load, into_subflow(depth))
    names = ("a", "d", "e", "z")
    assert atom_states(engine, *names) == {n: IGNORED if n in ignored else DONE for n in names}


def around_subflow(depth):
    """a -(no)-> x; x -> uf(y1, y2) -> w; x -> q."""
    flow = gf.Flow("g")
    a, x, w, q = Work("a"), Work("x"), Work("w"), Work("q")
    sub = uf.Flow("s2").add(Work("y1"), Work("y2"))
    flow.add(a, x, sub, w, q)
    flow.link(a, x, decider=Votes(False), decider_depth=depth)
    flow.link(x, sub)
    flow.link(sub, w)
    flow.link(x, q)
    return flow


@pytest.mark.parametrize(
    ("depth", "ignored"),
    [
        ("ALL", {"x", "y1", "y2", "w", "q"}),
        ("FLOW", {"x", "q"}),
        ("NEIGHBORS", {"x", "q"}),
        ("ATOM", {"x"}),
    ],
)
def test_depths_do_not_cross_nested_flows(load, depth, ignored):
    engine, _rec = run_graph(load, around_subflow(depth))
    names = ("a", "x", "y1", "y2", "w", "q")
    assert atom_states(engine, *names) == {n: IGNORED if n in ignored else DONE for n in names}


def test_yes_decider_runs_target(load):
    decider = Votes(True)
    flow = gf.Flow("g")
    a, b = Work("a", value=1), Work("b", value=2, provides="rb")
    flow.add(a, b)
    flow.link(a, b, decider=decider)
    engine, rec = run_graph(load, flow)
    assert decider.seen == [{"a": 1}]
    assert rec.names_in(states.IGNORE) == []
    assert engine.storage.fetch_all() == {"rb": 2}


def test_truthiness_of_decider_result(load):
    flow = gf.Flow("g")
    a, b, c = Work("a"), Work("b"), Work("c")
    flow.add(a, b, c)
    flow.link(a, b, decider=lambda history: [])
    flow.link(a, c, decider=lambda history: "yes")
    engine, _rec = run_graph(load, flow)
    assert atom_states(engine, "b", "c") == {"b": IGNORED, "c": DONE}


def test_decider_not_consulted_for_already_ignored_target(load):
    no, yes = Votes(False), Votes(True)
    flow = gf.Flow("g")
    a, b, c = Work("a", value=1), Work("b", value=2), Work("c", value=3)
    flow.add(a, b, c)
    flow.link(a, b, decider=no)
    flow.link(b, c, decider=yes)
    flow.link(a, c)
    engine, _rec = run_graph(load, flow)
    assert atom_states(engine, "a", "b", "c") == {"a": DONE, "b": IGNORED, "c": IGNORED}
    assert no.seen == [{"a": 1}]
    assert yes.seen == []


def test_widest_veto_wins(load):
    flow = gf.Flow("g")
    a, b, c, d = Work("a"), Work("b"), Work("c"), Work("d")
    flow.add(a, b, c, d)
    flow.link(a, c, decider=Votes(False), decider_depth="ATOM")
    flow.link(b, c, decider=Votes(False), decider_depth="ALL")
    flow.link(c, d)
    engine, _rec = run_graph(load, flow)
    assert atom_states(engine, "a", "b", "c", "d") == {
        "a": DONE,
        "b": DONE,
        "c": IGNORED,
        "d": IGNORED,
    }


def test_each_decider_sees_every_source_of_the_target(load):
    decider = Votes(True)
    flow = gf.Flow("g")
    a, b, c = Work("a", value="A"), Work("b", value="B"), Work("c")
    flow.add(a, b, c)
    flow.link(a, c, decider=decider)
    flow.link(b, c, decider=decider)
    run_graph(load, flow)
    assert decider.seen == [{"a": "A", "b": "B"}, {"a": "A", "b": "B"}]


def test_reset_clears_ignore_and_run_ignores_again(load):
    flow = gf.Flow("g")
    a, b = Work("a"), Work("b")
    flow.add(a, b)
    flow.link(a, b, decider=Votes(False))
    engine, _rec = run_graph(load, flow)
    engine.reset()
    assert atom_states(engine, "a", "b") == {
        "a": (states.PENDING, states.EXECUTE),
        "b": (states.PENDING, states.EXECUTE),
    }
    engine.run()
    assert atom_states(engine, "a", "b") == {"a": DONE, "b": IGNORED}


def test_ignored_atoms_keep_successors_going_in_parallel():
    flow = gf.Flow("g")
    a, b, c = Work("a"), Work("b", sleep=0.02), Work("c")
    flow.add(a, b, c)
    flow.link(a, b, decider=Votes(False), decider_depth="ATOM")
    flow.link(b, c)
    engine = engines.load(flow, engine="parallel")
    engine.run()
    assert atom_states(engine, "a", "b", "c") == {"a": DONE, "b": IGNORED, "c": DONE}
