"""Spans out of OTLP protobuf: the collector file exporter's ``format: proto`` records.

The same :class:`~otel_overspend.report.otlp_json.SpanRecord` as the JSON reader, from a
serialized ``TracesData`` (wire-identical to ``ExportTraceServiceRequest``), read straight
from the protobuf wire format. Every field is length-prefixed or of a fixed size, so what
the report does not read (a prompt, a completion, events, links) is stepped over by its
length, never looked at: a span carrying 50 KB of prompt costs what a span without does.
Field numbers are those of ``opentelemetry/proto/trace/v1/trace.proto`` and
``common/v1/common.proto``.

As the protobuf runtimes do, fields may come in any order, an unknown field (or a known one
of an unexpected wire type) is skipped, and of a field given twice the last counts. A
record that is not protobuf (cut short, a length beyond its message, an id or a read string
that is not UTF-8) raises :class:`WireError`, and none of its spans is kept.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.calls.conventions import STATUS_ERROR, STATUS_KEY
from otel_overspend.report.otlp_json import (
    MAX_ENCODED_RESOURCES,
    PROCESS_KEYS,
    REMOTE_PARENT_MASK,
    SERVER,
    SPAN_KIND_KEY,
    STATUS_CODE_ERROR,
    SpanRecord,
    process_identity,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.report.otlp_json import Processes

__all__ = ("WireError", "decode_proto", "is_traces_data", "trace_ids")

# Wire types.
_VARINT: Final = 0
_FIXED64: Final = 1
_LEN: Final = 2
_FIXED32: Final = 5
#: ``Span.SpanKind.SPAN_KIND_SERVER``.
_KIND_SERVER: Final = 2
_SIGN_BIT: Final = 1 << 63
_TWO_TO_64: Final = 1 << 64
_unpack_double = struct.Struct("<d").unpack_from
_PROCESS_KEYS: Final = frozenset(PROCESS_KEYS)
_new = tuple.__new__
#: Attribute names as written -> as text: a file repeats a few hundred names, each decoded
#: once (and its hash, for the look-up in the keys read, computed once).
_KEY_NAMES: Final[dict[bytes, str]] = {}
_MAX_KEY_NAMES: Final = 4_096


class WireError(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("a varint longer than ten bytes")
    raise WireError("cut short in a varint")


def _skip(data: bytes, pos: int, end: int, wire: int) -> int:
    """The position after a field of wire type ``wire`` whose value starts at ``pos``."""
    if wire == _VARINT:
        return _varint(data, pos, end)[1]
    if wire == _LEN:
        return _length(data, pos, end)[1]
    if wire == _FIXED64:
        pos += 8
    elif wire == _FIXED32:
        pos += 4
    else:
        raise WireError(f"wire type {wire} (groups are not OTLP)")
    if pos > end:
        raise WireError("a field runs past the end of its message")
    return pos


def _tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The field tag at ``pos`` and the position after it."""
    tag = data[pos]
    if tag >= 0x80:  # a field number from 16 up
        return _varint(data, pos, end)
    return tag, pos + 1


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The start and the end of the length-prefixed value at ``pos``."""
    size = data[pos] if pos < end else 0x80
    if size < 0x80:  # under 128 bytes: a key, an id, a name
        pos += 1
    else:
        size, pos = _varint(data, pos, end)
    stop = pos + size
    if stop > end:
        raise WireError("a field runs past the end of its message")
    return pos, stop


def _text(data: bytes, start: int, stop: int) -> str:
    try:
        return data[start:stop].decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"a string that is not UTF-8: {exc}") from None


def _fields(data: bytes, pos: int, end: int, wanted: int) -> list[tuple[int, int]]:
    """Where each length-prefixed field number ``wanted`` of a message is; the others skipped."""
    found: list[tuple[int, int]] = []
    while pos < end:
        tag, pos = _varint(data, pos, end)
        if tag == (wanted << 3) | _LEN:
            start, pos = _length(data, pos, end)
            found.append((start, pos))
        else:
            pos = _skip(data, pos, end, tag & 7)
    return found


def _value(data: bytes, pos: int, end: int) -> Any:
    """An ``AnyValue``: its string, bool, int, double, bytes or array (a tuple); ``None``
    for a key-value list or nothing."""
    found: Any = None
    while pos < end:
        tag, pos = _varint(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN and field in {1, 5, 7}:
            start, pos = _length(data, pos, end)
            if field == 1:
                found = _text(data, start, pos)
            elif field == 5:
                found = _array(data, start, pos)
            else:
                found = data[start:pos]
        elif wire == _VARINT and field == 2:
            number, pos = _varint(data, pos, end)
            found = number != 0
        elif wire == _VARINT and field == 3:
            number, pos = _varint(data, pos, end)
            found = number - _TWO_TO_64 if number & _SIGN_BIT else number  # int64, two's complement
        elif wire == _FIXED64 and field == 4:
            if pos + 8 > end:
                raise WireError("cut short in a double")
            found = _unpack_double(data, pos)[0]
            pos += 8
        else:
            if field == 6:
                found = None
            pos = _skip(data, pos, end, wire)
    return found


def _array(data: bytes, pos: int, end: int) -> tuple[Any, ...]:
    return tuple([_value(data, start, stop) for start, stop in _fields(data, pos, end, 1)])


def _attribute(data: bytes, pos: int, end: int, keys: frozenset[str], attrs: dict[str, Any]) -> None:
    """Puts a ``KeyValue`` into ``attrs`` if its key is one of ``keys``."""
    key = ""
    value_start = value_stop = -1
    while pos < end:
        tag = data[pos]
        if tag == (1 << 3) | _LEN:
            start, pos = _length(data, pos + 1, end)
            raw = data[start:pos]
            found = _KEY_NAMES.get(raw)
            if found is None:
                found = _text(data, start, pos)
                if len(_KEY_NAMES) < _MAX_KEY_NAMES:
                    _KEY_NAMES[raw] = found
            key = found
        elif tag == (2 << 3) | _LEN:
            value_start, pos = _length(data, pos + 1, end)
            value_stop = pos
        else:
            tag, pos = _varint(data, pos, end)
            pos = _skip(data, pos, end, tag & 7)
    if key in keys:
        attrs[key] = _value(data, value_start, value_stop) if value_start >= 0 else None


def _process(data: bytes, start: int, stop: int, processes: Processes) -> int:
    """The process index of the ``Resource`` in ``data[start:stop]``."""
    encoded = data[start:stop]
    cache = processes.encoded
    found = cache.get(encoded)
    if found is None:
        attrs: dict[str, Any] = {}
        for begin, finish in _fields(data, start, stop, 1):
            _attribute(data, begin, finish, _PROCESS_KEYS, attrs)
        found = process_identity(attrs, processes)
        if len(cache) < MAX_ENCODED_RESOURCES:
            cache[encoded] = found
    return found


def _status_code(data: bytes, pos: int, end: int) -> int:
    code = 0
    while pos < end:
        tag, pos = _varint(data, pos, end)
        if tag == (3 << 3) | _VARINT:
            code, pos = _varint(data, pos, end)
        else:
            pos = _skip(data, pos, end, tag & 7)
    return code


def _fixed64(data: bytes, pos: int, end: int) -> int:
    if pos + 8 > end:
        raise WireError("cut short in a fixed64")
    # Two halves, each a small int: no bytes object, no call.
    low = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16 | data[pos + 3] << 24
    high = data[pos + 4] | data[pos + 5] << 8 | data[pos + 6] << 16 | data[pos + 7] << 24
    return low | high << 32


def _span(
    data: bytes,
    pos: int,
    end: int,
    *,
    process: int,
    scope: str,
    keys: frozenset[str],
    problems: list[str],
) -> SpanRecord | None:
    """The ``Span`` in ``data[pos:end]``; ``None``, with a problem told, if it cannot be replayed."""
    trace = span = parent = b""
    name = ""
    kind = flags = code = 0
    start_ns = end_ns = 0
    attrs: dict[str, Any] = {}
    while pos < end:
        tag, pos = _tag(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if wire == _LEN:
            start, pos = _length(data, pos, end)
            if field == 9:
                _attribute(data, start, pos, keys, attrs)
            elif field == 1:
                trace = data[start:pos]
            elif field == 2:
                span = data[start:pos]
            elif field == 4:
                parent = data[start:pos]
            elif field == 5:
                name = _text(data, start, pos)
            elif field == 15:
                code = _status_code(data, start, pos)
        elif wire == _FIXED64 and (field in {7, 8}):
            if field == 7:
                start_ns = _fixed64(data, pos, end)
            else:
                end_ns = _fixed64(data, pos, end)
            pos += 8
        elif wire == _VARINT and field == 6:
            kind, pos = _varint(data, pos, end)
        elif wire == _FIXED32 and field == 16:
            if pos + 4 > end:
                raise WireError("cut short in a fixed32")
            flags = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            pos = _skip(data, pos, end, wire)
    if len(trace) != 16 or len(span) != 8:
        problems.append(f"span {name!r}: trace id or span id missing or of the wrong length")
        return None
    trace_id = int.from_bytes(trace, "big")
    span_id = int.from_bytes(span, "big")
    if not trace_id or not span_id:
        problems.append(f"span {name!r}: id is all zeros")
        return None
    if not end_ns:
        problems.append(f"span {name!r} has no end time")
        return None
    if code == STATUS_CODE_ERROR:
        attrs[STATUS_KEY] = STATUS_ERROR
    if kind == _KIND_SERVER:
        attrs[SPAN_KIND_KEY] = SERVER
    # tuple.__new__: the NamedTuple's own __new__ is Python, and costs a frame a span.
    return _new(
        SpanRecord,
        (
            (trace_id << 16) | process,
            span_id,
            int.from_bytes(parent, "big"),
            flags & REMOTE_PARENT_MASK == REMOTE_PARENT_MASK,
            name,
            attrs,
            start_ns,
            end_ns,
            scope,
        ),
    )


def _scope_spans(
    data: bytes,
    pos: int,
    end: int,
    *,
    process: int,
    keys: frozenset[str],
    out: list[SpanRecord],
    problems: list[str],
) -> None:
    """The spans of a ``ScopeSpans``, named for its scope wherever it comes in the message."""
    scopes = _fields(data, pos, end, 1)
    scope = ""
    if scopes:
        start, stop = scopes[-1]
        names = _fields(data, start, stop, 1)
        if names:
            start, stop = names[-1]
            scope = _text(data, start, stop)
    for start, stop in _fields(data, pos, end, 2):
        record = _span(data, start, stop, process=process, scope=scope, keys=keys, problems=problems)
        if record is not None:
            out.append(record)


def _resource_spans(
    data: bytes,
    pos: int,
    end: int,
    *,
    keys: frozenset[str],
    processes: Processes,
    out: list[SpanRecord],
    problems: list[str],
) -> None:
    resources = _fields(data, pos, end, 1)
    process = 0
    if resources:
        start, stop = resources[-1]
        process = _process(data, start, stop, processes)
    for start, stop in _fields(data, pos, end, 2):
        _scope_spans(data, start, stop, process=process, keys=keys, out=out, problems=problems)


def decode_proto(
    data: bytes,
    keys: frozenset[str],
    processes: Processes,
    bad_span: Callable[[str], None],
    *,
    start: int = 0,
    end: int = -1,
) -> list[SpanRecord]:
    """The spans of the serialized ``TracesData`` in ``data[start:end]`` (to its end if
    ``end`` is negative) whose attributes are among ``keys``; raises :class:`WireError` if it
    is not one."""
    out: list[SpanRecord] = []
    problems: list[str] = []
    for rs_start, rs_end in _fields(data, start, len(data) if end < 0 else end, 1):
        _resource_spans(data, rs_start, rs_end, keys=keys, processes=processes, out=out, problems=problems)
    for problem in problems:
        bad_span(problem)
    return out


def is_traces_data(data: bytes, start: int = 0, end: int = -1) -> bool:
    """``data[start:end]`` (to its end if ``end`` is negative) is a chain of
    ``resource_spans`` fields (a tag and a length each) that ends where it does: the outline
    of a ``TracesData``, not looked into."""
    pos = start
    if end < 0:
        end = len(data)
    try:
        while pos < end:
            tag, pos = _varint(data, pos, end)
            if tag != (1 << 3) | _LEN:
                return False
            pos = _length(data, pos, end)[1]
    except WireError:
        return False
    return True


def trace_ids(data: bytes, start: int = 0, end: int = -1, into: set[int] | None = None) -> set[int]:
    """The trace ids of the spans of the serialized ``TracesData`` in ``data[start:end]``
    (to its end if ``end`` is negative), added to ``into`` (a new set if ``None``), which
    is returned; everything else is stepped over (``report --jobs``'s first pass). Raises
    :class:`WireError` if it is not a ``TracesData``, when ``into`` may hold some of them."""
    if end < 0:
        end = len(data)
    ids: set[int] = set() if into is None else into
    for rs_start, rs_end in _fields(data, start, end, 1):
        for ss_start, ss_end in _fields(data, rs_start, rs_end, 2):
            pos = ss_start
            while pos < ss_end:  # the spans, stepped through here: no list of their places
                tag, pos = _tag(data, pos, ss_end)
                if tag != (2 << 3) | _LEN:
                    pos = _skip(data, pos, ss_end, tag & 7)
                    continue
                span_start, pos = _length(data, pos, ss_end)
                trace = _trace_id(data, span_start, pos)
                if trace >= 0:
                    ids.add(trace)
    return ids


def _trace_id(data: bytes, pos: int, end: int) -> int:
    """The trace id of the ``Span`` in ``data[pos:end]`` (the last given, as :func:`_span`
    reads it); -1 if it has none of 16 bytes. Its other fields are stepped over."""
    found = -1
    while pos < end:
        tag, pos = _tag(data, pos, end)
        if tag == (1 << 3) | _LEN:
            start, pos = _length(data, pos, end)
            found = int.from_bytes(data[start:pos], "big") if pos - start == 16 else -1
        else:
            pos = _skip(data, pos, end, tag & 7)
    return found
