"""taskflow.utils.threading_utils."""

from __future__ import annotations

import os
import threading

import pytest

from taskflow.utils import threading_utils as tu


def test_daemon_thread_is_unstarted_and_daemonic():
    seen = []
    t = tu.daemon_thread(lambda *a, **k: seen.append((a, k)), 1, 2, key="v")
    assert t.daemon
    assert not t.is_alive()
    t.start()
    t.join(5)
    assert seen == [((1, 2), {"key": "v"})]


def test_is_alive():
    assert tu.is_alive(None) is False
    gate = threading.Event()
    t = tu.daemon_thread(gate.wait, 5)
    assert tu.is_alive(t) is False
    t.start()
    assert tu.is_alive(t) is True
    gate.set()
    t.join(5)
    assert tu.is_alive(t) is False


def test_get_ident():
    assert tu.get_ident() == threading.get_ident()
    other = []
    t = tu.daemon_thread(lambda: other.append(tu.get_ident()))
    t.start()
    t.join(5)
    assert other[0] != tu.get_ident()


def test_get_optimal_thread_count(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert tu.get_optimal_thread_count() == 5
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert tu.get_optimal_thread_count() == 2
    assert tu.get_optimal_thread_count(default=7) == 7


def test_no_op_accepts_anything_and_returns_none():
    assert tu.no_op() is None
    assert tu.no_op(1, "two", three=3) is None


def test_no_op_serves_as_a_bundle_hook():
    bundle = tu.ThreadBundle()
    bundle.bind(lambda: tu.daemon_thread(tu.no_op), before_start=tu.no_op, after_join=tu.no_op)
    assert bundle.start() == 1
    assert bundle.stop() == 1


def test_thread_bundle_runs_hooks_in_order():
    events = []
    stop = threading.Event()

    def work():
        events.append("run")
        stop.wait(5)

    bundle = tu.ThreadBundle()
    assert len(bundle) == 0
    bundle.bind(
        lambda: tu.daemon_thread(work),
        before_start=lambda t: events.append(("before_start", t.is_alive())),
        after_start=lambda t: events.append(("after_start", t.is_alive())),
        before_join=lambda t: (events.append("before_join"), stop.set()),
        after_join=lambda t: events.append(("after_join", t.is_alive())),
    )
    assert len(bundle) == 1
    assert bundle.start() == 1
    assert bundle.start() == 0  # already running
    assert bundle.stop() == 1
    assert bundle.stop() == 0
    assert events[0] == ("before_start", False)
    assert ("after_start", True) in events
    assert "run" in events
    assert events[-2:] == ["before_join", ("after_join", False)]


def test_thread_bundle_restarts_with_fresh_threads():
    made = []

    def factory():
        t = tu.daemon_thread(lambda: None)
        made.append(t)
        return t

    bundle = tu.ThreadBundle()
    bundle.bind(factory)
    bundle.bind(factory)
    assert bundle.start() == 2
    assert bundle.stop() == 2
    assert bundle.start() == 2
    assert bundle.stop() == 2
    assert len(made) == 4
    assert len(set(map(id, made))) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"thread_factory": "x"},
        {"thread_factory": lambda: None, "before_start": 1},
        {"thread_factory": lambda: None, "after_join": "nope"},
    ],
)
def test_thread_bundle_bind_needs_callables(kwargs):
    bundle = tu.ThreadBundle()
    with pytest.raises(ValueError, match="must be callable"):
        bundle.bind(**kwargs)
    assert len(bundle) == 0
