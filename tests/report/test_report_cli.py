"""``otel-overspend report``: formats, time series, plots, what-ifs, the CI gate, usage errors.

Expected figures are worked out by hand (prices in USD per 1M tokens, input / output:
frontier 3 / 15, mini 0.05 / 0.20, specialist 0.02 / 0.02), in micro-dollars below.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from report_support import (
    MODEL,
    SEED,
    CollectorFileExporter,
    export_to,
    llm_attributes,
    seed_requests,
    write_collector_lines,
)

from otel_overspend import Settings, step
from otel_overspend.cli import main

from conftest import make_pipeline, require_module

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.trace import Tracer

CONFIG = """\
use_genai_prices = false
stamp_spans = true

[model_tiers]
"acme-frontier-*" = "frontier"
"zerank-*" = "specialist"
"""
SETTINGS = Settings(
    serve_metrics=False,
    model_tiers={"acme-frontier-*": "frontier", "zerank-*": "specialist"},
    use_genai_prices=False,
    stamp_spans=True,
)
REQUESTS = 20
DAY1_NOON_S = datetime(2026, 11, 2, 12, tzinfo=timezone.utc).timestamp()  # a Monday
DAY_S = 86_400


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "overspend.toml"
    path.write_text(CONFIG)
    return path


def _export(path: Path, workload: Any) -> Path:
    p = make_pipeline(SETTINGS)
    out = CollectorFileExporter(path)
    export_to(p, out)
    workload(p.tracer)
    out.flush()
    p.provider.shutdown()
    return path


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("seed") / "seed.json", lambda t: seed_requests(t, REQUESTS))


def _timed_request(tracer: Tracer, start_s: float, calls: list[tuple[str, str, int, int]]) -> None:
    """A root from ``start_s`` to ``start_s + 10`` with one call a second inside it."""
    ns = 1_000_000_000
    root = tracer.start_span("POST /answer", start_time=int(start_s * ns))
    context = trace.set_span_in_context(root)
    for i, (name, model, tokens_in, tokens_out) in enumerate(calls):
        with step(name):
            span = tracer.start_span(
                f"chat {model}",
                context=context,
                start_time=int((start_s + i + 1) * ns),
                attributes=llm_attributes(model, tokens_in, tokens_out),
            )
        span.end(end_time=int((start_s + i + 2) * ns))
    root.end(end_time=int((start_s + 10) * ns))


SEED_CALLS = [(name, MODEL, tokens_in, tokens_out) for name, tokens_in, tokens_out in SEED]
GENERATE_ONLY = [("generate", MODEL, 3_500, 400)]
SPECIALIST_RERANK = [(n, "zerank-2" if n == "rerank" else m, i, o) for n, m, i, o in SEED_CALLS]


@pytest.fixture(scope="module")
def days_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days, ten requests a day, one a minute from noon UTC: the four-step
    fixture, then generate only, then the four-step fixture with rerank on a specialist."""

    def workload(tracer: Tracer) -> None:
        for day, calls in enumerate((SEED_CALLS, GENERATE_ONLY, SPECIALIST_RERANK)):
            for i in range(10):
                _timed_request(tracer, DAY1_NOON_S + day * DAY_S + 60 * i, calls)

    return _export(tmp_path_factory.mktemp("days") / "days.json", workload)


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["report", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict[str, Any]:
    code, out, err = run(capsys, "--format", "json", *args)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


# -- formats -----------------------------------------------------------------------------------
def test_table(capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path) -> None:
    code, out, err = run(capsys, "--config", config, seed_file)
    assert code == 0, err
    assert "Test 1, model concentration: 1.000 confirmed (top frontier model: acme-frontier-1" in out
    # rerank 39,000 of 70,350 a request: 55.4 %; 20 requests cost $1.4070.
    assert re.search(r"\n  rerank +20 +244,000 +\$0\.7800 +55\.4%\n", out)
    # Specialized: 20 x 16,831 = $0.3366; per step rerank 39,000 -> 244 saves 99.4 %.
    assert re.search(r"\n  rerank +\$0\.7800 +\$0\.0049 +\$0\.7751 +99\.4%\n", out)
    assert re.search(r"\n  total +\$1\.4070 +\$0\.3366 +\$1\.0704 +76\.1%\n", out)
    assert "Test 4, specialist-eligible fraction: 0.765 confirmed" in out
    assert "frontier calls per request: 4.00 confirmed" in out
    assert "tokens per request: 20,450 confirmed" in out
    # The spans of this file cover a fraction of a second: too short to scale to a week.
    assert re.search(
        r"Recommendation: specialize rerank next: \N{MINUS SIGN}\$0\.7751 over the [0-9.]+ s of traces "
        r"\(rerank is 55\.4% of spend; too short to scale to a week\)",
        out,
    )
    assert "nothing skipped" in out
    assert err == ""


def test_json(capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path) -> None:
    doc = run_json(capsys, "--config", config, seed_file)
    assert doc["cost_usd"] == pytest.approx(REQUESTS * 0.07035, abs=1e-9)
    assert doc["test4_specialist_eligible_fraction"] == {
        "value": pytest.approx(53_850 / 70_350, abs=1e-12),
        "level": "confirmed",
    }
    counterfactual = doc["test3_counterfactual"]
    assert counterfactual["specialized_cost_usd"] == pytest.approx(REQUESTS * 0.016831, abs=1e-9)
    rerank = next(s for s in counterfactual["steps"] if s["step"] == "rerank")
    assert rerank["savings_usd"] == pytest.approx(REQUESTS * (0.039 - 0.000244), abs=1e-9)
    assert rerank["reduction"] == pytest.approx(1 - 244 / 39_000, abs=1e-12)
    assert doc["recommendation"]["step"] == "rerank"
    assert doc["inputs"]["spans"] == 5 * REQUESTS
    assert doc["per_request"]["frontier_calls_per_request"] == 4.0


def test_csv(capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path) -> None:
    code, out, _ = run(capsys, "--config", config, "--format", "csv", seed_file)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    value = {(r["period"], r["metric"], r["step"]): r["value"] for r in rows}
    assert float(value["total", "cost_usd", ""]) == pytest.approx(REQUESTS * 0.07035, abs=1e-9)
    assert float(value["total", "step_share", "rerank"]) == pytest.approx(39_000 / 70_350, abs=1e-12)
    assert float(value["total", "specialist_eligible_fraction", ""]) == pytest.approx(
        53_850 / 70_350, abs=1e-12
    )
    assert value["total", "step_calls", "generate"] == str(REQUESTS)


def test_markdown(capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path) -> None:
    code, out, _ = run(capsys, "--config", config, "--format", "markdown", seed_file)
    assert code == 0
    assert out.startswith("## otel-overspend report\n")
    assert "| step | calls | tokens | USD | share |" in out
    assert "| rerank | 20 | 244,000 | $0.7800 | 55.4% |" in out
    assert "**Recommendation: specialize rerank next: " in out


# -- time series and plots ----------------------------------------------------------------------
# Per request: day 1 the four-step fixture, 70,350 (not generate 53,850); day 2 generate only,
# 16,500 (not generate 0); day 3 rerank at (12,000 + 200) x 0.02 = 244, so 31,594 (15,094).
DAY_FRACTIONS = [53_850 / 70_350, 0.0, 15_094 / 31_594]
DAY_COSTS_USD = [10 * 0.07035, 10 * 0.0165, 10 * 0.031594]


def test_by_day(capsys: pytest.CaptureFixture[str], days_file: Path, config: Path) -> None:
    doc = run_json(capsys, "--config", config, "--by", "day", days_file)
    series = doc["periods"]["series"]
    assert [p["start"] for p in series] == [
        "2026-11-02T00:00:00Z",
        "2026-11-03T00:00:00Z",
        "2026-11-04T00:00:00Z",
    ]
    assert [p["test4_specialist_eligible_fraction"]["value"] for p in series] == pytest.approx(
        DAY_FRACTIONS, abs=1e-12
    )
    assert [p["cost_usd"] for p in series] == pytest.approx(DAY_COSTS_USD, abs=1e-9)
    shares = {s["step"]: s["share"] for s in series[0]["test2_steps"]}
    assert shares["rerank"] == pytest.approx(39_000 / 70_350, abs=1e-12)
    # The traces cover noon on day 1 to 12:09:10 on day 3: 172,800 + 550 s.
    assert doc["covered"]["seconds"] == pytest.approx(173_350, abs=1e-6)
    # Over all of them rerank saves most (10 x (39,000 - 244) micro-dollars on day 1), but
    # it is on a specialist by day 3: the recommendation reads the last 24 UTC hours (from
    # 13:00 on day 2: 83,350 s), where faithfulness saves 10 x (13,500 - 82).
    advice = doc["recommendation"]
    assert (advice["step"], advice["step_over_all_traces"], advice["last_day"]) == (
        "faithfulness",
        "rerank",
        True,
    )
    assert advice["seconds"] == pytest.approx(83_350, abs=1e-6)
    assert advice["savings_usd"] == pytest.approx(0.13418, abs=1e-9)
    assert advice["savings_usd_per_week"] == pytest.approx(0.13418 * 604_800 / 83_350, abs=1e-9)


def test_by_week_and_table_series(capsys: pytest.CaptureFixture[str], days_file: Path, config: Path) -> None:
    doc = run_json(capsys, "--config", config, "--by", "week", days_file)
    (week,) = doc["periods"]["series"]
    assert week["start"] == "2026-11-02T00:00:00Z"
    assert week["end"] == "2026-11-09T00:00:00Z"
    assert week["cost_usd"] == pytest.approx(sum(DAY_COSTS_USD), abs=1e-9)
    code, out, _ = run(capsys, "--config", config, "--by", "day", days_file)
    assert code == 0
    assert "By day (UTC):" in out
    assert re.search(r"\n  2026-11-03 +10 +\$0\.1650 +0\.000 +healthy +1\.000 +100\.0% +n/a", out)
    assert re.search(r"\n  2026-11-04 +10 +\$0\.3159 +0\.478 +suspect ", out)
    # faithfulness is 13,500 of day 3's 31,594 micro-dollars: 42.7 %.
    assert (
        "Recommendation: specialize faithfulness next: \N{MINUS SIGN}$0.9736 a week ($0.1342 over the"
        " last 23.2 h of traces; faithfulness is 42.7% of spend); over all 2.0 days it was rerank,"
        " which would save $0.0000 over the last 23.2 h of traces"
    ) in out


def test_plot_png(capsys: pytest.CaptureFixture[str], days_file: Path, config: Path, tmp_path: Path) -> None:
    require_module("matplotlib")
    png = tmp_path / "fraction.png"
    code, _, err = run(capsys, "--config", config, "--plot", png, days_file)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_html(capsys: pytest.CaptureFixture[str], days_file: Path, config: Path, tmp_path: Path) -> None:
    page = tmp_path / "fraction.html"
    code, out, err = run(capsys, "--config", config, "--plot", page, days_file)
    assert code == 0, err
    text = page.read_text()
    assert text.startswith("<!doctype html>")
    assert text.count("<svg") == 2
    assert "alarm 0.3" in text
    assert text.count('<circle cx="') == 3  # one point a day
    assert "2026-11-03: 0.000" in text
    assert "By day" not in out  # --plot alone adds no series to the printed report


def test_plot_suffix_is_checked(capsys: pytest.CaptureFixture[str], seed_file: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "--plot", tmp_path / "x.pdf", seed_file)
    assert code == 2
    assert "use a file ending in .png, .html, .htm, .svg" in err


# -- what-ifs and the CI gate ---------------------------------------------------------------------
def test_specialize_rerank_at_mini(capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path) -> None:
    doc = run_json(capsys, "--config", config, "--specialize", "rerank=mini", seed_file)
    counterfactual = doc["test3_counterfactual"]
    # rerank at mini: 12,000 x 0.05 + 200 x 0.20 = 640; the rest as before: 5 + 16,500 + 82.
    rerank = next(s for s in counterfactual["steps"] if s["step"] == "rerank")
    assert rerank["specialized_cost_usd"] == pytest.approx(REQUESTS * 640e-6, abs=1e-12)
    assert counterfactual["specialized_cost_usd"] == pytest.approx(REQUESTS * 17_227e-6, abs=1e-9)
    assert counterfactual["projected_reduction"] == pytest.approx(1 - 17_227 / 70_350, abs=1e-12)
    generate = next(s for s in counterfactual["steps"] if s["step"] == "generate")
    assert generate["savings_usd"] == 0.0  # the settings' "generate: unchanged" still holds
    doc = run_json(
        capsys, "--config", config, "--specialize", "rerank=mini", "--specialize", "generate=mid", seed_file
    )
    # generate at mid: 3,500 x 0.30 + 400 x 1.20 = 1,530.
    generate = next(s for s in doc["test3_counterfactual"]["steps"] if s["step"] == "generate")
    assert generate["specialized_cost_usd"] == pytest.approx(REQUESTS * 1_530e-6, abs=1e-12)


@pytest.mark.parametrize(("threshold", "expected"), [("0.8", 0), ("0.77", 0), ("0.76", 1), ("0.3", 1)])
def test_fail_above(
    capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path, threshold: str, expected: int
) -> None:
    # The four-step fixture's fraction is 0.76546.
    code, _, err = run(capsys, "--config", config, "--fail-above", threshold, seed_file)
    assert code == expected
    assert ("specialist-eligible fraction 0.765 is above" in err) == (expected == 1)


def test_fail_above_without_spend_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plain = _export(tmp_path / "plain.json", lambda t: t.start_span("GET /health").end())
    code, out, err = run(capsys, "--fail-above", "0.3", plain)
    assert code == 1
    assert "no priced LLM spend in these traces, nothing to check" in err
    assert "Recommendation: no priced LLM spend in these traces" in out


def test_skipped_input_is_summarised(
    capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(seed_file.read_bytes() + b"{oops\n" + b'{"resourceSpans":')
    code, out, err = run(capsys, "--config", config, bad)
    assert code == 0
    assert f"{bad}:{REQUESTS * 5 // 50 + 1}: invalid json:" in err
    assert f"{bad}:{REQUESTS * 5 // 50 + 2}: truncated line:" in err
    assert "skipped 2 lines (invalid json 1, truncated line 1)" in out
    assert "$1.4070" in out  # the good lines still count


# -- clear outcomes ------------------------------------------------------------------------------------
EXPECTED = "expected OpenTelemetry traces: OTLP/JSON"
NOT_TRACES = {
    "empty": (b"", "it is empty"),
    "blank lines": (b"\n\n  \n", "it is empty"),
    "text": (b"hello\nworld\n", "skipped 2 lines (invalid json 2)"),
    "random bytes": (random.Random(25).randbytes(4_000), "skipped "),
    "a length prefix and garbage": (b"\x00\x00\x00\x05abc", "skipped 1 file (truncated file 1)"),
    "json without spans": (b'{"resourceSpans":[]}\n', "it holds 1 record without spans"),
    "json of another kind": (b'{"resourceMetrics":[]}\n', "skipped 1 line (not trace data 1)"),
}


@pytest.mark.parametrize("name", NOT_TRACES)
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_no_trace_data_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, fmt: str
) -> None:
    content, found = NOT_TRACES[name]
    path = tmp_path / "traces.json"
    path.write_bytes(content)
    code, out, err = run(capsys, "--format", fmt, "--fail-above", "0.3", path)
    assert code == 2
    assert out == ""  # no all-zero report
    message = err.splitlines()[-1]
    assert message.startswith(f"otel-overspend report: no spans read from {path}: {found}"), message
    assert EXPECTED in message


def test_no_trace_data_in_many_files_names_the_first(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for i in range(7):
        (tmp_path / f"traces-{i}.json").write_bytes(b"")
    code, out, err = run(capsys, tmp_path)
    assert (code, out) == (2, "")
    named = ", ".join(str(tmp_path / f"traces-{i}.json") for i in range(5))
    assert f"no spans read from {named} and 2 more files: they are empty; {EXPECTED}" in err


def test_partly_unreadable_input_is_reported_and_fails_with_strict(
    capsys: pytest.CaptureFixture[str], seed_file: Path, config: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"hello\nworld\n")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(b"\x00\x00\x01\x00abc")  # a length-prefixed record cut short
    for args, expected in (((), 0), (("--strict",), 2), (("--strict", "--fail-above", "0.1"), 2)):
        code, out, err = run(capsys, "--config", config, *args, seed_file, garbage, cut)
        assert code == expected, err
        assert "3 files, 100 spans" in out  # the report is printed either way
        assert "skipped 2 lines (invalid json 2); 1 file (truncated file 1)" in out
        assert "$1.4070" in out
        assert ("--strict: skipped 2 lines (invalid json 2); 1 file (truncated file 1)" in err) == (
            expected == 2
        )
    code, _, err = run(capsys, "--config", config, "--strict", seed_file)
    assert (code, err) == (0, "")


def test_counts_are_singular_or_plural(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    one = _export(tmp_path / "one.json", lambda t: seed_requests(t, 1))
    for fmt, prefix in (("table", "  "), ("markdown", "- ")):
        code, out, _ = run(capsys, "--config", config, "--format", fmt, one)
        assert code == 0
        assert f"\n{prefix}1 file, 5 spans, " in out
        # $0.07035 a request: the fourth decimal is a tie, which the last bit of the sum decides.
        assert any(
            f"\n{prefix}1 request, 4 LLM calls (0 unpriced), spend ${usd}; nothing skipped\n" in out
            for usd in ("0.0703", "0.0704")
        )
    unknown = _export(
        tmp_path / "unknown.json",
        lambda t: t.start_span("chat x", attributes=llm_attributes("mystery-model", 10, 1)).end(),
    )
    code, out, _ = run(capsys, "--config", config, unknown)
    assert code == 0
    assert "\n  1 file, 1 span, " in out
    assert "\n  1 request, 1 LLM call (1 unpriced), spend $0.0000; nothing skipped\n" in out
    assert "1 LLM call could not be priced: it adds no dollars" in out
    bad = tmp_path / "bad.json"
    bad.write_bytes(one.read_bytes() + b"{oops\n")
    code, out, _ = run(capsys, "--config", config, bad)
    assert "skipped 1 line (invalid json 1)" in out
    code, _, err = run(capsys, "--config", config, "--progress", one)
    assert "read 1 span in " not in err
    assert "read 5 spans in " in err


def test_reorder_options(capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path) -> None:
    # The three days' spans shuffled: a span may come two days before or after its place.
    p = make_pipeline(SETTINGS)
    exported = InMemorySpanExporter()
    export_to(p, exported)
    for day, calls in enumerate((SEED_CALLS, GENERATE_ONLY, SPECIALIST_RERANK)):
        for i in range(10):
            _timed_request(p.tracer, DAY1_NOON_S + day * DAY_S + 60 * i, calls)
    p.provider.shutdown()
    spans = list(exported.get_finished_spans())
    ordered = write_collector_lines(tmp_path / "ordered.json", spans, batch=50)
    shuffled = write_collector_lines(
        tmp_path / "shuffled.json", random.Random(25).sample(spans, len(spans)), batch=7
    )
    expected = run_json(capsys, "--config", config, ordered)
    # A window of three days holds them all: the same report.
    doc = run_json(capsys, "--config", config, "--reorder-window", "3d", shuffled)
    assert (doc["requests"], doc["calls"], doc["per_request"]) == (
        expected["requests"],
        expected["calls"],
        pytest.approx(expected["per_request"], abs=1e-9),
    )
    assert doc["cost_usd"] == pytest.approx(expected["cost_usd"], abs=1e-9)
    assert (doc["inputs"]["reorder"], doc["inputs"]["incomplete_traces"]) == ({}, {})
    assert doc["inputs"]["held_spans_peak"] == len(spans)
    # The default window (300 s) does not: the calls count, the spans out of order are counted.
    code, out, _ = run(capsys, "--config", config, shuffled)
    assert code == 0
    assert re.search(
        r"\n  [0-9,]+ spans came too late to be put in end order \(more than --reorder-window", out
    )
    doc = run_json(capsys, "--config", config, shuffled)
    assert (doc["calls"], doc["cost_usd"]) == (
        expected["calls"],
        pytest.approx(expected["cost_usd"], abs=1e-9),
    )
    assert doc["inputs"]["reorder"]["out_of_order"] > 0
    # Bounds on what is held close the trace that ended first early: counted, and in end
    # order it is complete, so the figures stand.
    code, out, _ = run(capsys, "--config", config, "--max-open-traces", "1", "--max-held-spans", "3", ordered)
    assert code == 0
    assert re.search(r"\n  [0-9,]+ traces closed before the reorder window passed, to hold at most", out)
    doc = run_json(capsys, "--config", config, "--max-open-traces", "1", "--max-held-spans", "3", ordered)
    assert (doc["requests"], doc["calls"]) == (expected["requests"], expected["calls"])
    assert doc["inputs"]["reorder"]["closed_early"] > 0
    assert doc["inputs"]["held_spans_peak"] == 3


# -- usage errors -----------------------------------------------------------------------------------
def test_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, tmp_path / "nope.json")
    assert code == 2
    assert f"no such file or directory: {tmp_path / 'nope.json'}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--specialize", "rerank"], "use STEP=TIER"),
        (["--specialize", "rerank=tiny"], "tier must be one of"),
        (["--specialize", "Rerank=mini"], "invalid step name"),
        (["--fail-above", "1.5"], "must be a fraction between 0 and 1"),
        (["--format", "xml"], "invalid choice"),
        (["--by", "month"], "invalid choice"),
        (["--reorder-window", "soon"], "use seconds or a duration such as 5m"),
        (["--max-open-traces", "0"], "must be a positive whole number"),
    ],
)
def test_bad_options(
    capsys: pytest.CaptureFixture[str], seed_file: Path, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", *args, str(seed_file)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_config(capsys: pytest.CaptureFixture[str], seed_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[specialize]\nrerank = "tiny"\n')
    code, _, err = run(capsys, "--config", bad, seed_file)
    assert code == 2
    assert "invalid settings" in err
    code, _, err = run(capsys, "--config", tmp_path / "none.toml", seed_file)
    assert code == 2
    assert "cannot read the settings" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("use_genai_prices = \n")
    code, _, err = run(capsys, "--config", broken, seed_file)
    assert code == 2
    assert "cannot read the settings" in err
