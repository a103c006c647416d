"""``report --jobs N`` gives the report of one process, and aggregates merge exactly.

The trace files are written here, span by span, as OTLP/JSON: requests of the four-step
fixture (``SEED``) under a root span, on a frontier and a specialist model, some without
their root (a service called by another), spread over two days; in collector batches
whose lines cut traces apart (also as length-prefixed protobuf, three files), one trace a
line with the root first or last, and split over rotated files. The input is cut into many
small parts (the size thresholds are lowered), so that traces fall across the cuts. Every
format of the report with ``--jobs 2`` and ``--jobs 3`` equals the report of one process,
byte for byte (the most spans held at once, which is per process, aside), and the counts
equal what was written.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type hints
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from report_support import SEED, pinned_settings

from otel_overspend.cli import main
from otel_overspend.report import jobs
from otel_overspend.report.aggregate import FORMAT, VERSION
from otel_overspend.report.files import Problems
from otel_overspend.report.render import render
from otel_overspend.report.run import Limits, build_report

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from otel_overspend.report.run import Report

T0_NS = 1_793_620_800 * 10**9  # Monday 2026-11-02 12:00 UTC
MS = 1_000_000
FRONTIER, SPECIALIST = "acme-frontier-1", "zerank-2"
CONFIG = """\
use_genai_prices = false

[model_tiers]
"acme-frontier-*" = "frontier"
"zerank-*" = "specialist"
"""
SETTINGS = pinned_settings(model_tiers={"acme-frontier-*": "frontier", "zerank-*": "specialist"})
FORMATS = ("table", "json", "csv", "markdown")
RESOURCE = {"attributes": [{"key": "service.name", "value": {"stringValue": "rag-api"}}]}


# -- the traces -------------------------------------------------------------------------------------
def _attr(key: str, value: Any) -> dict[str, Any]:
    kind = "intValue" if isinstance(value, int) else "stringValue"
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def _span(
    trace: int, span: int, parent: int, *, name: str, start: int, end: int, **attrs: Any
) -> dict[str, Any]:
    return {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "parentSpanId": f"{parent:016x}" if parent else "",
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [_attr(k.replace("__", "."), v) for k, v in attrs.items()],
    }


def make_traces(n: int, *, seed: int = 5, rootless_every: int = 7) -> list[list[dict[str, Any]]]:
    """``n`` requests, each a list of spans in end order (the root last), starting about
    40 s apart (so over two UTC days for a few thousand); every ``rootless_every``-th has
    no root span (its calls' parent never comes)."""
    rng = random.Random(seed)
    traces = []
    for i in range(n):
        trace = rng.getrandbits(128) | 1
        root = rng.getrandbits(64) | 1
        t0 = T0_NS + i * 40_000 * MS
        t = t0 + MS
        spans = []
        for step, tokens_in, tokens_out in SEED:
            model = SPECIALIST if step == "rerank" and i % 3 == 0 else FRONTIER
            end = t + rng.randint(100, 900) * MS
            spans.append(
                _span(
                    trace,
                    rng.getrandbits(64) | 1,
                    root,
                    name=f"chat {model}",
                    start=t,
                    end=end,
                    gen_ai__operation__name="chat",
                    gen_ai__provider__name="acme",
                    gen_ai__request__model=model,
                    gen_ai__usage__input_tokens=tokens_in + i % 11,
                    gen_ai__usage__output_tokens=tokens_out,
                    overspend__step=step,
                )
            )
            t = end + MS
        if i % rootless_every:
            spans.append(_span(trace, root, 0, name="POST /answer", start=t0, end=t + MS))
        traces.append(spans)
    return traces


def _line(spans: list[dict[str, Any]]) -> str:
    doc = {
        "resourceSpans": [{"resource": RESOURCE, "scopeSpans": [{"scope": {"name": "app"}, "spans": spans}]}]
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def batches(traces: list[list[dict[str, Any]]], per_line: int = 7) -> Iterator[str]:
    """Collector batches: spans of three traces at a time interleaved, ``per_line`` a line,
    so that most traces run over two lines."""
    stream: list[dict[str, Any]] = []
    for i in range(0, len(traces), 3):
        group = traces[i : i + 3]
        for k in range(max(map(len, group))):
            stream += [spans[k] for spans in group if k < len(spans)]
    for i in range(0, len(stream), per_line):
        yield _line(stream[i : i + per_line])


def one_a_line(traces: list[list[dict[str, Any]]], *, root_first: bool) -> Iterator[str]:
    for spans in traces:
        yield _line(sorted(spans, key=lambda s: int(s["startTimeUnixNano"])) if root_first else spans)


def shuffled_spans(traces: list[list[dict[str, Any]]], *, seed: int = 9) -> Iterator[str]:
    """One span a line, the spans of each trace shuffled, and five traces at a time interleaved
    (all within a few seconds: well within the reorder window)."""
    rng = random.Random(seed)
    for i in range(0, len(traces), 5):
        stream = [span for spans in traces[i : i + 5] for span in spans]
        rng.shuffle(stream)
        yield from (_line([span]) for span in stream)


def write(path: Path, lines: Iterator[str] | list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def _base64_ids(node: Any) -> Any:
    """Protobuf's JSON mapping reads bytes as base64; OTLP/JSON writes ids in hex."""
    if isinstance(node, list):
        return [_base64_ids(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        k: base64.b64encode(bytes.fromhex(v)).decode()
        if k in {"traceId", "spanId", "parentSpanId"}
        else _base64_ids(v)
        for k, v in node.items()
    }


def write_protobuf(path: Path, lines: Iterator[str]) -> Path:
    """Each line as the collector's ``format: proto`` writes an export: its length, then a
    ``TracesData`` (serialized by protobuf itself)."""
    with path.open("wb") as out:
        for line in lines:
            data = json_format.ParseDict(_base64_ids(json.loads(line)), TracesData()).SerializeToString()
            out.write(struct.pack(">I", len(data)) + data)
    return path


# -- running the report ---------------------------------------------------------------------------
@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut even small files into many parts: traces then fall across the cuts."""
    monkeypatch.setattr(jobs, "MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(jobs, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(jobs, "PARTS_PER_JOB", 6)


def report(files: list[Path], n_jobs: int, **limits: Any) -> tuple[Report, str]:
    stream = io.StringIO()
    found = build_report(
        files,
        settings=SETTINGS,
        period="day",
        problems=Problems(stream=stream, shown=3),
        limits=Limits(**limits),
        jobs=n_jobs,
    )
    return found, stream.getvalue()


def rendered(found: Report) -> dict[str, str]:
    out = {fmt: render(found, fmt) for fmt in FORMATS}
    doc = json.loads(out["json"])
    doc["inputs"].pop("held_spans_peak")  # the most held by one process
    out["json"] = json.dumps(doc, indent=1)
    return out


def shared_traces(files: list[Path], n_jobs: int) -> int:
    parts = jobs.plan_parts(files, n_jobs)
    return sum(map(len, jobs.shared_ids([jobs.scan(part) for part in parts])))


SHAPES: dict[str, Callable[[Path, list[list[dict[str, Any]]]], list[Path]]] = {
    "collector_batches": lambda d, t: [write(d / "traces.json", batches(t))],
    "collector_batches_protobuf": lambda d, t: [write_protobuf(d / "traces.pb", batches(t))],
    "collector_batches_protobuf_three_files": lambda d, t: [
        write_protobuf(d / f"traces-{k}.pb", iter(lines)) for k, lines in enumerate(_thirds(list(batches(t))))
    ],
    "one_trace_a_line_root_last": lambda d, t: [write(d / "traces.json", one_a_line(t, root_first=False))],
    "one_trace_a_line_root_first": lambda d, t: [write(d / "traces.json", one_a_line(t, root_first=True))],
    "spans_shuffled_one_a_line": lambda d, t: [write(d / "traces.json", shuffled_spans(t))],
    "rotated_files_split_traces": lambda d, t: (
        [
            write(d / f"traces-2026-11-0{k + 2}T00-00-00.000.json", lines)
            for k, lines in enumerate(_thirds(list(batches(t))))
        ]
        + [write(d / "traces.json", [])]
    ),
}


def _thirds(lines: list[str]) -> list[list[str]]:
    n = len(lines)
    return [lines[: n // 3], lines[n // 3 : 2 * n // 3], lines[2 * n // 3 :]]


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_jobs_give_the_report_of_one_process(shape: str, tmp_path: Path) -> None:
    traces = make_traces(3_000)
    files = SHAPES[shape](tmp_path, traces)
    one, one_problems = report(files, 1)
    assert one.inputs.spans == sum(map(len, traces))
    # Independent of the code: 4 calls a request; a request with its root is one request, and
    # without it each call's span, whose parent never came, is taken for a local root.
    rooted = sum(1 for i in range(len(traces)) if i % 7)
    assert one.diagnosis.calls == 4 * len(traces)
    assert one.diagnosis.requests == rooted + 4 * (len(traces) - rooted)
    assert [p.diagnosis.calls for p in one.periods] == [4 * 1080, 4 * 1920]  # 12:00 Monday to 21:20 Tuesday
    assert shared_traces(files, 2) > 0 or shape.startswith("one_trace")
    for n_jobs in (2, 3):
        many, many_problems = report(files, n_jobs)
        assert rendered(many) == rendered(one), (shape, n_jobs)
        assert many_problems == one_problems
        timed = _steps_timed(one)
        assert timed, "the spans carry steps: their time is figured"
        assert _steps_timed(many) == pytest.approx(timed), (shape, n_jobs)


def _steps_timed(found: Report) -> dict[str, float | None]:
    """The step-time figures of the look-alike patterns (summed in each process, then merged)."""
    assert found.pattern_figures is not None
    figures: dict[str, float | None] = {}
    for step in found.pattern_figures.steps:
        figures[f"{step.step} p95"] = step.latency_p95_seconds
        figures[f"{step.step} share"] = step.request_time_share
    return figures


@pytest.mark.usefixtures("small_parts")
def test_problems_are_named_with_their_file_line_in_any_part(tmp_path: Path) -> None:
    lines = list(one_a_line(make_traces(600), root_first=False))
    for at in (5, 300, 301, 550):
        lines[at] = "{not json\n"
    files = [write(tmp_path / "traces.json", lines)]
    one, one_problems = report(files, 1)
    many, many_problems = report(files, 2)
    assert many_problems == one_problems
    assert [line.split(": ")[0] for line in many_problems.splitlines()] == [
        f"{files[0]}:{at + 1}" for at in (5, 300, 301)
    ]
    assert rendered(many) == rendered(one)
    assert many.inputs.skipped == {"line": {"invalid_json": 4}}


@pytest.mark.usefixtures("small_parts")
def test_a_protobuf_file_is_cut_at_record_starts_and_its_problems_named_by_record(tmp_path: Path) -> None:
    path = write_protobuf(tmp_path / "traces.pb", batches(make_traces(600)))
    framed = path.read_bytes()
    records, at = [], 0
    while at < len(framed):
        size = int.from_bytes(framed[at : at + 4], "big")
        records.append(framed[at : at + 4 + size])
        at += 4 + size
    for bad in (3, 200, 201, len(records) - 2):  # not protobuf: a varint that never ends
        records[bad] = b"\x00\x00\x00\x04\x0a\xff\xff\xff"
    path.write_bytes(b"".join(records))
    parts = jobs.plan_parts([path], 2)
    assert len(parts) > 2
    assert all(p.framed for p in parts)
    assert [p.first_record for p in parts][:1] == [1]
    one, one_problems = report([path], 1)
    many, many_problems = report([path], 2)
    assert many_problems == one_problems
    assert [line.split(": not")[0] for line in many_problems.splitlines()] == [
        f"{path}: record {bad + 1}: invalid record" for bad in (3, 200, 201)
    ]
    assert rendered(many) == rendered(one)
    assert many.inputs.skipped == {"record": {"invalid_record": 4}}
    assert one.inputs.records == many.inputs.records == len(records)


@pytest.mark.usefixtures("small_parts")
def test_a_file_behind_the_reading_is_read_in_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two files over the same hours: one process closes the second file's traces as soon
    as they come (they are past the reorder window); the jobs' parts would not, so the
    report is made by one process."""
    traces = make_traces(900)
    files = [
        write(tmp_path / "a.json", batches(traces[::2])),
        write(tmp_path / "b.json", batches(traces[1::2])),
    ]
    one, _ = report(files, 1)
    many, _ = report(files, 2)
    assert rendered(many) == rendered(one)
    assert one.inputs.reorder.get("out_of_order")
    assert "read again in one process" in capsys.readouterr().err


# -- aggregates -----------------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "overspend.toml"
    path.write_text(CONFIG)
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["report", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_aggregates_of_two_runs_merge_to_the_run_over_both(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = make_traces(2_000)
    first = write(tmp_path / "monday.json", batches(traces[:1080]))  # Monday's, then Tuesday's
    second = write(tmp_path / "tuesday.json", batches(traces[1080:]))
    a, b = tmp_path / "a.agg.json", tmp_path / "b.agg.json"
    assert cli(capsys, "--config", config, "--jobs", "1", "--aggregate-out", a, first)[0] == 0
    assert cli(capsys, "--config", config, "--jobs", "1", "--aggregate-out", b, second)[0] == 0
    for fmt in FORMATS:
        code, whole, _ = cli(
            capsys, "--config", config, "--jobs", "1", "--by", "day", "--format", fmt, first, second
        )
        assert code == 0
        code, merged, err = cli(
            capsys, "--config", config, "--by", "day", "--format", fmt, "--from-aggregate", b, a
        )
        assert (code, err) == (0, "")
        assert merged == whole, fmt
    doc = json.loads(a.read_text())
    assert (doc["format"], doc["version"]) == (FORMAT, VERSION)
    assert doc["inputs"]["spans"] == sum(map(len, traces[:1080]))
    # An aggregate and trace files together, written again: the same as both aggregates.
    both = tmp_path / "both.agg.json"
    assert cli(capsys, "--config", config, "--from-aggregate", a, "--aggregate-out", both, second)[0] == 0
    code, out, _ = cli(capsys, "--config", config, "--format", "json", "--from-aggregate", both)
    code2, out2, _ = cli(capsys, "--config", config, "--format", "json", "--from-aggregate", a, b)
    assert (code, code2) == (0, 0)
    assert out == out2
    assert json.loads(out)["calls"] == 4 * 2_000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": VERSION + 1}, f"version {VERSION + 1}; this otel-overspend reads version {VERSION}"),
        ({"format": "something-else"}, f"not an {FORMAT} document"),
        ({"calls": None}, f"not a valid {FORMAT} version {VERSION} document"),
    ],
)
def test_an_aggregate_of_another_version_is_refused(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    agg = tmp_path / "a.agg.json"
    traces = write(tmp_path / "t.json", batches(make_traces(30)))
    assert cli(capsys, "--config", config, "--aggregate-out", agg, traces)[0] == 0
    doc = json.loads(agg.read_text())
    doc.update(change)
    agg.write_text(json.dumps(doc))
    code, out, err = cli(capsys, "--config", config, "--from-aggregate", agg)
    assert code == 2
    assert out == ""
    assert message in err
    assert str(agg) in err


def test_aggregates_counted_under_other_prices_are_not_added(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traces = write(tmp_path / "t.json", batches(make_traces(30)))
    a, b = tmp_path / "a.agg.json", tmp_path / "b.agg.json"
    assert cli(capsys, "--config", config, "--aggregate-out", a, traces)[0] == 0
    assert (
        cli(capsys, "--config", config, "--specialize", "generate=mini", "--aggregate-out", b, traces)[0] == 0
    )
    code, _, err = cli(capsys, "--config", config, "--from-aggregate", a, b)
    assert code == 2
    assert "counted under different settings" in err


# -- worker failures --------------------------------------------------------------------------------------
FAILING = """\
import os, sys
from otel_overspend.report import jobs

def boom(part, *_):
    if part.index == 2:
        {failure}
    return real(part, *_)

real, jobs._replay_part = jobs._replay_part, boom
jobs.MIN_INPUT_BYTES, jobs.MIN_PART_BYTES = 0, 1
from otel_overspend.cli import main
sys.exit(main(["report", "--jobs", "2", "--config", sys.argv[1], sys.argv[2]]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ('raise RuntimeError("disk on fire")', "failed: RuntimeError: disk on fire"),
        ("os._exit(9)", "a worker process ended abruptly"),
    ],
)
def test_a_failing_worker_is_an_error_not_a_hang(
    tmp_path: Path, config: Path, failure: str, message: str
) -> None:
    traces = write(tmp_path / "t.json", batches(make_traces(300)))
    script = textwrap.dedent(FAILING).replace("{failure}", failure)
    done = subprocess.run(
        [sys.executable, "-c", script, str(config), str(traces)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert "otel-overspend report: --jobs: " in done.stderr
    assert message in done.stderr
