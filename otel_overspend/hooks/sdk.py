"""The OpenTelemetry SDK's private span fields: read here, and nowhere else in the package
but the probe that checks them (:mod:`otel_overspend.hooks.sdk_probe`).

Why: the public properties cost more than a plain span's whole budget. ``span.context``
runs two Python properties, and ``ReadableSpan.attributes`` wraps the attributes in a new
``mappingproxy`` on every read. The SDK's span classes keep the same values in plain
instance fields, which the hooks built here read instead.

The contract, checked by the probe on one span of a private ``TracerProvider`` the first
time a processor asks (never at import), for the SDK installed:

1. The tracer starts spans of one class whose ``_context``, ``_parent`` and ``_name`` are
   the objects its ``context``, ``parent`` and ``name`` return, and whose ``_attributes``
   is a ``BoundedAttributes`` keeping the attributes in its ``_dict``.
2. The span handed to ``on_end`` (a ``ReadableSpan`` copy in SDK 1.45) has the same
   fields, with ``_start_time``, ``_end_time``, ``_instrumentation_scope``, ``_status``,
   ``_resource`` and ``_kind`` beside them, and shares the started span's ``_attributes``
   object: a Python attribute set on that object at the start (:data:`STEP_FIELD`) is
   there at the end. So the step a span started in goes with the span, and the processor
   keeps no table of open spans.
3. ``SpanContext`` is a tuple whose items 1 and 2 are ``span_id`` and ``is_remote``.

Nothing is written but that Python attribute, which is not one of the span's attributes:
no exporter sees it. If any part of the contract does not hold (another SDK release, a
tracer that makes no SDK spans), the probe says why and the processor reads every span
through the public API, holding the steps of open spans in a bounded table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from otel_overspend.accounting.recorder import STRONG
from otel_overspend.base.bounded import make_room
from otel_overspend.hooks.baggage import BAGGAGE_CONTEXT_KEY, SPAN_CONTEXT_KEY, current_context

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span

    from otel_overspend.calls.step_rules import StepRules
    from otel_overspend.hooks.queue import SpanQueue

__all__ = ("STEP_FIELD", "Ended", "FastHooks", "SdkSpans", "ending", "step_outside")

#: The Python attribute of a span's ``BoundedAttributes`` that holds the step it started in.
STEP_FIELD: Final = "_overspend_step"
#: An ended span as the recorder reads it, taken at its end so that the span is not kept
#: alive: trace id, span id, local parent id (``None`` for a root or a remote parent), name,
#: attributes, start and end (ns), the step held on it, its scope's name, whether its status
#: is an error; then its resource, and whether it serves a request from elsewhere (a server
#: span, a remote parent), which tell a local root's purpose.
Ended = tuple[
    int, int, "int | None", str, "Mapping[str, Any] | None", int, int, "str | None", str, bool, object, bool
]
_SERVER: Final = SpanKind.SERVER
_ERROR: Final = StatusCode.ERROR
#: What :meth:`SdkSpans.parent_step` returns for a span this processor holds no step on.
NOT_HELD: Final = object()


@dataclass(frozen=True, slots=True)
class SdkSpans:
    """The SDK's span classes, checked to keep the contract above."""

    #: The class of the spans the tracer starts (``on_start``).
    live: type[Any]
    #: The class of the spans it hands to ``on_end``.
    ended: type[Any]

    def held_step(self, span: object) -> str | None:
        """The step held on a started or ended SDK span (``None`` for any other span, or one
        started before the processor was registered)."""
        if type(span) is not self.ended and type(span) is not self.live:
            return None
        found = getattr(span._attributes, STEP_FIELD, None)  # type: ignore[attr-defined]  # noqa: SLF001
        return found if type(found) is str else None

    def parent_step(self, parent: Span) -> object:
        """The step held on a started SDK span, or :data:`NOT_HELD` if this processor has not
        seen it start (another provider's span)."""
        try:
            return parent._attributes._overspend_step  # type: ignore[union-attr]  # noqa: SLF001
        except AttributeError:
            return NOT_HELD


def step_outside(
    spans: SdkSpans | None,
    *,
    carried: Callable[[Context], str | None],
    other_parent: Callable[[object], str | None],
    rules: StepRules,
) -> Callable[[Span, Context | None, Mapping[str, Any] | None], str | None]:
    """The step of a span started outside any ``step()``: ``carried`` by the context's
    baggage, else its parent's, else a rule's on its name and start attributes (``attrs``;
    ``None``: read from the span, when a rule needs them), else none.

    Most spans of most apps take this path, so the SDK's own spans are read by their fields
    here, in one call: a parent of the SDK's class gives the step held on it; any other
    parent (a proxy, another provider's span, one the processor did not see start) goes to
    ``other_parent``. The span's name is read only if a rule may match.
    """
    live = spans.live if spans is not None else None
    baggage_key = BAGGAGE_CONTEXT_KEY
    span_key = SPAN_CONTEXT_KEY
    on_names = rules.on_names
    # Looked up in the span's attributes one by one: the rules read a few keys, and a span
    # carries more than that (an HTTP server span, a dozen).
    rule_keys = tuple(rules.keys)

    def step(span: Span, parent_context: Context | None, attrs: Mapping[str, Any] | None) -> str | None:
        context = parent_context if parent_context is not None else current_context()
        if baggage_key is None or baggage_key in context:  # any baggage
            found = carried(context)
            if found is not None:
                return found
        parent = context.get(span_key) if span_key is not None else get_current_span(context)
        if parent is not None:
            if type(parent) is live:
                try:
                    found = parent._attributes._overspend_step  # type: ignore[attr-defined]  # noqa: SLF001
                except AttributeError:  # started before the processor was added
                    found = other_parent(parent)
            else:
                found = other_parent(parent)
            if found is not None:
                return found
        if attrs is None:
            attrs = span.attributes
        if not on_names:
            if not attrs:
                return None
            for key in rule_keys:
                if key in attrs:
                    break
            else:  # it cannot match a rule
                return None
        return rules.match(span._name if type(span) is live else span.name, attrs)  # noqa: SLF001

    return step


def ending(span: object) -> None:
    """``SpanProcessor._on_ending``, which the SDK calls on every processor as each span
    ends (SDK 1.40 and later): nothing to do there. A processor sets this as its own
    ``_on_ending``, so that the call costs a compiled function's, not a Python method's."""
    del span


class FastHooks:
    """``on_start`` / ``on_end`` for the SDK's spans, reading their fields; any other span
    goes to the processor's public-API hooks (``start_other`` / ``end_other``).

    The work per span is what the processor decides, given as plain callables: no attribute
    lookups on the processor per span.
    """

    __slots__ = ("on_end", "on_start")

    def __init__(
        self,
        spans: SdkSpans,
        *,
        current_frame: Callable[[], Any],
        outside: Callable[[Span, Context | None, Mapping[str, Any] | None], str | None],
        start_other: Callable[[Span, Context | None], None],
        end_other: Callable[[ReadableSpan], None],
        marker_keys: frozenset[str],
        no_usage_keys: Callable[[Mapping[str, Any]], bool],
        may_be_llm_call: Callable[[Mapping[str, Any]], bool],
        marks: dict[int, bool | None],
        queue: SpanQueue[Ended],
        max_marks: int,
        fail: Callable[[str], None],
        stamp: Callable[[Span, str], None] | None,
    ) -> None:
        live = spans.live
        ended = spans.ended
        items = queue.items
        drain_chunk = queue.drain_chunk

        def on_start(span: Span, parent_context: Context | None = None) -> None:
            # The step is held on the span's attributes object, which the ended span shares;
            # nothing is kept here for an open span.
            try:
                if type(span) is live:
                    held = span._attributes  # noqa: SLF001
                    frame = current_frame()
                    step = frame.name if frame is not None else outside(span, parent_context, held._dict)  # type: ignore[union-attr]  # noqa: SLF001
                    held._overspend_step = step  # type: ignore[union-attr]  # noqa: SLF001
                    if stamp is not None and step is not None:
                        stamp(span, step)
                else:
                    start_other(span, parent_context)
            except Exception:
                fail("on_start")

        def on_end(span: ReadableSpan) -> None:
            # Only a span with an LLM call in or below it is queued, as the record the
            # counting reads: no ended span is kept alive for the counting.
            try:
                if type(span) is not ended:
                    end_other(span)
                    return
                try:
                    attrs: dict[str, Any] = span._attributes._dict  # type: ignore[union-attr]  # noqa: SLF001
                except AttributeError:  # built by hand, with a plain dict of attributes
                    end_other(span)
                    return
                # A key that marks an LLM call, looked for key by key: most spans have a few
                # keys (none a marker), an LLM span has a marker among its first.
                no_call = True
                for key in attrs:
                    if key in marker_keys:
                        no_call = no_usage_keys(attrs) and not may_be_llm_call(attrs)
                        break
                if no_call and (not marks or span._context[1] not in marks):  # type: ignore[index]  # noqa: SLF001
                    return
                # Its local parent is marked (``recorder.mark``, inlined: once per LLM span),
                # and its record (``Ended``) is queued; a thread that finds the queue full
                # counts a chunk itself.
                parent = span._parent  # noqa: SLF001
                local_parent = None if parent is None or parent[2] else parent[1]
                if local_parent is not None:
                    if len(marks) >= max_marks:
                        make_room(marks, max_marks)
                    marks[local_parent] = STRONG
                ctx = span._context  # noqa: SLF001
                step = getattr(span._attributes, STEP_FIELD, None)  # noqa: SLF001
                end = span._end_time or 0  # noqa: SLF001
                scope = span._instrumentation_scope  # noqa: SLF001
                status = span._status  # noqa: SLF001
                items.append(
                    (
                        ctx[0],  # type: ignore[index]
                        ctx[1],  # type: ignore[index]
                        local_parent,
                        span._name,  # noqa: SLF001
                        attrs,
                        span._start_time or end,  # noqa: SLF001
                        end,
                        step if type(step) is str else None,
                        "" if scope is None else scope.name,
                        status is not None and status.status_code is _ERROR,
                        span._resource,  # noqa: SLF001
                        span._kind is _SERVER or (local_parent is None and parent is not None),  # noqa: SLF001
                    )
                )
                if len(items) >= queue.max_queued:
                    drain_chunk()
            except Exception:
                fail("on_end")

        self.on_start = on_start
        self.on_end = on_end
