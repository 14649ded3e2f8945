"""Every atom transition a run makes is one that ``states``' tables allow."""

from __future__ import annotations

from typing import Any

import pytest

from taskflow import retry, states, task
from taskflow.patterns import graph_flow as gf
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf


class Ok(task.Task):
    def execute(self) -> int:
        return 1


class FailsTwice(task.Task):
    """Fails on its first two executions (counted per test through the class)."""

    calls = 0

    def execute(self) -> None:
        type(self).calls += 1
        if type(self).calls <= 2:
            raise RuntimeError("not yet")


class Boom(task.Task):
    def execute(self) -> None:
        raise RuntimeError("boom")


def _flows() -> dict[str, Any]:
    FailsTwice.calls = 0
    g = gf.Flow("g")
    a, b = Ok("a"), Ok("b")
    g.add(a, b)
    g.link(a, b, decider=lambda history: False)
    return {
        "success": lf.Flow("ok").add(Ok("t1"), uf.Flow("u").add(Ok("t2"), Ok("t3"))),
        "revert": lf.Flow("rv").add(Ok("t1"), Ok("t2"), Boom("t3")),
        "retry": lf.Flow("rt", retry=retry.Times(3)).add(Ok("t1"), FailsTwice("t2")),
        "decider": g,
    }


#: A transition each run must show, so that the check covers what the flow is about.
CHARACTERISTIC = {
    "success": ("task", states.RUNNING, states.SUCCESS),
    "revert": ("task", states.REVERTING, states.REVERTED),
    "retry": ("retry", states.SUCCESS, states.RETRYING),
    "decider": ("task", states.PENDING, states.IGNORE),
}


@pytest.mark.parametrize("name", sorted(CHARACTERISTIC))
def test_atom_transitions_follow_the_tables(load_local, name):
    flow = _flows()[name]
    engine = load_local(flow)
    seen: list[tuple[str, str, str]] = []

    def record(state: str, details: dict[str, Any]) -> None:
        kind = "retry" if "retry_name" in details else "task"
        seen.append((kind, details["old_state"], state))

    engine.atom_notifier.register(engine.atom_notifier.ANY, record)
    if name == "revert":
        with pytest.raises(RuntimeError, match="boom"):
            engine.run()
    else:
        engine.run()
    # (reset() is not checked: it puts records back to PENDING from any state.)
    assert CHARACTERISTIC[name] in seen
    bad = [
        (kind, old, new)
        for kind, old, new in seen
        if not (
            states.check_retry_transition(old, new)
            if kind == "retry"
            else states.check_task_transition(old, new)
        )
    ]
    assert not bad
