"""A W3C baggage entry, read off the OpenTelemetry context without the API's four calls.

``opentelemetry.baggage.get_baggage`` reaches the one dict it reads through four Python
calls, paid by every span started outside a ``step(...)``. The context keeps the baggage
as a dict under one key. That key is learned once, at import, by setting baggage through
the public API on an empty context; the direct read is used only if the API's own read of
that context agrees with it, else every read goes through the API. The current context is
read the same way: with the API's own ``ContextVarsRuntimeContext`` (the default),
``get_current`` is two Python calls around one ``ContextVar.get``, which is called directly
once a probe context attached through the API has been read back through both. The span a
context holds (a started span's parent) is read by its key too, learned the same way as
the baggage's and checked against ``opentelemetry.trace.get_current_span``. Nothing is
ever written but the probes, detached again at once.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context, get_current
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("BAGGAGE_CONTEXT_KEY", "SPAN_CONTEXT_KEY", "baggage_value", "current_context")

_PROBE = "overspend.probe"


def _learn_key() -> str | None:
    probe = baggage.set_baggage(_PROBE, "1", context=Context())
    keys = list(probe)
    if len(keys) != 1:
        return None
    key = keys[0]
    if probe[key] != {_PROBE: "1"} or baggage.get_baggage(_PROBE, probe) != "1":
        return None
    return key


def _learn_current() -> Callable[[], Context]:
    runtime = vars(otel_context).get("_RUNTIME_CONTEXT")
    if type(runtime) is not ContextVarsRuntimeContext:
        return get_current
    var = vars(runtime).get("_current_context")
    if type(var) is not ContextVar:
        return get_current
    probe = Context()
    token = otel_context.attach(probe)
    try:
        agrees = var.get() is probe and get_current() is probe
    finally:
        otel_context.detach(token)
    if not agrees or var.get() is not get_current():
        return get_current
    current: Callable[[], Context] = var.get
    return current


#: ``current_context()`` is ``opentelemetry.context.get_current()``.
current_context = _learn_current()


def _direct(key: str) -> Callable[[str, Context | None], object | None]:
    def baggage_value(name: str, context: Context | None) -> object | None:
        entries = (context if context is not None else current_context()).get(key)
        if entries is None:
            return None
        return entries.get(name) if isinstance(entries, dict) else None

    return baggage_value


def _through_the_api(name: str, context: Context | None) -> object | None:
    return baggage.get_baggage(name, context)


#: The key a context holds its baggage under (no baggage if ``context.get(BAGGAGE_CONTEXT_KEY)``
#: is ``None``); ``None`` if not learned.
BAGGAGE_CONTEXT_KEY: str | None = _learn_key()
#: ``baggage_value(name, context)`` is ``opentelemetry.baggage.get_baggage(name, context)``.
baggage_value: Callable[[str, Context | None], object | None] = (
    _through_the_api if BAGGAGE_CONTEXT_KEY is None else _direct(BAGGAGE_CONTEXT_KEY)
)


def _learn_span_key() -> str | None:
    held = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    probe = trace.set_span_in_context(held, Context())
    keys = list(probe)
    if len(keys) != 1 or probe[keys[0]] is not held or trace.get_current_span(probe) is not held:
        return None
    return keys[0]


#: The key a context holds its span under (``context.get(SPAN_CONTEXT_KEY)`` is the span
#: ``opentelemetry.trace.get_current_span(context)`` gives, or ``None``, or an object that is
#: no span where it gives ``INVALID_SPAN``); ``None`` if not learned: use the API then.
SPAN_CONTEXT_KEY: str | None = _learn_span_key()
