"""The trace APIs' answers read as the collector's file of the same spans.

One trace per document, as each API answers (shapes checked against the sources):

- Jaeger v2, ``GET /api/v3/traces/{id}``: ``{"result": TracesData}``, hex ids, enums as
  numbers (jaeger ``cmd/query/app/apiv3/http_gateway.go``, ``snapshots/GetTrace.json``);
  before 1.54 the same envelope had base64 ids (grpc-gateway's ``jsonpb``), before 1.50
  ``instrumentationLibrarySpans``.
- Tempo, ``GET /api/traces/{id}``: ``{"batches": [...]}`` (``tempopb.MarshalToJSONV1``);
  ``GET /api/v2/traces/{id}``: ``{"trace": {"resourceSpans": [...]}, "metrics": ...}``;
  ``tempo-cli query api trace-id``: ``{"resourceSpans": [...]}``. Ids are base64 (gogo
  ``jsonpb``, as ``docs/.../pushing-spans-with-http.md`` shows), enums by name; before 2.0
  Tempo wrote ``instrumentationLibrarySpans``.

The base64 documents are the SDK's own OTLP encoding printed by ``json_format`` (what
protobuf's JSON printers write); the hex ones are the collector's (``collector_json``).
Every shape, saved in every way people save them (one a line, appended without newlines,
pretty-printed, gathered in an array, a file each, gzipped), must give the figures of the
collector file, which are also worked out by hand (``COST_USD``), with either decoder.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type hints
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from report_support import collector_json, export_to, seed_requests

import otel_overspend.report as report_package
from otel_overspend import Settings
from otel_overspend.report import files as trace_files
from otel_overspend.report.files import Problems, find_files
from otel_overspend.report.otlp_json import (
    Processes,
    SpanRecord,
    attribute_keys,
    decode_request,
    line_decoder,
)
from otel_overspend.report.run import build_report

from conftest import make_pipeline, require_module

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan

    from otel_overspend.report.run import Report

SETTINGS = Settings(
    serve_metrics=False, model_tiers={"acme-frontier-*": "frontier"}, use_genai_prices=False, stamp_spans=True
)
REQUESTS = 24
#: The four-step fixture of report_support.SEED on a frontier model at $3 / $15 per 1M tokens:
#: (200 + 12,000 + 3,500 + 4,000) * 3e-6 + (50 + 200 + 400 + 100) * 15e-6 = $0.07035 a request.
COST_USD = REQUESTS * 0.07035
Doc = dict[str, Any]


@dataclass(frozen=True)
class Seed:
    """The seed requests' spans: all (in the order they ended), by trace, and the report on
    the collector file the file exporter would have written of them (7 spans an export)."""

    spans: list[ReadableSpan]
    traces: list[list[ReadableSpan]]
    collector_report: Report


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    p = make_pipeline(SETTINGS)
    memory = InMemorySpanExporter()
    export_to(p, memory)
    seed_requests(p.tracer, REQUESTS)
    p.provider.shutdown()
    spans = list(memory.get_finished_spans())
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span)
    assert len(by_trace) == REQUESTS
    path = tmp_path_factory.mktemp("collector") / "traces.json"
    path.write_bytes(b"".join(collector_json(spans[i : i + 7]) + b"\n" for i in range(0, len(spans), 7)))
    return Seed(spans, list(by_trace.values()), report_on(path)[0])


def use_decoder(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode JSON with msgspec (the 'report' extra) or, for "json", the standard library."""
    if name == "json":
        # Both: once imported, 'from otel_overspend.report import otlp_msgspec' finds the
        # package's attribute and never looks in sys.modules.
        monkeypatch.setitem(sys.modules, "otel_overspend.report.otlp_msgspec", None)
        monkeypatch.delattr(report_package, "otlp_msgspec", raising=False)
    else:
        require_module("msgspec")


def report_on(*paths: Path) -> tuple[Report, str]:
    stream = io.StringIO()
    report = build_report(list(find_files(paths)), settings=SETTINGS, problems=Problems(stream=stream))
    return report, stream.getvalue()


def both_reports(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> Report:
    """The report with each decoder; they must be identical, to the last float."""
    with monkeypatch.context() as patch:
        use_decoder("msgspec", patch)
        fast, fast_errors = report_on(*paths)
    with monkeypatch.context() as patch:
        use_decoder("json", patch)
        slow, slow_errors = report_on(*paths)
    assert (fast.diagnosis, fast.inputs, fast_errors) == (slow.diagnosis, slow.inputs, slow_errors)
    assert fast_errors == ""
    return fast


def assert_as_collector_file(report: Report, seed: Seed) -> None:
    """The figures by hand, and those of the collector's file of the same spans."""
    expected = seed.collector_report
    for d in (report.diagnosis, expected.diagnosis):
        assert d.cost_usd == pytest.approx(COST_USD, abs=1e-9)
        assert (d.requests, d.calls, d.frontier_calls_per_request) == (REQUESTS, 4 * REQUESTS, 4.0)
    d, e = report.diagnosis, expected.diagnosis
    assert d.specialist_eligible_fraction == pytest.approx(e.specialist_eligible_fraction, abs=1e-12)
    assert dict(d.step_shares) == pytest.approx(dict(e.step_shares), abs=1e-12)
    assert (report.inputs.spans, report.inputs.records, report.inputs.skipped) == (
        len(seed.spans),
        REQUESTS,
        {},
    )


# -- the shapes -------------------------------------------------------------------------------------
def protojson(trace: list[ReadableSpan]) -> Doc:
    """A TracesData as protobuf's JSON printers write it: base64 ids, enums by name."""
    doc: Doc = json_format.MessageToDict(encode_spans(trace))
    return doc


def collector_doc(trace: list[ReadableSpan]) -> Doc:
    """A TracesData as the collector (pdata) writes it: hex ids, enums as numbers."""
    doc: Doc = json.loads(collector_json(trace))
    return doc


def hex_ids(doc: Doc) -> Doc:
    """Base64 ids written as upper-case hex (Tempo's own trace.json fixture has them so)."""
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64decode(span[key]).hex().upper()
    return doc


def before_scopes(doc: Doc) -> list[Doc]:
    """The ResourceSpans as OTLP wrote them before the scope: instrumentationLibrary(Spans)."""
    return [
        {
            "resource": rs.get("resource", {}),
            "instrumentationLibrarySpans": [
                {"instrumentationLibrary": ss.get("scope", {}), "spans": ss["spans"]}
                for ss in rs["scopeSpans"]
            ],
        }
        for rs in doc["resourceSpans"]
    ]


SHAPES: dict[str, Callable[[list[ReadableSpan]], Doc]] = {
    "jaeger v2 /api/v3/traces (hex)": lambda t: {"result": collector_doc(t)},
    "jaeger 1.49 /api/v3/traces (base64, library)": lambda t: {
        "result": {"resourceSpans": before_scopes(protojson(t))}
    },
    "tempo /api/traces (base64)": lambda t: {"batches": protojson(t)["resourceSpans"]},
    "tempo /api/traces (hex)": lambda t: {"batches": hex_ids(protojson(t))["resourceSpans"]},
    "tempo 1.5 /api/traces (base64, library)": lambda t: {"batches": before_scopes(protojson(t))},
    "tempo /api/v2/traces (base64)": lambda t: {"trace": protojson(t), "metrics": {"inspectedBytes": "4096"}},
    # A trace API keeps no end order: the root may come first.
    "tempo /api/v2/traces (base64, root first)": lambda t: {"trace": protojson(t[::-1])},
    "tempo-cli query api trace-id (base64)": protojson,
}


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def pretty(doc: Any) -> bytes:
    return json.dumps(doc, indent=2).encode()


#: How people save many answers in one file (else, with curl -o, a file each).
ONE_FILE: dict[str, Callable[[list[Doc]], bytes]] = {
    "one a line (curl; echo)": lambda docs: b"".join(compact(doc) + b"\n" for doc in docs),
    "appended without newlines (curl >>)": lambda docs: b"".join(map(compact, docs)),
    "pretty-printed (jq .)": lambda docs: b"\n".join(map(pretty, docs)) + b"\n",
    "an array (jq -s .)": pretty,
    "an array on one line (jq -cs .)": compact,
    "pretty-printed, gzipped": lambda docs: gzip.compress(b"\n".join(map(pretty, docs))),
}


def save(layout: str, docs: list[Doc], directory: Path) -> None:
    if layout in ONE_FILE:
        (directory / "saved.json").write_bytes(ONE_FILE[layout](docs))
    else:
        for i, doc in enumerate(docs):
            (directory / f"trace-{i:04d}.json").write_bytes(compact(doc))


@pytest.mark.parametrize("shape", SHAPES)
def test_each_api_shape_reads_as_the_collector_file(
    shape: str, seed: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save("one a line (curl; echo)", [SHAPES[shape](t) for t in seed.traces], tmp_path)
    assert_as_collector_file(both_reports(monkeypatch, tmp_path), seed)


@pytest.mark.parametrize("shape", ["jaeger v2 /api/v3/traces (hex)", "tempo /api/v2/traces (base64)"])
@pytest.mark.parametrize("layout", [*ONE_FILE, "a file each (curl -o)"])
def test_each_way_of_saving_many_answers(
    layout: str, shape: str, seed: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save(layout, [SHAPES[shape](t) for t in seed.traces], tmp_path)
    assert_as_collector_file(both_reports(monkeypatch, tmp_path), seed)


def test_one_answer_of_many_traces(seed: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Jaeger's GET /api/v3/traces?query.service_name=...: every trace found, in one answer.
    (tmp_path / "found.json").write_bytes(compact({"result": collector_doc(seed.spans)}))
    report = both_reports(monkeypatch, tmp_path)
    d = report.diagnosis
    assert d.cost_usd == pytest.approx(COST_USD, abs=1e-9)
    assert (d.requests, d.calls, report.inputs.records, report.inputs.spans) == (
        REQUESTS,
        4 * REQUESTS,
        1,
        len(seed.spans),
    )


def test_documents_longer_than_a_read(seed: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Values, and the strings in them, cut by every read.
    monkeypatch.setattr(trace_files, "_CHUNK_BYTES", 97)
    save("an array (jq -s .)", [SHAPES["tempo /api/traces (base64)"](t) for t in seed.traces], tmp_path)
    assert_as_collector_file(both_reports(monkeypatch, tmp_path), seed)


@pytest.mark.parametrize("shape", SHAPES)
def test_both_decoders_give_the_collector_files_span_records(
    shape: str, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("msgspec")
    keys = attribute_keys(SETTINGS)

    def slow(doc: bytes) -> list[SpanRecord] | None:
        return decode_request(json.loads(doc), keys, Processes(), pytest.fail)

    def by_span(record: SpanRecord) -> int:
        return record.span_id

    fast_decode = line_decoder(keys, Processes())
    assert fast_decode.__name__ == "decode"  # msgspec's
    with monkeypatch.context() as patch:
        use_decoder("json", patch)
        assert line_decoder(keys, Processes()).__name__ == "slow"
    for trace in seed.traces:
        data = compact(SHAPES[shape](trace))
        decoded = slow(data)
        assert fast_decode(data, pytest.fail) == decoded  # the same records, in the same order
        expected = slow(compact(collector_doc(trace)))
        assert decoded
        assert expected
        assert sorted(decoded, key=by_span) == sorted(expected, key=by_span)


# -- what is not a trace API's answer -------------------------------------------------------------
def test_answers_that_hold_no_traces_are_named(seed: Seed, tmp_path: Path) -> None:
    good = [compact(SHAPES["jaeger v2 /api/v3/traces (hex)"](t)) for t in seed.traces[:2]]
    path = tmp_path / "saved.json"
    path.write_bytes(
        b"\n".join(
            [
                good[0],
                # Jaeger's UI API (/api/traces/{id}) answers in Jaeger's own model, not OTLP.
                b'{"data":[{"traceID":"0af7651916cd43dd8448eb211c80319c","spans":[],"processes":{}}]}',
                # Jaeger's answer for a trace it does not have.
                b'{"error":{"httpCode":404,"message":"trace not found"}}',
                good[1],
            ]
        )
    )
    report, errors = report_on(path)
    assert f'{path}:2: not trace data: no resourceSpans in b\'{{"data":[{{"traceID"' in errors
    assert f'{path}:3: not trace data: no resourceSpans in b\'{{"error":{{"httpCode":404' in errors
    assert report.inputs.skipped == {"line": {"not_trace_data": 2}}
    assert (report.diagnosis.requests, report.inputs.records) == (2, 4)


def test_a_pretty_printed_answer_cut_short(seed: Seed, tmp_path: Path) -> None:
    docs = [pretty(SHAPES["tempo /api/v2/traces (base64)"](t)) for t in seed.traces[:3]]
    path = tmp_path / "saved.json"
    path.write_bytes(docs[0] + b"\n\n" + docs[1] + b"\nnot json\n" + docs[2][: len(docs[2]) // 2])
    # The first answer's lines, a blank line, the second's, the line not JSON, the third's.
    not_json_on = docs[0].count(b"\n") + 1 + 1 + docs[1].count(b"\n") + 1 + 1
    third_starts_on = not_json_on + 1
    report, errors = report_on(path)
    assert f"{path}:{not_json_on}: invalid json: " in errors
    assert f"{path}:{third_starts_on}: truncated line: " in errors
    assert report.inputs.skipped == {"line": {"invalid_json": 1, "truncated_line": 1}}
    assert report.diagnosis.requests == 2
