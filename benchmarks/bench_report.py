"""Throughput and memory of ``otel-overspend report`` on a synthetic week of traces.

    .venv/bin/python benchmarks/bench_report.py                 # 200k and 1M spans
    .venv/bin/python benchmarks/bench_report.py --spans 300000 --profile
    .venv/bin/python benchmarks/bench_report.py --spans 200000 --stages  # where the time goes

Each request of the synthetic RAG service is a root span, four LLM spans (rewrite,
rerank, generate, faithfulness, token volumes 200/50, 12,000/200, 3,500/400 and 4,000/100
in/out as in ``STEPS``, with +-10 % jitter) and a retrieve span, with the attributes real
instrumentations write, exported children first in the collector file exporter's OTLP/JSON
lines (600 spans a line). Rerank moves from the frontier model to a specialist reranker
mid-week.

Printed: spans a second of the report in this process (best of ``--repeat``), the peak RSS
of ``otel-overspend report`` run as a child process on each file size (flat: memory
does not grow with the file), and the time of a batch pandas computation of Test 3, the
counterfactual (a DataFrame of the same calls and a row-wise ``df.apply`` cost), for a
ratio. pandas is a benchmark-only dependency.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from harness import Row

from otel_overspend.config.settings import Settings
from otel_overspend.report.files import Problems, read_records
from otel_overspend.report.otlp_json import Processes, attribute_keys, line_decoder
from otel_overspend.report.run import build_report

if TYPE_CHECKING:
    from collections.abc import Iterator

WEEK_START_S = 1_793_577_600  # Monday 2026-11-02 00:00 UTC
WEEK_S = 7 * 86_400
FRONTIER = ("claude-sonnet-4-5", "anthropic")
RERANKER = ("zerank-2", "zeroentropy")
STEPS = (
    ("rewrite", 200, 50),
    ("rerank", 12_000, 200),
    ("generate", 3_500, 400),
    ("faithfulness", 4_000, 100),
)
SPANS_PER_REQUEST = 6
REQUESTS_PER_LINE = 100
#: USD per 1M tokens (input, output) of each tier, for the pandas comparison.
PRICES = {"frontier": (3.0, 15.0), "specialist": (0.02, 0.02)}
SPECIALIZE = {
    "rewrite": "specialist",
    "rerank": "specialist",
    "generate": "frontier",
    "faithfulness": "specialist",
}

RESOURCE = (
    '{"resourceSpans":[{"resource":{"attributes":['
    '{"key":"service.name","value":{"stringValue":"rag-api"}},'
    '{"key":"service.instance.id","value":{"stringValue":"7c1f4a2e-0b9d-4c55-9e61-2f0b1d3c4e5f"}},'
    '{"key":"host.name","value":{"stringValue":"rag-api-7d9f8b6c5-x2k4q"}},'
    '{"key":"telemetry.sdk.language","value":{"stringValue":"python"}},'
    '{"key":"telemetry.sdk.name","value":{"stringValue":"opentelemetry"}},'
    '{"key":"telemetry.sdk.version","value":{"stringValue":"1.45.2"}}]},'
    '"scopeSpans":[{"scope":{"name":"opentelemetry.instrumentation.openai_v2","version":"2.4b0"},"spans":['
)


def _llm_span(
    ids: tuple[str, str, str],
    step: str,
    model: tuple[str, str],
    tokens: tuple[int, int],
    times: tuple[int, int],
) -> str:
    (trace, span, parent), (name, provider), (tin, tout), (start, end) = ids, model, tokens, times
    return (
        f'{{"traceId":"{trace}","spanId":"{span}","parentSpanId":"{parent}","name":"chat {name}","kind":3,'
        f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":['
        '{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},'
        f'{{"key":"gen_ai.provider.name","value":{{"stringValue":"{provider}"}}}},'
        f'{{"key":"gen_ai.request.model","value":{{"stringValue":"{name}"}}}},'
        f'{{"key":"gen_ai.response.model","value":{{"stringValue":"{name}"}}}},'
        '{"key":"gen_ai.request.max_tokens","value":{"intValue":"1024"}},'
        '{"key":"gen_ai.request.temperature","value":{"doubleValue":0.2}},'
        f'{{"key":"gen_ai.response.id","value":{{"stringValue":"msg_{span}"}}}},'
        '{"key":"gen_ai.response.finish_reasons","value":{"arrayValue":{"values":[{"stringValue":"stop"}]}}},'
        f'{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"{tin}"}}}},'
        f'{{"key":"gen_ai.usage.output_tokens","value":{{"intValue":"{tout}"}}}},'
        '{"key":"server.address","value":{"stringValue":"api.anthropic.com"}},'
        f'{{"key":"overspend.step","value":{{"stringValue":"{step}"}}}}],'
        '"status":{},"flags":256}'
    )


def _other_span(trace: str, span: str, parent: str, start: int, end: int) -> str:
    if parent:
        return (
            f'{{"traceId":"{trace}","spanId":"{span}","parentSpanId":"{parent}","name":"retrieve","kind":1,'
            f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":['
            '{"key":"db.system.name","value":{"stringValue":"qdrant"}},'
            '{"key":"db.operation.name","value":{"stringValue":"search"}},'
            '{"key":"rag.documents","value":{"intValue":"50"}},'
            '{"key":"overspend.step","value":{"stringValue":"retrieve"}}],"status":{},"flags":256}'
        )
    return (
        f'{{"traceId":"{trace}","spanId":"{span}","parentSpanId":"","name":"POST /answer","kind":2,'
        f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}","attributes":['
        '{"key":"http.request.method","value":{"stringValue":"POST"}},'
        '{"key":"http.route","value":{"stringValue":"/answer"}},'
        '{"key":"url.path","value":{"stringValue":"/answer"}},'
        '{"key":"http.response.status_code","value":{"intValue":"200"}},'
        '{"key":"server.address","value":{"stringValue":"rag.internal"}},'
        '{"key":"client.address","value":{"stringValue":"10.0.3.17"}},'
        '{"key":"user_agent.original","value":{"stringValue":"python-httpx/0.28.1"}}],"status":{},"flags":256}'
    )


def _requests(n: int, rng: random.Random) -> Iterator[tuple[str, list[tuple[str, int, int]]]]:
    """(one request's spans as JSON, its calls as (step, tokens in, tokens out))."""
    gap_ns = WEEK_S * 1_000_000_000 // n
    for i in range(n):
        t0 = WEEK_START_S * 1_000_000_000 + i * gap_ns
        trace = f"{rng.getrandbits(128):032x}"
        root = f"{rng.getrandbits(64) | 1:016x}"
        spans: list[str] = []
        calls: list[tuple[str, int, int]] = []
        t = t0 + 1_000_000
        late_week = i >= n * 4 // 7
        for k, (step, tin, tout) in enumerate(STEPS):
            if k == 1:  # retrieve, between rewrite and rerank
                spans.append(_other_span(trace, f"{rng.getrandbits(64) | 1:016x}", root, t, t + 40_000_000))
                t += 41_000_000
            model = RERANKER if step == "rerank" and late_week else FRONTIER
            tokens_in = round(tin * rng.uniform(0.9, 1.1))
            tokens_out = round(tout * rng.uniform(0.9, 1.1))
            duration = rng.randint(200_000_000, 2_000_000_000)
            spans.append(
                _llm_span(
                    (trace, f"{rng.getrandbits(64) | 1:016x}", root),
                    step,
                    model,
                    (tokens_in, tokens_out),
                    (t, t + duration),
                )
            )
            calls.append((step, tokens_in, tokens_out))
            t += duration + 1_000_000
        spans.append(_other_span(trace, root, "", t0, t + 1_000_000))
        yield ",".join(spans), calls


def generate(path: Path, spans: int, *, seed: int = 7) -> list[tuple[int, str, int, int]]:
    """Write about ``spans`` spans to ``path``; return every call as (request, step, in, out)."""
    rng = random.Random(seed)
    n = max(1, spans // SPANS_PER_REQUEST)
    calls: list[tuple[int, str, int, int]] = []
    batch: list[str] = []
    with path.open("w") as out:
        for i, (body, request_calls) in enumerate(_requests(n, rng)):
            batch.append(body)
            calls += [(i, step, tin, tout) for step, tin, tout in request_calls]
            if len(batch) == REQUESTS_PER_LINE:
                out.write(RESOURCE + ",".join(batch) + "]}]}]}\n")
                batch = []
        if batch:
            out.write(RESOURCE + ",".join(batch) + "]}]}]}\n")
    return calls


def warm_up(path: Path, settings: Settings) -> None:
    """A report on a few requests of both models beside ``path``: imports, price data and
    model lookups are paid once, not per span (an empty report prices nothing)."""
    warm = path.with_name("warm-up.json")
    generate(warm, 60)
    build_report([warm], settings=settings)


@dataclass(frozen=True)
class Timing:
    """CPU seconds of repeated reports on one file: the best run (what the code takes when
    the shared host lets it have the core) and the median (what the host's load left)."""

    spans: int
    best_cpu_s: float
    median_cpu_s: float
    best_wall_s: float

    @property
    def best_rate(self) -> float:
        return self.spans / self.best_cpu_s

    @property
    def median_rate(self) -> float:
        return self.spans / self.median_cpu_s


def time_report(path: Path, repeat: int, *, profile: bool) -> tuple[Timing, Any]:
    """CPU and wall seconds of ``repeat`` reports on ``path`` (settings loaded and
    genai-prices imported once before), and the last report."""
    settings = Settings(serve_metrics=False)
    warm_up(path, settings)
    walls: list[float] = []
    cpus: list[float] = []
    report = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        report = build_report([path], settings=settings, problems=Problems(stream=sys.stderr))
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(build_report, [path], settings=settings, problems=Problems(stream=sys.stderr))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    assert report is not None
    timing = Timing(report.inputs.spans, min(cpus), statistics.median(cpus), min(walls))
    return timing, report


class _NoRecorder:
    """Stands in for the :class:`~otel_overspend.accounting.recorder.Recorder`: the replay without
    the recording (attribution, pricing, requests, sums)."""

    def __init__(self, **_: object) -> None:
        pass

    def record(self, *_: object, **__: object) -> None:
        return None

    def flush(self, *_: object) -> None:
        return None

    def expire(self, *_: object) -> None:
        return None


def stage_seconds(path: Path) -> dict[str, float]:
    """CPU seconds of each stage of a report on ``path``: reading its lines, decoding
    them, replaying the spans, recording them (each the best of two, the garbage
    collector paused as in a report)."""
    settings = Settings(serve_metrics=False)
    warm_up(path, settings)

    def read() -> None:
        for _ in read_records(path):
            pass

    def decode() -> None:
        lines = line_decoder(attribute_keys(settings), Processes())
        for record in read_records(path):
            lines(record.data, print)

    def replay() -> None:
        with mock.patch("otel_overspend.report.run.Recorder", _NoRecorder):
            build_report([path], settings=settings)

    def report() -> None:
        build_report([path], settings=settings)

    cumulative: dict[str, float] = {}
    for name, run in (("read", read), ("decode", decode), ("replay", replay), ("record", report)):
        best = float("inf")
        for _ in range(2):
            gc.disable()
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
            gc.enable()
        cumulative[name] = best
    stages, before = {}, 0.0
    for name, seconds in cumulative.items():
        stages[name], before = max(0.0, seconds - before), seconds
    return stages


#: Runs the command line in a child and prints its peak RSS (VmHWM, in kB) last on stderr.
#: The child's own high-water mark: a fork's copy of this (large) process is not counted.
_CHILD = """
import sys
from otel_overspend.cli import main
code = main(["report", "--format", "json", sys.argv[1]])
status = open("/proc/self/status").read().splitlines()
print(next(line for line in status if line.startswith("VmHWM")).split()[1], file=sys.stderr)
sys.exit(code)
"""


def peak_rss_mb(path: Path) -> float:
    """Peak RSS of ``otel-overspend report PATH`` run as a child process (Linux)."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=True,
    )
    return int(done.stderr.split()[-1]) / 1024


def pandas_test3(calls: list[tuple[int, str, int, int]]) -> tuple[float, float, float]:
    """Test 3 as a batch pandas job, row-wise; returns (seconds, cost now, cost specialized)."""
    pd: Any = importlib.import_module("pandas")  # a benchmark-only dependency

    def cost(tier: str, tokens_in: float, tokens_out: float) -> float:
        price_in, price_out = PRICES[tier]
        return (tokens_in * price_in + tokens_out * price_out) / 1_000_000

    started = time.perf_counter()
    df = pd.DataFrame(calls, columns=["req", "step", "tok_in", "tok_out"])
    df["cost_now"] = df.apply(lambda r: cost("frontier", r.tok_in, r.tok_out), axis=1)
    df["cost_specialized"] = df.apply(lambda r: cost(SPECIALIZE[r.step], r.tok_in, r.tok_out), axis=1)
    by_step = df.groupby("step").agg(
        cost_now=("cost_now", "sum"), cost_specialized=("cost_specialized", "sum")
    )
    now, specialized = float(by_step["cost_now"].sum()), float(by_step["cost_specialized"].sum())
    return time.perf_counter() - started, now, specialized


def measure(sizes: tuple[int, int] = (200_000, 1_000_000), repeat: int = 3) -> list[Row]:
    """The report's figures for ``tasks.py bench``: throughput on the larger file, and the
    CLI's peak RSS on both (flat: it must not grow with the file)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss: list[float] = []
        timing = None
        for spans in sizes:
            path = Path(tmp) / f"traces-{spans}.json"
            generate(path, spans)
            if spans == sizes[-1]:
                timing, _ = time_report(path, repeat, profile=False)
            rss.append(peak_rss_mb(path))
            path.unlink()
    assert timing is not None
    growth = rss[-1] / rss[0]
    return [
        Row(
            f"offline report, {timing.spans:,} spans, one core",
            f"{timing.best_rate:,.0f}/s best of {repeat}, median {timing.median_rate:,.0f}",
            ">= 100,000 spans/s",
            timing.best_rate >= 100_000,
        ),
        Row(
            f"  ... peak RSS, {sizes[0]:,} / {sizes[-1]:,} spans",
            f"{rss[0]:.0f} / {rss[-1]:.0f} MB (x{growth:.2f})",
            "flat (<= x1.2)",
            growth <= 1.2,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of one run on the largest file"
    )
    parser.add_argument("--no-pandas", action="store_true")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="print the CPU seconds of each stage (read, decode, replay, record) on the largest file",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = sorted(args.spans)
        for spans in sizes:
            path = Path(tmp) / f"traces-{spans}.json"
            started = time.perf_counter()
            calls = generate(path, spans)
            made = time.perf_counter() - started
            size_mb = path.stat().st_size / 1e6
            largest = spans == sizes[-1]
            timing, report = time_report(path, args.repeat, profile=args.profile and largest)
            read = timing.spans
            print(
                f"{read:>9,} spans ({size_mb:,.0f} MB, written in {made:.1f} s): "
                f"{timing.best_rate:,.0f} spans/s a core at best of {args.repeat} "
                f"({timing.best_cpu_s:.2f} s CPU, {timing.best_wall_s:.2f} s wall), "
                f"median {timing.median_rate:,.0f}; peak RSS of the CLI {peak_rss_mb(path):,.0f} MB",
                flush=True,
            )
            d = report.diagnosis
            print(
                f"          fraction {d.specialist_eligible_fraction:.4f}, spend ${d.cost_usd:,.2f}, "
                f"next: {report.advice.diagnosis.next_step_to_specialize} "
                f"(-${report.next_step_savings_usd_per_week or 0:,.2f} a week)",
                flush=True,
            )
            if largest and args.stages:
                stages = stage_seconds(path)
                total = sum(stages.values())
                print(
                    "          stages (CPU): "
                    + ", ".join(f"{name} {s:.2f} s ({s / total:.0%})" for name, s in stages.items()),
                    flush=True,
                )
            if largest and not args.no_pandas:
                pandas_s, now, specialized = pandas_test3(calls)
                print(
                    f"          batch pandas Test 3 on the same {len(calls):,} calls (already in memory): "
                    f"{pandas_s:.2f} s ({pandas_s / timing.best_wall_s:.1f}x the whole report from disk); "
                    f"now ${now:,.2f}, specialized ${specialized:,.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
