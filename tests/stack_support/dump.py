"""The child side of the stack runs: the processor under test (default settings) and an in-memory
exporter, and the JSON a run writes.

Imported by ``traceloop_pipeline.py`` (in ``.venv-traceloop``), ``langchain_pipeline.py``,
``litellm_pipeline.py`` and ``pydantic_ai_pipeline.py`` (in ``.venv``), each run in a process of
its own (``python tests/stack_support/<script> ... --out FILE``): no pytest here, nothing from a
framework, only the standard library, OpenTelemetry, prometheus_client and otel_overspend.
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

    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
    from opentelemetry.trace import SpanContext

#: The pipeline every run drives: 3 requests, each one LLM call per step, in this order.
REQUESTS: Final = 3
#: step -> (characters of the prompt, max_tokens): the fake provider's usage of the step's call
#: is exactly (input tokens, output tokens) = these (see examples/fake_provider.py).
STEPS: Final = {
    "rewrite": (200, 50),
    "rerank": (1200, 200),
    "generate": (350, 400),
    "faithfulness": (400, 100),
}
#: The app's own tracer (the request and step spans a run opens itself).
APP_SCOPE: Final = "stack-app"
#: The app span around each request, in the runs that have one.
REQUEST_SPAN: Final = "request"
#: The distributions whose versions a run reports; those not installed in the run's environment
#: are left out of ``versions``.
DISTRIBUTIONS: Final = (
    "openai",
    "httpx",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "traceloop-sdk",
    "langchain-core",
    "langchain-openai",
    "langgraph",
    "litellm",
    "pydantic-ai-slim",
    "opentelemetry-instrumentation-openai",
    "opentelemetry-instrumentation-langchain",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "openinference-instrumentation",
    "openinference-instrumentation-openai",
    "openinference-instrumentation-langchain",
    "genai-prices",
)
#: Span attributes whose values are message content or serialised payloads: their keys are kept
#: (what a framework records is the point of the dump), their values are not.
_CONTENT_PARTS: Final = (
    "messages",
    "content",
    "prompt.",
    "completion.",
    "input.value",
    "output.value",
    "entity.input",
    "entity.output",
    "choices",
)
#: With ``Recorder(mask_content=False)``: span attributes left out of the dump altogether
#: (message contents and long serialised payloads), as are string values over :data:`_LONG`.
_SKIPPED_PARTS: Final = ("messages", "content", "choices", "final_result", "json_schema", "hidden_params")
_LONG: Final = 200
#: Run metadata (OpenInference's ``metadata``: LangGraph's node and step, the model ...): kept
#: longer, it is what a framework says about the run.
_METADATA_LONG: Final = 2000


def prompt(step: str) -> str:
    """The text of the step's call: as many characters as the fake counts input tokens."""
    return "p" * STEPS[step][0]


def max_tokens(step: str) -> int:
    return STEPS[step][1]


@dataclass
class Recorder:
    """The processor under test, then an exporter keeping every span, on ``provider`` (a run
    whose framework builds its own tracer provider hands it :attr:`processors` instead)."""

    provider: TracerProvider = field(default_factory=TracerProvider)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    attach: bool = True
    #: framework name -> step (``Settings.step_aliases``); none by default.
    step_aliases: dict[str, str] = field(default_factory=dict)
    #: True: content attributes keep their keys with a placeholder value and long values are
    #: shortened to their length; False: both are left out of the dump.
    mask_content: bool = True

    def __post_init__(self) -> None:
        settings = Settings(serve_metrics=False, step_aliases=self.step_aliases)
        self.processor = OverspendProcessor(settings=settings, registry=self.registry, serve_metrics=False)
        self.processors: list[SpanProcessor] = [self.processor, SimpleSpanProcessor(self.exporter)]
        if self.attach:
            for processor in self.processors:
                self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer(APP_SCOPE)

    def write(
        self, out: Path, provider: TracerProvider | None = None, notes: dict[str, Any] | None = None
    ) -> None:
        """Flush ``provider`` (default: the recorder's) and write the result: versions, every
        ``*_total`` sample, every span."""
        provider = provider or self.provider
        provider.force_flush()
        samples = [
            {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        ]
        spans = [_span(span, mask_content=self.mask_content) for span in self.exporter.get_finished_spans()]
        result = {"versions": _versions(), "samples": samples, "spans": spans, "notes": notes or {}}
        out.write_text(json.dumps(result, indent=1, sort_keys=True))
        provider.shutdown()


def _value(key: str, value: Any) -> Any:
    if any(part in key for part in _CONTENT_PARTS):
        return "<content>"
    if not isinstance(value, (bool, int, float, str)):
        value = str(value)
    if isinstance(value, str) and len(value) > (_METADATA_LONG if key == "metadata" else _LONG):
        return f"<{len(value)} characters>"
    return value


def _attributes(span: ReadableSpan, *, mask_content: bool) -> dict[str, Any]:
    items = sorted((span.attributes or {}).items())
    if mask_content:
        return {key: _value(key, value) for key, value in items}
    return {
        key: value if isinstance(value, (bool, int, float, str)) else str(value)
        for key, value in items
        if not any(part in key for part in _SKIPPED_PARTS)
        and not (isinstance(value, str) and len(value) > _LONG)
    }


def _span(span: ReadableSpan, *, mask_content: bool) -> dict[str, Any]:
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
        "attributes": _attributes(span, mask_content=mask_content),
    }


def _span_id(context: SpanContext | None) -> str | None:
    return None if context is None else f"{context.span_id:016x}"


def _versions() -> dict[str, str]:
    installed = {
        dist.metadata["Name"].lower().replace("_", "-"): dist.version
        for dist in importlib.metadata.distributions()
    }
    return {name: installed[name] for name in DISTRIBUTIONS if name in installed}
