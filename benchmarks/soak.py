"""Soak: a steady stream of LLM spans for minutes, scraped every second, then checks.

    python benchmarks/soak.py                  # 10 minutes at 2,000 LLM spans/s
    python benchmarks/soak.py --duration 30    # the CI version (tests/reliability/test_soak.py)

Each request is the four-step fixture of ``REQUEST`` (rewrite, rerank, generate,
faithfulness: 4 frontier calls, $0.07035), made by a few app threads at a paced rate
through a real TracerProvider with the processor and a BatchSpanProcessor exporting
through ``OverspendSpanExporter``. One request in 50 uses a model name from a pool of 500
(beyond the model label cap), so the label caps and caches are exercised. A scraper reads
``/metrics`` over HTTP every second.

Checks (exit status 1 if one fails): the rate was sustained; counters never went down
between scrapes; the final scrape counts every generated call, request and dollar (nothing
lost, nothing counted twice, nothing dropped); every scrape answered; RSS grew at most
``--rss-budget`` percent from the end of the warm-up to the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, OverspendSpanExporter, Settings, step

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util.types import AttributeValue

#: One RAG request: (step, input tokens, output tokens), all frontier ($3 / $15 per 1M).
REQUEST = (
    ("rewrite", 200, 50),
    ("rerank", 12_000, 200),
    ("generate", 3_500, 400),
    ("faithfulness", 4_000, 100),
)
REQUEST_MICRO_USD = sum(i * 3 + o * 15 for _, i, o in REQUEST)  # 70,350 micro-dollars: $0.07035
CALLS_PER_REQUEST = len(REQUEST)
MODEL_POOL = 500
OTHER_MODEL_EVERY = 50


@dataclass
class Report:
    duration_s: float
    target_spans_per_s: float
    llm_spans_per_s: float = 0.0
    requests: int = 0
    calls: int = 0
    counted_calls: float = 0.0
    counted_requests: float = 0.0
    cost_usd: float = 0.0
    counted_cost_usd: float = 0.0
    dropped: float = 0.0
    scrapes: int = 0
    failed_scrapes: int = 0
    slowest_scrape_s: float = 0.0
    counter_decreases: int = 0
    exported_spans: int = 0
    rss_warm_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_growth_percent: float = 0.0
    failures: list[str] = field(default_factory=list)


class _CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def parse(body: str) -> dict[str, float]:
    """Sum of every sample of each ``*_total`` counter family in a scrape."""
    totals: dict[str, float] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        if name.endswith("_total"):
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


class Soak:
    def __init__(self, *, rate: float, threads: int) -> None:
        self.registry = CollectorRegistry()
        self.processor = OverspendProcessor(
            settings=Settings(
                metrics_port=0, use_genai_prices=False, model_tiers={"acme-*": "frontier"}, max_models=50
            ),
            registry=self.registry,
        )
        self.exporter = _CountingExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                OverspendSpanExporter(self.exporter, processor=self.processor), max_queue_size=8192
            )
        )
        self.tracer = self.provider.get_tracer("soak")
        self.steps = {name: step(name) for name, _, _ in REQUEST}
        self.requests_per_s = rate / CALLS_PER_REQUEST / threads
        self.threads = threads
        self.stop = threading.Event()
        self.made = [0] * threads  # requests made, per thread

    def request(self, n: int) -> None:
        other = n % OTHER_MODEL_EVERY == 0
        with self.tracer.start_as_current_span("request"):
            for k, (name, tokens_in, tokens_out) in enumerate(REQUEST):
                model = f"acme-{n % MODEL_POOL}" if other and k == 1 else "acme-frontier"
                attributes: dict[str, AttributeValue] = {
                    "gen_ai.request.model": model,
                    "gen_ai.provider.name": "acme",
                    "gen_ai.usage.input_tokens": tokens_in,
                    "gen_ai.usage.output_tokens": tokens_out,
                }
                with self.steps[name], self.tracer.start_as_current_span("chat", attributes=attributes):
                    pass

    def app_thread(self, index: int) -> None:
        interval = 1.0 / self.requests_per_s
        next_at = time.monotonic()
        n = index
        while not self.stop.is_set():
            self.request(n)
            self.made[index] += 1
            n += self.threads
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)

    def scrape(self, url: str, report: Report, last: dict[str, float]) -> dict[str, float]:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our loopback endpoint
                totals = parse(response.read().decode())
        except OSError:
            report.failed_scrapes += 1
            return last
        report.scrapes += 1
        report.slowest_scrape_s = max(report.slowest_scrape_s, time.monotonic() - started)
        report.counter_decreases += sum(1 for name, value in last.items() if totals.get(name, 0.0) < value)
        return totals


def run(duration_s: float, *, rate: float, threads: int, warmup_s: float) -> Report:
    soak = Soak(rate=rate, threads=threads)
    server = soak.processor.metrics_server
    if server is None:
        raise RuntimeError("the metrics endpoint did not start")
    report = Report(duration_s=duration_s, target_spans_per_s=rate)
    workers = [threading.Thread(target=soak.app_thread, args=(i,), daemon=True) for i in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    totals: dict[str, float] = {}
    warm = False
    while (elapsed := time.monotonic() - started) < duration_s:
        time.sleep(max(0.0, 1.0 - (elapsed % 1.0)))
        totals = soak.scrape(server.url, report, totals)
        if not warm and time.monotonic() - started >= warmup_s:
            warm = True
            report.rss_warm_mib = rss_mib()
    soak.stop.set()
    for worker in workers:
        worker.join()
    ran_s = time.monotonic() - started
    soak.provider.force_flush()
    final = soak.scrape(server.url, report, totals)
    report.rss_end_mib = rss_mib()
    soak.provider.shutdown()

    report.requests = sum(soak.made)
    report.calls = report.requests * CALLS_PER_REQUEST
    report.llm_spans_per_s = report.calls / ran_s
    report.cost_usd = report.requests * REQUEST_MICRO_USD / 1e6
    report.counted_calls = final.get("overspend_llm_calls_total", 0.0)
    report.counted_requests = final.get("overspend_requests_total", 0.0)
    report.counted_cost_usd = final.get("overspend_llm_cost_usd_total", 0.0)
    report.dropped = final.get("overspend_spans_dropped_total", 0.0)
    report.exported_spans = soak.exporter.exported
    if report.rss_warm_mib:
        report.rss_growth_percent = (report.rss_end_mib - report.rss_warm_mib) / report.rss_warm_mib * 100
    return report


def check(report: Report, *, rss_budget_percent: float) -> Report:
    failures = report.failures
    if report.llm_spans_per_s < report.target_spans_per_s * 0.98:
        failures.append(
            f"rate {report.llm_spans_per_s:.0f} LLM spans/s < target {report.target_spans_per_s:.0f}"
        )
    if report.counted_calls != report.calls:
        failures.append(f"calls: generated {report.calls}, counted {report.counted_calls:.0f}")
    if report.counted_requests != report.requests:
        failures.append(f"requests: generated {report.requests}, counted {report.counted_requests:.0f}")
    if round(report.counted_cost_usd, 2) != round(report.cost_usd, 2):
        failures.append(f"cost: generated ${report.cost_usd:.2f}, counted ${report.counted_cost_usd:.2f}")
    if report.dropped:
        failures.append(f"{report.dropped:.0f} spans dropped")
    if report.counter_decreases:
        failures.append(f"{report.counter_decreases} counter decreases between scrapes")
    if report.failed_scrapes or report.scrapes < report.duration_s * 0.9:
        failures.append(f"scrapes: {report.scrapes} answered, {report.failed_scrapes} failed")
    if not report.rss_warm_mib:
        failures.append("the run ended before the warm-up did: no RSS baseline")
    elif report.rss_growth_percent > rss_budget_percent:
        failures.append(
            f"RSS grew {report.rss_growth_percent:.1f} % after warm-up (budget {rss_budget_percent} %)"
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run (default 600)")
    parser.add_argument("--rate", type=float, default=2_000.0, help="LLM spans per second (default 2000)")
    parser.add_argument("--threads", type=int, default=2, help="app threads making requests (default 2)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the RSS baseline")
    parser.add_argument(
        "--rss-budget", type=float, default=5.0, help="RSS growth allowed, percent (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else min(60.0, args.duration / 3)
    report = check(
        run(args.duration, rate=args.rate, threads=args.threads, warmup_s=warmup),
        rss_budget_percent=args.rss_budget,
    )
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(f"ran {report.duration_s:.0f} s: {report.requests} requests, {report.calls} LLM calls")
        print(f"rate: {report.llm_spans_per_s:.0f} LLM spans/s (target {report.target_spans_per_s:.0f})")
        print(
            f"counted: {report.counted_calls:.0f} calls, {report.counted_requests:.0f} requests, "
            f"${report.counted_cost_usd:.2f} of ${report.cost_usd:.2f}; dropped {report.dropped:.0f}"
        )
        print(
            f"scrapes: {report.scrapes} answered, {report.failed_scrapes} failed, "
            f"slowest {report.slowest_scrape_s * 1000:.0f} ms, {report.counter_decreases} counter decreases"
        )
        print(
            f"RSS: {report.rss_warm_mib:.1f} MiB after warm-up, {report.rss_end_mib:.1f} MiB at the end "
            f"({report.rss_growth_percent:+.2f} %)"
        )
        print("OK" if not report.failures else "FAILED:\n  " + "\n  ".join(report.failures))
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
