"""The child side of the LiteLLM and Pydantic AI stack runs: a tracer provider with an
OverspendProcessor (default settings) and an in-memory exporter, and the JSON a run writes.

Imported by ``litellm_pipeline.py`` and ``pydantic_ai_pipeline.py``, each run in a process of
its own (``python tests/stack_support/<script> --scenario NAME --out FILE``): no pytest here.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext

#: The pipeline every run drives: 3 requests, each one LLM call per step, in this order.
REQUESTS: Final = 3
#: step -> (characters of the prompt, max_tokens): the fake provider's usage is exactly
#: (input tokens, output tokens) = these (see examples/fake_provider.py).
STEPS: Final = {
    "rewrite": (200, 50),
    "rerank": (1200, 200),
    "generate": (350, 400),
    "faithfulness": (400, 100),
}
#: The app's own tracer (the request and step spans a run opens itself).
APP_SCOPE: Final = "stack-app"
DISTRIBUTIONS: Final = (
    "litellm",
    "pydantic-ai-slim",
    "openai",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-openai",
    "genai-prices",
)
#: Span attributes left out of the dump: message contents and long serialised payloads.
_SKIPPED_PARTS: Final = ("messages", "content", "choices", "final_result", "json_schema", "hidden_params")


def prompt(step: str) -> str:
    return "p" * STEPS[step][0]


def max_tokens(step: str) -> int:
    return STEPS[step][1]


@dataclass
class Recorder:
    """One tracer provider: the processor under test, then an exporter keeping every span."""

    provider: TracerProvider = field(default_factory=TracerProvider)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)

    def __post_init__(self) -> None:
        self.processor = OverspendProcessor(
            settings=Settings(serve_metrics=False), registry=self.registry, serve_metrics=False
        )
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(APP_SCOPE)

    def write(self, out: Path, notes: dict[str, Any] | None = None) -> None:
        """Flush and write the result: versions, every ``*_total`` sample, every span."""
        self.provider.force_flush()
        samples = [
            {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        ]
        spans = [_span(span) for span in self.exporter.get_finished_spans()]
        result = {"versions": _versions(), "samples": samples, "spans": spans, "notes": notes or {}}
        out.write_text(json.dumps(result, indent=1, sort_keys=True))
        self.provider.shutdown()


def _span(span: ReadableSpan) -> dict[str, Any]:
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "trace": None if span.context is None else f"{span.context.trace_id:032x}",
        "id": _span_id(span.context),
        "parent": _span_id(span.parent),
        "scope": "" if scope is None else scope.name,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": {
            key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in sorted((span.attributes or {}).items())
            if not any(part in key for part in _SKIPPED_PARTS)
            and not (isinstance(value, str) and len(value) > 200)
        },
    }


def _span_id(context: SpanContext | None) -> str | None:
    return None if context is None else f"{context.span_id:016x}"


def _versions() -> dict[str, str]:
    installed = {
        dist.metadata["Name"].lower().replace("_", "-"): dist.version
        for dist in importlib.metadata.distributions()
    }
    return {name: installed[name] for name in DISTRIBUTIONS if name in installed}
