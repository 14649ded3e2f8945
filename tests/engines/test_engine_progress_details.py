"""Progress details: what a task reports with its progress is recorded, as upstream does.

Every ``update_progress`` event a task emits while the engine calls it is recorded: its
``progress`` and, as details, the event's other keys (``{'at_progress': p, 'details': d}``).
A bare ``update_progress(p)`` carries none and erases earlier details; the engine's own 0.0
and 1.0 around the call keep them; a reset puts the progress back to 0.0 and keeps them.
These are upstream 6.5's observed records, step for step.
"""

from __future__ import annotations

from typing import Any

from taskflow import task
from taskflow.patterns import linear_flow as lf
from taskflow.task import EVENT_UPDATE_PROGRESS


def _meta(engine: Any, name: str) -> dict[str, Any]:
    return dict(engine.storage.atom_detail(name).meta)


class Detailed(task.Task):
    """Reports progress with details, then without, then with details again."""

    def execute(self) -> None:
        self.notifier.notify(EVENT_UPDATE_PROGRESS, {"progress": 0.3, "foo": "bar"})
        self.update_progress(0.5)
        self.notifier.notify(EVENT_UPDATE_PROGRESS, {"progress": 0.7, "x": 1})


class Plain(task.Task):
    def execute(self) -> None:
        self.update_progress(0.2)


class Quiet(task.Task):
    def execute(self) -> None:
        pass


def test_the_last_details_reported_are_kept_through_the_end_of_the_call(load):
    engine = load(lf.Flow("f").add(Detailed("t"), Plain("u"), Quiet("q")))
    engine.run()
    assert _meta(engine, "t") == {
        "progress": 1.0,
        "progress_details": {"at_progress": 0.7, "details": {"x": 1}},
    }
    assert engine.storage.get_task_progress_details("t") == {
        "at_progress": 0.7,
        "details": {"x": 1},
    }
    # A report without details erases them; a task that reports nothing has none at all.
    assert _meta(engine, "u") == {"progress": 1.0, "progress_details": None}
    assert engine.storage.get_task_progress_details("u") is None
    assert _meta(engine, "q") == {"progress": 1.0}


def test_a_reset_puts_progress_back_to_zero_and_keeps_the_details(load):
    engine = load(lf.Flow("f").add(Detailed("t"), Plain("u"), Quiet("q")))
    engine.run()
    engine.reset()
    assert _meta(engine, "t") == {
        "progress": 0.0,
        "progress_details": {"at_progress": 0.7, "details": {"x": 1}},
    }
    assert _meta(engine, "u") == {"progress": 0.0, "progress_details": None}
    assert _meta(engine, "q") == {"progress": 0.0}


class Watching(task.Task):
    """Reads its own record while it runs."""

    def __init__(self, name: str, seen: list[dict[str, Any]]) -> None:
        super().__init__(name)
        self.seen = seen
        self.engine: Any = None

    def execute(self) -> None:
        self.notifier.notify(EVENT_UPDATE_PROGRESS, {"progress": 0.3, "foo": "bar"})
        self.seen.append(_meta(self.engine, self.name))
        self.update_progress(0.5)
        self.seen.append(_meta(self.engine, self.name))


def test_the_serial_engine_records_each_report_before_the_task_goes_on():
    from taskflow import engines

    seen: list[dict[str, Any]] = []
    watching = Watching("w", seen)
    engine = engines.load(lf.Flow("f").add(watching), engine="serial")
    watching.engine = engine
    engine.run()
    assert seen == [
        {"progress": 0.3, "progress_details": {"at_progress": 0.3, "details": {"foo": "bar"}}},
        {"progress": 0.5, "progress_details": None},
    ]


def test_a_reset_stores_the_progress_back_at_zero(tmp_path):
    from taskflow import engines
    from taskflow.persistence import backends
    from tests.helpers import services

    services.need_module("sqlalchemy", "database")
    with backends.backend({"connection": f"sqlite:///{tmp_path / 'f.db'}"}) as backend:
        engine = engines.load(lf.Flow("f").add(Detailed("t")), backend=backend)
        engine.run()
        engine.reset()
        with backend.get_connection() as conn:
            (stored,) = [
                ad for ad in conn.get_flow_details(engine.storage.flow_uuid) if ad.name == "t"
            ]
    assert stored.meta == {
        "progress": 0.0,
        "progress_details": {"at_progress": 0.7, "details": {"x": 1}},
    }


def test_a_run_iter_driven_from_several_threads_records_progress_in_order():
    # As loop.run_in_executor(None, next, it) does: each step from another thread. The
    # serial engine's call reports from the thread of its step; its end (progress 1.0) must
    # not be overwritten by its own earlier report arriving late.
    import threading

    from taskflow import engines

    engine = engines.load(lf.Flow("f").add(Plain("u")), engine="serial")
    it = engine.run_iter()
    seen: list[object] = []
    while not seen or seen[-1] is not None:
        step = threading.Thread(target=lambda: seen.append(next(it, None)))
        step.start()
        step.join(10)
    assert engine.storage.get_flow_state() == "SUCCESS"
    assert _meta(engine, "u") == {"progress": 1.0, "progress_details": None}
