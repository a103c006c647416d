"""The msgspec decoder of OTLP/JSON lines gives what the standard library's does.

Each line is decoded both ways (``line_decoder`` with msgspec, and ``decode_request`` on
``json.loads``): the same spans, the same process for each, the same spans reported bad;
and by msgspec both ways again: every attribute value built, or only those read.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from otel_overspend import Settings
from otel_overspend.report.otlp_json import (
    LONG_SPAN_BYTES,
    MAX_ENCODED_RESOURCES,
    Processes,
    SpanRecord,
    attribute_keys,
    decode_request,
    line_decoder,
)

from conftest import require_module


@pytest.fixture(autouse=True)
def _msgspec() -> None:
    require_module("msgspec")  # the decoder under test against the standard library's


KEYS = attribute_keys(Settings(serve_metrics=False))
TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"


def _resource(service: str) -> dict[str, Any]:
    return {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}


def _span(span_id: str, parent: str = ROOT, *, trace: str = TRACE, **extra: Any) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": f"chat {span_id}",
        "startTimeUnixNano": "1800000000000000000",
        "endTimeUnixNano": "1800000001000000000",
        "attributes": [
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 7}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "acme-frontier-1"}},
            {"key": "gen_ai.usage.cost", "value": {"doubleValue": "NaN"}},
            {"key": "llm.request.type", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
            {"key": "not.read", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}},
        ],
        "flags": 0x300,
        **extra,
    }


def _line(*resource_spans: tuple[Any, list[dict[str, Any]]]) -> bytes:
    entries = [
        {"scopeSpans": [{"scope": {"name": "s"}, "spans": spans}]}
        | ({} if resource is _MISSING else {"resource": resource})
        for resource, spans in resource_spans
    ]
    return json.dumps({"resourceSpans": entries}).encode()


_MISSING = object()


def _fast(lines: tuple[bytes, ...], *, long_spans: bool | None) -> tuple[list[SpanRecord], list[str]]:
    spans: list[SpanRecord] = []
    bad: list[str] = []
    decode = line_decoder(KEYS, Processes(), long_spans=long_spans)
    for line in lines:
        spans += decode(line, bad.append) or []
    return spans, bad


def _both(*lines: bytes) -> tuple[list[SpanRecord], list[str], list[SpanRecord], list[str]]:
    """(spans, bad spans) of the lines decoded by msgspec, then by the standard library. The
    msgspec decoder gives the same whether it builds every attribute value or only those read
    (as it does for spans with long values)."""
    fast, fast_bad = _fast(lines, long_spans=False)
    assert _nan_free(_fast(lines, long_spans=True)[0]) == _nan_free(fast)
    assert _fast(lines, long_spans=True)[1] == fast_bad
    slow: list[SpanRecord] = []
    slow_bad: list[str] = []
    processes = Processes()
    for line in lines:
        slow += decode_request(json.loads(line), KEYS, processes, slow_bad.append) or []
    return fast, fast_bad, slow, slow_bad


def _nan_free(spans: list[SpanRecord]) -> list[SpanRecord]:
    return [s._replace(attrs={k: v for k, v in s.attrs.items() if v == v}) for s in spans]  # noqa: PLR0124 - NaN


def test_processes_ids_and_values_as_the_standard_library() -> None:
    lines = [
        _line(
            (_resource("a"), [_span("00f067aa0ba902b7"), _span("00f067aa0ba902b8")]),
            (_MISSING, [_span("00f067aa0ba902b9", "")]),
            (None, [_span("AAAAAAAAAAE=", "AAAAAAAAAAI=", trace="AAAAAAAAAAAAAAAAAAAAAQ==")]),
            (_resource("b"), [_span("00f067aa0ba902ba")]),
        ),
        _line(
            (_resource("b"), [_span("00f067aa0ba902bb")]),
            ({}, [_span("00f067aa0ba902bc")]),
            (_resource("a"), [_span("00f067aa0ba902bd")]),
        ),
    ]
    fast, fast_bad, slow, slow_bad = _both(*lines)
    assert len(fast) == 8
    assert _nan_free(fast) == _nan_free(slow)
    assert fast_bad == slow_bad == []
    # Services "a" and "b" are processes 1 and 2, on every line; a span without one is 0.
    assert [s.trace_key & 0xFFFF for s in fast] == [1, 1, 0, 0, 2, 2, 0, 1]
    assert fast[0].attrs["gen_ai.usage.input_tokens"] == 100
    assert fast[0].attrs["llm.request.type"] == ("x",)


@pytest.mark.parametrize("resource", [5, {"attributes": "none"}, {"attributes": [{"key": 1}]}])
def test_a_line_with_a_bad_resource_is_decoded_the_slow_way(resource: Any) -> None:
    # The bad span comes before the bad resource: it is reported once, not twice.
    line = _line(
        (_resource("a"), [_span("0000000000000000"), _span("00f067aa0ba902b7")]),
        (resource, [_span("00f067aa0ba902b8")]),
    )
    fast, fast_bad, slow, slow_bad = _both(line)
    assert fast_bad == slow_bad == ["span 'chat 0000000000000000': id is all zeros"]
    assert _nan_free(fast) == _nan_free(slow)
    assert len(fast) == 2


def test_resources_remembered_are_bounded() -> None:
    processes = Processes()
    decode = line_decoder(KEYS, processes)
    for i in range(MAX_ENCODED_RESOURCES + 5):
        decode(_line((_resource(f"svc-{i}"), [_span("00f067aa0ba902b7")])), pytest.fail)
    assert len(processes.encoded) == MAX_ENCODED_RESOURCES
    spans = decode(
        _line((_resource(f"svc-{MAX_ENCODED_RESOURCES + 2}"), [_span("00f067aa0ba902b7")])), pytest.fail
    )
    assert spans is not None
    assert spans[0].trace_key & 0xFFFF == MAX_ENCODED_RESOURCES + 3  # svc-0 is process 1


def _scalar_span(span_id: str) -> dict[str, Any]:
    span = _span(span_id)
    span["attributes"] = [kv for kv in span["attributes"] if "arrayValue" not in kv["value"]]
    return span


def test_a_read_attribute_that_is_no_scalar_sends_its_line_the_slow_way_and_reports_once() -> None:
    # A bad span, then a span whose read attribute is an array: the fast decoder gives the
    # line up after the bad span, and the bad span is reported by the slow decoder only.
    mixed = _line((_resource("a"), [_scalar_span("0000000000000000"), _span("00f067aa0ba902b7")]))
    scalar = _line((_resource("a"), [_scalar_span("0000000000000000"), _scalar_span("00f067aa0ba902b8")]))
    fast, fast_bad, slow, slow_bad = _both(mixed, scalar)
    zeros = "span 'chat 0000000000000000': id is all zeros"
    assert fast_bad == slow_bad == [zeros, zeros]
    assert _nan_free(fast) == _nan_free(slow)
    assert [s.attrs.get("llm.request.type") for s in fast] == [("x",), None]
    assert fast[1].attrs["gen_ai.usage.input_tokens"] == 100


class _Counting:
    """A decoder that counts the lines it decodes."""

    def __init__(self, decoder: Any) -> None:
        self.decoder, self.lines = decoder, 0

    def decode(self, data: bytes) -> Any:
        self.lines += 1
        return self.decoder.decode(data)


def test_spans_with_long_values_give_what_short_ones_do_across_the_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Short spans, then spans with 20 KB prompts (the decoder leaves values encoded once
    # the average passes LONG_SPAN_BYTES), then short again, some with bad values.
    prompt = {"key": "gen_ai.prompt.0.content", "value": {"stringValue": 'say \\"yes\\"\n' * 2_000}}
    lines: list[bytes] = []
    for i in range(60):
        span = _span(f"{i + 1:016x}")
        # Without the array under a read key that sends every line of _span to the slow decoder.
        span["attributes"] = [kv for kv in span["attributes"] if kv["key"] != "llm.request.type"]
        if 10 <= i < 40:
            span["attributes"].append(prompt)
        if i % 7 == 0:
            span["attributes"].append({"key": "gen_ai.request.model", "value": {"arrayValue": {}}})
        lines.append(_line((_resource("a"), [span])))
    assert sum(map(len, lines[10:40])) / 30 > LONG_SPAN_BYTES
    from otel_overspend.report import otlp_msgspec

    long_decoder = _Counting(otlp_msgspec._long_decoder)
    monkeypatch.setattr(otlp_msgspec, "_long_decoder", long_decoder)
    _fast(tuple(lines[:10] + lines[40:]), long_spans=None)
    assert long_decoder.lines == 0  # short spans only: every value built
    adaptive, adaptive_bad = _fast(tuple(lines), long_spans=None)
    # The average counts the lines the fast decoder read: not those with the bad value (0,
    # 7, 14, ...), which go to the slow one. Its 16th span is line 18's; from line 19 on the
    # average (over LONG_SPAN_BYTES since line 10) has the long decoder try every line.
    assert long_decoder.lines == 60 - 19
    built, built_bad = _fast(tuple(lines), long_spans=False)
    assert len(adaptive) == 60
    assert (_nan_free(adaptive), adaptive_bad) == (_nan_free(built), built_bad)
    slow: list[SpanRecord] = []
    processes = Processes()
    for line in lines:
        slow += decode_request(json.loads(line), KEYS, processes, lambda _: None) or []
    assert _nan_free(adaptive) == _nan_free(slow)
