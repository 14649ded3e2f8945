"""PrintingListener: lines on stdout (or stderr), with the traceback of a failed task."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any

from taskflow.listeners import printing
from tests.helpers.listener_flows import fail_flow, ok_flow, retry_flow, run_quietly

if TYPE_CHECKING:
    import pytest


def test_prints_flow_and_task_changes(load_serial: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine = load_serial(ok_flow())
    with printing.PrintingListener(engine):
        engine.run()
    out, err = capsys.readouterr()
    assert err == ""
    uuid = engine.storage.get_atom_uuid
    fu = engine.storage.flow_uuid
    assert out.splitlines() == [
        f"{engine} has moved flow 'ok' ({fu}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'a' ({uuid('a')}) into state 'SUCCESS' from state 'RUNNING'"
        " with result '1' (failure=False)",
        f"{engine} has moved task 'b' ({uuid('b')}) into state 'RUNNING' from state 'PENDING'",
        f"{engine} has moved task 'b' ({uuid('b')}) into state 'SUCCESS' from state 'RUNNING'"
        " with result '2' (failure=False)",
        f"{engine} has moved flow 'ok' ({fu}) into state 'SUCCESS' from state 'RUNNING'",
    ]


def test_failure_prints_traceback_after_its_line(
    load: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = load(fail_flow())
    with printing.PrintingListener(engine):
        run_quietly(engine)
    lines = capsys.readouterr().out.splitlines()
    failed = next(
        i for i, line in enumerate(lines) if "into state 'FAILURE' from state 'RUNNING'" in line
    )
    assert lines[failed].endswith("with result 'Failure: RuntimeError: boom' (failure=True)")
    assert lines[failed + 1] == "Traceback (most recent call last):"
    tail = lines[failed + 2 :]
    end = next(i for i, line in enumerate(tail) if " has moved " in line)
    assert tail[end - 1] == "RuntimeError: boom"
    assert lines[-1].endswith("into state 'REVERTED' from state 'RUNNING'")


def test_stderr_option(load: Any, capsys: pytest.CaptureFixture[str]) -> None:
    engine = load(fail_flow())
    with printing.PrintingListener(engine, stderr=True):
        run_quietly(engine)
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback (most recent call last):" in err
    assert err.count(" has moved ") == 10


def test_stream_is_the_one_current_at_creation(
    load: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = load(ok_flow())
    listener = printing.PrintingListener(engine)
    redirected = io.StringIO()
    with contextlib.redirect_stdout(redirected), listener:
        engine.run()
    assert redirected.getvalue() == ""
    assert capsys.readouterr().out.count(" has moved ") == 6


def test_retries_and_unselected_states_are_not_printed(
    load: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = load(retry_flow())
    with printing.PrintingListener(engine, task_listen_for=("SUCCESS",), flow_listen_for=()):
        run_quietly(engine)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all("task 'a'" in line and "into state 'SUCCESS'" in line for line in lines)
