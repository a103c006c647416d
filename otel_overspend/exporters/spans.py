"""Attribution on exported spans: wrap the app's span exporter.

    provider.add_span_processor(processor := OverspendProcessor())
    exporter = OverspendSpanExporter(OTLPSpanExporter(), processor=processor)
    provider.add_span_processor(BatchSpanProcessor(exporter))

Each exported LLM span gains ``overspend.step``, ``overspend.tier``, ``overspend.cost_usd``
and ``overspend.specialized_cost_usd`` (the last two only when the call was priced), so a
trace backend can group spend by step. The SDK freezes a span's attributes before any
processor sees it, so the wrapper builds a new read-only span with the merged attributes
and hands that to the wrapped exporter; the original span is never modified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_overspend.steps import BAGGAGE_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otel_overspend.calls.attribution import Call

__all__ = ("ATTRIBUTES", "Annotations", "OverspendSpanExporter")


TIER: Final = "overspend.tier"
COST: Final = "overspend.cost_usd"
SPECIALIZED: Final = "overspend.specialized_cost_usd"
#: The attributes the wrapper adds.
ATTRIBUTES: Final = (BAGGAGE_KEY, TIER, COST, SPECIALIZED)


class Annotations(Protocol):
    """Where the attributions come from: an :class:`~otel_overspend.OverspendProcessor`."""

    def keep_annotations(self) -> None:
        """Keep each ended LLM span's attribution until :meth:`annotation` asks for it."""

    def annotation(self, span: ReadableSpan) -> Call | None:
        """The attribution of ``span``, if it is a counted LLM call."""


def _annotated(span: ReadableSpan, call: Call) -> ReadableSpan:
    merged = dict(span.attributes or {})
    merged[BAGGAGE_KEY] = call.step
    merged[TIER] = call.tier
    if call.cost_usd is not None:
        merged[COST] = call.cost_usd
    if call.specialized_cost_usd is not None:
        merged[SPECIALIZED] = call.specialized_cost_usd
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=BoundedAttributes(maxlen=None, attributes=merged, immutable=True),
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class OverspendSpanExporter(SpanExporter):
    """Adds the attribution of each LLM span, then exports through ``exporter``.

    ``processor`` is the :class:`~otel_overspend.OverspendProcessor` on the same tracer
    provider. A failure to annotate never loses a span: it is exported as it was.
    """

    def __init__(self, exporter: SpanExporter, *, processor: Annotations) -> None:
        self._exporter = exporter
        self._processor = processor
        processor.keep_annotations()  # now, before the first span ends

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        processor = self._processor
        out: list[ReadableSpan] = []
        for span in spans:
            try:
                call = processor.annotation(span)
                out.append(span if call is None else _annotated(span, call))
            except Exception:  # noqa: PERF203 - one bad span must not cost the batch its annotations
                out.append(span)
        return self._exporter.export(out)

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._exporter.force_flush(timeout_millis)
