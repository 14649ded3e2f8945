"""Progress and its details in a task detail's ``meta`` (issue 8).

Shapes observed on upstream taskflow 6.5, black-box, through a memory backend:

* fresh detail: ``meta == {}`` (no ``progress_details`` key), details None;
* ``set_task_progress(name, p)``: ``progress`` = p, earlier details kept as they were;
* ``set_task_progress(name, p, d)``, ``d`` not empty: ``progress_details`` =
  ``{'at_progress': p, 'details': d}``;
* ``set_task_progress(name, p, {})``: ``progress_details`` = None (erased); an engine passes
  a progress event's other keys as ``d``, so a bare ``update_progress`` erases the details;
* ``reset(name)``: ``meta`` untouched.
"""

from __future__ import annotations

import pytest

from taskflow import states, task
from taskflow.persistence import backends
from taskflow.storage import META_PROGRESS, META_PROGRESS_DETAILS, Storage
from taskflow.utils import persistence_utils


class Noop(task.Task):
    def execute(self) -> None:
        return None


@pytest.fixture
def backend():
    return backends.fetch({"connection": "memory://"})


@pytest.fixture
def storage(backend):
    _book, flow_detail = persistence_utils.temporary_flow_detail(backend)
    storage = Storage(flow_detail, backend=backend)
    storage.ensure_atom(Noop("t"))
    return storage


def stored_meta(backend, storage):
    with backend.get_connection() as conn:
        (ad,) = conn.get_flow_details(storage.flow_uuid)
    return ad.meta


def test_fresh_detail_has_no_progress_details(storage, backend):
    assert stored_meta(backend, storage) == {}
    assert not stored_meta(backend, storage).get(META_PROGRESS_DETAILS)
    assert storage.get_task_progress("t") == 0.0
    assert storage.get_task_progress_details("t") is None


def test_progress_without_details_before_any(storage, backend):
    storage.set_task_progress("t", 0.5)
    assert stored_meta(backend, storage) == {META_PROGRESS: 0.5}
    assert storage.get_task_progress_details("t") is None


def test_progress_with_details(storage, backend):
    storage.set_task_progress("t", 0.6, {"a": 1})
    assert stored_meta(backend, storage) == {
        META_PROGRESS: 0.6,
        META_PROGRESS_DETAILS: {"at_progress": 0.6, "details": {"a": 1}},
    }
    assert storage.get_task_progress("t") == 0.6
    assert storage.get_task_progress_details("t") == {"at_progress": 0.6, "details": {"a": 1}}


def test_progress_without_details_keeps_earlier_ones(storage, backend):
    storage.set_task_progress("t", 0.6, {"a": 1})
    storage.set_task_progress("t", 0.7)
    assert stored_meta(backend, storage) == {
        META_PROGRESS: 0.7,
        META_PROGRESS_DETAILS: {"at_progress": 0.6, "details": {"a": 1}},
    }
    assert storage.get_task_progress_details("t") == {"at_progress": 0.6, "details": {"a": 1}}


def test_progress_with_empty_details_erases_them(storage, backend):
    storage.set_task_progress("t", 0.6, {"a": 1})
    storage.set_task_progress("t", 0.8, {})
    assert stored_meta(backend, storage) == {META_PROGRESS: 0.8, META_PROGRESS_DETAILS: None}
    assert storage.get_task_progress("t") == 0.8
    assert storage.get_task_progress_details("t") is None
    # Details reported again afterwards are recorded as usual.
    storage.set_task_progress("t", 0.9, {"b": 2})
    assert storage.get_task_progress_details("t") == {"at_progress": 0.9, "details": {"b": 2}}


def test_reset_leaves_progress_alone(storage, backend):
    storage.set_task_progress("t", 0.85, {"b": 2})
    storage.save("t", 1)
    storage.reset("t")
    assert storage.get_atom_state("t") == states.PENDING
    assert stored_meta(backend, storage) == {
        META_PROGRESS: 0.85,
        META_PROGRESS_DETAILS: {"at_progress": 0.85, "details": {"b": 2}},
    }
