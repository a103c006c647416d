"""What the report reads: rotated files, directories and globs, compression, and bad input.

A bad line, span or file is reported on stderr with its file and line, counted in the
summary by reason, and everything else is still read: the figures stay those of the good
spans.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import struct
import sys
from typing import TYPE_CHECKING, Any

import hypothesis.strategies as st
import pytest
from hypothesis import example, given, settings
from report_support import CollectorFileExporter, export_to, seed_requests

import otel_overspend.report as report_package
from otel_overspend import Settings
from otel_overspend.report import files as trace_files
from otel_overspend.report.files import Problems, find_files
from otel_overspend.report.run import build_report

from conftest import make_pipeline, require_module

if TYPE_CHECKING:
    from pathlib import Path

    from otel_overspend.report.run import Report

SETTINGS = Settings(
    serve_metrics=False, model_tiers={"acme-frontier-*": "frontier"}, use_genai_prices=False, stamp_spans=True
)
REQUESTS = 40
#: The four-step fixture of report_support.SEED: $0.07035 a request.
COST_USD = REQUESTS * 0.07035


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The collector file of 40 four-step requests, 7 spans an export (so traces straddle lines)."""
    path = tmp_path_factory.mktemp("seed") / "traces.json"
    p = make_pipeline(SETTINGS)
    out = CollectorFileExporter(path, batch=7)
    export_to(p, out)
    seed_requests(p.tracer, REQUESTS)
    out.flush()
    p.provider.shutdown()
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def zstd() -> Any:
    return require_module("zstandard")


@pytest.fixture(params=["msgspec", "json"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each line decoded by msgspec (the 'report' extra), or by the standard library."""
    if request.param == "json":
        # Both: once imported, 'from otel_overspend.report import otlp_msgspec' finds the
        # package's attribute and never looks in sys.modules.
        monkeypatch.setitem(sys.modules, "otel_overspend.report.otlp_msgspec", None)
        monkeypatch.delattr(report_package, "otlp_msgspec", raising=False)
    else:
        require_module("msgspec")
    return str(request.param)


def report_on(*paths: Path) -> tuple[Report, str]:
    stream = io.StringIO()
    report = build_report(list(find_files(paths)), settings=SETTINGS, problems=Problems(stream=stream))
    return report, stream.getvalue()


def assert_seed_figures(report: Report) -> None:
    d = report.diagnosis
    assert d.cost_usd == pytest.approx(COST_USD, abs=1e-9)
    assert d.specialist_eligible_fraction == pytest.approx(53_850 / 70_350, abs=1e-12)
    # Every request closed with its four calls: spans were replayed in the order written.
    assert (d.requests, d.calls, d.frontier_calls_per_request) == (REQUESTS, 4 * REQUESTS, 4.0)


def _bad_span_line(span: dict[str, object]) -> bytes:
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    return json.dumps(doc).encode() + b"\n"


GOOD_SPAN = {
    "traceId": "0af7651916cd43dd8448eb211c80319c",
    "spanId": "b7ad6b7169203331",
    "parentSpanId": "",
    "name": "chat acme-frontier-1",
    "startTimeUnixNano": "1800000000000000000",
    "endTimeUnixNano": "1800000001000000000",
    "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}}],
}


# -- layouts and compression ------------------------------------------------------------------
def test_plain_file(tmp_path: Path, lines: list[bytes], decoder: str) -> None:
    path = tmp_path / "traces.json"
    path.write_bytes(b"".join(lines))
    report, errors = report_on(path)
    assert_seed_figures(report)
    assert errors == ""
    assert report.inputs.skipped == {}


def test_directory_of_rotated_files_is_read_oldest_first(tmp_path: Path, lines: list[bytes]) -> None:
    third = len(lines) // 3
    # The collector renames a full file with its rotation time and reopens the original name;
    # a rotated file may have been gzipped.
    (tmp_path / "data.json").write_bytes(b"".join(lines[2 * third :]))
    (tmp_path / "data-2026-11-03T00-00-00.000.json.gz").write_bytes(
        gzip.compress(b"".join(lines[third : 2 * third]))
    )
    (tmp_path / "data-2026-11-02T00-00-00.000.json").write_bytes(b"".join(lines[:third]))
    (tmp_path / ".hidden").write_bytes(b"not read")
    assert [p.name for p in find_files([tmp_path])] == [
        "data-2026-11-02T00-00-00.000.json",
        "data-2026-11-03T00-00-00.000.json.gz",
        "data.json",
    ]
    report, errors = report_on(tmp_path)
    assert_seed_figures(report)
    assert errors == ""
    assert report.inputs.files == 3


def _rotated_set(directory: Path, lines: list[bytes]) -> list[str]:
    """The file exporter's backups, as lumberjack (older collectors) and timberjack (newer
    ones: a reason after the time) name them, and the file still written; oldest first."""
    names = [
        "traces-2026-11-02T00-00-00.000.json",
        "traces-2026-11-02T06-00-00.000-size.json",
        "traces-2026-11-02T12-00-00.000-time.json.gz",  # gzipped by hand
        "traces.json",
    ]
    cuts = [len(lines) * i // 4 for i in range(5)]
    parts = [lines[start:end] for start, end in itertools.pairwise(cuts)]
    directory.mkdir(exist_ok=True)
    for name, part in zip(names, parts, strict=True):
        data = b"".join(part)
        (directory / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return names


def test_both_rotation_namings_are_read_oldest_first(tmp_path: Path, lines: list[bytes]) -> None:
    names = _rotated_set(tmp_path, lines)
    # Another exporter's file, still written (group_by, say): after every backup, by name.
    (tmp_path / "a-service.json").write_bytes(b"")
    assert [p.name for p in find_files([tmp_path])] == [*names[:3], "a-service.json", names[3]]
    report, errors = report_on(tmp_path)
    assert_seed_figures(report)
    assert (errors, report.inputs.files) == ("", 5)


def test_a_file_named_again_or_matched_by_a_glob_is_read_once(tmp_path: Path, lines: list[bytes]) -> None:
    names = _rotated_set(tmp_path / "otel", lines)
    directory = tmp_path / "otel"
    # A pattern the shell left alone (quoted), the shell's expansion in another order, the
    # directory itself and one of its files again: each file is read once, oldest first.
    unexpanded = directory / "traces*.json*"
    expanded = [directory / name for name in reversed(names)]
    assert [p.name for p in find_files([unexpanded])] == names
    assert [p.name for p in find_files(expanded)] == names
    report, errors = report_on(unexpanded, *expanded, directory, directory / "traces.json")
    assert_seed_figures(report)
    assert (errors, report.inputs.files) == ("", 4)


def test_a_glob_that_matches_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no file matches .*nothing\*\.json"):
        list(find_files([tmp_path / "nothing*.json"]))


def test_zstd_stream(tmp_path: Path, lines: list[bytes], zstd: Any) -> None:
    # The collector's native compression: one zstd stream of JSON lines (several frames).
    path = tmp_path / "traces.json.zst"
    half = len(lines) // 2
    compress = zstd.ZstdCompressor().compress
    path.write_bytes(compress(b"".join(lines[:half])) + compress(b"".join(lines[half:])))
    report, errors = report_on(path)
    assert_seed_figures(report)
    assert errors == ""


def test_length_prefixed_zstd_frames(tmp_path: Path, lines: list[bytes], zstd: Any) -> None:
    # The collector's legacy 'compression: zstd': each export a zstd frame after its length.
    compress = zstd.ZstdCompressor().compress
    frames = [compress(line.rstrip(b"\n")) for line in lines]
    path = tmp_path / "traces.zst"
    path.write_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
    report, errors = report_on(path)
    assert_seed_figures(report)
    assert errors == ""
    assert report.inputs.records == len(lines)


def test_zstd_without_zstandard_says_what_to_install(
    tmp_path: Path, lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "traces.json.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)  # zstd's magic number, then anything
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"".join(lines))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    report, errors = report_on(path, plain)
    assert f"{path}: unreadable file: the file is zstd-compressed: install the 'zstandard' package" in errors
    assert report.inputs.skipped == {"file": {"unreadable_file": 1}}
    assert_seed_figures(report)  # the other file was read


# -- bad input ------------------------------------------------------------------------------------
def test_truncated_last_line(tmp_path: Path, lines: list[bytes], decoder: str) -> None:
    path = tmp_path / "traces.json"
    cut = lines[3][: len(lines[3]) // 2]
    path.write_bytes(b"".join(lines) + cut)
    report, errors = report_on(path)
    assert f"{path}:{len(lines) + 1}: truncated line: the last line is cut short" in errors
    assert report.inputs.skipped == {"line": {"truncated_line": 1}}
    assert_seed_figures(report)


def test_invalid_json_line(tmp_path: Path, lines: list[bytes], decoder: str) -> None:
    path = tmp_path / "traces.json"
    path.write_bytes(b"".join([*lines[:5], b'{"resourceSpans": [\n', *lines[5:]]))
    report, errors = report_on(path)
    assert errors.startswith(f"{path}:6: invalid json: ")
    assert report.inputs.skipped == {"line": {"invalid_json": 1}}
    assert_seed_figures(report)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endTimeUnixNano": None}, "span 'chat acme-frontier-1' has no endTimeUnixNano"),
        ({"traceId": None}, "span 'chat acme-frontier-1' has no traceId"),
        ({"spanId": "xyz"}, "span 'chat acme-frontier-1': id 'xyz' is neither 16 hex digits nor 8 bytes"),
        ({"traceId": "0" * 32}, "span 'chat acme-frontier-1': id is all zeros"),
        ({"startTimeUnixNano": "soon"}, "span 'chat acme-frontier-1': "),
        ({"spanId": 12}, "span 'chat acme-frontier-1': id 12 is not a string"),
    ],
)
def test_span_without_what_it_needs(
    tmp_path: Path, lines: list[bytes], change: dict[str, object], message: str, decoder: str
) -> None:
    span = {k: v for k, v in {**GOOD_SPAN, **change}.items() if v is not None}
    path = tmp_path / "traces.json"
    path.write_bytes(b"".join([*lines[:2], _bad_span_line(span), *lines[2:]]))
    report, errors = report_on(path)
    assert errors.startswith(f"{path}:3: invalid span: {message}")
    assert report.inputs.skipped == {"span": {"invalid_span": 1}}
    assert_seed_figures(report)


def test_lines_without_traces(tmp_path: Path, lines: list[bytes], decoder: str) -> None:
    path = tmp_path / "traces.json"
    path.write_bytes(b"".join([b'{"resourceMetrics": []}\n', b"[1, 2]\n", *lines]))
    report, errors = report_on(path)
    assert f"{path}:1: not trace data: no resourceSpans" in errors
    assert f"{path}:2: not trace data: no resourceSpans in b'1'" in errors
    # Each item of an array is a document of its own (jq -s gathers trace API answers so).
    assert report.inputs.skipped == {"line": {"not_trace_data": 3}}
    assert_seed_figures(report)


def test_unreadable_and_cut_files(tmp_path: Path, lines: list[bytes]) -> None:
    (tmp_path / "a.json").write_bytes(b"".join(lines))
    (tmp_path / "b.json").symlink_to(tmp_path / "gone.json")  # a dangling link
    cut = gzip.compress(b"".join(lines[:4]))
    (tmp_path / "c.json.gz").write_bytes(cut[: len(cut) - 30])
    report, errors = report_on(tmp_path)
    assert f"{tmp_path / 'b.json'}: unreadable file: No such file or directory" in errors
    assert f"{tmp_path / 'c.json.gz'}: truncated file: " in errors
    assert report.inputs.skipped == {"file": {"truncated_file": 1, "unreadable_file": 1}}
    assert report.inputs.files == 3


def test_lines_before_a_cut_in_a_compressed_file_are_read(tmp_path: Path, lines: list[bytes]) -> None:
    cut = gzip.compress(b"".join(lines[:4]))
    path = tmp_path / "traces.json.gz"
    path.write_bytes(cut[: len(cut) - 30])  # into the fourth line
    report, errors = report_on(path)
    assert f"{path}: truncated file: " in errors
    assert (report.inputs.records, report.inputs.skipped) == (3, {"file": {"truncated_file": 1}})


def test_lines_longer_than_a_read(
    tmp_path: Path, lines: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace_files, "_CHUNK_BYTES", 1000)
    path = tmp_path / "traces.json"
    blank = [b"\n", b" \t\r\n"]
    path.write_bytes(b"".join([*blank, *lines, *blank, lines[3][:1500]]))
    report, errors = report_on(path)
    assert f"{path}:{len(lines) + 5}: truncated line: " in errors
    assert report.inputs.skipped == {"line": {"truncated_line": 1}}
    assert report.inputs.records == len(lines) + 1
    assert_seed_figures(report)


def test_only_the_first_problems_of_each_kind_are_printed(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "traces.json"
    path.write_bytes(b"".join([b"nope\n"] * 8 + lines))
    report, errors = report_on(path)
    printed = errors.splitlines()
    assert len(printed) == 5
    assert printed[-1].endswith("(further ones are only counted)")
    assert report.inputs.skipped == {"line": {"invalid_json": 8}}
    assert_seed_figures(report)


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        list(find_files([tmp_path / "nope"]))


# -- length-prefixed records read in blocks ----------------------------------------------------
def _records_of(sizes: list[int]) -> list[bytes]:
    # Bytes from 0x80 up: no record reads as JSON, and each differs from its neighbours.
    return [bytes([0x80 + i % 100]) * size for i, size in enumerate(sizes)]


@settings(max_examples=150, deadline=None)
# A length prefix with 3 of its bytes in a block of the cutting (at byte 97 of 100).
@example(sizes=[1] * 18 + [3] + [1] * 5, block=64, cut_block=100, parts=6)
@given(
    # Short records too: the cutting steps over those in blocks of the file, the others by seeks.
    sizes=st.lists(st.integers(0, 300) | st.integers(0, 8), min_size=1, max_size=30),
    block=st.sampled_from([4, 5, 64, 257, 1 << 20]),
    cut_block=st.sampled_from([4, 7, 50, 100, 257, 1 << 16]),
    parts=st.integers(1, 6),
)
def test_length_prefixed_records_are_read_whole_across_blocks_and_cuts(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], block: int, cut_block: int, parts: int
) -> None:
    records = _records_of(sizes)
    path = tmp_path_factory.mktemp("framed") / "traces.pb"
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in records))
    numbered = list(enumerate(records, start=1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trace_files, "_FRAMED_BLOCK_BYTES", block)
        patch.setattr(trace_files, "_CUT_BLOCK_BYTES", cut_block)
        whole = [(r.number, r.content(), r.is_json) for r in trace_files.read_records(path)]
        assert whole == [(n, data, False) for n, data in numbered]
        cut = trace_files.line_ranges(path, parts)
        assert cut is not None
        assert cut.framed
        read_in_ranges, located = [], []
        for (start, end), first in zip(cut.ranges, cut.first_records, strict=True):
            read_in_ranges += [
                (r.number, r.content())
                for r in trace_files.read_range(path, start, end, joined=False, framed=True, first=first)
            ]
            located += [
                (number, data[a:b])
                for data, a, b, number in trace_files.read_framed_range(path, start, end, first)
            ]
    assert read_in_ranges == located == numbered
    # Each range starts where a record does: the sum of the records before it.
    starts = list(itertools.accumulate((4 + len(r) for r in records), initial=0))
    assert all(start in starts for start, _ in cut.ranges)


@pytest.mark.parametrize("chop", [1, 2, 3, 4, 5, 50, 104])
def test_a_length_prefixed_file_cut_short_keeps_the_records_before(tmp_path: Path, chop: int) -> None:
    records = _records_of([10, 300, 100])  # the last: 4 + 100 bytes
    path = tmp_path / "traces.pb"
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in records)[:-chop])
    # Worked by hand: up to 100 bytes chopped, the last record's data is short (100 - chop of
    # 100 bytes); 104, the whole record is gone and the file ends cleanly.
    expected = {
        1: "record 3: 99 of 100 bytes, file cut short",
        2: "record 3: 98 of 100 bytes, file cut short",
        3: "record 3: 97 of 100 bytes, file cut short",
        4: "record 3: 96 of 100 bytes, file cut short",
        5: "record 3: 95 of 100 bytes, file cut short",
        50: "record 3: 50 of 100 bytes, file cut short",
        104: None,
    }[chop]
    read: list[bytes] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trace_files, "_FRAMED_BLOCK_BYTES", 64)
        if expected is None:
            read = [r.content() for r in trace_files.read_records(path)]
        else:
            with pytest.raises(trace_files.TraceFileError, match=expected) as caught:
                read.extend(r.content() for r in trace_files.read_records(path))
            assert caught.value.reason == "truncated_file"
    assert read == records[:2]


@pytest.mark.parametrize("kept", [1, 2, 3])
def test_a_length_prefix_cut_short_is_named(tmp_path: Path, kept: int) -> None:
    first = _records_of([10])[0]
    path = tmp_path / "traces.pb"
    path.write_bytes(struct.pack(">I", 10) + first + struct.pack(">I", 100)[:kept])
    read: list[bytes] = []
    with pytest.raises(trace_files.TraceFileError, match="record 2: length prefix cut short"):
        read.extend(r.content() for r in trace_files.read_records(path))
    assert read == [first]
