"""Writing spans the way the OpenTelemetry Collector's file exporter does, for the report tests.

The collector (``pdata``'s JSON marshaler) writes one ``ExportTraceServiceRequest`` a line
with hex ids, integer enums, 64-bit integers as strings and an empty ``parentSpanId`` on a
root. ``google.protobuf.json_format`` writes base64 ids and enum names instead; this
module converts its output to the collector's.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from typing import TYPE_CHECKING, Any

from diag_workloads import FRONTIER, MINI, MODEL_TIERS, RERANKER, TIER_PRICES, UNKNOWN
from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type hints
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from otel_overspend import Settings, step

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Tracer

    from conftest import Pipeline

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _collector_span(span: dict[str, Any]) -> dict[str, Any]:
    for name in _ID_FIELDS:
        if span.get(name):
            span[name] = base64.b64decode(span[name]).hex()
    span.setdefault("parentSpanId", "")
    if "kind" in span:
        span["kind"] = trace_pb2.Span.SpanKind.Value(span["kind"])
    status = span.get("status") or {}
    if "code" in status:
        status["code"] = trace_pb2.Status.StatusCode.Value(status["code"])
    return span


def collector_json(spans: Sequence[ReadableSpan]) -> bytes:
    """One line of the collector's file exporter (without the newline)."""
    doc: dict[str, Any] = json_format.MessageToDict(encode_spans(spans))
    for rs in doc.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            ss["spans"] = [_collector_span(span) for span in ss.get("spans", ())]
    return json.dumps(doc, separators=(",", ":")).encode()


def write_collector_lines(path: Path, spans: Sequence[ReadableSpan], *, batch: int = 1) -> Path:
    """Write ``spans`` to ``path`` as the collector's file exporter would, ``batch`` spans a
    line in the order given (each line grouped by resource and scope, as OTLP encodes an
    export); return ``path``."""
    path.write_bytes(
        b"".join(collector_json(spans[i : i + batch]) + b"\n" for i in range(0, len(spans), batch))
    )
    return path


def collector_proto(spans: Sequence[ReadableSpan]) -> bytes:
    """One length-prefixed record of the collector's ``format: proto``."""
    data: bytes = encode_spans(spans).SerializeToString()
    return struct.pack(">I", len(data)) + data


class CollectorFileExporter(SpanExporter):
    """Appends spans to a file as the collector's file exporter would, ``batch`` spans an
    export (the rest on :meth:`flush`), in the order they ended."""

    def __init__(self, path: Path, *, batch: int = 50, compress: bool = False, proto: bool = False) -> None:
        self.path = path
        self._compress = compress
        self._proto = proto
        self._batch = batch
        self._pending: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._pending.extend(spans)
        if len(self._pending) >= self._batch:
            self.flush()
        return SpanExportResult.SUCCESS

    def flush(self) -> None:
        if self._pending:
            with gzip.open(self.path, "ab") if self._compress else self.path.open("ab") as out:
                out.write(
                    collector_proto(self._pending) if self._proto else collector_json(self._pending) + b"\n"
                )
            self._pending = []


def export_to(pipeline: Pipeline, exporter: SpanExporter) -> None:
    """Export every span the pipeline ends, after the overspend processor saw it."""
    pipeline.provider.add_span_processor(SimpleSpanProcessor(exporter))


# -- workloads ------------------------------------------------------------------------------------
MODEL = "acme-frontier-1"
PROVIDER = "acme"
#: The four-step RAG request fixture: (step, input tokens, output tokens) of each call of a request.
SEED = (
    ("rewrite", 200, 50),
    ("rerank", 12_000, 200),
    ("generate", 3_500, 400),
    ("faithfulness", 4_000, 100),
)


def llm_attributes(model: str, tokens_in: int, tokens_out: int, **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
        **extra,
    }


def seed_requests(tracer: Tracer, n: int) -> None:
    """``n`` requests of the four-step fixture (``SEED``), every call on one frontier model."""
    for _ in range(n):
        with tracer.start_as_current_span("POST /answer"):
            for name, tokens_in, tokens_out in SEED:
                with (
                    step(name),
                    tracer.start_as_current_span(
                        f"chat {MODEL}", attributes=llm_attributes(MODEL, tokens_in, tokens_out)
                    ),
                ):
                    pass


def _llm(tracer: Tracer, name: str, model: str, tokens_in: int, tokens_out: int, **extra: Any) -> None:
    with tracer.start_as_current_span(name, attributes=llm_attributes(model, tokens_in, tokens_out, **extra)):
        pass


def mixed_request(tracer: Tracer) -> None:
    """rewrite on a mini model, rerank on a specialist, generate through a framework span
    over a client span (one call), faithfulness on the frontier model, a frontier call
    outside any step, and a call to a model nobody prices."""
    with tracer.start_as_current_span("POST /answer"):
        with step("rewrite"):
            _llm(tracer, f"chat {MINI}", MINI, 1_000, 100)
        with step("retrieve"), tracer.start_as_current_span("retrieve", attributes={"rag.documents": 50}):
            pass
        with step("rerank"):
            _llm(tracer, f"rerank {RERANKER}", RERANKER, 10_000, 10)
        with (
            step("generate"),
            tracer.start_as_current_span("langchain.llm", attributes=llm_attributes(FRONTIER, 2_000, 500)),
        ):
            _llm(tracer, f"chat {FRONTIER}", FRONTIER, 2_000, 500)
        with step("faithfulness"):
            _llm(tracer, f"chat {FRONTIER}", FRONTIER, 3_000, 50)
        _llm(tracer, f"chat {FRONTIER}", FRONTIER, 100, 100)
        with step("classify"):
            _llm(tracer, f"chat {UNKNOWN}", UNKNOWN, 500, 50)


def rules_request(tracer: Tracer) -> None:
    """Steps without ``step()``: a RERANKER span's rule names its child's step, an LLM span
    names its own with an attribute, and one call has no step at all."""
    with tracer.start_as_current_span("POST /search"):
        with tracer.start_as_current_span("rerank stage", attributes={"openinference.span.kind": "RERANKER"}):
            _llm(tracer, f"chat {FRONTIER}", FRONTIER, 5_000, 20)
        _llm(tracer, f"chat {FRONTIER}", FRONTIER, 1_000, 300, **{"overspend.step": "generate"})
        _llm(tracer, f"chat {FRONTIER}", FRONTIER, 100, 10)


def remote_parent_request(tracer: Tracer) -> None:
    """A request whose root's parent lives in another process (a local root)."""
    remote = NonRecordingSpan(
        SpanContext(
            trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
    )
    with (
        tracer.start_as_current_span("POST /internal", context=set_span_in_context(remote)),
        step("generate"),
    ):
        _llm(tracer, f"chat {FRONTIER}", FRONTIER, 2_000, 500)


def late_child_request(tracer: Tracer) -> None:
    """A call that ends after its request's root: exported after the root."""
    root = tracer.start_span("POST /answer")
    with step("faithfulness"):
        child = tracer.start_span(
            f"chat {FRONTIER}",
            context=set_span_in_context(root),
            attributes=llm_attributes(FRONTIER, 3_000, 50),
        )
    root.end()
    child.end()


#: A time (seconds since the epoch) for spans with explicit times.
T0 = 1_800_000_000.0


def pinned_settings(**overrides: Any) -> Settings:
    """Settings with the pinned prices and tiers, no genai-prices, no HTTP server."""
    values: dict[str, Any] = {
        "model_tiers": MODEL_TIERS,
        "tier_prices": TIER_PRICES,
        "use_genai_prices": False,
        "serve_metrics": False,
        **overrides,
    }
    return Settings(**values)
