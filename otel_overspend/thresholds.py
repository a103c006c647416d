"""Health bands and alert thresholds: the one place the project's numbers live.

The live gauges (``overspend_signal_level``), the offline report and the shipped
Prometheus alert rules all read these values; change a number here (or in the
settings, which default to these) and every consumer follows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = (
    "ALERTS",
    "BANDS",
    "DEFAULT_EVAL_STEPS",
    "PATTERN_THRESHOLDS",
    "STEP_TIME_BUCKETS",
    "AlertThreshold",
    "Band",
    "Level",
    "PatternThresholds",
)


class Level(enum.IntEnum):
    """Health level of a signal, exported as the gauge value of ``overspend_signal_level``."""

    HEALTHY = 0
    SUSPECT = 1
    CONFIRMED = 2


@dataclass(frozen=True, slots=True)
class Band:
    """Two cut points that split a signal's range into healthy / suspect / confirmed.

    With ``higher_is_worse`` a value strictly above ``confirmed`` is confirmed and a value
    at or above ``suspect`` is suspect; otherwise the comparisons are mirrored (a value
    strictly below ``confirmed`` is confirmed, at or below ``suspect`` is suspect).
    """

    suspect: float
    confirmed: float
    higher_is_worse: bool = True

    def __post_init__(self) -> None:
        ordered = self.suspect <= self.confirmed if self.higher_is_worse else self.suspect >= self.confirmed
        if not ordered:
            msg = f"band cut points out of order: suspect={self.suspect} confirmed={self.confirmed}"
            raise ValueError(msg)

    def level(self, value: float) -> Level:
        if self.higher_is_worse:
            if value > self.confirmed:
                return Level.CONFIRMED
            return Level.SUSPECT if value >= self.suspect else Level.HEALTHY
        if value < self.confirmed:
            return Level.CONFIRMED
        return Level.SUSPECT if value <= self.suspect else Level.HEALTHY


# Signal -> its default band. Frontier calls per request is a mean over requests, so whole
# counts (1 healthy, 2 suspect, 3 or more confirmed) become the cut points 1.5 and 2.5.
BANDS: dict[str, Band] = {
    "model_concentration": Band(suspect=0.40, confirmed=0.70),
    "specialist_eligible_fraction": Band(suspect=0.20, confirmed=0.50),
    "frontier_calls_per_request": Band(suspect=1.5, confirmed=2.5),
    "heaviest_non_generate_step_share": Band(suspect=0.05, confirmed=0.15),
    "generate_cost_share": Band(suspect=0.70, confirmed=0.40, higher_is_worse=False),
    "tokens_per_request": Band(suspect=5_000.0, confirmed=15_000.0),
}


@dataclass(frozen=True, slots=True)
class AlertThreshold:
    """One alert's trigger: fire when the fleet value crosses ``value`` for ``for_duration``."""

    value: float
    for_duration: str
    severity: str
    op: str = ">"  # the PromQL comparison: ">", ">=" or "<"


# Alert name -> threshold. The rule generator renders these into Prometheus alerts.
ALERTS: dict[str, tuple[AlertThreshold, ...]] = {
    "OverspendSpecialistEligibleFractionHigh": (
        AlertThreshold(0.30, "30m", "warning"),
        AlertThreshold(0.50, "30m", "critical"),
    ),
    "OverspendFrontierConcentrationHigh": (AlertThreshold(0.70, "1h", "warning"),),
    "OverspendFrontierCallsPerRequestHigh": (AlertThreshold(3.0, "30m", "warning", op=">="),),
    "OverspendGenerateShareLow": (AlertThreshold(0.40, "1h", "warning", op="<"),),
    "OverspendTokensPerRequestHigh": (AlertThreshold(15_000.0, "1h", "warning"),),
    "OverspendUnpricedModel": (AlertThreshold(0.0, "15m", "warning"),),
    "OverspendAttributionCoverageLow": (AlertThreshold(0.20, "1h", "warning"),),
    # LLM spans with neither usage nor cost (a stream without usage), as a share of the calls
    # of one step and model.
    "OverspendLLMCallsWithoutUsage": (AlertThreshold(0.10, "30m", "warning"),),
    # After specialization: the look-alike patterns (values: PatternThresholds' defaults).
    "OverspendStepLatencyHigh": (AlertThreshold(0.300, "15m", "warning"),),
    "OverspendCascadeEscalationOutOfBand": (AlertThreshold(0.10, "1h", "warning"),),
    "OverspendCascadeSavingsDrop": (AlertThreshold(0.25, "1h", "warning"),),
    "OverspendTeacherAgreementLow": (AlertThreshold(0.95, "30m", "warning", op="<"),),
    "OverspendOracleCheckStale": (AlertThreshold(7 * 86_400.0, "1h", "warning"),),
    "OverspendEvalSpendHigh": (AlertThreshold(0.25, "1h", "warning"),),
}

#: A step other than ``generate`` above this share of spend is listed as a candidate for
#: specialization; a smaller step would save too little to be worth moving first.
SPECIALIZATION_CANDIDATE_SHARE: Final = 0.10


@dataclass(frozen=True, slots=True)
class PatternThresholds:
    """The cut points of the pattern classifier (:mod:`otel_overspend.accounting.patterns`).

    The settings override the configurable ones; the alert rules render the same values.
    """

    #: The specialist-eligible fraction above which the spend is on the wrong model class
    #: (the design's "alarm when it crosses 0.3").
    fraction_alarm: float = 0.30
    #: Concentration on one frontier model below which spend is already spread across tiers
    #: (Test 1's healthy end): a high fraction there is a model-selection issue.
    spread_concentration: float = 0.40
    #: p95 of the time a specialist-served step adds to a request, in seconds.
    step_latency_p95_seconds: float = 0.300
    #: Student-teacher agreement below which a step's specialist has drifted.
    agreement_min: float = 0.95
    #: Seconds since a specialist-served step's last oracle check beyond which it is stale.
    oracle_stale_seconds: float = 7 * 86_400.0
    #: Evaluation spend / inference (request-path) spend above which eval is the bill.
    eval_share_max: float = 0.25
    #: How far a cascade's escalation rate may move from its trailing baseline, either way.
    escalation_band: float = 0.10
    #: The share of its baseline savings a cascade may lose before it counts as saturated.
    savings_drop_share: float = 0.25

    def __post_init__(self) -> None:
        shares = {
            "fraction_alarm": self.fraction_alarm,
            "spread_concentration": self.spread_concentration,
            "agreement_min": self.agreement_min,
            "escalation_band": self.escalation_band,
            "savings_drop_share": self.savings_drop_share,
        }
        for name, value in shares.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a share 0-1, got {value}")
        if self.step_latency_p95_seconds <= 0 or self.oracle_stale_seconds <= 0 or self.eval_share_max <= 0:
            raise ValueError("latency, staleness and eval share thresholds must be positive")


PATTERN_THRESHOLDS: Final = PatternThresholds()
#: Buckets (seconds) of the time a step adds to a request: 300 ms is a bound, so the p95
#: test is exact at the default threshold.
STEP_TIME_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Steps whose spend is evaluation work, not the request path, unless configured otherwise.
DEFAULT_EVAL_STEPS: Final = ("eval",)
