"""Step time and oracle checks (``otel_overspend.accounting.observations``), by hand."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_overspend import record_oracle_check, step
from otel_overspend.accounting import observations as obs
from otel_overspend.accounting.observations import Observations
from otel_overspend.accounting.step_time import ADDED, COUNT, MAX_OPEN_REQUESTS, MAX_STEPS, REQUEST
from otel_overspend.thresholds import STEP_TIME_BUCKETS

from conftest import FakeClock

T0 = 1_800_000_000.0


class PerfClock(FakeClock):
    def __init__(self) -> None:
        super().__init__(100.0)


def bucket(seconds: float) -> int:
    """Index of the bucket (after count, added, request) holding ``seconds``."""
    for i, bound in enumerate(STEP_TIME_BUCKETS):
        if seconds <= bound:
            return 3 + i
    return 3 + len(STEP_TIME_BUCKETS)


def test_overlapping_blocks_of_a_step_count_once() -> None:
    o = Observations(clock=FakeClock(T0), perf_clock=PerfClock())
    # Trace 7: two parallel rerank blocks 0.0-0.2 and 0.1-0.4 (they end in that order), a
    # third 0.5-0.6, generate 0.6-1.0. rerank adds 0.4 + 0.1 = 0.5 s; the request takes 1.0 s.
    o.step_done("rerank", 7, 100.0, 100.2)
    o.step_done("rerank", 7, 100.1, 100.4)
    o.step_done("rerank", 7, 100.5, 100.6)
    o.step_done("generate", 7, 100.6, 101.0)
    o.settle(everything=True)
    snap = o.snapshot()
    rerank, generate = snap.step_times["rerank"], snap.step_times["generate"]
    assert rerank[COUNT] == 1
    assert rerank[ADDED] == pytest.approx(0.5)
    assert rerank[REQUEST] == pytest.approx(1.0)
    assert rerank[bucket(0.5)] == 1
    assert generate[ADDED] == pytest.approx(0.4)
    counts, added, request = snap.windows[0].step_times["rerank"]
    assert sum(counts) == 1
    assert added == pytest.approx(0.5)
    assert request == pytest.approx(1.0)


def test_a_block_nested_in_a_blocks_of_its_step_is_the_outer_one_alone() -> None:
    o = Observations(clock=FakeClock(T0), settle_seconds=0.0)
    obs.install(o)
    try:
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("request"), step("rerank"), step("score"), step("rerank"):
            pass
        with step("rerank"):  # outside any span: a request of its own
            pass
    finally:
        obs.uninstall(o)
    o.settle(everything=True)
    snap = o.snapshot()
    assert snap.step_times["rerank"][COUNT] == 2
    assert snap.step_times["score"][COUNT] == 1


def test_a_generator_step_is_not_timed() -> None:
    o = Observations(clock=FakeClock(T0), settle_seconds=0.0)

    @step("stream")
    def produce() -> object:
        yield 1

    obs.install(o)
    try:
        assert list(produce()) == [1]  # type: ignore[call-overload]
    finally:
        obs.uninstall(o)
    assert "stream" not in o.snapshot().step_times


def test_a_quiet_request_is_observed_when_another_step_ends() -> None:
    perf = PerfClock()
    o = Observations(clock=FakeClock(T0), perf_clock=perf, settle_seconds=2.0)
    o.step_done("rerank", 1, 100.0, 100.3)
    o.step_done("rerank", 2, 102.0, 102.2)  # 102.2 - 2 = 100.2: request 1 is still open
    assert o.snapshot().step_times == {}
    o.step_done("rerank", 3, 103.0, 103.1)  # 101.1 > 100.3: request 1 is observed
    assert o.snapshot().step_times["rerank"][COUNT] == 1


def test_oracle_checks_by_verdict_scores_and_labels() -> None:
    clock = FakeClock(T0)
    o = Observations(clock=clock)
    obs.install(o)
    try:
        assert record_oracle_check("faithfulness", agreed=True)
        assert record_oracle_check("faithfulness", student=0.82, teacher=0.75)  # 0.07 <= 0.1
        assert not record_oracle_check("faithfulness", student=0.9, teacher=0.5)  # 0.4 > 0.1
        clock.advance(60)
        assert not record_oracle_check("faithfulness", student="supported", teacher="unsupported")
        with pytest.raises(ValueError, match="both student= and teacher="):
            record_oracle_check("faithfulness", student=0.5)
        with pytest.raises(ValueError, match="invalid step name"):
            record_oracle_check("Faith Fulness", agreed=True)
    finally:
        obs.uninstall(o)
    snap = o.snapshot()
    assert snap.agreements["faithfulness"] == (4.0, 2.0)
    assert snap.last_checks["faithfulness"] == T0 + 60
    assert snap.windows[0].agreements["faithfulness"] == (4.0, 2.0)


def test_windows_forget_old_checks_and_totals_keep_them() -> None:
    clock = FakeClock(T0)
    o = Observations(clock=clock, window_seconds=(300, 3600))
    o.oracle_check("rerank", agreed=False)
    clock.advance(600)  # past the 5-minute window, inside the hour
    o.oracle_check("rerank", agreed=True)
    snap = o.snapshot()
    assert snap.windows[0].agreements["rerank"] == (1.0, 1.0)
    assert snap.windows[1].agreements["rerank"] == (2.0, 1.0)
    assert snap.agreements["rerank"] == (2.0, 1.0)


def test_a_short_window_or_one_not_a_whole_minute_covers_its_own_length() -> None:
    clock = FakeClock(T0)
    o = Observations(clock=clock, window_seconds=(10, 90))
    o.oracle_check("rerank", agreed=False)
    clock.advance(15)  # past the 10 s window (it held a minute with 60 one-second buckets)
    o.oracle_check("rerank", agreed=True)
    assert [w.agreements["rerank"] for w in o.snapshot().windows] == [(1.0, 1.0), (2.0, 1.0)]
    clock.advance(70)  # the first check 85 s old: inside 90 s (it was dropped after a minute)
    assert [w.agreements.get("rerank") for w in o.snapshot().windows] == [None, (2.0, 1.0)]


def test_step_labels_are_bounded() -> None:
    o = Observations(clock=FakeClock(T0))
    for i in range(MAX_STEPS + 5):
        o.oracle_check(f"s{i}", agreed=True)
    snap = o.snapshot()
    assert len(snap.agreements) == MAX_STEPS + 1
    assert snap.agreements["other"] == (5.0, 5.0)
    assert o.overflowed == 5


def test_open_requests_are_bounded() -> None:
    o = Observations(clock=FakeClock(T0), perf_clock=PerfClock())
    for trace_id in range(1, MAX_OPEN_REQUESTS + 11):
        o.step_done("rerank", trace_id, 100.0, 100.1)
    # The ten oldest were observed early to make room.
    assert o.snapshot().step_times["rerank"][COUNT] == 10


def test_a_request_counts_in_the_windows_by_its_end_not_by_when_it_settled() -> None:
    # A 10 s window of 1 s buckets. rerank's block ends at T0 + 1, the request at T0 + 3; the
    # clock is at T0 + 8 when it settles (2 s of quiet), so rerank's time is in the window until
    # T0 + 11 and gone after, as its spans' calls are in the ledger's: by the end of the step,
    # not by when the request ended or settled.
    clock = FakeClock(T0)
    o = Observations(window_seconds=(10,), buckets_per_window=10, clock=clock, perf_clock=clock)
    o.step_done("rerank", 7, T0, T0 + 1.0)
    o.step_done("generate", 7, T0 + 1.0, T0 + 3.0)
    clock.advance(8.0)
    o.settle()
    assert o.snapshot().windows[0].step_times["rerank"][1] == pytest.approx(1.0)
    assert o.snapshot().windows[0].step_times["rerank"][2] == pytest.approx(3.0)  # the request's time
    clock.advance(3.5)  # T0 + 11.5: the window covers T0 + 2 onwards
    assert set(o.snapshot().windows[0].step_times) == {"generate"}
    assert o.snapshot().step_times["rerank"][ADDED] == pytest.approx(1.0)  # the totals keep it


def test_without_windows_or_the_lock_the_totals_are_the_same() -> None:
    # The offline report keeps no rolling window and takes no lock (one thread): its totals
    # are those kept beside windows.
    blocks = [
        ("rerank", 7, T0, T0 + 0.2),
        ("rerank", 7, T0 + 0.1, T0 + 0.4),
        ("generate", 8, T0 + 0.3, T0 + 0.9),
        ("rerank", 7, T0 + 0.5, T0 + 0.6),
        ("generate", 9, T0 + 5.0, T0 + 5.5),  # settles traces 7 and 8
        ("generate", 0, T0 + 5.1, T0 + 5.2),
    ]
    snapshots = []
    for windows, unlocked in (((300, 3600), False), ((), True)):
        clock = FakeClock(T0 + 6.0)
        o = Observations(window_seconds=windows, clock=clock, perf_clock=clock)
        done = o.step_done_unlocked if unlocked else o.step_done
        for block in blocks:
            done(*block)
        o.settle(everything=True)
        snapshots.append(o.snapshot())
    with_windows, without = snapshots
    assert without.windows == ()
    assert without.step_times == with_windows.step_times
    assert without.step_times["rerank"][COUNT] == 1
    assert without.step_times["generate"][COUNT] == 3
