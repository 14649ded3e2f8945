"""FailureFormatter: the predecessor trees it draws for failing atoms of real engines."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, formatters, retry, states, task
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.types.failure import Failure

if TYPE_CHECKING:
    from taskflow.types import tree


class Value(task.Task):
    def __init__(self, name: str, value: Any = None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.value = value

    def execute(self, **kwargs: Any) -> Any:
        return self.value


class Boom(task.Task):
    def execute(self, **kwargs: Any) -> None:
        raise RuntimeError("boom")


class TakesArgs(task.Task):
    def execute(self, a1: Any, opt: Any = 9) -> Any:
        return a1


def by_name(name: str) -> Any:
    return lambda node: node.item.name == name


def capture_format(
    flow: Any,
    failing: str = "boom",
    matcher_name: str | None = None,
    engine_kind: str = "serial",
    store: dict[str, Any] | None = None,
    **formatter_options: Any,
) -> tuple[Any, Failure, tuple[Any, str]]:
    """Run ``flow``; format the failure of ``failing`` at the moment it fails."""
    engine = engines.load(flow, engine=engine_kind, store=store)
    formatter = formatters.FailureFormatter(engine, **formatter_options)
    seen: list[tuple[Failure, tuple[Any, str]]] = []

    def on_failure(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == failing:
            fail = details["result"]
            seen.append((fail, formatter.format(fail, by_name(matcher_name or failing))))

    engine.atom_notifier.register(states.FAILURE, on_failure)
    with pytest.raises(RuntimeError):
        engine.run()
    assert len(seen) >= 1
    fail, result = seen[0]
    return engine, fail, result


def lines(text: str) -> list[str]:
    return text.split(os.linesep)


def test_linear_and_nested(engine_kind: str) -> None:
    flow = lf.Flow("outer").add(
        Value("a", 1, provides="x"),
        lf.Flow("inner").add(Value("n1"), Value("n2"), Boom("boom")),
    )
    _engine, fail, (exc_info, text) = capture_format(flow, engine_kind=engine_kind)
    assert exc_info == fail.exc_info
    assert isinstance(exc_info[1], RuntimeError)
    assert lines(text) == [
        "5 predecessors (most recent first):",
        "  Atom 'n2' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': None}",
        "  |__Atom 'n1' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': None}",
        "     |__Flow 'inner'",
        "        |__Atom 'a' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': 1}",
        "           |__Flow 'outer'",
    ]


@pytest.fixture(params=["serial", "parallel"])
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_unordered_siblings_are_not_predecessors(engine_kind: str) -> None:
    flow = uf.Flow("u").add(Value("a", 1), Value("n"), Boom("boom"))
    _engine, _fail, (_exc, text) = capture_format(flow, engine_kind=engine_kind)
    assert lines(text) == ["1 predecessors (most recent first):", "  Flow 'u'"]


def test_after_a_subflow_its_end_and_last_atoms_are_skipped() -> None:
    # Compatible with TaskFlow 6.5.0, which skips a subflow's end and its last atoms.
    linear = lf.Flow("outer").add(lf.Flow("i1").add(Value("x1"), Value("x2")), Boom("boom"))
    _e, _f, (_x, text) = capture_format(linear)
    assert lines(text) == [
        "3 predecessors (most recent first):",
        "  Atom 'x1' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': None}",
        "  |__Flow 'i1'",
        "     |__Flow 'outer'",
    ]
    unordered = lf.Flow("outer").add(uf.Flow("u1").add(Value("x1"), Value("x2")), Boom("boom"))
    _e, _f, (_x, text) = capture_format(unordered)
    assert lines(text) == [
        "4 predecessors (most recent first):",
        "  Flow 'u1'",
        "  |__Flow 'outer'",
        "  Flow 'u1'",
        "  |__Flow 'outer'",
    ]
    nested_ends = lf.Flow("outer").add(
        lf.Flow("i1").add(lf.Flow("i2").add(Value("z1")), Value("y")), Boom("boom")
    )
    _e, _f, (_x, text) = capture_format(nested_ends)
    assert lines(text) == [
        "3 predecessors (most recent first):",
        "  Flow 'i2'",
        "  |__Flow 'i1'",
        "     |__Flow 'outer'",
    ]


def test_graph_shared_ancestors_are_repeated() -> None:
    class Needs(task.Task):
        def execute(self, p: Any, q: Any) -> None:
            raise RuntimeError("r2 boom")

    flow = gf.Flow("g").add(
        Value("base", 7, provides="b"),
        Value("pp", 7, provides="p", requires="b"),
        Value("qq", 7, provides="q", requires="b"),
        Needs("r2"),
    )
    _e, _f, (_x, text) = capture_format(flow, failing="r2")
    base = "Atom 'base' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {}, 'provides': 7}"
    assert lines(text) == [
        "6 predecessors (most recent first):",
        "  Atom 'pp' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {'b': 7},"
        " 'provides': 7}",
        "  |__" + base,
        "     |__Flow 'g'",
        "  Atom 'qq' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {'b': 7},"
        " 'provides': 7}",
        "  |__" + base,
        "     |__Flow 'g'",
    ]


def test_retry_history_is_its_result() -> None:
    flow = lf.Flow("rf", retry=retry.Times(2, "r1")).add(Value("a", 1), Boom("boom"))
    engine = engines.load(flow)
    formatter = formatters.FailureFormatter(engine)
    texts: list[str] = []

    def on_failure(state: str, details: dict[str, Any]) -> None:
        texts.append(formatter.format(details["result"], by_name("boom"))[1])

    engine.atom_notifier.register(states.FAILURE, on_failure)
    with pytest.raises(RuntimeError):
        engine.run()
    assert len(texts) == 2
    assert lines(texts[0])[2] == (
        "  |__Atom 'r1' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': [(1, {})]}"
    )
    second = lines(texts[1])[2]
    assert second.startswith(
        "  |__Atom 'r1' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': [(1, {'boom': "
    )
    assert second.endswith("}), (2, {})]}")


def test_ignored_predecessor_and_mapped_arguments() -> None:
    flow = gf.Flow("g")
    a = Value("a", 1, provides="x")
    n = Value("n")
    boom = Boom("boom")
    takes = TakesArgs("rb", rebind={"a1": "x"})
    flow.add(a, n, boom, takes)
    flow.link(a, n, decider=lambda history: False, decider_depth="ATOM")
    flow.link(n, boom)
    flow.link(takes, boom)
    _e, _f, (_x, text) = capture_format(flow, store={"opt": 4})
    atom_a = "Atom 'a' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {}, 'provides': 1}"
    assert lines(text) == [
        "6 predecessors (most recent first):",
        "  Atom 'n' {'intention': 'IGNORE', 'state': 'IGNORE', 'requires': {}}",
        "  |__" + atom_a,
        "     |__Flow 'g'",
        "  Atom 'rb' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {'a1': 1, 'opt': 4},"
        " 'provides': 1}",
        "  |__" + atom_a,
        "     |__Flow 'g'",
    ]


def test_masking_and_hiding() -> None:
    payload = {"l": [{"secret": 1}], "t": ({"secret": 2},), "d": {"e": {"secret": 3}}, "secret": 4}
    flow = lf.Flow("m").add(
        Value("p", payload, provides="x"),
        Value("q", [{"secret": 1}], provides="y", requires=("x",)),
        Boom("boom"),
    )
    engine = engines.load(flow)
    stored: list[Any] = []
    texts: list[str] = []
    masking = formatters.FailureFormatter(
        engine, mask_inputs_keys=["secret"], mask_outputs_keys=["secret"]
    )
    hiding = formatters.FailureFormatter(engine, hide_inputs_outputs_of=["q"])

    def on_failure(state: str, details: dict[str, Any]) -> None:
        texts.append(masking.format(details["result"], by_name("boom"))[1])
        texts.append(hiding.format(details["result"], by_name("boom"))[1])
        stored.append(engine.storage.get_execute_result("p"))

    engine.atom_notifier.register(states.FAILURE, on_failure)
    with pytest.raises(RuntimeError):
        engine.run()
    masked, hidden = lines(texts[0]), lines(texts[1])
    masked_x = (
        "{'l': [{'secret': '***'}], 't': ({'secret': 2},),"
        " 'd': {'e': {'secret': '***'}}, 'secret': '***'}"
    )
    assert masked[1] == (
        "  Atom 'q' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {'x': "
        + masked_x
        + "}, 'provides': [{'secret': '***'}]}"
    )
    assert masked[2] == (
        "  |__Atom 'p' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {}, 'provides': "
        + masked_x
        + "}"
    )
    assert hidden[1] == "  Atom 'q' {'intention': 'EXECUTE', 'state': 'SUCCESS'}"
    assert hidden[2].endswith(f"'provides': {payload!r}}}")
    # Masking works on copies: the stored result is untouched.
    assert stored == [payload]
    assert payload["l"] == [{"secret": 1}]


def test_failed_predecessor_shows_its_failure() -> None:
    flow = lf.Flow("f").add(Value("a", 1), Boom("boom"), Value("c"))
    _engine, fail, (_x, text) = capture_format(flow, matcher_name="c")
    assert lines(text)[:2] == [
        "3 predecessors (most recent first):",
        f"  Atom 'boom' {{'intention': 'EXECUTE', 'state': 'FAILURE', 'requires': {{}},"
        f" 'provides': {fail!r}}}",
    ]


def test_empty_details_when_not_executing_or_unmatched() -> None:
    engine = engines.load(lf.Flow("f").add(Value("a", 1), Boom("boom")))
    formatter = formatters.FailureFormatter(engine)
    fail = Failure.from_exception(RuntimeError("x"))
    # Not compiled yet: nothing to describe.
    assert formatter.format(fail, by_name("boom")) == (fail.exc_info, "")
    with pytest.raises(RuntimeError):
        engine.run()
    # Reverted atoms have the REVERT intention: nothing is said about them.
    assert engine.storage.get_atom_intention("boom") == states.REVERT
    assert formatter.format(fail, by_name("boom")) == (fail.exc_info, "")
    assert formatter.format(fail, by_name("nobody")) == (fail.exc_info, "")


def test_lone_atom_has_no_predecessors() -> None:
    _e, _f, (_x, text) = capture_format(Boom("boom"))
    assert text == "0 predecessors (most recent first):" + os.linesep


def test_matcher_sees_atom_hierarchy_nodes() -> None:
    flow = lf.Flow("top", retry=retry.Times(1, "r")).add(
        Value("a"), uf.Flow("sub").add(Boom("boom"))
    )
    seen: list[tuple[str, str, str | None]] = []

    def matcher(node: tree.Node) -> bool:
        parent = node.parent.item.name if node.parent is not None else None
        seen.append((node.item.name, node.metadata["kind"], parent))
        return bool(node.item.name == "boom")

    engine = engines.load(flow)
    formatter = formatters.FailureFormatter(engine)
    texts: list[str] = []
    engine.atom_notifier.register(
        states.FAILURE,
        lambda state, details: texts.append(formatter.format(details["result"], matcher)[1]),
    )
    with pytest.raises(RuntimeError):
        engine.run()
    assert seen == [("r", "retry", "top"), ("a", "task", "top"), ("boom", "task", "sub")]
    assert lines(texts[0])[0] == "4 predecessors (most recent first):"
