"""A fork while another thread of the parent holds the span path's locks.

The thread that held a lock at the fork does not exist in the child, so nobody would ever
release the child's copy: every lock the span path takes must be new in the child, or its
first call of a new model (which caches a series under a lock) hangs the worker for good.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import warnings
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_overspend import Settings

from conftest import Pipeline, make_pipeline, unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

# A catalog frontier model without genai-prices: the frontier tier's default price,
# $3 / $15 per 1M tokens: 1,000 in and 100 out = 0.003 + 0.0015 = $0.0045.
USAGE: dict[str, str | int] = {
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.usage.input_tokens": 1_000,
    "gen_ai.usage.output_tokens": 100,
}
LABELS = {"model": "claude-sonnet-4-5", "provider": "anthropic", "step": "unattributed", "tier": "frontier"}
CHILD_DEADLINE_S = 20.0


@contextlib.contextmanager
def _held_by_another_thread(locks: list[threading.Lock]) -> Iterator[None]:
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        holding.set()
        release.wait()
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold, name="holds-the-locks")
    holder.start()
    assert holding.wait(5.0)
    try:
        yield
    finally:
        release.set()
        holder.join()


def _count_one_call(p: Pipeline, reader: InMemoryMetricReader) -> str:
    """In the child: one LLM call, then its calls and cost from Prometheus and from OTel metrics."""
    with p.tracer.start_as_current_span("request"), p.tracer.start_as_current_span("chat", attributes=USAGE):
        pass
    p.processor.force_flush()
    data = reader.get_metrics_data()
    assert data is not None
    otel_cost = 0.0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points if metric.name == "overspend.llm.cost" else ():
                    otel_cost += float(point.value)  # type: ignore[union-attr]
    calls = p.sample("overspend_llm_calls_total", LABELS)
    cost = p.sample("overspend_llm_cost_usd_total", LABELS)
    return f"{calls} {cost} {otel_cost}"


def _answer_of(pid: int, read: int) -> str:
    try:
        ready, _, _ = select.select([read], [], [], CHILD_DEADLINE_S)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the forked child hung for {CHILD_DEADLINE_S:.0f} s: an inherited lock was held")
        return os.read(read, 100).decode()
    finally:
        os.waitpid(pid, 0)
        os.close(read)


def test_a_child_forked_while_the_parent_holds_every_lock_still_counts() -> None:
    if not hasattr(os, "fork"):
        unavailable("os.fork is missing (not a POSIX system)")
    reader = InMemoryMetricReader()
    settings = Settings(serve_metrics=False, use_genai_prices=False)
    p = make_pipeline(settings, meter_provider=MeterProvider(metric_readers=[reader]))
    processor = p.processor
    assert processor.otel_metrics is not None
    # White box: the locks under test, each held by a thread of the parent at the fork.
    attributor = processor._parts.attributor
    locks = [
        attributor._lock,
        attributor._resolver._lock,
        processor._ledger._lock,
        processor._requests._lock,
        *(cap._lock for cap in processor._parts.caps),
        processor.otel_metrics._lock,
    ]
    read, write = os.pipe()
    with _held_by_another_thread(locks), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns of a threaded fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            answer = "failed"
            try:
                answer = _count_one_call(p, reader)
            finally:
                os.write(write, answer.encode())
                os._exit(0)
    os.close(write)
    answer = _answer_of(pid, read)
    p.provider.shutdown()
    calls, cost, otel_cost = answer.split()
    assert float(calls) == 1.0
    assert float(cost) == pytest.approx(0.0045)
    assert float(otel_cost) == pytest.approx(0.0045)
