"""taskflow.storage.Storage used directly (spec §7), on a memory backend."""

from __future__ import annotations

import pytest

from taskflow import exceptions as exc
from taskflow import retry, states, task
from taskflow import storage as storage_module
from taskflow.persistence import backends, models
from taskflow.storage import Storage
from taskflow.types.failure import Failure
from taskflow.utils import persistence_utils


class Noop(task.Task):
    def execute(self, *args, **kwargs):
        return None


def failure(message="bad"):
    try:
        raise RuntimeError(message)
    except RuntimeError:
        return Failure()


@pytest.fixture
def backend():
    return backends.fetch({"connection": "memory://"})


@pytest.fixture
def flow_detail(backend):
    _book, fd = persistence_utils.temporary_flow_detail(backend)
    return fd


@pytest.fixture
def storage(flow_detail, backend):
    return Storage(flow_detail, backend=backend)


def saved_detail(backend, flow_detail):
    return backend.get_connection().get_flow_details(flow_detail.uuid)


def saved_atom(backend, flow_detail, name):
    return {ad.name: ad for ad in saved_detail(backend, flow_detail)}[name]


# -- identity and atoms ----------------------------------------------------------------------


def test_properties(storage, flow_detail, backend):
    assert storage.flow_name == flow_detail.name
    assert storage.flow_uuid == flow_detail.uuid
    assert storage.injector_name == "_TaskFlow_INJECTOR"
    assert storage.backend is backend
    assert storage.get_flow_state() == states.PENDING


def test_storage_without_backend_uses_a_private_one():
    storage = Storage(models.FlowDetail("f", uuid="u-1"))
    assert storage.backend is not None
    storage.ensure_atom(Noop("a", provides="x"))
    storage.save("a", 3)
    assert storage.fetch("x") == 3


def test_ensure_atom_is_idempotent(storage):
    uuid = storage.ensure_atom(Noop("a"))
    assert storage.ensure_atom(Noop("a")) == uuid
    assert storage.get_atom_uuid("a") == uuid
    assert storage.get_atom_state("a") == states.PENDING
    assert storage.get_atom_intention("a") == states.EXECUTE


def test_ensure_atoms_returns_uuids(storage):
    uuids = storage.ensure_atoms([Noop("a"), retry.Times(2, name="r")])
    assert uuids == [storage.get_atom_uuid("a"), storage.get_atom_uuid("r")]
    assert len(set(uuids)) == 2


def test_ensure_atom_creates_detail_types(storage, backend, flow_detail):
    storage.ensure_atom(Noop("a"))
    storage.ensure_atom(retry.Times(2, name="r"))
    saved = {ad.name: ad for ad in saved_detail(backend, flow_detail)}
    assert isinstance(saved["a"], models.TaskDetail)
    assert isinstance(saved["r"], models.RetryDetail)
    assert saved["a"].state == states.PENDING


def test_ensure_atom_type_clash(storage):
    storage.ensure_atom(Noop("a"))
    with pytest.raises(exc.Duplicate, match="Atom detail 'a' already exists"):
        storage.ensure_atom(retry.Times(2, name="a"))


def test_ensure_atom_rejects_non_atoms(storage):
    with pytest.raises(TypeError):
        storage.ensure_atom("zz")


def test_ensure_atom_rejects_empty_names(storage):
    with pytest.raises(ValueError):
        storage.ensure_atom(Noop(""))


def test_unknown_atom_names(storage):
    with pytest.raises(exc.NotFound):
        storage.get_atom_state("zz")
    with pytest.raises(exc.NotFound):
        storage.set_atom_state("zz", states.RUNNING)
    with pytest.raises(exc.NotFound):
        storage.get("zz")
    with pytest.raises(exc.NotFound):
        storage.get_atom_uuid("zz")


def test_states_and_intentions(storage, backend, flow_detail):
    storage.ensure_atoms([Noop("a"), retry.Times(2, name="r")])
    storage.set_atom_state("a", states.RUNNING)
    storage.set_atom_intention("r", states.REVERT)
    assert storage.get_atom_state("a") == states.RUNNING
    assert storage.get_atoms_states(["a", "r"]) == {
        "a": (states.RUNNING, states.EXECUTE),
        "r": (states.PENDING, states.REVERT),
    }
    assert saved_atom(backend, flow_detail, "a").state == states.RUNNING
    assert saved_atom(backend, flow_detail, "r").intention == states.REVERT


def test_update_atom_metadata(storage, backend, flow_detail):
    storage.ensure_atom(Noop("a"))
    storage.update_atom_metadata("a", {"m": 1})
    assert saved_atom(backend, flow_detail, "a").meta["m"] == 1


# -- results ---------------------------------------------------------------------------------


def test_save_and_get(storage, backend, flow_detail):
    storage.ensure_atom(Noop("a"))
    storage.save("a", 5)
    assert storage.get("a") == 5
    assert storage.get_execute_result("a") == 5
    assert storage.get_atom_state("a") == states.SUCCESS
    saved = saved_atom(backend, flow_detail, "a")
    assert (saved.state, saved.results) == (states.SUCCESS, 5)


def test_get_needs_a_result_state(storage):
    storage.ensure_atom(Noop("a"))
    with pytest.raises(exc.NotFound):
        storage.get("a")
    storage.save("a", 5)
    storage.set_atom_state("a", states.REVERTING)
    assert storage.get("a") == 5
    storage.save("a", "rev", states.REVERTED)
    with pytest.raises(exc.NotFound):
        storage.get("a")


def test_revert_results(storage):
    storage.ensure_atom(Noop("a"))
    with pytest.raises(exc.NotFound):
        storage.get_revert_result("a")
    storage.save("a", 5)
    with pytest.raises(exc.NotFound):
        storage.get_revert_result("a")
    storage.set_atom_state("a", states.REVERTING)
    assert storage.get_revert_result("a") is None
    storage.save("a", "rev", states.REVERTED)
    assert storage.get_revert_result("a") == "rev"
    assert storage.get_atom_state("a") == states.REVERTED


def test_execute_failures(storage):
    storage.ensure_atoms([Noop("a"), Noop("b")])
    assert not storage.has_failures()
    boom = failure()
    storage.save("b", boom, states.FAILURE)
    assert storage.get("b") is boom or storage.get("b").matches(boom)
    assert storage.get_atom_state("b") == states.FAILURE
    assert set(storage.get_execute_failures()) == {"b"}
    assert storage.get_failures() == storage.get_execute_failures()
    assert storage.get_revert_failures() == {}
    assert storage.has_failures()


def test_revert_failures(storage):
    storage.ensure_atom(Noop("a"))
    storage.save("a", 1)
    storage.save("a", failure("revert bad"), states.REVERT_FAILURE)
    result = storage.get_revert_result("a")
    assert isinstance(result, Failure)
    assert result.exception_str == "revert bad"
    assert storage.has_failures()


def test_reset_clears_results(storage):
    storage.ensure_atom(Noop("a"))
    storage.save("a", failure(), states.REVERT_FAILURE)
    storage.reset("a")
    assert storage.get_atom_state("a") == states.PENDING
    assert storage.get_revert_failures() == {}
    with pytest.raises(exc.NotFound):
        storage.get("a")


def test_reset_keeps_intention(storage):
    storage.ensure_atom(Noop("a"))
    storage.set_atom_intention("a", states.REVERT)
    storage.reset("a")
    assert storage.get_atom_intention("a") == states.REVERT


def test_task_progress(storage, backend, flow_detail):
    storage.ensure_atoms([Noop("a"), Noop("b")])
    assert storage.get_task_progress("b") == 0.0
    assert storage.get_task_progress_details("b") is None
    storage.set_task_progress("a", 0.5)
    assert storage.get_task_progress("a") == 0.5
    assert storage.get_task_progress_details("a") is None
    storage.set_task_progress("a", 0.7, {"k": 1})
    assert storage.get_task_progress("a") == 0.7
    assert storage.get_task_progress_details("a") == {"at_progress": 0.7, "details": {"k": 1}}
    assert saved_atom(backend, flow_detail, "a").meta["progress"] == 0.7


def test_meta_key_constants_are_the_keys_storage_writes(storage, backend, flow_detail):
    storage.ensure_atoms([Noop("a")])
    storage.set_task_progress("a", 0.5, {"k": 1})
    storage.inject_atom_args("a", {"x": 1}, transient=False)
    meta = saved_atom(backend, flow_detail, "a").meta
    assert meta[storage_module.META_PROGRESS] == 0.5
    assert meta[storage_module.META_PROGRESS_DETAILS]["details"] == {"k": 1}
    assert meta[storage_module.META_INJECTED] == {"x": 1}


def test_result_state_and_retry_constants():
    assert storage_module.STATES_WITH_RESULTS == (
        states.FAILURE,
        states.REVERTED,
        states.REVERTING,
        states.REVERT_FAILURE,
        states.SUCCESS,
    )
    assert (storage_module.RETRY_ATTEMPTS, storage_module.RETRY_WAIT_TIMEOUT) == (3, 5)


# -- injection and lookups -------------------------------------------------------------------


def test_inject_and_fetch(storage, backend, flow_detail):
    storage.inject({"x": 1, "y": 2})
    assert storage.fetch("x") == 1
    assert storage.fetch_all() == {"x": 1, "y": 2}
    injector = saved_atom(backend, flow_detail, "_TaskFlow_INJECTOR")
    assert injector.state == states.SUCCESS
    assert injector.results == {"x": 1, "y": 2}


def test_inject_merges(storage):
    storage.inject({"x": 1})
    storage.inject({"y": 2})
    assert storage.fetch_all() == {"x": 1, "y": 2}


def test_transient_injection_is_not_persisted(storage, backend, flow_detail):
    storage.inject({"q": 1}, transient=True)
    assert storage.fetch("q") == 1
    assert storage.fetch_all() == {"q": 1}
    assert [ad.name for ad in saved_detail(backend, flow_detail)] == []


def test_fetch_unknown_name(storage):
    with pytest.raises(exc.NotFound):
        storage.fetch("nope")


def test_fetch_before_provider_finished(storage):
    storage.ensure_atom(Noop("a", provides="x"))
    with pytest.raises(exc.NotFound):
        storage.fetch("x")
    assert storage.fetch_all() == {}


def test_fetch_all_lists_several_providers(storage):
    storage.ensure_atoms([Noop("a", provides="x"), Noop("b", provides="x")])
    storage.save("a", 5)
    storage.save("b", 6)
    assert storage.fetch_all() == {"x": [5, 6]}
    assert storage.fetch("x", many_handler=lambda values: values) == [5, 6]
    storage.inject({"x": 1, "y": 2})
    assert storage.fetch("x") == 1
    assert storage.fetch_all() == {"x": [1, 5, 6], "y": 2}
    assert storage.fetch("x", many_handler=lambda values: values) == [1, 5, 6]


def test_fetch_fails_while_any_provider_lacks_a_result(storage):
    storage.ensure_atoms([Noop("a", provides="x"), Noop("b", provides="x")])
    storage.save("a", 5)
    with pytest.raises(exc.NotFound):
        storage.fetch("x")
    assert storage.fetch_all() == {}


def test_fetch_all_includes_failed_providers(storage):
    storage.ensure_atom(Noop("p", provides="v"))
    boom = failure()
    storage.save("p", boom, states.FAILURE)
    value = storage.fetch("v")
    assert isinstance(value, Failure)
    assert value.exception_str == "bad"
    assert list(storage.fetch_all()) == ["v"]


def test_fetch_with_short_result(storage):
    storage.ensure_atom(Noop("p2", provides=("m", "n")))
    storage.save("p2", (1,))
    assert storage.fetch("m") == 1
    with pytest.raises(exc.NotFound):
        storage.fetch("n")
    assert storage.fetch_all() == {"m": 1}


def test_ignored_provider_is_skipped(storage):
    storage.ensure_atom(Noop("p", provides="m"))
    storage.save("p", 1)
    storage.set_atom_state("p", states.IGNORE)
    with pytest.raises(exc.NotFound):
        storage.fetch("m")
    assert storage.fetch_all() == {}


def test_fetch_mapped_args(storage):
    storage.inject({"x": 1, "y": 2})
    assert storage.fetch_mapped_args({"p": "y", "q": "x"}) == {"p": 2, "q": 1}
    with pytest.raises(exc.NotFound):
        storage.fetch_mapped_args({"p": "y", "q": "z"})


def test_fetch_mapped_args_skips_optional_arguments(storage):
    storage.inject({"y": 2})
    assert storage.fetch_mapped_args({"p": "y", "q": "z"}, optional_args=["q"]) == {"p": 2}
    assert storage.fetch_mapped_args({"q": "z"}, optional_args=["q"]) == {}


def test_atom_injections_come_first(storage, backend, flow_detail):
    storage.ensure_atoms([Noop("a"), Noop("b")])
    storage.inject({"y": 2})
    storage.inject_atom_args("a", {"y": 99})
    assert storage.fetch_mapped_args({"p": "y"}, atom_name="a") == {"p": 99}
    assert storage.fetch_mapped_args({"p": "y"}, atom_name="b") == {"p": 2}
    assert storage.fetch_mapped_args({"p": "y"}) == {"p": 2}
    assert "injected" not in saved_atom(backend, flow_detail, "a").meta
    storage.inject_atom_args("b", {"y": 77}, transient=False)
    assert storage.fetch_mapped_args({"p": "y"}, atom_name="b") == {"p": 77}
    assert saved_atom(backend, flow_detail, "b").meta["injected"] == {"y": 77}


def test_inject_atom_args_unknown_atom(storage):
    with pytest.raises(exc.NotFound):
        storage.inject_atom_args("nope", {"y": 1})


def test_reopened_storage_sees_persisted_injections(storage, backend, flow_detail):
    storage.inject({"x": 5})
    reopened = Storage(saved_detail(backend, flow_detail), backend=backend)
    assert reopened.fetch("x") == 5
    assert reopened.fetch_all() == {"x": 5}


# -- retries ---------------------------------------------------------------------------------


def test_retry_history(storage):
    storage.ensure_atoms([retry.Times(2, name="r", provides="rv"), Noop("b")])
    history = storage.get_retry_history("r")
    assert len(history) == 0
    assert history.failure is None
    storage.save("r", 1)
    assert list(storage.get_retry_history("r")) == [(1, {})]
    assert storage.fetch("rv") == 1
    boom = failure()
    storage.save_retry_failure("r", "b", boom)
    assert [(v, sorted(f)) for v, f in storage.get_retry_history("r")] == [(1, ["b"])]
    storage.save("r", 2)
    history = storage.get_retry_history("r")
    assert [(v, sorted(f)) for v, f in history] == [(1, ["b"]), (2, [])]
    assert history[0][1]["b"].exception_str == "bad"
    assert storage.fetch("rv") == 2
    assert [(name, len(h)) for name, h in storage.get_retry_histories()] == [("r", 2)]


def test_retry_execute_result_is_its_history(storage):
    storage.ensure_atom(retry.Times(2, name="r"))
    storage.save("r", 1)
    assert storage.get("r") == [(1, {})]


def test_cleanup_retry_history(storage):
    storage.ensure_atom(retry.Times(2, name="r"))
    storage.save("r", 1)
    storage.save("r", 2)
    storage.cleanup_retry_history("r", states.REVERTED)
    assert list(storage.get_retry_history("r")) == []
    assert storage.get_atom_state("r") == states.REVERTED


def test_retry_history_of_a_task(storage):
    storage.ensure_atom(Noop("a"))
    with pytest.raises(TypeError):
        storage.get_retry_history("a")


# -- flow ------------------------------------------------------------------------------------


def test_change_flow_state(storage, backend, flow_detail):
    assert storage.change_flow_state(states.RUNNING) == (True, states.PENDING)
    assert storage.get_flow_state() == states.RUNNING
    assert storage.change_flow_state(states.RUNNING) == (False, states.RUNNING)
    with pytest.raises(exc.InvalidState):
        storage.change_flow_state(states.SUSPENDED)
    assert storage.change_flow_state(states.SUCCESS) == (True, states.RUNNING)
    assert saved_detail(backend, flow_detail).state == states.SUCCESS


def test_set_flow_state(storage, backend, flow_detail):
    storage.set_flow_state(states.RUNNING)
    assert storage.get_flow_state() == states.RUNNING
    assert saved_detail(backend, flow_detail).state == states.RUNNING


def test_update_flow_metadata(storage, backend, flow_detail):
    storage.update_flow_metadata({"k": "v"})
    assert storage.flow_meta["k"] == "v"
    assert saved_detail(backend, flow_detail).meta["k"] == "v"
