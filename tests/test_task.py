"""Tasks: naming, progress notification, copying and the functor task wrappers."""

from __future__ import annotations

import functools
import logging

import pytest

from taskflow import task
from taskflow.types.notifier import RestrictedNotifier


class CallJim(task.Task):
    def execute(self, a, b=2):
        return a

    def revert(self, x, result, flow_failures, y=3):
        return None


class Outer:
    class Inner(task.Task):
        def execute(self):
            return None


def add(a, b):
    return a + b


def square(x):
    return x * x


class Calls:
    def method(self, q):
        return q

    def __call__(self, z):
        return z


def test_constants():
    assert task.REVERT_RESULT == "result"
    assert task.REVERT_FLOW_FAILURES == "flow_failures"
    assert task.EVENT_UPDATE_PROGRESS == "update_progress"
    assert task.Task.TASK_EVENTS == ("update_progress",)


def test_default_name_is_module_and_class_name():
    assert CallJim().name == f"{__name__}.CallJim"
    # Upstream uses the class's plain name, not its qualified name, for nested classes.
    assert Outer.Inner().name == f"{__name__}.Inner"
    assert CallJim(name="jim").name == "jim"


def test_str_and_repr():
    jim = CallJim(name="jim")
    assert str(jim) == '"jim==1.0"'
    assert repr(jim) == f'<{__name__}.CallJim "jim==1.0">'


def test_revert_never_maps_result_and_flow_failures():
    jim = CallJim()
    assert list(jim.revert_rebind.items()) == [("x", "x"), ("y", "y")]
    assert list(jim.revert_optional) == ["y"]
    assert list(jim.requires) == ["a", "x"]


def test_ignore_list_is_honoured():
    # Upstream's Task silently drops ignore_list; ours applies it like Atom does.
    jim = CallJim(ignore_list=["b", "x"])
    assert list(jim.rebind) == ["a"]
    assert list(jim.revert_rebind) == ["y"]
    assert list(jim.requires) == ["a"]


def test_revert_rebind_and_inject():
    jim = CallJim(revert_rebind={"x": "xx"}, inject={"a": 1})
    assert list(jim.revert_rebind.items()) == [("x", "xx"), ("y", "y")]
    assert list(jim.requires) == ["xx"]
    assert jim.inject == {"a": 1}


def test_notifier_is_restricted_to_task_events():
    jim = CallJim()
    assert isinstance(jim.notifier, RestrictedNotifier)
    assert list(jim.notifier.events_iter()) == ["update_progress"]
    with pytest.raises(ValueError, match="foo"):
        jim.notifier.register("foo", lambda event, details: None)
    jim.notifier.register("*", lambda event, details: None)
    assert len(jim.notifier) == 1


def test_notifier_is_per_instance():
    first, second = CallJim(), CallJim()
    first.notifier.register(task.EVENT_UPDATE_PROGRESS, lambda event, details: None)
    assert len(second.notifier) == 0


def record(jim: task.Task) -> list[tuple[str, dict]]:
    seen: list[tuple[str, dict]] = []
    jim.notifier.register(
        task.EVENT_UPDATE_PROGRESS, lambda event, details: seen.append((event, details))
    )
    return seen


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
def test_update_progress_in_range(value, caplog):
    jim = CallJim()
    seen = record(jim)
    with caplog.at_level(logging.WARNING, logger="taskflow.task"):
        jim.update_progress(value)
    assert seen == [("update_progress", {"progress": value})]
    assert type(seen[0][1]["progress"]) is type(value)
    assert caplog.records == []


@pytest.mark.parametrize(("value", "clamped"), [(1.5, 1.0), (-1, 0.0), (7, 1.0)])
def test_update_progress_clamps_and_warns(value, clamped, caplog):
    jim = CallJim()
    seen = record(jim)
    with caplog.at_level(logging.WARNING, logger="taskflow.task"):
        jim.update_progress(value)
    assert seen == [("update_progress", {"progress": clamped})]
    assert len(caplog.records) == 1
    assert caplog.records[0].levelno == logging.WARNING
    assert repr(value) in caplog.records[0].getMessage()


def test_update_progress_reaches_any_listeners():
    jim = CallJim()
    seen: list[str] = []
    jim.notifier.register("*", lambda event, details: seen.append(event))
    jim.update_progress(0.25)
    assert seen == ["update_progress"]


def test_copy_retains_listeners_in_a_separate_notifier():
    jim = CallJim(name="jim", provides="out")
    seen = record(jim)
    clone = jim.copy()
    assert clone is not jim
    assert type(clone) is CallJim
    assert clone.name == "jim"
    assert list(clone.save_as) == ["out"]
    assert clone.notifier is not jim.notifier
    assert len(clone.notifier) == 1
    clone.update_progress(0.5)
    assert seen == [("update_progress", {"progress": 0.5})]
    clone.notifier.register("*", lambda event, details: None)
    assert len(jim.notifier) == 1


def test_copy_without_listeners():
    jim = CallJim()
    record(jim)
    clone = jim.copy(retain_listeners=False)
    assert len(clone.notifier) == 0
    assert len(jim.notifier) == 1
    assert isinstance(clone.notifier, RestrictedNotifier)
    with pytest.raises(ValueError, match="foo"):
        clone.notifier.register("foo", lambda event, details: None)


def test_functor_task_maps_the_callable():
    def f1(x, y=2):
        return x + y

    functor = task.FunctorTask(f1, provides="out")
    assert functor.name == f"{__name__}.test_functor_task_maps_the_callable.<locals>.f1"
    assert list(functor.rebind.items()) == [("x", "x"), ("y", "y")]
    assert list(functor.requires) == ["x"]
    assert list(functor.optional) == ["y"]
    assert functor.execute(x=1) == 3
    assert functor.revert(x=1, result=3, flow_failures={}) is None
    # Without a revert callable, revert is mapped like execute.
    assert list(functor.revert_rebind.items()) == [("x", "x"), ("y", "y")]
    assert list(functor.revert_optional) == ["y"]


def test_functor_task_names():
    assert task.FunctorTask(add).name == f"{__name__}.add"
    assert (
        task.FunctorTask(lambda: 1).name == f"{__name__}.test_functor_task_names.<locals>.<lambda>"
    )
    assert task.FunctorTask(Calls().method).name == f"{__name__}.Calls.method"
    assert task.FunctorTask(Calls()).name == f"{__name__}.Calls"
    assert task.FunctorTask(functools.partial(add, 1)).name == "functools.partial"
    assert task.FunctorTask(add, name="given").name == "given"


def test_functor_task_bound_method_and_callable_object_mapping():
    assert list(task.FunctorTask(Calls().method).requires) == ["q"]
    assert list(task.FunctorTask(Calls()).requires) == ["z"]
    assert list(task.FunctorTask(functools.partial(add, 1)).requires) == ["b"]


def test_functor_task_revert_callable():
    calls: list[dict] = []

    def undo(a, result, flow_failures):
        calls.append({"a": a, "result": result, "flow_failures": flow_failures})
        return "undone"

    functor = task.FunctorTask(add, revert=undo, version=(2, 1), name="n")
    assert str(functor) == '"n==2.1"'
    assert functor.version == (2, 1)
    assert list(functor.revert_rebind.items()) == [("a", "a")]
    assert list(functor.requires) == ["a", "b"]
    assert functor.execute(1, 2) == 3
    assert functor.revert(a=1, result=3, flow_failures={}) == "undone"
    assert calls == [{"a": 1, "result": 3, "flow_failures": {}}]


def test_functor_task_rebind_requires_inject_provides():
    assert list(task.FunctorTask(add, rebind=["x", "y"]).rebind.items()) == [
        ("a", "x"),
        ("b", "y"),
    ]
    assert list(task.FunctorTask(add, inject={"a": 1}).requires) == ["b"]
    assert list(task.FunctorTask(add, provides=("p", "q")).save_as.items()) == [
        ("p", 0),
        ("q", 1),
    ]

    def kw(**kwargs):
        return kwargs

    assert list(task.FunctorTask(kw, requires=["x", "y"]).requires) == ["x", "y"]


def test_functor_task_errors():
    with pytest.raises(ValueError) as info:
        task.FunctorTask(5)  # type: ignore[arg-type]
    assert str(info.value) == "Function to use for executing must be callable"
    with pytest.raises(ValueError) as info:
        task.FunctorTask(add, revert=5)  # type: ignore[arg-type]
    assert str(info.value) == "Function to use for reverting must be callable"
    with pytest.raises(ValueError) as info:
        task.FunctorTask(add, auto_extract=False)
    assert str(info.value) == f"Missing arguments for atom {__name__}.add: ['a', 'b']"


def test_map_functor_task():
    mapper = task.MapFunctorTask(square, requires=["a", "b"], provides="out")
    assert mapper.name == f"{__name__}.square"
    assert list(mapper.requires) == ["a", "b"]
    assert list(mapper.save_as.items()) == [("out", None)]
    assert mapper.execute(a=2, b=3) == [4, 9]
    # Values are taken in requires order, whatever the keyword order.
    assert mapper.execute(b=3, a=2) == [4, 9]


def test_map_functor_task_rebind_and_inject():
    mapper = task.MapFunctorTask(square, requires=["a"], rebind={"a": "q"})
    assert list(mapper.rebind.items()) == [("a", "q")]
    assert mapper.execute(a=5) == [25]
    injected = task.MapFunctorTask(square, requires=["a"], inject={"a": 3})
    assert list(injected.requires) == []
    assert injected.execute(a=3) == [9]


def test_map_functor_task_errors():
    with pytest.raises(ValueError) as info:
        task.MapFunctorTask(5, requires=5)  # type: ignore[arg-type]
    assert str(info.value) == "Function to use for map must be callable"
    for functor, count in [(add, 2), (lambda: 1, 0), (lambda *a, **k: 1, 0)]:
        with pytest.raises(ValueError) as info:
            task.MapFunctorTask(functor, requires=5)  # type: ignore[arg-type]
        assert str(info.value) == (
            f"{count} arguments were provided. Map functor must take exactly 1 argument."
        )
    for requires in ["a", None, 5]:
        with pytest.raises(TypeError) as info:
            task.MapFunctorTask(square, requires=requires)  # type: ignore[arg-type]
        assert str(info.value) == (
            f"{type(requires)} type was provided for requires. Requires must be an iterable."
        )


def test_reduce_functor_task():
    reducer = task.ReduceFunctorTask(add, requires=["a", "b", "c"])
    assert reducer.name == f"{__name__}.add"
    assert list(reducer.requires) == ["a", "b", "c"]
    assert reducer.execute(a=1, b=2, c=3) == 6
    assert reducer.execute(c="x", b="y", a="z") == "zyx"


def test_reduce_functor_task_errors():
    with pytest.raises(ValueError) as info:
        task.ReduceFunctorTask(5, requires=["a", "b"])  # type: ignore[arg-type]
    assert str(info.value) == "Function to use for reduce must be callable"
    with pytest.raises(ValueError) as info:
        task.ReduceFunctorTask(square, requires=["a"])
    assert str(info.value) == (
        "1 arguments were provided. Reduce functor must take exactly 2 arguments."
    )
    with pytest.raises(TypeError) as info:
        task.ReduceFunctorTask(add, requires="ab")
    assert str(info.value) == (
        "<class 'str'> type was provided for requires. Requires must be an iterable."
    )
    for requires in [[], ["a"]]:
        with pytest.raises(ValueError) as info:
            task.ReduceFunctorTask(add, requires=requires)
        assert str(info.value) == (
            f"{len(requires)} elements were provided. Requires must have at least 2 elements."
        )


def test_reduce_accepts_defaults_and_keyword_only_parameters():
    def with_default(a, b=1):
        return a

    def keyword_only(a, *, b):
        return a

    assert task.ReduceFunctorTask(with_default, requires=["x", "y"]).execute(x=1, y=2) == 1
    assert len(list(task.ReduceFunctorTask(keyword_only, requires=["x", "y"]).requires)) == 2
