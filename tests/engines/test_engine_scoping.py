"""What storage's scoped lookups see is what the engine gave the atom (one rule, both places)."""

from __future__ import annotations

from typing import Any

import pytest

from taskflow import engines, exceptions, formatters, task
from taskflow.patterns import linear_flow as lf


class Give(task.Task):
    def __init__(self, name: str, value: Any, provides: str) -> None:
        super().__init__(name, provides=provides)
        self.value = value

    def execute(self) -> Any:
        return self.value


class Record(task.Task):
    """Returns what it was given, so the run's own view can be compared with storage's."""

    def execute(self, x: Any) -> Any:
        return x


class AddOne(task.Task):
    def execute(self, n: int) -> int:
        return n + 1


class Boom(task.Task):
    def execute(self, y: Any) -> None:
        raise RuntimeError("boom")


class Last(task.Task):
    def execute(self, y: Any) -> Any:
        return y


def nested_shadowing_flow(fail: bool = True) -> lf.Flow:
    inner = lf.Flow("inner").add(
        Give("p_inner", "inner", provides="x"),
        Record("c_inner", provides="y"),
        Boom("boom") if fail else Last("boom"),
    )
    return lf.Flow("outer").add(Give("p_outer", "outer", provides="x"), inner)


def test_failure_report_shows_the_arguments_the_atom_received(load_local):
    engine = load_local(nested_shadowing_flow())
    formatter = formatters.FailureFormatter(engine)
    reports: list[str] = []

    def on_failure(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "boom" and state == "FAILURE":
            _exc_info, text = formatter.format(
                details["result"], lambda node: node.item.name == "boom"
            )
            reports.append(text)

    engine.atom_notifier.register("FAILURE", on_failure)
    with pytest.raises(RuntimeError, match="boom"):
        engine.run()
    [report] = reports
    c_inner_line = next(line for line in report.splitlines() if "Atom 'c_inner'" in line)
    assert "'requires': {'x': 'inner'}" in c_inner_line
    assert "'provides': 'inner'" in c_inner_line


def test_scoped_fetch_sees_the_nearest_provider():
    engine = engines.load(nested_shadowing_flow(fail=False))
    engine.run()
    storage = engine.storage
    assert storage.fetch_mapped_args({"x": "x"}, atom_name="c_inner") == {"x": "inner"}
    assert storage.fetch_mapped_args({"x": "x"}, atom_name="p_inner") == {"x": "outer"}
    assert storage.fetch_mapped_args({"y": "y"}, atom_name="boom") == {"y": "inner"}
    # An atom before every provider of a symbol sees none of them.
    with pytest.raises(Exception, match="x"):
        storage.fetch_mapped_args({"x": "x"}, atom_name="p_outer")


def test_scoped_fetch_in_a_chain_of_same_named_results():
    flow = lf.Flow("chain").add(
        AddOne("one", provides="n"), AddOne("two", provides="n"), AddOne("three", provides="n")
    )
    engine = engines.load(flow, store={"n": 0})
    engine.run()
    storage = engine.storage
    # Injected values shadow atom outputs for every atom (the specification's precedence).
    assert storage.fetch_mapped_args({"n": "n"}, atom_name="three") == {"n": 0}
    assert storage.get("three") == 1


def test_scoped_fetch_in_a_chain_without_injection():
    flow = lf.Flow("chain").add(
        Give("zero", 0, provides="n"),
        AddOne("one", provides="n"),
        AddOne("two", provides="n"),
        AddOne("three", provides="n"),
    )
    engine = engines.load(flow)
    engine.run()
    storage = engine.storage
    assert storage.get("three") == 3
    assert storage.fetch_mapped_args({"n": "n"}, atom_name="three") == {"n": 2}
    assert storage.fetch_mapped_args({"n": "n"}, atom_name="two") == {"n": 1}
    assert storage.fetch_mapped_args({"n": "n"}, atom_name="one") == {"n": 0}


def test_scoped_fetch_of_a_symbol_the_atom_does_not_require():
    engine = engines.load(nested_shadowing_flow(fail=False))
    engine.run()
    # 'v' is nobody's argument; 'y' is provided only after p_outer.
    assert engine.storage.fetch_mapped_args({"v": "y"}, atom_name="boom") == {"v": "inner"}
    assert engine.storage.fetch_unsatisfied_args("p_outer", {"v": "y"}) == {"y"}
    assert engine.storage.fetch_unsatisfied_args("boom", {"v": "y"}) == set()
    assert engine.storage.fetch_mapped_args({"v": "x"}, atom_name="boom") == {"v": "inner"}


def test_scoped_fetch_between_compile_and_prepare_finds_nothing_yet():
    engine = engines.load(nested_shadowing_flow(fail=False))
    engine.compile()
    with pytest.raises(exceptions.NotFound, match="x"):
        engine.storage.fetch_mapped_args({"x": "x"}, atom_name="c_inner")
    assert (
        engine.storage.fetch_mapped_args({"x": "x"}, atom_name="c_inner", optional_args=["x"]) == {}
    )


class GivesPair(task.Task):
    def execute(self) -> tuple[int, int]:
        return (1, 2)


class UsesThird(task.Task):
    def execute(self, third: Any) -> Any:
        return third


def test_an_extraction_failure_names_the_provider_and_the_key():
    flow = lf.Flow("f").add(
        GivesPair("pair", provides=("first", "second", "third")), UsesThird("user")
    )
    engine = engines.load(flow)
    with pytest.raises(exceptions.NotFound) as caught:
        engine.run()
    message = str(caught.value)
    assert "'pair'" in message
    assert "'third'" in message
    assert "2" in message  # the index that could not be taken
    assert engine.storage.get_flow_state() == "REVERTED"
