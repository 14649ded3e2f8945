"""Retry controllers: decisions on hand-built histories, History queries and delays."""

from __future__ import annotations

import math
import pickle

import pytest

from taskflow import exceptions, retry
from taskflow.types.failure import Failure


def failure_of(exc: BaseException) -> Failure:
    try:
        raise exc
    except BaseException:
        return Failure()


def history(*values, failures=None, failure=None) -> retry.History:
    failures = failures or {}
    return retry.History([(v, dict(failures.get(i, {}))) for i, v in enumerate(values)], failure)


def test_constants_and_decisions():
    assert retry.EXECUTE_REVERT_HISTORY == "history"
    assert retry.REVERT_FLOW_FAILURES == "flow_failures"
    assert list(retry.Decision) == [retry.REVERT, retry.REVERT_ALL, retry.RETRY]
    assert retry.RETRY is retry.Decision.RETRY
    assert retry.Decision("REVERT_ALL") is retry.REVERT_ALL
    assert retry.RETRY == "RETRY"
    assert str(retry.REVERT) == "REVERT"
    assert isinstance(retry.REVERT_ALL, str)


def test_retry_is_abstract():
    with pytest.raises(TypeError):
        retry.Retry()  # type: ignore[abstract]


def test_history_queries():
    value_error = failure_of(ValueError("a"))
    key_error = failure_of(KeyError("b"))
    hist = retry.History([(1, {"t1": value_error}), (2, {"t2": key_error, "t3": value_error})])
    assert len(hist) == 2
    assert list(hist) == [(1, {"t1": value_error}), (2, {"t2": key_error, "t3": value_error})]
    assert hist[0] == (1, {"t1": value_error})
    assert hist[-1][0] == 2
    assert hist.failure is None
    assert list(hist.provided_iter()) == [1, 2]
    assert list(hist.outcomes_iter()) == [
        ("t1", value_error),
        ("t2", key_error),
        ("t3", value_error),
    ]
    assert list(hist.outcomes_iter(0)) == [("t1", value_error)]
    assert list(hist.outcomes_iter(1)) == [("t2", key_error), ("t3", value_error)]
    with pytest.raises(IndexError):
        list(hist.outcomes_iter(5))


def test_history_caused_by():
    hist = retry.History(
        [(1, {"t1": failure_of(ValueError("a"))}), (2, {"t2": failure_of(KeyError("b"))})]
    )
    assert hist.caused_by(ValueError) is True
    assert hist.caused_by(LookupError) is True
    assert hist.caused_by("KeyError") is True
    assert hist.caused_by(TypeError) is False
    assert hist.caused_by(KeyError, index=0) is False
    assert hist.caused_by(KeyError, index=1) is True


def test_history_caused_by_takes_exception_cls_by_keyword():
    hist = retry.History([(1, {"t1": failure_of(ValueError("a"))})])
    assert hist.caused_by(exception_cls=ValueError) is True
    assert hist.caused_by(exception_cls="TypeError", index=0) is False


def test_history_caused_by_retry_failure():
    own = failure_of(TypeError("c"))
    hist = retry.History([(1, {})], failure=own)
    assert hist.failure is own
    assert hist.caused_by(TypeError) is False
    assert hist.caused_by(TypeError, include_retry=True) is True
    assert hist.caused_by(ValueError, include_retry=True) is False
    assert retry.History([]).caused_by(TypeError, include_retry=True) is False


def test_empty_history():
    hist = retry.History([])
    assert len(hist) == 0
    assert list(hist.provided_iter()) == []
    assert list(hist.outcomes_iter()) == []


def test_times_execute_and_decisions():
    times = retry.Times(3)
    times_all = retry.Times(3, revert_all=True)
    for attempts in range(5):
        hist = history(*range(1, attempts + 1))
        assert times.execute(hist) == attempts + 1
        expected = retry.RETRY if attempts < 3 else retry.REVERT
        assert times.on_failure(hist) is expected
        expected_all = retry.RETRY if attempts < 3 else retry.REVERT_ALL
        assert times_all.on_failure(history=hist) is expected_all


def test_times_mapping():
    times = retry.Times(2, name="r", provides="attempt")
    assert times.name == "r"
    assert list(times.rebind) == []
    assert list(times.requires) == []
    assert list(times.save_as.items()) == [("attempt", None)]
    assert str(times) == '"r==1.0"'
    assert retry.Times().on_failure(history()) is retry.RETRY
    assert retry.Times(0).on_failure(history()) is retry.REVERT


def test_always_revert():
    assert retry.AlwaysRevert().execute() is None
    assert retry.AlwaysRevert().on_failure(history=history(), x=1) is retry.REVERT
    assert retry.AlwaysRevertAll().on_failure(history=history()) is retry.REVERT_ALL
    assert retry.AlwaysRevert().revert(history(), flow_failures={}) is None


def test_unnamed_retry():
    controller = retry.AlwaysRevert()
    assert controller.name is None
    assert str(controller) == '"None==1.0"'
    controller.name = "flow_retry"
    assert str(controller) == '"flow_retry==1.0"'


def test_history_and_flow_failures_are_never_mapped():
    class Custom(retry.Retry):
        def execute(self, history, a, b=1):
            return a

        def on_failure(self, history, q):
            return retry.RETRY

        def revert(self, history, flow_failures, z, **kwargs):
            return None

    custom = Custom()
    assert list(custom.rebind.items()) == [("a", "a"), ("b", "b")]
    assert list(custom.optional) == ["b"]
    assert list(custom.revert_rebind.items()) == [("z", "z")]
    # on_failure is called with execute's arguments, so its signature is not mapped.
    assert list(custom.requires) == ["a", "z"]
    with pytest.raises(ValueError, match=r"^Extra arguments given to atom None: \['m'\]$"):
        Custom(requires=["m"])


def test_for_each_walks_values_then_gives_up():
    values = [1, 2, 3, 2]
    for_each = retry.ForEach(values, name="r")
    for_each_all = retry.ForEach(values, revert_all=True)
    expected_values = [1, 2, 3, 2]
    for tried in range(4):
        hist = history(*values[:tried])
        assert for_each.execute(hist) == expected_values[tried]
        assert for_each.on_failure(hist) is retry.RETRY
    hist = history(*values)
    with pytest.raises(exceptions.NotFound) as info:
        for_each.execute(hist)
    assert str(info.value) == "No elements left in collection of iterable retry controller r"
    assert for_each.on_failure(hist) is retry.REVERT
    assert for_each_all.on_failure(hist) is retry.REVERT_ALL


def test_for_each_removes_one_occurrence_per_attempt():
    assert retry.ForEach([2, 1, 2]).execute(history(2)) == 1
    assert retry.ForEach([2, 1]).execute(history(5)) == 2
    assert retry.ForEach([[1], [2]]).execute(history([1])) == [2]


def test_for_each_empty_and_iterables():
    with pytest.raises(exceptions.NotFound, match=r"controller None$"):
        retry.ForEach([]).execute(history())
    assert retry.ForEach([]).on_failure(history()) is retry.REVERT
    # Any iterable works; an iterator is read once, at construction.
    once = retry.ForEach(iter([1, 2]))
    assert once.execute(history(1)) == 2
    assert once.execute(history(1)) == 2
    assert retry.ForEach("ab").execute(history("a")) == "b"


@pytest.mark.parametrize("values", [5, None])
def test_for_each_rejects_non_iterables(values):
    with pytest.raises(TypeError, match="not iterable"):
        retry.ForEach(values)


def test_parameterized_for_each():
    controller = retry.ParameterizedForEach(revert_all=True)
    assert list(controller.rebind.items()) == [("values", "values")]
    assert list(controller.requires) == ["values"]
    assert controller.execute([5, 6], history(5)) == 6
    assert controller.on_failure([5, 6], history(5)) is retry.RETRY
    assert controller.on_failure(values=[5, 6], history=history(5, 6)) is retry.REVERT_ALL
    with pytest.raises(exceptions.NotFound):
        controller.execute([5], history(5))
    with pytest.raises(TypeError):
        controller.execute(5, history())


def test_parameterized_for_each_rebind():
    controller = retry.ParameterizedForEach(rebind=["vals"])
    assert list(controller.rebind.items()) == [("values", "vals")]
    assert list(controller.requires) == ["vals"]
    assert list(controller.revert_rebind.items()) == [("vals", "vals")]


def test_delay_defaults_to_zero():
    controller = retry.Times(3)
    assert (controller.delay, controller.backoff, controller.max_delay) == (0.0, 2.0, None)
    assert controller.delay_for(1) == 0.0
    assert controller.delay_for(10) == 0.0


def test_delay_backoff_and_cap():
    controller = retry.Times(5, delay=0.5, backoff=3, max_delay=4)
    assert [controller.delay_for(n) for n in range(1, 5)] == [0.5, 1.5, 4.0, 4.0]
    uncapped = retry.ForEach([1], delay=1, backoff=2)
    assert [uncapped.delay_for(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    constant = retry.AlwaysRevert(delay=2, backoff=1)
    assert constant.delay_for(7) == 2.0
    assert isinstance(constant.delay_for(1), float)


def test_delay_for_huge_attempt_does_not_overflow():
    assert retry.Times(delay=1, backoff=10, max_delay=30).delay_for(10_000) == 30.0
    assert retry.Times(delay=1, backoff=10).delay_for(10_000) == math.inf


def test_delay_for_needs_a_made_attempt():
    with pytest.raises(ValueError, match="attempt"):
        retry.Times(delay=1).delay_for(0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delay": -1}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": math.inf}, "delay"),
        ({"delay": "1"}, "delay"),
        ({"backoff": 0.5}, "backoff"),
        ({"backoff": True}, "backoff"),
        ({"max_delay": -0.1}, "max_delay"),
        ({"max_delay": math.nan}, "max_delay"),
    ],
)
def test_invalid_delay_arguments(kwargs, name):
    for factory in (retry.Times, retry.AlwaysRevert, retry.AlwaysRevertAll):
        with pytest.raises(ValueError, match=f"^{name} "):
            factory(**kwargs)
    with pytest.raises(ValueError, match=f"^{name} "):
        retry.ForEach([1], **kwargs)
    with pytest.raises(ValueError, match=f"^{name} "):
        retry.ParameterizedForEach(**kwargs)


def test_delay_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        retry.Times(1, None, None, None, True, None, False, 1.0)  # type: ignore[misc]


def test_history_pickles_with_failures():
    hist = retry.History([(1, {"t": failure_of(ValueError("x"))})])
    clone = pickle.loads(pickle.dumps(hist))
    assert list(clone.provided_iter()) == [1]
    assert clone.caused_by(ValueError)
