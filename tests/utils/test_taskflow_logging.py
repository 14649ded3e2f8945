"""taskflow.logging: the TRACE level and the adapter."""

from __future__ import annotations

import logging
import subprocess
import sys

from taskflow import logging as tf_logging


def test_level_constants():
    assert tf_logging.TRACE == tf_logging.BLATHER == 5
    assert tf_logging.DEBUG == logging.DEBUG
    assert tf_logging.INFO == logging.INFO
    assert tf_logging.WARN == tf_logging.WARNING == logging.WARNING
    assert tf_logging.ERROR == logging.ERROR
    assert tf_logging.CRITICAL == tf_logging.FATAL == logging.CRITICAL
    assert tf_logging.NOTSET == logging.NOTSET


def test_get_logger_defaults_and_extra():
    log = tf_logging.getLogger()
    assert isinstance(log, logging.LoggerAdapter)
    assert log.logger is logging.getLogger("taskflow")
    assert log.extra is None
    other = tf_logging.getLogger("taskflow.x", extra={"a": 1})
    assert other.logger.name == "taskflow.x"
    assert other.extra == {"a": 1}


def test_trace_and_blather_log_at_level_5(caplog):
    log = tf_logging.getLogger("taskflow.test_trace", extra={"who": "me"})
    with caplog.at_level(1, logger="taskflow.test_trace"):
        log.trace("hi %s", 1)
        log.blather("b")
        log.warn("w")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (5, "hi 1"),
        (5, "b"),
        (logging.WARNING, "w"),
    ]
    assert caplog.records[0].levelname == "TRACE"
    assert caplog.records[0].who == "me"  # type: ignore[attr-defined]


def test_trace_is_skipped_above_level(caplog):
    log = tf_logging.getLogger("taskflow.test_quiet")
    with caplog.at_level(logging.DEBUG, logger="taskflow.test_quiet"):
        log.trace("hidden")
    assert caplog.records == []


def test_importing_taskflow_does_not_register_the_level():
    code = (
        "import logging, taskflow, taskflow.logging as l;"
        "before = logging.getLevelName(5);"
        "l.getLogger();"
        "print(before, logging.getLevelName(5))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["Level", "5", "TRACE"]
