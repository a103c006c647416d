"""Which pattern the numbers show: the decision rules, as pure functions.

Specializing a pipeline fixes single-LLM overspend and creates its look-alikes: a specialist
that sits on the request path, a student that drifted from its teacher, a cascade that no
longer saves, an eval loop that costs more than it should. :func:`figures` reads the
numbers each rule needs from one window (and a trailing baseline window); :func:`classify`
names the probable pattern with the numbers that decided it. The live info gauge, the
offline report and (through the thresholds they render) the alert rules all use these two
functions: no rule is written twice.

The rules, first match wins (the others that also hold are listed in ``Verdict.also``):

1. ``eval_spend_overrun``: evaluation spend / every other spend (request path and batch,
   see :mod:`otel_overspend.accounting.purposes`) above ``eval_share_max`` (the bill is
   eval cost, not inference cost).
2. ``single_llm_overspend``: specialist-eligible fraction above ``fraction_alarm`` and
   spend concentrated on one frontier model (at least ``spread_concentration``).
3. ``model_selection``: the same fraction, but concentration below ``spread_concentration``
   (spend already spread across models and tiers).
4. ``reranker_on_request_path``: a step served only by a specialist in the window (every LLM
   call of it at specialist tier, or configured so and without LLM calls) whose p95 added
   time per request exceeds ``step_latency_p95_seconds``. Only: a step's time has no tier,
   so in the window after a step moved to a specialist its time still holds the frontier
   model's latencies, which must not read as the specialist's.
5. ``distillation_drift``: a step's teacher agreement below ``agreement_min``, or a
   specialist-served step with oracle checks whose last one is older than
   ``oracle_stale_seconds``.
6. ``cascade_saturation``: a cascade step (its requests' cheap calls followed by frontier
   calls, counted per request) whose
   escalation rate moved from its baseline by more than ``escalation_band`` either way, or
   whose realized savings fell by more than ``savings_drop_share`` of the baseline's.
7. ``healthy``: none of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from otel_overspend.accounting.ledger import CALLS, COST
from otel_overspend.calls.catalog import FRONTIER, SPECIALIST
from otel_overspend.thresholds import PATTERN_THRESHOLDS, PatternThresholds

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from otel_overspend.accounting.ledger import Key
    from otel_overspend.accounting.signals import Diagnosis

__all__ = (
    "CASCADE_SATURATION",
    "DISTILLATION_DRIFT",
    "EVAL_SPEND_OVERRUN",
    "HEALTHY",
    "MODEL_SELECTION",
    "PATTERNS",
    "RERANKER_ON_REQUEST_PATH",
    "SINGLE_LLM_OVERSPEND",
    "PatternFigures",
    "StepFigures",
    "Verdict",
    "cascade_figures",
    "classify",
    "figures",
    "histogram_quantile",
)

SINGLE_LLM_OVERSPEND: Final = "single_llm_overspend"
MODEL_SELECTION: Final = "model_selection"
RERANKER_ON_REQUEST_PATH: Final = "reranker_on_request_path"
DISTILLATION_DRIFT: Final = "distillation_drift"
CASCADE_SATURATION: Final = "cascade_saturation"
EVAL_SPEND_OVERRUN: Final = "eval_spend_overrun"
HEALTHY: Final = "healthy"
#: Every pattern, in the order the rules are tried (``healthy`` last): the label values of
#: ``overspend_pattern_info``.
PATTERNS: Final = (
    EVAL_SPEND_OVERRUN,
    SINGLE_LLM_OVERSPEND,
    MODEL_SELECTION,
    RERANKER_ON_REQUEST_PATH,
    DISTILLATION_DRIFT,
    CASCADE_SATURATION,
    HEALTHY,
)
_DAY_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class StepFigures:
    """One step's numbers for the look-alike rules. ``None``: no data, never zero."""

    step: str
    #: Served by a specialist: most of its LLM calls are at specialist tier, or configured so.
    specialist_served: bool = False
    #: Served by a specialist alone: every LLM call at specialist tier, or configured so and
    #: without LLM calls.
    specialist_only: bool = False
    #: p95 of the wall time the step adds to a request, in seconds.
    latency_p95_seconds: float | None = None
    #: The step's added time / the requests' time.
    request_time_share: float | None = None
    #: Oracle checks agreeing with the teacher / oracle checks.
    agreement_ratio: float | None = None
    #: Seconds since the last oracle check (``None``: never checked).
    oracle_age_seconds: float | None = None
    #: Escalated cases / cases, in a cascade step (per request: a cheap call followed by a
    #: frontier call in the same step of one request is an escalated case).
    escalation_rate: float | None = None
    baseline_escalation_rate: float | None = None
    #: 1 - the cases' spend / what they would cost with every case at the expensive stage.
    savings_ratio: float | None = None
    baseline_savings_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class PatternFigures:
    """Every number the rules read, for one window."""

    specialist_eligible_fraction: float | None = None
    model_concentration: float | None = None
    #: Spend at each tier / spend.
    tier_shares: Mapping[str, float] = field(default_factory=dict)
    #: Evaluation spend / every other spend, of closed requests (``None``: no other spend).
    eval_share: float | None = None
    steps: tuple[StepFigures, ...] = ()

    @property
    def has_data(self) -> bool:
        """Whether the window holds anything to classify (else no pattern is named)."""
        return (
            bool(self.steps) or self.specialist_eligible_fraction is not None or self.eval_share is not None
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The probable pattern, the step it concerns (if one) and the numbers that decided it."""

    pattern: str
    evidence: Mapping[str, float]
    step: str | None = None
    #: Other patterns whose rule holds too, in rule order.
    also: tuple[str, ...] = ()


# -- reading the figures ---------------------------------------------------------------------


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile of a histogram as PromQL's ``histogram_quantile`` estimates it:
    linear within the bucket that holds it, the lowest bucket starting at 0, and the highest
    finite bound for a rank in the ``+Inf`` bucket. ``counts`` are per bucket (not
    cumulative), the last one ``+Inf``. ``None`` with no observation."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    running = 0.0
    for i, count in enumerate(counts):
        below = running
        running += count
        if running >= rank and count > 0:
            if i >= len(bounds):
                return bounds[-1]
            lower = 0.0 if i == 0 else bounds[i - 1]
            return lower + (bounds[i] - lower) * (rank - below) / count
    return bounds[-1]


def cascade_figures(cases: Sequence[float] | None) -> tuple[float, float | None] | None:
    """(escalation rate, realized savings ratio) of a cascade step from its per-request
    cases (cases, escalated cases, cost, cost with every case at the expensive stage; see
    :mod:`otel_overspend.accounting.requests`); ``None`` without a case. The escalation rate
    is escalated cases / cases; the savings ratio 1 - cost / the all-expensive cost
    (``None`` without a priced case).
    """
    if cases is None or cases[0] <= 0:
        return None
    n, escalated, cost, expensive = cases[0], cases[1], cases[2], cases[3]
    return escalated / n, 1.0 - cost / expensive if expensive > 0 else None


def _by_step_tier(
    calls: Mapping[Key, Sequence[float]],
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """step -> tier -> calls, and tier -> spend."""
    step_tiers: dict[str, dict[str, float]] = {}
    tier_cost: dict[str, float] = {}
    for (step, _model, tier, _provider), stats in calls.items():
        tiers = step_tiers.setdefault(step, {})
        tiers[tier] = tiers.get(tier, 0.0) + stats[CALLS]
        tier_cost[tier] = tier_cost.get(tier, 0.0) + stats[COST]
    return step_tiers, tier_cost


def figures(
    diagnosis: Diagnosis,
    calls: Mapping[Key, Sequence[float]],
    *,
    step_times: Mapping[str, tuple[Sequence[float], float, float]] | None = None,
    step_time_bounds: Sequence[float] = (),
    agreements: Mapping[str, tuple[float, float]] | None = None,
    last_checks: Mapping[str, float] | None = None,
    now_s: float = 0.0,
    specialist_steps: Collection[str] = (),
    cascades: Mapping[str, Sequence[float]] | None = None,
    baseline_cascades: Mapping[str, Sequence[float]] | None = None,
) -> PatternFigures:
    """The figures of one window.

    ``calls`` are the window's series; ``step_times`` step -> (per-bucket counts of the time it added to
    requests over ``step_time_bounds``, summed added seconds, summed request seconds);
    ``agreements`` step -> (checks, agreeing checks); ``last_checks`` step -> time of its
    last oracle check (seconds since the epoch, as ``now_s``).
    """
    step_tiers, tier_cost = _by_step_tier(calls)
    total = sum(tier_cost.values())
    # The diagnosis leaves the shares of all spend out while any step is all unpriced.
    unpriced_step = diagnosis.cost_usd > 0 and diagnosis.unattributed_share is None
    step_times = step_times or {}
    agreements = agreements or {}
    last_checks = last_checks or {}
    cascades = cascades or {}
    baseline_cascades = baseline_cascades or {}
    names = sorted(set(step_tiers) | set(step_times) | set(agreements) | set(last_checks) | set(cascades))
    steps: list[StepFigures] = []
    for name in names:
        tiers = step_tiers.get(name, {})
        n_calls = sum(tiers.values())
        at_specialist = tiers.get(SPECIALIST, 0.0)
        configured = name in specialist_steps
        specialist = configured or (n_calls > 0 and at_specialist * 2 > n_calls)
        p95 = share = None
        if name in step_times:
            counts, added_s, request_s = step_times[name]
            p95 = histogram_quantile(0.95, step_time_bounds, counts)
            share = added_s / request_s if request_s > 0 else None
        checks, agreed = agreements.get(name, (0.0, 0.0))
        last = last_checks.get(name)
        now_cascade = cascade_figures(cascades.get(name))
        base_cascade = cascade_figures(baseline_cascades.get(name))
        steps.append(
            StepFigures(
                step=name,
                specialist_served=specialist,
                # A configured step counts when it made no LLM call (a reranker over HTTP).
                specialist_only=at_specialist == n_calls if n_calls > 0 else configured,
                latency_p95_seconds=p95,
                request_time_share=share,
                agreement_ratio=agreed / checks if checks > 0 else None,
                oracle_age_seconds=None if last is None else max(0.0, now_s - last),
                escalation_rate=None if now_cascade is None else now_cascade[0],
                baseline_escalation_rate=None if base_cascade is None else base_cascade[0],
                savings_ratio=None if now_cascade is None else now_cascade[1],
                baseline_savings_ratio=None if base_cascade is None else base_cascade[1],
            )
        )
    return PatternFigures(
        specialist_eligible_fraction=diagnosis.specialist_eligible_fraction,
        model_concentration=diagnosis.model_concentration,
        tier_shares={tier: cost / total for tier, cost in sorted(tier_cost.items())} if total > 0 else {},
        # A step whose calls are all unpriced has unknown spend: no share (as the rules).
        eval_share=None if unpriced_step else diagnosis.eval_share,
        steps=tuple(steps),
    )


# -- the rules -------------------------------------------------------------------------------


def _overspend_evidence(f: PatternFigures) -> dict[str, float]:
    evidence = {"specialist_eligible_fraction": f.specialist_eligible_fraction or 0.0}
    if f.model_concentration is not None:
        evidence["model_concentration"] = f.model_concentration
    if FRONTIER in f.tier_shares:
        evidence["frontier_tier_share"] = f.tier_shares[FRONTIER]
    return evidence


def _slow_step(f: PatternFigures, t: PatternThresholds) -> tuple[StepFigures, dict[str, float]] | None:
    slow = [
        s
        for s in f.steps
        if s.specialist_only
        and s.latency_p95_seconds is not None
        and s.latency_p95_seconds > t.step_latency_p95_seconds
    ]
    if not slow:
        return None
    worst = max(slow, key=lambda s: (s.latency_p95_seconds or 0.0, s.step))
    evidence = {"step_latency_p95_seconds": worst.latency_p95_seconds or 0.0}
    if worst.request_time_share is not None:
        evidence["request_time_share"] = worst.request_time_share
    return worst, evidence


def _drifted_step(f: PatternFigures, t: PatternThresholds) -> tuple[StepFigures, dict[str, float]] | None:
    for s in sorted(
        f.steps, key=lambda s: (s.agreement_ratio if s.agreement_ratio is not None else 2.0, s.step)
    ):
        low = s.agreement_ratio is not None and s.agreement_ratio < t.agreement_min
        stale = (
            s.specialist_served
            and s.oracle_age_seconds is not None
            and s.oracle_age_seconds > t.oracle_stale_seconds
        )
        if low or stale:
            evidence: dict[str, float] = {}
            if s.agreement_ratio is not None:
                evidence["agreement_ratio"] = s.agreement_ratio
            if s.oracle_age_seconds is not None:
                evidence["oracle_check_age_days"] = s.oracle_age_seconds / _DAY_S
            return s, evidence
    return None


def _saturated_step(f: PatternFigures, t: PatternThresholds) -> tuple[StepFigures, dict[str, float]] | None:
    found: list[tuple[float, StepFigures, dict[str, float]]] = []
    for s in f.steps:
        if s.escalation_rate is None or s.baseline_escalation_rate is None:
            continue
        drift = s.escalation_rate - s.baseline_escalation_rate
        evidence = {
            "escalation_rate": s.escalation_rate,
            "baseline_escalation_rate": s.baseline_escalation_rate,
        }
        drop = 0.0
        if s.savings_ratio is not None and s.baseline_savings_ratio is not None:
            evidence["savings_ratio"] = s.savings_ratio
            evidence["baseline_savings_ratio"] = s.baseline_savings_ratio
            if s.baseline_savings_ratio > 0:
                drop = 1.0 - s.savings_ratio / s.baseline_savings_ratio
                evidence["savings_drop_share"] = drop
        if abs(drift) > t.escalation_band or drop > t.savings_drop_share:
            found.append((max(abs(drift), drop), s, evidence))
    if not found:
        return None
    _, worst, evidence = max(found, key=lambda item: (item[0], item[1].step))
    return worst, evidence


def classify(f: PatternFigures, thresholds: PatternThresholds = PATTERN_THRESHOLDS) -> Verdict:
    """The probable pattern of one window's figures (see the module docstring)."""
    t = thresholds
    held: list[Verdict] = []
    if f.eval_share is not None and f.eval_share > t.eval_share_max:
        held.append(Verdict(EVAL_SPEND_OVERRUN, {"eval_spend_share": f.eval_share}))
    fraction = f.specialist_eligible_fraction
    if fraction is not None and fraction > t.fraction_alarm:
        spread = f.model_concentration is not None and f.model_concentration < t.spread_concentration
        held.append(Verdict(MODEL_SELECTION if spread else SINGLE_LLM_OVERSPEND, _overspend_evidence(f)))
    for pattern, rule in (
        (RERANKER_ON_REQUEST_PATH, _slow_step),
        (DISTILLATION_DRIFT, _drifted_step),
        (CASCADE_SATURATION, _saturated_step),
    ):
        found = rule(f, t)
        if found is not None:
            held.append(Verdict(pattern, found[1], step=found[0].step))
    if not held:
        evidence = {}
        if fraction is not None:
            evidence["specialist_eligible_fraction"] = fraction
        if f.model_concentration is not None:
            evidence["model_concentration"] = f.model_concentration
        return Verdict(HEALTHY, evidence)
    first = held[0]
    return Verdict(first.pattern, first.evidence, step=first.step, also=tuple(v.pattern for v in held[1:]))
