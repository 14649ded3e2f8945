"""taskflow.utils.misc helpers."""

from __future__ import annotations

import datetime
import functools
import io
import json
import os
import sys
import threading
import time
import types

import pytest

from taskflow import exceptions as exc
from taskflow.types.failure import Failure
from taskflow.utils import misc
from tests.helpers import services

# -- as_int / clamp ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("5", 5), (5.7, 5), ("5.0", 5), (7, 7), (True, 1)])
def test_as_int(value, expected):
    assert misc.as_int(value) == expected


@pytest.mark.parametrize("value", ["x", None, [1], "inf"])
def test_as_int_failure(value):
    with pytest.raises(TypeError, match="to an integer"):
        misc.as_int(value)
    assert misc.as_int(value, quiet=True) is value


def test_clamp():
    assert [misc.clamp(v, 1, 5) for v in (0, 3, 9)] == [1, 3, 5]
    calls = []
    assert misc.clamp(9, 1, 5, on_clamped=lambda: calls.append(1)) == 5
    assert misc.clamp(3, 1, 5, on_clamped=lambda: calls.append(2)) == 3
    assert calls == [1]
    assert misc.clamp(0.5, 0.0, 1.0) == 0.5
    with pytest.raises(ValueError, match="minimum '5' must be less than or equal"):
        misc.clamp(3, 5, 1)


# -- URIs -------------------------------------------------------------------------------------


def test_parse_uri_full():
    p = misc.parse_uri("redis://user:pw@host:6379/db0?a=1&b=2&a=3#frag")
    assert p.scheme == "redis"
    assert p.username == "user"
    assert p.password == "pw"
    assert p.hostname == "host"
    assert p.port == 6379
    assert p.path == "/db0"
    assert p.query == {"a": ["1", "3"], "b": "2"}
    assert p.fragment == "frag"
    assert p.netloc == "user:pw@host:6379"
    assert p.hosts == "host:6379"


def test_parse_uri_minimal():
    p = misc.parse_uri("memory://")
    assert (p.scheme, p.username, p.password, p.hostname, p.port, p.path, p.query, p.fragment) == (
        "memory", None, None, None, None, "", {}, "",
    )  # fmt: skip


def test_parse_uri_paths_and_hosts():
    assert misc.parse_uri("dir:///tmp/x").path == "/tmp/x"
    assert misc.parse_uri("sqlite:///:memory:").path == "/:memory:"
    ipv6 = misc.parse_uri("mysql://[::1]:3306/db")
    assert (ipv6.hostname, ipv6.port) == ("::1", 3306)
    zk = misc.parse_uri("zookeeper://h1:2181,h2:2182/path")
    assert zk.port is None
    assert zk.hosts == "h1:2181,h2:2182"
    assert zk.path == "/path"


def test_parse_uri_blank_query_values():
    assert misc.parse_uri("a://h?x=&y").query == {"x": "", "y": ""}


@pytest.mark.parametrize("uri", ["/tmp/x", "x", "1abc://h", ""])
def test_parse_uri_needs_a_scheme(uri):
    with pytest.raises(ValueError, match="does not start with a RFC 3986 compliant scheme"):
        misc.parse_uri(uri)


def test_parse_uri_needs_a_string():
    with pytest.raises(TypeError, match="Can only parse string types"):
        misc.parse_uri(5)  # type: ignore[arg-type]


def test_merge_uri_fills_missing_keys_only():
    uri = misc.parse_uri("redis://user:pw@host:6379/db0?a=1&b=2&a=3")
    conf = {"username": "keep"}
    merged = misc.merge_uri(uri, conf)
    assert merged is conf
    assert conf == {
        "username": "keep",
        "password": "pw",
        "hostname": "host:6379",
        "port": 6379,
        "a": "3",
        "b": "2",
    }


def test_merge_uri_variants():
    assert misc.merge_uri(misc.parse_uri("a://h"), {}) == {"hostname": "h"}
    assert misc.merge_uri(misc.parse_uri("a://h:5?port=9"), {}) == {"port": 5, "hostname": "h:5"}
    assert misc.merge_uri(misc.parse_uri("a://:pw@h"), {}) == {
        "username": "",
        "password": "pw",
        "hostname": "h",
    }
    assert misc.merge_uri(misc.parse_uri("a:///p"), {}) == {}
    assert misc.merge_uri(misc.parse_uri("a://h?hostname=q"), {}) == {"hostname": "h"}


# -- capture_failure --------------------------------------------------------------------------


def test_capture_failure_inside_except():
    try:
        raise ValueError("z")
    except ValueError:
        with misc.capture_failure() as f:
            assert isinstance(f, Failure)
            assert str(f) == "Failure: ValueError: z"
            assert f.exception is sys.exc_info()[1]


def test_capture_failure_without_exception():
    with pytest.raises(RuntimeError, match="No active exception is being handled"):
        with misc.capture_failure():
            pass


# -- versions, names, reflection --------------------------------------------------------------


def test_get_version_string():
    class V:
        version = (1, 0)

    class V2:
        version = (2, 3, 1)

    class V3:
        version = "1.2"

    assert misc.get_version_string(V) == "1.0"
    assert misc.get_version_string(V2()) == "2.3.1"
    assert misc.get_version_string(V3) == "1.2"
    assert misc.get_version_string(object()) is None


def plain_function():
    pass


module_lambda = lambda: 1  # noqa: E731


class Klass:
    def method(self):
        pass

    @classmethod
    def cmethod(cls):
        pass

    @staticmethod
    def smethod():
        pass

    def __call__(self):
        pass

    class Inner:
        def method(self):
            pass


def test_get_callable_name():
    mod = __name__
    assert misc.get_callable_name(plain_function) == f"{mod}.plain_function"
    assert misc.get_callable_name(module_lambda) == f"{mod}.<lambda>"
    assert misc.get_callable_name(Klass.method) == f"{mod}.Klass.method"
    assert misc.get_callable_name(Klass().method) == f"{mod}.Klass.method"
    assert misc.get_callable_name(Klass.cmethod) == f"{mod}.Klass.cmethod"
    assert misc.get_callable_name(Klass.smethod) == f"{mod}.Klass.smethod"
    assert misc.get_callable_name(Klass()) == f"{mod}.Klass"
    assert misc.get_callable_name(Klass) == f"{mod}.Klass"
    assert misc.get_callable_name(Klass.Inner().method) == f"{mod}.Klass.Inner.method"
    assert misc.get_callable_name(functools.partial(plain_function)) == "functools.partial"
    assert misc.get_callable_name(len) == "builtins.len"
    assert misc.get_callable_name(str.upper) == "builtins.str.upper"


def test_get_callable_name_nested_function():
    def inner():
        pass

    prefix = f"{__name__}.test_get_callable_name_nested_function.<locals>"
    assert misc.get_callable_name(inner) == f"{prefix}.inner"
    assert misc.get_callable_name(lambda: 1) == f"{prefix}.<lambda>"


def test_get_class_name():
    assert misc.get_class_name(Klass) == f"{__name__}.Klass"
    assert misc.get_class_name(Klass()) == f"{__name__}.Klass"
    assert misc.get_class_name(ValueError) == "ValueError"
    assert misc.get_class_name(Klass, fully_qualified=False) == "Klass"
    assert misc.get_class_name(exc.NotFound("x")) == "taskflow.exceptions.NotFound"


def test_get_all_class_names():
    assert list(misc.get_all_class_names(KeyError)) == [
        "KeyError", "LookupError", "Exception", "BaseException", "object",
    ]  # fmt: skip
    assert list(misc.get_all_class_names(KeyError("x"), up_to=Exception)) == [
        "KeyError", "LookupError", "Exception",
    ]  # fmt: skip


def _fake_module() -> types.ModuleType:
    module = types.ModuleType("fake_plugins")

    class Base:
        pass

    class Impl(Base):
        pass

    class _Hidden(Base):
        pass

    class Other:
        pass

    for cls in (Base, Impl, _Hidden, Other):
        cls.__module__ = module.__name__
        setattr(module, cls.__name__, cls)
    return module


def test_find_subclasses_in_module(monkeypatch):
    module = _fake_module()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    base = module.Base
    assert misc.find_subclasses(["fake_plugins"], base) == {module.Base, module.Impl}
    assert misc.find_subclasses([module], base, exclude_hidden=False) == {
        module.Base,
        module.Impl,
        module._Hidden,
    }


def test_find_subclasses_named_classes(monkeypatch):
    module = _fake_module()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    found = misc.find_subclasses(["fake_plugins:Impl", "fake_plugins:_Hidden"], module.Base)
    assert found == {module.Impl, module._Hidden}
    assert misc.find_subclasses([module.Impl], module.Base) == {module.Impl}
    with pytest.raises(TypeError, match="is not a"):
        misc.find_subclasses(["fake_plugins:Other"], module.Base)
    with pytest.raises(TypeError, match="is not a"):
        misc.find_subclasses([module.Other], module.Base)
    with pytest.raises(TypeError, match="unexpected type"):
        misc.find_subclasses([5], module.Base)
    with pytest.raises(ImportError):
        misc.find_subclasses(["no_such_module_here"], module.Base)


def test_match_type():
    matchers = [(TypeError, 1), ((KeyError, Exception), 2)]
    assert misc.match_type(ValueError(), matchers) == 2
    assert misc.match_type(TypeError(), matchers) == 1
    assert misc.match_type(5, matchers) is None


# -- sequences and small conversions ----------------------------------------------------------


def test_sequence_minus_is_an_ordered_multiset_difference():
    assert misc.sequence_minus([1, 2, 3, 2, 1], [2, 5, 1]) == [3, 2, 1]
    assert misc.sequence_minus("abcab", "a") == ["b", "c", "a", "b"]
    assert misc.sequence_minus([1, 1], [1, 1, 1]) == []
    assert misc.sequence_minus([[1], [2], [1]], [[1]]) == [[2], [1]]


def test_is_iterable():
    assert [misc.is_iterable(x) for x in ("s", b"b", [1], (1,), {}, set(), 5, iter([]), None)] == [
        False, True, True, True, True, True, False, True, False,
    ]  # fmt: skip


def test_countdown_iter():
    assert list(misc.countdown_iter(3)) == [3, 2, 1]
    assert list(misc.countdown_iter(7, decr=3)) == [7, 4, 1]
    assert list(misc.countdown_iter(0)) == []
    with pytest.raises(ValueError, match="greater than zero"):
        list(misc.countdown_iter(3, decr=0))


def test_reverse_enumerate():
    assert list(misc.reverse_enumerate("abc")) == [(2, "c"), (1, "b"), (0, "a")]
    assert list(misc.reverse_enumerate([])) == []


def test_pick_first_not_none():
    assert misc.pick_first_not_none(None, 0, 1) == 0
    assert misc.pick_first_not_none(None, None) is None
    assert misc.pick_first_not_none() is None


def test_safe_copy_dict():
    original = {"a": [1]}
    copied = misc.safe_copy_dict(original)
    assert copied == original
    assert copied is not original
    assert misc.safe_copy_dict(None) == {}
    assert misc.safe_copy_dict([("a", 1)]) == {"a": 1}


def test_fix_newlines():
    assert misc.fix_newlines("a\r\nb\rc\n") == "a\nb\nc"


def test_binary_encode_decode():
    assert misc.binary_encode("é") == b"\xc3\xa9"
    assert misc.binary_encode(b"x") == b"x"
    assert misc.binary_decode("é".encode()) == "é"
    assert misc.binary_decode("x") == "x"
    with pytest.raises(TypeError, match="can't be encoded"):
        misc.binary_encode(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="can't be decoded"):
        misc.binary_decode(5)  # type: ignore[arg-type]


def test_decode_json():
    assert misc.decode_json(b'{"a": 1}') == {"a": 1}
    assert misc.decode_json('{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="root type"):
        misc.decode_json(b"[1]")
    with pytest.raises(ValueError, match="Expected JSON decodable data"):
        misc.decode_json(b"{")
    with pytest.raises(ValueError, match="UTF-8"):
        misc.decode_json(b"\xff")


def test_millis_to_datetime():
    assert misc.millis_to_datetime(1500) == datetime.datetime(1970, 1, 1, 0, 0, 1, 500000)


def test_get_hostname(monkeypatch):
    assert isinstance(misc.get_hostname(), str)
    assert misc.get_hostname()

    def broken():
        raise OSError("no")

    monkeypatch.setattr(misc.socket, "getfqdn", broken)
    assert misc.get_hostname() == misc.UNKNOWN_HOSTNAME
    assert misc.get_hostname("x") == "x"


# -- extract_driver_and_conf ------------------------------------------------------------------


def test_extract_driver_and_conf_from_a_uri_string():
    driver, conf = misc.extract_driver_and_conf(
        "zookeeper://localhost:2181/path?timeout=3", "connection"
    )
    assert driver == "zookeeper"
    assert conf == {
        "connection": "zookeeper://localhost:2181/path?timeout=3",
        "hostname": "localhost:2181",
        "port": 2181,
        "timeout": "3",
    }


def test_extract_driver_and_conf_keeps_given_keys_and_the_whole_scheme():
    given = {"connection": "mysql+pymysql://u:p@h/db", "username": "other"}
    driver, conf = misc.extract_driver_and_conf(given, "connection")
    assert driver == "mysql+pymysql"
    assert conf == {**given, "password": "p", "hostname": "h"}
    assert conf is not given
    assert given == {"connection": "mysql+pymysql://u:p@h/db", "username": "other"}


@pytest.mark.parametrize("value", ["memory", "", None, 5, "1abc://h"])
def test_extract_driver_and_conf_non_uri_value_is_the_driver(value):
    assert misc.extract_driver_and_conf({"board": value, "x": 1}, "board") == (
        value,
        {"board": value, "x": 1},
    )


def test_extract_driver_and_conf_needs_the_key():
    with pytest.raises(KeyError):
        misc.extract_driver_and_conf({"other": 1}, "connection")


# -- decode_msgpack ---------------------------------------------------------------------------


@pytest.fixture
def fake_msgpack(monkeypatch):
    """A stand-in ``msgpack`` whose wire format is JSON, to test our checks without it."""
    calls = []

    def unpackb(data, raw=True):
        calls.append(raw)
        return json.loads(data)

    module = types.ModuleType("msgpack")
    module.unpackb = unpackb
    monkeypatch.setitem(sys.modules, "msgpack", module)
    return calls


def test_decode_msgpack_checks_the_root_type(fake_msgpack):
    assert misc.decode_msgpack(b'{"a": 1}') == {"a": 1}
    assert fake_msgpack == [False]  # text comes back as str, not bytes
    assert misc.decode_msgpack(b"[1]", root_types=(list,)) == [1]
    assert misc.decode_msgpack(b"5", root_types=()) == 5
    with pytest.raises(
        ValueError, match=r"^Expected '<class 'dict'>' root type not '<class 'list'>'$"
    ):
        misc.decode_msgpack(b"[1]")
    with pytest.raises(
        ValueError, match=r"^Expected \[<class 'dict'>, <class 'list'>\] root types"
    ):
        misc.decode_msgpack(b"5", root_types=(dict, list))


def test_decode_msgpack_wraps_unpacking_errors(fake_msgpack):
    with pytest.raises(ValueError, match=r"^Expected msgpack decodable data: ") as info:
        misc.decode_msgpack(b"{")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


def test_decode_msgpack_without_msgpack_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes the import fail
    with pytest.raises(ImportError, match="msgpack") as info:
        misc.decode_msgpack(b"\x80")
    assert info.value.name == "msgpack"


def test_decode_msgpack_with_the_real_package():
    msgpack = services.need_module("msgpack", "test")
    assert misc.decode_msgpack(msgpack.packb({"a": [1, "x"]})) == {"a": [1, "x"]}
    with pytest.raises(ValueError, match="Expected msgpack decodable data"):
        misc.decode_msgpack(b"\xc1")


# -- streams ----------------------------------------------------------------------------------


def test_bytes_io_reset_empties_and_rewinds():
    stream = misc.BytesIO(b"abc")
    stream.seek(0, 2)
    stream.write(b"def")
    assert stream.getvalue() == b"abcdef"
    assert stream.reset() is None
    assert (stream.getvalue(), stream.tell()) == (b"", 0)
    stream.write(b"x")
    assert stream.getvalue() == b"x"
    assert isinstance(stream, io.BytesIO)


def test_string_io_write_nl():
    stream = misc.StringIO()
    stream.write("x")
    stream.write_nl("abc")
    assert stream.getvalue() == "xabc" + os.linesep
    stream.write_nl("d", linesep="|")
    assert stream.getvalue().endswith("d|")
    with pytest.raises(TypeError):
        stream.write_nl(1)
    assert isinstance(stream, io.StringIO)


# -- cachedproperty / disallow_when_frozen ----------------------------------------------------


class _Cached:
    def __init__(self):
        self.calls = []

    @misc.cachedproperty
    def plain(self):
        """Plain doc."""
        self.calls.append("plain")
        return 42

    @misc.cachedproperty("_stored_here")
    def named(self):
        self.calls.append("named")
        return None

    @misc.cachedproperty(require_lock=False)
    def unlocked(self):
        self.calls.append("unlocked")
        return [1]


def test_cachedproperty_computes_once_per_instance():
    first, second = _Cached(), _Cached()
    assert (first.plain, first.plain) == (42, 42)
    assert first.calls == ["plain"]
    assert first._plain == 42
    assert second.plain == 42
    assert second.calls == ["plain"]


def test_cachedproperty_attribute_name_and_lock_options():
    obj = _Cached()
    assert obj.named is None
    assert obj.named is None  # None is a value like any other: cached too
    assert obj._stored_here is None
    assert obj.unlocked is obj.unlocked
    assert obj._unlocked == [1]
    assert obj.calls == ["named", "unlocked"]


def test_cachedproperty_uses_a_preset_attribute():
    obj = _Cached()
    obj._plain = 1
    assert obj.plain == 1
    assert obj.calls == []


def test_cachedproperty_is_read_only_and_documented():
    obj = _Cached()
    with pytest.raises(AttributeError, match="can't set attribute"):
        obj.plain = 5
    with pytest.raises(AttributeError, match="can't delete attribute"):
        del obj.plain
    assert isinstance(_Cached.plain, misc.cachedproperty)
    assert _Cached.plain.__doc__ == "Plain doc."
    with pytest.raises(TypeError):
        misc.cachedproperty(5)


def test_cachedproperty_computes_once_under_concurrent_access():
    started = threading.Barrier(4)

    class Slow:
        computed = 0

        @misc.cachedproperty
        def value(self):
            Slow.computed += 1
            time.sleep(0.01)
            return object()

    obj = Slow()
    seen = []

    def read():
        started.wait()
        seen.append(obj.value)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Slow.computed == 1
    assert all(value is seen[0] for value in seen)


class _Frozen(Exception):
    pass


class _Freezable:
    def __init__(self):
        self.frozen = False

    @misc.disallow_when_frozen(_Frozen)
    def double(self, x):
        """Double doc."""
        return x * 2


def test_disallow_when_frozen():
    obj = _Freezable()
    assert obj.double(3) == 6
    assert _Freezable.double.__name__ == "double"
    assert _Freezable.double.__doc__ == "Double doc."
    obj.frozen = True
    with pytest.raises(_Frozen) as info:
        obj.double(3)
    assert info.value.args == ()
