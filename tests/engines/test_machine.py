"""The engine loop's state table: the code consults it, and its documentation is generated."""

from __future__ import annotations

import pytest

from taskflow import exceptions, states, task
from taskflow._engine import machine


class NoOp(task.Task):
    def execute(self) -> None:
        pass


def test_module_docstring_shows_the_current_table():
    # Regenerate with: python -c "from taskflow._engine import machine; print(machine.docs_table())"
    assert machine.docs_table() in (machine.__doc__ or "")


def test_an_unknown_transition_is_refused_by_name():
    with pytest.raises(exceptions.InvalidState, match="WAITING on event 'finish'"):
        machine.next_state(states.WAITING, machine.FINISH)
