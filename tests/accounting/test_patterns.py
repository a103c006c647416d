"""The pattern classifier (``otel_overspend.accounting.patterns``) on hand-computed workloads.

Prices (USD per 1M tokens, in / out): frontier 3 / 15, mid 0.30 / 1.20, specialist
0.02 / 0.02. Costs in the comments are micro-dollars a call (tokens x price).

The seed request, all at frontier tier:
  rewrite 200/50 = 1,350; rerank 12,000/200 = 39,000; generate 3,500/400 = 16,500;
  faithfulness 4,000/100 = 13,500; total 70,350.
Specialized (all but generate at specialist tier):
  rewrite 250 x 0.02 = 5; rerank 12,200 x 0.02 = 244; faithfulness 4,100 x 0.02 = 82;
  generate 16,500; total 16,831.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from otel_overspend.accounting.ledger import CALLS, COST, PURPOSE_COST, UNPRICED, new_request_stats
from otel_overspend.accounting.patterns import (
    CASCADE_SATURATION,
    DISTILLATION_DRIFT,
    EVAL_SPEND_OVERRUN,
    HEALTHY,
    MODEL_SELECTION,
    RERANKER_ON_REQUEST_PATH,
    SINGLE_LLM_OVERSPEND,
    PatternFigures,
    StepFigures,
    cascade_figures,
    classify,
    figures,
    histogram_quantile,
)
from otel_overspend.accounting.signals import diagnose
from otel_overspend.thresholds import STEP_TIME_BUCKETS, PatternThresholds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otel_overspend.accounting.ledger import Key

_U = 1e-6  # one micro-dollar
DAY = 86_400.0
NOW = 1_800_000_000.0

Calls = dict["Key", list[float]]


def series(rows: Sequence[tuple[str, str, str, int, float]]) -> Calls:
    """(step, model, tier, calls, micro-dollars a call) -> call stats by series."""
    out: Calls = {}
    for step, model, tier, n, micro in rows:
        stats = [0.0] * 11
        stats[CALLS] = float(n)
        stats[COST] = n * micro * _U
        out[step, model, tier, "acme"] = stats
    return out


SEED_ROWS = [
    ("rewrite", "acme-frontier", "frontier", 100, 1_350),
    ("rerank", "acme-frontier", "frontier", 100, 39_000),
    ("generate", "acme-frontier", "frontier", 100, 16_500),
    ("faithfulness", "acme-frontier", "frontier", 100, 13_500),
]
SPECIALIZED_ROWS = [
    ("rewrite", "rewriter-small", "specialist", 100, 5),
    ("rerank", "zerank-2", "specialist", 100, 244),
    ("generate", "acme-frontier", "frontier", 100, 16_500),
    ("faithfulness", "judge-small", "specialist", 100, 82),
]


def figures_of(calls: Calls, purposes: dict[str, float] | None = None, **kwargs: Any) -> PatternFigures:
    """The figures of ``calls``, with the closed requests' spend by purpose (micro-dollars)."""
    requests = new_request_stats()
    for purpose, micro in (purposes or {}).items():
        requests[PURPOSE_COST[purpose]] = micro * _U
    return figures(diagnose(calls, tuple(requests)), calls, now_s=NOW, **kwargs)


def test_seed_workload_is_single_llm_overspend() -> None:
    verdict = classify(figures_of(series(SEED_ROWS)))
    assert verdict.pattern == SINGLE_LLM_OVERSPEND
    # (1,350 + 39,000 + 13,500) / 70,350 = 53,850 / 70,350
    assert verdict.evidence["specialist_eligible_fraction"] == pytest.approx(0.765458, abs=1e-6)
    assert verdict.evidence["model_concentration"] == pytest.approx(1.0)
    assert verdict.evidence["frontier_tier_share"] == pytest.approx(1.0)
    assert verdict.also == ()


def test_spend_spread_across_tiers_is_model_selection() -> None:
    # Every step on a mid-tier model: rewrite 200 x 0.3 + 50 x 1.2 = 120; rerank
    # 12,000 x 0.3 + 200 x 1.2 = 3,840; generate 3,500 x 0.3 + 400 x 1.2 = 1,530;
    # faithfulness 4,000 x 0.3 + 100 x 1.2 = 1,320. Fraction 5,280 / 6,810; no frontier model.
    rows = [
        ("rewrite", "acme-mid", "mid", 100, 120),
        ("rerank", "acme-mid", "mid", 100, 3_840),
        ("generate", "acme-mid", "mid", 100, 1_530),
        ("faithfulness", "acme-mid", "mid", 100, 1_320),
    ]
    verdict = classify(figures_of(series(rows)))
    assert verdict.pattern == MODEL_SELECTION
    assert verdict.evidence["specialist_eligible_fraction"] == pytest.approx(5_280 / 6_810)
    assert verdict.evidence["model_concentration"] == 0.0


def test_specialized_workload_is_healthy() -> None:
    verdict = classify(figures_of(series(SPECIALIZED_ROWS)))
    assert verdict.pattern == HEALTHY
    # The fraction is (5 + 244 + 82) over 16,831; the concentration 16,500 over 16,831.
    assert verdict.evidence["specialist_eligible_fraction"] == pytest.approx(0.019666, abs=1e-6)
    assert verdict.evidence["model_concentration"] == pytest.approx(0.980334, abs=1e-6)


def slow_step_times() -> tuple[list[float], float, float]:
    # 100 requests: 20 add 80 ms (bucket 0.05-0.1), 80 add 420 ms (bucket 0.3-0.5); each
    # request takes 900 ms. p95: rank 95, 75 into the 0.3-0.5 bucket's 80:
    # 0.3 + 0.2 x 75 / 80 = 0.4875 s. Share: (20 x 0.08 + 80 x 0.42) / (100 x 0.9) = 35.2 / 90.
    counts = [0.0] * (len(STEP_TIME_BUCKETS) + 1)
    counts[STEP_TIME_BUCKETS.index(0.1)] = 20
    counts[STEP_TIME_BUCKETS.index(0.5)] = 80
    return counts, 35.2, 90.0


def test_slow_specialist_step_is_reranker_on_request_path() -> None:
    f = figures_of(
        series(SPECIALIZED_ROWS), step_times={"rerank": slow_step_times()}, step_time_bounds=STEP_TIME_BUCKETS
    )
    verdict = classify(f)
    assert verdict.pattern == RERANKER_ON_REQUEST_PATH
    assert verdict.step == "rerank"
    assert verdict.evidence["step_latency_p95_seconds"] == pytest.approx(0.4875)
    assert verdict.evidence["request_time_share"] == pytest.approx(35.2 / 90)


def test_a_step_moving_to_a_specialist_is_not_flagged_by_its_old_latency() -> None:
    # rerank just moved: 40 calls at frontier, 60 at specialist in the window. Mostly served by
    # the specialist, but its time (no tier) still holds the frontier model's: not flagged.
    rows = [*SPECIALIZED_ROWS, ("rerank", "acme-frontier", "frontier", 40, 39_000)]
    rows[1] = ("rerank", "zerank-2", "specialist", 60, 244)
    f = figures_of(series(rows), step_times={"rerank": slow_step_times()}, step_time_bounds=STEP_TIME_BUCKETS)
    (rerank,) = [s for s in f.steps if s.step == "rerank"]
    assert rerank.specialist_served
    assert not rerank.specialist_only
    verdict = classify(f)  # the frontier calls make it single-LLM overspend; rerank is not slow
    assert RERANKER_ON_REQUEST_PATH not in (verdict.pattern, *verdict.also)
    # Configured as served by a specialist, its calls still tell: not flagged either.
    f = figures_of(
        series(rows),
        step_times={"rerank": slow_step_times()},
        step_time_bounds=STEP_TIME_BUCKETS,
        specialist_steps=("rerank",),
    )
    verdict = classify(f)
    assert RERANKER_ON_REQUEST_PATH not in (verdict.pattern, *verdict.also)
    # A configured step without LLM calls (a reranker over HTTP) is flagged on its time alone.
    f = figures_of(
        series(SPECIALIZED_ROWS),
        step_times={"crossencode": slow_step_times()},
        step_time_bounds=STEP_TIME_BUCKETS,
        specialist_steps=("crossencode",),
    )
    assert classify(f).step == "crossencode"


def test_slow_frontier_step_is_not_a_placement_problem() -> None:
    f = figures_of(
        series(SPECIALIZED_ROWS),
        step_times={"generate": slow_step_times()},
        step_time_bounds=STEP_TIME_BUCKETS,
    )
    assert classify(f).pattern == HEALTHY


def test_a_configured_specialist_step_without_llm_calls_counts() -> None:
    # A cross-encoder called over HTTP: no LLM span, served by a specialist by configuration.
    f = figures_of(
        series(SPECIALIZED_ROWS[2:3]),
        step_times={"rerank": slow_step_times()},
        step_time_bounds=STEP_TIME_BUCKETS,
        specialist_steps=("rerank",),
    )
    verdict = classify(f)
    assert RERANKER_ON_REQUEST_PATH in (verdict.pattern, *verdict.also)


def test_low_agreement_is_distillation_drift() -> None:
    # 200 oracle checks of the faithfulness student, 178 agreeing: 0.89 < 0.95.
    f = figures_of(
        series(SPECIALIZED_ROWS),
        agreements={"faithfulness": (200.0, 178.0)},
        last_checks={"faithfulness": NOW - DAY},
    )
    verdict = classify(f)
    assert verdict.pattern == DISTILLATION_DRIFT
    assert verdict.step == "faithfulness"
    assert verdict.evidence["agreement_ratio"] == pytest.approx(0.89)
    assert verdict.evidence["oracle_check_age_days"] == pytest.approx(1.0)


def test_agreement_at_the_threshold_is_healthy() -> None:
    # 190 / 200 = 0.95: not below 0.95.
    f = figures_of(series(SPECIALIZED_ROWS), agreements={"faithfulness": (200.0, 190.0)})
    assert classify(f).pattern == HEALTHY


def test_stale_oracle_on_a_specialist_step_is_distillation_drift() -> None:
    # Agreement 0.97 (97 / 100), but the last check was 8 days ago (> 7).
    f = figures_of(
        series(SPECIALIZED_ROWS),
        agreements={"rerank": (100.0, 97.0)},
        last_checks={"rerank": NOW - 8 * DAY, "generate": NOW - 30 * DAY},
    )
    verdict = classify(f)
    assert verdict.pattern == DISTILLATION_DRIFT
    assert verdict.step == "rerank"
    assert verdict.evidence["oracle_check_age_days"] == pytest.approx(8.0)


def test_stale_oracle_on_a_frontier_step_is_not_drift() -> None:
    f = figures_of(series(SPECIALIZED_ROWS), last_checks={"generate": NOW - 30 * DAY})
    assert classify(f).pattern == HEALTHY


def cascade_rows(cases: int, escalations: int) -> list[tuple[str, str, str, int, float]]:
    # faithfulness as a cascade: every case at the specialist (82 each), the escalated ones
    # again at frontier (13,500 each); generate at frontier alongside.
    return [
        ("generate", "acme-frontier", "frontier", cases, 16_500),
        ("faithfulness", "judge-small", "specialist", cases, 82),
        ("faithfulness", "acme-frontier", "frontier", escalations, 13_500),
    ]


def cases_of(cases: int, escalations: int) -> dict[str, tuple[float, float, float, float]]:
    # The same cascade's per-request cases: each case's cheap call 82, an escalated one's
    # frontier call 13,500; a case resolved cheap repriced at frontier also 13,500 (same units).
    return {"faithfulness": (cases, escalations, cases * 82 + escalations * 13_500, cases * 13_500)}


def cascade_figures_of(cases: int, escalations: int, base: tuple[int, int]) -> PatternFigures:
    return figures_of(
        series(cascade_rows(cases, escalations)),
        cascades=cases_of(cases, escalations),
        baseline_cascades=cases_of(*base),
    )


def test_cascade_figures_by_hand() -> None:
    # 1,000 cases, 100 escalated: rate 0.1; spend 1,000 x 82 + 100 x 13,500 = 1,432,000;
    # every case at frontier: 1,000 x 13,500 = 13,500,000; savings 1 - 1,432,000 / 13,500,000.
    rate, savings = cascade_figures(cases_of(1_000, 100)["faithfulness"]) or (0, 0)
    assert rate == pytest.approx(0.1)
    assert savings == pytest.approx(12_068_000 / 13_500_000)
    assert cascade_figures(None) is None
    assert cascade_figures((0, 0, 0, 0)) is None
    # Cases without a price: a rate, no savings.
    assert cascade_figures((4, 1, 0, 0)) == (0.25, None)


def test_rising_escalation_is_cascade_saturation() -> None:
    # Now 100 cases, 30 escalated: rate 0.3, spend 8,200 + 405,000 = 413,200, savings
    # 1 - 413,200 / 1,350,000 = 936,800 / 1,350,000. Baseline: rate 0.1, savings
    # 12,068,000 / 13,500,000. Drift +0.2 > 0.1; savings drop 1 - 9,368,000 / 12,068,000
    # = 2,700,000 / 12,068,000 (0.2237, under 0.25). The fraction stays healthy:
    # 413,200 / (413,200 + 1,650,000) = 0.2003.
    f = cascade_figures_of(100, 30, (1_000, 100))
    verdict = classify(f)
    assert verdict.pattern == CASCADE_SATURATION
    assert verdict.step == "faithfulness"
    assert verdict.evidence["escalation_rate"] == pytest.approx(0.3)
    assert verdict.evidence["baseline_escalation_rate"] == pytest.approx(0.1)
    assert verdict.evidence["savings_ratio"] == pytest.approx(936_800 / 1_350_000)
    assert verdict.evidence["baseline_savings_ratio"] == pytest.approx(12_068_000 / 13_500_000)
    assert verdict.evidence["savings_drop_share"] == pytest.approx(2_700_000 / 12_068_000)


def test_falling_escalation_is_cascade_saturation_too() -> None:
    # The cheap stage stops escalating: 1 of 100 cases against a baseline of 250 of 1,000,
    # a drift of 0.01 - 0.25 = -0.24, outside the 0.1 band (the savings rise).
    f = cascade_figures_of(100, 1, (1_000, 250))
    verdict = classify(f)
    assert verdict.pattern == CASCADE_SATURATION
    assert verdict.evidence["escalation_rate"] == pytest.approx(0.01)
    assert verdict.evidence["baseline_escalation_rate"] == pytest.approx(0.25)


def test_steady_cascade_is_healthy() -> None:
    f = cascade_figures_of(100, 10, (1_000, 100))
    assert classify(f).pattern == HEALTHY


def test_eval_job_spend_is_eval_spend_overrun() -> None:
    # 100 specialized requests served (1,683,100) and an eval job's 40 judge calls at frontier
    # (40 x 13,500 = 540,000): eval / the rest = 540,000 / 1,683,100. The fraction,
    # (33,100 + 540,000) / 2,223,100 = 0.2578, stays under the 0.3 alarm.
    rows = [*SPECIALIZED_ROWS, ("eval", "acme-frontier", "frontier", 40, 13_500)]
    verdict = classify(figures_of(series(rows), {"request": 1_683_100, "eval": 540_000}))
    assert verdict.pattern == EVAL_SPEND_OVERRUN
    assert verdict.evidence["eval_spend_share"] == pytest.approx(540_000 / 1_683_100)
    assert verdict.also == ()
    # Below the share: 30 calls, 405,000 / 1,683,100 = 0.2406 < 0.25.
    rows = [*SPECIALIZED_ROWS, ("eval", "acme-frontier", "frontier", 30, 13_500)]
    assert classify(figures_of(series(rows), {"request": 1_683_100, "eval": 405_000})).pattern == HEALTHY


def test_batch_spend_is_not_eval_spend() -> None:
    # The rest is the request path and batch work together: 540,000 / (1,683,100 + 600,000)
    # = 0.2365 < 0.25, where against the request path alone it would be 0.3208.
    rows = [*SPECIALIZED_ROWS, ("eval", "acme-frontier", "frontier", 40, 13_500)]
    f = figures_of(series(rows), {"request": 1_683_100, "eval": 540_000, "batch": 600_000})
    assert f.eval_share == pytest.approx(540_000 / 2_283_100)
    assert classify(f).pattern == HEALTHY
    # Without closed requests there is no split by purpose, hence no share.
    assert figures_of(series(rows)).eval_share is None


def test_no_eval_share_while_a_step_is_all_unpriced() -> None:
    # generate's calls are all unpriced: its spend is unknown, so eval / the rest is too.
    calls = series([*SPECIALIZED_ROWS[:2], ("eval", "acme-frontier", "frontier", 40, 13_500)])
    unpriced = [0.0] * 11
    unpriced[CALLS] = 100.0
    unpriced[UNPRICED] = 100.0
    calls["generate", "house-model", "unknown", "acme"] = unpriced
    assert figures_of(calls, {"request": 24_900, "eval": 540_000}).eval_share is None


def test_rules_in_order_with_the_others_listed() -> None:
    f = PatternFigures(
        specialist_eligible_fraction=0.6,
        model_concentration=0.9,
        eval_share=0.5,
        steps=(
            StepFigures(
                "rerank",
                specialist_served=True,
                specialist_only=True,
                latency_p95_seconds=0.5,
                agreement_ratio=0.5,
            ),
        ),
    )
    verdict = classify(f)
    assert verdict.pattern == EVAL_SPEND_OVERRUN
    assert verdict.also == (SINGLE_LLM_OVERSPEND, RERANKER_ON_REQUEST_PATH, DISTILLATION_DRIFT)


def test_thresholds_are_configurable() -> None:
    f = figures_of(
        series(SPECIALIZED_ROWS), step_times={"rerank": slow_step_times()}, step_time_bounds=STEP_TIME_BUCKETS
    )
    assert classify(f, PatternThresholds(step_latency_p95_seconds=0.5)).pattern == HEALTHY
    with pytest.raises(ValueError, match="agreement_min"):
        PatternThresholds(agreement_min=1.5)


def test_histogram_quantile_as_promql() -> None:
    bounds = (0.1, 0.3, 0.5)
    # 10 in (0, 0.1], 10 in (0.1, 0.3]: p50 at rank 10 -> 0.1; p75 at rank 15 -> 0.1 + 0.2 x 5 / 10.
    assert histogram_quantile(0.5, bounds, [10, 10, 0, 0]) == pytest.approx(0.1)
    assert histogram_quantile(0.75, bounds, [10, 10, 0, 0]) == pytest.approx(0.2)
    # A rank in +Inf: the highest finite bound.
    assert histogram_quantile(0.95, bounds, [1, 0, 0, 9]) == pytest.approx(0.5)
    assert histogram_quantile(0.95, bounds, [0, 0, 0, 0]) is None
