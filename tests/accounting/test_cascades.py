"""Cascades per request: which calls make a case, its escalation and its savings, by hand.

Prices (USD per 1M tokens, input / output): frontier 3.00 / 15.00, mini 0.05 / 0.20,
specialist 0.02 / 0.02. A route call of 300 / 20 tokens costs 19e-6 at mini and 1,200e-6 at
frontier; a faithfulness call of 4,000 / 100 costs 82e-6 at specialist and 13,500e-6 at frontier.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from report_support import write_collector_lines

from otel_overspend import OverspendProcessor, Settings, mark_cascade_stage, step
from otel_overspend.accounting import requests
from otel_overspend.accounting.requests import CascadeCases, OpenRequests
from otel_overspend.calls.attribution import Call
from otel_overspend.config.settings import Price
from otel_overspend.report.files import Problems
from otel_overspend.report.run import build_report

from conftest import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span, Tracer

T0_NS = 1_800_000_000 * 1_000_000_000
MS = 1_000_000
FRONTIER, MINI, JUDGE = "acme-frontier", "acme-mini", "zerank-2"
SETTINGS = Settings(
    serve_metrics=False,
    use_genai_prices=False,
    stamp_spans=True,
    windows="1m,10m",
    model_tiers={MINI: "mini", "zerank-*": "specialist", "acme-*": "frontier"},
    tier_prices={
        "frontier": Price(input=3.0, output=15.0),
        "mid": Price(input=0.30, output=1.20),
        "mini": Price(input=0.05, output=0.20),
        "specialist": Price(input=0.02, output=0.02),
    },
)
ROUTE = (300, 20)
FAITH = (4_000, 100)


class Run:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.clock.now = T0_NS / 1e9
        self.processor = OverspendProcessor(
            settings=SETTINGS, registry=CollectorRegistry(), serve_metrics=False, clock=self.clock
        )
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("app")

    def root(self, at_ms: int) -> Span:
        return self.tracer.start_span(
            "POST /answer", kind=trace.SpanKind.SERVER, start_time=T0_NS + at_ms * MS
        )

    def call(  # noqa: PLR0917 - a test's shorthand
        self, root: Span, name: str, model: str, tokens: tuple[int, int], at_ms: int, stage: str | None = None
    ) -> None:
        with step(name):
            span = self.tracer.start_span(
                f"chat {model}",
                context=trace.set_span_in_context(root),
                kind=trace.SpanKind.CLIENT,
                start_time=T0_NS + at_ms * MS,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": tokens[0],
                    "gen_ai.usage.output_tokens": tokens[1],
                },
            )
            if stage is not None:
                mark_cascade_stage(stage, span=span)
            span.end(end_time=T0_NS + (at_ms + 5) * MS)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def cascades(self) -> dict[str, tuple[float, float, float, float]]:
        self.processor.force_flush()
        return dict(self.processor.observations.snapshot().cascades)


@pytest.fixture
def run() -> Iterator[Run]:
    r = Run()
    yield r
    r.provider.shutdown()


def emit_workload(run: Run) -> None:
    # A: route escalates (mini then frontier); faithfulness runs its specialist alone,
    # before faithfulness is known as a cascade: a provisional case resolved cheap, counted
    # once B makes faithfulness a cascade.
    a = run.root(0)
    run.call(a, "route", MINI, ROUTE, 10)
    run.call(a, "route", FRONTIER, ROUTE, 20)
    run.call(a, "faithfulness", JUDGE, FAITH, 30)
    a.end(end_time=T0_NS + 100 * MS)
    # B and C in parallel, their spans interleaved: B's mini route call is resolved cheap
    # (C's frontier route call, with no cheap call before it in C, is no case and does not
    # pair with B's); B's faithfulness escalates (a second cascade step in one request).
    b, c = run.root(200), run.root(201)
    run.call(b, "route", MINI, ROUTE, 210)
    run.call(c, "route", FRONTIER, ROUTE, 211)
    run.call(b, "faithfulness", JUDGE, FAITH, 220)
    run.call(b, "faithfulness", FRONTIER, FAITH, 230)
    b.end(end_time=T0_NS + 300 * MS)
    c.end(end_time=T0_NS + 301 * MS)
    # D: a marked cheap stage makes "check" a cascade at once, with no escalation yet.
    d = run.root(400)
    run.call(d, "check", MINI, ROUTE, 410, stage="cheap")
    d.end(end_time=T0_NS + 500 * MS)


#: step -> (cases, escalated, cost, cost with every case at the expensive stage), USD.
EXPECTED = {
    # A: 19 + 1,200 spent, 1,200 all-expensive; B: 19 spent, 300 x 3 + 20 x 15 = 1,200.
    "route": (2, 1, 1_238e-6, 2_400e-6),
    # A (provisional): 82 spent, 4,000 x 3 + 100 x 15 = 13,500 all-expensive; B: 82 + 13,500
    # spent, 13,500 all-expensive.
    "faithfulness": (2, 1, 13_664e-6, 27_000e-6),
    "check": (1, 0, 19e-6, 1_200e-6),
}


def assert_cases(found: dict[str, tuple[float, float, float, float]]) -> None:
    assert set(found) == set(EXPECTED)
    for name, (cases, escalated, cost, expensive) in EXPECTED.items():
        got = found[name]
        assert got[:2] == (cases, escalated), name
        assert got[2] == pytest.approx(cost, rel=1e-9), name
        assert got[3] == pytest.approx(expensive, rel=1e-9), name


def test_cases_per_request_by_hand(run: Run) -> None:
    emit_workload(run)
    assert_cases(run.cascades())


def test_live_figures_equal_the_reports(run: Run) -> None:
    emit_workload(run)
    run.processor.force_flush()
    live = {s.step: s for s in run.processor.patterns()[0][1].steps}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_collector_lines(Path(tmp) / "traces.json", run.spans())
        report = build_report([path], settings=SETTINGS, problems=Problems(shown=0))
    assert report.pattern_figures is not None
    offline = {s.step: s for s in report.pattern_figures.steps}
    expected = {
        "route": (0.5, 1 - 1_238 / 2_400),
        "faithfulness": (0.5, 1 - 13_664 / 27_000),
        "check": (0.0, 1 - 19 / 1_200),
    }
    for name, (rate, savings) in expected.items():
        for figures in (live[name], offline[name]):
            assert figures.escalation_rate == pytest.approx(rate)
            assert figures.savings_ratio == pytest.approx(savings)
            assert figures.baseline_escalation_rate == pytest.approx(rate)


def test_a_step_learned_late_counts_its_earlier_requests(run: Run) -> None:
    # Three requests resolve route at mini before the fourth escalates: route is a cascade
    # from then on, and the three count. 4 cases, 1 escalated; spent 3 x 19 + 19 + 1,200 =
    # 1,276e-6; all-expensive 4 x 1,200 = 4,800e-6.
    for k in range(3):
        r = run.root(100 * k)
        run.call(r, "route", MINI, ROUTE, 100 * k + 10)
        r.end(end_time=T0_NS + (100 * k + 50) * MS)
    assert run.cascades() == {}
    r = run.root(300)
    run.call(r, "route", MINI, ROUTE, 310)
    run.call(r, "route", FRONTIER, ROUTE, 320)
    r.end(end_time=T0_NS + 350 * MS)
    assert run.cascades() == {"route": pytest.approx((4, 1, 1_276e-6, 4_800e-6))}


def _call(step_name: str, tier: str, cost: float) -> Call:
    return Call(step_name, "m", tier, "acme", 300, 20, 0, 0, cost, None, (step_name, "m", tier, "acme"))


@pytest.mark.pure_python
def test_provisional_cases_are_held_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requests, "MAX_CASCADE_STEPS", 1)
    told: list[CascadeCases] = []
    table = OpenRequests(
        max_open=10, timeout_s=60.0, clock=lambda: 0.0, reprice=lambda _: 1.0, on_cascade=told.append
    )
    # Cheap calls in two steps, neither a cascade yet: "a" is held, "b" is beyond the bound.
    table.add(1, _call("a", "mini", 0.5), 0)
    table.add(1, _call("b", "mini", 0.25), 0)
    table.close(1, 0)
    assert (told, table.overflowed_cases) == ([], 1)
    # "a" escalates: its held case (0.5 spent, 1.0 at the frontier), then this request's.
    table.add(2, _call("a", "mini", 0.5), 0)
    table.add(2, _call("a", "frontier", 2.0), 0)
    table.close(2, 0)
    assert told == [CascadeCases("a", 1, 0, 0.5, 1.0), CascadeCases("a", 1, 1, 2.5, 2.0)]
    # "a" fills the known steps: "c" escalating (2 cases: one escalated, one resolved cheap)
    # can no longer become a cascade, and its cases are counted, not followed.
    table.add(3, _call("c", "mini", 0.5), 0)
    table.add(3, _call("c", "frontier", 2.0), 0)
    table.add(3, _call("c", "mini", 0.5), 0)
    table.close(3, 0)
    assert len(told) == 2
    assert table.overflowed_cases == 1 + 2


@pytest.mark.pure_python
def test_cascade_steps_beyond_the_bound_are_counted_in_the_metrics(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests, "MAX_CASCADE_STEPS", 1)
    for k, name in enumerate(("route", "check")):  # route is known; check escalates beyond
        r = run.root(100 * k)
        run.call(r, name, MINI, ROUTE, 100 * k + 10)
        run.call(r, name, FRONTIER, ROUTE, 100 * k + 20)
        r.end(end_time=T0_NS + (100 * k + 50) * MS)
    assert set(run.cascades()) == {"route"}
    assert (
        run.processor.registry.get_sample_value("overspend_label_overflow_total", {"label": "cascade_steps"})
        == 1
    )


def test_a_marked_stage_wins_over_the_tier(run: Run) -> None:
    # A frontier call marked cheap, then a frontier call marked expensive: one escalated
    # case; its all-expensive cost is the expensive call's, 1,200e-6; spent 2,400e-6.
    r = run.root(0)
    run.call(r, "verify", FRONTIER, ROUTE, 10, stage="cheap")
    run.call(r, "verify", FRONTIER, ROUTE, 20, stage="expensive")
    r.end(end_time=T0_NS + 100 * MS)
    assert run.cascades() == {"verify": pytest.approx((1, 1, 2_400e-6, 1_200e-6))}


def test_a_bad_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="cascade stage 'middle'"):
        mark_cascade_stage("middle", span=trace.INVALID_SPAN)
