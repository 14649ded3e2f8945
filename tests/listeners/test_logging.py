"""LoggingListener and DynamicLoggingListener: exact records, levels and loggers."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from taskflow import formatters
from taskflow.listeners import logging as logging_listeners
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from tests.helpers.listener_flows import (
    BadRevert,
    Boom,
    Provide,
    fail_flow,
    ok_flow,
    retry_flow,
    run_quietly,
)

LOGGER = "taskflow.listeners.logging"


def _args(record: logging.LogRecord) -> tuple[Any, ...]:
    assert isinstance(record.args, tuple)
    return record.args


def _records(caplog: pytest.LogCaptureFixture, name: str = LOGGER) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


def test_logging_listener_success(load_serial: Any, caplog_debug: Any) -> None:
    engine = load_serial(ok_flow())
    with logging_listeners.LoggingListener(engine):
        engine.run()
    records = _records(caplog_debug)
    assert {r.levelno for r in records} == {logging.DEBUG}
    uuid = engine.storage.get_atom_uuid
    fu = engine.storage.flow_uuid
    assert [r.getMessage() for r in records] == [
        f"{engine} has moved flow 'ok' ({fu}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'SUCCESS' from state 'RUNNING'"
        " with result '1' (failure=False)",
        f"{engine} has moved task 'b' ({uuid('b')}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'b' ({uuid('b')}) into state 'SUCCESS' from state 'RUNNING'"
        " with result '2' (failure=False)",
        f"{engine} has moved flow 'ok' ({fu}) into state 'SUCCESS' from state 'RUNNING'",
    ]
    # The raw record keeps the arguments (handlers may format them differently).
    assert records[2].msg == (
        "%s has moved task '%s' (%s) into state '%s' from state '%s' with result '%s' (failure=%s)"
    )
    assert records[2].args == (engine, "a", uuid("a"), "SUCCESS", "RUNNING", 1, False)
    assert not any(r.exc_info for r in records)


def test_logging_listener_failure_carries_exc_info(load: Any, caplog_debug: Any) -> None:
    engine = load(fail_flow())
    with logging_listeners.LoggingListener(engine):
        assert isinstance(run_quietly(engine), RuntimeError)
    failed = [r for r in _records(caplog_debug) if r.exc_info]
    assert len(failed) == 1
    assert _args(failed[0])[3] == "FAILURE"
    assert isinstance(failed[0].exc_info[1], RuntimeError)  # type: ignore[index]
    assert (
        failed[0]
        .getMessage()
        .endswith(
            "into state 'FAILURE' from state 'RUNNING' with result"
            " 'Failure: RuntimeError: boom' (failure=True)"
        )
    )


def test_logging_listener_custom_logger_and_level(load: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="mine")
    engine = load(retry_flow())
    with logging_listeners.LoggingListener(
        engine, log=logging.getLogger("mine"), level=logging.INFO
    ):
        run_quietly(engine)
    records = _records(caplog, "mine")
    assert records
    assert {r.levelno for r in records} == {logging.INFO}
    assert not _records(caplog)
    # Retries are never logged by the dumping listeners.
    assert not any("r1" in r.getMessage() for r in records)


def test_dynamic_success(load_serial: Any, caplog_debug: Any) -> None:
    engine = load_serial(ok_flow())
    with logging_listeners.DynamicLoggingListener(engine):
        engine.run()
    records = _records(caplog_debug)
    uuid = engine.storage.get_atom_uuid
    fu = engine.storage.flow_uuid
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.DEBUG, f"Flow 'ok' ({fu}) transitioned into state 'RUNNING' from state 'PENDING'"),
        (
            logging.DEBUG,
            f"Task 'a' ({uuid('a')}) transitioned into state 'RUNNING' from state 'PENDING'",
        ),
        (
            logging.DEBUG,
            f"Task 'a' ({uuid('a')}) transitioned into state 'SUCCESS' from state 'RUNNING'"
            " with result '1'",
        ),
        (
            logging.DEBUG,
            f"Task 'b' ({uuid('b')}) transitioned into state 'RUNNING' from state 'PENDING'",
        ),
        (
            logging.DEBUG,
            f"Task 'b' ({uuid('b')}) transitioned into state 'SUCCESS' from state 'RUNNING'"
            " with result '2'",
        ),
        (logging.DEBUG, f"Flow 'ok' ({fu}) transitioned into state 'SUCCESS' from state 'RUNNING'"),
    ]


def test_dynamic_failure(load_serial: Any, caplog_debug: Any) -> None:
    engine = load_serial(fail_flow())
    with logging_listeners.DynamicLoggingListener(engine):
        run_quietly(engine)
    records = _records(caplog_debug)
    uuid = engine.storage.get_atom_uuid
    fu = engine.storage.flow_uuid
    warnings = [(r.getMessage(), bool(r.exc_info)) for r in records if r.levelno == logging.WARNING]
    assert warnings == [
        (
            f"Task 'boom' ({uuid('boom')}) transitioned into state 'FAILURE' from state 'RUNNING'"
            + os.linesep
            + "2 predecessors (most recent first):"
            + os.linesep
            + "  Atom 'a' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
            " 'provides': 1}" + os.linesep + "  |__Flow 'bad'",
            True,
        ),
        (
            f"Task 'boom' ({uuid('boom')}) transitioned into state 'REVERTED'"
            " from state 'REVERTING' with result 'None'",
            False,
        ),
        (
            f"Task 'a' ({uuid('a')}) transitioned into state 'REVERTED'"
            " from state 'REVERTING' with result 'None'",
            False,
        ),
        (f"Flow 'bad' ({fu}) transitioned into state 'REVERTED' from state 'RUNNING'", False),
    ]
    failure_record = next(r for r in records if r.exc_info)
    assert failure_record.msg == "Task '%s' (%s) transitioned into state '%s' from state '%s'%s%s"
    assert isinstance(failure_record.exc_info[1], RuntimeError)  # type: ignore[index]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    assert (
        f"Task 'boom' ({uuid('boom')}) transitioned into state 'REVERTING' from state 'FAILURE'"
        in debug
    )


def test_dynamic_revert_failure(load: Any, caplog_debug: Any) -> None:
    engine = load(lf.Flow("br").add(BadRevert("br1"), Boom("boom")))
    with logging_listeners.DynamicLoggingListener(engine):
        assert isinstance(run_quietly(engine), ValueError)
    records = _records(caplog_debug)
    uuid = engine.storage.get_atom_uuid
    (revert_failure,) = [r for r in records if _args(r)[2] == "REVERT_FAILURE"]
    assert revert_failure.levelno == logging.WARNING
    # Nothing is said about predecessors of an atom that is reverting.
    assert revert_failure.getMessage() == (
        f"Task 'br1' ({uuid('br1')}) transitioned into state 'REVERT_FAILURE'"
        " from state 'REVERTING'"
    )
    assert isinstance(revert_failure.exc_info[1], ValueError)  # type: ignore[index]
    (flow_failure,) = [r for r in records if _args(r)[:1] == ("br",) and _args(r)[2] == "FAILURE"]
    assert flow_failure.levelno == logging.WARNING


def test_dynamic_levels_logger_and_parallel_unordered(load: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="mine")
    flow = uf.Flow("u").add(Provide("a"), Boom("boom"))
    engine = load(flow)
    listener = logging_listeners.DynamicLoggingListener(
        engine, log=logging.getLogger("mine"), level=logging.INFO, failure_level=logging.ERROR
    )
    with listener:
        run_quietly(engine)
    records = _records(caplog, "mine")
    assert {r.levelno for r in records} == {logging.INFO, logging.ERROR}
    (failure,) = [r for r in records if r.exc_info]
    assert failure.levelno == logging.ERROR
    assert _args(failure)[-1] == "1 predecessors (most recent first):" + os.linesep + "  Flow 'u'"
    errors = {(_args(r)[0], _args(r)[2]) for r in records if r.levelno == logging.ERROR}
    assert errors == {
        ("boom", "FAILURE"),
        ("boom", "REVERTED"),
        ("a", "REVERTED"),
        ("u", "REVERTED"),
    }


def test_dynamic_passes_masking_to_formatter(load_serial: Any, caplog_debug: Any) -> None:
    class Secret(Provide):
        pass

    flow = lf.Flow("m").add(
        Secret("p", value={"secret": 1, "pub": 2}, provides="x"),
        Provide("v", requires=("x",), value=7),
        Boom("boom"),
    )
    engine = load_serial(flow)
    with logging_listeners.DynamicLoggingListener(
        engine, hide_inputs_outputs_of=["v"], mask_outputs_keys=["secret"]
    ):
        run_quietly(engine)
    (failure,) = [r for r in _records(caplog_debug) if r.exc_info]
    assert _args(failure)[-1].split(os.linesep) == [
        "3 predecessors (most recent first):",
        "  Atom 'v' {'intention': 'EXECUTE', 'state': 'SUCCESS'}",
        "  |__Atom 'p' {'intention': 'EXECUTE', 'state': 'SUCCESS', 'requires': {},"
        " 'provides': {'secret': '***', 'pub': 2}}",
        "     |__Flow 'm'",
    ]


def test_dynamic_uses_given_formatter(load_serial: Any, caplog_debug: Any) -> None:
    calls: list[Any] = []

    class Fixed(formatters.FailureFormatter):
        def format(self, fail: Any, atom_matcher: Any) -> Any:
            calls.append((fail, atom_matcher))
            return None, "custom details"

    engine = load_serial(fail_flow())
    with logging_listeners.DynamicLoggingListener(engine, fail_formatter=Fixed(engine)):
        run_quietly(engine)
    assert len(calls) == 1
    (failure,) = [
        r for r in _records(caplog_debug) if _args(r)[2] == "FAILURE" and _args(r)[0] == "boom"
    ]
    assert failure.getMessage().endswith(os.linesep + "custom details")
    assert failure.exc_info is None


def test_dynamic_does_not_log_retries(load: Any, caplog_debug: Any) -> None:
    engine = load(retry_flow())
    with logging_listeners.DynamicLoggingListener(engine):
        run_quietly(engine)
    records = _records(caplog_debug)
    assert records
    assert not any(_args(r)[0] == "r1" for r in records)
