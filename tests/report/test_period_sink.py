"""The report's per-period sums: each call and request lands in the UTC day or week
(weeks from Monday) its span ended in, whatever order they come in; the last 24 UTC hours
of the data are also summed on their own (the recommendation reads them)."""

from __future__ import annotations

import math
import random

import pytest

from otel_overspend.accounting.ledger import (
    CALLS,
    COST,
    INPUT,
    REQUESTS,
    TOKENS,
    CallStats,
    Key,
    RequestSample,
    accumulate_call,
)
from otel_overspend.calls.attribution import Call
from otel_overspend.report.replay import DAY_S, HOUR_S, WEEK_S, PeriodSink

MONDAY = 1_793_577_600  # 2026-11-02 00:00:00 UTC, a Monday
KEY = ("rerank", "m", "frontier", "p")


def _call(tokens_in: int, cost_usd: float) -> Call:
    return Call("rerank", "m", "frontier", "p", tokens_in, 0, 0, 0, cost_usd, cost_usd, KEY)


def _sums(sink: PeriodSink, period_s: int | None) -> list[tuple[int, float, float, float, float, float]]:
    """(start, calls, input tokens, cost, requests, request tokens) per period."""
    return [
        (start, calls[KEY][CALLS], calls[KEY][INPUT], calls[KEY][COST], req[REQUESTS], req[TOKENS])
        if KEY in calls
        else (start, 0.0, 0.0, 0.0, req[REQUESTS], req[TOKENS])
        for start, calls, req in sink.periods(period_s)
    ]


def test_days_split_at_midnight_and_take_late_spans_back() -> None:
    sink = PeriodSink()
    for end_s, tokens, cost in (
        (MONDAY + 10, 100, 0.5),
        (MONDAY + DAY_S - 0.001, 200, 0.25),
        (MONDAY + DAY_S, 400, 2.0),  # Tuesday's first instant
        (MONDAY + 20, 800, 4.0),  # late: back to Monday
        (math.nan, 1_600, 8.0),  # no time: the first period
    ):
        sink.add_call(_call(tokens, cost), end_s)
        sink.add_request(RequestSample(1, tokens, None, None), end_s)
    assert _sums(sink, DAY_S) == [
        (0, 1.0, 1_600.0, 8.0, 1.0, 1_600.0),
        (MONDAY, 3.0, 1_100.0, 4.75, 3.0, 1_100.0),
        (MONDAY + DAY_S, 1.0, 400.0, 2.0, 1.0, 400.0),
    ]
    calls, requests = sink.totals()
    assert calls[KEY][CALLS] == 5.0
    assert calls[KEY][COST] == 14.75
    assert requests[TOKENS] == 3_100.0


def test_weeks_start_on_monday_and_no_period_is_one_period() -> None:
    weeks, whole = PeriodSink(), PeriodSink()
    for sink in (weeks, whole):
        sink.add_call(_call(1, 1.0), MONDAY + WEEK_S - 1)  # Sunday 23:59:59
        sink.add_call(_call(2, 2.0), MONDAY + WEEK_S)  # the next Monday
        sink.add_call(_call(4, 4.0), math.inf)
    assert [(start, n, tokens) for start, n, tokens, *_ in _sums(weeks, WEEK_S)] == [
        (0, 1.0, 4.0),
        (MONDAY, 1.0, 1.0),
        (MONDAY + WEEK_S, 1.0, 2.0),
    ]
    assert [(start, n, tokens) for start, n, tokens, *_ in _sums(whole, None)] == [(0, 3.0, 7.0)]


def test_the_last_24_hours_are_summed_apart_and_older_hours_fold_into_their_days() -> None:
    sink = PeriodSink()
    # One call an hour for three days, from Monday 00:30; then one late call on Monday.
    for hour in range(72):
        sink.add_call(_call(hour, 1.0), MONDAY + hour * HOUR_S + 1_800)
    sink.add_call(_call(10_000, 1.0), MONDAY + 5)
    assert sink.recent_start_s == MONDAY + 48 * HOUR_S  # hours 48..71: Wednesday
    recent, _ = sink.recent()
    assert recent[KEY][CALLS] == 24.0
    assert recent[KEY][INPUT] == sum(range(48, 72))
    days = [(start, n, tokens) for start, n, tokens, *_ in _sums(sink, DAY_S)]
    assert days == [
        (MONDAY, 25.0, sum(range(24)) + 10_000.0),
        (MONDAY + DAY_S, 24.0, float(sum(range(24, 48)))),
        (MONDAY + 2 * DAY_S, 24.0, float(sum(range(48, 72)))),
    ]
    # Reading does not change the sums.
    assert sink.totals()[0][KEY][CALLS] == 73.0
    assert sink.totals()[0][KEY][INPUT] == sum(range(72)) + 10_000.0


def test_sums_are_the_ledgers_and_the_same_however_split() -> None:
    """The sink sums a call as the ledger does; and the sums of any split of the calls,
    merged, equal the sums of one pass to the last bit (dollars are summed exactly)."""
    rng = random.Random(3)
    calls = [
        Call(
            rng.choice(("rerank", "generate")),
            "m",
            "frontier",
            "p",
            rng.randint(1, 20_000),
            rng.randint(0, 900),
            rng.randint(0, 50),
            0,
            rng.random() / 7 if rng.random() > 0.1 else None,
            rng.random() / 9 if rng.random() > 0.2 else None,
            ("rerank", "m", "frontier", "p"),
        )
        for _ in range(2_000)
    ]
    times = [MONDAY + rng.uniform(0, 3 * DAY_S) for _ in calls]
    ledger: dict[Key, CallStats] = {}
    for call in calls:
        accumulate_call(ledger, call)
    whole = PeriodSink()
    for call, t in zip(calls, times, strict=True):
        whole.add_call(call, t)
    (expected,) = ledger.values()
    (summed,) = whole.totals()[0].values()
    assert summed[: CALLS + 5] == tuple(expected[: CALLS + 5])  # counts and tokens: exact either way
    assert summed == pytest.approx(tuple(expected), rel=1e-12)
    assert summed[COST] == math.fsum(c.cost_usd for c in calls if c.cost_usd is not None)
    for cut in (1, 777, 1_999):
        a, b = PeriodSink(), PeriodSink()
        for i, (call, t) in enumerate(zip(calls, times, strict=True)):
            (a if (i * 7919) % 2_000 < cut else b).add_call(call, t)
        b.absorb(*a.state())
        assert b.totals() == whole.totals()
        assert b.periods(DAY_S) == whole.periods(DAY_S)
        assert b.recent() == whole.recent()
