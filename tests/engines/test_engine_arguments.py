"""How atoms get their arguments: mapping, injection and the scoping rules (spec §1, §7)."""

from __future__ import annotations

import pytest

from taskflow import engines, states
from taskflow import exceptions as exc
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.utils import persistence_utils
from tests.helpers.engine_tasks import Add, Echo, Optional, Seen, Work


def run_all(load, flow, **kwargs):
    engine = load(flow, **kwargs)
    engine.run()
    return engine.storage.fetch_all()


# -- mapping ---------------------------------------------------------------------------------


def test_rebind_list(load):
    flow = lf.Flow("f").add(Work("p", 1, provides="x"), Add("s", rebind=["x", "x"], provides="z"))
    assert run_all(load, flow) == {"x": 1, "z": 2}


def test_rebind_dict(load):
    flow = lf.Flow("f").add(
        Work("p", 1, provides="x"), Add("s", rebind={"a": "x", "b": "x"}, provides="z")
    )
    assert run_all(load, flow) == {"x": 1, "z": 2}


def test_provides_tuple_maps_positions(load):
    flow = lf.Flow("f").add(Work("p", (1, 2), provides=("a", "b")), Add("s", provides="z"))
    assert run_all(load, flow) == {"a": 1, "b": 2, "z": 3}


def test_provides_set_maps_keys(load):
    flow = lf.Flow("f").add(
        Work("p", {"a": 3, "b": 4}, provides={"a", "b"}), Add("s", provides="z")
    )
    assert run_all(load, flow) == {"a": 3, "b": 4, "z": 7}


def test_provides_str_maps_whole_result(load):
    flow = lf.Flow("f").add(Work("p", [1, 2], provides="x"), Echo("e", provides="y"))
    assert run_all(load, flow) == {"x": [1, 2], "y": [1, 2]}


def test_requires_adds_symbols(load):
    flow = lf.Flow("f").add(Work("p", 1, provides="x"), Seen("s", requires=["x"], provides="out"))
    assert run_all(load, flow)["out"] == [("x", 1)]


def test_short_result_leaves_names_unresolvable():
    flow = lf.Flow("f").add(Work("p", (1,), provides=("a", "b")))
    assert engines.run(flow) == {"a": 1}


def test_short_result_consumer_fails_with_not_found():
    flow = lf.Flow("f").add(Work("p", (1,), provides=("a", "b")), Echo("c", rebind=["b"]))
    with pytest.raises(exc.NotFound):
        engines.run(flow)


def test_optional_arg_uses_default_when_unresolvable(load):
    flow = lf.Flow("f").add(Work("p", 5, provides="a"), Optional("o", provides="z"))
    assert run_all(load, flow) == {"a": 5, "z": (5, 100)}


def test_optional_arg_uses_store_when_present(load):
    flow = lf.Flow("f").add(Work("p", 5, provides="a"), Optional("o", provides="z"))
    assert run_all(load, flow, store={"b": 7}) == {"a": 5, "b": 7, "z": (5, 7)}


def test_optional_arg_from_provider(load):
    flow = lf.Flow("f").add(Work("p", 6, provides="b"), Optional("o", provides="z"))
    assert run_all(load, flow, store={"a": 1}) == {"a": 1, "b": 6, "z": (1, 6)}


# -- injection ------------------------------------------------------------------------------


def test_store_feeds_arguments(load):
    assert run_all(load, lf.Flow("f").add(Add("s", provides="z")), store={"a": 1, "b": 2}) == {
        "a": 1,
        "b": 2,
        "z": 3,
    }


def test_atom_inject(load):
    flow = lf.Flow("f").add(Optional("o", provides="z", inject={"a": 1, "b": 2}))
    assert run_all(load, flow) == {"z": (1, 2)}


def test_atom_inject_beats_store(load):
    flow = lf.Flow("f").add(Optional("o", provides="z", inject={"a": 1}))
    assert run_all(load, flow, store={"a": 9, "b": 8}) == {"a": 9, "b": 8, "z": (1, 8)}


def details_of(flow_detail):
    return {ad.name: ad for ad in flow_detail}


def test_atom_inject_is_transient_by_default():
    _book, fd = persistence_utils.temporary_flow_detail()
    flow = lf.Flow("f").add(Optional("o", provides="z", inject={"a": 1}))
    engine = engines.load(flow, flow_detail=fd)
    engine.run()
    assert engine.storage.fetch_all() == {"z": (1, 100)}
    assert "injected" not in details_of(fd)["o"].meta


def test_atom_inject_persisted_when_not_transient():
    _book, fd = persistence_utils.temporary_flow_detail()
    flow = lf.Flow("f").add(Optional("o", provides="z", inject={"a": 1}))
    engine = engines.load(flow, flow_detail=fd, inject_transient=False)
    engine.run()
    assert engine.storage.fetch_all() == {"z": (1, 100)}
    assert details_of(fd)["o"].meta["injected"] == {"a": 1}


def test_store_is_persisted_in_injector_detail():
    _book, fd = persistence_utils.temporary_flow_detail()
    flow = lf.Flow("f").add(Optional("o", provides="z"))
    engine = engines.load(flow, flow_detail=fd, store={"a": 3})
    engine.run()
    details = details_of(fd)
    assert details["_TaskFlow_INJECTOR"].results == {"a": 3}
    assert details["_TaskFlow_INJECTOR"].state == states.SUCCESS
    assert engine.storage.fetch_all() == {"a": 3, "z": (3, 100)}


def test_inject_atom_args_after_prepare(load):
    engine = load(lf.Flow("f").add(Optional("o", provides="z")))
    engine.compile()
    engine.prepare()
    engine.storage.inject_atom_args("o", {"a": 11})
    engine.run()
    assert engine.storage.fetch_all() == {"z": (11, 100)}


def test_transient_flow_injection(load):
    _book, fd = persistence_utils.temporary_flow_detail()
    engine = load(lf.Flow("f").add(Optional("o", provides="z")), flow_detail=fd)
    engine.compile()
    engine.prepare()
    engine.storage.inject({"a": 12}, transient=True)
    engine.run()
    assert engine.storage.fetch_all() == {"a": 12, "z": (12, 100)}
    assert "_TaskFlow_INJECTOR" not in details_of(fd)


# -- scoping and precedence (§7) ------------------------------------------------------------


def test_nested_provider_is_nearer(load):
    flow = lf.Flow("f").add(
        Work("p1", 1, provides="x"),
        lf.Flow("g").add(Work("p2", 2, provides="x")),
        Echo("c", provides="out"),
    )
    assert run_all(load, flow) == {"x": [1, 2], "out": 2}


def test_last_provider_of_unordered_subflow_wins(load):
    flow = lf.Flow("f").add(
        Work("p1", 1, provides="x"),
        uf.Flow("g").add(Work("p2", 2, provides="x"), Work("p3", 3, provides="x")),
        Echo("c", provides="out"),
    )
    assert run_all(load, flow) == {"x": [1, 2, 3], "out": 3}


def test_store_shadows_task_output(load):
    flow = lf.Flow("f").add(Work("p1", 1, provides="x"), Echo("c", provides="out"))
    assert run_all(load, flow, store={"x": 42}) == {"x": [42, 1], "out": 42}


def test_nearest_preceding_sibling_wins(load):
    flow = lf.Flow("f").add(
        Work("p1", 1, provides="x"), Work("p2", 2, provides="x"), Echo("c", provides="out")
    )
    assert run_all(load, flow) == {"x": [1, 2], "out": 2}


def test_inner_level_provider_wins_over_outer(load):
    flow = lf.Flow("f").add(
        Work("p1", 1, provides="x"),
        lf.Flow("g").add(Work("p2", 2, provides="x"), Echo("c", provides="out")),
    )
    assert run_all(load, flow) == {"x": [1, 2], "out": 2}


def test_later_sibling_beats_earlier_subflow(load):
    flow = lf.Flow("f").add(
        lf.Flow("g").add(Work("p2", 2, provides="x")),
        Work("p1", 1, provides="x"),
        Echo("c", provides="out"),
    )
    assert run_all(load, flow) == {"x": [2, 1], "out": 1}


def test_outer_level_used_when_inner_provider_comes_later(load):
    flow = lf.Flow("f").add(
        Work("p1", 1, provides="x"),
        lf.Flow("g").add(Echo("c", provides="out"), Work("p2", 2, provides="x")),
    )
    assert run_all(load, flow) == {"x": [1, 2], "out": 1}


def test_graph_flow_links_consumer_to_provider(load):
    flow = gf.Flow("g").add(Echo("c", provides="out", rebind=["y"]), Work("p1", 1, provides="y"))
    assert run_all(load, flow) == {"y": 1, "out": 1}


def test_retry_provides_to_its_subflow(load):
    from taskflow import retry

    flow = lf.Flow("f", retry.ForEach([7], name="r", provides="x")).add(Echo("c", provides="out"))
    assert run_all(load, flow) == {"x": 7, "out": 7}


def test_fetch_with_many_handler_after_run():
    flow = lf.Flow("f").add(
        Work("p1", 1, provides="x"), uf.Flow("g").add(Work("p2", 2, provides="x"))
    )
    engine = engines.load(flow)
    engine.run()
    assert engine.storage.fetch("x", many_handler=lambda values: sorted(values)) == [1, 2]
    assert engine.storage.fetch_all(many_handler=lambda values: values[-1]) == {"x": 2}
