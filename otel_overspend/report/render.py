"""The report as text: a table for people, markdown for pull requests, JSON and CSV for tools.

Every number is read from a :class:`~otel_overspend.report.run.Report` (and so from
:func:`otel_overspend.accounting.signals.diagnose`); nothing here computes a ratio or a price. The
only arithmetic is the scaling of a saving to a week by the time the traces cover.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.report.run import InputSummary, PeriodDiagnosis, Report

__all__ = ("FORMATS", "plural", "render", "skipped_text")

#: Per-request signals: (label, Diagnosis field, level name, format).
_PER_REQUEST: Final = (
    ("frontier calls per request", "frontier_calls_per_request", "frontier_calls_per_request", ".2f"),
    ("tokens per request", "tokens_per_request", "tokens_per_request", ",.0f"),
    ("requests with 3+ frontier calls", "heavy_request_share", None, "%"),
    ("generate share of a request's spend", "generate_share_per_request", None, "%"),
    ("LLM time share of a request", "llm_time_share_per_request", None, "%"),
)
_MAX_STEP_COLUMNS: Final = 8


# -- formatting helpers -----------------------------------------------------------------------
def plural(count: int, noun: str) -> str:
    """``1 request``, ``2 requests``, ``1,000 LLM calls``: every noun here takes an s."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _iso(t_s: float | None) -> str | None:
    if t_s is None:
        return None
    return datetime.fromtimestamp(t_s, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _day(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, tz=timezone.utc).strftime("%Y-%m-%d")


def _num(value: float | None, spec: str) -> str:
    if value is None:
        return "n/a"
    if spec == "%":
        return f"{100 * value:.1f}%"
    return format(value, spec)


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if abs(value) >= 10 else f"${value:,.4f}"


def _level(d: Diagnosis, name: str | None) -> str:
    level = d.levels.get(name) if name is not None else None
    return "" if level is None else level.name.lower()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "no time"
    for unit, size in (("days", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _recommendation(report: Report) -> str:
    if report.diagnosis.cost_usd <= 0:
        return "no priced LLM spend in these traces: nothing to recommend"
    advice = report.advice
    d = advice.diagnosis
    window = f"{'last ' if advice.last_day else ''}{_duration(advice.covered_s)} of traces"
    step = d.next_step_to_specialize
    if step is None:
        return f"no non-generate step would cost less at its specialization-map tier (over the {window})"
    weekly = advice.savings_usd_per_week
    over = f"{_usd(d.next_step_savings_usd)} over the {window}"
    share = _num(d.step_shares.get(step), "%")
    head = f"specialize {step} next: \N{MINUS SIGN}"
    if weekly is None:
        text = f"{head}{over} ({step} is {share} of spend; too short to scale to a week)"
    else:
        text = f"{head}{_usd(weekly)} a week ({over}; {step} is {share} of spend)"
    earlier = report.diagnosis.next_step_to_specialize
    if advice.last_day and earlier is not None and earlier != step:
        saves = next((line.savings_usd for line in d.steps if line.step == earlier), 0.0)
        text += (
            f"; over all {_duration(report.covered_s)} it was {earlier}, which would save"
            f" {_usd(saves)} over the {window}"
        )
    return text


def skipped_text(inputs: InputSummary) -> str:
    """What was skipped as unreadable: ``skipped 2 lines (invalid json 1, truncated line 1)``."""
    parts = [
        plural(sum(reasons.values()), unit)
        + " ("
        + ", ".join(f"{reason.replace('_', ' ')} {n:,}" for reason, n in reasons.items())
        + ")"
        for unit, reasons in inputs.skipped.items()
    ]
    return "skipped " + "; ".join(parts) if parts else "nothing skipped"


def _notes(report: Report) -> list[str]:
    inputs = report.inputs
    notes = []
    for label, counts in (
        ("LLM spans not counted", inputs.dropped),
        ("traces replayed without their root (calls counted, no request)", inputs.incomplete_traces),
        ("open requests evicted", inputs.requests_evicted),
        ("label values folded into 'other'", inputs.label_overflow),
        ("LLM calls reporting no usage (no dollars: see docs/pricing.md)", inputs.calls_without_usage),
        ("usage read by the last-resort rule", inputs.usage_inferred),
    ):
        if counts:
            detail = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items())
            notes.append(f"{label}: {detail}")
    reorder = inputs.reorder
    if reorder.get("out_of_order"):
        notes.append(
            f"{plural(reorder['out_of_order'], 'span')} came too late to be put in end order (more "
            "than --reorder-window behind the reading, or after their trace was closed early): "
            "recorded out of order"
        )
    if reorder.get("closed_early"):
        notes.append(
            f"{plural(reorder['closed_early'], 'trace')} closed before the reorder window passed, to "
            "hold at most --max-held-spans spans and --max-open-traces traces (held at most "
            f"{inputs.held_spans_peak:,})"
        )
    unpriced = report.diagnosis.unpriced_calls
    if unpriced:
        notes.append(
            f"{plural(unpriced, 'LLM call')} could not be priced: "
            f"{'it adds' if unpriced == 1 else 'they add'} no dollars "
            "(set model_prices or model_tiers for their models)"
        )
    return notes


# -- the sections, as rows ------------------------------------------------------------------------
def _step_rows(d: Diagnosis) -> list[list[str]]:
    return [
        [line.step, f"{line.calls:,}", f"{line.tokens:,}", _usd(line.cost_usd), _num(line.share, "%")]
        for line in d.steps
    ]


def _counterfactual_rows(report: Report) -> list[list[str]]:
    d = report.diagnosis
    rows = [
        [
            line.step,
            _usd(line.cost_usd),
            _usd(line.specialized_cost_usd),
            _usd(line.savings_usd),
            _num(report.step_reductions.get(line.step), "%"),
        ]
        for line in d.steps
    ]
    rows.append(
        [
            "total",
            _usd(d.cost_usd),
            _usd(d.specialized_cost_usd),
            _usd(d.headroom_usd),
            _num(d.projected_reduction, "%"),
        ]
    )
    return rows


def _series_steps(report: Report) -> list[str]:
    return [line.step for line in report.diagnosis.steps][:_MAX_STEP_COLUMNS]


def _series_rows(report: Report) -> list[list[str]]:
    steps = _series_steps(report)
    return [
        [
            _day(p.start_s),
            f"{p.diagnosis.requests:,}",
            _usd(p.diagnosis.cost_usd),
            _num(p.diagnosis.specialist_eligible_fraction, ".3f"),
            _level(p.diagnosis, "specialist_eligible_fraction"),
            _num(p.diagnosis.model_concentration, ".3f"),
            *(_num(p.diagnosis.step_shares.get(step), "%") for step in steps),
        ]
        for p in report.periods
    ]


def _headline(report: Report) -> list[str]:
    d, inputs = report.diagnosis, report.inputs
    span = (
        f"{_iso(report.first_s)} to {_iso(report.last_s)} ({_duration(report.covered_s)})"
        if report.first_s is not None
        else "no spans"
    )
    calls = f"{plural(d.requests, 'request')}, {plural(d.calls, 'LLM call')} ({d.unpriced_calls:,} unpriced)"
    return [
        f"{plural(inputs.files, 'file')}, {plural(inputs.spans, 'span')}, {span}",
        f"{calls}, spend {_usd(d.cost_usd)}; {skipped_text(inputs)}",
    ]


def _value_and_level(d: Diagnosis, name: str) -> str:
    return " ".join(part for part in (_num(getattr(d, name), ".3f"), _level(d, name)) if part)


def _test_lines(report: Report) -> dict[str, str]:
    d = report.diagnosis
    concentration = report.bands["model_concentration"]
    fraction = report.fraction_band
    return {
        "test1": f"Test 1, model concentration: {_value_and_level(d, 'model_concentration')} "
        f"(top frontier model: {d.top_frontier_model or 'none'}; healthy below {concentration.suspect:g}, "
        f"confirmed above {concentration.confirmed:g})",
        "test4": "Test 4, specialist-eligible fraction: "
        f"{_value_and_level(d, 'specialist_eligible_fraction')} (healthy below {fraction.suspect:g}, "
        f"alarm above {report.alarm_fraction:g}, confirmed above {fraction.confirmed:g}; "
        f"unattributed spend: {report.unattributed})",
    }


def _per_request(d: Diagnosis) -> list[str]:
    lines = [
        f"{label}: {_num(getattr(d, field), spec)} {_level(d, level)}".rstrip()
        for label, field, level, spec in _PER_REQUEST
    ]
    if any(d.purpose_cost_usd.values()):
        split = ", ".join(f"{purpose} {_usd(usd)}" for purpose, usd in d.purpose_cost_usd.items())
        lines.append(f"spend by purpose: {split} (eval / the rest: {_num(d.eval_share, '.2f')})")
    return lines


# -- table and markdown ------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


_STEP_HEADER: Final = ["step", "calls", "tokens", "USD", "share"]
_COUNTERFACTUAL_HEADER: Final = ["step", "now", "specialized", "savings", "reduction"]


def _series_header(report: Report) -> list[str]:
    return ["period", "requests", "spend", "fraction", "level", "concentration", *_series_steps(report)]


def _pattern_line(report: Report) -> str | None:
    """The probable pattern with its evidence (``None``: nothing to classify)."""
    verdict = report.pattern
    if verdict is None:
        return None
    where = f" ({verdict.step})" if verdict.step else ""
    evidence = ", ".join(f"{name} {value:.4g}" for name, value in verdict.evidence.items())
    also = f"; also {', '.join(verdict.also)}" if verdict.also else ""
    return f"Probable pattern: {verdict.pattern}{where}: {evidence or 'no evidence'}{also}"


def _pattern_json(report: Report) -> dict[str, Any] | None:
    verdict = report.pattern
    if verdict is None:
        return None
    return {
        "name": verdict.pattern,
        "step": verdict.step,
        "evidence": dict(verdict.evidence),
        "also": list(verdict.also),
    }


def render_table(report: Report) -> str:
    d = report.diagnosis
    tests = _test_lines(report)
    lines = ["otel-overspend report", *(f"  {line}" for line in _headline(report)), ""]
    lines += [tests["test1"], ""]
    lines += ["Test 2, spend by step:", *_table(_STEP_HEADER, _step_rows(d)), ""]
    lines += [
        "Test 3, the counterfactual (every step at its specialization-map tier):",
        *_table(_COUNTERFACTUAL_HEADER, _counterfactual_rows(report)),
        "",
    ]
    lines += [tests["test4"], ""]
    lines += ["Per request:", *(f"  {line}" for line in _per_request(d)), ""]
    if report.periods:
        lines += [f"By {report.period} (UTC):", *_table(_series_header(report), _series_rows(report)), ""]
    lines += [f"Recommendation: {_recommendation(report)}"]
    pattern = _pattern_line(report)
    if pattern is not None:
        lines += [pattern]
    notes = _notes(report)
    if notes:
        lines += ["", "Notes:", *(f"  {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def render_markdown(report: Report) -> str:
    d = report.diagnosis
    tests = _test_lines(report)
    lines = ["## otel-overspend report", "", *(f"- {line}" for line in _headline(report)), ""]
    lines += [f"**{tests['test1']}**", ""]
    lines += ["### Test 2, spend by step", "", *_markdown_table(_STEP_HEADER, _step_rows(d)), ""]
    lines += [
        "### Test 3, the counterfactual",
        "",
        *_markdown_table(_COUNTERFACTUAL_HEADER, _counterfactual_rows(report)),
        "",
    ]
    lines += [f"**{tests['test4']}**", ""]
    lines += ["### Per request", "", *(f"- {line}" for line in _per_request(d)), ""]
    if report.periods:
        lines += [
            f"### By {report.period} (UTC)",
            "",
            *_markdown_table(_series_header(report), _series_rows(report)),
            "",
        ]
    lines += [f"**Recommendation: {_recommendation(report)}**"]
    pattern = _pattern_line(report)
    if pattern is not None:
        lines += ["", f"**{pattern}**"]
    notes = _notes(report)
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


# -- JSON and CSV ------------------------------------------------------------------------------------
def _diagnosis_json(d: Diagnosis, reductions: dict[str, float | None] | None = None) -> dict[str, Any]:
    level = {name: lvl.name.lower() for name, lvl in d.levels.items()}
    return {
        "requests": d.requests,
        "calls": d.calls,
        "unpriced_calls": d.unpriced_calls,
        "cost_usd": d.cost_usd,
        "test1_model_concentration": {
            "value": d.model_concentration,
            "level": level.get("model_concentration"),
            "top_frontier_model": d.top_frontier_model,
        },
        "test2_steps": [
            {
                "step": line.step,
                "calls": line.calls,
                "tokens": line.tokens,
                "cost_usd": line.cost_usd,
                "share": line.share,
            }
            for line in d.steps
        ],
        "test3_counterfactual": {
            "steps": [
                {
                    "step": line.step,
                    "cost_usd": line.cost_usd,
                    "specialized_cost_usd": line.specialized_cost_usd,
                    "savings_usd": line.savings_usd,
                    **({"reduction": reductions.get(line.step)} if reductions is not None else {}),
                }
                for line in d.steps
            ],
            "cost_usd": d.cost_usd,
            "specialized_cost_usd": d.specialized_cost_usd,
            "headroom_usd": d.headroom_usd,
            "projected_reduction": d.projected_reduction,
            "next_step_to_specialize": d.next_step_to_specialize,
            "next_step_savings_usd": d.next_step_savings_usd,
            "candidates": [line.step for line in d.candidates],
        },
        "test4_specialist_eligible_fraction": {
            "value": d.specialist_eligible_fraction,
            "level": level.get("specialist_eligible_fraction"),
        },
        "generate_share": d.generate_share,
        "unattributed_share": d.unattributed_share,
        "heaviest_non_generate_step": d.heaviest_non_generate_step,
        "heaviest_non_generate_step_share": d.heaviest_non_generate_step_share,
        "per_request": {field: getattr(d, field) for _, field, _, _ in _PER_REQUEST},
        "spend_by_purpose_usd": dict(d.purpose_cost_usd),
        "eval_share": d.eval_share,
        "levels": level,
    }


def _period_json(p: PeriodDiagnosis) -> dict[str, Any]:
    return {"start": _iso(p.start_s), "end": _iso(p.end_s), **_diagnosis_json(p.diagnosis)}


def report_json(report: Report) -> dict[str, Any]:
    inputs = report.inputs
    return {
        "inputs": {
            "files": inputs.files,
            "bytes_read": inputs.bytes_read,
            "records": inputs.records,
            "spans": inputs.spans,
            "traces": inputs.traces,
            "skipped": inputs.skipped,
            "dropped": inputs.dropped,
            "incomplete_traces": inputs.incomplete_traces,
            "reorder": inputs.reorder,
            "held_spans_peak": inputs.held_spans_peak,
            "requests_evicted": inputs.requests_evicted,
            "label_overflow": inputs.label_overflow,
            "calls_without_usage": inputs.calls_without_usage,
            "usage_inferred": inputs.usage_inferred,
        },
        "covered": {
            "start": _iso(report.first_s),
            "end": _iso(report.last_s),
            "seconds": report.covered_s,
            "week_scale": report.week_scale,
        },
        "unattributed": report.unattributed,
        "thresholds": {
            "fraction_suspect": report.fraction_band.suspect,
            "fraction_alarm": report.alarm_fraction,
            "fraction_confirmed": report.fraction_band.confirmed,
        },
        **_diagnosis_json(report.diagnosis, dict(report.step_reductions)),
        "recommendation": {
            "step": report.advice.diagnosis.next_step_to_specialize,
            "savings_usd": report.advice.diagnosis.next_step_savings_usd,
            "savings_usd_per_week": report.next_step_savings_usd_per_week,
            "seconds": report.advice.covered_s,
            "last_day": report.advice.last_day,
            "step_over_all_traces": report.diagnosis.next_step_to_specialize,
            "text": _recommendation(report),
        },
        "periods": {"by": report.period, "series": [_period_json(p) for p in report.periods]},
        "pattern": _pattern_json(report),
    }


def render_json(report: Report) -> str:
    return json.dumps(report_json(report), indent=2) + "\n"


_CSV_SCALARS: Final = (
    "requests",
    "calls",
    "unpriced_calls",
    "cost_usd",
    "specialized_cost_usd",
    "headroom_usd",
    "projected_reduction",
    "model_concentration",
    "specialist_eligible_fraction",
    "generate_share",
    "unattributed_share",
    "next_step_savings_usd",
    *(field for _, field, _, _ in _PER_REQUEST),
)


def _csv_rows(
    label: str, start: str | None, end: str | None, d: Diagnosis, reductions: dict[str, float | None] | None
) -> Iterator[list[Any]]:
    for name in _CSV_SCALARS:
        yield [label, start, end, name, "", getattr(d, name)]
    for line in d.steps:
        values: dict[str, Any] = {
            "step_calls": line.calls,
            "step_tokens": line.tokens,
            "step_cost_usd": line.cost_usd,
            "step_share": line.share,
            "step_specialized_cost_usd": line.specialized_cost_usd,
            "step_savings_usd": line.savings_usd,
        }
        if reductions is not None:
            values["step_reduction"] = reductions.get(line.step)
        for name, value in values.items():
            yield [label, start, end, name, line.step, value]


def render_csv(report: Report) -> str:
    """Long format: one value a row (``period``, ``start``, ``end``, ``metric``, ``step``,
    ``value``); ``period`` is ``total`` for the whole input, else the period's first day."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "start", "end", "metric", "step", "value"])
    start, end = _iso(report.first_s), _iso(report.last_s)
    rows = list(_csv_rows("total", start, end, report.diagnosis, dict(report.step_reductions)))
    if report.pattern is not None:
        step = report.pattern.step or ""
        rows.append(["total", start, end, f"pattern_{report.pattern.pattern}", step, 1])
        rows += [
            ["total", start, end, f"pattern_evidence_{name}", step, value]
            for name, value in report.pattern.evidence.items()
        ]
    for p in report.periods:
        rows += _csv_rows(_day(p.start_s), _iso(p.start_s), _iso(p.end_s), p.diagnosis, None)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    return out.getvalue()


FORMATS: Final[dict[str, Callable[[Report], str]]] = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
    "markdown": render_markdown,
}


def render(report: Report, fmt: str) -> str:
    return FORMATS[fmt](report)
