"""The flows the crash harness runs, and everything they must end up with.

One shape, three variants (``make_flow(variant)``)::

    a -> b -> [p1 p2 p3 p4] -> c -> sub(retry: 1, 2, 3)[r1 -> r2] -> d (-> boom)
              (unordered)                                                ("fail" only)

* ``good``: ``r2`` fails on attempts 1 and 2, so the retry controller reverts the subflow
  twice; attempt 3 succeeds and the flow ends SUCCESS.
* ``fail``: as ``good``, then ``boom`` fails: everything is reverted (REVERTED).
* ``fanfail``: ``p3`` fails while its siblings run (parallel engine): what ran is reverted,
  the rest never runs (REVERTED).

Every result is a tuple ``(value, attempt)`` (tuples must survive the JSON encoding), every
revert returns ``("undo-<name>", attempt)``, every failure says ``"<name> failed on attempt
<n>"``: so any record read back from a backend tells which attempt wrote it. The values
are pure functions of the inputs, so what a resumed flow must hold is known up front.

Tasks report to :data:`probe` (installed by the child process; None elsewhere): a journal
line when a call starts and ends, and a pause in between (where the child may kill itself).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from taskflow import retry, states, task
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.persistence import models

__all__ = [
    "ATOMS",
    "FAN",
    "INPUTS",
    "LAST_ATTEMPT",
    "PREDS",
    "RETRY",
    "SUB",
    "VARIANTS",
    "atoms_of",
    "attempt_of_failure",
    "describe",
    "expected_results",
    "make_flow",
    "pred_attempt",
    "succs_of",
]

VARIANTS = ("good", "fail", "fanfail")
RETRY = "retry"
FAN = ("p1", "p2", "p3", "p4")
#: The retried subflow: the retry controller and the tasks it governs.
SUB = (RETRY, "r1", "r2")
ATTEMPTS = (1, 2, 3)
LAST_ATTEMPT = ATTEMPTS[-1]
#: Direct predecessors of every atom in the compiled graph.
PREDS: dict[str, tuple[str, ...]] = {
    "a": (),
    "b": ("a",),
    **dict.fromkeys(FAN, ("b",)),
    "c": FAN,
    RETRY: ("c",),
    "r1": (RETRY,),
    "r2": ("r1",),
    "d": ("r2",),
    "boom": ("d",),
}
ATOMS = tuple(PREDS)
#: What each task reads (the retry provides ``attempt`` to the subflow's tasks besides).
INPUTS: dict[str, tuple[str, ...]] = {**PREDS, RETRY: (), "r1": ("c",)}
# Milliseconds each call sleeps: long enough for timed kills to land inside calls, short
# enough for a trial to take a fraction of a second. The fan's are longer so they overlap.
_PAUSE_MS = {"a": 4, "b": 3, "c": 3, "d": 3, "boom": 2, RETRY: 2, "r1": 3, "r2": 3}
_FAN_PAUSE_MS = 8


class Probe(Protocol):
    """What the child process plugs in to watch (and kill) the tasks."""

    def call(self, atom: str, act: str, phase: str, attempt: int, ok: bool | None) -> None: ...

    def pause(self, act: str, seconds: float) -> None: ...


#: Installed by the child process before it runs a flow.
probe: Probe | None = None


def atoms_of(variant: str) -> tuple[str, ...]:
    """The atom names of a variant's flow."""
    return ATOMS if variant == "fail" else ATOMS[:-1]


def succs_of(variant: str) -> dict[str, tuple[str, ...]]:
    """Direct successors of every atom of a variant's flow."""
    names = atoms_of(variant)
    return {n: tuple(s for s in names if n in PREDS[s]) for n in names}


def pred_attempt(atom: str, attempt: int, pred: str) -> int:
    """The attempt whose result of ``pred`` feeds attempt ``attempt`` of ``atom``."""
    if pred in SUB:
        return attempt if atom in SUB else LAST_ATTEMPT
    return 0


def _fails(variant: str, name: str, attempt: int) -> bool:
    if name == "r2":
        return attempt < LAST_ATTEMPT
    return (variant == "fail" and name == "boom") or (variant == "fanfail" and name == "p3")


def _value(name: str, inputs: dict[str, Any], attempt: int) -> int:
    """An atom's value from its inputs' values (the same function as the tasks use)."""
    if name == "a":
        return 1
    if name == "b":
        return int(inputs["a"]) + 1
    if name in FAN:
        return int(inputs["b"]) * 10 + int(name[1:])
    if name == "c":
        return sum(int(inputs[p]) for p in FAN)
    if name == "r1":
        return int(inputs["c"]) * 10 + attempt
    if name == "r2":
        return int(inputs["r1"]) + 1
    if name == "d":
        return int(inputs["r2"]) * 2
    raise AssertionError(f"no value for {name}")


def _failure_text(name: str, attempt: int) -> str:
    return f"{name} failed on attempt {attempt}"


_OUTCOME_STATES = frozenset(
    (states.SUCCESS, states.FAILURE, states.REVERTING, states.REVERTED, states.REVERT_FAILURE)
)
_FAILURE_RE = re.compile(r"(\w+) failed on attempt (\d+)")


def attempt_of_failure(text: str) -> int | None:
    """The attempt a failure message of these tasks names (None if not one of theirs)."""
    match = _FAILURE_RE.search(text)
    return int(match.group(2)) if match else None


def expected_results(variant: str) -> dict[str, tuple[int, int] | None]:
    """The ``(value, attempt)`` each task's last successful execute returns (None: fails)."""
    values: dict[str, int] = {}
    results: dict[str, tuple[int, int] | None] = {}
    for name in atoms_of(variant):
        if name == RETRY:
            continue
        attempt = LAST_ATTEMPT if name in SUB else 0
        if _fails(variant, name, attempt) or any(p not in values for p in INPUTS[name]):
            results[name] = None
            continue
        inputs = {p: values[p] for p in INPUTS[name]}
        values[name] = _value(name, inputs, attempt)
        results[name] = (values[name], attempt)
    return results


def describe(ad: Any) -> list[Any]:
    """What the harness compares of an atom record: ``[state, intention, attempt, ...]``.

    The attempt is read from whichever field the state says holds the latest outcome (None
    when there is none, PENDING or RUNNING). Retries add how many failures their history
    holds, so recording one (``save_retry_failure``) is a visible change.
    """
    if isinstance(ad, models.RetryDetail):
        history = ad.results or []
        return [ad.state, ad.intention, len(history), sum(len(f) for _, f in history)]
    attempt = None
    if ad.state == states.REVERTED and isinstance(ad.revert_results, tuple):
        attempt = ad.revert_results[1]
    elif ad.state in _OUTCOME_STATES:
        if isinstance(ad.results, tuple):
            attempt = ad.results[1]
        elif ad.failure is not None:
            attempt = attempt_of_failure(ad.failure.exception_str)
    return [ad.state, ad.intention, attempt]


class Step(task.Task):
    """A task of the crash flows: journals its calls, pauses, returns ``(value, attempt)``."""

    def __init__(self, name: str, variant: str) -> None:
        requires = list(INPUTS[name])
        if name in SUB:
            requires.append("attempt")
        super().__init__(name=name, provides=name, requires=requires)
        self._variant = variant
        self._pause = (_FAN_PAUSE_MS if name in FAN else _PAUSE_MS[name]) / 1000.0

    def execute(self, **kwargs: Any) -> tuple[int, int]:
        attempt = int(kwargs.get("attempt", 0))
        if probe is not None:
            probe.call(self.name, "execute", "start", attempt, None)
            probe.pause("execute", self._pause)
        if _fails(self._variant, self.name, attempt):
            if probe is not None:
                probe.call(self.name, "execute", "end", attempt, False)
            raise RuntimeError(_failure_text(self.name, attempt))
        inputs = {key: value[0] for key, value in kwargs.items() if key != "attempt"}
        value = _value(self.name, inputs, attempt)
        if probe is not None:
            probe.call(self.name, "execute", "end", attempt, True)
        return (value, attempt)

    def revert(self, **kwargs: Any) -> tuple[str, int]:
        attempt = int(kwargs.get("attempt", 0))
        if probe is not None:
            probe.call(self.name, "revert", "start", attempt, None)
            probe.pause("revert", self._pause)
            probe.call(self.name, "revert", "end", attempt, True)
        return (f"undo-{self.name}", attempt)


class JournaledForEach(retry.ForEach):
    """The subflow's retry controller: tries 1, 2, 3 in turn, journaling its calls."""

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> Any:
        attempt = len(history) + 1
        if probe is not None:
            probe.call(self.name, "execute", "start", attempt, None)
            probe.pause("execute", _PAUSE_MS[RETRY] / 1000.0)
        value = super().execute(history, *args, **kwargs)
        if probe is not None:
            probe.call(self.name, "execute", "end", attempt, True)
        return value

    def revert(self, history: Any, *args: Any, **kwargs: Any) -> Any:
        attempt = len(history)
        if probe is not None:
            probe.call(self.name, "revert", "start", attempt, None)
            probe.pause("revert", _PAUSE_MS[RETRY] / 1000.0)
            probe.call(self.name, "revert", "end", attempt, True)
        return None


def make_flow(variant: str) -> lf.Flow:
    """The flow of ``variant`` (see the module docstring); rebuilt identically every time."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    root = lf.Flow(f"crash-{variant}")
    root.add(Step("a", variant), Step("b", variant))
    root.add(uf.Flow("fan").add(*(Step(p, variant) for p in FAN)))
    root.add(Step("c", variant))
    controller = JournaledForEach(list(ATTEMPTS), name=RETRY, provides="attempt")
    root.add(lf.Flow("sub", retry=controller).add(Step("r1", variant), Step("r2", variant)))
    root.add(Step("d", variant))
    if variant == "fail":
        root.add(Step("boom", variant))
    return root
