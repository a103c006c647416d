"""The diagnosis (``otel_overspend.accounting.signals``) on snapshots of real span pipelines.

Prices (USD per 1M tokens, in / out): acme-frontier 3 / 15, acme-mini 0.05 / 0.20,
zerank-2 0.02 / 0.02. Costs in the comments are in micro-dollars (tokens x price).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from diag_workloads import FRONTIER, MINI, RERANKER, T0, UNKNOWN, Call, pipeline, request, window_sample

from otel_overspend.accounting.ledger import new_request_stats
from otel_overspend.accounting.signals import Diagnosis, diagnose
from otel_overspend.thresholds import BANDS, Level

from conftest import FakeClock, Pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# The four-step RAG request fixture: one request, all on the frontier model ($3 / $15 per 1M).
#   rewrite         200 x 3 +  50 x 15 =  1,350
#   rerank       12,000 x 3 + 200 x 15 = 39,000
#   generate      3,500 x 3 + 400 x 15 = 16,500
#   faithfulness  4,000 x 3 + 100 x 15 = 13,500
#   total                                70,350  ($0.07035)
# Specialized (everything but generate at 0.02 / 0.02):
#   250 x 0.02 + 12,200 x 0.02 + 16,500 + 4,100 x 0.02 = 5 + 244 + 16,500 + 82 = 16,831
SEED = (
    Call("rewrite", FRONTIER, 200, 50),
    Call("rerank", FRONTIER, 12_000, 200),
    Call("generate", FRONTIER, 3_500, 400),
    Call("faithfulness", FRONTIER, 4_000, 100),
)
SEED_REQUESTS = 1000


def run(p: Pipeline, clock: FakeClock, calls: Sequence[Call], n: int) -> None:
    """``n`` requests of ``calls``, one every 0.2 s of fake time (all within 5 minutes)."""
    for _ in range(n):
        request(p.tracer, calls, start_s=clock.now - 0.1, end_s=clock.now)
        clock.advance(0.2)


def diagnoses(p: Pipeline, unattributed: str = "exclude") -> dict[int, Diagnosis]:
    snap = p.processor.snapshot()
    return {
        view.seconds: diagnose(view.calls, view.requests, unattributed=unattributed) for view in snap.windows
    }


@pytest.fixture(scope="module")
def seed() -> Iterator[dict[int, Diagnosis]]:
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, SEED, SEED_REQUESTS)
    yield diagnoses(p)
    p.provider.shutdown()


@pytest.mark.parametrize("seconds", [300, 3600, 86400, 604800])
def test_seed_fixture_in_every_window(seed: dict[int, Diagnosis], seconds: int) -> None:
    d = seed[seconds]
    assert d.calls == 4 * SEED_REQUESTS
    assert d.requests == SEED_REQUESTS
    assert d.cost_usd == pytest.approx(1000 * 0.07035)
    # Test 4: (70,350 - 16,500) / 70,350 = 53,850 / 70,350
    assert d.specialist_eligible_fraction == pytest.approx(53_850 / 70_350)
    assert d.specialist_eligible_fraction == pytest.approx(0.7655, abs=5e-5)  # 76.55 %
    # Test 1: one frontier model carries all spend.
    assert d.model_concentration == 1.0
    assert d.top_frontier_model == FRONTIER
    # Test 2
    assert d.generate_share == pytest.approx(16_500 / 70_350)
    assert d.generate_share == pytest.approx(0.2345, abs=5e-5)
    assert d.step_shares == pytest.approx(
        {
            "rerank": 39_000 / 70_350,  # 55.44 %
            "generate": 16_500 / 70_350,  # 23.45 %
            "faithfulness": 13_500 / 70_350,  # 19.19 %
            "rewrite": 1_350 / 70_350,  # 1.92 %
        }
    )
    assert d.unattributed_share == 0.0
    assert d.heaviest_non_generate_step == "rerank"
    # Candidates: non-generate steps above 10 %: rerank and faithfulness, not rewrite (1.9 %).
    assert [line.step for line in d.candidates] == ["rerank", "faithfulness"]
    # Test 3: (70,350 - 16,831) / 70,350 = 53,519 / 70,350
    assert d.projected_reduction == pytest.approx(53_519 / 70_350)
    assert d.projected_reduction == pytest.approx(0.7608, abs=5e-5)  # 76.08 %
    assert d.headroom_usd == pytest.approx(1000 * 0.053519)
    # Savings: rerank 39,000 - 244 = 38,756; faithfulness 13,418; rewrite 1,345.
    assert d.next_step_to_specialize == "rerank"
    assert d.next_step_savings_usd == pytest.approx(1000 * 0.038756)
    # Per request: 4 frontier calls; 250 + 12,200 + 3,900 + 4,100 = 20,450 tokens.
    assert d.frontier_calls_per_request == 4.0
    assert d.tokens_per_request == 20_450.0
    assert d.heavy_request_share == 1.0
    assert d.generate_share_per_request == pytest.approx(16_500 / 70_350)
    # Four calls each as long as the request: 4 x 0.1 s / 0.1 s, capped at 1.
    assert d.llm_time_share_per_request == 1.0
    assert dict(d.levels) == dict.fromkeys(BANDS, Level.CONFIRMED)


# The treatments, on the same token counts.
# Stage 1, rerank on the specialist reranker: 12,200 x 0.02 = 244.
#   total 1,350 + 244 + 16,500 + 13,500 = 31,594; non-generate 1,350 + 244 + 13,500 = 15,094
#   frontier 1,350 + 16,500 + 13,500 = 31,350; specialized 16,831 (unchanged)
# Stage 2, faithfulness on the small judge too: 4,000 x 0.05 + 100 x 0.20 = 200 + 20 = 220.
#   total 1,350 + 244 + 16,500 + 220 = 18,314; non-generate 1,350 + 244 + 220 = 1,814
#   frontier 1,350 + 16,500 = 17,850; specialized 16,831 (faithfulness 220 -> 82)
# Rerank on a specialist alone might be expected to bring the fraction to 0.1-0.3; on this
# fixture the arithmetic gives 0.478 (still above the 0.3 alarm), and 0.099 after both.
STAGE_1 = (
    Call("rewrite", FRONTIER, 200, 50),
    Call("rerank", RERANKER, 12_000, 200),
    Call("generate", FRONTIER, 3_500, 400),
    Call("faithfulness", FRONTIER, 4_000, 100),
)
STAGE_2 = (*STAGE_1[:3], Call("faithfulness", MINI, 4_000, 100))


@dataclass(frozen=True)
class Stage:
    calls: tuple[Call, ...]
    cost_usd: float
    fraction: float
    fraction_level: Level
    concentration: float
    generate_share: float
    generate_level: Level
    reduction: float
    frontier_calls: float
    heaviest: tuple[str, float]
    next_step: tuple[str, float]


STAGES = {
    "rerank-specialized": Stage(
        calls=STAGE_1,
        cost_usd=0.031594,
        fraction=15_094 / 31_594,  # 0.4777
        fraction_level=Level.SUSPECT,
        concentration=31_350 / 31_594,  # 0.9923
        generate_share=16_500 / 31_594,  # 0.5222
        generate_level=Level.SUSPECT,
        reduction=(31_594 - 16_831) / 31_594,  # 0.4673
        frontier_calls=3.0,
        heaviest=("faithfulness", 13_500 / 31_594),
        # savings: faithfulness 13,500 - 82 = 13,418; rewrite 1,345; rerank 0
        next_step=("faithfulness", 0.013418),
    ),
    "rerank-and-faithfulness-specialized": Stage(
        calls=STAGE_2,
        cost_usd=0.018314,
        fraction=1_814 / 18_314,  # 0.0990
        fraction_level=Level.HEALTHY,
        concentration=17_850 / 18_314,  # 0.9747
        generate_share=16_500 / 18_314,  # 0.9010
        generate_level=Level.HEALTHY,
        reduction=(18_314 - 16_831) / 18_314,  # 0.0810
        frontier_calls=2.0,
        heaviest=("rewrite", 1_350 / 18_314),
        # savings: rewrite 1,345; faithfulness 220 - 82 = 138; rerank 0
        next_step=("rewrite", 0.001345),
    ),
}


@pytest.mark.parametrize("stage", STAGES.values(), ids=STAGES.keys())
def test_treatments_move_the_fraction(stage: Stage) -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, stage.calls, 10)
    d = diagnoses(p)[300]
    assert d.cost_usd == pytest.approx(10 * stage.cost_usd)
    assert d.specialist_eligible_fraction == pytest.approx(stage.fraction)
    assert d.levels["specialist_eligible_fraction"] == stage.fraction_level
    assert d.model_concentration == pytest.approx(stage.concentration)
    assert d.top_frontier_model == FRONTIER
    assert d.generate_share == pytest.approx(stage.generate_share)
    assert d.levels["generate_cost_share"] == stage.generate_level
    assert d.projected_reduction == pytest.approx(stage.reduction)
    assert d.frontier_calls_per_request == stage.frontier_calls
    assert d.tokens_per_request == 20_450.0  # the same tokens, on cheaper models
    assert d.heaviest_non_generate_step == stage.heaviest[0]
    assert d.heaviest_non_generate_step_share == pytest.approx(stage.heaviest[1])
    assert d.next_step_to_specialize == stage.next_step[0]
    assert d.next_step_savings_usd == pytest.approx(10 * stage.next_step[1])
    # The fraction gauge shows the same number.
    assert window_sample(p, "overspend_specialist_eligible_fraction", "5m") == pytest.approx(stage.fraction)


# Unattributed spend: one request = generate 3,500/400 (16,500), rerank 12,000/200 (39,000)
# and a call no step claims, 4,000/100 (13,500). Total 69,000; attributed 55,500.
WITH_UNATTRIBUTED = (
    Call("generate", FRONTIER, 3_500, 400),
    Call("rerank", FRONTIER, 12_000, 200),
    Call(None, FRONTIER, 4_000, 100),
)


@pytest.mark.parametrize(
    ("treatment", "fraction"),
    [
        ("exclude", 39_000 / 55_500),  # 0.7027: rerank / attributed spend
        ("eligible", (39_000 + 13_500) / 69_000),  # 0.7609: unattributed counts as eligible
        ("generate", 39_000 / 69_000),  # 0.5652: unattributed counts as generate
    ],
)
def test_unattributed_treatment(treatment: str, fraction: float) -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, unattributed=treatment)
    run(p, clock, WITH_UNATTRIBUTED, 5)

    for window in ("5m", "1h", "1d", "7d"):
        assert window_sample(p, "overspend_specialist_eligible_fraction", window) == pytest.approx(fraction)
        assert window_sample(p, "overspend_unattributed_cost_share", window) == pytest.approx(13_500 / 69_000)
        assert window_sample(p, "overspend_step_cost_share", window, step="unattributed") == pytest.approx(
            13_500 / 69_000
        )
    assert diagnoses(p, treatment)[300].specialist_eligible_fraction == pytest.approx(fraction)


@pytest.mark.parametrize(("treatment", "fraction"), [("exclude", None), ("eligible", 1.0), ("generate", 0.0)])
def test_all_spend_unattributed(treatment: str, fraction: float | None) -> None:
    clock = FakeClock(T0)
    p = pipeline(clock, unattributed=treatment)
    run(p, clock, [Call(None, FRONTIER, 1_000, 100)], 3)

    assert window_sample(p, "overspend_specialist_eligible_fraction", "5m") == fraction
    assert window_sample(p, "overspend_unattributed_cost_share", "5m") == 1.0
    assert window_sample(p, "overspend_generate_cost_share", "5m") == 0.0


# Unpriced calls: the same workload with and without a call on a model nothing can price.
#   rerank 2,000/0 = 6,000; generate 1,000/100 = 4,500; fraction 6,000 / 10,500
PRICED = (Call("rerank", FRONTIER, 2_000, 0), Call("generate", FRONTIER, 1_000, 100))
UNPRICED_RERANK = Call("rerank", UNKNOWN, 50_000, 500)
UNPRICED_ONLY_STEP = Call("classify", UNKNOWN, 7_000, 10)
# Specialized: rerank 2,000 x 0.02 = 40; generate unchanged 4,500; (10,500 - 4,540) / 10,500
PRICED_REDUCTION = (10_500 - 4_540) / 10_500


def test_an_unpriced_call_is_counted_but_changes_no_share() -> None:
    results: dict[bool, Pipeline] = {}
    for with_unpriced in (False, True):
        clock = FakeClock(T0)
        p = pipeline(clock)
        calls = (*PRICED, UNPRICED_RERANK, UNPRICED_ONLY_STEP) if with_unpriced else PRICED
        run(p, clock, calls, 4)
        results[with_unpriced] = p

    clean, mixed = results[False], results[True]
    for p in (clean, mixed):
        d = diagnoses(p)[300]
        assert d.specialist_eligible_fraction == pytest.approx(6_000 / 10_500)
        assert d.generate_share == pytest.approx(4_500 / 10_500)
        assert d.cost_usd == pytest.approx(4 * 0.0105)
        assert d.projected_reduction == pytest.approx(PRICED_REDUCTION)
    d_mixed = diagnoses(mixed)[300]
    assert d_mixed.unpriced_calls == 8
    assert d_mixed.calls == 16
    # A step whose calls are all unpriced has no share: a share of 0 would read as "$0".
    assert "classify" not in d_mixed.step_shares
    # Shares of all spend are absent while a step's spend is wholly unknown (as the fleet
    # rules): the top model's share of what could be priced would overstate it.
    assert diagnoses(clean)[300].model_concentration == 1.0
    assert d_mixed.model_concentration is None
    assert d_mixed.unattributed_share is None
    assert mixed.sample("overspend_step_cost_share", {"window": "5m", "step": "classify"}) is None
    assert mixed.total("overspend_unpriced_llm_calls_total", model=UNKNOWN) == 8.0
    assert not clean.total("overspend_unpriced_llm_calls_total", model=UNKNOWN)
    for window in ("5m", "7d"):
        assert window_sample(mixed, "overspend_specialist_eligible_fraction", window) == window_sample(
            clean, "overspend_specialist_eligible_fraction", window
        )
    # Tokens are real even when their price is unknown: 3,100 + 50,500 + 7,010 a request.
    assert d_mixed.tokens_per_request == 60_610.0


def test_an_empty_window_has_no_signal() -> None:
    d = diagnose({}, tuple(new_request_stats()))
    assert d.calls == 0
    assert d.requests == 0
    for value in (
        d.specialist_eligible_fraction,
        d.model_concentration,
        d.generate_share,
        d.unattributed_share,
        d.headroom_usd,
        d.projected_reduction,
        d.frontier_calls_per_request,
        d.tokens_per_request,
        d.llm_time_share_per_request,
        d.generate_share_per_request,
        d.heaviest_non_generate_step,
        d.next_step_to_specialize,
        d.top_frontier_model,
    ):
        assert value is None
    assert dict(d.levels) == {}
    assert dict(d.step_shares) == {}


def test_only_unpriced_calls_give_no_cost_signal() -> None:
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, [UNPRICED_RERANK], 2)
    d = diagnoses(p)[300]
    assert d.calls == 2
    assert d.unpriced_calls == 2
    assert d.specialist_eligible_fraction is None
    assert d.model_concentration is None
    assert d.generate_share is None
    assert d.projected_reduction is None
    assert dict(d.step_shares) == {}
    # Per-request numbers that need no price are still there.
    assert d.tokens_per_request == 50_500.0
    assert d.frontier_calls_per_request == 0.0
    assert set(d.levels) == {"frontier_calls_per_request", "tokens_per_request"}


# Band edges (the defaults of otel_overspend/thresholds.py): each signal at, just inside and
# just outside its cut points.
@pytest.mark.parametrize(
    ("signal", "value", "level"),
    [
        ("model_concentration", 0.39, Level.HEALTHY),
        ("model_concentration", 0.40, Level.SUSPECT),
        ("model_concentration", 0.70, Level.SUSPECT),
        ("model_concentration", 0.71, Level.CONFIRMED),
        ("specialist_eligible_fraction", 0.19, Level.HEALTHY),
        ("specialist_eligible_fraction", 0.20, Level.SUSPECT),
        ("specialist_eligible_fraction", 0.50, Level.SUSPECT),
        ("specialist_eligible_fraction", 0.51, Level.CONFIRMED),
        ("frontier_calls_per_request", 1.0, Level.HEALTHY),
        ("frontier_calls_per_request", 1.49, Level.HEALTHY),
        ("frontier_calls_per_request", 2.0, Level.SUSPECT),
        ("frontier_calls_per_request", 2.5, Level.SUSPECT),
        ("frontier_calls_per_request", 3.0, Level.CONFIRMED),
        ("heaviest_non_generate_step_share", 0.049, Level.HEALTHY),
        ("heaviest_non_generate_step_share", 0.05, Level.SUSPECT),
        ("heaviest_non_generate_step_share", 0.15, Level.SUSPECT),
        ("heaviest_non_generate_step_share", 0.151, Level.CONFIRMED),
        ("generate_cost_share", 0.71, Level.HEALTHY),
        ("generate_cost_share", 0.70, Level.SUSPECT),
        ("generate_cost_share", 0.40, Level.SUSPECT),
        ("generate_cost_share", 0.39, Level.CONFIRMED),
        ("tokens_per_request", 4_999.0, Level.HEALTHY),
        ("tokens_per_request", 5_000.0, Level.SUSPECT),
        ("tokens_per_request", 15_000.0, Level.SUSPECT),
        ("tokens_per_request", 15_001.0, Level.CONFIRMED),
    ],
)
def test_band_edges(signal: str, value: float, level: Level) -> None:
    assert BANDS[signal].level(value) == level


def test_a_generate_only_workload_has_a_healthy_step_share() -> None:
    # No non-generate spend: nothing to specialize, and the step-share signal is healthy.
    clock = FakeClock(T0)
    p = pipeline(clock)
    run(p, clock, [Call("generate", FRONTIER, 1_000, 100)], 2)
    d = diagnoses(p)[300]
    assert d.heaviest_non_generate_step is None
    assert d.next_step_to_specialize is None
    assert d.specialist_eligible_fraction == 0.0
    assert d.levels["heaviest_non_generate_step_share"] == Level.HEALTHY
    assert d.levels["generate_cost_share"] == Level.HEALTHY
    assert d.levels["specialist_eligible_fraction"] == Level.HEALTHY
    assert d.levels["model_concentration"] == Level.CONFIRMED
