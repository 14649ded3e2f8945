"""Tasks and recorders shared by the engine tests.

Every task here is a module-level class with plain attributes so that it pickles: the same
flows run on the process executor. Tasks never record into globals (a child process could not
report them back); what they saw travels back in their execute/revert results, and what the
engine did is observed through its notifiers, which always fire in the engine's process.
"""

from __future__ import annotations

import time
from typing import Any

from taskflow import exceptions as exc
from taskflow import task
from taskflow.types.failure import Failure


def describe(value: Any) -> Any:
    """A picklable, comparable summary of a revert's ``result`` argument."""
    if isinstance(value, Failure):
        return ("failure", value.exception_str)
    return ("result", value)


class Work(task.Task):
    """Returns ``value`` (or raises RuntimeError(f"boom {name}") when ``fail``).

    Its revert returns what it was given, so tests read it with ``get_revert_result``:
    ``{'result': describe(result), 'flow_failures': {name: exception_str}}``.
    """

    def __init__(
        self,
        name: str,
        value: Any = None,
        provides: Any = None,
        requires: Any = None,
        rebind: Any = None,
        inject: Any = None,
        fail: bool = False,
        revert_fail: bool = False,
        sleep: float = 0.0,
    ) -> None:
        super().__init__(
            name=name, provides=provides, requires=requires, rebind=rebind, inject=inject
        )
        self.value = value
        self.fail = fail
        self.revert_fail = revert_fail
        self.sleep = sleep

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if self.sleep:
            time.sleep(self.sleep)
        if self.fail:
            raise RuntimeError(f"boom {self.name}")
        return self.value

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        if self.revert_fail:
            raise ValueError(f"revert boom {self.name}")
        flow_failures = kwargs.get("flow_failures")
        return {
            "result": describe(kwargs.get("result")),
            "flow_failures": (
                None
                if flow_failures is None
                else {name: f.exception_str for name, f in flow_failures.items()}
            ),
        }


class Seen(task.Task):
    """Returns the keyword arguments it was called with (sorted items)."""

    def execute(self, **kwargs: Any) -> Any:
        return sorted(kwargs.items())


class Echo(task.Task):
    def execute(self, x: Any) -> Any:
        return x


class Add(task.Task):
    def execute(self, a: Any, b: Any) -> Any:
        return a + b


class Optional(task.Task):
    def execute(self, a: Any, b: Any = 100) -> Any:
        return (a, b)


class FailUnless(task.Task):
    """Fails unless its argument ``v`` is in ``ok`` (used under retries providing ``v``)."""

    def __init__(self, name: str, ok: Any = (), **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.ok = tuple(ok)

    def execute(self, v: Any = None) -> Any:
        if v not in self.ok:
            raise RuntimeError(f"fail {self.name} {v!r}")
        return v

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        return "reverted"


class Progress(task.Task):
    def execute(self) -> Any:
        self.update_progress(0.5)
        return "done"


class Recorder:
    """Collects an engine's flow and atom notifications in order."""

    def __init__(self, engine: Any) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.results: dict[tuple[str, str], list[Any]] = {}
        engine.notifier.register("*", self._on_flow)
        engine.atom_notifier.register("*", self._on_atom)

    def _on_flow(self, state: str, details: dict[str, Any]) -> None:
        self.events.append(("flow", state, details.get("old_state")))

    def _on_atom(self, state: str, details: dict[str, Any]) -> None:
        name = details.get("task_name") or details.get("retry_name")
        assert name is not None
        self.events.append((name, state, details.get("old_state")))
        if "result" in details:
            self.results.setdefault((name, state), []).append(details["result"])

    def clear(self) -> None:
        self.events.clear()
        self.results.clear()

    @property
    def flow_states(self) -> list[str]:
        return [state for who, state, _old in self.events if who == "flow"]

    def atom_events(self, name: str | None = None) -> list[tuple[str, str, Any]]:
        return [e for e in self.events if e[0] != "flow" and (name is None or e[0] == name)]

    def names_in(self, state: str) -> list[str]:
        """Atoms in the order they entered ``state``."""
        return [who for who, s, _old in self.events if who != "flow" and s == state]


def atom_states(engine: Any, *names: str) -> dict[str, tuple[str, str]]:
    storage = engine.storage
    return {n: (storage.get_atom_state(n), storage.get_atom_intention(n)) for n in names}


def failure_messages(error: BaseException) -> list[str]:
    """``Type: message`` of each failure an engine raised (a WrappedFailure, or one error)."""
    if isinstance(error, exc.WrappedFailure):
        return sorted(f"{next(iter(f))}: {f.exception_str}" for f in error)
    return [f"{type(error).__name__}: {error}"]


def history_summary(history: Any) -> list[tuple[Any, dict[str, str]]]:
    """A retry History as ``[(value, {atom: exception_str})]``."""
    return [(value, {n: f.exception_str for n, f in fails.items()}) for value, fails in history]


def make_flow(name: str, count: int = 1) -> Any:
    """A flow factory importable by name (``tests.helpers.engine_tasks.make_flow``)."""
    from taskflow.patterns import linear_flow

    return linear_flow.Flow(name).add(
        *(Work(f"w{i}", value=i, provides=f"r{i}", requires="x") for i in range(count))
    )
