"""Per-process gauges: every signal of :mod:`otel_overspend.accounting.signals`, for each window.

A window with no data exports no sample for the signals it cannot compute: never 0,
never NaN. Fleet-wide views come from the counters (see the shipped recording rules);
these gauges are a per-process convenience and must not be averaged across processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily

from otel_overspend.accounting.signals import Diagnosis, diagnose

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from prometheus_client.metrics_core import Metric

    from otel_overspend.accounting.ledger import Snapshot
    from otel_overspend.thresholds import Band

__all__ = ("SCALARS", "GaugeRenderer", "diagnoses")

# name, help, how to read the value from a diagnosis
SCALARS: tuple[tuple[str, str, Callable[[Diagnosis], float | None]], ...] = (
    (
        "overspend_specialist_eligible_fraction",
        "Spend on steps other than generate / spend (Test 4), over the window.",
        lambda d: d.specialist_eligible_fraction,
    ),
    (
        "overspend_model_concentration_ratio",
        "Spend on the single top frontier-tier model / all spend (Test 1).",
        lambda d: d.model_concentration,
    ),
    ("overspend_generate_cost_share", "Spend on the generate step / all spend.", lambda d: d.generate_share),
    (
        "overspend_unattributed_cost_share",
        "Spend no step could be attributed to / all spend.",
        lambda d: d.unattributed_share,
    ),
    (
        "overspend_specialization_headroom_usd",
        "Spend minus what it would be with every step at its specialization-map tier, in USD (Test 3).",
        lambda d: d.headroom_usd,
    ),
    (
        "overspend_projected_cost_reduction_ratio",
        "Headroom / spend: the projected reduction if every step were specialized (Test 3).",
        lambda d: d.projected_reduction,
    ),
    (
        "overspend_frontier_calls_per_request",
        "Mean frontier-tier LLM calls per request.",
        lambda d: d.frontier_calls_per_request,
    ),
    ("overspend_tokens_per_request", "Mean LLM tokens per request.", lambda d: d.tokens_per_request),
    (
        "overspend_llm_time_share_per_request",
        "Mean share of a request's wall time spent inside LLM calls.",
        lambda d: d.llm_time_share_per_request,
    ),
)


def diagnoses(
    snap: Snapshot, *, labels: Mapping[int, str], unattributed: str, bands: Mapping[str, Band]
) -> list[tuple[str, Diagnosis]]:
    """(window label, diagnosis) for each window of the snapshot, shortest first."""
    return [
        (
            labels.get(w.seconds, f"{w.seconds}s"),
            diagnose(w.calls, w.requests, unattributed=unattributed, bands=bands),
        )
        for w in snap.windows
    ]


@dataclass(frozen=True, slots=True)
class GaugeRenderer:
    labels: Mapping[int, str]
    unattributed: str
    bands: Mapping[str, Band]

    def diagnoses(self, snap: Snapshot) -> list[tuple[str, Diagnosis]]:
        return diagnoses(snap, labels=self.labels, unattributed=self.unattributed, bands=self.bands)

    def __call__(self, snap: Snapshot) -> list[Metric]:
        return self.render(self.diagnoses(snap))

    def render(self, per_window: list[tuple[str, Diagnosis]]) -> list[Metric]:
        """The gauges of diagnoses already made (see :meth:`diagnoses`)."""
        families: list[Metric] = []
        for name, doc, read in SCALARS:
            family = GaugeMetricFamily(name, doc, labels=["window"])
            for window, d in per_window:
                value = read(d)
                if value is not None:
                    family.add_metric([window], value)
            families.append(family)

        shares = GaugeMetricFamily(
            "overspend_step_cost_share", "Spend of each step / all spend (Test 2).", labels=["window", "step"]
        )
        top = GaugeMetricFamily(
            "overspend_top_frontier_model_info",
            "The frontier-tier model with the most spend (value 1).",
            labels=["window", "model"],
        )
        nxt = GaugeMetricFamily(
            "overspend_next_step_to_specialize_info",
            "The non-generate step whose specialization saves the most (value 1).",
            labels=["window", "step"],
        )
        savings = GaugeMetricFamily(
            "overspend_next_step_savings_usd",
            "What specializing the next step would have saved over the window, in USD.",
            labels=["window", "step"],
        )
        levels = GaugeMetricFamily(
            "overspend_signal_level",
            "Health level of each signal: 0 healthy, 1 suspect, 2 confirmed.",
            labels=["signal", "window"],
        )
        for window, d in per_window:
            for step, share in d.step_shares.items():
                shares.add_metric([window, step], share)
            if d.top_frontier_model is not None:
                top.add_metric([window, d.top_frontier_model], 1.0)
            if d.next_step_to_specialize is not None and d.next_step_savings_usd is not None:
                nxt.add_metric([window, d.next_step_to_specialize], 1.0)
                savings.add_metric([window, d.next_step_to_specialize], d.next_step_savings_usd)
            for signal, level in d.levels.items():
                levels.add_metric([signal, window], int(level))
        families += [shares, top, nxt, savings, levels]
        return families
