"""What the span hooks read off the SDK's spans, without the cost of its properties.

On a plain span the hooks may add about 5,500 instructions (3 % of the SDK's own span);
``span.context.span_id`` runs two Python properties (about 1,400) and
``ReadableSpan.attributes`` wraps the attributes in a new ``mappingproxy`` on every call
(about 2,200). The SDK's span classes keep the same values in plain instance attributes
(``_context``, ``_parent``, ``_name``, ``_attributes``). The hooks read those on a class listed in
:data:`DIRECT_LIVE` / :data:`DIRECT_ENDED`; a class gets there once one of its spans has been
read through the public properties here and held exactly what they return. Any other class
(or an SDK whose layout differs) stays on the public properties. Nothing is ever written.
:data:`SDK_LIVE` and :data:`SDK_ENDED` are the classes of the spans the SDK's tracer starts and
hands to ``on_end``, checked so at import on one probe span (a ``type(span) is`` test costs
the hooks less than a set lookup, and their attributes need no type check).

``SpanContext`` is read by position (``ctx[1]`` is ``span_id``, ``ctx[2]`` ``is_remote``),
which its properties are defined as; :func:`_is_context` checks it on the same span. The
keys of the SDK's ``BoundedAttributes`` are read from the dict it keeps them in when
:data:`BOUNDED_ATTRIBUTES` is that class (checked once, at import), else by iterating it.

The step a span starts in is held on that ``BoundedAttributes`` object, as the Python
attribute ``_overspend_step`` (:data:`STEP_FIELD`; not one of the span's attributes, so no
exporter sees it): the ``ReadableSpan`` the SDK hands to ``on_end`` shares the started
span's object, so the step needs no table of open spans and goes with the span. The probe
span checks that it does; if not, :data:`SDK_LIVE` and :data:`SDK_ENDED` are a class no
span is, and the processor writes the step on the span through the public API instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanContext

__all__ = (
    "BOUNDED_ATTRIBUTES",
    "DIRECT_ENDED",
    "DIRECT_LIVE",
    "SDK_ENDED",
    "SDK_LIVE",
    "STEP_FIELD",
    "direct_attributes",
    "ended_fields",
    "held_step",
    "live_fields",
)

#: Started-span classes whose ``_context``, ``_parent``, ``_name`` and ``_attributes`` are
#: what their ``context``, ``parent``, ``name`` and ``attributes`` return.
DIRECT_LIVE: set[type[Any]] = set()
#: Ended-span classes whose ``_context``, ``_parent`` and ``_attributes`` are what their
#: ``context``, ``parent`` and ``attributes`` return.
DIRECT_ENDED: set[type[Any]] = set()


def _keeps_a_dict() -> bool:
    probe = BoundedAttributes(attributes={"probe": 1})
    own = getattr(probe, "_dict", None)
    return type(own) is dict and own == dict(probe)


#: ``BoundedAttributes`` if its keys can be read from its ``_dict``, else a class no
#: attributes are (``type(attrs) is BOUNDED_ATTRIBUTES`` is then never true).
BOUNDED_ATTRIBUTES: type[Any] = BoundedAttributes if _keeps_a_dict() else type(None)


def _is_context(found: object, public: SpanContext | None) -> bool:
    if public is None:
        return found is None
    return (
        found is public
        and type(public) is SpanContext
        and public[1] == public.span_id
        and public[2] == public.is_remote
    )


def _same_attributes(own: object, public: Mapping[str, Any] | None) -> bool:
    if own is None:
        return not public
    return isinstance(own, Mapping) and dict(own) == dict(public or {})


def direct_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """The attributes of a span of a class read by its fields: the dict they are kept in
    when they are the SDK's ``BoundedAttributes``."""
    attrs = span._attributes  # noqa: SLF001
    return attrs._dict if type(attrs) is BOUNDED_ATTRIBUTES else attrs  # type: ignore[union-attr]  # noqa: SLF001


def live_fields(span: Span) -> tuple[SpanContext, SpanContext | None, str, Mapping[str, Any] | None]:
    """A started span's (context, parent, name, attributes): by its fields if its class is
    in DIRECT_LIVE, else through the public properties (learning whether it can be)."""
    cls = type(span)
    if cls in DIRECT_LIVE:
        return span._context, span._parent, span._name, direct_attributes(span)  # type: ignore[return-value]  # noqa: SLF001
    ctx, parent, name, attrs = span.context, span.parent, span.name, span.attributes
    if (
        issubclass(cls, Span)
        and ctx is not None
        and _is_context(getattr(span, "_context", None), ctx)
        and _is_context(getattr(span, "_parent", None), parent)
        and getattr(span, "_name", None) == name
        and type(name) is str
        and _same_attributes(getattr(span, "_attributes", None), attrs)
    ):
        DIRECT_LIVE.add(cls)
    return ctx, parent, name, attrs


def ended_fields(span: ReadableSpan) -> tuple[SpanContext | None, Mapping[str, Any] | None]:
    """An ended span's (context, attributes): by its fields if its class is in
    DIRECT_ENDED, else through the public properties (learning whether it can be)."""
    cls = type(span)
    if cls in DIRECT_ENDED:
        return span._context, direct_attributes(span)  # noqa: SLF001
    ctx, parent, attrs = span.context, span.parent, span.attributes
    if issubclass(cls, ReadableSpan):
        own = getattr(span, "_attributes", None)
        if (
            _is_context(getattr(span, "_context", None), ctx)
            and _is_context(getattr(span, "_parent", None), parent)
            and (dict(own) if own is not None else {}) == dict(attrs or {})
        ):
            DIRECT_ENDED.add(cls)
    return ctx, attrs


#: The Python attribute of a span's ``BoundedAttributes`` that holds the step it started in.
STEP_FIELD = "_overspend_step"


def held_step(span: object) -> str | None:
    """The step held on an SDK span's attributes object, started or ended (``None`` for
    any other span, or one started before the processor was registered)."""
    if type(span) is not SDK_ENDED and type(span) is not SDK_LIVE:
        return None
    found = getattr(getattr(span, "_attributes", None), STEP_FIELD, None)
    return found if type(found) is str else None


class _Keep(SpanProcessor):
    """Holds a value on each started span's attributes object, as the processor does, and
    keeps the span the SDK hands to ``on_end`` (its own ``ReadableSpan`` copy in 1.45)."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: object = None) -> None:  # noqa: ARG002
        with contextlib.suppress(AttributeError, TypeError):  # no attributes, or no field
            setattr(span._attributes, STEP_FIELD, "probe")  # noqa: SLF001

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def _probe_classes() -> tuple[type[Any], type[Any]]:
    """The classes of the spans the SDK's tracer starts and hands to ``on_end``, if one of
    each, read through its properties, earned its class a place in DIRECT_LIVE and
    DIRECT_ENDED with its attributes in a ``BoundedAttributes`` that the ended span shares
    (holding the step set on it at the start); else a class no span is (with
    ``OTEL_SDK_DISABLED``, say, the tracer makes no SDK span)."""
    none: type[Any] = type(None)
    if BOUNDED_ATTRIBUTES is not BoundedAttributes:
        return none, none
    provider = TracerProvider(sampler=ALWAYS_ON, resource=Resource.get_empty(), shutdown_on_exit=False)
    keep = _Keep()
    provider.add_span_processor(keep)
    span = provider.get_tracer("otel_overspend.probe").start_span("probe", attributes={"probe": 1})
    live = type(span)
    if isinstance(span, Span):
        live_fields(span)
    bounded = type(getattr(span, "_attributes", None)) is BOUNDED_ATTRIBUTES
    span.end()
    provider.shutdown()
    if not (bounded and live in DIRECT_LIVE) or len(keep.ended) != 1:
        return none, none
    ended_span = keep.ended[0]
    ended = type(ended_span)
    ended_fields(ended_span)
    shared = getattr(ended_span, "_attributes", None)
    if (
        shared is not getattr(span, "_attributes", None)
        or type(shared) is not BOUNDED_ATTRIBUTES
        or getattr(shared, STEP_FIELD, None) != "probe"
        or ended not in DIRECT_ENDED
    ):
        return none, none
    return live, ended


#: The class of the spans the SDK's tracer starts (``on_start``) and the class of those it
#: hands to ``on_end``, checked at import to be read by their fields with their attributes
#: in one ``BoundedAttributes`` that holds the step (``type(span) is SDK_LIVE`` is never
#: true if not).
SDK_LIVE, SDK_ENDED = _probe_classes()
