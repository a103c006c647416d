"""Attribution on exported spans: wrap the app's span exporter.

    provider.add_span_processor(processor := OverspendProcessor())
    provider.add_span_processor(BatchSpanProcessor(OverspendSpanExporter(OTLPSpanExporter())))

Each exported LLM span gains ``overspend.step``, ``overspend.tier``, ``overspend.cost_usd``
and ``overspend.specialized_cost_usd`` (the last two only when the call was priced), so a
trace backend can group spend by step. The SDK freezes a span's attributes before any
processor sees it, so the wrapper builds a new read-only span with the merged attributes
and hands that to the wrapped exporter; the original span is never modified.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_overspend.processor import latest_processor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otel_overspend.attribution import Call
    from otel_overspend.processor import OverspendProcessor

__all__ = ("ATTRIBUTES", "OverspendSpanExporter")

_log = logging.getLogger("otel_overspend")

STEP: Final = "overspend.step"
TIER: Final = "overspend.tier"
COST: Final = "overspend.cost_usd"
SPECIALIZED: Final = "overspend.specialized_cost_usd"
#: The attributes the wrapper adds.
ATTRIBUTES: Final = (STEP, TIER, COST, SPECIALIZED)


def _annotated(span: ReadableSpan, call: Call) -> ReadableSpan:
    merged = dict(span.attributes or {})
    merged[STEP] = call.step
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

    ``processor`` defaults to the most recently created :class:`OverspendProcessor`.
    A failure to annotate never loses a span: it is exported as it was.
    """

    def __init__(self, exporter: SpanExporter, *, processor: OverspendProcessor | None = None) -> None:
        self._exporter = exporter
        self._processor = processor
        self._warned = False
        self._source()  # start keeping annotations now, before the first span ends

    def _source(self) -> OverspendProcessor | None:
        processor = self._processor if self._processor is not None else latest_processor()
        if processor is not None:
            processor.keep_annotations()
        elif not self._warned:
            self._warned = True
            _log.warning(
                "otel_overspend: OverspendSpanExporter found no OverspendProcessor; spans pass unchanged"
            )
        return processor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        processor = self._source()
        if processor is None:
            return self._exporter.export(spans)
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
