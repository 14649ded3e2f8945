"""Unordered flows: no links, and siblings never satisfy each other's requirements."""

from __future__ import annotations

from taskflow import retry, task
from taskflow.patterns import linear_flow as lf
from taskflow.patterns import unordered_flow as uf


class Noop(task.Task):
    def execute(self, *args, **kwargs):
        return None


def make(name, provides=None, requires=None):
    return Noop(name=name, provides=provides, requires=requires)


def test_add_len_iter_and_noop_readd():
    a, b = make("a"), make("b")
    f = uf.Flow("u")
    assert f.add(a, b) is f
    f.add(a)
    assert len(f) == 2
    assert list(f) == [a, b]
    assert list(f.iter_nodes()) == [(a, {}), (b, {})]


def test_no_links_ever():
    f = uf.Flow("u").add(make("a", provides="x"), make("b", requires="x"))
    assert list(f.iter_links()) == []


def test_requires_include_what_siblings_provide():
    f = uf.Flow("u").add(make("a", provides="x"), make("b", requires=["x", "y"]))
    assert f.requires == frozenset({"x", "y"})
    assert f.provides == frozenset({"x"})


def test_duplicate_providers_are_accepted():
    a, b = make("a", provides="x"), make("b", provides="x")
    f = uf.Flow("u").add(a, b)
    assert len(f) == 2
    assert f.provides == frozenset({"x"})


def test_retry_symbols():
    r = retry.Times(3, provides="k", requires="j")
    f = uf.Flow("u", r).add(make("a", requires=["k", "j", "m"], provides="j"))
    assert r.name == "u_retry"
    assert f.requires == frozenset({"j", "m"})
    assert f.provides == frozenset({"j", "k"})


def test_nested():
    inner = lf.Flow("inner").add(make("a", provides="x"), make("b", requires="x"))
    f = uf.Flow("u").add(inner, make("c", requires="q"))
    assert f.requires == frozenset({"q"})
    assert f.provides == frozenset({"x"})
    assert next(iter(f)) is inner


def test_str():
    assert str(uf.Flow("u").add(make("a"))) == '"unordered_flow.Flow: u(len=1)"'
