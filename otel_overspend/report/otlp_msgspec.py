"""The fast path of :mod:`otel_overspend.report.otlp_json`: OTLP/JSON decoded by msgspec.

Every document shape the slow path reads (an ``ExportTraceServiceRequest``, Tempo's
``batches``, Jaeger's ``result`` and Tempo's ``trace`` envelopes, the older
``instrumentationLibrarySpans``) is read here too, looked for in the same order, so
that both give the same spans.

msgspec decodes a line straight into the typed structs below, skipping every field the
report does not read (events, links, status, scope, ...) without building it, and turns
the OTLP/JSON mapping's string-encoded integers into ints as it goes. A line that does
not fit the types (a span id that is a number, say) raises
:class:`msgspec.ValidationError`; the caller then decodes it again the slow way, which
says which span is wrong and keeps the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from otel_overspend.calls.conventions import STATUS_ERROR, STATUS_KEY
from otel_overspend.report.otlp_json import (
    ERROR_CODES as _ERROR_CODES,
)
from otel_overspend.report.otlp_json import (
    MAX_ENCODED_RESOURCES,
    REMOTE_PARENT_MASK,
    SERVER,
    SERVER_KINDS,
    SPAN_KIND_KEY,
    SpanRecord,
    decode_id,
    process_identity,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.report.otlp_json import Processes

__all__ = ("DecodeError", "ValidationError", "decode_line", "decode_untyped")

DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
_NULL: Final = msgspec.Raw(b"null")
_new = tuple.__new__
#: A set: most spans' code is 0, which a tuple would compare with a string too.
_ERROR_CODE_SET: Final = frozenset(_ERROR_CODES)


class AnyValue(msgspec.Struct, gc=False):
    stringValue: str | None = None  # noqa: N815 - OTLP/JSON field names
    intValue: int | None = None  # noqa: N815
    doubleValue: float | None = None  # noqa: N815
    boolValue: bool | None = None  # noqa: N815
    arrayValue: ArrayValue | None = None  # noqa: N815
    bytesValue: str | None = None  # noqa: N815


class ArrayValue(msgspec.Struct, gc=False):
    values: list[AnyValue] = []


class KeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: AnyValue = msgspec.field(default_factory=AnyValue)


class ScalarValue(msgspec.Struct, gc=False):
    """A span attribute's value, of the kinds the report reads. An array, bytes or
    key-value list is skipped by msgspec without being built (most are attributes the
    report does not read); a read attribute holding one sends its line to the slow decoder."""

    stringValue: str | None = None  # noqa: N815 - OTLP/JSON field names
    intValue: int | None = None  # noqa: N815
    doubleValue: float | None = None  # noqa: N815
    boolValue: bool | None = None  # noqa: N815


class SpanKeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: ScalarValue = msgspec.field(default_factory=ScalarValue)


class Status(msgspec.Struct, frozen=True, gc=False):
    code: int | str = 0


_NO_STATUS: Final = Status()


class Span(msgspec.Struct, gc=False):
    traceId: str | None = None  # noqa: N815
    spanId: str | None = None  # noqa: N815
    parentSpanId: str = ""  # noqa: N815
    name: str = ""
    startTimeUnixNano: int | None = None  # noqa: N815
    endTimeUnixNano: int | None = None  # noqa: N815
    attributes: list[SpanKeyValue] = []
    flags: int = 0
    status: Status = _NO_STATUS
    kind: int | str = 0


class Scope(msgspec.Struct, gc=False):
    name: str = ""


class _NotScalarError(ValidationError):
    """A read attribute's value is not a scalar: the line is decoded the slow way."""


class ScopeSpans(msgspec.Struct, gc=False):
    scope: Scope | None = None
    #: ``scope`` before OTLP named the instrumentation scope.
    instrumentationLibrary: Scope | None = None  # noqa: N815
    spans: list[Span] = []


class Resource(msgspec.Struct, gc=False):
    attributes: list[KeyValue] = []


class ResourceSpans(msgspec.Struct, gc=False):
    #: Left encoded: a process's resource comes again on each line, and is decoded once.
    resource: msgspec.Raw = _NULL
    scopeSpans: list[ScopeSpans] = []  # noqa: N815
    #: ``scopeSpans`` before OTLP named the instrumentation scope.
    instrumentationLibrarySpans: list[ScopeSpans] = []  # noqa: N815


class TracesData(msgspec.Struct, gc=False):
    resourceSpans: list[ResourceSpans] | None = None  # noqa: N815
    #: Tempo's v1 trace API's name for ``resourceSpans``.
    batches: list[ResourceSpans] | None = None


class Document(TracesData, gc=False):
    """A line: a ``TracesData``, or one in Jaeger's (``result``) or Tempo's v2 (``trace``) envelope."""

    result: TracesData | None = None
    trace: TracesData | None = None


class RawKeyValue(msgspec.Struct, gc=False):
    """An attribute whose value is left encoded: scanned by msgspec, built only if read."""

    key: str = ""
    value: msgspec.Raw = _NULL


class LongSpan(Span, gc=False):
    attributes: list[RawKeyValue] = []  # type: ignore[assignment]  # the same field, unbuilt values


class LongScopeSpans(ScopeSpans, gc=False):
    spans: list[LongSpan] = []  # type: ignore[assignment]


class LongResourceSpans(ResourceSpans, gc=False):
    scopeSpans: list[LongScopeSpans] = []  # type: ignore[assignment]  # noqa: N815
    instrumentationLibrarySpans: list[LongScopeSpans] = []  # type: ignore[assignment]  # noqa: N815


class LongTracesData(msgspec.Struct, gc=False):
    resourceSpans: list[LongResourceSpans] | None = None  # noqa: N815
    batches: list[LongResourceSpans] | None = None


class LongDocument(LongTracesData, gc=False):
    """:class:`Document` for spans carrying long values (prompts, completions): an
    attribute's value is decoded only when the report reads it, so a 30 KB prompt is
    scanned but never built as a string."""

    result: LongTracesData | None = None
    trace: LongTracesData | None = None


_decoder = msgspec.json.Decoder(Document, strict=False)
_long_decoder = msgspec.json.Decoder(LongDocument, strict=False)
_value_decoder = msgspec.json.Decoder(ScalarValue, strict=False)
_resource_decoder = msgspec.json.Decoder(Resource | None, strict=False)
decode_untyped: Final[Callable[[bytes], Any]] = msgspec.json.Decoder().decode


def _value(raw: AnyValue) -> Any:
    if raw.stringValue is not None:
        return raw.stringValue
    if raw.intValue is not None:
        return raw.intValue
    if raw.doubleValue is not None:
        return raw.doubleValue
    if raw.boolValue is not None:
        return raw.boolValue
    if raw.arrayValue is not None:
        return tuple(_value(item) for item in raw.arrayValue.values)
    return raw.bytesValue


def _process(encoded: msgspec.Raw, processes: Processes) -> int:
    """The process index of a resource; raises :data:`ValidationError` if it is no resource."""
    last = processes.last_encoded
    if last is not None and last[0] == encoded:
        return last[1]
    text = bytes(encoded)
    cache = processes.encoded
    found = cache.get(text)
    if found is None:
        resource = _resource_decoder.decode(text)
        found = (
            0
            if resource is None
            else process_identity({kv.key: _value(kv.value) for kv in resource.attributes}, processes)
        )
        if len(cache) < MAX_ENCODED_RESOURCES:
            cache[text] = found
    processes.last_encoded = (msgspec.Raw(text), found)  # a copy: the line's buffer is freed
    return found


def _resource_spans(doc: Document) -> list[ResourceSpans] | None:
    """As :func:`otel_overspend.report.otlp_json.resource_spans`: the document's own, else an envelope's."""
    listed = doc.resourceSpans if doc.resourceSpans is not None else doc.batches
    if listed is None:
        for inner in (doc.result, doc.trace):
            if inner is not None:
                listed = inner.resourceSpans if inner.resourceSpans is not None else inner.batches
                if listed is not None:
                    break
    return listed


def decode_line(  # noqa: PLR0915 - one loop over every span of a file, kept inline for speed
    data: bytes,
    keys: frozenset[str],
    processes: Processes,
    bad_span: Callable[[str], None],
    *,
    long_spans: bool = False,
) -> list[SpanRecord] | None:
    """The spans of one line; ``None`` if it holds no traces. Raises
    :data:`DecodeError` (not JSON) or :data:`ValidationError` (not of the expected shape).
    With ``long_spans``, attribute values are decoded only when read (see :class:`LongDocument`)."""
    doc: Any = (_long_decoder if long_spans else _decoder).decode(data)
    listed = doc.resourceSpans  # the collector's, and the usual
    if listed is None:
        listed = _resource_spans(doc)
        if listed is None:
            return None
    # Every resource first: one that is not raises before a span is reported.
    resources = [
        (_process(rs.resource, processes), rs.scopeSpans or rs.instrumentationLibrarySpans) for rs in listed
    ]
    out: list[SpanRecord] = []
    append = out.append
    # Told once the whole line is read: a line sent to the slow decoder is reported there.
    problems: list[str] = []
    bad_span, report = problems.append, bad_span
    last_trace_hex, last_trace_id = "", 0
    last_parent_hex, last_parent_id = "", 0
    for process, scope_spans in resources:
        trace_key = (last_trace_id << 16) | process
        for ss in scope_spans:
            found_scope = ss.scope if ss.scope is not None else ss.instrumentationLibrary
            scope = "" if found_scope is None else found_scope.name
            for sp in ss.spans:
                start_ns, end_ns = sp.startTimeUnixNano, sp.endTimeUnixNano
                if start_ns is None or end_ns is None or sp.traceId is None or sp.spanId is None:
                    missing = [
                        name
                        for name, v in (
                            ("traceId", sp.traceId),
                            ("spanId", sp.spanId),
                            ("startTimeUnixNano", start_ns),
                            ("endTimeUnixNano", end_ns),
                        )
                        if v is None
                    ]
                    bad_span(f"span {sp.name!r} has no {', '.join(missing)}")
                    continue
                trace_hex, span_hex, parent_hex = sp.traceId, sp.spanId, sp.parentSpanId
                try:
                    # Hex, as the collector writes them, inline; anything else the slow way.
                    # A trace's spans mostly come together, and siblings one after another:
                    # a trace's (or a parent's) id is parsed once for them.
                    if trace_hex != last_trace_hex:
                        last_trace_id = (
                            int(trace_hex, 16) if len(trace_hex) == 32 else decode_id(trace_hex, 16)
                        )
                        last_trace_hex = trace_hex
                        trace_key = (last_trace_id << 16) | process
                    span_id = int(span_hex, 16) if len(span_hex) == 16 else decode_id(span_hex, 8)
                    if parent_hex != last_parent_hex:
                        last_parent_id = (
                            (int(parent_hex, 16) if len(parent_hex) == 16 else decode_id(parent_hex, 8))
                            if parent_hex
                            else 0
                        )
                        last_parent_hex = parent_hex
                except ValueError as exc:
                    bad_span(f"span {sp.name!r}: {exc}")
                    continue
                parent_id = last_parent_id
                if not last_trace_id or not span_id:
                    bad_span(f"span {sp.name!r}: id is all zeros")
                    continue
                attrs: dict[str, Any] = {}
                for kv in sp.attributes:
                    key = kv.key
                    if key in keys:
                        value = kv.value
                        if long_spans:
                            value = _value_decoder.decode(value)
                        found: Any = value.stringValue
                        if found is None:
                            found = value.intValue
                            if found is None:
                                found = value.doubleValue
                                if found is None:
                                    found = value.boolValue
                                    if found is None:
                                        raise _NotScalarError(key)
                        attrs[key] = found
                if sp.status.code in _ERROR_CODE_SET:
                    attrs[STATUS_KEY] = STATUS_ERROR
                if sp.kind in SERVER_KINDS:
                    attrs[SPAN_KIND_KEY] = SERVER
                append(
                    _new(
                        SpanRecord,
                        (
                            trace_key,
                            span_id,
                            parent_id,
                            sp.flags & REMOTE_PARENT_MASK == REMOTE_PARENT_MASK,
                            sp.name,
                            attrs,
                            start_ns,
                            end_ns,
                            scope,
                        ),
                    )
                )
    for problem in problems:
        report(problem)
    return out
