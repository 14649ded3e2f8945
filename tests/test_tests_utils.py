"""``taskflow.tests.utils``: the helpers upstream's examples import, as upstream 6.5 behaves."""

from __future__ import annotations

import pytest

from taskflow import engines, exceptions
from taskflow.patterns import linear_flow
from taskflow.tests import utils


def test_the_example_tasks_take_their_arguments_and_return_as_upstreams_do():
    one, multi = utils.TaskOneArgOneReturn(provides="r1"), utils.TaskMultiArgOneReturn()
    assert (one.name, sorted(one.requires)) == ("taskflow.tests.utils.TaskOneArgOneReturn", ["x"])
    assert sorted(multi.requires) == ["x", "y", "z"]
    flow = linear_flow.Flow("f").add(one, utils.TaskMultiArgOneReturn(provides="r2"))
    results = engines.run(flow, store={"x": 5, "y": 2, "z": 3})
    assert (results["r1"], results["r2"]) == (1, 10)
    assert multi.execute(x="a", y="b", z="c") == "abc"


def test_wrap_all_failures_wraps_an_exception_in_a_wrapped_failure():
    with pytest.raises(exceptions.WrappedFailure) as caught:
        with utils.wrap_all_failures():
            raise ValueError("boom")
    failures = list(caught.value)
    assert len(failures) == 1
    assert failures[0].check(ValueError)
    assert failures[0].exception_str == "boom"
    assert caught.value.__cause__ is None
    already = exceptions.WrappedFailure([])
    with pytest.raises(exceptions.WrappedFailure) as again:
        with utils.wrap_all_failures():
            raise already
    assert again.value is already
    with pytest.raises(KeyboardInterrupt):
        with utils.wrap_all_failures():
            raise KeyboardInterrupt
