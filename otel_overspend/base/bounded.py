"""Bounded tables: when a dict reaches its limit, its oldest entries go in one pass.

Evicting one entry at a time with ``d.pop(next(iter(d)))`` gets slow once a dict is full:
each pop leaves a dummy slot at the front that the next ``iter`` walks over. Dropping the
oldest eighth at once, by rebuilding the dict in place, costs O(n) once per n/8 inserts —
constant on average — and compacts the table as it goes.
"""

from __future__ import annotations

from typing import Final, TypeVar

__all__ = ("make_room",)

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
