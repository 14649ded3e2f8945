"""Behaviour of the persistence models (LogBook, FlowDetail, TaskDetail, RetryDetail)."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime

import pytest

from taskflow import _serialization, states
from taskflow import exceptions as exc
from taskflow.persistence import models
from taskflow.types.failure import Failure


def _failure(message: str = "boom", cls: type[Exception] = RuntimeError) -> Failure:
    try:
        raise cls(message)
    except cls:
        return Failure()


def _filled_task() -> models.TaskDetail:
    ad = models.TaskDetail("task", "t-1")
    ad.state = states.REVERT_FAILURE
    ad.intention = states.REVERT
    ad.results = {"out": (1, 2)}
    ad.failure = _failure("execute")
    ad.revert_results = [1, 2]
    ad.revert_failure = _failure("revert", ValueError)
    ad.meta = {"progress": 1.0}
    ad.version = "1.2"
    return ad


def _assert_same_atom(got: models.AtomDetail, want: models.AtomDetail) -> None:
    assert type(got) is type(want)
    for field in ("uuid", "name", "state", "intention", "results", "revert_results", "meta"):
        assert getattr(got, field) == getattr(want, field), field
    assert got.version == want.version
    for field in ("failure", "revert_failure"):
        got_f, want_f = getattr(got, field), getattr(want, field)
        assert (got_f is None) == (want_f is None)
        if want_f is not None:
            assert got_f.matches(want_f)


# -- construction -------------------------------------------------------------------------


def test_new_details_have_documented_defaults():
    ad = models.TaskDetail("t", "u")
    assert (ad.name, ad.uuid, ad.state, ad.intention) == ("t", "u", None, states.EXECUTE)
    assert (ad.results, ad.failure, ad.revert_results, ad.revert_failure) == (None,) * 4
    assert (ad.meta, ad.version) == ({}, None)
    assert models.RetryDetail("r", "u").results == []
    fd = models.FlowDetail("f", "fu")
    assert (fd.state, fd.meta, len(fd)) == (None, {}, 0)


def test_logbook_gets_uuid_and_utc_creation_time():
    before = datetime.now(UTC)
    book = models.LogBook("b")
    assert book.uuid
    assert book.uuid != models.LogBook("b").uuid
    assert models.LogBook("b", uuid="given").uuid == "given"
    assert book.created_at is not None
    assert book.created_at.tzinfo is not None
    assert before <= book.created_at <= datetime.now(UTC)
    assert book.updated_at is None


def test_atom_detail_fields_are_plain_slots():
    ad = models.TaskDetail("t", "u")
    assert not hasattr(ad, "__dict__")
    for field in ("state", "intention", "results", "failure", "meta", "version", "uuid"):
        assert not isinstance(getattr(type(ad), field, None), property), field
    with pytest.raises(AttributeError):
        ad.unknown_field = 1  # type: ignore[attr-defined]


def test_atom_detail_is_abstract():
    with pytest.raises(TypeError):
        models.AtomDetail("a", "b")  # type: ignore[abstract]


# -- containers ---------------------------------------------------------------------------


def test_logbook_add_find_iterate_and_stamp():
    book = models.LogBook("b")
    fd = models.FlowDetail("f", "fu")
    book.add(fd)
    assert book.updated_at is not None
    assert book.find("fu") is fd
    assert book.find("nope") is None
    assert list(book) == [fd]
    assert len(book) == 1
    replacement = models.FlowDetail("other", "fu")
    book.add(replacement)
    assert list(book) == [replacement]


def test_flow_detail_add_find_iterate():
    fd = models.FlowDetail("f", "fu")
    a, b = models.TaskDetail("a", "au"), models.RetryDetail("b", "bu")
    fd.add(a)
    fd.add(b)
    assert list(fd) == [a, b]
    assert len(fd) == 2
    assert fd.find("bu") is b
    assert fd.find("x") is None


def test_iteration_tolerates_adding_while_iterating():
    fd = models.FlowDetail("f", "fu")
    fd.add(models.TaskDetail("a", "au"))
    for _ in fd:
        fd.add(models.TaskDetail("b", "bu"))
    assert len(fd) == 2


# -- put / reset ----------------------------------------------------------------------------


def _dirty(cls: type[models.AtomDetail]) -> models.AtomDetail:
    ad = cls("t", "u")
    ad.state = "OLD"
    ad.results = [("r0", {})] if cls is models.RetryDetail else "r0"
    ad.failure = _failure("old")
    ad.revert_results = "rr0"
    ad.revert_failure = _failure("old revert")
    ad.intention = states.REVERT
    return ad


def test_task_put_success_sets_results_and_clears_failures():
    ad = _dirty(models.TaskDetail)
    assert ad.put(states.SUCCESS, 5) is True
    assert (ad.state, ad.results, ad.failure, ad.revert_results, ad.revert_failure) == (
        states.SUCCESS,
        5,
        None,
        None,
        None,
    )
    assert ad.intention == states.REVERT  # put never touches the intention
    assert ad.put(states.SUCCESS, 5) is False
    assert ad.put(states.SUCCESS, [1]) is True


def test_task_put_failure_sets_failure_and_clears_results():
    ad = _dirty(models.TaskDetail)
    failure = _failure()
    assert ad.put(states.FAILURE, failure) is True
    assert (ad.state, ad.results, ad.revert_results, ad.revert_failure) == (
        states.FAILURE,
        None,
        None,
        None,
    )
    assert ad.failure is failure
    assert ad.put(states.FAILURE, failure.copy()) is False


def test_task_put_reverted_keeps_execute_outcome():
    ad = _dirty(models.TaskDetail)
    old_failure = ad.failure
    assert ad.put(states.REVERTED, "undone") is True
    assert (ad.state, ad.results, ad.revert_results, ad.revert_failure) == (
        states.REVERTED,
        "r0",
        "undone",
        None,
    )
    assert ad.failure is old_failure
    assert ad.put(states.REVERTED, "undone") is False


def test_task_put_revert_failure_keeps_execute_failure_only():
    ad = _dirty(models.TaskDetail)
    old_failure, failure = ad.failure, _failure("revert")
    assert ad.put(states.REVERT_FAILURE, failure) is True
    assert (ad.results, ad.revert_results, ad.revert_failure) == (None, None, failure)
    assert ad.failure is old_failure
    assert ad.put(states.REVERT_FAILURE, failure) is False


@pytest.mark.parametrize(
    "state", [states.PENDING, states.RUNNING, states.REVERTING, states.RETRYING, states.IGNORE]
)
@pytest.mark.parametrize("cls", [models.TaskDetail, models.RetryDetail])
def test_put_other_states_only_changes_state(cls, state):
    ad = _dirty(cls)
    before = (ad.results, ad.failure, ad.revert_results, ad.revert_failure)
    assert ad.put(state, "ignored") is True
    assert ad.state == state
    assert (ad.results, ad.failure, ad.revert_results, ad.revert_failure) == before
    assert ad.put(state, "ignored") is False


def test_retry_put_success_appends_to_history():
    ad = _dirty(models.RetryDetail)
    assert ad.put(states.SUCCESS, 1) is True
    assert ad.put(states.SUCCESS, 1) is True  # every success is a new history entry
    assert ad.results == [("r0", {}), (1, {}), (1, {})]
    assert (ad.failure, ad.revert_results, ad.revert_failure) == (None, None, None)


def test_retry_put_failure_and_reverts_keep_history():
    ad = _dirty(models.RetryDetail)
    failure = _failure()
    assert ad.put(states.FAILURE, failure) is True
    assert ad.results == [("r0", {})]
    assert (ad.failure, ad.revert_results, ad.revert_failure) == (failure, None, None)
    assert ad.put(states.REVERTED, "x") is True
    assert (ad.revert_results, ad.revert_failure) == ("x", None)
    revert_failure = _failure("revert")
    assert ad.put(states.REVERT_FAILURE, revert_failure) is True
    assert (ad.revert_results, ad.revert_failure) == (None, revert_failure)
    assert ad.results == [("r0", {})]


@pytest.mark.parametrize("cls", [models.TaskDetail, models.RetryDetail])
def test_reset_clears_everything_and_sets_execute(cls):
    ad = _dirty(cls)
    ad.reset(states.PENDING)
    assert (ad.state, ad.intention) == (states.PENDING, states.EXECUTE)
    assert ad.results == ([] if cls is models.RetryDetail else None)
    assert (ad.failure, ad.revert_results, ad.revert_failure) == (None, None, None)


def test_last_results_and_failures():
    task = models.TaskDetail("t", "u")
    task.put(states.SUCCESS, 3)
    assert task.last_results == 3
    retry = models.RetryDetail("r", "u")
    with pytest.raises(exc.NotFound, match="Last results not found"):
        _ = retry.last_results
    with pytest.raises(exc.NotFound, match="Last failures not found"):
        _ = retry.last_failures
    retry.put(states.SUCCESS, "a")
    failure = _failure()
    retry.results[-1][1]["t"] = failure
    retry.put(states.SUCCESS, "b")
    assert retry.last_results == "b"
    assert retry.last_failures == {}
    assert retry.results[0] == ("a", {"t": failure})


# -- copy / merge / update ----------------------------------------------------------------


def test_task_copy_is_shallow_and_independent():
    ad = _filled_task()
    clone = ad.copy()
    assert clone is not ad
    _assert_same_atom(clone, ad)
    assert clone.meta is not ad.meta
    assert clone.results is ad.results
    clone.meta["x"] = 1
    clone.state = states.PENDING
    assert "x" not in ad.meta
    assert ad.state == states.REVERT_FAILURE


def test_retry_copy_copies_history_containers():
    ad = models.RetryDetail("r", "u")
    ad.put(states.SUCCESS, [1])
    clone = ad.copy()
    assert clone.results == ad.results
    assert clone.results is not ad.results
    assert clone.results[0][1] is not ad.results[0][1]
    assert clone.results[0][0] is ad.results[0][0]
    clone.results[0][1]["x"] = _failure()
    clone.put(states.SUCCESS, 2)
    assert ad.results == [([1], {})]


def test_merge_takes_other_fields_but_not_name():
    target = models.TaskDetail("mine", "t-1")
    target.meta = {"old": 1}
    source = _filled_task()
    assert target.merge(source) is target
    assert target.name == "mine"
    assert target.meta is source.meta
    assert target.results is source.results
    source.name = "mine"
    _assert_same_atom(target, source)


def test_merge_deep_copy_shares_nothing_mutable():
    source = _filled_task()
    source.results = {"list": [1]}
    target = models.TaskDetail("task", "t-1").merge(source, deep_copy=True)
    _assert_same_atom(target, source)
    assert target.results is not source.results
    assert target.meta is not source.meta
    assert target.failure is not source.failure
    source.results["list"].append(2)
    assert target.results == {"list": [1]}


def test_merge_refuses_other_detail_types():
    with pytest.raises(exc.NotImplementedError, match="task details"):
        models.TaskDetail("a", "u").merge(models.RetryDetail("a", "u"))
    with pytest.raises(exc.NotImplementedError, match="retry details"):
        models.RetryDetail("a", "u").merge(models.TaskDetail("a", "u"))


def test_retry_merge_copies_history():
    source = models.RetryDetail("r", "u")
    source.put(states.SUCCESS, [1])
    source.results[0][1]["t"] = _failure()
    shallow = models.RetryDetail("r", "u").merge(source)
    assert shallow.results == source.results
    assert shallow.results is not source.results
    deep = models.RetryDetail("r", "u").merge(source, deep_copy=True)
    assert deep.results[0][0] == [1]
    assert deep.results[0][0] is not source.results[0][0]
    assert deep.results[0][1]["t"].matches(source.results[0][1]["t"])


def test_atom_update_shares_values_and_returns_self():
    target = models.TaskDetail("mine", "t-1")
    source = _filled_task()
    assert target.update(source) is target
    assert target.name == "mine"
    assert target.meta is source.meta
    assert target.state == source.state
    assert target.failure is source.failure


def test_flow_merge_update_copy():
    fd = models.FlowDetail("f", "fu")
    ad = models.TaskDetail("a", "au")
    fd.add(ad)
    other = models.FlowDetail("renamed", "fu")
    other.state = states.RUNNING
    other.meta = {"k": [1]}
    other.add(models.TaskDetail("b", "bu"))

    assert fd.merge(other) is fd
    assert (fd.name, fd.state, fd.meta) == ("f", states.RUNNING, {"k": [1]})
    assert fd.meta is other.meta
    assert [a.uuid for a in fd] == ["au"]
    deep = models.FlowDetail("f", "fu").merge(other, deep_copy=True)
    assert deep.meta == other.meta
    assert deep.meta["k"] is not other.meta["k"]

    assert fd.update(other) is fd
    assert [a.uuid for a in fd] == ["bu"]
    other.add(models.TaskDetail("c", "cu"))
    assert len(fd) == 1  # update copies the atom mapping, it does not alias it

    clone = fd.copy()
    assert list(clone) == list(fd)
    assert clone.meta is not fd.meta
    assert len(fd.copy(retain_contents=False)) == 0


def test_logbook_merge_and_copy():
    book = models.LogBook("b", "bu")
    book.add(models.FlowDetail("f", "fu"))
    other = models.LogBook("renamed", "bu")
    other.meta = {"k": [1]}
    other.created_at = datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    other.updated_at = None
    assert book.merge(other) is book
    assert (book.name, book.meta, book.created_at, book.updated_at) == (
        "b",
        {"k": [1]},
        other.created_at,
        None,
    )
    assert len(book) == 1
    deep = models.LogBook("b", "bu").merge(other, deep_copy=True)
    assert deep.meta == other.meta
    assert deep.meta["k"] is not other.meta["k"]

    clone = book.copy()
    assert clone is not book
    assert list(clone) == list(book)
    assert clone.meta is not book.meta
    assert clone.created_at == book.created_at
    assert len(book.copy(retain_contents=False)) == 0


def test_merging_with_itself_is_a_no_op():
    ad = _filled_task()
    assert ad.merge(ad) is ad
    assert ad.merge(ad, deep_copy=True) is ad
    assert ad.results == {"out": (1, 2)}


# -- to_dict / from_dict --------------------------------------------------------------------


def test_task_to_dict_layout():
    ad = _filled_task()
    data = ad.to_dict()
    assert list(data) == [
        "failure",
        "revert_failure",
        "meta",
        "name",
        "results",
        "revert_results",
        "state",
        "version",
        "intention",
        "uuid",
    ]
    assert data["failure"] == ad.failure.to_dict()
    assert data["results"] == {"out": (1, 2)}


@pytest.mark.parametrize("through_json", [False, True])
def test_task_round_trip(through_json):
    ad = _filled_task()
    data = ad.to_dict()
    if through_json:
        data = _serialization.loads(_serialization.dumps(data))
    back = models.TaskDetail.from_dict(data)
    _assert_same_atom(back, ad)
    assert type(back.results["out"]) is tuple


def test_task_from_plain_json_loses_only_tuples():
    ad = _filled_task()
    back = models.TaskDetail.from_dict(json.loads(json.dumps(ad.to_dict())))
    assert back.results == {"out": [1, 2]}
    assert back.failure is not None
    assert back.failure.matches(ad.failure)


def test_from_dict_fills_missing_fields():
    ad = models.TaskDetail.from_dict({"name": "n", "uuid": "u", "meta": None})
    assert (ad.name, ad.uuid, ad.meta, ad.state, ad.failure) == ("n", "u", {}, None, None)
    with pytest.raises(KeyError):
        models.TaskDetail.from_dict({"name": "n"})


@pytest.mark.parametrize("through", ["dict", "serialization", "plain-json"])
def test_retry_history_round_trip_is_intact(through):
    ad = models.RetryDetail("r", "ru")
    first, second = _failure("first"), _failure("second", KeyError)
    ad.put(states.SUCCESS, "v1")
    ad.results[-1][1]["task"] = first
    ad.put(states.SUCCESS, (2, 3))
    ad.results[-1][1]["task"] = second
    ad.results[-1][1]["other"] = first
    ad.put(states.SUCCESS, {"last": True})
    data = ad.to_dict()
    assert data["results"][0] == ("v1", {"task": first.to_dict()})
    if through == "serialization":
        data = _serialization.loads(_serialization.dumps(data))
    elif through == "plain-json":
        data = json.loads(json.dumps(data))

    back = models.RetryDetail.from_dict(data)
    values = [value for value, _ in back.results]
    want_second = (2, 3) if through != "plain-json" else [2, 3]
    # Upstream replaced each value that had failures with a failure dict; ours keeps it.
    assert values == ["v1", want_second, {"last": True}]
    assert all(type(entry) is tuple for entry in back.results)
    assert back.results[0][1]["task"].matches(first)
    assert back.results[1][1]["task"].matches(second)
    assert back.results[1][1]["other"].matches(first)
    assert back.results[2][1] == {}
    assert back.last_results == {"last": True}


def test_flow_and_book_dict_round_trips():
    fd = models.FlowDetail("f", "fu")
    fd.state = states.SUCCESS
    fd.meta = {"store": {"x": (1,)}}
    assert fd.to_dict() == {"name": "f", "meta": fd.meta, "state": "SUCCESS", "uuid": "fu"}
    back = models.FlowDetail.from_dict(_serialization.loads(_serialization.dumps(fd.to_dict())))
    assert (back.name, back.uuid, back.state, back.meta) == ("f", "fu", "SUCCESS", fd.meta)

    book = models.LogBook("b", "bu")
    book.meta = {"k": "v"}
    book.created_at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    book.updated_at = None
    plain = book.to_dict()
    assert plain == {
        "name": "b",
        "meta": {"k": "v"},
        "uuid": "bu",
        "updated_at": None,
        "created_at": book.created_at,
    }
    marshalled = book.to_dict(marshal_time=True)
    assert marshalled["created_at"] == {
        "year": 2024,
        "month": 5,
        "day": 6,
        "hour": 7,
        "minute": 8,
        "second": 9,
        "microsecond": 123456,
    }
    back_book = models.LogBook.from_dict(json.loads(json.dumps(marshalled)), unmarshal_time=True)
    assert back_book.created_at == book.created_at
    assert back_book.updated_at is None
    assert (back_book.name, back_book.uuid, back_book.meta) == ("b", "bu", {"k": "v"})
    assert models.LogBook.from_dict(plain).created_at is book.created_at


def test_naive_marshalled_times_are_read_as_utc():
    # Books written by upstream TaskFlow carry naive UTC times.
    data = {"name": "b", "uuid": "u", "meta": None, "updated_at": None}
    data["created_at"] = {"year": 2021, "month": 2, "day": 3, "hour": 4, "minute": 5}
    book = models.LogBook.from_dict(data, unmarshal_time=True)
    assert book.created_at == datetime(2021, 2, 3, 4, 5, tzinfo=UTC)
    assert book.meta == {}


# -- type registry --------------------------------------------------------------------------


def test_atom_type_names():
    assert models.ATOM_TYPES == ["RETRY_DETAIL", "TASK_DETAIL"]
    assert models.atom_detail_class("TASK_DETAIL") is models.TaskDetail
    assert models.atom_detail_class("RETRY_DETAIL") is models.RetryDetail
    assert models.atom_detail_type(models.TaskDetail("a", "b")) == "TASK_DETAIL"
    assert models.atom_detail_type(models.RetryDetail("a", "b")) == "RETRY_DETAIL"
    with pytest.raises(TypeError, match="Unknown atom type 'X'"):
        models.atom_detail_class("X")
    with pytest.raises(TypeError, match="Unknown atom"):
        models.atom_detail_type(object())  # type: ignore[arg-type]


def test_subclass_type_names_follow_their_base():
    class MyTask(models.TaskDetail):
        __slots__ = ()

    assert models.atom_detail_type(MyTask("a", "b")) == "TASK_DETAIL"


# -- pformat / pickle -----------------------------------------------------------------------


def test_pformat_layout():
    book = models.LogBook("book", "lu")
    book.meta = {"b": 1, "a": "x"}
    book.created_at = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    fd = models.FlowDetail("flow", "fu")
    fd.state = states.RUNNING
    book.add(fd)
    book.updated_at = datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC)
    ad = models.TaskDetail("task", "tu")
    ad.put(states.FAILURE, _failure())
    ad.version = "1.0"
    ad.meta = {"m": 1}
    fd.add(ad)
    assert book.pformat() == "\n".join(
        [
            "LogBook: 'book'",
            " - uuid = lu",
            " - metadata:",
            "   + b = 1",
            "   + a = x",
            " - created_at = 2024-01-02T03:04:05.000006",
            " - updated_at = 2024-01-02T03:04:06",
            " FlowDetail: 'flow'",
            "  - uuid = fu",
            "  - state = RUNNING",
            "  TaskDetail: 'task'",
            "   - uuid = tu",
            "   - state = FAILURE",
            "   - version = 1.0",
            "   - results = None",
            "   - failure = True",
            "   - metadata:",
            "     + m = 1",
        ]
    )
    assert fd.pformat(indent=2, linesep="|").startswith("  FlowDetail: 'flow'|   - uuid = fu|")


@pytest.mark.parametrize("clone", [pickle.loads, copy.deepcopy], ids=["pickle", "deepcopy"])
def test_models_pickle_and_deepcopy(clone):
    book = models.LogBook("b", "bu")
    fd = models.FlowDetail("f", "fu")
    book.add(fd)
    task = _filled_task()
    retry = models.RetryDetail("r", "ru")
    retry.put(states.SUCCESS, (1, 2))
    retry.results[-1][1]["task"] = _failure()
    fd.add(task)
    fd.add(retry)
    back = pickle.loads(pickle.dumps(book)) if clone is pickle.loads else copy.deepcopy(book)
    back_fd = back.find("fu")
    assert back is not book
    assert back.created_at == book.created_at
    _assert_same_atom(back_fd.find("t-1"), task)
    back_retry = back_fd.find("ru")
    assert back_retry.results[0][0] == (1, 2)
    assert back_retry.results[0][1]["task"].matches(retry.results[0][1]["task"])
