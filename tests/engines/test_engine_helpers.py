"""taskflow.engines helpers: load/run arguments, factories and loading from details (§5.1)."""

from __future__ import annotations

import threading

import pytest

from taskflow import engines, states, task
from taskflow import exceptions as exc
from taskflow.engines.action_engine.engine import SerialActionEngine
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf
from taskflow.persistence import backends, models
from taskflow.utils import persistence_utils
from tests.helpers import services
from tests.helpers.engine_tasks import Recorder, Work, make_flow


def test_load_creates_flow_detail_in_book(memory_backend):
    book = models.LogBook("book")
    engine = engines.load(lf.Flow("f").add(Work("a")), book=book, backend=memory_backend)
    engine.run()
    (flow_detail,) = list(book)
    assert flow_detail.name == "f"
    saved = memory_backend.get_connection().get_logbook(book.uuid)
    assert [fd.uuid for fd in saved] == [flow_detail.uuid]
    stored = memory_backend.get_connection().get_flow_details(flow_detail.uuid)
    assert stored.state == states.SUCCESS


def test_load_accepts_backend_configuration():
    engine = engines.load(
        lf.Flow("f").add(Work("a", value=1, provides="x")),
        backend={"connection": "memory://"},
        book=models.LogBook("b"),
    )
    engine.run()
    assert engine.storage.fetch_all() == {"x": 1}


@pytest.fixture(params=["sqlite", "dir"])
def fresh_store_uri(request, tmp_path):
    """The URI of a store nothing has used yet: no schema, no directories."""
    if request.param == "sqlite":
        services.need_module("sqlalchemy", "database")
        return f"sqlite:///{tmp_path / 'flows.db'}"
    return f"dir://{tmp_path / 'flows'}"


@pytest.mark.parametrize("as_dict", [False, True], ids=["uri", "conf"])
def test_backend_configuration_is_fetched_and_upgraded(fresh_store_uri, as_dict):
    # A URI (or conf dict) works as backends.backend(uri) does: the schema is created first,
    # so a fresh database is usable at once.
    conf = {"connection": fresh_store_uri} if as_dict else fresh_store_uri
    book = models.LogBook("b")
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
    assert engines.run(flow, book=book, backend=conf) == {"x": 1}
    engine = engines.load(lf.Flow("g").add(Work("a", value=2, provides="y")), backend=conf)
    engine.run()
    with backends.backend(fresh_store_uri) as backend, backend.get_connection() as conn:
        stored = {fd.name: fd.state for lb in conn.get_logbooks() for fd in lb}
    assert stored == {"f": states.SUCCESS, "g": states.SUCCESS}


def test_backend_memory_uri_runs():
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
    assert engines.run(flow, backend="memory://") == {"x": 1}
    engine = engines.load(flow, backend="memory://")
    engine.run()
    assert engine.storage.fetch_all() == {"x": 1}


def test_run_closes_the_backend_it_made_from_a_uri(monkeypatch):
    made = []
    fetch = backends.fetch

    def spying_fetch(conf, *args, **kwargs):
        backend = fetch(conf, *args, **kwargs)
        made.append(backend)
        monkeypatch.setattr(backend, "close", lambda: made.append("closed"))
        return backend

    monkeypatch.setattr(backends, "fetch", spying_fetch)
    engines.run(lf.Flow("f").add(Work("a")), backend="memory://")
    assert made[1:] == ["closed"]


def test_load_uses_given_flow_detail():
    _book, flow_detail = persistence_utils.temporary_flow_detail()
    engine = engines.load(lf.Flow("f").add(Work("a")), flow_detail=flow_detail)
    assert engine.storage.flow_uuid == flow_detail.uuid
    engine.run()
    assert flow_detail.state == states.SUCCESS
    assert [ad.name for ad in flow_detail] == ["a"]


def test_unknown_options_are_ignored():
    flow = lf.Flow("f").add(Work("a", value=1, provides="x"))
    assert engines.run(flow, some_unknown_option=True) == {"x": 1}


def test_options_are_exposed():
    engine = engines.load(lf.Flow("f").add(Work("a")), never_resolve=True, custom=3)
    assert engine.options["never_resolve"] is True
    assert engine.options["custom"] == 3


def test_load_from_factory_records_factory(memory_backend):
    engine = engines.load_from_factory(
        make_flow,
        factory_args=["f"],
        factory_kwargs={"count": 2},
        store={"x": 3},
        backend=memory_backend,
        book=models.LogBook("b"),
    )
    engine.run()
    assert engine.storage.fetch_all() == {"x": 3, "r0": 0, "r1": 1}
    stored = memory_backend.get_connection().get_flow_details(engine.storage.flow_uuid)
    assert stored.meta["factory"] == {
        "name": "tests.helpers.engine_tasks.make_flow",
        "args": ["f"],
        "kwargs": {"count": 2},
    }


def test_load_from_factory_by_name():
    engine = engines.load_from_factory(
        "tests.helpers.engine_tasks.make_flow", factory_args=["g"], store={"x": 1}
    )
    engine.run()
    assert engine.storage.fetch_all() == {"x": 1, "r0": 0}


def test_factory_must_be_reimportable():
    with pytest.raises(ValueError, match="reimportable"):
        engines.load_from_factory(lambda: make_flow("z"))


def test_flow_and_engine_from_detail(memory_backend):
    engine = engines.load_from_factory(
        make_flow,
        factory_args=["f"],
        factory_kwargs={"count": 2},
        store={"x": 3},
        backend=memory_backend,
        book=models.LogBook("b"),
    )
    stored = memory_backend.get_connection().get_flow_details(engine.storage.flow_uuid)
    flow = engines.flow_from_detail(stored)
    assert flow.name == "f"
    assert len(flow) == 2
    resumed = engines.load_from_detail(stored, backend=memory_backend)
    rec = Recorder(resumed)
    resumed.run()
    assert rec.names_in(states.RUNNING) == ["w0", "w1"]
    assert resumed.storage.fetch_all() == {"x": 3, "r0": 0, "r1": 1}


def test_factory_and_detail_loaders_take_engine_none(memory_backend):
    # engine=None is the default engine for every loader, as upstream TaskFlow has it.
    engine = engines.load_from_factory(
        make_flow, factory_args=["f"], store={"x": 1}, backend=memory_backend, engine=None
    )
    assert isinstance(engine, SerialActionEngine)
    stored = memory_backend.get_connection().get_flow_details(engine.storage.flow_uuid)
    resumed = engines.load_from_detail(stored, backend=memory_backend, engine=None)
    assert isinstance(resumed, SerialActionEngine)
    resumed.run()
    assert resumed.storage.fetch_all() == {"x": 1, "r0": 0}


def test_flow_from_detail_errors():
    _book, flow_detail = persistence_utils.temporary_flow_detail()
    with pytest.raises(ValueError) as info:
        engines.flow_from_detail(flow_detail)
    # Upstream's wording, final period included.
    assert str(info.value) == (
        f"Cannot reconstruct flow {flow_detail.name} {flow_detail.uuid}:"
        " no factory information saved."
    )
    flow_detail.meta["factory"] = {
        "name": "tests.helpers.engine_tasks.nope",
        "args": [],
        "kwargs": {},
    }
    with pytest.raises(ImportError):
        engines.flow_from_detail(flow_detail)


def test_save_factory_details():
    _book, flow_detail = persistence_utils.temporary_flow_detail()
    engines.save_factory_details(flow_detail, make_flow, ["q"], {"count": 1})
    assert flow_detail.meta["factory"] == {
        "name": "tests.helpers.engine_tasks.make_flow",
        "args": ["q"],
        "kwargs": {"count": 1},
    }
    with pytest.raises(ValueError):
        engines.save_factory_details(flow_detail, lambda: None, [], {})


class _Rendezvous(task.Task):
    """Only completes if its partner runs at the same time."""

    def __init__(self, name, barrier):
        super().__init__(name=name)
        self.barrier = barrier

    def execute(self):
        self.barrier.wait()
        return self.name


@pytest.mark.parametrize("executor", ["threads", "pool"])
def test_parallel_engine_runs_atoms_concurrently(executor):
    import concurrent.futures as cf

    barrier = threading.Barrier(2, timeout=5)
    flow = uf.Flow("u").add(_Rendezvous("a", barrier), _Rendezvous("b", barrier))
    if executor == "pool":
        with cf.ThreadPoolExecutor(2) as pool:
            engine = engines.load(flow, engine="parallel", executor=pool)
            engine.run()
    else:
        engine = engines.load(flow, engine="parallel", executor=executor, max_workers=2)
        engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert not barrier.broken


@pytest.mark.parametrize(
    "thing", [Work, "a string", 42, None, object()], ids=["atom class", "str", "int", "None", "obj"]
)
def test_load_accepts_anything_and_compile_refuses_it(thing, memory_backend):
    # As upstream: load() does not look at what it is given (its flow detail is named after
    # its uuid); compiling it is what fails, with a TypeError naming the value.
    for backend in (None, memory_backend):
        engine = engines.load(thing, backend=backend)
        flow_detail = engine.storage._flowdetail
        assert flow_detail.name == flow_detail.uuid
        with pytest.raises(TypeError, match="requested to compile") as info:
            engine.compile()
        assert f"'{thing}'" in str(info.value)
        with pytest.raises(exc.InvalidState):
            engine.prepare()
        with pytest.raises(TypeError, match="requested to compile"):
            engine.run()


def test_a_lone_task_loads_and_runs():
    engine = engines.load(Work("alone", value=3, provides="x"))
    rec = Recorder(engine)
    engine.run()
    assert engine.storage._flowdetail.name == "alone"
    assert rec.atom_events() == [
        ("alone", states.RUNNING, states.PENDING),
        ("alone", states.SUCCESS, states.RUNNING),
    ]
    assert engines.run(Work("alone", value=4, provides="x")) == {"x": 4}
