"""Memory backend specifics: the ``memory`` tree view, sharing mode, loose details, paths;
and FakeFilesystem used on its own."""

from __future__ import annotations

import re

import pytest

from taskflow import exceptions as exc
from taskflow import states
from taskflow.persistence import models
from taskflow.persistence.backends import impl_memory
from taskflow.types import tree


def _save_sample(backend: impl_memory.MemoryBackend) -> None:
    """Two books of two flows of three atoms (the middle one a retry), plus an empty book."""
    with backend.get_connection() as conn:
        for b in (1, 2):
            book = models.LogBook("book", uuid=f"b-{b}")
            for f in (1, 2):
                fd = models.FlowDetail("flow", uuid=f"f-{b}{f}")
                book.add(fd)
                for a in (1, 2, 3):
                    cls = models.RetryDetail if a == 2 else models.TaskDetail
                    fd.add(cls("t", uuid=f"a-{b}{f}{a}"))
            conn.save_logbook(book)
        conn.save_logbook(models.LogBook("book", uuid="b-3"))


@pytest.fixture(params=[True, False], ids=["deep-copy", "shared"])
def backend(request):
    be = impl_memory.MemoryBackend({"deep_copy": request.param})
    _save_sample(be)
    return be


# Captured from upstream TaskFlow 6.5.0 on the same sample.
UPSTREAM_PFORMAT = """/
|__books
|  |__b-1
|  |  |__f-11 (link to /flow_details/f-11)
|  |  |__f-12 (link to /flow_details/f-12)
|  |__b-2
|  |  |__f-21 (link to /flow_details/f-21)
|  |  |__f-22 (link to /flow_details/f-22)
|  |__b-3
|__flow_details
|  |__f-11
|  |  |__a-111 (link to /atom_details/a-111)
|  |  |__a-112 (link to /atom_details/a-112)
|  |  |__a-113 (link to /atom_details/a-113)
|  |__f-12
|  |  |__a-121 (link to /atom_details/a-121)
|  |  |__a-122 (link to /atom_details/a-122)
|  |  |__a-123 (link to /atom_details/a-123)
|  |__f-21
|  |  |__a-211 (link to /atom_details/a-211)
|  |  |__a-212 (link to /atom_details/a-212)
|  |  |__a-213 (link to /atom_details/a-213)
|  |__f-22
|     |__a-221 (link to /atom_details/a-221)
|     |__a-222 (link to /atom_details/a-222)
|     |__a-223 (link to /atom_details/a-223)
|__atom_details
   |__a-111
   |__a-112
   |__a-113
   |__a-121
   |__a-122
   |__a-123
   |__a-211
   |__a-212
   |__a-213
   |__a-221
   |__a-222
   |__a-223"""

UPSTREAM_LS_R_ROOT = [
    "/atom_details",
    "/flow_details",
    "/books",
    "/atom_details/a-223",
    "/atom_details/a-222",
    "/atom_details/a-221",
    "/atom_details/a-213",
    "/atom_details/a-212",
    "/atom_details/a-211",
    "/atom_details/a-123",
    "/atom_details/a-122",
    "/atom_details/a-121",
    "/atom_details/a-113",
    "/atom_details/a-112",
    "/atom_details/a-111",
    "/flow_details/f-22",
    "/flow_details/f-21",
    "/flow_details/f-12",
    "/flow_details/f-11",
    "/books/b-3",
    "/books/b-2",
    "/books/b-1",
    "/flow_details/f-22/a-223",
    "/flow_details/f-22/a-222",
    "/flow_details/f-22/a-221",
    "/flow_details/f-21/a-213",
    "/flow_details/f-21/a-212",
    "/flow_details/f-21/a-211",
    "/flow_details/f-12/a-123",
    "/flow_details/f-12/a-122",
    "/flow_details/f-12/a-121",
    "/flow_details/f-11/a-113",
    "/flow_details/f-11/a-112",
    "/flow_details/f-11/a-111",
    "/books/b-2/f-22",
    "/books/b-2/f-21",
    "/books/b-1/f-12",
    "/books/b-1/f-11",
]


# -- the tree view --------------------------------------------------------------------------


def test_pformat_matches_upstream(backend):
    assert backend.memory.pformat() == UPSTREAM_PFORMAT


def test_ls_r_matches_upstream(backend):
    memory = backend.memory
    assert memory.ls_r("/", absolute=True) == UPSTREAM_LS_R_ROOT
    assert memory.ls_r("/") == [p[1:] for p in UPSTREAM_LS_R_ROOT]
    assert memory.ls_r("/books") == [
        "b-3",
        "b-2",
        "b-1",
        "b-2/f-22",
        "b-2/f-21",
        "b-1/f-12",
        "b-1/f-11",
    ]
    assert memory.ls_r("/flow_details/f-11", absolute=True) == [
        "/flow_details/f-11/a-113",
        "/flow_details/f-11/a-112",
        "/flow_details/f-11/a-111",
    ]
    assert memory.ls_r("/atom_details/a-111") == []


def test_ls_lists_children(backend):
    memory = backend.memory
    assert memory.root_path == "/"
    assert memory.ls("/") == ["books", "flow_details", "atom_details"]
    assert memory.ls("/books") == ["b-1", "b-2", "b-3"]
    assert memory.ls("/books/b-1") == ["f-11", "f-12"]
    assert memory.ls("/books/b-1/f-11") == []  # a link has no children of its own
    assert memory.ls("/flow_details/f-21") == ["a-211", "a-212", "a-213"]
    assert memory.ls("/books/./b-1/") == ["f-11", "f-12"]
    with pytest.raises(exc.NotFound, match="Path '/nope' not found"):
        memory.ls("/nope")


def test_values_are_what_a_path_store_would_hold(backend):
    memory = backend.memory
    flow = {"name": "flow", "meta": {}, "state": None, "uuid": "f-11"}
    assert memory["/flow_details/f-11"] == flow
    assert memory["/books/b-1/f-11"] == flow  # links read as their target
    atom = memory["/atom_details/a-112"]
    assert atom["type"] == "RETRY_DETAIL"
    assert atom["atom"]["uuid"] == "a-112"
    assert atom["atom"]["results"] == []
    assert memory["/flow_details/f-11/a-111"]["type"] == "TASK_DETAIL"
    book = memory["/books/b-1"]
    assert (book["name"], book["uuid"]) == ("book", "b-1")
    assert set(book["created_at"]) >= {"year", "month", "day", "hour", "microsecond"}
    assert memory["/"] is None
    assert memory["/books"] is None


@pytest.mark.parametrize(
    "path", ["/nope", "/books/b-9", "/books/b-1/f-99", "/books/b-1/f-11/x", "/atom_details/a-1/x"]
)
def test_missing_paths(backend, path):
    with pytest.raises(exc.NotFound, match="not found"):
        backend.memory[path]
    assert backend.memory.get(path) is None
    assert backend.memory.get(path, 5) == 5


@pytest.mark.parametrize(("path", "message"), [("", "not empty"), ("books", "start with /")])
def test_relative_or_empty_paths_are_refused(backend, path, message):
    with pytest.raises(ValueError, match=message):
        backend.memory.get(path)


def test_tree_follows_destroy_and_clear(backend):
    with backend.get_connection() as conn:
        conn.destroy_logbook("b-1")
        assert backend.memory.ls("/books") == ["b-2", "b-3"]
        assert backend.memory.ls("/flow_details") == ["f-21", "f-22"]
        assert "a-111" not in backend.memory.ls("/atom_details")
        conn.clear_all()
    assert backend.memory.pformat() == "/\n|__books\n|__flow_details\n|__atom_details"


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "deep"),
    [
        (None, True),
        ({}, True),
        ({"deep_copy": False}, False),
        ({"deep_copy": "false"}, False),
        ({"deep_copy": "0"}, False),
        ({"deep_copy": "true"}, True),
    ],
)
def test_deep_copy_option(conf, deep):
    be = impl_memory.MemoryBackend(conf)
    book = models.LogBook("b")
    with be.get_connection() as conn:
        conn.save_logbook(book)
        assert (conn.get_logbook(book.uuid) is book) is (not deep)


def test_close_keeps_contents():
    be = impl_memory.MemoryBackend()
    book = models.LogBook("b")
    with be:
        be.get_connection().save_logbook(book)
    assert be.get_connection().get_logbook(book.uuid).uuid == book.uuid


# -- sharing mode (deep_copy=False), the engine's hot path ----------------------------------


def _shared_with_flow():
    be = impl_memory.MemoryBackend({"deep_copy": False})
    book = models.LogBook("b")
    fd = models.FlowDetail("f", "fu")
    ad = models.TaskDetail("t", "tu")
    fd.add(ad)
    book.add(fd)
    conn = be.get_connection()
    conn.save_logbook(book)
    return be, conn, book, fd, ad


def test_shared_mode_stores_the_given_objects():
    _, conn, book, fd, ad = _shared_with_flow()
    assert conn.get_logbook(book.uuid) is book
    assert conn.get_flow_details("fu") is fd
    assert conn.get_atom_details("tu") is ad
    assert list(conn.get_atoms_for_flow("fu")) == [ad]
    assert conn.get_logbook(book.uuid, lazy=True) is not book


def test_shared_mode_update_of_the_stored_object_does_no_work(monkeypatch):
    _, conn, _, fd, ad = _shared_with_flow()

    def boom(*args, **kwargs):
        raise AssertionError("no merge or copy expected")

    for name in ("merge", "copy", "update"):
        monkeypatch.setattr(models.TaskDetail, name, boom)
        monkeypatch.setattr(models.FlowDetail, name, boom)
    ad.put(states.RUNNING, None)
    assert conn.update_atom_details(ad) is ad
    fd.state = states.RUNNING
    assert conn.update_flow_details(fd) is fd
    assert conn.get_atom_details("tu").state == states.RUNNING


def test_shared_mode_merges_a_different_object():
    _, conn, _, _, ad = _shared_with_flow()
    other = models.TaskDetail("t", "tu")
    other.put(states.SUCCESS, [1])
    returned = conn.update_atom_details(other)
    assert returned is ad
    assert ad.state == states.SUCCESS
    assert ad.results is other.results


def test_shared_mode_sees_atoms_added_to_a_saved_flow():
    _, conn, _, fd, _ = _shared_with_flow()
    for i in range(5):
        late = models.TaskDetail(f"late{i}", f"late-{i}")
        fd.add(late)
        conn.update_flow_details(fd)
        late.put(states.SUCCESS, i)
        assert conn.update_atom_details(late) is late
        assert conn.get_atom_details(f"late-{i}") is late
    assert sorted(conn.backend.memory.ls("/atom_details")) == sorted(
        ["tu"] + [f"late-{i}" for i in range(5)]
    )


def test_shared_mode_destroy_forgets_lazily_indexed_atoms():
    _, conn, book, fd, _ = _shared_with_flow()
    fd.add(models.TaskDetail("late", "late-u"))
    conn.update_flow_details(fd)
    conn.destroy_logbook(book.uuid)
    with pytest.raises(exc.NotFound):
        conn.get_atom_details("late-u")
    with pytest.raises(exc.NotFound):
        conn.get_atom_details("tu")


def test_deep_mode_update_keeps_the_store_isolated():
    be = impl_memory.MemoryBackend()
    book = models.LogBook("b")
    fd = models.FlowDetail("f", "fu")
    ad = models.TaskDetail("t", "tu")
    fd.add(ad)
    book.add(fd)
    with be.get_connection() as conn:
        saved = conn.save_logbook(book)
        assert saved is not book
        assert saved.find("fu") is not fd
        ad.put(states.SUCCESS, {"x": [1]})
        returned = conn.update_atom_details(ad)
        assert returned.results == {"x": [1]}
        returned.results["x"].append(2)
        assert conn.get_atom_details("tu").results == {"x": [1]}
        renamed = models.TaskDetail("other name", "tu")
        returned = conn.update_atom_details(renamed)
        assert returned is not renamed
        assert returned.name == "t"  # merging never renames the stored record


# -- loose details (ignore_missing) ---------------------------------------------------------


@pytest.mark.parametrize("deep_copy", [True, False])
def test_ignore_missing_creates_loose_details_adopted_later(deep_copy):
    be = impl_memory.MemoryBackend({"deep_copy": deep_copy})
    conn = be.get_connection()
    ad = models.TaskDetail("t", "tu")
    ad.put(states.SUCCESS, 1)
    conn.update_atom_details(ad, ignore_missing=True)
    assert conn.get_atom_details("tu").results == 1
    assert be.memory.ls("/atom_details") == ["tu"]

    fd = models.FlowDetail("f", "fu")
    conn.update_flow_details(fd, ignore_missing=True)
    assert be.memory.ls("/flow_details") == ["fu"]
    assert be.memory.ls("/books") == []

    again = models.TaskDetail("t", "tu")
    again.put(states.SUCCESS, 2)
    fd.add(again)
    conn.update_flow_details(fd)
    assert [a.results for a in conn.get_atoms_for_flow("fu")] == [2]
    assert be.memory.ls("/flow_details/fu") == ["tu"]
    assert be.memory.ls("/atom_details") == ["tu"]


# -- paths and the connection's path attributes ---------------------------------------------


def test_default_path_and_connection_paths():
    be = impl_memory.MemoryBackend()
    assert impl_memory.MemoryBackend.DEFAULT_PATH == "/"
    assert be.path == "/"
    conn = be.get_connection()
    assert (conn.book_path, conn.flow_path, conn.atom_path) == (
        "/books",
        "/flow_details",
        "/atom_details",
    )


@pytest.mark.parametrize("path", ["", None, "/"])
def test_empty_path_means_the_default(path):
    be = impl_memory.MemoryBackend({"path": path})
    assert be.path == "/"
    assert be.get_connection().book_path == "/books"


def test_configured_path_moves_the_tree():
    be = impl_memory.MemoryBackend({"path": "/a/b/"})
    assert be.path == "/a/b/"
    conn = be.get_connection()
    assert (conn.book_path, conn.flow_path, conn.atom_path) == (
        "/a/b/books",
        "/a/b/flow_details",
        "/a/b/atom_details",
    )
    book = models.LogBook("book", uuid="b-1")
    fd = models.FlowDetail("flow", uuid="f-1")
    book.add(fd)
    conn.save_logbook(book)
    memory = be.memory
    assert memory.ls("/") == ["a"]
    assert memory.ls("/a", absolute=True) == ["/a/b"]
    assert memory.ls(conn.book_path) == ["b-1"]
    assert memory["/a"] is None
    assert memory[f"{conn.book_path}/b-1/f-1"]["uuid"] == "f-1"
    assert memory.pformat() == "\n".join(
        [
            "/",
            "|__a",
            "   |__b",
            "      |__books",
            "      |  |__b-1",
            "      |     |__f-1 (link to /a/b/flow_details/f-1)",
            "      |__flow_details",
            "      |  |__f-1",
            "      |__atom_details",
        ]
    )
    with pytest.raises(exc.NotFound, match="Path '/books' not found"):
        memory.ls("/books")
    with pytest.raises(exc.NotFound, match="Path '/a/b/books/b-9' not found"):
        memory["/a/b/books/b-9"]


def test_relative_path_is_refused():
    with pytest.raises(ValueError, match="start with /"):
        impl_memory.MemoryBackend({"path": "rel"})


def test_connection_uuid_parameters_by_position_and_by_name(backend):
    conn = backend.get_connection()
    assert conn.get_flow_details("f-11").uuid == "f-11"
    assert conn.get_flow_details(flow_uuid="f-11", lazy=True).uuid == "f-11"
    assert conn.get_atom_details("a-111").uuid == "a-111"
    assert conn.get_atom_details(atom_uuid="a-111").uuid == "a-111"
    assert [ad.uuid for ad in conn.get_atoms_for_flow(flow_uuid="f-11")] == [
        "a-111",
        "a-112",
        "a-113",
    ]


def test_backend_tree_is_read_only(backend):
    memory = backend.memory
    assert isinstance(memory, impl_memory.FakeFilesystem)
    writes = [
        lambda: memory.__setitem__("/books/x", 1),
        lambda: memory.ensure_path("/x"),
        lambda: memory.symlink("/books", "/x"),
        lambda: memory.delete("/books/b-1", recursive=True),
        lambda: memory.__delitem__("/books/b-1"),
    ]
    for write in writes:
        with pytest.raises(NotImplementedError, match="read-only"):
            write()
    assert memory.ls("/books") == ["b-1", "b-2", "b-3"]
    memory.clear()
    assert memory.ls("/books") == []
    assert list(backend.get_connection().get_logbooks()) == []


def test_backend_tree_ls_absolute(backend):
    assert backend.memory.ls("/books/b-1", absolute=True) == ["/books/b-1/f-11", "/books/b-1/f-12"]
    assert backend.memory.ls("/", absolute=True) == ["/books", "/flow_details", "/atom_details"]


# -- FakeInode and FakeFilesystem on their own ---------------------------------------------


def test_fake_inode_is_a_tree_node_with_path_and_value():
    node = impl_memory.FakeInode("b", "/a/b", value=[1])
    assert isinstance(node, tree.Node)
    assert node.item == "b"
    assert node.metadata == {"path": "/a/b", "value": [1]}
    assert impl_memory.FakeInode("a", "/a").metadata["value"] is None


def test_fake_filesystem_starts_empty():
    fs = impl_memory.FakeFilesystem()
    assert fs.ls("/") == []
    assert fs["/"] is None
    assert fs.pformat() == "/"


def test_fake_filesystem_set_needs_the_parent_and_ensure_path_makes_it():
    fs = impl_memory.FakeFilesystem()
    with pytest.raises(exc.NotFound, match="Path '/a' not found"):
        fs["/a/b"] = 1
    fs.ensure_path("/a/b/c")
    assert fs.ls("/a") == ["b"]
    assert fs["/a/b"] is None
    fs["/a/b"] = 2
    fs.ensure_path("/a/b")  # existing values are kept
    assert fs["/a/b"] == 2
    assert fs["/a/./x/../b/"] == 2
    assert fs.get("/nope") is None
    assert fs.get("/nope", 5) == 5
    with pytest.raises(exc.NotFound, match="Path '/nope' not found"):
        fs["/nope"]


@pytest.mark.parametrize(("deep_copy", "inner_shared"), [(True, False), (False, True)])
def test_fake_filesystem_copies_values_in_and_out(deep_copy, inner_shared):
    fs = impl_memory.FakeFilesystem(deep_copy=deep_copy)
    value = {"y": [2]}
    fs["/v"] = value
    value["z"] = 1
    read = fs["/v"]
    assert read == {"y": [2]}
    assert read is not value
    assert (read["y"] is value["y"]) is inner_shared
    read["w"] = 3
    assert fs["/v"] == {"y": [2]}


def test_fake_filesystem_listing():
    fs = impl_memory.FakeFilesystem()
    fs["/c"] = 1
    fs.ensure_path("/x/y/z")
    assert fs.ls("/") == ["c", "x"]
    assert fs.ls("/x", absolute=True) == ["/x/y"]
    assert fs.ls_r("/") == ["x", "c", "x/y", "x/y/z"]
    assert fs.ls_r("/", absolute=True) == ["/x", "/c", "/x/y", "/x/y/z"]
    assert fs.ls_r("/x/y/z") == []
    with pytest.raises(exc.NotFound):
        fs.ls("/nope")


def test_fake_filesystem_symlinks():
    fs = impl_memory.FakeFilesystem()
    fs["/c"] = {"k": 1}
    fs.ensure_path("/x")
    fs.symlink("/x/../c/", "/x/link")
    assert fs["/x/link"] == {"k": 1}
    assert fs.ls("/x/link") == []  # listing does not follow links
    fs.symlink("/x/link", "/chain")
    assert fs["/chain"] == {"k": 1}
    fs.symlink("/gone", "/dangling")
    with pytest.raises(exc.NotFound, match="Path '/gone' not found"):
        fs["/dangling"]
    assert fs.get("/dangling") is None
    with pytest.raises(exc.NotFound, match="Path '/nope' not found"):
        fs.symlink("/c", "/nope/link")
    assert fs.pformat() == "\n".join(
        [
            "/",
            "|__c",
            "|__x",
            "|  |__link (link to /c)",
            "|__chain (link to /x/link)",
            "|__dangling (link to /gone)",
        ]
    )


def test_fake_filesystem_link_loops_are_detected():
    fs = impl_memory.FakeFilesystem()
    fs.symlink("/loop", "/loop")
    with pytest.raises(ValueError, match=re.escape("(loop ['/loop', '/loop'] detected)")):
        fs["/loop"]
    fs.symlink("/b", "/a")
    fs.symlink("/a", "/b")
    with pytest.raises(ValueError, match=re.escape("(loop ['/b', '/a', '/b'] detected)")):
        fs["/a"]


def test_fake_filesystem_delete():
    fs = impl_memory.FakeFilesystem()
    fs.ensure_path("/x/y")
    fs["/x/v"] = 1
    with pytest.raises(ValueError, match="Can not delete '/x', it has 2 children"):
        fs.delete("/x")
    fs.delete("/x/y")
    assert fs.ls("/x") == ["v"]
    fs.delete("/x", recursive=True)
    assert fs.ls("/") == []
    with pytest.raises(exc.NotFound):
        fs["/x/v"]
    fs["/x"] = 2  # a deleted path can be made again, empty
    assert fs.ls("/x") == []
    del fs["/x"]
    assert fs.ls("/") == []
    with pytest.raises(exc.NotFound, match="Path '/nope' not found"):
        fs.delete("/nope")


def test_fake_filesystem_root_can_be_emptied_not_deleted():
    fs = impl_memory.FakeFilesystem()
    fs["/"] = "root value"
    fs.ensure_path("/a/b")
    with pytest.raises(ValueError, match="Can not delete '/'"):
        fs.delete("/")
    fs.delete("/", recursive=True)
    assert fs.ls("/") == []
    assert fs["/"] == "root value"
    fs.ensure_path("/a")
    fs.clear()
    assert fs.ls_r("/") == []
    assert fs["/"] == "root value"
    with pytest.raises(exc.NotFound):
        fs["/a/b"]


def test_fake_filesystem_path_helpers():
    fs = impl_memory.FakeFilesystem
    assert fs.root_path == "/"
    assert fs.normpath("/a//b/../c/") == "/a/c"
    assert fs.split("/a/b/c") == ("/a/b", "c")
    assert fs.join("/a", "b", "c") == "/a/b/c"
    with pytest.raises(ValueError, match="not empty"):
        fs.normpath("")
    with pytest.raises(ValueError, match="start with /: 'a' is not valid"):
        impl_memory.FakeFilesystem()["a"]
