"""The protobuf reader against protobuf's own runtime.

Each example is a ``TracesData`` built with the generated classes of ``opentelemetry-proto``
(spans with ids of every length, names, kinds, times, flags, status codes, and attributes of
every ``AnyValue`` kind, some holding 10-50 KB strings), serialized field by field in a
shuffled order with unknown fields between: a concatenation of serialized messages is their
merge, so protobuf's parser reads it as one message. The expected records are computed here
from what protobuf's parser reads, and the reader must give exactly those, and the same
problems. A record cut short or with a byte changed raises :class:`WireError` or reads as
spans, never anything else. The trace ids ``report --jobs`` reads first are those protobuf
reads.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from typing import TYPE_CHECKING, Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    Status,
    TracesData,
)
from report_support import pinned_settings

from otel_overspend.report.files import Problems
from otel_overspend.report.otlp_json import Processes, SpanRecord, attribute_keys, process_identity
from otel_overspend.report.otlp_proto import WireError, decode_proto, trace_ids
from otel_overspend.report.run import build_report

if TYPE_CHECKING:
    from pathlib import Path

KEYS = attribute_keys(pinned_settings())
READ = ("gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "llm.cost.total")
UNREAD = ("gen_ai.prompt.0.content", "input.value", "gen_ai.completion.0.content")
#: Fields no OTLP message has (numbers 100 and 101): a LEN of 3 bytes and a varint.
UNKNOWN = (b"\xa2\x06\x03abc", b"\xa8\x06\x96\x01")

texts = st.text(max_size=12)
long_texts = st.integers(10_000, 50_000).map(lambda n: ('say "yes"\n' * (n // 10 + 1))[:n])


def _scalars() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        texts.map(lambda s: AnyValue(string_value=s)),
        long_texts.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=False).map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=8).map(lambda b: AnyValue(bytes_value=b)),
        st.just(AnyValue()),
    )


any_values = st.one_of(
    _scalars(),
    st.lists(_scalars(), max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
    st.just(AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="a", value=AnyValue(int_value=1))]))),
)
attributes = st.lists(
    st.builds(lambda k, v: KeyValue(key=k, value=v), st.sampled_from(READ + UNREAD) | texts, any_values),
    max_size=6,
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` nine times in ten, else ``odd``."""
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else usual)


ids = mostly(st.binary(min_size=16, max_size=16), st.binary(max_size=17) | st.just(b"\0" * 16))
span_ids = mostly(st.binary(min_size=8, max_size=8), st.binary(max_size=9) | st.just(b"\0" * 8))
spans = st.builds(
    Span,
    trace_id=ids,
    span_id=span_ids,
    parent_span_id=st.one_of(st.just(b""), st.binary(min_size=8, max_size=8)),
    name=texts,
    kind=st.integers(0, 5),
    start_time_unix_nano=st.integers(0, 2**64 - 1),
    end_time_unix_nano=mostly(st.integers(1, 2**64 - 1), st.just(0)),
    flags=st.sampled_from([0, 0x100, 0x300, 0x301, 2**32 - 1]),
    attributes=attributes,
    status=st.builds(Status, code=st.integers(0, 2), message=texts),
    events=st.lists(st.builds(Span.Event, name=texts, attributes=attributes), max_size=1),
)
resources = st.builds(
    Resource,
    attributes=st.lists(
        st.builds(
            lambda k, v: KeyValue(key=k, value=AnyValue(string_value=v)),
            st.sampled_from(("service.name", "host.name", "process.pid", "deployment.environment")),
            st.sampled_from(("api", "worker", "")),
        ),
        max_size=3,
    ),
)
scope_spans = st.builds(
    ScopeSpans, scope=st.builds(InstrumentationScope, name=texts), spans=st.lists(spans, max_size=4)
)
traces_data = st.builds(
    TracesData,
    resource_spans=st.lists(
        st.builds(ResourceSpans, resource=resources, scope_spans=st.lists(scope_spans, max_size=2)),
        max_size=3,
    ),
)


def _parts(message: Any, rng: random.Random) -> bytes:
    """``message`` serialized one field (one element of a repeated field) at a time, the
    fields interleaved at random (a repeated field's elements in their order) with unknown
    fields between them; nested messages likewise."""
    fields: list[list[bytes]] = [[unknown] for unknown in rng.sample(UNKNOWN, rng.randint(0, 2))]
    for field, value in message.ListFields():
        parts: list[bytes] = []
        for item in value if _repeated(field) else [value]:
            if field.message_type is not None:
                inner = _parts(item, rng)
                parts.append(_varint((field.number << 3) | 2) + _varint(len(inner)) + inner)
            else:
                single = type(message)()
                setattr(single, field.name, item)
                parts.append(single.SerializeToString())
        fields.append(parts)
    out: list[bytes] = []
    while fields:
        parts = rng.choice(fields)
        out.append(parts.pop(0))
        if not parts:
            fields.remove(parts)
    return b"".join(out)


def _repeated(field: Any) -> bool:
    # ``label`` is gone from protobuf 7's descriptors; ``is_repeated`` is not in protobuf 5's.
    return bool(field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _value(raw: AnyValue) -> Any:
    kind = raw.WhichOneof("value")
    if kind is None or kind == "kvlist_value":
        return None
    if kind == "array_value":
        return tuple(_value(item) for item in raw.array_value.values)
    return getattr(raw, kind)


def expected(doc: TracesData, processes: Processes) -> tuple[list[SpanRecord], list[str]]:
    """The records, and the problems, protobuf's own reading of ``doc`` gives."""
    out: list[SpanRecord] = []
    problems: list[str] = []
    for rs in doc.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        process = process_identity(resource, processes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                if len(sp.trace_id) != 16 or len(sp.span_id) != 8:
                    problems.append(f"span {sp.name!r}: trace id or span id missing or of the wrong length")
                elif not int.from_bytes(sp.trace_id, "big") or not int.from_bytes(sp.span_id, "big"):
                    problems.append(f"span {sp.name!r}: id is all zeros")
                elif not sp.end_time_unix_nano:
                    problems.append(f"span {sp.name!r} has no end time")
                else:
                    attrs = {kv.key: _value(kv.value) for kv in sp.attributes if kv.key in KEYS}
                    if sp.status.code == Status.STATUS_CODE_ERROR:
                        attrs["otel.status_code"] = "ERROR"
                    if sp.kind == Span.SPAN_KIND_SERVER:
                        attrs["span.kind"] = "server"
                    out.append(
                        SpanRecord(
                            (int.from_bytes(sp.trace_id, "big") << 16) | process,
                            int.from_bytes(sp.span_id, "big"),
                            int.from_bytes(sp.parent_span_id, "big"),
                            sp.flags & 0x300 == 0x300,
                            sp.name,
                            attrs,
                            sp.start_time_unix_nano,
                            sp.end_time_unix_nano,
                            ss.scope.name,
                        )
                    )
    return out, problems


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(doc=traces_data, seed=st.integers(0, 2**32))
def test_any_traces_data_reads_as_protobuf_reads_it(doc: TracesData, seed: int) -> None:
    data = _parts(doc, random.Random(seed))
    parsed = TracesData.FromString(data)
    parsed.DiscardUnknownFields()
    assert parsed == doc  # the shuffled serialization is the same message
    want, want_problems = expected(parsed, Processes())
    problems: list[str] = []
    got = decode_proto(data, KEYS, Processes(), problems.append)
    assert got == want
    assert problems == want_problems
    # report --jobs's first pass: every trace id of 16 bytes, whatever else is wrong with its span.
    ids = {
        int.from_bytes(sp.trace_id, "big")
        for rs in parsed.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
        if len(sp.trace_id) == 16
    }
    assert trace_ids(data) == ids
    # ... read where it lies in a block of records, into the ids found before it.
    before = {7}
    block = b"\xff" * 5 + data + b"\x0a\x10" + bytes(16)
    assert trace_ids(block, 5, 5 + len(data), before) is before
    assert before == ids | {7}


def _one_record() -> bytes:
    span = Span(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        name="chat acme-frontier",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes=[
            KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="acme-frontier")),
            KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=300)),
            KeyValue(key="gen_ai.prompt.0.content", value=AnyValue(string_value="x" * 300)),
        ],
    )
    rs = ResourceSpans(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="api"))]),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="s"), spans=[span])],
    )
    data: bytes = TracesData(resource_spans=[rs]).SerializeToString()
    return data


def _outcome(data: bytes) -> str:
    try:
        decoded = decode_proto(data, KEYS, Processes(), lambda _: None)
    except WireError:
        return "error"
    assert all(isinstance(record, SpanRecord) for record in decoded)
    return "spans"


def test_every_cut_of_a_record_is_a_wire_error_or_spans() -> None:
    data = _one_record()
    outcomes = Counter(_outcome(data[:cut]) for cut in range(len(data)))
    # Cut inside a field, the record is an error; cut between the top-level fields (only at
    # 0 here: one resource_spans), it is a record with no spans.
    assert outcomes == {"error": len(data) - 1, "spans": 1}


@settings(max_examples=300, deadline=None)
@given(where=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_a_changed_byte_is_a_wire_error_or_spans(where: int, byte: int) -> None:
    data = bytearray(_one_record())
    data[where % len(data)] = byte
    assert _outcome(bytes(data)) in {"error", "spans"}


def _framed(*records: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(r)) + r for r in records)


def _resource_spans_of_size(size: int) -> bytes:
    """A ``TracesData`` whose one ``resource_spans`` field is ``size`` bytes long: one
    valid span and a ``schema_url`` to pad."""
    rs = ResourceSpans(
        scope_spans=[
            ScopeSpans(
                spans=[
                    Span(
                        trace_id=bytes(range(1, 17)),
                        span_id=bytes(range(1, 9)),
                        name="chat",
                        end_time_unix_nano=5,
                        attributes=[
                            KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="acme-frontier"))
                        ],
                    )
                ]
            )
        ]
    )
    rs.schema_url = "u" * (size - rs.ByteSize() - 2)
    assert rs.ByteSize() == size
    data: bytes = TracesData(resource_spans=[rs]).SerializeToString()
    return data


def test_a_record_that_starts_like_json_is_read_as_the_protobuf_it_is(tmp_path: Path) -> None:
    # 0x0a (a newline) and a length of 123 ('{'): the first two bytes of this TracesData.
    data = _resource_spans_of_size(123)
    assert data[:2] == b"\n{"
    json_record = b'\n{"resourceSpans":[]}'
    path = tmp_path / "traces.pb"
    path.write_bytes(_framed(data, json_record, data))
    report = build_report([path], settings=pinned_settings(), problems=Problems(shown=0))
    assert (report.inputs.records, report.inputs.spans, report.inputs.skipped) == (3, 2, {})


@pytest.mark.parametrize("size", [122, 123, 124])
def test_records_of_any_size_are_read(tmp_path: Path, size: int) -> None:
    path = tmp_path / "traces.pb"
    path.write_bytes(_framed(_resource_spans_of_size(size)))
    report = build_report([path], settings=pinned_settings(), problems=Problems(shown=0))
    assert (report.inputs.spans, report.inputs.skipped) == (1, {})


@pytest.mark.parametrize("last_id", [bytes(range(20, 36)), b"short"])
def test_of_a_trace_id_given_twice_the_last_counts_in_both_passes(last_id: bytes) -> None:
    # Two serialized spans one after the other are one span to protobuf (merged), whose
    # trace id is the second's: the first pass of --jobs must find the id the decoder keeps.
    first = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="chat", end_time_unix_nano=5)
    span = first.SerializeToString() + b"\x0a" + _varint(len(last_id)) + last_id
    scope_spans = b"\x12" + _varint(len(span)) + span
    resource_spans = b"\x12" + _varint(len(scope_spans)) + scope_spans
    data = b"\x0a" + _varint(len(resource_spans)) + resource_spans
    assert TracesData.FromString(data).resource_spans[0].scope_spans[0].spans[0].trace_id == last_id
    problems: list[str] = []
    spans = decode_proto(data, KEYS, Processes(), problems.append)
    if len(last_id) == 16:
        assert trace_ids(data) == {int.from_bytes(last_id, "big")}
        assert [s.trace_key >> 16 for s in spans] == [int.from_bytes(last_id, "big")]
    else:
        assert trace_ids(data) == set()
        assert (spans, len(problems)) == ([], 1)
