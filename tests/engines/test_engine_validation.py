"""compile()/validate(): missing requirements, duplicate names, bad flow contents."""

from __future__ import annotations

import pytest

from taskflow import atom, engines, retry, task
from taskflow import exceptions as exc
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from tests.helpers.engine_tasks import Optional, Recorder, Work


class Needy(task.Task):
    def execute(self, a, b):
        return a

    def revert(self, c, *args, **kwargs):
        return None


def validate(flow, **kwargs):
    engine = engines.load(flow, **kwargs)
    engine.compile()
    engine.prepare()
    engine.validate()
    return engine


EXECUTE_MSG = (
    "'execute' method on '\"n==1.0\"' requires ['a', 'b'] but no other entity produces said"
    " requirements"
)
REVERT_MSG = (
    "'revert' method on '\"n==1.0\"' requires ['c'] but no other entity produces said requirements"
)


def test_missing_requirements_in_a_flow():
    with pytest.raises(exc.MissingDependencies) as info:
        validate(lf.Flow("f").add(Needy("n")))
    err = info.value
    assert err.missing_requirements == ["a", "b", "c"]
    text = str(err)
    assert text.startswith(
        "'\"linear_flow.Flow: f(len=1)\"' requires ['a', 'b', 'c'] but no other entity"
        " produces said requirements"
    )
    assert EXECUTE_MSG in text
    assert REVERT_MSG in text
    assert err.cause is not None


def test_missing_requirements_of_a_lone_task():
    with pytest.raises(exc.MissingDependencies) as info:
        validate(Needy("n"))
    assert info.value.missing_requirements == ["a", "b", "c"]
    assert str(info.value).startswith("'\"n==1.0\"' requires ['a', 'b', 'c']")


def test_missing_requirements_of_several_atoms():
    flow = lf.Flow("f").add(Needy("n"), Work("w", requires=["q"]))
    with pytest.raises(exc.MissingDependencies) as info:
        validate(flow)
    assert info.value.missing_requirements == ["a", "b", "c", "q"]
    text = str(info.value)
    assert EXECUTE_MSG in text
    assert "'execute' method on '\"w==1.0\"' requires ['q']" in text


def test_run_validates_before_running_anything():
    engine = engines.load(lf.Flow("f").add(Work("ok"), Needy("n")))
    rec = Recorder(engine)
    with pytest.raises(exc.MissingDependencies):
        engine.run()
    assert rec.atom_events() == []


def test_store_satisfies_requirements():
    validate(lf.Flow("f").add(Needy("n")), store={"a": 1, "b": 2, "c": 3})


def test_atom_inject_satisfies_requirements():
    validate(lf.Flow("f").add(Needy("n", inject={"a": 1, "b": 2, "c": 3})))


def test_inject_atom_args_satisfies_requirements():
    engine = engines.load(lf.Flow("f").add(Needy("n")))
    engine.compile()
    engine.prepare()
    engine.storage.inject_atom_args("n", {"a": 1, "b": 2, "c": 3})
    engine.validate()


def test_earlier_provider_satisfies_requirements():
    validate(lf.Flow("f").add(Work("p", provides=("a", "b", "c")), Needy("n")))


def test_later_provider_in_linear_flow_does_not_count():
    flow = lf.Flow("f").add(Needy("n"), Work("p", provides=("a", "b", "c")))
    with pytest.raises(exc.MissingDependencies) as info:
        validate(flow)
    assert info.value.missing_requirements == ["a", "b", "c"]


def test_unordered_siblings_cannot_feed_each_other():
    flow = uf.Flow("f").add(Work("p", provides="a"), Needy("n"))
    with pytest.raises(exc.MissingDependencies) as info:
        validate(flow, store={"b": 1, "c": 1})
    assert info.value.missing_requirements == ["a"]
    assert str(info.value).startswith("'\"unordered_flow.Flow: f(len=2)\"' requires ['a']")
    assert "'execute' method on '\"n==1.0\"' requires ['a']" in str(info.value)


def test_optional_arguments_are_not_required():
    validate(lf.Flow("f").add(Optional("o")), store={"a": 1})


def test_validate_requires_prepare():
    engine = engines.load(lf.Flow("f").add(Work("a")))
    engine.compile()
    with pytest.raises(exc.InvalidState):
        engine.validate()


def test_duplicate_atom_names():
    engine = engines.load(lf.Flow("f").add(Work("a"), lf.Flow("g").add(Work("a"))))
    with pytest.raises(exc.Duplicate, match=r"Atoms with duplicate names found: \['a'\]"):
        engine.compile()


def test_duplicate_names_fail_run():
    with pytest.raises(exc.Duplicate):
        engines.run(uf.Flow("f").add(Work("a"), Work("a")))


def test_same_atom_twice():
    shared = Work("a")
    engine = engines.load(lf.Flow("f").add(shared, lf.Flow("g").add(shared)))
    with pytest.raises(ValueError, match="Already compiled item"):
        engine.compile()


def test_same_subflow_twice():
    shared = lf.Flow("s").add(Work("a"))
    engine = engines.load(lf.Flow("f").add(shared, uf.Flow("g").add(shared)))
    with pytest.raises(ValueError, match="Already compiled item"):
        engine.compile()


def test_non_atom_in_flow():
    def build_and_compile():
        flow = lf.Flow("f").add(Work("x"), "not-a-task")
        engines.load(flow).compile()

    # Either adding or compiling may reject it; both must raise TypeError.
    with pytest.raises(TypeError):
        build_and_compile()


def test_graph_flow_missing_dependency():
    flow = gf.Flow("g").add(Work("p", provides="x"), Work("c", requires=["x", "y"]))
    with pytest.raises(exc.MissingDependencies) as info:
        validate(flow)
    assert info.value.missing_requirements == ["y"]


@pytest.mark.parametrize("name", ["r", None], ids=["named", "unnamed"])
@pytest.mark.parametrize("pattern", [lf, uf, gf], ids=["linear", "unordered", "graph"])
def test_a_retry_added_like_a_task_is_refused_when_the_engine_runs(pattern, name):
    # As upstream: a retry belongs in a flow's retry slot. Added as a child it is accepted by
    # the flow, named or not, and the engine refuses it (TypeError), not its missing name.
    controller = retry.Times(2, name=name)
    flow = pattern.Flow("f").add(Work("t"), controller)
    assert controller.name == name
    engine = engines.load(flow)
    with pytest.raises(TypeError, match="requested to compile") as info:
        engine.run()
    assert f"'{controller}'" in str(info.value)


@pytest.mark.parametrize("name", ["r", None], ids=["named", "unnamed"])
def test_a_retry_run_alone_is_refused(name):
    controller = retry.Times(2, name=name)
    engine = engines.load(controller)
    with pytest.raises(TypeError, match="requested to compile"):
        engine.run()
    with pytest.raises(TypeError, match="requested to compile"):
        engines.run(retry.ForEach([1, 2], name=name))


def test_a_plain_atom_is_not_compiled():
    class Plain(atom.Atom):
        def execute(self):
            return 1

    for root in (Plain("p"), lf.Flow("f").add(Plain("p"))):
        with pytest.raises(TypeError, match="requested to compile"):
            engines.load(root).compile()


def test_an_unnamed_retry_in_a_flows_retry_slot_runs():
    controller = retry.Times(2)
    assert controller.name is None
    flow = lf.Flow("f", controller).add(Work("t", value=1, provides="x"))
    assert controller.name == "f_retry"
    assert engines.run(flow) == {"x": 1}
