"""Timeout, StopWatch and Latch."""

from __future__ import annotations

import re
import threading
import time

import pytest

from taskflow.types.latch import Latch
from taskflow.types.timing import Split, StopWatch, Timeout, convert_to_timeout

# -- Timeout ----------------------------------------------------------------------------------


def test_timeout_rejects_negative_values():
    with pytest.raises(ValueError, match="greater or equal to zero"):
        Timeout(-1)


def test_timeout_waits_for_its_value():
    t = Timeout(0.05)
    assert t.value == 0.05
    assert not t.is_stopped()
    started = time.monotonic()
    assert t.wait() is False
    assert time.monotonic() - started >= 0.04


def test_timeout_interrupt_wakes_a_waiter():
    t = Timeout(30)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(t.wait()))
    started = time.monotonic()
    waiter.start()
    t.interrupt()
    waiter.join(5)
    assert woke == [True]
    assert time.monotonic() - started < 5
    assert t.is_stopped()
    assert t.wait() is True  # stays interrupted


def test_timeout_reset_clears_the_interruption():
    t = Timeout(0.01)
    t.interrupt()
    t.reset()
    assert not t.is_stopped()
    assert t.wait() is False


def test_timeout_uses_event_factory():
    made = []

    def factory():
        made.append(threading.Event())
        return made[-1]

    t = Timeout(0, event_factory=factory)
    t.interrupt()
    assert len(made) == 1
    assert made[0].is_set()


def test_convert_to_timeout_passes_timeouts_through():
    existing = Timeout(2)
    assert convert_to_timeout(existing) is existing
    assert convert_to_timeout(None, default_value=existing) is existing


@pytest.mark.parametrize(("value", "seconds"), [(1, 1.0), (2.5, 2.5), ("3", 3.0), (True, 1.0)])
def test_convert_to_timeout_builds_a_timeout_from_a_number(value, seconds):
    converted = convert_to_timeout(value)
    assert isinstance(converted, Timeout)
    assert converted.value == seconds
    assert type(converted.value) is float


def test_convert_to_timeout_defaults_and_uses_the_event_factory():
    made = []

    def factory():
        made.append(threading.Event())
        return made[-1]

    converted = convert_to_timeout(None, default_value=4, event_factory=factory)
    assert converted.value == 4.0
    converted.interrupt()
    assert made[0].is_set()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "Invalid timeout literal 'None'"),
        ([], "Invalid timeout literal '[]'"),
        ("abc", "could not convert string to float: 'abc'"),
        (-1, "Timeout value must be greater or equal to zero and not '-1.0'"),
    ],
)
def test_convert_to_timeout_rejects_bad_values(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        convert_to_timeout(value)


# -- StopWatch --------------------------------------------------------------------------------


def test_stopwatch_rejects_negative_duration():
    with pytest.raises(ValueError, match="Duration"):
        StopWatch(duration=-1)


def test_unstarted_stopwatch_raises():
    w = StopWatch(duration=1)
    with pytest.raises(RuntimeError, match="elapsed"):
        w.elapsed()
    with pytest.raises(RuntimeError, match="stop"):
        w.stop()
    with pytest.raises(RuntimeError, match="leftover"):
        w.leftover()
    with pytest.raises(RuntimeError, match="expired"):
        w.expired()
    with pytest.raises(RuntimeError, match="split"):
        w.split()
    assert not w.has_started()
    assert not w.has_stopped()


def test_elapsed_grows_then_freezes_when_stopped():
    w = StopWatch().start()
    assert w.has_started()
    time.sleep(0.01)
    first = w.elapsed()
    assert first >= 0.009
    assert w.stop() is w
    assert w.has_stopped()
    assert not w.has_started()
    frozen = w.elapsed()
    time.sleep(0.01)
    assert w.elapsed() == frozen
    assert w.stop() is w  # stopping twice is harmless
    assert w.elapsed(maximum=0.001) == 0.001


def test_resume_continues_and_restart_starts_over():
    w = StopWatch().start()
    with pytest.raises(RuntimeError, match="resume"):
        w.resume()
    time.sleep(0.01)
    w.stop()
    assert w.resume() is w
    assert w.has_started()
    time.sleep(0.01)
    assert w.elapsed() >= 0.019
    assert w.restart() is w
    assert w.elapsed() < 0.019


def test_leftover_and_expired_with_a_duration():
    w = StopWatch(duration=0.2).start()
    assert not w.expired()
    leftover = w.leftover()
    assert leftover is not None
    assert 0 < leftover <= 0.2
    time.sleep(0.25)
    assert w.expired()
    assert w.leftover() == 0.0


def test_no_duration_never_expires():
    w = StopWatch().start()
    assert not w.expired()
    assert w.leftover(return_none=True) is None
    with pytest.raises(RuntimeError, match="no duration"):
        w.leftover()


def test_splits():
    w = StopWatch().start()
    time.sleep(0.01)
    first = w.split()
    time.sleep(0.01)
    second = w.split()
    assert isinstance(first, Split)
    assert first.length == first.elapsed
    assert second.elapsed > first.elapsed
    assert second.length == pytest.approx(second.elapsed - first.elapsed)
    assert w.splits == (first, second)
    w.stop()
    with pytest.raises(RuntimeError):
        w.split()
    w.start()
    assert w.splits == ()


def test_stopwatch_context_manager():
    with StopWatch() as w:
        assert w.has_started()
    assert w.has_stopped()


# -- Latch ------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [-1, 0])
def test_latch_rejects_non_positive_count(count):
    with pytest.raises(ValueError, match="Count must be greater than zero"):
        Latch(count)


def test_latch_counts_down_and_releases():
    latch = Latch(2)
    assert latch.needed == 2
    assert latch.wait(0.01) is False
    latch.countdown()
    assert latch.needed == 1
    assert latch.wait(0.01) is False
    latch.countdown()
    latch.countdown()  # extra countdowns do not go negative
    assert latch.needed == 0
    assert latch.wait() is True


def test_latch_releases_waiting_threads():
    latch = Latch(3)
    results = []
    waiters = [threading.Thread(target=lambda: results.append(latch.wait(5))) for _ in range(3)]
    for w in waiters:
        w.start()
    for _ in range(3):
        threading.Thread(target=latch.countdown).start()
    for w in waiters:
        w.join(5)
    assert results == [True, True, True]
