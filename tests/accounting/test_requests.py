"""Open requests and the per-request numbers, through a real span pipeline and a fake clock.

Prices (USD per 1M tokens, in / out): acme-frontier 3 / 15, acme-mini 0.05 / 0.20.
"""

from __future__ import annotations

import pytest
from diag_workloads import (
    FRONTIER,
    MINI,
    T0,
    Call,
    llm_span,
    ns,
    pipeline,
    request,
    start_root,
    window_sample,
)
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_overspend.accounting.signals import diagnose

from conftest import FakeClock, Pipeline


def evicted(p: Pipeline, reason: str) -> float | None:
    return p.sample("overspend_open_requests_evicted_total", {"reason": reason})


def test_the_open_request_table_is_bounded_and_evictions_are_counted() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, max_open_requests=3)
    # Five requests open at once; request i makes one call of 1,000 x (i + 1) input tokens.
    roots = [start_root(p.tracer, T0 - 10) for _ in range(5)]
    for i, root in enumerate(roots):
        llm_span(
            p.tracer, Call("generate", FRONTIER, 1_000 * (i + 1)), parent=root, start_s=T0 - 9, end_s=T0 - 8
        )
    for root in roots:
        root.end(end_time=ns(T0 - 5))

    # The 4th and 5th requests pushed out the two oldest.
    assert evicted(p, "capacity") == 2.0
    assert evicted(p, "timeout") == 0.0
    assert p.sample("overspend_requests_total") == 3.0
    # The survivors are requests 3, 4 and 5: (3,000 + 4,000 + 5,000) / 3.
    assert window_sample(p, "overspend_tokens_per_request", "5m") == 4_000.0
    # Every call is still in the counters.
    assert (
        p.sample(
            "overspend_llm_calls_total",
            {"step": "generate", "model": FRONTIER, "tier": "frontier", "provider": "acme"},
        )
        == 5.0
    )


def test_a_request_open_past_the_timeout_is_evicted_at_scrape() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, request_timeout_seconds=60)
    stale = start_root(p.tracer, T0 - 1)
    llm_span(p.tracer, Call("generate", FRONTIER, 1_000, 100), parent=stale, start_s=T0 - 1, end_s=T0)

    clock.advance(59)
    assert evicted(p, "timeout") == 0.0
    fresh = start_root(p.tracer, clock.now)
    llm_span(
        p.tracer, Call("generate", FRONTIER, 2_000, 200), parent=fresh, start_s=clock.now, end_s=clock.now
    )

    clock.advance(2)  # the first request has been open 61 s, the second 2 s
    assert evicted(p, "timeout") == 1.0
    stale.end(end_time=ns(clock.now))
    fresh.end(end_time=ns(clock.now))

    assert evicted(p, "timeout") == 1.0
    assert evicted(p, "capacity") == 0.0
    assert p.sample("overspend_requests_total") == 1.0
    assert window_sample(p, "overspend_tokens_per_request", "5m") == 2_200.0


def test_a_request_without_an_llm_call_is_not_a_request() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    root = start_root(p.tracer, T0 - 2)
    child = p.tracer.start_span("SELECT docs", context=trace.set_span_in_context(root), start_time=ns(T0 - 2))
    child.end(end_time=ns(T0 - 1))
    root.end(end_time=ns(T0))

    assert p.sample("overspend_requests_total") == 0.0
    assert p.sample("overspend_request_tokens_count") == 0.0
    assert window_sample(p, "overspend_tokens_per_request", "5m") is None

    request(p.tracer, [Call("generate", FRONTIER, 1_000, 100)], start_s=T0 - 1, end_s=T0)
    assert p.sample("overspend_requests_total") == 1.0


def test_a_local_root_under_a_remote_parent_closes_the_request() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    remote = NonRecordingSpan(
        SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    )
    root = p.tracer.start_span("handle", context=trace.set_span_in_context(remote), start_time=ns(T0 - 4))
    llm_span(p.tracer, Call("generate", FRONTIER, 1_000, 100), parent=root, start_s=T0 - 4, end_s=T0 - 3)
    root.end(end_time=ns(T0))

    assert p.sample("overspend_requests_total") == 1.0
    # 1 s of LLM call in a 4 s request.
    assert window_sample(p, "overspend_llm_time_share_per_request", "5m") == pytest.approx(0.25)


def test_an_llm_span_that_is_its_own_root_is_a_request() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    llm_span(p.tracer, Call("generate", FRONTIER, 1_000, 100), parent=None, start_s=T0 - 2, end_s=T0)

    assert p.sample("overspend_requests_total") == 1.0
    assert window_sample(p, "overspend_llm_time_share_per_request", "5m") == 1.0
    assert window_sample(p, "overspend_frontier_calls_per_request", "5m") == 1.0


# Three requests, with times in seconds before T0:
#   A: root 20 -> 10 (10 s); rerank frontier 1,000/100 from 19.5 to 17.5 (2 s),
#      generate frontier 2,000/200 from 17 to 16 (1 s).
#      2 frontier calls, 3,300 tokens, LLM time 3 / 10 = 0.3,
#      generate share 9,000 / (4,500 + 9,000) = 2/3
#   B: root 8 -> 4 (4 s); generate frontier 500/50 from 7 to 5 (2 s).
#      1 frontier call, 550 tokens, LLM time 2 / 4 = 0.5, generate share 1
#   C: root 3 -> 1 (2 s); generate frontier 10,000/1,000 and rerank mini 5,000/0, both 3 -> 1.
#      1 frontier call, 16,000 tokens, LLM time 4 / 2 capped at 1,
#      generate share 45,000 / (45,000 + 250) (micro-dollars)
REQUESTS = (
    (
        20,
        10,
        [
            Call("rerank", FRONTIER, 1_000, 100, start_s=T0 - 19.5, end_s=T0 - 17.5),
            Call("generate", FRONTIER, 2_000, 200, start_s=T0 - 17, end_s=T0 - 16),
        ],
    ),
    (8, 4, [Call("generate", FRONTIER, 500, 50, start_s=T0 - 7, end_s=T0 - 5)]),
    (3, 1, [Call("generate", FRONTIER, 10_000, 1_000), Call("rerank", MINI, 5_000, 0)]),
)


@pytest.fixture
def three_requests() -> Pipeline:
    clock = FakeClock(T0)
    p = pipeline(clock)
    for start_ago, end_ago, calls in REQUESTS:
        request(p.tracer, calls, start_s=T0 - start_ago, end_s=T0 - end_ago)
    return p


@pytest.mark.parametrize("window", ["5m", "1h", "1d", "7d"])
def test_per_request_means(three_requests: Pipeline, window: str) -> None:
    p = three_requests
    assert window_sample(p, "overspend_frontier_calls_per_request", window) == pytest.approx(4 / 3)
    assert window_sample(p, "overspend_tokens_per_request", window) == pytest.approx(19_850 / 3)
    assert window_sample(p, "overspend_llm_time_share_per_request", window) == pytest.approx(
        (0.3 + 0.5 + 1.0) / 3, rel=1e-6
    )


def test_per_request_diagnosis(three_requests: Pipeline) -> None:
    snap = three_requests.processor.snapshot()
    d = diagnose(snap.windows[0].calls, snap.windows[0].requests)
    assert d.requests == 3
    assert d.heavy_request_share == 0.0  # none has 3 or more frontier calls
    assert d.generate_share_per_request == pytest.approx((2 / 3 + 1 + 45_000 / 45_250) / 3)


def test_per_request_histograms(three_requests: Pipeline) -> None:
    p = three_requests
    frontier = {
        le: p.sample("overspend_request_frontier_calls_bucket", {"le": le})
        for le in ("0.0", "1.0", "2.0", "3.0", "5.0", "8.0", "+Inf")
    }
    # Frontier calls 2, 1, 1 (cumulative buckets).
    assert frontier == {"0.0": 0, "1.0": 2, "2.0": 3, "3.0": 3, "5.0": 3, "8.0": 3, "+Inf": 3}
    assert p.sample("overspend_request_frontier_calls_count") == 3.0
    assert p.sample("overspend_request_frontier_calls_sum") == 4.0

    tokens = {
        le: p.sample("overspend_request_tokens_bucket", {"le": le})
        for le in ("1000.0", "2500.0", "5000.0", "10000.0", "15000.0", "25000.0", "50000.0", "+Inf")
    }
    # Tokens 3,300, 550, 16,000.
    assert tokens == {
        "1000.0": 1,
        "2500.0": 1,
        "5000.0": 2,
        "10000.0": 2,
        "15000.0": 2,
        "25000.0": 3,
        "50000.0": 3,
        "+Inf": 3,
    }
    assert p.sample("overspend_request_tokens_count") == 3.0
    assert p.sample("overspend_request_tokens_sum") == 19_850.0


def test_interleaved_requests_keep_their_own_calls() -> None:
    # Two traces open at once, their calls interleaved: A makes 3 frontier calls, B one.
    clock = FakeClock(T0)
    p = pipeline(clock)
    a, b = start_root(p.tracer, T0 - 10), start_root(p.tracer, T0 - 10)
    call = Call("generate", FRONTIER, 1_000, 0)
    for parent in (a, b, a, a):
        llm_span(p.tracer, call, parent=parent, start_s=T0 - 9, end_s=T0 - 8)
    b.end(end_time=ns(T0 - 5))
    a.end(end_time=ns(T0 - 5))

    assert p.sample("overspend_request_frontier_calls_bucket", {"le": "1.0"}) == 1.0
    assert p.sample("overspend_request_frontier_calls_bucket", {"le": "3.0"}) == 2.0
    assert p.sample("overspend_request_tokens_sum") == 4_000.0
    assert window_sample(p, "overspend_frontier_calls_per_request", "5m") == 2.0
    snap = p.processor.snapshot()
    assert diagnose(snap.windows[0].calls, snap.windows[0].requests).heavy_request_share == 0.5
