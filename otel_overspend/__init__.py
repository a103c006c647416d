"""otel_overspend: how much of an LLM bill pays frontier-model rates for specialist work.

Add one line to an app instrumented with OpenTelemetry::

    provider.add_span_processor(OverspendProcessor())

and mark pipeline steps with ``with step("rerank"):`` or ``@step("rerank")``.

``from otel_overspend import step`` loads the OpenTelemetry API alone: code that only marks
steps does not pay for the processor (the SDK, pydantic, prometheus_client), which is
imported on first use of its name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otel_overspend.steps import current_step, mark_cascade_stage, step

if TYPE_CHECKING:
    from otel_overspend.accounting.observations import record_oracle_check, record_step_time
    from otel_overspend.config.settings import ConfigError, Settings
    from otel_overspend.exporters.spans import OverspendSpanExporter
    from otel_overspend.processor import OverspendProcessor

__all__ = (
    "ConfigError",
    "OverspendProcessor",
    "OverspendSpanExporter",
    "Settings",
    "current_step",
    "mark_cascade_stage",
    "record_oracle_check",
    "record_step_time",
    "step",
)

_LAZY = {
    "OverspendProcessor": "otel_overspend.processor",
    "OverspendSpanExporter": "otel_overspend.exporters.spans",
    "Settings": "otel_overspend.config.settings",
    "ConfigError": "otel_overspend.config.settings",
    "record_oracle_check": "otel_overspend.accounting.observations",
    "record_step_time": "otel_overspend.accounting.observations",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_overspend' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later reads skip this function
    return value
