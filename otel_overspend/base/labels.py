"""Bounded label values: the first ``limit`` distinct values pass, the rest become ``other``."""

from __future__ import annotations

import threading
from typing import Final

__all__ = ("OTHER", "LabelCap")

OTHER: Final = "other"


class LabelCap:
    """Admits at most ``limit`` distinct values; the rest map to ``other``.

    Callers that cache the mapping report each folded call with :meth:`count_overflow`.
    """

    __slots__ = ("_lock", "_seen", "limit", "name", "overflowed")

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"{name} label cap must be at least 1, got {limit}")
        self.name = name
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        #: How many values were replaced by ``other`` (one per call, not per distinct value).
        self.overflowed = 0

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
            return OTHER

    def count_overflow(self) -> None:
        """Count one call whose value this cap folded into ``other``."""
        with self._lock:
            self.overflowed += 1

    def after_fork(self) -> None:
        """In a forked child: a new lock and no overflow yet (the parent reports its own).

        The admitted values are kept, so that every worker labels a model the same way.
        """
        self._lock = threading.Lock()
        self.overflowed = 0
