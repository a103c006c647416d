"""Spend by purpose (request path, evaluation, batch), live and offline, by hand.

Prices (USD per 1M tokens, input / output): frontier 3.00 / 15.00. A generate call of
1,000 / 100 tokens costs 3,000 + 1,500 = 4,500e-6; a judge call in the eval step of 2,000 / 0
tokens costs 6,000e-6.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry
from report_support import collector_json, collector_proto

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.accounting.purposes import BATCH, EVAL, REQUEST_PATH, resource_purpose, root_purpose
from otel_overspend.config.settings import Price
from otel_overspend.report.files import Problems
from otel_overspend.report.run import build_report

from conftest import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span, Tracer

T0_NS = 1_800_000_000 * 1_000_000_000
MS = 1_000_000
MODEL = "acme-frontier"
SETTINGS = Settings(
    serve_metrics=False,
    use_genai_prices=False,
    stamp_spans=True,  # the steps of step() blocks, in the files for the report
    windows="1m,10m",
    model_tiers={"acme-*": "frontier"},
    tier_prices={"frontier": Price(input=3.0, output=15.0)},
    eval_services=["eval-harness"],
)
GENERATE = (1_000, 100)  # 4,500e-6
JUDGE = (2_000, 0)  # 6,000e-6

# By hand, from the workload below: request 1 + 3 + 7; eval 1's judge call, 4 and 5; batch 2 + 6.
EXPECTED = {
    REQUEST_PATH: 3 * 4_500e-6,
    EVAL: 6_000e-6 + 2 * 4_500e-6,
    BATCH: 2 * 4_500e-6,
}


class Run:
    """One processor on three providers: the app (``rag``), an eval harness and a worker
    whose resource states its purpose."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.clock.now = T0_NS / 1e9
        self.registry = CollectorRegistry()
        self.processor = OverspendProcessor(
            settings=SETTINGS, registry=self.registry, serve_metrics=False, clock=self.clock
        )
        self.exporter = InMemorySpanExporter()
        self.providers: dict[str, TracerProvider] = {}
        for service, extra in (("rag", {}), ("eval-harness", {}), ("worker", {"overspend.purpose": BATCH})):
            provider = TracerProvider(resource=Resource.create({"service.name": service, **extra}))
            provider.add_span_processor(self.processor)
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            self.providers[service] = provider

    def tracer(self, service: str = "rag") -> Tracer:
        return self.providers[service].get_tracer("app")

    def request(
        self,
        at_ms: int,
        *,
        service: str = "rag",
        kind: trace.SpanKind = trace.SpanKind.SERVER,
        remote: bool = False,
        purpose: str | None = None,
        judge: bool = False,
    ) -> None:
        """A request: a root span, a generate call and, with ``judge``, a call in the eval step."""
        tracer = self.tracer(service)
        context = None
        if remote:
            parent = SpanContext(0xABC + at_ms, 0xDEF + at_ms, is_remote=True, trace_flags=TraceFlags(1))
            context = trace.set_span_in_context(NonRecordingSpan(parent))
        attributes = {} if purpose is None else {"overspend.purpose": purpose}
        root = tracer.start_span(
            "request", context=context, kind=kind, start_time=T0_NS + at_ms * MS, attributes=attributes
        )
        self._call(tracer, root, "generate", GENERATE, at_ms + 1)
        if judge:
            self._call(tracer, root, "eval", JUDGE, at_ms + 10)
        root.end(end_time=T0_NS + (at_ms + 50) * MS)

    @staticmethod
    def _call(tracer: Tracer, root: Span, name: str, tokens: tuple[int, int], at_ms: int) -> None:
        with step(name):
            span = tracer.start_span(
                f"chat {MODEL}",
                context=trace.set_span_in_context(root),
                kind=trace.SpanKind.CLIENT,
                start_time=T0_NS + at_ms * MS,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": MODEL,
                    "gen_ai.usage.input_tokens": tokens[0],
                    "gen_ai.usage.output_tokens": tokens[1],
                },
            )
            span.end(end_time=T0_NS + (at_ms + 5) * MS)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def counter(self, name: str, **labels: str) -> float | None:
        self.processor.force_flush()
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def run() -> Iterator[Run]:
    r = Run()
    yield r
    for provider in r.providers.values():
        provider.shutdown()


def emit_workload(run: Run) -> None:
    run.request(0, judge=True)  # 1: a server span, with an eval step: request, and eval
    run.request(100, kind=trace.SpanKind.INTERNAL)  # 2: a root no request started: batch
    run.request(200, kind=trace.SpanKind.INTERNAL, remote=True)  # 3: a remote parent: request
    run.request(300, purpose=EVAL)  # 4: the root says eval
    run.request(400, service="eval-harness", kind=trace.SpanKind.INTERNAL)  # 5: eval_services
    run.request(500, service="worker")  # 6: the resource says batch, over the server span
    run.request(600, purpose="training")  # 7: no purpose: counted, then a server span: request


def assert_purposes(found: Mapping[str, float]) -> None:
    assert set(found) == set(EXPECTED)
    for purpose, usd in EXPECTED.items():
        assert found[purpose] == pytest.approx(usd, rel=1e-12), purpose


def test_live_spend_by_purpose_by_hand(run: Run) -> None:
    emit_workload(run)
    assert_purposes({p: run.counter("overspend_purpose_cost_usd_total", purpose=p) or 0.0 for p in EXPECTED})
    assert run.counter("overspend_spans_dropped_total", reason="invalid_purpose") == 1
    # Evaluation against the rest: 15,000 / (13,500 + 9,000).
    share = run.counter("overspend_eval_spend_share", window="10m")
    assert share == pytest.approx(15_000 / 22_500)


def test_the_report_decides_purposes_as_live(run: Run) -> None:
    emit_workload(run)
    run.processor.force_flush()
    live = run.processor.diagnoses()[-1][1].purpose_cost_usd
    assert_purposes(live)
    spans = run.spans()
    json_lines = b"".join(collector_json([span]) + b"\n" for span in spans)
    # Tempo's trace API writes enums by name: the server kind must read the same.
    named = json_lines.replace(b'"kind":2', b'"kind":"SPAN_KIND_SERVER"')
    assert named != json_lines
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in (
            ("traces.json", json_lines),
            ("named.json", named),
            ("traces.binpb", b"".join(collector_proto([span]) for span in spans)),
        ):
            path = Path(tmp) / name
            path.write_bytes(data)
            report = build_report([path], settings=SETTINGS, problems=Problems(shown=0))
            assert_purposes(report.diagnosis.purpose_cost_usd)
            assert report.inputs.dropped.get("invalid_purpose") == 1, name
            assert report.pattern_figures is not None
            assert report.pattern_figures.eval_share == pytest.approx(15_000 / 22_500)


def test_eval_job_alone_is_eval_spend_overrun(run: Run) -> None:
    # Two requests served (9,000e-6) and an eval harness's three requests (13,500e-6):
    # 13,500 / 9,000 = 1.5 > 0.25.
    run.request(0)
    run.request(100)
    for at in (200, 300, 400):
        run.request(at, service="eval-harness", kind=trace.SpanKind.INTERNAL)
    run.processor.force_flush()
    (_, figures, verdict) = run.processor.patterns()[-1]
    assert figures.eval_share == pytest.approx(1.5)
    assert verdict.pattern == "eval_spend_overrun"
    assert verdict.evidence == {"eval_spend_share": pytest.approx(1.5)}


@pytest.mark.parametrize(
    ("declared", "of_resource", "server", "remote", "expected"),
    [
        (EVAL, BATCH, True, False, EVAL),
        (None, BATCH, True, True, BATCH),
        (None, None, True, False, REQUEST_PATH),
        (None, None, False, True, REQUEST_PATH),
        (None, None, False, False, BATCH),
        ("nightly", None, False, False, BATCH),
        (("eval",), None, True, False, REQUEST_PATH),
    ],
)
def test_root_purpose_rules_in_order(
    declared: object, of_resource: str | None, server: bool, remote: bool, expected: str
) -> None:
    invalid: list[str] = []
    assert (
        root_purpose(declared, of_resource, server=server, remote_parent=remote, invalid=invalid.append)
        == expected
    )
    assert invalid == (["invalid_purpose"] if declared in {"nightly", ("eval",)} else [])


def test_resource_purpose() -> None:
    assert resource_purpose({"service.name": "eval-harness"}, {"eval-harness"}) == EVAL
    assert resource_purpose({"service.name": "rag"}, {"eval-harness"}) is None
    stated = {"service.name": "eval-harness", "overspend.purpose": "batch"}
    assert resource_purpose(stated, {"eval-harness"}) == BATCH
    invalid: list[str] = []
    assert resource_purpose({"overspend.purpose": 3}, (), invalid.append) is None
    assert invalid == ["invalid_purpose"]
