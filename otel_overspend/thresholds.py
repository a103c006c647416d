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
    "AlertThreshold",
    "Band",
    "Level",
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
}

#: A step other than ``generate`` above this share of spend is listed as a candidate for
#: specialization; a smaller step would save too little to be worth moving first.
SPECIALIZATION_CANDIDATE_SHARE: Final = 0.10
