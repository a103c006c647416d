"""Open requests: per trace, the LLM calls made under this process's local root span.

A request opens at its first LLM call and closes when its local root span ends. The
table is bounded: when full, the oldest request is evicted; a request open longer than
the time-out is evicted too. Both are counted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_overspend.ledger import RequestSample

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.attribution import Call

__all__ = ("OpenRequests",)

_GENERATE = "generate"
_FRONTIER = "frontier"


@dataclass(slots=True)
class _Open:
    opened_s: float
    frontier_calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    generate_cost: float = 0.0
    llm_time_ns: int = 0


class OpenRequests:
    __slots__ = ("_clock", "_lock", "_open", "evicted_capacity", "evicted_timeout", "max_open", "timeout_s")

    def __init__(self, *, max_open: int, timeout_s: float, clock: Callable[[], float]) -> None:
        self.max_open = max_open
        self.timeout_s = timeout_s
        self._clock = clock
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()
        self.evicted_capacity = 0
        self.evicted_timeout = 0

    def add(self, trace_id: int, call: Call, duration_ns: int) -> None:
        with self._lock:
            entry = self._open.get(trace_id)
            if entry is None:
                if len(self._open) >= self.max_open:
                    del self._open[next(iter(self._open))]
                    self.evicted_capacity += 1
                entry = self._open[trace_id] = _Open(opened_s=self._clock())
            if call.tier == _FRONTIER:
                entry.frontier_calls += 1
            entry.tokens += call.tokens
            if call.cost_usd is not None:
                entry.cost += call.cost_usd
                if call.step == _GENERATE:
                    entry.generate_cost += call.cost_usd
            entry.llm_time_ns += max(0, duration_ns)

    def close(self, trace_id: int, wall_ns: int) -> RequestSample | None:
        """End the request of ``trace_id``; ``None`` if it made no LLM call."""
        if trace_id not in self._open:  # cheap exit for the common non-LLM root span
            return None
        with self._lock:
            entry = self._open.pop(trace_id, None)
        if entry is None:
            return None
        return RequestSample(
            frontier_calls=entry.frontier_calls,
            tokens=entry.tokens,
            generate_share=entry.generate_cost / entry.cost if entry.cost > 0 else None,
            llm_time_share=min(1.0, entry.llm_time_ns / wall_ns) if wall_ns > 0 else None,
        )

    def expire(self) -> None:
        deadline = self._clock() - self.timeout_s
        with self._lock:
            stale = [tid for tid, entry in self._open.items() if entry.opened_s < deadline]
            for tid in stale:
                del self._open[tid]
            self.evicted_timeout += len(stale)

    def __len__(self) -> int:
        return len(self._open)

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._open.clear()
