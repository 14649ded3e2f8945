"""The exception hierarchy and its formatting (spec §10)."""

from __future__ import annotations

import builtins

import pytest

from taskflow import exceptions as exc
from taskflow.types.failure import Failure

HIERARCHY = {
    "TaskFlowException": Exception,
    "WrappedFailure": Exception,
    "StorageFailure": exc.TaskFlowException,
    "ConductorFailure": exc.TaskFlowException,
    "JobFailure": exc.TaskFlowException,
    "ExecutionFailure": exc.TaskFlowException,
    "DependencyFailure": exc.TaskFlowException,
    "CompilationFailure": exc.TaskFlowException,
    "IncompatibleVersion": exc.TaskFlowException,
    "Duplicate": exc.TaskFlowException,
    "NotFound": exc.TaskFlowException,
    "Empty": exc.TaskFlowException,
    "MultipleChoices": exc.TaskFlowException,
    "InvalidFormat": exc.TaskFlowException,
    "DisallowedAccess": exc.TaskFlowException,
    "UnclaimableJob": exc.JobFailure,
    "RequestTimeout": exc.ExecutionFailure,
    "InvalidState": exc.ExecutionFailure,
    "AmbiguousDependency": exc.DependencyFailure,
    "MissingDependencies": exc.DependencyFailure,
    "NotImplementedError": builtins.NotImplementedError,
}


@pytest.mark.parametrize(("name", "parent"), sorted(HIERARCHY.items(), key=lambda kv: kv[0]))
def test_hierarchy(name, parent):
    cls = getattr(exc, name)
    assert cls.__bases__ == (parent,)
    assert cls.__module__ == "taskflow.exceptions"


def test_taskflow_not_implemented_error_is_not_a_taskflow_exception():
    assert not issubclass(exc.NotImplementedError, exc.TaskFlowException)
    assert exc.NotImplementedError is not builtins.NotImplementedError


def capture(error: BaseException) -> Failure:
    try:
        raise error
    except BaseException:
        return Failure()


# -- TaskFlowException ------------------------------------------------------------------------


def test_plain_exception_str_and_cause():
    e = exc.TaskFlowException("plain")
    assert str(e) == "plain"
    assert e.cause is None
    assert e.args == ("plain",)
    assert e.pformat(show_root_class=True) == "TaskFlowException: plain"


def test_cause_chain_in_str_and_pformat():
    e = exc.TaskFlowException("top", cause=exc.NotFound("mid", cause=exc.Empty("low")))
    assert isinstance(e.cause, exc.NotFound)
    assert str(e) == "top\n  NotFound: mid\n    Empty: low"
    assert e.pformat() == str(e)
    assert (
        e.pformat(indent=4, indent_text="-", show_root_class=True)
        == "TaskFlowException: top\n----NotFound: mid\n--------Empty: low"
    )
    assert e.args == ("top",)


@pytest.mark.parametrize("indent", [-1, -100])
def test_pformat_refuses_a_negative_indent(indent):
    for e in (exc.TaskFlowException("plain"), exc.NotFound("top", cause=exc.Empty("low"))):
        with pytest.raises(ValueError) as info:
            e.pformat(indent=indent)
        assert str(info.value) == (
            f"Provided 'indent' must be greater than or equal to zero instead of {indent}"
        )
    assert exc.NotFound("top", cause=exc.Empty("low")).pformat(indent=0) == "top\nEmpty: low"


def test_foreign_cause_is_shown_with_its_str():
    assert str(exc.NotFound("mid", cause=KeyError("k"))) == "mid\n  KeyError: 'k'"
    assert str(exc.NotFound("mid", cause=ValueError("a", "b"))) == "mid\n  ValueError: ('a', 'b')"
    assert str(exc.NotFound("mid", cause=ValueError())) == "mid\n  ValueError"


def test_foreign_cause_with_single_argument():
    assert str(exc.NotFound("mid", cause=ValueError("low"))) == "mid\n  ValueError: low"


def _wrap_not_found() -> None:
    try:
        raise exc.NotFound("missing")
    except exc.NotFound:
        exc.raise_with_cause(exc.StorageFailure, "store failed")


def test_raise_with_cause_chains_the_handled_exception():
    with pytest.raises(exc.StorageFailure) as info:
        _wrap_not_found()
    assert isinstance(info.value.cause, exc.NotFound)
    assert info.value.__cause__ is info.value.cause
    assert str(info.value) == "store failed\n  NotFound: missing"


def test_raise_with_cause_without_active_exception():
    with pytest.raises(exc.StorageFailure) as info:
        exc.raise_with_cause(exc.StorageFailure, "no cause")
    assert info.value.cause is None
    assert str(info.value) == "no cause"


def test_raise_with_cause_passes_extra_arguments():
    with pytest.raises(exc.DisallowedAccess) as info:
        exc.raise_with_cause(exc.DisallowedAccess, "nope", state="CLAIMED")
    assert info.value.state == "CLAIMED"


def test_disallowed_access_state():
    e = exc.DisallowedAccess("no", state="X")
    assert e.state == "X"
    assert str(e) == "no"
    assert exc.DisallowedAccess("no").state is None


# -- MissingDependencies ----------------------------------------------------------------------


def test_missing_dependencies_message_and_requirements():
    e = exc.MissingDependencies("atom1", ["a", "b"])
    assert str(e) == "'atom1' requires ['a', 'b'] but no other entity produces said requirements"
    assert e.missing_requirements == ["a", "b"]
    assert e.cause is None
    assert isinstance(e, exc.DependencyFailure)


def test_missing_dependencies_with_cause():
    e = exc.MissingDependencies("flow", ["x"], cause=exc.MissingDependencies("atom", ["x"]))
    assert str(e) == (
        "'flow' requires ['x'] but no other entity produces said requirements\n"
        "  MissingDependencies: 'atom' requires ['x'] but no other entity produces said"
        " requirements"
    )


def test_missing_dependencies_with_method():
    e = exc.MissingDependencies("atom1", ["a"], method="execute")
    assert str(e) == (
        "'execute' method on 'atom1' requires ['a'] but no other entity produces said requirements"
    )


# -- WrappedFailure ---------------------------------------------------------------------------


def test_wrapped_failure_iter_len_str():
    a = capture(ValueError("a"))
    b = capture(KeyError("b"))
    w = exc.WrappedFailure([a, b])
    assert len(w) == 2
    assert list(w) == [a, b]
    assert str(w) == "WrappedFailure: [Failure: ValueError: a, Failure: KeyError: 'b']"
    assert str(exc.WrappedFailure([])) == "WrappedFailure: []"
    assert len(exc.WrappedFailure([])) == 0


def test_wrapped_failure_flattens_nested_wrapped_failures():
    a = capture(ValueError("a"))
    b = capture(KeyError("b"))
    c = capture(OSError("c"))
    inner = capture(exc.WrappedFailure([a, b]))
    assert list(inner) == ["taskflow.exceptions.WrappedFailure", "Exception"]
    outer = exc.WrappedFailure([inner, c])
    assert list(outer) == [a, b, c]
    assert str(outer) == (
        "WrappedFailure: [Failure: ValueError: a, Failure: KeyError: 'b', Failure: OSError: c]"
    )


def test_wrapped_failure_keeps_data_only_wrapped_failures():
    inner = Failure.from_dict(capture(exc.WrappedFailure([capture(ValueError("a"))])).to_dict())
    outer = exc.WrappedFailure([inner])
    assert list(outer) == [inner]


def test_wrapped_failure_check():
    w = exc.WrappedFailure([capture(ValueError("a")), capture(KeyError("b"))])
    assert w.check(KeyError) is KeyError
    assert w.check(TypeError) is None
    assert w.check("LookupError") == "LookupError"
    assert w.check(TypeError, ValueError) is ValueError
    assert w.check() is None
    assert exc.WrappedFailure([]).check(ValueError) is None
