"""Zero-code setup: ``opentelemetry-instrument`` adds the processor from environment variables.

``opentelemetry-instrument`` runs the ``opentelemetry_pre_instrument`` entry points after
the SDK configurator has installed the global ``TracerProvider`` and before the app's code.
With ``OVERSPEND_ENABLED=true`` this hook adds an :class:`OverspendProcessor` configured
from ``OVERSPEND_*`` (and ``OVERSPEND_CONFIG``). It is opt-in, so an app that also adds the
processor by hand never gets two; it logs and carries on instead of failing the app.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

__all__ = ("ENABLE_VARIABLE", "pre_instrument")

ENABLE_VARIABLE: Final = "OVERSPEND_ENABLED"
_log = logging.getLogger("otel_overspend")


def pre_instrument() -> None:
    if os.environ.get(ENABLE_VARIABLE, "").strip().lower() not in {"1", "true", "yes", "on"}:
        return
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        _log.warning(
            "otel_overspend: %s is set but the global tracer provider is %s, not the SDK's; "
            "no processor added (is an SDK configurator such as opentelemetry-distro installed?)",
            ENABLE_VARIABLE,
            type(provider).__name__,
        )
        return
    try:
        from otel_overspend.config.settings import ConfigError  # noqa: PLC0415 - only when enabled
        from otel_overspend.processor import OverspendProcessor  # noqa: PLC0415

        provider.add_span_processor(OverspendProcessor())
    except ConfigError as exc:
        # The message names the variable, its value and the form expected: no traceback.
        _log.error("otel_overspend: %s; the app runs without the span processor", exc)
    except Exception:
        _log.exception("otel_overspend: could not add the span processor; the app runs without it")
