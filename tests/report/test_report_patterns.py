"""Shadow calls to a step's teacher (``overspend.oracle.agreed``), live and in the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diag_workloads import FRONTIER, MINI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from report_support import llm_attributes, pinned_settings, write_collector_lines

from otel_overspend import step
from otel_overspend.accounting.patterns import DISTILLATION_DRIFT
from otel_overspend.report.run import build_report

from conftest import make_pipeline

if TYPE_CHECKING:
    from pathlib import Path


def test_shadow_calls_are_oracle_checks_live_and_offline(tmp_path: Path) -> None:
    settings = pinned_settings(stamp_spans=True)
    p = make_pipeline(settings)
    exporter = InMemorySpanExporter()
    p.provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Four requests; in each the faithfulness student (a mini model) runs, and a shadow call
    # to the teacher (frontier) says whether they agreed: 3 of 4 do, 0.75 < 0.95. A large
    # generate call keeps the specialist-eligible fraction low: the teacher's 4,000 / 100
    # tokens against generate's 20,000 / 2,000 at the same frontier prices.
    for agreed in (True, True, False, True):
        with p.tracer.start_as_current_span("request"):
            with step("faithfulness"):
                with p.tracer.start_as_current_span("judge") as span:
                    span.set_attributes(llm_attributes(MINI, 4_000, 100))
                with p.tracer.start_as_current_span("teacher") as span:
                    span.set_attributes(
                        {**llm_attributes(FRONTIER, 4_000, 100), "overspend.oracle.agreed": agreed}
                    )
            with step("generate"), p.tracer.start_as_current_span("answer") as span:
                span.set_attributes(llm_attributes(FRONTIER, 20_000, 2_000))
    p.processor.force_flush()
    checks = p.sample("overspend_oracle_checks_total", {"step": "faithfulness"})
    agreements = p.sample("overspend_oracle_agreements_total", {"step": "faithfulness"})
    assert (checks, agreements) == (4, 3)
    live = p.processor.patterns()[0][2]
    p.provider.shutdown()
    assert live.pattern == DISTILLATION_DRIFT
    assert live.evidence["agreement_ratio"] == 0.75

    path = write_collector_lines(tmp_path / "traces.jsonl", exporter.get_finished_spans(), batch=3)
    report = build_report([path], settings=settings)
    assert report.pattern is not None
    assert report.pattern.pattern == DISTILLATION_DRIFT
    assert report.pattern.step == "faithfulness"
    assert report.pattern.evidence["agreement_ratio"] == 0.75
