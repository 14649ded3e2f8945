"""Flows nested thousands of levels deep compile, run, revert and are described (no recursion)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from taskflow import engines, formatters, states, task
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf

DEPTH = 5000


class Step(task.Task):
    def execute(self) -> int:
        return 1


class Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError("deepest failed")


def _nested(kind: Any, last: task.Task) -> Any:
    root = kind("f0")
    current = root
    for i in range(1, DEPTH):
        inner = kind(f"f{i}")
        current.add(Step(f"t{i}"), inner)
        current = inner
    current.add(last)
    return root


@pytest.mark.parametrize("kind", [lf.Flow, uf.Flow, gf.Flow], ids=["linear", "unordered", "graph"])
def test_a_flow_nested_deeper_than_the_recursion_limit_runs(kind):
    assert sys.getrecursionlimit() < DEPTH
    engine = engines.load(_nested(kind, Step("last")))
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.get("last") == 1


def test_a_failure_at_the_bottom_reverts_and_is_described():
    engine = engines.load(_nested(lf.Flow, Boom("boom")))
    formatter = formatters.FailureFormatter(engine)
    texts: list[str] = []

    def on_failure(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "boom":
            texts.append(formatter.format(details["result"], lambda n: n.item.name == "boom")[1])

    engine.atom_notifier.register(states.FAILURE, on_failure)
    with pytest.raises(RuntimeError, match="deepest failed"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("t1") == states.REVERTED
    [text] = texts
    # Every task before it and every flow around it, down to the outermost.
    assert text.startswith(f"{2 * DEPTH - 1} predecessors")
    assert "Atom 't1'" in text
    assert text.rstrip().endswith("Flow 'f0'")
