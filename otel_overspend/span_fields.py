"""What the span hooks read off the SDK's spans, without the cost of its properties.

On a plain span the hooks may add about 5,500 instructions (3 % of the SDK's own span);
``span.context.span_id`` runs two Python properties (about 1,400) and
``ReadableSpan.attributes`` wraps the attributes in a new ``mappingproxy`` on every call
(about 2,200). The SDK's span classes keep the same values in plain instance attributes
(``_context``, ``_parent``, ``_name``, ``_attributes``). The hooks read those on a class listed in
:data:`DIRECT_LIVE` / :data:`DIRECT_ENDED`; a class gets there once one of its spans has been
read through the public properties here and held exactly what they return. Any other class
(or an SDK whose layout differs) stays on the public properties. Nothing is ever written.

``SpanContext`` is read by position (``ctx[1]`` is ``span_id``, ``ctx[2]`` ``is_remote``),
which its properties are defined as; :func:`_is_context` checks it on the same span. The
keys of the SDK's ``BoundedAttributes`` are read from the dict it keeps them in when
:data:`BOUNDED_ATTRIBUTES` is that class (checked once, at import), else by iterating it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.trace import SpanContext

__all__ = ("BOUNDED_ATTRIBUTES", "DIRECT_ENDED", "DIRECT_LIVE", "ended_fields", "live_fields", "live_span_id")

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


def live_fields(span: Span) -> tuple[SpanContext, SpanContext | None, str, Mapping[str, Any] | None]:
    """A started span's (context, parent, name, attributes), through the public properties
    (learning whether its class can be read directly)."""
    ctx, parent, name, attrs = span.context, span.parent, span.name, span.attributes
    cls = type(span)
    if (
        cls not in DIRECT_LIVE
        and issubclass(cls, Span)
        and ctx is not None
        and _is_context(getattr(span, "_context", None), ctx)
        and _is_context(getattr(span, "_parent", None), parent)
        and getattr(span, "_name", None) == name
        and type(name) is str
        and _same_attributes(getattr(span, "_attributes", None), attrs)
    ):
        DIRECT_LIVE.add(cls)
    return ctx, parent, name, attrs


def live_span_id(span: Span) -> int:
    """A started span's id, through the public properties (learning as :func:`live_fields`)."""
    span_id: int = live_fields(span)[0].span_id
    return span_id


def ended_fields(span: ReadableSpan) -> tuple[SpanContext | None, Mapping[str, Any] | None]:
    """An ended span's (context, attributes), through the public properties (learning
    whether its class can be read directly)."""
    ctx, parent, attrs = span.context, span.parent, span.attributes
    cls = type(span)
    if cls not in DIRECT_ENDED and issubclass(cls, ReadableSpan):
        own = getattr(span, "_attributes", None)
        if (
            _is_context(getattr(span, "_context", None), ctx)
            and _is_context(getattr(span, "_parent", None), parent)
            and (dict(own) if own is not None else {}) == dict(attrs or {})
        ):
            DIRECT_ENDED.add(cls)
    return ctx, attrs
