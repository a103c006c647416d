"""Per-window gauges read back from the Prometheus registry of a real span pipeline.

Prices (USD per 1M tokens, in / out): acme-frontier 3 / 15, acme-mini 0.05 / 0.20.
Costs in the comments are in micro-dollars (tokens x price).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from diag_workloads import (
    FRONTIER,
    MINI,
    T0,
    UNKNOWN,
    WINDOWS,
    Call,
    pipeline,
    request,
    samples_with,
    window_sample,
)

from conftest import FakeClock, Pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# The four-step request fixture, all frontier (see test_signals.py for the arithmetic):
# 70,350 a request, generate 16,500, specialized 16,831, 20,450 tokens, 4 frontier calls.
SEED = (
    Call("rewrite", FRONTIER, 200, 50),
    Call("rerank", FRONTIER, 12_000, 200),
    Call("generate", FRONTIER, 3_500, 400),
    Call("faithfulness", FRONTIER, 4_000, 100),
)
SIGNALS = {
    "model_concentration",
    "specialist_eligible_fraction",
    "frontier_calls_per_request",
    "heaviest_non_generate_step_share",
    "generate_cost_share",
    "tokens_per_request",
}
COST_GAUGES = (
    "overspend_specialist_eligible_fraction",
    "overspend_model_concentration_ratio",
    "overspend_generate_cost_share",
    "overspend_unattributed_cost_share",
    "overspend_specialization_headroom_usd",
    "overspend_projected_cost_reduction_ratio",
)
REQUEST_GAUGES = (
    "overspend_frontier_calls_per_request",
    "overspend_tokens_per_request",
    "overspend_llm_time_share_per_request",
)


def run(p: Pipeline, clock: FakeClock, calls: Sequence[Call], n: int) -> None:
    for _ in range(n):
        request(p.tracer, calls, start_s=clock.now - 0.1, end_s=clock.now)
        clock.advance(0.2)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Pipeline]:
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, SEED, 1000)
    yield p
    p.provider.shutdown()


@pytest.mark.parametrize("window", WINDOWS)
def test_seed_gauges(seeded: Pipeline, window: str) -> None:
    def gauge(name: str, **labels: str) -> float | None:
        return window_sample(seeded, name, window, **labels)

    assert gauge("overspend_specialist_eligible_fraction") == pytest.approx(53_850 / 70_350)  # 0.7655
    assert gauge("overspend_model_concentration_ratio") == 1.0
    assert gauge("overspend_generate_cost_share") == pytest.approx(16_500 / 70_350)  # 0.2345
    assert gauge("overspend_unattributed_cost_share") == 0.0
    assert gauge("overspend_projected_cost_reduction_ratio") == pytest.approx(53_519 / 70_350)  # 0.7608
    assert gauge("overspend_specialization_headroom_usd") == pytest.approx(1000 * 0.053519)
    assert gauge("overspend_frontier_calls_per_request") == 4.0
    assert gauge("overspend_tokens_per_request") == 20_450.0
    assert gauge("overspend_step_cost_share", step="rerank") == pytest.approx(39_000 / 70_350)
    assert gauge("overspend_step_cost_share", step="rewrite") == pytest.approx(1_350 / 70_350)
    assert gauge("overspend_top_frontier_model_info", model=FRONTIER) == 1.0
    assert gauge("overspend_next_step_to_specialize_info", step="rerank") == 1.0
    assert gauge("overspend_next_step_to_specialize_info", step="faithfulness") is None
    assert gauge("overspend_next_step_savings_usd", step="rerank") == pytest.approx(1000 * 0.038756)


def test_seed_every_signal_confirmed_in_every_window(seeded: Pipeline) -> None:
    levels = {
        (s.labels["signal"], s.labels["window"]): s.value
        for family in seeded.registry.collect()
        if family.name == "overspend_signal_level"
        for s in family.samples
    }
    assert levels == {(signal, window): 2 for signal in SIGNALS for window in WINDOWS}


def test_no_data_no_window_sample() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    for window in WINDOWS:
        assert samples_with(p, "window", window) == []
    # The counters are there, at zero, from the start.
    assert p.sample("overspend_requests_total") == 0.0


def test_a_window_that_emptied_exports_no_sample_while_the_others_do() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, [Call("rerank", FRONTIER, 2_000, 0), Call("generate", FRONTIER, 1_000, 100)], 3)
    clock.advance(6 * 60)

    assert samples_with(p, "window", "5m") == []
    hour = {name for name, _, _ in samples_with(p, "window", "1h")}
    assert set(COST_GAUGES) | set(REQUEST_GAUGES) | {"overspend_signal_level"} <= hour
    for family in p.registry.collect():
        for s in family.samples:
            assert math.isfinite(s.value), s
    assert p.sample("overspend_requests_total") == 3.0


def test_a_window_of_unpriced_calls_has_request_gauges_but_no_cost_gauges() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, [Call("rerank", UNKNOWN, 1_000, 10)], 2)

    for name in COST_GAUGES:
        assert window_sample(p, name, "5m") is None, name
    assert window_sample(p, "overspend_step_cost_share", "5m", step="rerank") is None
    assert window_sample(p, "overspend_tokens_per_request", "5m") == 1_010.0
    assert window_sample(p, "overspend_frontier_calls_per_request", "5m") == 0.0
    assert {
        labels["signal"]
        for name, labels, _ in samples_with(p, "window", "5m")
        if name == "overspend_signal_level"
    } == {"frontier_calls_per_request", "tokens_per_request"}
    assert p.total("overspend_unpriced_llm_calls_total", model=UNKNOWN) == 2.0


def level(p: Pipeline, signal: str) -> float | None:
    return p.sample("overspend_signal_level", {"signal": signal, "window": "5m"})


# Exact dollars from the span's own cost: a frontier generate call of $x and a mini rerank
# call of $(100 - x). Concentration and generate share are x / 100, the fraction (100 - x) / 100.
@pytest.mark.parametrize(
    ("frontier_usd", "concentration", "generate", "fraction"),
    [
        (39, 0, 2, 2),  # 0.39 healthy; generate 0.39 confirmed; fraction 0.61 confirmed
        (40, 1, 1, 2),  # 0.40 suspect; generate 0.40 suspect; fraction 0.60 confirmed
        (70, 1, 1, 1),  # 0.70 suspect; generate 0.70 suspect; fraction 0.30 suspect
        (71, 2, 0, 1),  # 0.71 confirmed; generate 0.71 healthy; fraction 0.29 suspect
    ],
)
def test_levels_at_the_band_edges(
    frontier_usd: int, concentration: int, generate: int, fraction: int
) -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    calls = [
        Call("generate", FRONTIER, cost_usd=float(frontier_usd)),
        Call("rerank", MINI, cost_usd=float(100 - frontier_usd)),
    ]
    run(p, clock, calls, 1)

    assert window_sample(p, "overspend_model_concentration_ratio", "5m") == frontier_usd / 100
    assert level(p, "model_concentration") == concentration
    assert level(p, "generate_cost_share") == generate
    assert level(p, "specialist_eligible_fraction") == fraction
    # One frontier call a request is healthy.
    assert level(p, "frontier_calls_per_request") == 0


def test_bands_from_settings_reach_the_gauges() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, bands={"model_concentration": {"suspect": 0.5, "confirmed": 0.9}})
    run(p, clock, [Call("generate", FRONTIER, cost_usd=71.0), Call("rerank", MINI, cost_usd=29.0)], 1)
    assert level(p, "model_concentration") == 1  # 0.71 is suspect between 0.5 and 0.9
    assert level(p, "generate_cost_share") == 0  # default band untouched: 0.71 healthy


def test_window_labels_come_from_settings() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, windows="10m,2h")
    run(p, clock, [Call("generate", FRONTIER, 1_000, 100)], 1)
    windows = {
        s.labels["window"] for family in p.registry.collect() for s in family.samples if "window" in s.labels
    }
    assert windows == {"10m", "2h"}
    assert window_sample(p, "overspend_tokens_per_request", "10m") == 1_100.0
