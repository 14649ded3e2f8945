"""``taskflow.utils.eventlet_utils`` answers as upstream 6.5's does (observed black-box):
an ``EVENTLET_AVAILABLE`` flag and a deprecated ``check_for_eventlet(exc=None)`` that raises
``RuntimeError`` (or the given exception) when eventlet is not installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from taskflow.utils import eventlet_utils

_DEPRECATED = r"^Using function/method 'check_for_eventlet\(\)' is deprecated: Eventlet support"


def test_flag_says_whether_eventlet_is_installed():
    assert eventlet_utils.EVENTLET_AVAILABLE is (importlib.util.find_spec("eventlet") is not None)
    assert eventlet_utils.__all__ == ["EVENTLET_AVAILABLE", "check_for_eventlet"]


def test_without_eventlet_the_check_raises(monkeypatch):
    monkeypatch.setattr(eventlet_utils, "EVENTLET_AVAILABLE", False)
    with (
        pytest.warns(DeprecationWarning, match=_DEPRECATED),
        pytest.raises(RuntimeError, match=r"^Eventlet is not currently available$"),
    ):
        eventlet_utils.check_for_eventlet()
    given = ValueError("no green threads here")
    for call in (
        lambda: eventlet_utils.check_for_eventlet(given),
        lambda: eventlet_utils.check_for_eventlet(exc=given),
    ):
        with (
            pytest.warns(DeprecationWarning, match=_DEPRECATED),
            pytest.raises(ValueError) as caught,
        ):
            call()
        assert caught.value is given


def test_with_eventlet_the_check_passes(monkeypatch):
    monkeypatch.setattr(eventlet_utils, "EVENTLET_AVAILABLE", True)
    with pytest.warns(DeprecationWarning, match=_DEPRECATED):
        assert eventlet_utils.check_for_eventlet(ValueError("unused")) is None


def test_importing_it_imports_no_eventlet():
    # Only its presence is looked up: importing eventlet is slow and has side effects.
    code = (
        "import sys, warnings; warnings.simplefilter('error');"
        " import taskflow.utils.eventlet_utils; assert 'eventlet' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
