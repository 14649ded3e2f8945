"""The engine loop's state table: the code consults it, and its documentation is generated."""

from __future__ import annotations

import itertools

import pytest

from taskflow import engines, exceptions, states, task
from taskflow._engine import machine
from taskflow.patterns import unordered_flow as uf


class NoOp(task.Task):
    def execute(self) -> None:
        pass


def test_module_docstring_shows_the_current_table():
    # Regenerate with: python -c "from taskflow._engine import machine; print(machine.docs_table())"
    assert machine.docs_table() in (machine.__doc__ or "")


def test_an_unknown_transition_is_refused_by_name():
    with pytest.raises(exceptions.InvalidState, match="WAITING on event 'finish'"):
        machine.next_state(states.WAITING, machine.FINISH)


def test_every_state_a_run_yields_follows_the_table():
    engine = engines.load(uf.Flow("f").add(NoOp("a"), NoOp("b")), engine="parallel")
    seen = list(engine.run_iter())
    loop = seen[:-1]
    assert loop[0] == states.RESUMING
    events = {(a, b) for (a, _event), b in machine.TRANSITIONS.items()}
    for before, after in itertools.pairwise(loop):
        assert (before, after) in events
    assert seen[-1] == states.SUCCESS
    assert (loop[-1], machine.FINISH) in machine.TRANSITIONS
