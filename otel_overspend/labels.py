"""Bounded label values: the first ``limit`` distinct values pass, the rest become ``other``."""

from __future__ import annotations

import threading
from typing import Final

__all__ = ("OTHER", "LabelCap")

OTHER: Final = "other"


class LabelCap:
    """Admits at most ``limit`` distinct values; counts every value folded into ``other``."""

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
            self.overflowed += 1
            return OTHER

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self.overflowed = 0
