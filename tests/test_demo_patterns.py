"""The demo's failure-mode switches move the probable pattern, live and offline alike.

The demo's requests are driven in simulated time (a fake clock, five requests a simulated
second, one minute a phase) through a real processor with 1m and 10m windows; the pattern is
the 1m window's, its cascade baseline the 10m window. The demo's step times are the spans'
simulated times (``record_step_time``); its ``step()`` blocks take microseconds of real time
and are not timed here, as the simulated clock is not the real one.

Prices (USD per 1M tokens, in / out): claude-sonnet-4-5 3 / 15, gpt-5-nano 0.05 / 0.40,
zerank-2 at the specialist tier 0.02 / 0.02. In micro-dollars a call, at the mean tokens:
  rewrite 200 x 3 + 50 x 15 = 1,350; rerank 12,000 x 3 + 200 x 15 = 39,000 (frontier) or
  12,200 x 0.02 = 244 (zerank-2); generate 3,500 x 3 + 400 x 15 = 16,500; faithfulness
  4,000 x 3 + 100 x 15 = 13,500 (frontier) or 4,000 x 0.05 + 100 x 0.4 = 240 (gpt-5-nano);
  route 300 x 0.05 + 20 x 0.4 = 23 (gpt-5-nano) or 300 x 3 + 20 x 15 = 1,200 (frontier);
  eval 4,000 x 3 + 100 x 15 = 13,500.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from report_support import write_collector_lines

from otel_overspend import OverspendProcessor, Settings
from otel_overspend.accounting.patterns import (
    CASCADE_SATURATION,
    DISTILLATION_DRIFT,
    EVAL_SPEND_OVERRUN,
    HEALTHY,
    RERANKER_ON_REQUEST_PATH,
    SINGLE_LLM_OVERSPEND,
)
from otel_overspend.demo import JUDGE, RERANKER, Trouble, apply_trouble, emit_request, frontier_route
from otel_overspend.report.run import build_report
from otel_overspend.steps import set_step_timer

from conftest import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from opentelemetry.trace import Tracer

    from otel_overspend.accounting.patterns import Verdict
    from otel_overspend.demo import Model

PER_PHASE = 300
SPACING_S = 0.2


class Demo:
    def __init__(self, settings: Settings) -> None:
        self.clock = FakeClock()
        self.processor = OverspendProcessor(
            settings=settings, registry=CollectorRegistry(), serve_metrics=False, clock=self.clock
        )
        set_step_timer(None)  # see the module docstring
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("demo")
        self.route: dict[str, Model] = frontier_route()
        self.trouble = Trouble()
        self.rng = random.Random(7)

    def phase(self) -> None:
        for _ in range(PER_PHASE):
            self.clock.advance(SPACING_S)
            emit_request(
                self.tracer, self.route, self.rng, end_ns=int(self.clock.now * 1e9), trouble=self.trouble
            )

    def verdict(self, window: int = 0) -> Verdict:
        self.processor.force_flush()
        return self.processor.patterns()[window][2]

    def specialize(self) -> None:
        self.route["rerank"] = RERANKER
        self.route["faithfulness"] = JUDGE
        self.trouble.agreement = 1.0  # the teacher stays as the oracle

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def demo() -> Iterator[Demo]:
    d = Demo(Settings(serve_metrics=False, windows="1m,10m", stamp_spans=True))
    yield d
    d.close()


def test_the_switches_move_the_pattern_through_each_look_alike(demo: Demo) -> None:
    demo.phase()
    first = demo.verdict()
    assert first.pattern == SINGLE_LLM_OVERSPEND
    # (1,350 + 39,000 + 13,500) / 70,350: token jitter is +-10 % around the means.
    assert first.evidence["specialist_eligible_fraction"] == pytest.approx(53_850 / 70_350, abs=0.01)
    assert first.evidence["model_concentration"] == pytest.approx(1.0)

    demo.specialize()
    demo.phase()
    healthy = demo.verdict()
    assert healthy.pattern == HEALTHY
    # The fraction is (1,350 + 244 + 240) over 18,334.
    assert healthy.evidence["specialist_eligible_fraction"] == pytest.approx(1_834 / 18_334, abs=0.01)

    apply_trouble(demo.trouble, "--cascade-after")  # 10 % escalations: steady, healthy
    demo.phase()
    assert demo.verdict().pattern == HEALTHY
    demo.phase()  # two minutes of them: the baseline's drift clears the band with margin below
    assert demo.verdict().pattern == HEALTHY

    apply_trouble(demo.trouble, "--saturate-cascade-after")
    demo.phase()
    saturated = demo.verdict()
    assert saturated.pattern == CASCADE_SATURATION
    assert saturated.step == "route"
    # This minute 40 % of cases escalate; the 10-minute baseline holds the two 10 % minutes
    # and this one: (30 + 30 + 120) / 900 = 0.2, a drift of 0.2 against the 0.1 band.
    assert saturated.evidence["escalation_rate"] == pytest.approx(0.4, abs=0.01)
    assert saturated.evidence["baseline_escalation_rate"] == pytest.approx(0.2, abs=0.01)

    apply_trouble(demo.trouble, "--drift-student-after")
    demo.phase()
    drifted = demo.verdict()
    assert drifted.pattern == DISTILLATION_DRIFT
    assert drifted.step == "faithfulness"
    assert drifted.evidence["agreement_ratio"] == pytest.approx(0.7, abs=0.01)
    # Still saturated: 0.4 against (30 + 30 + 120 + 120) / 1,200 = 0.25, a drift of 0.15
    # (with one 10 % minute, 0.4 against 0.3 would sit on the band's edge).
    assert CASCADE_SATURATION in drifted.also

    apply_trouble(demo.trouble, "--slow-reranker-after")
    demo.phase()
    slow = demo.verdict()
    assert slow.pattern == RERANKER_ON_REQUEST_PATH
    assert slow.step == "rerank"
    # 450 ms +-20 % uniform: 0.36-0.54 s; 0.04 / 0.18 = 22.2 % above 0.5 s. The p95 falls in
    # the 0.5-1.0 bucket: 0.5 + 0.5 x (0.95 - 0.778) / 0.222 = 0.887 s.
    assert slow.evidence["step_latency_p95_seconds"] == pytest.approx(0.887, abs=0.05)

    apply_trouble(demo.trouble, "--eval-job-after")
    demo.phase()
    overrun = demo.verdict()
    assert overrun.pattern == EVAL_SPEND_OVERRUN
    # 13,500 of eval a request over 18,334 + 23 + 0.4 x 1,200 = 18,837 of inference.
    assert overrun.evidence["eval_spend_share"] == pytest.approx(13_500 / 18_837, abs=0.02)


def test_the_report_names_the_same_pattern_with_the_same_evidence(demo: Demo, tmp_path: Path) -> None:
    demo.specialize()
    demo.phase()
    apply_trouble(demo.trouble, "--slow-reranker-after")
    demo.phase()
    demo.processor.observations.settle(everything=True)
    live = demo.verdict(window=1)  # the 10-minute window: every span of the run
    assert live.pattern == RERANKER_ON_REQUEST_PATH

    path = write_collector_lines(tmp_path / "traces.jsonl", demo.exporter.get_finished_spans(), batch=100)
    report = build_report([path], settings=Settings(serve_metrics=False, stamp_spans=True))
    assert report.pattern is not None
    assert report.pattern.pattern == live.pattern
    assert report.pattern.step == live.step
    assert report.pattern.evidence.keys() == live.evidence.keys()
    for name, value in live.evidence.items():
        assert report.pattern.evidence[name] == pytest.approx(value, rel=1e-9), name
