"""Attribution on exported spans, through real OTLP export into receivers on loopback."""

from __future__ import annotations

import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_overspend import Settings, step
from otel_overspend.exporters.spans import ATTRIBUTES, OverspendSpanExporter

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace.export import SpanExporter

SETTINGS = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)


class _Received:
    def __init__(self) -> None:
        self.spans: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs: dict[str, Any] = {}
                        for kv in span.attributes:
                            kind = kv.value.WhichOneof("value")
                            attrs[kv.key] = getattr(kv.value, kind) if kind else None
                        self.spans[span.name] = attrs


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, _Received]]:
    received = _Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.add(request)
            payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", received
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, _Received]]:
    received = _Received()

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(  # noqa: N802 - the generated service's method name
            self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            del context
            received.add(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", received
    server.stop(grace=None)


def _workload(p: Pipeline) -> None:
    with p.tracer.start_as_current_span("request"):
        with step("rerank"), p.tracer.start_as_current_span("rerank call") as span:
            span.set_attributes(
                {
                    "gen_ai.request.model": "acme-frontier",
                    "gen_ai.usage.input_tokens": 12_000,
                    "gen_ai.usage.output_tokens": 200,
                }
            )
        with step("generate"), p.tracer.start_as_current_span("generate call") as span:
            span.set_attributes(
                {
                    "gen_ai.request.model": "acme-frontier",
                    "gen_ai.usage.input_tokens": 3_500,
                    "gen_ai.usage.output_tokens": 400,
                }
            )
        with p.tracer.start_as_current_span("retrieve"):
            pass


def _check(spans: dict[str, dict[str, Any]]) -> None:
    rerank = spans["rerank call"]
    assert rerank["overspend.step"] == "rerank"
    assert rerank["overspend.tier"] == "frontier"
    # 12,000 x $3/M + 200 x $15/M = 0.036 + 0.003 = $0.039; specialized 12,200 x $0.02/M = $0.000244.
    assert rerank["overspend.cost_usd"] == pytest.approx(0.039, abs=1e-12)
    assert rerank["overspend.specialized_cost_usd"] == pytest.approx(0.000244, abs=1e-12)
    generate = spans["generate call"]
    assert generate["overspend.step"] == "generate"
    # 3,500 x $3/M + 400 x $15/M = 0.0105 + 0.006 = $0.0165, unchanged when specialized.
    assert generate["overspend.cost_usd"] == pytest.approx(0.0165, abs=1e-12)
    assert generate["overspend.specialized_cost_usd"] == pytest.approx(0.0165, abs=1e-12)
    for name in ("request", "retrieve"):
        assert not set(ATTRIBUTES) & set(spans[name])
    # The app's own attributes are still there.
    assert rerank["gen_ai.usage.input_tokens"] == 12_000


def _export_through(exporter: SpanExporter) -> Pipeline:
    p = make_pipeline(SETTINGS)
    p.provider.add_span_processor(SimpleSpanProcessor(OverspendSpanExporter(exporter, processor=p.processor)))
    _workload(p)
    p.provider.force_flush()
    return p


def test_otlp_http_export_carries_the_attribution(http_receiver: tuple[str, _Received]) -> None:
    endpoint, received = http_receiver
    p = _export_through(HttpSpanExporter(endpoint=endpoint))
    _check(received.spans)
    p.provider.shutdown()


def test_otlp_grpc_export_carries_the_attribution(grpc_receiver: tuple[str, _Received]) -> None:
    endpoint, received = grpc_receiver
    p = _export_through(GrpcSpanExporter(endpoint=endpoint, insecure=True))
    _check(received.spans)
    p.provider.shutdown()


def _as_dict(exporter: InMemorySpanExporter) -> dict[str, dict[str, Any]]:
    return {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}


def test_exporter_registered_before_the_processor_still_annotates() -> None:
    # The wrapper's processor sees the span end only after the export: it attributes on demand.
    memory = InMemorySpanExporter()
    p = make_pipeline(SETTINGS)
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OverspendSpanExporter(memory, processor=p.processor)))
    provider.add_span_processor(p.processor)
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("request"),
        step("rerank"),
        tracer.start_as_current_span("rerank call") as span,
    ):
        span.set_attributes(
            {
                "gen_ai.request.model": "acme-frontier",
                "gen_ai.usage.input_tokens": 12_000,
                "gen_ai.usage.output_tokens": 200,
            }
        )
    spans = _as_dict(memory)
    assert spans["rerank call"]["overspend.step"] == "rerank"
    assert spans["rerank call"]["overspend.cost_usd"] == pytest.approx(0.039, abs=1e-12)
    # Counted once in the metrics all the same.
    assert p.sample("overspend_llm_calls_total", {"step": "rerank", "model": "acme-frontier"} | _LABELS) == 1


_LABELS = {"tier": "frontier", "provider": "unknown"}


def test_a_duplicate_wrapper_span_gets_no_cost_on_export() -> None:
    # A framework span over the client span, both with usage: only the inner one carries dollars,
    # so a trace backend summing overspend.cost_usd counts the call once.
    memory = InMemorySpanExporter()
    p = make_pipeline(SETTINGS)
    p.provider.add_span_processor(SimpleSpanProcessor(OverspendSpanExporter(memory, processor=p.processor)))
    usage: dict[str, str | int] = {
        "gen_ai.request.model": "acme-frontier",
        "gen_ai.usage.input_tokens": 1_000,
    }
    with (
        step("rerank"),
        p.tracer.start_as_current_span("framework llm", attributes=usage),
        p.tracer.start_as_current_span("client llm", attributes=usage),
    ):
        pass
    spans = _as_dict(memory)
    assert spans["client llm"]["overspend.cost_usd"] == pytest.approx(0.003, abs=1e-12)
    assert "overspend.cost_usd" not in spans["framework llm"]
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 1


def test_the_processor_is_named_not_found() -> None:
    """The wrapper is told its processor: a keyword argument, never a lookup."""
    memory = InMemorySpanExporter()
    with pytest.raises(TypeError, match="processor"):
        OverspendSpanExporter(memory)  # type: ignore[call-arg]
