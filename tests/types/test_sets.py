"""OrderedSet: a set that keeps insertion order."""

from __future__ import annotations

import pickle

from taskflow.types.sets import OrderedSet


def test_keeps_first_insertion_order_without_duplicates():
    s = OrderedSet([3, 1, 2, 1, 3])
    assert list(s) == [3, 1, 2]
    assert len(s) == 3
    assert 1 in s
    assert 9 not in s


def test_empty():
    assert list(OrderedSet()) == []
    assert len(OrderedSet()) == 0
    assert repr(OrderedSet()) == "OrderedSet([])"


def test_repr():
    assert repr(OrderedSet([3, 1])) == "OrderedSet([3, 1])"


def test_union_keeps_order_and_does_not_mutate():
    s = OrderedSet([3, 1, 2])
    u = s.union([5, 1], (0,))
    assert list(u) == [3, 1, 2, 5, 0]
    assert isinstance(u, OrderedSet)
    assert list(s) == [3, 1, 2]


def test_intersection_keeps_left_order():
    s = OrderedSet([3, 1, 2])
    assert list(s.intersection([2, 3, 9])) == [3, 2]
    assert list(s.intersection([2, 3], [3])) == [3]
    assert list(s.intersection()) == [3, 1, 2]


def test_difference_keeps_left_order():
    s = OrderedSet([3, 1, 2])
    assert list(s.difference([1], [2])) == [3]
    assert list(s.difference()) == [3, 1, 2]


def test_operators_return_ordered_results():
    assert list(OrderedSet([1]) | OrderedSet([2])) == [1, 2]
    assert list(OrderedSet([1, 2]) & OrderedSet([2])) == [2]
    assert list(OrderedSet([1, 2]) - OrderedSet([2])) == [1]
    assert list(OrderedSet([1, 2]) ^ OrderedSet([2, 3])) == [1, 3]


def test_equality_ignores_order_and_compares_with_sets():
    assert OrderedSet([1, 2]) == OrderedSet([2, 1])
    assert OrderedSet([1, 2]) == {1, 2}
    assert OrderedSet([1]) != [1]
    assert OrderedSet([1]) <= OrderedSet([1, 2])
    assert not OrderedSet([1, 3]) <= OrderedSet([1, 2])


def test_copy_is_independent():
    s = OrderedSet([1, 2])
    c = s.copy()
    assert c is not s
    assert list(c) == [1, 2]
    assert type(c) is OrderedSet


def test_isdisjoint():
    assert OrderedSet([1]).isdisjoint([2])
    assert not OrderedSet([1, 2]).isdisjoint([2])


def test_pickle_round_trip_keeps_order():
    back = pickle.loads(pickle.dumps(OrderedSet([3, 1, 2])))
    assert list(back) == [3, 1, 2]


def test_issubset_and_issuperset():
    s = OrderedSet([1, 2])
    assert s.issubset([1, 2, 3])  # type: ignore[attr-defined]
    assert s.issuperset([1])  # type: ignore[attr-defined]
