"""Rolling windows of the ledger, driven through a real span pipeline and a fake clock.

Default windows 5m, 1h, 1d, 7d, each kept as 60 buckets: a window of W covers at least the
last 59/60 W (a 5m window at least the last 295 s), never more than W.
"""

from __future__ import annotations

import pytest
from diag_workloads import (
    FRONTIER,
    PROVIDER,
    T0,
    UNKNOWN,
    WINDOWS,
    Call,
    llm_span,
    pipeline,
    request,
    window_sample,
)

from otel_overspend.accounting.ledger import CALLS, COST, INPUT

from conftest import FakeClock, Pipeline

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
SECONDS = {"5m": 300, "1h": 3600, "1d": 86400, "7d": 604800}

# One generate call of 1,000 in / 100 out on the $3/$15 model:
# 1,000 x 3 + 100 x 15 = 4,500 micro-dollars.
GENERATE = Call("generate", FRONTIER, 1_000, 100)
GENERATE_COST = 0.0045
# One rerank call of 2,000 in / 0 out: 2,000 x 3 = 6,000 micro-dollars.
RERANK = Call("rerank", FRONTIER, 2_000, 0)
RERANK_COST = 0.006


def labels(call: Call) -> dict[str, str]:
    assert call.step is not None
    return {"step": call.step, "model": call.model, "tier": "frontier", "provider": PROVIDER}


def calls_per_window(p: Pipeline, step: str | None = None) -> dict[str, float]:
    """Calls in each window (optionally of one step), from the processor's snapshot."""
    snap = p.processor.snapshot()
    by_seconds = {
        view.seconds: sum(s[CALLS] for key, s in view.calls.items() if step is None or key[0] == step)
        for view in snap.windows
    }
    return {label: by_seconds[seconds] for label, seconds in SECONDS.items()}


def in_windows(counts: dict[str, float]) -> set[str]:
    return {window for window, n in counts.items() if n > 0}


def test_a_call_leaves_each_window_when_it_is_older_than_the_window() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    request(p.tracer, [GENERATE], start_s=T0 - 1, end_s=T0)

    assert calls_per_window(p) == {"5m": 1, "1h": 1, "1d": 1, "7d": 1}

    clock.advance(4 * MINUTE)  # 240 s old: still inside every window
    assert in_windows(calls_per_window(p)) == set(WINDOWS)

    clock.advance(2 * MINUTE)  # 6 minutes old
    assert calls_per_window(p) == {"5m": 0, "1h": 1, "1d": 1, "7d": 1}
    assert window_sample(p, "overspend_tokens_per_request", "5m") is None
    assert window_sample(p, "overspend_tokens_per_request", "1h") == 1_100.0

    clock.advance(2 * HOUR - 6 * MINUTE)  # 2 hours old
    assert calls_per_window(p) == {"5m": 0, "1h": 0, "1d": 1, "7d": 1}
    assert window_sample(p, "overspend_generate_cost_share", "1h") is None
    assert window_sample(p, "overspend_generate_cost_share", "1d") == 1.0

    clock.advance(8 * DAY)  # older than every window
    assert calls_per_window(p) == {"5m": 0, "1h": 0, "1d": 0, "7d": 0}

    # The counters are cumulative: expiring from the windows takes nothing from them.
    assert p.sample("overspend_llm_calls_total", labels(GENERATE)) == 1.0
    assert p.sample("overspend_llm_cost_usd_total", labels(GENERATE)) == GENERATE_COST
    assert p.sample("overspend_requests_total") == 1.0


def test_windows_sum_only_what_is_inside_them() -> None:
    # Calls 1 minute, 30 minutes and 5 hours before now: 5m sees 1, 1h sees 2, 1d and 7d see 3.
    clock = FakeClock(T0)
    p = pipeline(clock)
    for age in (5 * HOUR, 30 * MINUTE, 1 * MINUTE):
        request(p.tracer, [GENERATE], start_s=T0 - age - 1, end_s=T0 - age)

    assert calls_per_window(p) == {"5m": 1, "1h": 2, "1d": 3, "7d": 3}
    snap = p.processor.snapshot()
    tokens = {view.seconds: sum(s[INPUT] for s in view.calls.values()) for view in snap.windows}
    assert tokens == {300: 1_000, 3600: 2_000, 86400: 3_000, 604800: 3_000}
    assert p.sample("overspend_llm_calls_total", labels(GENERATE)) == 3.0


def test_a_late_span_lands_in_the_windows_its_end_time_belongs_to() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    request(p.tracer, [GENERATE], start_s=T0 - 2, end_s=T0 - 1)
    # Arrives after the newer span, but ended 30 minutes (and 7 minutes) ago.
    request(p.tracer, [RERANK], start_s=T0 - 30 * MINUTE - 1, end_s=T0 - 30 * MINUTE)
    request(p.tracer, [RERANK], start_s=T0 - 7 * MINUTE - 1, end_s=T0 - 7 * MINUTE)

    assert calls_per_window(p, "rerank") == {"5m": 0, "1h": 2, "1d": 2, "7d": 2}
    assert calls_per_window(p, "generate") == {"5m": 1, "1h": 1, "1d": 1, "7d": 1}
    # 5m holds generate alone; 1h: 2 x 6,000 rerank / (12,000 + 4,500) = 12/16.5.
    assert window_sample(p, "overspend_specialist_eligible_fraction", "5m") == 0.0
    assert window_sample(p, "overspend_specialist_eligible_fraction", "1h") == pytest.approx(12 / 16.5)
    assert p.sample("overspend_llm_calls_total", labels(RERANK)) == 2.0
    assert p.sample("overspend_spans_dropped_total", {"reason": "too_old"}) == 0


def test_a_late_span_inside_the_shortest_window_is_counted_in_it() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    request(p.tracer, [GENERATE], start_s=T0 - 1, end_s=T0)
    request(p.tracer, [RERANK], start_s=T0 - 2 * MINUTE - 1, end_s=T0 - 2 * MINUTE)

    assert calls_per_window(p, "rerank") == {"5m": 1, "1h": 1, "1d": 1, "7d": 1}


def test_a_span_older_than_the_longest_window_is_dropped_and_counted() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    request(p.tracer, [GENERATE], start_s=T0 - 1, end_s=T0)
    # A lone LLM span (its own root) that ended 8 days ago.
    llm_span(p.tracer, RERANK, parent=None, start_s=T0 - 8 * DAY - 1, end_s=T0 - 8 * DAY)

    assert p.sample("overspend_spans_dropped_total", {"reason": "too_old"}) == 1.0
    assert p.sample("overspend_llm_calls_total", labels(RERANK)) is None
    assert p.sample("overspend_llm_tokens_total", {**labels(RERANK), "kind": "input"}) is None
    assert p.sample("overspend_llm_cost_usd_total", labels(RERANK)) is None
    assert calls_per_window(p, "rerank") == {"5m": 0, "1h": 0, "1d": 0, "7d": 0}
    assert calls_per_window(p, "generate") == {"5m": 1, "1h": 1, "1d": 1, "7d": 1}
    # It was a request of its own: not one that is counted.
    assert p.sample("overspend_requests_total") == 1.0


def test_a_span_dated_in_the_future_is_counted_now() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    request(p.tracer, [RERANK], start_s=T0 + HOUR - 1, end_s=T0 + HOUR)

    assert calls_per_window(p, "rerank") == {"5m": 1, "1h": 1, "1d": 1, "7d": 1}
    assert p.sample("overspend_llm_calls_total", labels(RERANK)) == 1.0
    # Recorded at "now", not an hour ahead: six minutes later it has left the 5m window.
    clock.advance(6 * MINUTE)
    assert calls_per_window(p, "rerank") == {"5m": 0, "1h": 1, "1d": 1, "7d": 1}


def test_a_window_view_holds_one_entry_per_series_whatever_the_number_of_spans() -> None:
    # 10,000 calls on 2 series, 4 every 0.6 s over 25 minutes of fake time.
    clock = FakeClock(T0)
    p = pipeline(clock)
    for i in range(5_000):
        llm_span(p.tracer, GENERATE, parent=None, start_s=clock.now - 0.1, end_s=clock.now)
        llm_span(p.tracer, RERANK, parent=None, start_s=clock.now - 0.1, end_s=clock.now)
        if i % 2:
            clock.advance(0.6)

    snap = p.processor.snapshot()
    assert len(snap.totals) == 2
    for view in snap.windows:
        assert len(view.calls) == 2
    hour = next(view for view in snap.windows if view.seconds == 3600)
    gen = hour.calls[("generate", FRONTIER, "frontier", PROVIDER)]
    assert gen[CALLS] == 5_000
    assert gen[COST] == pytest.approx(5_000 * GENERATE_COST, rel=1e-9)
    five = next(view for view in snap.windows if view.seconds == 300)
    # The 5m window covers between the last 295 s (1,964 calls) and 300 s (2,000 calls).
    assert 1_960 <= sum(s[CALLS] for s in five.calls.values()) <= 2_000


def test_expired_spend_leaves_no_residue_behind_an_unpriced_call() -> None:
    # One series (an unknown model): two calls priced by their span's own cost, $0.1 and $0.2,
    # 290 and 280 s ago, then the same model without a cost 10 s ago (unpriced).
    clock = FakeClock(T0)
    p = pipeline(clock)
    for age, cost in ((290, 0.1), (280, 0.2), (10, None)):
        request(
            p.tracer, [Call("rerank", UNKNOWN, 1_000, 0, cost_usd=cost)], start_s=T0 - age - 1, end_s=T0 - age
        )
    assert window_sample(p, "overspend_specialization_headroom_usd", "5m") == pytest.approx(0.3, abs=1e-3)

    clock.advance(100)  # the priced calls are 390 and 380 s old; the unpriced one 110 s
    assert calls_per_window(p) == {"5m": 1, "1h": 3, "1d": 3, "7d": 3}
    # The 5m window has no priced spend left: no cost-based signal, like any unpriced window.
    assert window_sample(p, "overspend_specialist_eligible_fraction", "5m") is None
    assert window_sample(p, "overspend_projected_cost_reduction_ratio", "5m") is None


def test_a_short_window_or_one_not_a_whole_minute_covers_its_own_length() -> None:
    # 10 s and 90 s: buckets of one second, as many as cover each window (60 of them made
    # the 10 s window hold a minute and the 90 s one drop calls after a minute).
    clock = FakeClock(T0)
    p = pipeline(clock, windows="10s,90s")
    request(p.tracer, [GENERATE], start_s=T0 - 1, end_s=T0)

    def calls_by_window() -> dict[int, float]:
        snap = p.processor.snapshot()
        return {view.seconds: sum(s[CALLS] for s in view.calls.values()) for view in snap.windows}

    clock.advance(9)
    assert calls_by_window() == {10: 1, 90: 1}
    clock.advance(6)  # 15 s old
    assert calls_by_window() == {10: 0, 90: 1}
    clock.advance(70)  # 85 s old
    assert calls_by_window() == {10: 0, 90: 1}
    clock.advance(10)  # 95 s old
    assert calls_by_window() == {10: 0, 90: 0}
