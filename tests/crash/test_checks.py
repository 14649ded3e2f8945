"""The crash checker on hand-written journals: it passes what is right, names what is wrong."""

from __future__ import annotations

from tests.crash.checks import Checker

RUNNING = ["RUNNING", "EXECUTE", None]
A_DONE = ["SUCCESS", "EXECUTE", 0]


class Script:
    """Writes journal events the way a child (and the parent, for kills) would."""

    def __init__(self, variant: str = "good") -> None:
        self.checker = Checker(variant)
        self.writes = 0

    def feed(self, kind: str, pid: int, **fields):
        self.checker.feed({"k": kind, "pid": pid, **fields})
        return self

    def store(self, pid: int, name: str, desc: list[object], returned: bool = True):
        self.writes += 1
        self.feed("saving", pid, w=self.writes, atoms=[[name, desc]], flow=None)
        if returned:
            self.feed("saved", pid, w=self.writes)
        return self

    def call(self, pid: int, name: str, act: str = "execute", att: int = 0, end: bool = True):
        self.feed("call", pid, atom=name, act=act, ph="start", att=att)
        if end:
            self.feed("call", pid, atom=name, act=act, ph="end", att=att, ok=True)
        return self

    def run(self, pid: int, name: str, value_att: int = 0):
        """A whole execute: RUNNING stored, the call, SUCCESS stored."""
        self.store(pid, name, RUNNING).call(pid, name)
        return self.store(pid, name, ["SUCCESS", "EXECUTE", value_att])

    def kill(self, pid: int, **applied: bool):
        return self.feed("killed", pid, applied=applied, flow_applied=None)

    @property
    def violations(self) -> list[str]:
        return self.checker.violations


def test_a_correct_run_with_a_crash_is_accepted():
    script = Script().feed("ready", 1).run(1, "a").store(1, "b", RUNNING).call(1, "b").kill(1)
    script.feed("ready", 2).run(2, "b")
    assert script.violations == []
    assert script.checker.reruns() == 1


def test_a_successor_started_before_its_predecessor_result_is_stored():
    script = Script().feed("ready", 1).store(1, "a", RUNNING).call(1, "a")
    script.store(1, "b", RUNNING).call(1, "b")
    assert any("before the SUCCESS of its predecessor a" in v for v in script.violations)


def test_a_rerun_without_a_kill_is_reported():
    script = Script().feed("ready", 1).run(1, "a")
    script.feed("ready", 2).store(2, "a", RUNNING).call(2, "a")
    assert any("was not killed" in v for v in script.violations)
    assert any("SUCCESS" in v and "not a transition" in v for v in script.violations)


def test_a_rerun_after_the_result_was_stored_is_not_explained_by_the_kill():
    script = Script().feed("ready", 1).run(1, "a").kill(1)
    script.feed("ready", 2).store(2, "a", RUNNING).call(2, "a")
    assert any("only 0 kill(s)" in v for v in script.violations)


def test_an_interrupted_write_found_in_the_store_counts_as_stored():
    script = Script().feed("ready", 1).store(1, "a", RUNNING).call(1, "a")
    script.store(1, "a", A_DONE, returned=False).kill(1, a=True)
    assert script.checker.persisted["a"] == A_DONE
    script.feed("ready", 2).store(2, "a", RUNNING)
    assert any("not a transition" in v for v in script.violations)


def test_an_execute_before_running_is_stored_is_reported():
    script = Script().feed("ready", 1).call(1, "a")
    assert any("executes while its stored record is None" in v for v in script.violations)


def test_a_revert_before_its_successor_is_reverted_is_reported():
    script = Script("fail").feed("ready", 1).run(1, "a").run(1, "b")
    script.store(1, "a", ["REVERTING", "REVERT", 0]).call(1, "a", act="revert")
    assert any("before its successor b is reverted" in v for v in script.violations)


def test_an_executed_task_never_reverted_in_a_failed_flow_is_reported():
    script = Script("fail").feed("ready", 1).run(1, "a")
    script.checker.finish()
    assert any("a executed (attempt 0) but no revert" in v for v in script.violations)


def test_a_revert_of_a_good_flow_is_reported():
    script = Script("good").feed("ready", 1).run(1, "a")
    script.store(1, "a", ["REVERTING", "REVERT", 0]).call(1, "a", act="revert")
    script.store(1, "a", ["REVERTED", "REVERT", 0])
    script.checker.finish()
    assert any("reverted needlessly" in v for v in script.violations)
