"""The conductor API as upstream TaskFlow 6.5 exposes it (recorded black-box with
``inspect.signature`` on upstream's classes), plus our ``max_attempts``."""

from __future__ import annotations

import inspect

import pytest

from taskflow import exceptions as exc
from taskflow.conductors import backends, base
from taskflow.conductors.backends import impl_blocking, impl_executor, impl_nonblocking
from taskflow.utils import threading_utils

COMMON = ["self", "name", "jobboard", "persistence", "engine", "engine_options"]
EXECUTOR = [*COMMON, "wait_timeout", "log", "max_simultaneous_jobs"]

UPSTREAM_SIGNATURES = {
    base.Conductor: (COMMON, {}),
    impl_executor.ExecutorConductor: (EXECUTOR, {"max_simultaneous_jobs": -1}),
    impl_blocking.BlockingConductor: (EXECUTOR, {"max_simultaneous_jobs": 1}),
    impl_nonblocking.NonBlockingConductor: (
        [*EXECUTOR, "executor_factory"],
        {"max_simultaneous_jobs": threading_utils.get_optimal_thread_count()},
    ),
}


@pytest.mark.parametrize("cls", list(UPSTREAM_SIGNATURES), ids=lambda cls: cls.__name__)
def test_constructors_take_upstreams_parameters_in_order(cls: type):
    names, defaults = UPSTREAM_SIGNATURES[cls]
    parameters = inspect.signature(cls.__init__).parameters
    assert list(parameters)[: len(names)] == names
    extra = list(parameters)[len(names) :]
    assert extra in ([], ["max_attempts"])  # ours: optional, after upstream's
    for name in names[3:]:
        expected = defaults.get(name, None)
        assert parameters[name].default == expected, name


def test_fetch_run_wait_signatures():
    fetch = inspect.signature(backends.fetch).parameters
    assert list(fetch) == ["kind", "name", "jobboard", "namespace", "kwargs"]
    assert fetch["namespace"].default == "taskflow.conductors"
    assert fetch["kwargs"].kind is inspect.Parameter.VAR_KEYWORD
    run = inspect.signature(base.Conductor.run).parameters
    assert list(run) == ["self", "max_dispatches"]
    assert run["max_dispatches"].default is None
    wait = inspect.signature(base.Conductor.wait).parameters
    assert list(wait) == ["self", "timeout"]
    assert wait["timeout"].default is None


def test_class_constants():
    cls = impl_executor.ExecutorConductor
    assert base.Conductor.ENTITY_KIND == "conductor"
    assert cls.WAIT_TIMEOUT == 0.5
    assert cls.REFRESH_PERIODICITY == 30
    retried = cls.NO_CONSUME_EXCEPTIONS
    assert retried == (exc.ExecutionFailure, exc.StorageFailure)
    upstream_events = (
        "compilation_start",
        "compilation_end",
        "preparation_start",
        "preparation_end",
        "validation_start",
        "validation_end",
        "running_start",
        "running_end",
        "job_consumed",
        "job_abandoned",
    )
    # Upstream emits job_trashed without listing it; ours lists it.
    emitted = cls.EVENTS_EMITTED
    assert emitted == (*upstream_events, "job_trashed")
    for name in ("_dispatch_job", "_engine_from_job", "_flow_detail_from_job"):
        assert callable(getattr(cls, name))
    assert inspect.signature(cls._listeners_from_job).parameters.keys() == {
        "self",
        "job",
        "engine",
    }
