"""The queue that takes counting off the span's thread: order, wake-up, back-pressure, faults, fork."""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

import pytest

from otel_overspend import Settings, step
from otel_overspend.hooks import queue as background_module
from otel_overspend.hooks.queue import CHUNK, SpanQueue

from conftest import make_pipeline, unavailable

if TYPE_CHECKING:
    from collections.abc import Callable

USAGE: dict[str, str | int] = {
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 2,
}


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class _Recorder:
    def __init__(self) -> None:
        self.items: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, item: int) -> None:
        self.items.append(item)
        self.threads.add(threading.current_thread().name)


def test_the_thread_counts_queued_items_in_order_without_being_asked() -> None:
    seen = _Recorder()
    queue: SpanQueue[int] = SpanQueue(seen, interval_s=0.05, max_queued=2_000)
    queue.items.extend(range(10))
    assert _wait_for(lambda: len(seen.items) == 10)
    assert seen.items == list(range(10))
    assert seen.threads == {"otel-overspend-counter"}
    queue.stop()


def test_spans_never_ended_leave_nothing_behind_in_the_processor() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    with step("rerank"):
        leaked = [p.tracer.start_span(f"never ended {i}") for i in range(200)]
    assert {p.processor.step_of(span) for span in leaked} == {"rerank"}  # held on each span, not here
    refs = [weakref.ref(span) for span in leaked]
    del leaked
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []
    assert p.sample("overspend_spans_dropped_total", {"reason": "internal_error"}) == 0
    p.provider.shutdown()


def test_a_full_queue_is_drained_by_the_thread_that_ends_a_span() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False), count_in_background=False)
    queue = p.processor._queue
    queue.max_queued = 3  # an LLM span queues itself at its end
    for expected_left in (1, 2, 0):  # the third span's end fills the queue: its thread drains it
        with p.tracer.start_as_current_span("chat", attributes=USAGE):
            pass
        assert len(queue.items) == expected_left
    assert p.processor.snapshot().totals
    p.provider.shutdown()


def test_the_span_that_finds_the_queue_full_counts_one_chunk_not_the_whole_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(background_module, "CHUNK", 4)
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False), count_in_background=False)
    queue = p.processor._queue
    queue.max_queued = 10
    left = []
    with step("rerank"):  # an LLM span in a step queues one item, at its end
        for _ in range(15):
            with p.tracer.start_as_current_span("chat", attributes=USAGE):
                pass
            left.append(len(queue.items))
    # The 10th end finds 10 queued and counts the oldest 4; so does every 4th end after it.
    assert left == [1, 2, 3, 4, 5, 6, 7, 8, 9, 6, 7, 8, 9, 6, 7]
    p.processor._items.clear()  # what the chunks counted, and nothing else, is in the ledger
    assert sum(stats[0] for stats in p.processor.snapshot().totals.values()) == 8
    p.provider.shutdown()


def test_a_drain_counts_what_was_queued_before_it_in_chunks_and_ends_under_load() -> None:
    seen = _Recorder()
    queue: SpanQueue[int] = SpanQueue(seen, interval_s=60.0)

    def count_and_queue_more(item: int) -> None:
        seen(item)
        queue.items.append(item + 10_000)  # another thread keeps queueing as fast as we count

    queue._count = count_and_queue_more
    queue.items.extend(range(3 * CHUNK + 5))
    queue.drain()
    assert seen.items == list(range(3 * CHUNK + 5))  # exactly what was queued, oldest first
    assert list(queue.items) == [i + 10_000 for i in range(3 * CHUNK + 5)]
    queue._count = seen
    queue.stop()


def test_drain_and_stop_count_everything_left() -> None:
    seen = _Recorder()
    queue: SpanQueue[int] = SpanQueue(seen, interval_s=60.0)
    queue.items.extend(range(3))
    queue.drain()
    assert seen.items == [0, 1, 2]
    queue.items.append(3)
    queue.stop()
    assert seen.items == [0, 1, 2, 3]


def test_a_count_that_raises_is_logged_once_and_the_thread_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = _Recorder()

    def count(item: int) -> None:
        if item < 0:
            raise RuntimeError("broken")
        seen(item)

    queue: SpanQueue[int] = SpanQueue(count, interval_s=0.02)
    queue.items.extend([-1, -2])
    assert _wait_for(lambda: not queue.items)
    queue.items.extend([1, 2])
    assert _wait_for(lambda: seen.items == [1, 2])
    assert sum("counting queued spans failed" in r.getMessage() for r in caplog.records) == 1
    queue.stop()


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_queued"):
        SpanQueue(lambda _: None, max_queued=0)
    with pytest.raises(ValueError, match="interval_s"):
        SpanQueue(lambda _: None, interval_s=0.0)


def test_llm_spans_are_counted_by_the_thread_before_any_scrape() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    for _ in range(3):
        with p.tracer.start_as_current_span("chat", attributes=USAGE):
            pass
    queue = p.processor._queue  # the internal queue is what is under test
    assert _wait_for(lambda: not queue.items)  # counted within the thread's interval, unasked
    counted = [
        sample.value
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == "overspend_llm_calls_total"
    ]
    assert counted == [3.0]
    p.provider.shutdown()


def test_a_forked_child_gets_its_own_thread_and_an_empty_queue() -> None:
    if not hasattr(os, "fork"):
        unavailable("os.fork is missing (not a POSIX system)")
    seen = _Recorder()
    queue: SpanQueue[int] = SpanQueue(seen, interval_s=0.02, max_queued=2_000)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = not queue.items
        queue.items.extend(range(5))
        ok = ok and _wait_for(lambda: len(seen.items) == 5, timeout_s=3.0)
        os.write(write, b"ok" if ok else b"no")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 2)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"ok"
    queue.stop()
