"""Tasks and flows shared by the listener tests."""

from __future__ import annotations

import time
from typing import Any

from taskflow import retry, task
from taskflow.patterns import linear_flow as lf


class Provide(task.Task):
    """Returns ``value`` (1 by default)."""

    def __init__(self, name: str, value: Any = 1, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.value = value

    def execute(self, **kwargs: Any) -> Any:
        return self.value


class AddOne(task.Task):
    def execute(self, x: int) -> int:
        return x + 1


class Boom(task.Task):
    def execute(self, **kwargs: Any) -> None:
        raise RuntimeError("boom")


class BadRevert(task.Task):
    def execute(self) -> int:
        return 2

    def revert(self, *args: Any, **kwargs: Any) -> None:
        raise ValueError("revert broke")


class Sleep(task.Task):
    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name)
        self.seconds = seconds

    def execute(self) -> float:
        time.sleep(self.seconds)
        return self.seconds


def ok_flow() -> lf.Flow:
    """``ok``: a (provides x=1) then b (x + 1 = 2)."""
    return lf.Flow("ok").add(Provide("a", provides="x"), AddOne("b"))


def fail_flow() -> lf.Flow:
    """``bad``: a (x=1) then boom (raises RuntimeError)."""
    return lf.Flow("bad").add(Provide("a", provides="x"), Boom("boom"))


def retry_flow() -> lf.Flow:
    """``rf``: retry r1 (Times(2)) around a and boom; fails twice, then reverts."""
    return lf.Flow("rf", retry=retry.Times(2, "r1")).add(Provide("a", provides="x"), Boom("boom"))


def run_quietly(engine: Any) -> BaseException | None:
    """Run ``engine``; return the error it raised, if any."""
    try:
        engine.run()
    except Exception as err:
        return err
    return None
