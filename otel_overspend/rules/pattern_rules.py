"""The look-alike patterns' recording rules and alert texts, rendered from the thresholds.

The rules compute, fleet-wide (sums of rates across instances, then ratios), the figures the
pattern classifier (:mod:`otel_overspend.accounting.patterns`) reads per process: a step's
p95 added time, its share of request time, teacher agreement, the age of a specialist-served
step's last oracle check, a cascade's escalation rate and realized savings against the
baseline window, and the eval spend share. The alerts compare them with the thresholds of
:data:`otel_overspend.thresholds.PATTERN_THRESHOLDS` (through ``ALERTS``), and each names
its pattern in an annotation, with a link to the pattern's runbook section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.accounting.patterns import (
    CASCADE_SATURATION,
    DISTILLATION_DRIFT,
    EVAL_SPEND_OVERRUN,
    RERANKER_ON_REQUEST_PATH,
)
from otel_overspend.accounting.purposes import EVAL
from otel_overspend.base.durations import duration_ms
from otel_overspend.calls.catalog import SPECIALIST

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("PATTERN_ALERTS", "PatternAlert", "pattern_anchor", "pattern_recording_rules")

_CALLS: Final = "overspend_llm_calls_total"
#: How much further back than its window a step's calls at other tiers keep it from being served
#: by a specialist alone: a request's step time is counted once it has settled (2 s of quiet),
#: then scraped; its calls were counted at their end.
STEP_TIME_MARGIN_S: Final = 15
_COST: Final = "overspend_llm_cost_usd_total"
_SPECIALIST: Final = f'tier="{SPECIALIST}"'


def pattern_anchor(pattern: str) -> str:
    """The docs/alerts.md anchor of a pattern's runbook section (``### Pattern: <name>``)."""
    return f"pattern-{pattern}"


def pattern_recording_rules(w: str, *, others: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rules of window ``w``. Given the ``others`` (shorter) windows, ``w`` is the
    baseline: its group also records each one's cascade drift from it."""

    def rate(metric: str, by: str) -> str:
        return f"sum by ({by}) (rate({metric}[{w}]))"

    calls = f"overspend:llm_calls_by_step_tier:rate{w}"
    cost = f"overspend:llm_cost_usd_by_step_tier:rate{w}"
    escalation = f"overspend:cascade_escalation:ratio_rate{w}"
    savings = f"overspend:cascade_savings:ratio_rate{w}"
    specialist = f"overspend:specialist_steps:rate{w}"
    specialist_only = f"overspend:specialist_only_steps:rate{w}"
    margin = f"{duration_ms(w) // 1000 + STEP_TIME_MARGIN_S}s"
    by_purpose = f"overspend:purpose_cost_usd:rate{w}"
    unpriced_steps = f"overspend:llm_calls_by_unpriced_step:rate{w}"

    def by_tier(metric: str, tiers: str) -> str:
        return f"sum by (step) ({metric}{{{tiers}}})"

    rules: list[dict[str, Any]] = [
        {"record": calls, "expr": rate(_CALLS, "step, tier")},
        {"record": cost, "expr": rate(_COST, "step, tier")},
        # Steps served by a specialist: most calls at specialist tier, or configured (the
        # processes' overspend_specialist_step_info). Value 1.
        {
            "record": specialist,
            "expr": (
                f"({by_tier(calls, _SPECIALIST)} * 2"
                f" > sum by (step) ({calls})) * 0 + 1"
                " or on (step) max by (step) (overspend_specialist_step_info) * 0 + 1"
            ),
        },
        # Steps served by a specialist alone: no call at another tier in the window (a step's
        # time has no tier: just after a step moves to a specialist, its time still holds the
        # frontier model's latencies), or configured. Value 1. The other tiers' calls are looked
        # for a margin further back: a request's step time is counted once it has settled,
        # seconds after its calls.
        {
            "record": specialist_only,
            "expr": (
                f"sum by (step) ({calls}) * 0 + 1"
                f' unless on (step) (sum by (step) (rate({_CALLS}{{tier!="{SPECIALIST}"}}[{margin}])) > 0)'
                # A configured step (a reranker over HTTP): one without LLM calls.
                " or on (step) (max by (step) (overspend_specialist_step_info) * 0 + 1"
                f" unless on (step) (sum by (step) (rate({_CALLS}[{margin}])) > 0))"
            ),
        },
        {
            "record": f"overspend:step_request_seconds:p95_rate{w}",
            "expr": f"histogram_quantile(0.95, {rate('overspend_step_request_seconds_bucket', 'le, step')})",
        },
        {
            "record": f"overspend:specialist_step_request_seconds:p95_rate{w}",
            "expr": f"overspend:step_request_seconds:p95_rate{w} and on (step) {specialist_only}",
        },
        {
            "record": f"overspend:step_request_time_share:ratio_rate{w}",
            "expr": (
                f"{rate('overspend_step_request_seconds_sum', 'step')}"
                f" / ({rate('overspend_step_request_wall_seconds_total', 'step')} > 0)"
            ),
        },
        {
            "record": f"overspend:teacher_agreement:ratio_rate{w}",
            "expr": (
                f"{rate('overspend_oracle_agreements_total', 'step')}"
                f" / ({rate('overspend_oracle_checks_total', 'step')} > 0)"
            ),
        },
        {
            "record": f"overspend:specialist_step_oracle_check_age_seconds:time_max{w}",
            "expr": (
                "(time() - max by (step) (overspend_oracle_last_check_timestamp_seconds))"
                f" and on (step) {specialist}"
            ),
        },
        # A cascade step's cases, counted per request (a cheap call, then an expensive one
        # in the same step of one request for an escalated case).
        {
            "record": escalation,
            "expr": (
                f"{rate('overspend_cascade_escalations_total', 'step')}"
                f" / ({rate('overspend_cascade_cases_total', 'step')} > 0)"
            ),
        },
        {
            "record": savings,
            "expr": (
                f"1 - {rate('overspend_cascade_cost_usd_total', 'step')}"
                f" / ({rate('overspend_cascade_all_expensive_cost_usd_total', 'step')} > 0)"
            ),
        },
        # Spend by purpose (see accounting.purposes): evaluation against the rest.
        {"record": by_purpose, "expr": rate("overspend_purpose_cost_usd_total", "purpose")},
        {
            "record": f"overspend:eval_spend_share:ratio_rate{w}",
            "expr": (
                f'((sum({by_purpose}{{purpose="{EVAL}"}}) or vector(0))'
                f' / (sum({by_purpose}{{purpose!="{EVAL}"}}) > 0))'
                f" unless on () {unpriced_steps}"
            ),
        },
    ]
    if others:
        # The drift of every other window from this one: in this group, evaluated after the
        # shorter windows' groups, so both sides are of the same evaluation.
        for other in others:
            rules += [
                {
                    "record": f"overspend:cascade_escalation_drift:abs_rate{other}",
                    "expr": f"abs(overspend:cascade_escalation:ratio_rate{other} - on (step) {escalation})",
                },
                {
                    "record": f"overspend:cascade_savings_drop:ratio_rate{other}",
                    "expr": f"1 - overspend:cascade_savings:ratio_rate{other} / on (step) ({savings} > 0)",
                },
            ]
    return rules


@dataclass(frozen=True, slots=True)
class PatternAlert:
    """How one pattern alert reads its rule (``[window]`` and ``[threshold]`` as in alerting)."""

    record: str
    pattern: str
    summary: str
    description: str
    percent: bool


_STEP: Final = "{{ $labels.step }}"

PATTERN_ALERTS: Final[dict[str, PatternAlert]] = {
    "OverspendStepLatencyHigh": PatternAlert(
        record="overspend:specialist_step_request_seconds:p95_rate",
        pattern=RERANKER_ON_REQUEST_PATH,
        summary=f"Specialist step {_STEP} adds {{{{ $value | humanizeDuration }}}} to requests (p95)",
        description=(
            f"Over the last [window], the specialist-served step {_STEP} added"
            " {{ $value | humanizeDuration }} to the request path at the 95th percentile"
            " (threshold [threshold] s). The specialist is cheap but sits in the user's wait: move"
            " it off the request path (precompute, cache its scores, run it in parallel with"
            " retrieval, or shrink its candidate set)."
        ),
        percent=False,
    ),
    "OverspendCascadeEscalationOutOfBand": PatternAlert(
        record="overspend:cascade_escalation_drift:abs_rate",
        pattern=CASCADE_SATURATION,
        summary=f"Cascade step {_STEP}: escalation {{{{ $value | humanizePercentage }}}} off its baseline",
        description=(
            f"Over the last [window], the share of {_STEP} cases escalated to the frontier stage was"
            " {{ $value | humanizePercentage }} of cases away from its trailing baseline (threshold"
            " [threshold]). Rising: the cheap stage is unsure of more cases and the savings go;"
            " falling: it passes cases it should escalate. Recalibrate the confidence band."
        ),
        percent=True,
    ),
    "OverspendCascadeSavingsDrop": PatternAlert(
        record="overspend:cascade_savings_drop:ratio_rate",
        pattern=CASCADE_SATURATION,
        summary=f"Cascade step {_STEP} saves {{{{ $value | humanizePercentage }}}} less than its baseline",
        description=(
            f"Over the last [window], what the {_STEP} cascade saves against running every case at the"
            " frontier stage fell by {{ $value | humanizePercentage }} of its trailing baseline"
            " (threshold [threshold])."
        ),
        percent=True,
    ),
    "OverspendTeacherAgreementLow": PatternAlert(
        record="overspend:teacher_agreement:ratio_rate",
        pattern=DISTILLATION_DRIFT,
        summary=f"Step {_STEP} agrees with its teacher on {{{{ $value | humanizePercentage }}}} of checks",
        description=(
            f"Over the last [window], the specialist of {_STEP} agreed with its teacher on"
            " {{ $value | humanizePercentage }} of oracle checks (threshold [threshold]). The student"
            " has drifted from the production distribution: relabel a fresh sample with the teacher"
            " and retrain."
        ),
        percent=True,
    ),
    "OverspendOracleCheckStale": PatternAlert(
        record="overspend:specialist_step_oracle_check_age_seconds:time_max",
        pattern=DISTILLATION_DRIFT,
        summary=f"Specialist step {_STEP} has had no oracle check for {{{{ $value | humanizeDuration }}}}",
        description=(
            f"The specialist serving {_STEP} was last checked against its teacher"
            " {{ $value | humanizeDuration }} ago (threshold [threshold] s). Drift is silent without"
            " the weekly oracle check: run it."
        ),
        percent=False,
    ),
    "OverspendEvalSpendHigh": PatternAlert(
        record="overspend:eval_spend_share:ratio_rate",
        pattern=EVAL_SPEND_OVERRUN,
        summary="Evaluation spend is {{ $value | humanizePercentage }} of inference spend",
        description=(
            "Over the last [window], LLM spend on evaluation (eval jobs and eval steps) was"
            " {{ $value | humanizePercentage }} of the spend on serving requests and batch work"
            " (threshold [threshold]). An LLM judge re-scoring the eval set costs more than it"
            " should: distil the judge, cache scores, sample."
        ),
        percent=True,
    ),
}
