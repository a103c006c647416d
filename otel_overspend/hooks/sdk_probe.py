"""The probe of the OpenTelemetry SDK's span classes: whether the SDK installed keeps the
contract :mod:`otel_overspend.hooks.sdk` reads its spans by (see there).

It runs once a process, the first time a processor asks (never at import), on one span of a
private ``TracerProvider``. Kept apart from the hooks, which the wheel compiles: this runs
once and stays Python.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanContext

from otel_overspend.hooks.sdk import STEP_FIELD, SdkSpans

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("probe",)


class _Keep(SpanProcessor):
    """Holds a value on each started span's attributes object, as the hooks do, and keeps
    the span the SDK hands to ``on_end``."""

    def __init__(self) -> None:
        self.started: list[Span] = []
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: object = None) -> None:  # noqa: ARG002
        self.started.append(span)
        with contextlib.suppress(AttributeError, TypeError):  # no attributes, or no field
            setattr(span._attributes, STEP_FIELD, "probe")  # noqa: SLF001

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def _same_context(found: object, public: SpanContext | None) -> bool:
    if public is None:
        return found is None
    return (
        found is public
        and type(public) is SpanContext
        and public[1] == public.span_id
        and public[2] == public.is_remote
    )


def _keeps_its_dict(attrs: object, public: Mapping[str, Any] | None) -> bool:
    own = getattr(attrs, "_dict", None)
    return type(attrs) is BoundedAttributes and type(own) is dict and own == dict(public or {})


def _check() -> SdkSpans | str:
    """The SDK's span classes if they keep the contract, else what does not hold."""
    provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.get_empty(), shutdown_on_exit=False)
    keep = _Keep()
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("otel_overspend.probe")
    with tracer.start_as_current_span("parent"):
        span = tracer.start_span("probe", attributes={"probe": 1})
    if not keep.started or keep.started[-1] is not span or not isinstance(span, Span):
        provider.shutdown()
        return "the tracer does not start the SDK's spans (is OTEL_SDK_DISABLED set?)"
    if not (
        _same_context(getattr(span, "_context", None), span.context)
        and _same_context(getattr(span, "_parent", None), span.parent)
        and getattr(span, "_name", None) == span.name
        and _keeps_its_dict(getattr(span, "_attributes", None), span.attributes)
    ):
        provider.shutdown()
        return f"the started span ({type(span).__qualname__}) does not keep its fields as expected"
    span.end()
    provider.shutdown()
    ended = next((s for s in keep.ended if s.name == "probe"), None)
    if ended is None:
        return "the ended span was not handed to on_end"
    shared = getattr(ended, "_attributes", None)
    if not (
        _same_context(getattr(ended, "_context", None), ended.context)
        and _same_context(getattr(ended, "_parent", None), ended.parent)
        and _keeps_its_dict(shared, ended.attributes)
        and getattr(ended, "_name", None) == ended.name
        and getattr(ended, "_start_time", None) == ended.start_time
        and getattr(ended, "_end_time", None) == ended.end_time
        and getattr(ended, "_instrumentation_scope", None) is ended.instrumentation_scope
        and getattr(ended, "_status", None) is ended.status
        and getattr(ended, "_resource", None) is ended.resource
        and getattr(ended, "_kind", None) is ended.kind
    ):
        return f"the ended span ({type(ended).__qualname__}) does not keep its fields as expected"
    if shared is not span._attributes or getattr(shared, STEP_FIELD, None) != "probe":  # noqa: SLF001
        return "the ended span does not share the started span's attributes"
    return SdkSpans(live=type(span), ended=type(ended))


@functools.cache
def probe() -> SdkSpans | str:
    """The SDK's span classes if the contract holds for the SDK installed, else the reason
    it does not (checked once per process; a failure to check is a reason too)."""
    try:
        return _check()
    except Exception as exc:  # any failure means: use the public API
        return f"the probe failed: {exc!r}"
