"""The look-alike patterns as metrics: counters of step time and oracle checks (the fleet's
truth), and per-window gauges of the figures and of the probable pattern.

Every figure comes from :func:`otel_overspend.accounting.patterns.figures` and the pattern
from :func:`~otel_overspend.accounting.patterns.classify`; the offline report calls
:func:`window_verdicts` as this does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from otel_overspend.accounting.patterns import classify, figures
from otel_overspend.accounting.step_time import ADDED, BUCKETS, REQUEST
from otel_overspend.thresholds import STEP_TIME_BUCKETS

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from prometheus_client.metrics_core import Metric

    from otel_overspend.accounting.ledger import Snapshot
    from otel_overspend.accounting.observations import ObservationSnapshot
    from otel_overspend.accounting.patterns import PatternFigures, Verdict
    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.thresholds import PatternThresholds

__all__ = ("PatternRenderer", "window_verdicts")


def window_verdicts(
    snap: Snapshot,
    per_window: list[tuple[str, Diagnosis]],
    observed: ObservationSnapshot | None,
    *,
    now_s: float,
    thresholds: PatternThresholds,
    specialist_steps: Collection[str],
) -> list[tuple[str, PatternFigures, Verdict]]:
    """(window label, figures, verdict) for each window; the baseline is the longest window."""
    baseline = observed.windows[-1].cascades if observed is not None and observed.windows else None
    out: list[tuple[str, PatternFigures, Verdict]] = []
    for i, (label, diagnosis) in enumerate(per_window):
        view = observed.windows[i] if observed is not None and i < len(observed.windows) else None
        f = figures(
            diagnosis,
            snap.windows[i].calls,
            cascades=None if view is None else view.cascades,
            baseline_cascades=baseline,
            step_times=None if view is None else view.step_times,
            step_time_bounds=STEP_TIME_BUCKETS,
            agreements=None if view is None else view.agreements,
            last_checks=None if observed is None else observed.last_checks,
            now_s=now_s,
            specialist_steps=specialist_steps,
        )
        out.append((label, f, classify(f, thresholds)))
    return out


def _counters(observed: ObservationSnapshot) -> list[Metric]:
    hist = HistogramMetricFamily(
        "overspend_step_request_seconds",
        "Wall time each step added to a request (its step() blocks, overlaps counted once), in seconds.",
        labels=["step"],
    )
    wall = CounterMetricFamily(
        "overspend_step_request_wall_seconds",
        "Wall time of the requests observed in overspend_step_request_seconds, by step, in seconds.",
        labels=["step"],
    )
    for step, vector in observed.step_times.items():
        buckets: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip((*STEP_TIME_BUCKETS, float("inf")), vector[BUCKETS:], strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        hist.add_metric([step], buckets, sum_value=vector[ADDED])
        wall.add_metric([step], vector[REQUEST])
    checks = CounterMetricFamily(
        "overspend_oracle_checks",
        "Oracle checks of a step's specialist against its teacher.",
        labels=["step"],
    )
    agreed = CounterMetricFamily(
        "overspend_oracle_agreements", "Oracle checks where student and teacher agreed.", labels=["step"]
    )
    for step, (n, yes) in observed.agreements.items():
        checks.add_metric([step], n)
        agreed.add_metric([step], yes)
    last = GaugeMetricFamily(
        "overspend_oracle_last_check_timestamp_seconds",
        "Time of a step's last oracle check, in seconds since the epoch (fleet: max).",
        labels=["step"],
    )
    for step, at in observed.last_checks.items():
        last.add_metric([step], at)
    cascade = [
        CounterMetricFamily(name, doc, labels=["step"])
        for name, doc in (
            ("overspend_cascade_cases", "Cases of a cascade step: its requests' calls at the cheap stage."),
            (
                "overspend_cascade_escalations",
                "Cases of a cascade step escalated: a cheap call, then an expensive one in its request.",
            ),
            ("overspend_cascade_cost_usd", "Spend on a cascade step's priced cases (both stages), in USD."),
            (
                "overspend_cascade_all_expensive_cost_usd",
                "What a cascade step's priced cases would cost, each run at the expensive stage, in USD.",
            ),
        )
    ]
    for step, vector in observed.cascades.items():
        for family, value in zip(cascade, vector, strict=True):
            family.add_metric([step], value)
    return [hist, wall, checks, agreed, last, *cascade]


@dataclass(frozen=True, slots=True)
class PatternRenderer:
    """The pattern families of one processor, from its ledger snapshot and diagnoses."""

    thresholds: PatternThresholds
    specialist_steps: tuple[str, ...]
    observe: Callable[[], ObservationSnapshot]
    clock: Callable[[], float]

    def verdicts(
        self,
        snap: Snapshot,
        per_window: list[tuple[str, Diagnosis]],
        observed: ObservationSnapshot | None = None,
    ) -> list[tuple[str, PatternFigures, Verdict]]:
        return window_verdicts(
            snap,
            per_window,
            self.observe() if observed is None else observed,
            now_s=self.clock(),
            thresholds=self.thresholds,
            specialist_steps=self.specialist_steps,
        )

    def __call__(self, snap: Snapshot, per_window: list[tuple[str, Diagnosis]]) -> list[Metric]:
        observed = self.observe()
        verdicts = self.verdicts(snap, per_window, observed)
        families = _counters(observed)
        # The pattern label is one of patterns.PATTERNS; the step one of the capped steps.
        p95 = GaugeMetricFamily(
            "overspend_step_latency_p95_seconds",
            "p95 of the wall time a step added to a request over the window, in seconds.",
            labels=["window", "step"],
        )
        share = GaugeMetricFamily(
            "overspend_step_request_time_share",
            "Time a step added to requests / the requests' time, over the window.",
            labels=["window", "step"],
        )
        agreement = GaugeMetricFamily(
            "overspend_teacher_agreement_ratio",
            "Oracle checks agreeing with the teacher / oracle checks, over the window.",
            labels=["window", "step"],
        )
        escalation = GaugeMetricFamily(
            "overspend_cascade_escalation_rate",
            "In a cascade step: frontier-tier calls / calls below frontier tier, over the window.",
            labels=["window", "step"],
        )
        savings = GaugeMetricFamily(
            "overspend_cascade_savings_ratio",
            "In a cascade step: 1 - spend / (every case at the frontier calls' mean cost), over the window.",
            labels=["window", "step"],
        )
        specialist = GaugeMetricFamily(
            "overspend_specialist_step_info",
            "Steps served by a specialist (most calls at specialist tier, or configured), value 1.",
            labels=["window", "step"],
        )
        eval_share = GaugeMetricFamily(
            "overspend_eval_spend_share",
            "Evaluation spend / every other spend (request path and batch) of the requests "
            "finished in the window.",
            labels=["window"],
        )
        info = GaugeMetricFamily(
            "overspend_pattern_info",
            "The probable pattern of the window (value 1), with the step it concerns.",
            labels=["window", "pattern", "step"],
        )
        evidence = GaugeMetricFamily(
            "overspend_pattern_evidence",
            "The numbers that decided the window's probable pattern, by figure.",
            labels=["window", "pattern", "figure"],
        )
        for window, f, verdict in verdicts:
            for s in f.steps:
                for family, value in (
                    (p95, s.latency_p95_seconds),
                    (share, s.request_time_share),
                    (agreement, s.agreement_ratio),
                    (escalation, s.escalation_rate),
                    (savings, s.savings_ratio),
                ):
                    if value is not None:
                        family.add_metric([window, s.step], value)
                if s.specialist_served:
                    specialist.add_metric([window, s.step], 1.0)
            if f.eval_share is not None:
                eval_share.add_metric([window], f.eval_share)
            if not f.has_data:
                continue
            info.add_metric([window, verdict.pattern, verdict.step or ""], 1.0)
            for figure, value in verdict.evidence.items():
                evidence.add_metric([window, verdict.pattern, figure], value)
        families += [p95, share, agreement, escalation, savings, specialist, eval_share, info, evidence]
        return families
