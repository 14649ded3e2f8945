"""The engine loop's own state machine, as data.

The loop of :meth:`taskflow._engine.runtime.Runner.run_iter` is in one of these states at a
time and yields each state it enters (``engine.run_iter()`` shows them to users). The work done
in a state ends with an *event*; :data:`TRANSITIONS` says which state that event leads to, and
nothing else decides the order of states.

==========  ========  ==========  ==============================================
state       event     next state  when
==========  ========  ==========  ==============================================
RESUMING    schedule  SCHEDULING  the run starts (counters rebuilt from storage)
SCHEDULING  wait      WAITING     ready atoms were submitted to the executor
WAITING     analyze   ANALYZING   a completion arrived (or a wait timed out)
ANALYZING   schedule  SCHEDULING  completions made more atoms ready
ANALYZING   wait      WAITING     nothing ready, but calls are still under way
ANALYZING   finish    GAME_OVER   nothing ready and nothing under way
==========  ========  ==========  ==============================================

GAME_OVER is never yielded: the engine then records and yields the flow's final state.
"""

from __future__ import annotations

from taskflow import exceptions as exc
from taskflow import states

__all__ = [
    "ANALYZE",
    "BY_STATE",
    "FINISH",
    "GAME_OVER",
    "SCHEDULE",
    "TRANSITIONS",
    "UNDEFINED",
    "WAIT",
    "next_state",
]

# The loop's private states: never yielded, never persisted, not in taskflow.states (upstream
# keeps them out of it too).
#: Before the loop starts (upstream's name; listed in ``ActionEngine.IGNORABLE_STATES``).
UNDEFINED = "UNDEFINED"
#: Where the loop stops; the engine then records and yields the flow's final state.
GAME_OVER = "GAME_OVER"

SCHEDULE = "schedule"
WAIT = "wait"
ANALYZE = "analyze"
FINISH = "finish"

#: Every transition: ``(state, event, next state, when it happens)``.
_ROWS: tuple[tuple[str, str, str, str], ...] = (
    (
        states.RESUMING,
        SCHEDULE,
        states.SCHEDULING,
        "the run starts (counters rebuilt from storage)",
    ),
    (states.SCHEDULING, WAIT, states.WAITING, "ready atoms were submitted to the executor"),
    (states.WAITING, ANALYZE, states.ANALYZING, "a completion arrived (or a wait timed out)"),
    (states.ANALYZING, SCHEDULE, states.SCHEDULING, "completions made more atoms ready"),
    (states.ANALYZING, WAIT, states.WAITING, "nothing ready, but calls are still under way"),
    (states.ANALYZING, FINISH, GAME_OVER, "nothing ready and nothing under way"),
)

#: ``(state, event) -> next state``: the table the loop consults.
TRANSITIONS: dict[tuple[str, str], str] = {(state, event): to for state, event, to, _ in _ROWS}

#: The same table by state, then event (one string lookup per step on the hot path).
BY_STATE: dict[str, dict[str, str]] = {}
for _state, _event, _to, _when in _ROWS:
    BY_STATE.setdefault(_state, {})[_event] = _to


def next_state(state: str, event: str) -> str:
    """The state ``event`` leads to from ``state``.

    Raises:
        InvalidState: the table has no such transition (a bug in the loop).
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise exc.InvalidState(
            f"Engine loop has no transition from {state} on event '{event}'"
        ) from None


def docs_table() -> str:
    """The transition table as reStructuredText (the module docstring shows this output)."""
    widths = [max(len(row[i]) for row in (*_ROWS, _HEADER)) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([rule, line(_HEADER), rule, *(line(row) for row in _ROWS), rule])


_HEADER = ("state", "event", "next state", "when")
