"""Cascades in the report: the last day against the whole data, and counts that depend
neither on the order requests close in nor on how the input is cut (``--jobs``, aggregates).

The trace files are written here as OTLP/JSON, one request a line: a root span, a ``route``
call on the mini model (300 / 20 tokens), in an escalated request a frontier ``route`` call
after it, and a large ``generate`` call on the frontier model, which keeps the
specialist-eligible fraction low so that no other pattern comes first.

Prices (USD per 1M tokens, input / output): frontier 3.00 / 15.00, mini 0.05 / 0.20. In
micro-dollars: a route call costs 300 x 0.05 + 20 x 0.20 = 19 at mini and 300 x 3 + 20 x 15
= 1,200 at frontier. A case resolved cheap costs 19, 1,200 all-expensive; an escalated case
costs 19 + 1,200 = 1,219, 1,200 all-expensive.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

import pytest

from otel_overspend.accounting.patterns import CASCADE_SATURATION, HEALTHY
from otel_overspend.cli import main
from otel_overspend.config.settings import Price, Settings
from otel_overspend.report import jobs
from otel_overspend.report.aggregate import FORMAT, VERSION
from otel_overspend.report.files import Problems
from otel_overspend.report.render import render, report_json
from otel_overspend.report.run import build_report

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from otel_overspend.report.run import Report

T0_S = 1_793_577_600  # Monday 2026-11-02 00:00 UTC
HOUR_S = 3_600
S_NS = 10**9
MINI, FRONTIER = "acme-mini-1", "acme-frontier-1"
SETTINGS = Settings(
    serve_metrics=False,
    use_genai_prices=False,
    model_tiers={"acme-mini-*": "mini", "acme-frontier-*": "frontier"},
    tier_prices={
        "frontier": Price(input=3.0, output=15.0),
        "mid": Price(input=0.30, output=1.20),
        "mini": Price(input=0.05, output=0.20),
        "specialist": Price(input=0.02, output=0.02),
    },
)
CONFIG = """\
use_genai_prices = false

[model_tiers]
"acme-mini-*" = "mini"
"acme-frontier-*" = "frontier"

[tier_prices.frontier]
input = 3.0
output = 15.0

[tier_prices.mini]
input = 0.05
output = 0.20
"""
RESOURCE = {"attributes": [{"key": "service.name", "value": {"stringValue": "rag-api"}}]}


def _attr(key: str, value: str | int) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(trace: int, span: int, parent: int, *, name: str, start_ns: int, end_ns: int, **attrs: Any) -> Any:
    return {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "parentSpanId": f"{parent:016x}" if parent else "",
        "name": name,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [_attr(k, v) for k, v in attrs.items()],
    }


def _call(trace: int, span: int, model: str, *, step: str, tokens: tuple[int, int], at_ns: int) -> Any:
    return _span(
        trace,
        span,
        1,
        name=f"chat {model}",
        start_ns=at_ns,
        end_ns=at_ns + S_NS // 10,
        **{
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "acme",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": tokens[0],
            "gen_ai.usage.output_tokens": tokens[1],
            "overspend.step": step,
        },
    )


def request_line(trace: int, at_s: int, *, escalated: bool) -> str:
    """One request starting at ``at_s``, its spans in end order, the root (2 s) last."""
    t = at_s * S_NS
    spans = [_call(trace, 2, MINI, step="route", tokens=(300, 20), at_ns=t + S_NS // 10)]
    if escalated:
        spans.append(_call(trace, 3, FRONTIER, step="route", tokens=(300, 20), at_ns=t + 3 * S_NS // 10))
    spans.append(_call(trace, 4, FRONTIER, step="generate", tokens=(20_000, 2_000), at_ns=t + S_NS))
    spans.append(_span(trace, 1, 0, name="POST /answer", start_ns=t, end_ns=t + 2 * S_NS))
    doc = {
        "resourceSpans": [{"resource": RESOURCE, "scopeSpans": [{"scope": {"name": "app"}, "spans": spans}]}]
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def write(path: Path, requests: Sequence[tuple[int, bool]]) -> Path:
    """One line a request: (hours after ``T0_S``, escalated)."""
    path.write_text(
        "".join(
            request_line(i + 1, T0_S + hour * HOUR_S, escalated=up) for i, (hour, up) in enumerate(requests)
        )
    )
    return path


def report(files: list[Path], n_jobs: int = 1) -> Report:
    return build_report(files, settings=SETTINGS, problems=Problems(shown=0), jobs=n_jobs)


def route_figures(found: Report) -> tuple[float | None, ...]:
    assert found.pattern_figures is not None
    (route,) = (s for s in found.pattern_figures.steps if s.step == "route")
    return (
        route.escalation_rate,
        route.baseline_escalation_rate,
        route.savings_ratio,
        route.baseline_savings_ratio,
    )


# -- the last day against the whole data ------------------------------------------------------------
#: 20 requests an hour apart from Monday 00:00 (2 escalated: 10 %), then 10 an hour apart from
#: Tuesday 16:00 to Wednesday 01:00. The last day is the 24 UTC hours up to the latest request's
#: (Wednesday 01:00): Tuesday 02:00 on, which holds the 10 later requests and none of the first.
FIRST = [(h, h in {4, 14}) for h in range(20)]


def later(escalated: int) -> list[tuple[int, bool]]:
    return [(40 + h, h < escalated) for h in range(10)]


def test_the_last_day_escalating_more_is_cascade_saturation(tmp_path: Path) -> None:
    found = report([write(tmp_path / "traces.json", FIRST + later(5))])
    # Last day: 5 of 10 escalate; cost 5 x 1,219 + 5 x 19 = 6,190 against 10 x 1,200 = 12,000.
    # All: 7 of 30; cost 7 x 1,219 + 23 x 19 = 8,970 against 36,000.
    rate, base_rate, savings, base_savings = 0.5, 7 / 30, 1 - 6_190 / 12_000, 1 - 8_970 / 36_000
    assert route_figures(found) == pytest.approx((rate, base_rate, savings, base_savings), rel=1e-12)
    assert found.pattern is not None
    assert (found.pattern.pattern, found.pattern.step) == (CASCADE_SATURATION, "route")
    evidence = {
        "escalation_rate": rate,
        "baseline_escalation_rate": base_rate,
        "savings_ratio": savings,
        "baseline_savings_ratio": base_savings,
        "savings_drop_share": 1 - savings / base_savings,  # 0.3552
    }
    assert found.pattern.evidence == pytest.approx(evidence, rel=1e-12)
    # Every format shows the same pattern and evidence.
    assert report_json(found)["pattern"] == {
        "name": CASCADE_SATURATION,
        "step": "route",
        "evidence": pytest.approx(evidence, rel=1e-12),
        "also": [],
    }
    line = (
        "Probable pattern: cascade_saturation (route): escalation_rate 0.5, baseline_escalation_rate 0.2333"
    )
    assert line in render(found, "table")
    assert f"**{line}" in render(found, "markdown")
    csv = render(found, "csv")
    assert "pattern_cascade_saturation,route,1" in csv
    assert "pattern_evidence_baseline_escalation_rate,route,0.23333333333333" in csv


def test_a_steady_cascade_is_healthy(tmp_path: Path) -> None:
    found = report([write(tmp_path / "traces.json", FIRST + later(1))])
    # 1 of 10 on the last day, 3 of 30 in all: 0.1 both; cost 1,219 + 9 x 19 = 1,390 of
    # 12,000, and 3 x 1,219 + 27 x 19 = 4,170 of 36,000: 0.88417 both.
    assert route_figures(found) == pytest.approx((0.1, 0.1, 1 - 1_390 / 12_000, 1 - 4_170 / 36_000))
    assert found.pattern is not None
    assert found.pattern.pattern == HEALTHY


# -- independent of order and of the cut --------------------------------------------------------------
#: 40 requests an hour apart from Monday 00:00; the first escalation comes at hour 25, then
#: every other hour: 8 escalated. The last day is hour 16 on (the latest request's hour, 39,
#: and the 23 before it): 24 requests, the 8 escalated among them.
LATE = [(h, h >= 25 and h % 2 == 1) for h in range(40)]
#: Last day: 8 of 24, cost 8 x 1,219 + 16 x 19 = 10,056 of 28,800; all: 8 of 40, cost
#: 8 x 1,219 + 32 x 19 = 10,360 of 48,000. The drift, 1/3 - 0.2, clears the 0.1 band.
LATE_FIGURES = (8 / 24, 8 / 40, 1 - 10_056 / 28_800, 1 - 10_360 / 48_000)


def test_cases_before_the_first_escalation_count(tmp_path: Path) -> None:
    found = report([write(tmp_path / "traces.json", LATE)])
    assert route_figures(found) == pytest.approx(LATE_FIGURES, rel=1e-12)
    assert found.pattern is not None
    assert (found.pattern.pattern, found.pattern.step) == (CASCADE_SATURATION, "route")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_order_of_requests_changes_no_figure(tmp_path: Path, seed: int) -> None:
    """The same 12 requests (3 escalated) in other orders, within one hour: 12 cases, 3
    escalated, cost 3 x 1,219 + 9 x 19 = 3,828 of 14,400."""
    kinds = [i < 3 for i in range(12)]
    random.Random(seed).shuffle(kinds)
    orders = [kinds, sorted(kinds), sorted(kinds, reverse=True)]  # shuffled, escalations last, first
    expected = (0.25, 0.25, 1 - 3_828 / 14_400, 1 - 3_828 / 14_400)
    seen = []
    for k, order in enumerate(orders):
        path = tmp_path / f"traces-{k}.json"
        path.write_text(
            "".join(request_line(i + 1, T0_S + 60 * i, escalated=up) for i, up in enumerate(order))
        )
        seen.append(route_figures(report([path])))
    assert seen[0] == pytest.approx(expected, rel=1e-12)
    assert seen[1] == seen[0]
    assert seen[2] == seen[0]


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut even small files into many parts (see test_report_jobs)."""
    monkeypatch.setattr(jobs, "MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(jobs, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(jobs, "PARTS_PER_JOB", 6)


@pytest.mark.usefixtures("small_parts")
def test_jobs_count_the_parts_before_the_first_escalation(tmp_path: Path) -> None:
    files = [write(tmp_path / "traces.json", LATE)]
    parts = jobs.plan_parts(files, 2)
    assert len(parts) > 3, "the early parts hold no escalation"
    one, many = report(files, 1), report(files, 2)
    assert route_figures(many) == route_figures(one)
    assert route_figures(many) == pytest.approx(LATE_FIGURES, rel=1e-12)
    one_doc, many_doc = json.loads(render(one, "json")), json.loads(render(many, "json"))
    for doc in (one_doc, many_doc):
        doc["inputs"].pop("held_spans_peak")  # the most held by one process
    assert many_doc == one_doc


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["report", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_aggregates_of_two_runs_count_a_step_known_in_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hours 0 to 24 (no escalation: provisional cases only) on one machine, hours 25 to 39
    on another: merged, the figures of one run over both."""
    config = tmp_path / "overspend.toml"
    config.write_text(CONFIG)
    first, second = write(tmp_path / "a.json", LATE[:25]), write(tmp_path / "b.json", LATE[25:])
    a, b = tmp_path / "a.agg.json", tmp_path / "b.agg.json"
    for path, agg in ((first, a), (second, b)):
        assert cli(capsys, "--config", config, "--jobs", "1", "--aggregate-out", agg, path)[0] == 0
    code, whole, _ = cli(capsys, "--config", config, "--jobs", "1", "--format", "json", first, second)
    assert code == 0
    code, merged, err = cli(capsys, "--config", config, "--format", "json", "--from-aggregate", b, a)
    assert (code, err) == (0, "")
    assert merged == whole
    pattern = json.loads(merged)["pattern"]
    assert (pattern["name"], pattern["step"]) == (CASCADE_SATURATION, "route")
    assert pattern["evidence"]["escalation_rate"] == pytest.approx(LATE_FIGURES[0], rel=1e-12)
    assert pattern["evidence"]["baseline_escalation_rate"] == pytest.approx(LATE_FIGURES[1], rel=1e-12)
    # The first machine's cases are provisional: route never escalated there.
    doc = json.loads(a.read_text())
    assert (doc["format"], doc["version"]) == (FORMAT, VERSION) == (FORMAT, 2)
    observed = doc["observations"]
    assert observed["cascades"]["days"] == observed["cascades"]["hours"] == {}
    provisional = observed["provisional_cascades"]
    # Hour 0 is folded into Monday (the newest hour, 24, keeps hours 1 to 24 apart).
    assert provisional["days"][str(T0_S)]["route"][:2] == [1, 0]
    assert sum(v["route"][0] for v in provisional["hours"].values()) == 24
    # Dollars in units of 2**-128: a case resolved cheap is 19e-6 spent, 1,200e-6 all-expensive.
    assert provisional["days"][str(T0_S)]["route"][2] == int(19e-6 * 2**128)


def test_an_aggregate_of_version_1_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "overspend.toml"
    config.write_text(CONFIG)
    agg = tmp_path / "old.agg.json"
    assert cli(capsys, "--config", config, "--aggregate-out", agg, write(tmp_path / "t.json", LATE))[0] == 0
    doc = json.loads(agg.read_text())
    doc["version"] = 1
    agg.write_text(json.dumps(doc))
    code, out, err = cli(capsys, "--config", config, "--from-aggregate", agg)
    assert (code, out) == (2, "")
    assert f"{agg}: {FORMAT} version 1; this otel-overspend reads version 2 only" in err
