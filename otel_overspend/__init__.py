"""otel_overspend: how much of an LLM bill pays frontier-model rates for specialist work.

Add one line to an app instrumented with OpenTelemetry::

    provider.add_span_processor(OverspendProcessor())

and mark pipeline steps with ``with step("rerank"):`` or ``@step("rerank")``.
"""

from __future__ import annotations

from otel_overspend.export import OverspendSpanExporter
from otel_overspend.processor import OverspendProcessor
from otel_overspend.settings import Settings
from otel_overspend.steps import current_step, step

__all__ = ("OverspendProcessor", "OverspendSpanExporter", "Settings", "current_step", "step")
