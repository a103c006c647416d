"""Spans out of OTLP protobuf: the collector file exporter's ``format: proto`` records.

The same :class:`~otel_overspend.report.otlp_json.SpanRecord` as the JSON reader, from a
serialized ``TracesData`` (wire-identical to ``ExportTraceServiceRequest``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from otel_overspend.calls.conventions import STATUS_ERROR, STATUS_KEY
from otel_overspend.report.otlp_json import (
    PROCESS_KEYS,
    REMOTE_PARENT_MASK,
    SERVER,
    SERVER_KINDS,
    SPAN_KIND_KEY,
    STATUS_CODE_ERROR,
    SpanRecord,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    from otel_overspend.report.otlp_json import Processes

__all__ = ("decode_proto",)


def _value(raw: AnyValue) -> Any:
    kind = raw.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_value(item) for item in raw.array_value.values)
    if kind == "kvlist_value":
        return None
    return getattr(raw, kind)


def _process(resource: Resource, processes: Processes) -> int:
    found = {kv.key: _value(kv.value) for kv in resource.attributes if kv.key in PROCESS_KEYS}
    if not found:
        return 0
    return processes.index(tuple(str(found.get(key)) for key in PROCESS_KEYS))


def decode_proto(
    data: bytes, keys: frozenset[str], processes: Processes, bad_span: Callable[[str], None]
) -> list[SpanRecord]:
    """The spans of one serialized ``TracesData``; raises ``google.protobuf.message.DecodeError``."""
    doc = TracesData.FromString(data)
    out: list[SpanRecord] = []
    for rs in doc.resource_spans:
        process = _process(rs.resource, processes)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for sp in ss.spans:
                if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                    bad_span(f"span {sp.name!r}: trace id or span id missing or of the wrong length")
                    continue
                trace_id = int.from_bytes(sp.trace_id, "big")
                span_id = int.from_bytes(sp.span_id, "big")
                if not trace_id or not span_id:
                    bad_span(f"span {sp.name!r}: id is all zeros")
                    continue
                if not sp.end_time_unix_nano:
                    bad_span(f"span {sp.name!r} has no end time")
                    continue
                attrs = {kv.key: _value(kv.value) for kv in sp.attributes if kv.key in keys}
                if sp.status.code == STATUS_CODE_ERROR:
                    attrs[STATUS_KEY] = STATUS_ERROR
                if sp.kind in SERVER_KINDS:
                    attrs[SPAN_KIND_KEY] = SERVER
                out.append(
                    SpanRecord(
                        (trace_id << 16) | process,
                        span_id,
                        int.from_bytes(sp.parent_span_id, "big") if sp.parent_span_id else 0,
                        sp.flags & REMOTE_PARENT_MASK == REMOTE_PARENT_MASK,
                        sp.name,
                        attrs,
                        sp.start_time_unix_nano,
                        sp.end_time_unix_nano,
                        scope,
                    )
                )
    return out
