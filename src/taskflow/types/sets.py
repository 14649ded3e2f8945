"""An insertion-ordered set."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, MutableSet
from typing import TypeVar

__all__ = ["OrderedSet"]

T = TypeVar("T", bound=Hashable)


class OrderedSet(MutableSet[T]):
    """A set that remembers insertion order (backed by a dict)."""

    __slots__ = ("_data",)

    def __init__(self, iterable: Iterable[T] | None = None) -> None:
        self._data: dict[T, None] = dict.fromkeys(iterable) if iterable is not None else {}

    def __contains__(self, value: object) -> bool:
        return value in self._data

    def __iter__(self) -> Iterator[T]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def add(self, value: T) -> None:
        self._data[value] = None

    def discard(self, value: T) -> None:
        self._data.pop(value, None)

    def copy(self) -> OrderedSet[T]:
        return OrderedSet(self._data)

    def union(self, *sets: Iterable[T]) -> OrderedSet[T]:
        result = self.copy()
        for other in sets:
            for value in other:
                result.add(value)
        return result

    def intersection(self, *sets: Iterable[T]) -> OrderedSet[T]:
        result = self.copy()
        for other in sets:
            keep = set(other)
            result = OrderedSet(v for v in result if v in keep)
        return result

    def difference(self, *sets: Iterable[T]) -> OrderedSet[T]:
        drop: set[T] = set()
        for other in sets:
            drop.update(other)
        return OrderedSet(v for v in self._data if v not in drop)

    def issubset(self, other: Iterable[T]) -> bool:
        return all(value in set(other) for value in self._data) if self._data else True

    def issuperset(self, other: Iterable[T]) -> bool:
        return all(value in self._data for value in other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._data)!r})"
