"""taskflow.utils.misc helpers."""

from __future__ import annotations

import datetime
import functools
import sys
import types

import pytest

from taskflow import exceptions as exc
from taskflow.types.failure import Failure
from taskflow.utils import misc

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
