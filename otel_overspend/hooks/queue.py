"""Ended LLM spans, queued for a background thread to count off the request path.

A span hook only appends the span's record to a queue (atomic, no lock). A daemon thread counts
what is queued every ``interval_s``; anyone who needs the counts up to date (a scrape, a
flush, an exporter asking for a span's attribution) drains the queue itself first.
Draining is serialised by one lock, so spans are counted one at a time, in the order they
ended. When the queue holds ``max_queued`` spans, the thread that ends a span counts one
chunk of ``CHUNK`` of them: memory stays bounded and no span is
lost. Every drain holds the lock for one chunk at a time, so a span's end that finds the
queue full waits for the chunks of the threads ahead of it (a lock is not fair: at times
more than one), never for a whole queue.

The thread is woken by time only: waking it on a count, every few hundred spans, cost the
app's threads more in GIL hand-overs than the counting it moved (see benchmarks/RESULTS.md).

Like the SDK's ``BatchSpanProcessor``, the thread is started again in a forked child.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from otel_overspend.base.forks import reset_in_forked_child

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("SpanQueue",)

_T = TypeVar("_T")
_log = logging.getLogger("otel_overspend")

#: Queued spans that make the span's own thread drain the queue.
MAX_QUEUED: Final = 4_096
INTERVAL_S: Final = 0.5
#: The most items counted under the lock at a time.
CHUNK: Final = 64


class SpanQueue(Generic[_T]):
    """A queue of items, each handed to ``count`` once, in order, by :meth:`drain`.

    ``count`` must not raise (the processor's catches and counts its own failures); if it
    does anyway, the thread logs it once and keeps running.
    """

    __slots__ = (
        "__weakref__",
        "_background",
        "_count",
        "_event",
        "_failed",
        "_interval_s",
        "_lock",
        "_stopped",
        "_thread",
        "items",
        "max_queued",
    )

    def __init__(
        self,
        count: Callable[[_T], None],
        *,
        interval_s: float = INTERVAL_S,
        max_queued: int = MAX_QUEUED,
        background: bool = True,
    ) -> None:
        """``background=False`` starts no thread: items are counted only by :meth:`drain`
        and by a thread that finds the queue full (a test that needs the queue to stay
        put, an app that flushes on its own schedule)."""
        if max_queued < 1 or not interval_s > 0:
            raise ValueError(f"need max_queued >= 1 and interval_s > 0, got {max_queued} and {interval_s}")
        self._count = count
        self._interval_s = interval_s
        self.max_queued = max_queued
        #: Append here (from any thread), then :meth:`drain` when ``len`` reaches ``max_queued``.
        self.items: deque[_T] = deque()
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._stopped = False
        self._failed = False
        self._thread: threading.Thread | None = None
        self._background = background
        self._start()
        reset_in_forked_child(self, SpanQueue._after_fork)

    def _start(self) -> None:
        if self._stopped or not self._background:
            return
        thread = threading.Thread(target=self._run, name="otel-overspend-counter", daemon=True)
        self._thread = thread
        thread.start()

    def drain(self) -> None:
        """Count every item queued before the call, a chunk at a time."""
        items = self.items
        lock = self._lock
        count = self._count
        left = len(items)
        while True:
            with lock:
                for _ in range(min(left, CHUNK, len(items))):
                    count(items.popleft())
                left -= CHUNK
                if left <= 0 or not items:
                    # FIFO: whatever was queued before the call has been counted, by this
                    # thread or by another, whose chunk ended before this one began.
                    return

    def run_locked(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` while no item is being counted (as if it were one)."""
        with self._lock:
            fn()

    def drain_chunk(self) -> None:
        """Count the oldest ``CHUNK`` items: the share of the thread that found the queue full."""
        with self._lock:
            items = self.items
            count = self._count
            for _ in range(min(CHUNK, len(items))):
                count(items.popleft())

    def _run(self) -> None:
        event = self._event
        while not self._stopped:
            event.wait(self._interval_s)
            event.clear()
            if self.items:
                try:
                    self.drain()
                except Exception:
                    if not self._failed:
                        self._failed = True
                        _log.exception("otel_overspend: counting queued spans failed (logged once)")

    def stop(self) -> None:
        """Stop the thread and count what is left."""
        self._stopped = True
        self._event.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self.drain()

    def _after_fork(self) -> None:
        # The parent's thread is gone and another of its threads may have held the lock.
        self._lock = threading.Lock()
        self._event = threading.Event()
        self.items.clear()  # the same deque: span hooks hold it
        self._start()
