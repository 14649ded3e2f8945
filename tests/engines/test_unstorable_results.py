"""A result no backend can store fails its task and reverts the flow, on every backend.

Each backend checks a value before writing anything: NaN and infinities, integers longer
than JSON readers parse, values that contain themselves and values over the backend's
``max_value_bytes`` raise ``UnstorableValue``. The engine then records the task as FAILURE
(with that error, which its record keeps), reverts it and what ran before it, and ends
REVERTED: the resume loop of the README skips the flow instead of running the side effect
again and again (the task used to stay RUNNING, so every resume ran it once more).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from taskflow import engines, states, task
from taskflow._serialization import UnstorableValue
from taskflow.patterns import linear_flow as lf
from taskflow.persistence import backends, models
from tests.helpers import services
from tests.helpers.databases import isolated_mysql, isolated_postgres, isolated_zookeeper_root
from tests.helpers.engine_tasks import Recorder

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SIDE_EFFECTS: list[str] = []
#: The size limit the "too big" case configures (a value well over it is refused).
LIMIT = 64 * 1024


def _self_containing() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


VALUES = {
    "nan": lambda: float("nan"),
    "infinity": lambda: [1.0, {"x": float("-inf")}],
    "huge-int": lambda: 10**5000,
    "cycle": _self_containing,
    "too-big": lambda: {"blob": "x" * (LIMIT + 1)},
}


class Step(task.Task):
    def execute(self) -> str:
        SIDE_EFFECTS.append(self.name)
        return self.name

    def revert(self, **kwargs: Any) -> None:
        SIDE_EFFECTS.append(f"revert {self.name}")


class Bad(task.Task):
    def __init__(self, make: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.make = make

    def execute(self) -> Any:
        SIDE_EFFECTS.append(self.name)
        return self.make()


@contextlib.contextmanager
def _conf(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if kind == "memory":
        yield {"connection": "memory://"}  # deep_copy: the default
    elif kind == "dir":
        yield {"connection": f"dir://{tmp_path / 'store'}"}
    elif kind == "sqlite":
        services.need_module("sqlalchemy", "database")
        yield {"connection": f"sqlite:///{tmp_path / 'flows.db'}"}
    elif kind == "postgresql":
        with isolated_postgres(request.getfixturevalue("postgres_url")) as url:
            yield {"connection": url}
    elif kind == "mysql":
        with isolated_mysql(request.getfixturevalue("mysql_url")) as url:
            yield {"connection": url}
    else:
        hosts = request.getfixturevalue("zk_hosts")
        with isolated_zookeeper_root(hosts) as root:
            yield {"connection": "zookeeper", "hosts": hosts, "path": root, "timeout": 10}


_MARKS = {
    "postgresql": [pytest.mark.postgres],
    "mysql": [pytest.mark.mysql],
    "zookeeper": [pytest.mark.zookeeper],
}
KINDS = ("memory", "dir", "sqlite", "postgresql", "mysql", "zookeeper")


@pytest.fixture(params=[pytest.param(k, marks=_MARKS.get(k, [])) for k in KINDS])
def backend_conf(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with _conf(request.param, request, tmp_path) as conf:
        yield conf


@pytest.mark.parametrize("case", list(VALUES))
def test_unstorable_result_fails_the_task_and_reverts(
    backend_conf: dict[str, Any], case: str
) -> None:
    SIDE_EFFECTS.clear()
    backend = backends.fetch({**backend_conf, "max_value_bytes": LIMIT})
    with backend:
        with backend.get_connection() as conn:
            conn.upgrade()

        def make_flow() -> lf.Flow:
            return lf.Flow("f").add(Step("first"), Bad(VALUES[case], name="bad"), Step("last"))

        engine = engines.load(make_flow(), backend=backend)
        recorder = Recorder(engine)
        with pytest.raises(UnstorableValue, match="'bad'"):
            engine.run()
        assert SIDE_EFFECTS == ["first", "bad", "revert first"]
        assert [state for _, state, _ in recorder.atom_events("bad")] == [
            states.RUNNING,
            states.FAILURE,
            states.REVERTING,
            states.REVERTED,
        ]

        with backend.get_connection() as conn:
            (book,) = conn.get_logbooks()
            (stored,) = book
        assert stored.state == states.REVERTED
        atoms = {ad.name: ad for ad in stored}
        assert {name: ad.state for name, ad in atoms.items()} == {
            "first": states.REVERTED,
            "bad": states.REVERTED,  # a failed task is reverted too; its failure stays
            "last": states.PENDING,
        }
        assert atoms["bad"].failure is not None
        assert atoms["bad"].failure.check(UnstorableValue)
        assert "'bad'" in atoms["bad"].failure.exception_str
        assert atoms["bad"].results is None

        # The README's resume loop: nothing is left to resume, so nothing runs again.
        with backend.get_connection() as conn:
            for book in conn.get_logbooks():
                for flow_detail in book:
                    if flow_detail.state not in (states.SUCCESS, states.REVERTED):
                        engines.load(make_flow(), flow_detail=flow_detail, backend=backend).run()
        assert SIDE_EFFECTS == ["first", "bad", "revert first"]


@pytest.mark.parametrize("case", list(VALUES))
def test_an_unstorable_value_leaves_the_stored_record_as_it_was(
    backend_conf: dict[str, Any], case: str
) -> None:
    backend = backends.fetch({**backend_conf, "max_value_bytes": LIMIT})
    with backend, backend.get_connection() as conn:
        conn.upgrade()
        book = models.LogBook("book")
        flow_detail = models.FlowDetail("flow", "fd-1")
        atom = models.TaskDetail("atom", "ad-1")
        atom.put(states.SUCCESS, {"fine": 1})
        flow_detail.add(atom)
        book.add(flow_detail)
        conn.save_logbook(book)

        atom.put(states.SUCCESS, VALUES[case]())
        with pytest.raises(UnstorableValue, match=r"^Atom 'atom' \(ad-1\): results"):
            conn.update_atom_details(atom)
        with pytest.raises(UnstorableValue, match=r"^Atom 'atom'"):
            conn.update_flow_details(flow_detail)
        flow_detail.meta["bad"] = VALUES[case]()
        with pytest.raises(UnstorableValue, match=r"^Flow detail 'flow' \(fd-1\): meta"):
            conn.update_flow_record(flow_detail)
        assert conn.get_atom_details("ad-1").results == {"fine": 1}
        assert conn.get_flow_details("fd-1").meta == {}


@pytest.mark.mysql
def test_mysql_text_columns_hold_64_kib_whatever_the_limit(mysql_url: str) -> None:
    # Upstream's schema gives revert results and atom metadata plain TEXT columns.
    with isolated_mysql(mysql_url) as url:
        backend = backends.fetch({"connection": url, "max_value_bytes": 10**7})
        with backend, backend.get_connection() as conn:
            conn.upgrade()
            flow_detail = models.FlowDetail("flow", "fd-1")
            atom = models.TaskDetail("atom", "ad-1")
            flow_detail.add(atom)
            conn.update_flow_details(flow_detail, ignore_missing=True)
            atom.put(states.SUCCESS, "x" * 100_000)  # LONGTEXT: fine
            conn.update_atom_details(atom)
            atom.put(states.REVERTED, "x" * 70_000)
            with pytest.raises(UnstorableValue, match=r"revert_results takes 70002 bytes.* 65535"):
                conn.update_atom_details(atom)
            assert conn.get_atom_details("ad-1").state == states.SUCCESS
