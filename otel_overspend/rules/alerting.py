"""Prometheus recording and alerting rules for the overspend metrics.

Everything here is a pure function of :data:`otel_overspend.thresholds.ALERTS` and a few
options (windows, ``for:`` durations, thresholds, runbook links: see
:mod:`otel_overspend.rules.command`), so the shipped rule files can be regenerated (and checked
for drift) at any time::

    otel-overspend rules > overspend.rules.yml
    otel-overspend rules --format operator > overspend-prometheusrule.yaml
    otel-overspend deploy-kit DIR   # both, in the fleet setup of docs/fleet.md

Recording rules follow the ``level:metric:operations`` convention. The level is always
``overspend`` (fleet-wide: every rule sums rates across instances *before* dividing, so a
ratio is spend-weighted over the fleet, never a mean of per-instance ratios). A breakdown
is spelled in the metric part, e.g. ``overspend:llm_cost_usd_by_step:rate1h{step=...}``, so
a fleet total and its breakdown never share a name. Each window (``1h``, ``1d``, ``7d`` by
default) gets its own group; alerts read the rules of one window (``1h`` by default).

The specialist-eligible fraction leaves ``step="unattributed"`` out of both sides; spend
under the label-cap overflow value ``step="other"`` counts as a step other than generate.
Ratios divide by a denominator filtered with ``> 0``: with no traffic in the window a ratio
has no sample at all (rather than ``NaN`` or a misleading ``0``), so no alert fires.

Unpriced calls never read as $0. Priced calls of a step are its calls minus its unpriced
calls; a step with LLM calls in the window (counted, or seen without usage) and no priced
one is listed by ``overspend:llm_calls_by_unpriced_step``, and every ratio that would need
its spend has no sample: its own step share; for ``generate`` the generate share and the
specialist-eligible fraction (per instance, ``..._by_unpriced_instance_step``); and, while
any step is listed, the shares of all spend that alert when high (frontier model shares,
concentration, unattributed share), whose denominator lacks that step's spend. Calls priced
in part are left out of the ratios; the unpriced counters and the descriptions' "left out"
sentences say how many. A ratio that alerts when low (generate share) or reads a step's
spend only in its numerator (the fraction, for steps other than generate) can only move
away from its threshold when another step is unpriced, so it keeps its sample. The
projected reduction divides by the spend that has a counterfactual: spend priced only by a
cost its span carried is left out of both sides.

One limit: while the window still holds priced calls of a step that has just lost its
price (or its usage), the ratios are over those priced calls alone and can cross a
threshold before the step is listed; an alert whose ``for:`` is at least the window cannot
fire from that, one with a shorter ``for:`` can, for at most the window minus ``for:``.

Alerts with several thresholds (the specialist-eligible fraction: warning above 0.3,
critical above 0.5) render one rule per severity under the same alert name, and both fire
when the value is above the higher threshold. The warning is *not* bounded above (``< 0.5``)
on purpose: a bounded warning resolves the moment the value crosses 0.5 while the critical
is still pending its ``for:``, which leaves a gap with nothing firing. Instead, pair the
rules with the Alertmanager inhibition from :func:`alertmanager_inhibit_rules`
(``--format inhibit``), which mutes the warning while the critical of the same alert fires.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import yaml

from otel_overspend.base.durations import duration_ms, format_duration_ms
from otel_overspend.calls.catalog import FRONTIER
from otel_overspend.rules.pattern_rules import PATTERN_ALERTS, pattern_anchor, pattern_recording_rules
from otel_overspend.steps import GENERATE, UNATTRIBUTED
from otel_overspend.thresholds import ALERTS, AlertThreshold

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = (
    "DEFAULT_RUNBOOK_BASE_URL",
    "DEFAULT_WINDOWS",
    "alertmanager_inhibit_rules",
    "dump_yaml",
    "main",
    "render_prometheus_rule_manifest",
    "render_rules",
    "runbook_anchors",
)

DEFAULT_WINDOWS: Final = ("1h", "1d", "7d")
DEFAULT_ALERT_WINDOW: Final = "1h"
DEFAULT_RUNBOOK_BASE_URL: Final = "https://github.com/otel-overspend/otel-overspend/blob/main/docs/alerts.md"
DEFAULT_MANIFEST_NAME: Final = "otel-overspend"
DEFAULT_MANIFEST_LABELS: Final[Mapping[str, str]] = {
    "app.kubernetes.io/name": "otel-overspend",
    "app.kubernetes.io/component": "alerting",
}

_COST: Final = "overspend_llm_cost_usd_total"
_SPECIALIZED: Final = "overspend_llm_specialized_cost_usd_total"
_WITHOUT_COUNTERFACTUAL: Final = "overspend_llm_cost_without_counterfactual_usd_total"
_CALLS: Final = "overspend_llm_calls_total"
_UNPRICED: Final = "overspend_unpriced_llm_calls_total"
_WITHOUT_USAGE: Final = "overspend_llm_calls_without_usage_total"
_GENERATE_STEP: Final = f'step="{GENERATE}"'
_UNATTRIBUTED_STEP: Final = f'step="{UNATTRIBUTED}"'
_NON_GENERATE: Final = f'step!~"{GENERATE}|{UNATTRIBUTED}"'
_ATTRIBUTED: Final = f'step!="{UNATTRIBUTED}"'
_FRONTIER_TIER: Final = f'tier="{FRONTIER}"'
_OPS: Final = frozenset({">", ">=", "<", "<=", "==", "!="})
_SEVERITY_RANK: Final[Mapping[str, int]] = {"critical": 3, "error": 2, "warning": 1, "info": 0}
#: +1 when a higher value is worse, -1 when a lower one is.
_DIRECTION: Final[Mapping[str, int]] = {">": 1, ">=": 1, "<": -1, "<=": -1}


# --------------------------------------------------------------------------- durations


def _check_window(window: str) -> None:
    if duration_ms(window) == 0:
        raise ValueError(f"window must be longer than zero: {window!r}")


# --------------------------------------------------------------------------- recording rules


def _record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def _recording_rules(w: str) -> list[dict[str, Any]]:
    """The rules of one window, helpers first (rules in a group are evaluated in order)."""
    cost = f"overspend:llm_cost_usd:rate{w}"
    by_step = f"overspend:llm_cost_usd_by_step:rate{w}"
    by_model = f"overspend:llm_cost_usd_by_model:rate{w}"
    by_instance_step = f"overspend:llm_cost_usd_by_instance_step:rate{w}"
    specialized = f"overspend:llm_specialized_cost_usd:rate{w}"
    without_counterfactual = f"overspend:llm_cost_without_counterfactual_usd:rate{w}"
    calls = f"overspend:llm_calls:rate{w}"
    calls_by_step = f"overspend:llm_calls_by_step:rate{w}"
    calls_by_step_model = f"overspend:llm_calls_by_step_model:rate{w}"
    calls_by_instance_step = f"overspend:llm_calls_by_instance_step:rate{w}"
    unpriced = f"overspend:unpriced_llm_calls:rate{w}"
    unpriced_by_step = f"overspend:unpriced_llm_calls_by_step:rate{w}"
    unpriced_by_instance_step = f"overspend:unpriced_llm_calls_by_instance_step:rate{w}"
    priced_by_step = f"overspend:priced_llm_calls_by_step:rate{w}"
    priced_by_instance_step = f"overspend:priced_llm_calls_by_instance_step:rate{w}"
    no_usage = f"overspend:llm_calls_without_usage:rate{w}"
    no_usage_by_step_model = f"overspend:llm_calls_without_usage_by_step_model:rate{w}"
    no_usage_by_instance_step = f"overspend:llm_calls_without_usage_by_instance_step:rate{w}"
    unpriced_steps = f"overspend:llm_calls_by_unpriced_step:rate{w}"
    unpriced_instance_steps = f"overspend:llm_calls_by_unpriced_instance_step:rate{w}"
    frontier_share = f"overspend:frontier_model_cost_share:ratio_rate{w}"
    guarded_cost = f"({cost} > 0)"

    def rate(metric: str, by: str = "") -> str:
        grouping = f" by ({by}) " if by else ""
        return f"sum{grouping}(rate({metric}[{w}]))"

    def per_request(histogram: str) -> str:
        return f"{rate(f'{histogram}_sum')} / ({rate(f'{histogram}_count')} > 0)"

    def either(a: str, b: str) -> str:
        """``a + b`` where both have the labels, else whichever has them."""
        return f"({a} + {b}) or {a} or {b}"

    def share(part: str, rest: str) -> str:
        """``part / (part + rest)``, a missing side read as 0; no sample when both are 0 or absent."""
        part_or_0 = f"({part} or 0 * {rest})"
        return f"{part_or_0} / (({part_or_0} + ({rest} or 0 * {part})) > 0)"

    instance_attributed = f"sum by (instance) ({by_instance_step}{{{_ATTRIBUTED}}})"
    no_usage_by_step = f"sum by (step) ({no_usage_by_step_model})"
    return [
        # Fleet-wide sums of rates (the building blocks).
        _record(cost, rate(_COST)),
        _record(by_step, rate(_COST, "step")),
        _record(by_model, rate(_COST, "model, tier")),
        _record(f"overspend:llm_cost_usd_by_instance:rate{w}", rate(_COST, "instance")),
        _record(by_instance_step, rate(_COST, "instance, step")),
        _record(specialized, rate(_SPECIALIZED)),
        _record(f"overspend:llm_specialized_cost_usd_by_step:rate{w}", rate(_SPECIALIZED, "step")),
        _record(without_counterfactual, rate(_WITHOUT_COUNTERFACTUAL)),
        _record(
            f"overspend:llm_cost_without_counterfactual_usd_by_step:rate{w}",
            rate(_WITHOUT_COUNTERFACTUAL, "step"),
        ),
        _record(calls, rate(_CALLS)),
        _record(calls_by_step, rate(_CALLS, "step")),
        _record(calls_by_step_model, rate(_CALLS, "step, model")),
        _record(calls_by_instance_step, rate(_CALLS, "instance, step")),
        _record(f"overspend:llm_calls_by_tier:rate{w}", rate(_CALLS, "tier")),
        _record(f"overspend:llm_tokens_by_kind:rate{w}", rate("overspend_llm_tokens_total", "kind")),
        _record(f"overspend:requests:rate{w}", rate("overspend_requests_total")),
        _record(unpriced, rate(_UNPRICED)),
        _record(f"overspend:unpriced_llm_calls_by_model:rate{w}", rate(_UNPRICED, "model")),
        _record(unpriced_by_step, rate(_UNPRICED, "step")),
        _record(unpriced_by_instance_step, rate(_UNPRICED, "instance, step")),
        _record(no_usage, rate(_WITHOUT_USAGE)),
        _record(no_usage_by_step_model, rate(_WITHOUT_USAGE, "step, model")),
        _record(no_usage_by_instance_step, rate(_WITHOUT_USAGE, "instance, step")),
        _record(
            f"overspend:spans_dropped_by_reason:rate{w}", rate("overspend_spans_dropped_total", "reason")
        ),
        # Priced calls = calls - unpriced calls (an exporter without the step label on the
        # unpriced counter reads as all priced, as before).
        _record(priced_by_step, f"{calls_by_step} - ({unpriced_by_step} or 0 * {calls_by_step})"),
        _record(
            priced_by_instance_step,
            f"{calls_by_instance_step} - ({unpriced_by_instance_step} or 0 * {calls_by_instance_step})",
        ),
        # Steps with LLM calls in the window (counted, or seen without usage) and not one of
        # them priced: their spend is unknown, not 0. The value is their calls a second.
        _record(
            unpriced_steps,
            f"({either(calls_by_step, no_usage_by_step)}) > 0 unless on (step) ({priced_by_step} > 0)",
        ),
        _record(
            unpriced_instance_steps,
            f"({either(calls_by_instance_step, no_usage_by_instance_step)}) > 0"
            f" unless on (instance, step) ({priced_by_instance_step} > 0)",
        ),
        # Ratios of sums. A ratio that would read an unpriced step's spend as $0 has no sample.
        _record(f"overspend:unpriced_llm_calls_share:ratio_rate{w}", f"{unpriced} / ({calls} > 0)"),
        _record(f"overspend:llm_calls_without_usage_share:ratio_rate{w}", share(no_usage, calls)),
        _record(
            f"overspend:llm_calls_without_usage_share_by_step_model:ratio_rate{w}",
            share(no_usage_by_step_model, calls_by_step_model),
        ),
        _record(
            f"overspend:specialist_eligible_fraction:ratio_rate{w}",
            f"((sum({by_step}{{{_NON_GENERATE}}}) or vector(0)) / (sum({by_step}{{{_ATTRIBUTED}}}) > 0))"
            f" unless on () {unpriced_steps}{{{_GENERATE_STEP}}}",
        ),
        _record(
            f"overspend:specialist_eligible_fraction_by_instance:ratio_rate{w}",
            f"((sum by (instance) ({by_instance_step}{{{_NON_GENERATE}}}) or 0 * {instance_attributed})"
            f" / ({instance_attributed} > 0))"
            f" unless on (instance) {unpriced_instance_steps}{{{_GENERATE_STEP}}}",
        ),
        _record(
            frontier_share,
            f"(sum by (model) ({by_model}{{{_FRONTIER_TIER}}}) / on () group_left () {guarded_cost})"
            f" unless on () {unpriced_steps}",
        ),
        _record(
            f"overspend:frontier_model_concentration:ratio_rate{w}",
            f"(max({frontier_share}) or 0 * {guarded_cost}) unless on () {unpriced_steps}",
        ),
        _record(
            f"overspend:step_cost_share:ratio_rate{w}",
            f"({by_step} unless on (step) {unpriced_steps}) / on () group_left () {guarded_cost}",
        ),
        _record(
            f"overspend:generate_cost_share:ratio_rate{w}",
            f"((sum({by_step}{{{_GENERATE_STEP}}}) or vector(0)) / {guarded_cost})"
            f" unless on () {unpriced_steps}{{{_GENERATE_STEP}}}",
        ),
        _record(
            f"overspend:unattributed_cost_share:ratio_rate{w}",
            f"((sum({by_step}{{{_UNATTRIBUTED_STEP}}}) or vector(0)) / {guarded_cost})"
            f" unless on () {unpriced_steps}",
        ),
        _record(
            f"overspend:projected_cost_reduction:ratio_rate{w}",
            f"1 - {specialized} / (({cost} - ({without_counterfactual} or vector(0))) > 0)",
        ),
        _record(
            f"overspend:frontier_calls_per_request:ratio_rate{w}",
            per_request("overspend_request_frontier_calls"),
        ),
        _record(f"overspend:tokens_per_request:ratio_rate{w}", per_request("overspend_request_tokens")),
    ]


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class _AlertText:
    """How one alert reads its recording rule and talks about it.

    In ``summary`` and ``description``, ``[window]`` becomes the alert window and
    ``[threshold]`` the formatted threshold; the rest is a Prometheus template.
    """

    record: str  # recording rule name without its window suffix
    summary: str
    description: str
    percent: bool  # format the threshold as a percentage
    #: The look-alike pattern the alert points at (an annotation, with its runbook section).
    pattern: str | None = None


def _optional(query: str, body: str) -> str:
    """Template text shown only when ``query`` returns a sample (``.`` is that sample in ``body``)."""
    return f"{{{{ with query `{query}` }}}}{{{{ with index . 0 }}}}{body}{{{{ end }}}}{{{{ end }}}}"


def _heaviest_step(w: str) -> str:
    return _optional(
        f"topk(1, overspend:step_cost_share:ratio_rate{w}{{{_NON_GENERATE}}})",
        " The heaviest step other than generate is {{ .Labels.step }}"
        " at {{ .Value | humanizePercentage }} of all LLM spend.",
    )


def _left_out(w: str) -> str:
    """How many calls a cost ratio could not see (shown only when there are any)."""
    return _optional(
        f"overspend:unpriced_llm_calls_share:ratio_rate{w} > 0",
        " {{ .Value | humanizePercentage }} of LLM calls had no price and are left out.",
    ) + _optional(
        f"overspend:llm_calls_without_usage_share:ratio_rate{w} > 0",
        " {{ .Value | humanizePercentage }} of LLM calls reported no usage and are left out.",
    )


def _alert_texts(w: str) -> dict[str, _AlertText]:
    heaviest = _heaviest_step(w)
    left_out = _left_out(w)
    patterns = {
        name: _AlertText(
            record=a.record,
            summary=a.summary,
            description=a.description,
            percent=a.percent,
            pattern=a.pattern,
        )
        for name, a in PATTERN_ALERTS.items()
    }
    return patterns | {
        "OverspendSpecialistEligibleFractionHigh": _AlertText(
            record="overspend:specialist_eligible_fraction:ratio_rate",
            summary=(
                "{{ $value | humanizePercentage }} of attributed LLM spend is on steps other than generate"
            ),
            description=(
                "Over the last [window], steps other than generate took {{ $value | humanizePercentage }}"
                " of attributed LLM spend (threshold [threshold])."
                + heaviest
                + _optional(
                    f"overspend:projected_cost_reduction:ratio_rate{w}",
                    " Running each step at its specialized tier would cut spend by"
                    " {{ .Value | humanizePercentage }}.",
                )
                + " Those steps are candidates for a smaller or specialist model."
                + left_out
            ),
            percent=True,
        ),
        "OverspendFrontierConcentrationHigh": _AlertText(
            record="overspend:frontier_model_concentration:ratio_rate",
            summary="One frontier model takes {{ $value | humanizePercentage }} of LLM spend",
            description=(
                "Over the last [window], one frontier model took {{ $value | humanizePercentage }}"
                " of all LLM spend (threshold [threshold])."
                + _optional(
                    f"topk(1, overspend:frontier_model_cost_share:ratio_rate{w})",
                    " The model is {{ .Labels.model }}.",
                )
                + heaviest
                + " Check which steps call it and whether they need a frontier model."
                + left_out
            ),
            percent=True,
        ),
        "OverspendFrontierCallsPerRequestHigh": _AlertText(
            record="overspend:frontier_calls_per_request:ratio_rate",
            summary="Requests make {{ $value | humanize }} frontier-model calls on average",
            description=(
                "Over the last [window], a request made {{ $value | humanize }} calls to frontier-tier"
                " models on average (threshold [threshold])."
                + heaviest
                + " Steps such as rewrite, rerank or grading probably run on the generation model."
            ),
            percent=False,
        ),
        "OverspendGenerateShareLow": _AlertText(
            record="overspend:generate_cost_share:ratio_rate",
            summary="The generate step is only {{ $value | humanizePercentage }} of LLM spend",
            description=(
                "Over the last [window], the generate step took {{ $value | humanizePercentage }}"
                " of all LLM spend (threshold [threshold]): supporting steps cost more than the answer."
                + heaviest
                + left_out
            ),
            percent=True,
        ),
        "OverspendTokensPerRequestHigh": _AlertText(
            record="overspend:tokens_per_request:ratio_rate",
            summary="Requests use {{ $value | humanize }} LLM tokens on average",
            description=(
                "Over the last [window], a request used {{ $value | humanize }} LLM tokens on average"
                " (threshold [threshold])."
                + heaviest
                + " Check retrieved context size, prompt growth, repeated calls and reasoning tokens."
            ),
            percent=False,
        ),
        "OverspendUnpricedModel": _AlertText(
            record="overspend:unpriced_llm_calls_by_model:rate",
            summary="LLM calls to {{ $labels.model }} have no price",
            description=(
                'Over the last [window], {{ $labels.model }} made {{ printf "%.3g" $value }} calls per'
                " second that no price source could price; their spend is missing from every cost ratio."
                " Add a price for the model."
            ),
            percent=False,
        ),
        "OverspendAttributionCoverageLow": _AlertText(
            record="overspend:unattributed_cost_share:ratio_rate",
            summary="{{ $value | humanizePercentage }} of LLM spend is not attributed to a pipeline step",
            description=(
                "Over the last [window], {{ $value | humanizePercentage }} of LLM spend came from calls"
                ' with no pipeline step (step="unattributed"; threshold [threshold]). The specialist-'
                "eligible fraction leaves that spend out, so it may be understated."
                " Map the missing spans to steps." + left_out
            ),
            percent=True,
        ),
        "OverspendLLMCallsWithoutUsage": _AlertText(
            record="overspend:llm_calls_without_usage_share_by_step_model:ratio_rate",
            summary=(
                "{{ $value | humanizePercentage }} of {{ $labels.model }} calls in step {{ $labels.step }}"
                " report no token usage"
            ),
            description=(
                "Over the last [window], {{ $value | humanizePercentage }} of the LLM calls to"
                " {{ $labels.model }} in step {{ $labels.step }} carried neither token usage nor a cost"
                " (threshold [threshold]): nothing can price them, so their spend is missing from every"
                " cost metric and ratio. Usually a streamed response whose client did not ask for usage;"
                " turn usage reporting on in the client."
            ),
            percent=True,
        ),
    }


def _number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _threshold_text(threshold: AlertThreshold, *, percent: bool) -> str:
    shown = f"{threshold.value * 100:g}%" if percent else f"{threshold.value:g}"
    return shown if threshold.op == ">" else f"{threshold.op} {shown}"


def _check_threshold(name: str, threshold: AlertThreshold, *, share: bool) -> None:
    if threshold.op not in _OPS:
        raise ValueError(f"alert {name}: unknown comparison operator {threshold.op!r}")
    if not threshold.severity or not threshold.severity.isidentifier():
        raise ValueError(f"alert {name}: bad severity {threshold.severity!r}")
    value = threshold.value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"alert {name}: bad threshold value {value!r}")
    if share and not 0 <= value <= 1:
        raise ValueError(
            f"alert {name}: the {threshold.severity} threshold is a share between 0 and 1"
            f" (0.3 for 30%), not {value!r}"
        )
    if value < 0:
        raise ValueError(f"alert {name}: the {threshold.severity} threshold cannot be negative: {value!r}")
    duration_ms(threshold.for_duration)


def _check_severity_order(name: str, thresholds: Sequence[AlertThreshold]) -> None:
    """A higher severity needs a value at least as far past the lower one's, or it fires first."""
    ranked = sorted(thresholds, key=lambda t: _SEVERITY_RANK.get(t.severity, -1))
    for lower, higher in itertools.pairwise(ranked):
        direction = _DIRECTION.get(lower.op)
        if direction is None or direction != _DIRECTION.get(higher.op):
            continue
        if (higher.value - lower.value) * direction < 0:
            side = "above" if direction > 0 else "below"
            raise ValueError(
                f"alert {name}: the {lower.severity} threshold ({lower.value:g}) is {side}"
                f" the {higher.severity} one ({higher.value:g})"
            )


def _for_duration(threshold: AlertThreshold, *, for_scale: float, for_duration: str | None) -> str:
    if for_duration is not None:
        return for_duration
    if for_scale == 1:
        return threshold.for_duration
    return format_duration_ms(round(duration_ms(threshold.for_duration) * for_scale))


def runbook_anchors(*, alerts: Mapping[str, Sequence[AlertThreshold]] = ALERTS) -> list[str]:
    """docs/alerts.md anchors (``alert-<lowercase name>``) the alerts' ``runbook_url`` point at."""
    return [f"alert-{name.lower()}" for name in alerts]


def _alert_rules(
    *,
    w: str,
    alerts: Mapping[str, Sequence[AlertThreshold]],
    runbook_base_url: str,
    for_scale: float,
    for_duration: str | None,
) -> list[dict[str, Any]]:
    texts = _alert_texts(w)
    rules: list[dict[str, Any]] = []
    for name, thresholds in alerts.items():
        text = texts.get(name)
        if text is None:
            raise ValueError(f"no rule template for alert {name!r}; known: {sorted(texts)}")
        if not thresholds:
            raise ValueError(f"alert {name} has no thresholds: {thresholds!r}")
        severities = [t.severity for t in thresholds]
        if len(set(severities)) != len(severities):
            raise ValueError(f"alert {name} repeats a severity: {severities!r}")
        for threshold in thresholds:
            _check_threshold(name, threshold, share=text.percent)
        _check_severity_order(name, thresholds)
        for threshold in thresholds:
            shown = _threshold_text(threshold, percent=text.percent)
            annotations = {
                "summary": text.summary,
                "description": text.description.replace("[window]", w).replace("[threshold]", shown),
                "runbook_url": f"{runbook_base_url}#alert-{name.lower()}",
            }
            if text.pattern is not None:
                annotations["pattern"] = text.pattern
                annotations["pattern_runbook_url"] = f"{runbook_base_url}#{pattern_anchor(text.pattern)}"
            rules.append(
                {
                    "alert": name,
                    "expr": f"{text.record}{w} {threshold.op} {_number(float(threshold.value))}",
                    "for": _for_duration(threshold, for_scale=for_scale, for_duration=for_duration),
                    "labels": {"severity": threshold.severity},
                    "annotations": annotations,
                }
            )
    return rules


# --------------------------------------------------------------------------- public API


def render_rules(
    *,
    windows: Sequence[str] = DEFAULT_WINDOWS,
    alert_window: str = DEFAULT_ALERT_WINDOW,
    alerts: Mapping[str, Sequence[AlertThreshold]] = ALERTS,
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL,
    for_scale: float = 1.0,
    for_duration: str | None = None,
) -> dict[str, Any]:
    """Return a Prometheus rule file (``{"groups": [...]}``).

    One recording group per window (``overspend.rules.<window>``), then ``overspend.alerts``,
    whose alerts read the recording rules of ``alert_window``. ``for_scale`` multiplies every
    ``for:`` duration; ``for_duration`` replaces them all (give at most one of the two). The
    cascade alerts compare the alert window with the longest window (their baseline), and
    need the two to differ.
    """
    if isinstance(windows, str) or not windows:
        raise ValueError(f"windows must be a non-empty sequence of durations: {windows!r}")
    for window in windows:
        _check_window(window)
    if len(set(windows)) != len(windows):
        raise ValueError(f"windows repeat: {list(windows)!r}")
    if alert_window not in windows:
        raise ValueError(f"alert_window {alert_window!r} is not one of the windows {list(windows)!r}")
    if not for_scale > 0:
        raise ValueError(f"for_scale must be positive: {for_scale!r}")
    if for_duration is not None:
        if for_scale != 1:
            raise ValueError(f"give for_duration ({for_duration!r}) or for_scale ({for_scale!r}), not both")
        duration_ms(for_duration)
    if not runbook_base_url or "#" in runbook_base_url:
        raise ValueError(f"runbook_base_url must be a URL without a fragment: {runbook_base_url!r}")

    baseline = max(windows, key=duration_ms)
    groups: list[dict[str, Any]] = [
        {
            "name": f"overspend.rules.{window}",
            "rules": _recording_rules(window)
            + pattern_recording_rules(
                window,
                others=[w for w in windows if w != baseline] if window == baseline else (),
            ),
        }
        for window in windows
    ]
    groups.append(
        {
            "name": "overspend.alerts",
            "rules": _alert_rules(
                w=alert_window,
                alerts=alerts,
                runbook_base_url=runbook_base_url,
                for_scale=for_scale,
                for_duration=for_duration,
            ),
        }
    )
    return {"groups": groups}


def render_prometheus_rule_manifest(
    *,
    name: str = DEFAULT_MANIFEST_NAME,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    windows: Sequence[str] = DEFAULT_WINDOWS,
    alert_window: str = DEFAULT_ALERT_WINDOW,
    alerts: Mapping[str, Sequence[AlertThreshold]] = ALERTS,
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL,
    for_scale: float = 1.0,
    for_duration: str | None = None,
) -> dict[str, Any]:
    """Return the same rules wrapped in a prometheus-operator ``PrometheusRule``.

    ``labels`` are added to the defaults; the operator only loads rules whose labels match
    the Prometheus resource's ``ruleSelector`` (often ``release: <helm release>``).
    """
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
        raise ValueError(f"not a Kubernetes object name: {name!r}")
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace) or len(namespace) > 63:
            raise ValueError(f"not a Kubernetes namespace: {namespace!r}")
        metadata["namespace"] = namespace
    metadata["labels"] = {**DEFAULT_MANIFEST_LABELS, **(labels or {})}
    rules = render_rules(
        windows=windows,
        alert_window=alert_window,
        alerts=alerts,
        runbook_base_url=runbook_base_url,
        for_scale=for_scale,
        for_duration=for_duration,
    )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": rules,
    }


def alertmanager_inhibit_rules(*, alerts: Mapping[str, Sequence[AlertThreshold]] = ALERTS) -> dict[str, Any]:
    """Alertmanager ``inhibit_rules`` muting an alert's lower severities while a higher one fires."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for name, thresholds in alerts.items():
        severities = {t.severity for t in thresholds}
        for source in severities:
            for target in severities:
                if _SEVERITY_RANK.get(source, -1) > _SEVERITY_RANK.get(target, -1):
                    pairs.setdefault((source, target), []).append(name)
    rules: list[dict[str, Any]] = []
    for (source, target), names in sorted(pairs.items()):
        alertname = f'alertname="{names[0]}"' if len(names) == 1 else f'alertname=~"{"|".join(names)}"'
        rules.append(
            {
                "source_matchers": [alertname, f'severity="{source}"'],
                "target_matchers": [alertname, f'severity="{target}"'],
                "equal": ["alertname"],
            }
        )
    return {"inhibit_rules": rules}


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with indented sequences and ``|`` for multi-line strings."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:  # noqa: ARG002
        super().increase_indent(flow, indentless=False)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(obj: Any) -> str:
    """Serialize ``obj`` as block-style YAML, keys in insertion order, no line folding."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1_000_000)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``otel-overspend rules`` (its options and output are in :mod:`otel_overspend.rules.command`)."""
    from otel_overspend.rules import command  # noqa: PLC0415 - command imports this module

    return command.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
