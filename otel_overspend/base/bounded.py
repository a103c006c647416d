"""Bounded tables: when a dict reaches its limit, its oldest entries go in one pass; or, for
a table that only has to remember what is recent, two generations (:class:`Recent`).

Evicting one entry at a time with ``d.pop(next(iter(d)))`` gets slow once a dict is full:
each pop leaves a dummy slot at the front that the next ``iter`` walks over. Dropping the
oldest eighth at once, by rebuilding the dict in place, costs O(n) once per n/8 inserts —
constant on average — and compacts the table as it goes.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

__all__ = ("Recent", "make_room")

_K = TypeVar("_K")
_V = TypeVar("_V")

#: The share of a full table evicted at once.
EVICT_FRACTION: Final = 8


def make_room(table: dict[_K, _V], limit: int) -> int:
    """If ``table`` holds ``limit`` or more entries, drop the oldest (insertion order) so that
    at least one eighth of ``limit`` is free; return how many were dropped."""
    size = len(table)
    if size < limit:
        return 0
    keep = max(0, limit - max(1, limit // EVICT_FRACTION))
    survivors = list(table.items())[size - keep :] if keep else []
    table.clear()
    table.update(survivors)
    return size - keep


class Recent(Generic[_K, _V]):
    """The entries put most recently: at least the last ``size`` keys, at most twice as many.

    New keys go into a young generation; when it holds ``size`` keys, the old generation is
    dropped and the young one takes its place. Each put costs O(1), with no eviction pass:
    a table written once per counted call stays cheap when it is full (:func:`make_room`
    copies seven eighths of the table every eighth of it). A key found in the old generation
    moves to the young one.
    """

    __slots__ = ("_old", "_size", "_young")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._size = size
        self._young: dict[_K, _V] = {}
        self._old: dict[_K, _V] = {}

    def get(self, key: _K) -> _V | None:
        found = self._young.get(key)
        if found is None and self._old:
            found = self._old.pop(key, None)
            if found is not None:
                self.put(key, found)
        return found

    def put(self, key: _K, value: _V) -> None:
        young = self._young
        if len(young) >= self._size and key not in young:
            self._old = young
            young = self._young = {}
        young[key] = value

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        self._young = {}
        self._old = {}
