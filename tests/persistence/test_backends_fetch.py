"""``backends.fetch``/``backends.backend`` URI handling and plugin lookup (``_plugins``)."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest

from taskflow import _plugins
from taskflow import exceptions as exc
from taskflow.persistence import backends, base
from taskflow.persistence.backends import impl_memory


class RecordingBackend(base.Backend):
    """Remembers how it was built and what was done with it."""

    instances: ClassVar[list[RecordingBackend]] = []

    def __init__(self, conf, **kwargs):
        super().__init__(conf)
        self.conf = self._conf
        self.kwargs = kwargs
        self.events: list[str] = []
        RecordingBackend.instances.append(self)

    def get_connection(self):
        backend = self

        class _Conn:
            def upgrade(self):
                backend.events.append("upgrade")

            def close(self):
                backend.events.append("connection closed")

        return _Conn()

    def close(self):
        self.events.append("closed")


@pytest.fixture
def recorded(monkeypatch):
    """Route every plugin lookup to RecordingBackend; yields the (group, name) asked."""
    asked: list[tuple[str, str]] = []

    def fake_load(group, name):
        asked.append((group, name))
        return RecordingBackend

    monkeypatch.setattr(_plugins, "load", fake_load)
    RecordingBackend.instances.clear()
    return asked


def test_fetch_memory_by_name_uri_or_dict():
    for conf in ("memory", "memory://", {"connection": "memory://"}):
        be = backends.fetch(conf)
        assert isinstance(be, impl_memory.MemoryBackend)
    assert backends.fetch("memory")._conf == {"connection": "memory"}


def test_uri_parts_merge_into_conf(recorded):
    be = backends.fetch("mysql+pymysql://u%40x:p%3Aw@db.example:3306/some/path?a=1&a=2&b=&c=3")
    assert recorded == [("taskflow.persistence", "mysql")]
    assert be.conf == {
        "connection": "mysql+pymysql://u%40x:p%3Aw@db.example:3306/some/path?a=1&a=2&b=&c=3",
        "username": "u@x",
        "password": "p:w",
        "port": 3306,
        "hostname": "db.example:3306",
        "a": "2",
        "c": "3",
    }


def test_existing_conf_keys_win_and_conf_is_not_mutated(recorded):
    conf = {"connection": "zookeeper://h1:2181?timeout=5&path=/x", "timeout": 10}
    be = backends.fetch(conf)
    assert be.conf == {
        "connection": "zookeeper://h1:2181?timeout=5&path=/x",
        "timeout": 10,
        "path": "/x",
        "port": 2181,
        "hostname": "h1:2181",
    }
    assert conf == {"connection": "zookeeper://h1:2181?timeout=5&path=/x", "timeout": 10}
    assert recorded == [("taskflow.persistence", "zookeeper")]


def test_uri_path_is_not_merged(recorded):
    be = backends.fetch("file:///tmp/somewhere")
    assert be.conf == {"connection": "file:///tmp/somewhere"}
    assert recorded == [("taskflow.persistence", "file")]


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("sqlite://", "sqlite"),
        ("postgresql+psycopg://h/db", "postgresql"),
        ("dir", "dir"),
        ("memory+extra", "memory"),
        ("SQLITE://", "sqlite"),
    ],
)
def test_scheme_picks_the_plugin(recorded, uri, name):
    backends.fetch(uri)
    assert recorded == [("taskflow.persistence", name)]


def test_kwargs_and_namespace_are_passed_on(recorded):
    be = backends.fetch("custom://", namespace="my.group", engine="E")
    assert be.kwargs == {"engine": "E"}
    assert recorded == [("my.group", "custom")]


def test_unknown_backend_is_not_found():
    with pytest.raises(exc.NotFound) as caught:
        backends.fetch("nope://")
    assert str(caught.value) == (
        "Could not find backend nope: No 'taskflow.persistence' driver found, looking for 'nope'"
    )


def test_bad_confs():
    with pytest.raises(KeyError, match="connection"):
        backends.fetch({"path": "/tmp"})
    with pytest.raises(ValueError, match="Port"):
        backends.fetch("memory://host:notaport")


def test_backend_context_manager_upgrades_then_closes(recorded):
    with backends.backend("custom://") as be:
        assert be.events == ["upgrade", "connection closed"]
    assert be.events[-1] == "closed"


def test_backend_context_manager_closes_on_error(recorded):
    with pytest.raises(RuntimeError), backends.backend("custom://"):
        raise RuntimeError("inside")
    assert RecordingBackend.instances[0].events[-1] == "closed"


def test_memory_backend_through_context_manager():
    with backends.backend({"connection": "memory://", "deep_copy": False}) as be:
        assert isinstance(be, impl_memory.MemoryBackend)
        assert be.memory.ls("/") == ["books", "flow_details", "atom_details"]


# -- _plugins ---------------------------------------------------------------------------------


def test_plugins_builtin_table():
    assert _plugins.load("taskflow.persistence", "memory") is impl_memory.MemoryBackend
    engines = _plugins.BUILTINS["taskflow.engines"]
    assert engines["default"] == engines["serial"]
    assert engines["serial"].endswith("action_engine.engine:SerialActionEngine")
    assert engines["parallel"].endswith("action_engine.engine:ParallelActionEngine")


def test_plugins_fall_back_to_entry_points(monkeypatch):
    seen = []

    class FakeEntryPoint:
        def load(self):
            return "loaded"

    def fake_entry_points(**kwargs):
        seen.append(kwargs)
        return [FakeEntryPoint()] if kwargs["name"] == "third-party" else []

    monkeypatch.setattr(_plugins.metadata, "entry_points", fake_entry_points)
    assert _plugins.load("taskflow.persistence", "third-party") == "loaded"
    assert seen == [{"group": "taskflow.persistence", "name": "third-party"}]
    # Built-ins never consult package metadata.
    assert _plugins.load("taskflow.persistence", "memory") is impl_memory.MemoryBackend
    assert len(seen) == 1


def test_plugins_unknown_name_names_group_and_name():
    message = "No 'taskflow.jobboards' driver found, looking for 'x'"
    with pytest.raises(exc.NotFound, match=re.escape(message)):
        _plugins.load("taskflow.jobboards", "x")
