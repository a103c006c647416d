"""The diagnosis, as pure functions of a window of aggregated calls and requests.

The live gauges, the offline report and the tests all call :func:`diagnose`; no ratio is
computed anywhere else. Everything is over *priced* spend: an unpriced call adds no
dollars (it is reported by count instead), so it can never pass as $0 in a share.

- Test 1, concentration: spend on the single top frontier-tier model / all spend.
- Test 2, step shares: spend of each step / all spend (``unattributed`` is a step here).
- Test 3, the counterfactual: spend now, spend with every step at its specialization-map
  tier, the headroom between them and the projected reduction.
- Test 4, specialist-eligible fraction: spend on steps other than ``generate`` / spend,
  over attributed spend by default (see :data:`UNATTRIBUTED_TREATMENTS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, get_args

from otel_overspend.accounting.ledger import (
    CALLS,
    COST,
    COST_WITHOUT_COUNTERFACTUAL,
    FRONTIER_CALLS,
    GENERATE_SHARE_N,
    GENERATE_SHARE_SUM,
    HEAVY_REQUESTS,
    INPUT,
    LLM_TIME_SHARE_N,
    LLM_TIME_SHARE_SUM,
    OUTPUT,
    PURPOSE_COST,
    REQUESTS,
    SPECIALIZED,
    TOKENS,
    UNPRICED,
    WITHOUT_USAGE,
)
from otel_overspend.accounting.purposes import EVAL
from otel_overspend.calls.catalog import FRONTIER
from otel_overspend.steps import GENERATE, UNATTRIBUTED
from otel_overspend.thresholds import BANDS, SPECIALIZATION_CANDIDATE_SHARE, Band, Level

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from otel_overspend.accounting.ledger import Key

__all__ = ("UNATTRIBUTED_TREATMENTS", "Diagnosis", "StepLine", "UnattributedTreatment", "diagnose")

#: How ``unattributed`` spend enters the specialist-eligible fraction: left out of it, counted
#: as eligible, or counted as ``generate`` (in the denominator only).
UnattributedTreatment = Literal["exclude", "eligible", "generate"]
UNATTRIBUTED_TREATMENTS: Final[tuple[UnattributedTreatment, ...]] = get_args(UnattributedTreatment)


@dataclass(frozen=True, slots=True)
class StepLine:
    """One step's totals in a window."""

    step: str
    calls: int
    tokens: int
    cost_usd: float
    specialized_cost_usd: float
    share: float | None
    #: Calls nothing could price: left out of ``cost_usd`` and ``share``.
    unpriced_calls: int = 0
    #: Dollars of calls priced only by their span's cost (in ``cost_usd``), whose
    #: specialized cost is unknown: left out of the savings.
    cost_without_counterfactual_usd: float = 0.0

    @property
    def savings_usd(self) -> float:
        return self.cost_usd - self.cost_without_counterfactual_usd - self.specialized_cost_usd


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Every signal of one window. ``None`` means "no data", never zero."""

    calls: int
    unpriced_calls: int
    #: LLM calls whose spans reported nothing billed: in no other figure.
    calls_without_usage: int
    cost_usd: float
    specialized_cost_usd: float
    steps: tuple[StepLine, ...]
    #: Dollars (in ``cost_usd``) whose specialized cost is unknown: out of headroom and reduction.
    cost_without_counterfactual_usd: float
    # Test 1
    model_concentration: float | None
    top_frontier_model: str | None
    # Test 2
    step_shares: Mapping[str, float]
    generate_share: float | None
    unattributed_share: float | None
    heaviest_non_generate_step: str | None
    heaviest_non_generate_step_share: float | None
    # Test 3
    headroom_usd: float | None
    projected_reduction: float | None
    next_step_to_specialize: str | None
    next_step_savings_usd: float | None
    # Test 4
    specialist_eligible_fraction: float | None
    # Per request
    requests: int
    frontier_calls_per_request: float | None
    heavy_request_share: float | None
    tokens_per_request: float | None
    generate_share_per_request: float | None
    llm_time_share_per_request: float | None
    levels: Mapping[str, Level] = field(default_factory=dict)
    #: Purpose -> the priced spend of the closed requests made for it (``accounting.purposes``).
    purpose_cost_usd: Mapping[str, float] = field(default_factory=dict)

    @property
    def eval_share(self) -> float | None:
        """Evaluation spend / every other spend of the closed requests (``None`` without any)."""
        evals = self.purpose_cost_usd.get(EVAL, 0.0)
        return _ratio(evals, sum(self.purpose_cost_usd.values()) - evals)

    @property
    def candidates(self) -> tuple[StepLine, ...]:
        """Steps other than ``generate`` above the candidate share of spend
        (:data:`~otel_overspend.thresholds.SPECIALIZATION_CANDIDATE_SHARE`), heaviest first."""
        return tuple(
            line
            for line in self.steps
            if line.step not in (GENERATE, UNATTRIBUTED)
            and line.share is not None
            and line.share > SPECIALIZATION_CANDIDATE_SHARE
        )


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _fraction(by_step: Mapping[str, float], total: float, treatment: str) -> float | None:
    unattributed = by_step.get(UNATTRIBUTED, 0.0)
    generate = by_step.get(GENERATE, 0.0)
    attributed = total - unattributed
    non_generate = attributed - generate
    if treatment == "exclude":
        return _ratio(non_generate, attributed)
    if treatment == "eligible":
        return _ratio(non_generate + unattributed, total)
    if treatment == "generate":
        return _ratio(non_generate, total)
    raise ValueError(f"unattributed treatment must be one of {UNATTRIBUTED_TREATMENTS}, got {treatment!r}")


def diagnose(
    calls: Mapping[Key, Sequence[float]],
    requests: tuple[float, ...],
    *,
    unattributed: str = "exclude",
    bands: Mapping[str, Band] = BANDS,
) -> Diagnosis:
    """All signals for one window of call stats (by series key) and request stats."""
    # Run on every scrape for every window: the series are grouped by step in one pass, and
    # each step's columns summed in C.
    rows_by_step: dict[str, list[Sequence[float]]] = {}
    frontier_by_model: dict[str, float] = {}
    get_rows, get_model = rows_by_step.get, frontier_by_model.get
    i_cost = COST
    for (step, model, tier, _provider), stats in calls.items():
        rows = get_rows(step)
        if rows is None:
            rows_by_step[step] = [stats]
        else:
            rows.append(stats)
        if tier == FRONTIER:
            frontier_by_model[model] = get_model(model, 0.0) + stats[i_cost]
    # step -> [cost, specialized cost, calls, priced calls, tokens, cost without counterfactual]
    by_step: dict[str, list[float]] = {}
    for step, rows in rows_by_step.items():
        columns = tuple(zip(*rows, strict=True))
        n_calls = sum(columns[CALLS])
        by_step[step] = [
            sum(columns[COST]),
            sum(columns[SPECIALIZED]),
            n_calls,
            n_calls - sum(columns[UNPRICED]),
            sum(columns[INPUT]) + sum(columns[OUTPUT]),
            sum(columns[COST_WITHOUT_COUNTERFACTUAL]),
            sum(columns[WITHOUT_USAGE]),
        ]
    # A step whose calls are all unpriced or without usage has no dollars to share: its
    # share, and any ratio that needs its spend (the generate share, the fraction, and the
    # shares of all spend: concentration, unattributed), is absent, not 0 (as the fleet's
    # recording rules).
    unpriced_steps = {step for step, acc in by_step.items() if acc[2] + acc[6] > 0 and acc[3] == 0}
    cost_by_step = {step: acc[0] for step, acc in by_step.items()}
    n_calls = sum(acc[2] for acc in by_step.values())
    unpriced = n_calls - sum(acc[3] for acc in by_step.values())
    total = sum(cost_by_step.values())
    specialized = sum(acc[1] for acc in by_step.values())
    without_counterfactual = sum(acc[5] for acc in by_step.values())
    repriced = total - without_counterfactual
    has_cost = total > 0

    lines = sorted(
        (
            StepLine(
                step=step,
                calls=round(acc[2]),
                tokens=round(acc[4]),
                cost_usd=acc[0],
                specialized_cost_usd=acc[1],
                # A step with no priced call has no share: 0 would pass its calls off as $0.
                share=_ratio(acc[0], total) if acc[3] > 0 else None,
                unpriced_calls=round(acc[2] - acc[3]),
                cost_without_counterfactual_usd=acc[5],
            )
            for step, acc in by_step.items()
        ),
        key=lambda line: (-line.cost_usd, line.step),
    )
    shares = {line.step: line.share for line in lines if line.share is not None}
    non_generate = [line for line in lines if line.step not in (GENERATE, UNATTRIBUTED) and line.cost_usd > 0]
    heaviest = non_generate[0] if non_generate else None
    with_savings = [line for line in non_generate if line.savings_usd > 0]
    best = max(with_savings, key=lambda line: line.savings_usd) if with_savings else None

    top_model, top_cost = None, 0.0
    for model, cost in sorted(frontier_by_model.items()):
        if cost > top_cost:
            top_model, top_cost = model, cost

    n_requests = requests[REQUESTS]
    fraction = None if GENERATE in unpriced_steps else _fraction(cost_by_step, total, unattributed)
    concentration = None if unpriced_steps else _ratio(top_cost, total)
    generate_share = shares.get(GENERATE, 0.0) if has_cost and GENERATE not in unpriced_steps else None
    heaviest_share = None if heaviest is None else heaviest.share
    frontier_per_request = _ratio(requests[FRONTIER_CALLS], n_requests)
    tokens_per_request = _ratio(requests[TOKENS], n_requests)
    level_inputs = {
        "model_concentration": concentration,
        "specialist_eligible_fraction": fraction,
        "frontier_calls_per_request": frontier_per_request,
        # Spend on generate alone has no candidate step: that is the healthy end.
        "heaviest_non_generate_step_share": heaviest_share
        if heaviest_share is not None or not has_cost
        else 0.0,
        "generate_cost_share": generate_share,
        "tokens_per_request": tokens_per_request,
    }
    return Diagnosis(
        calls=round(n_calls),
        unpriced_calls=round(unpriced),
        calls_without_usage=round(sum(acc[6] for acc in by_step.values())),
        cost_usd=total,
        specialized_cost_usd=specialized,
        steps=tuple(lines),
        cost_without_counterfactual_usd=without_counterfactual,
        model_concentration=concentration,
        top_frontier_model=top_model,
        step_shares=shares,
        generate_share=generate_share,
        unattributed_share=shares.get(UNATTRIBUTED, 0.0) if has_cost and not unpriced_steps else None,
        heaviest_non_generate_step=None if heaviest is None else heaviest.step,
        heaviest_non_generate_step_share=heaviest_share,
        headroom_usd=repriced - specialized if repriced > 0 else None,
        projected_reduction=_ratio(repriced - specialized, repriced),
        next_step_to_specialize=None if best is None else best.step,
        next_step_savings_usd=None if best is None else best.savings_usd,
        specialist_eligible_fraction=fraction,
        requests=round(n_requests),
        frontier_calls_per_request=frontier_per_request,
        heavy_request_share=_ratio(requests[HEAVY_REQUESTS], n_requests),
        tokens_per_request=tokens_per_request,
        generate_share_per_request=_ratio(requests[GENERATE_SHARE_SUM], requests[GENERATE_SHARE_N]),
        llm_time_share_per_request=_ratio(requests[LLM_TIME_SHARE_SUM], requests[LLM_TIME_SHARE_N]),
        purpose_cost_usd={purpose: requests[i] for purpose, i in PURPOSE_COST.items()},
        levels={name: bands[name].level(v) for name, v in level_inputs.items() if v is not None},
    )
