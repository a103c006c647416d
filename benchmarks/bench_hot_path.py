"""Hot path: added cost of OverspendProcessor over the same SDK pipeline without it.

Pipeline: TracerProvider + BatchSpanProcessor to a no-op exporter; LLM spans carry six
GenAI attributes; a step context is active; each request is a root span with children.

Measured as CPU time, so that a thread's waiting for another does not count: the budget
is on the CPU of the thread that ends the span (the app's own request); the CPU of every
thread, the processor's background counting included, is printed beside it.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from typing import TYPE_CHECKING

from harness import Row, interleaved, per_unit_us
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Tracer

Attrs = dict[str, "str | int"]
LLM_ATTRS: Attrs = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.response.model": "claude-sonnet-4-5",
    "gen_ai.usage.input_tokens": 12_000,
    "gen_ai.usage.output_tokens": 200,
}
PLAIN_ATTRS: Attrs = {"http.request.method": "GET", "url.path": "/search", "db.system": "postgresql"}
SPANS_PER_ROUND = 2_000
CHILDREN = 8


class _Noop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        del spans
        return SpanExportResult.SUCCESS


def pipeline(*, with_processor: bool) -> tuple[TracerProvider, Tracer, OverspendProcessor | None]:
    provider = TracerProvider()
    processor = None
    if with_processor:
        processor = OverspendProcessor(settings=Settings(serve_metrics=False), registry=CollectorRegistry())
        provider.add_span_processor(processor)
    provider.add_span_processor(
        BatchSpanProcessor(_Noop(), max_queue_size=1 << 20, schedule_delay_millis=200)
    )
    return provider, provider.get_tracer("bench"), processor


def emit(tracer: Tracer, attrs: Attrs, n: int) -> None:
    with step("rerank"):
        for _ in range(n // CHILDREN):
            with tracer.start_as_current_span("request"):
                for _ in range(CHILDREN - 1):
                    with tracer.start_as_current_span("call", attributes=attrs):
                        pass


def _cpu_round(tracer: Tracer, attrs: Attrs, processor: OverspendProcessor | None) -> tuple[float, float]:
    """(request thread, all threads) CPU microseconds per span for one round of spans.

    The request thread's CPU is what the app's own thread pays while ending spans; all
    threads' CPU adds the background counting (flushed inside the round) and the
    BatchSpanProcessor's thread, for both pipelines alike.
    """
    gc.collect()
    process0, thread0 = time.process_time(), time.thread_time()
    emit(tracer, attrs, SPANS_PER_ROUND)
    thread1 = time.thread_time()
    if processor is not None:
        processor.force_flush()
    process1 = time.process_time()
    return (thread1 - thread0) / SPANS_PER_ROUND * 1e6, (process1 - process0) / SPANS_PER_ROUND * 1e6


def measure(repeats: int = 31) -> list[Row]:
    base = pipeline(with_processor=False)
    ours = pipeline(with_processor=True)
    for tracer in (base[1], ours[1]):  # warm caches (price resolution, series)
        emit(tracer, LLM_ATTRS, 400)
    rows = []
    for label, attrs, budget in (("LLM span", LLM_ATTRS, 0.15), ("non-LLM span", PLAIN_ATTRS, 0.03)):
        samples: dict[str, list[tuple[float, float]]] = {"sdk": [], "ours": []}
        for _ in range(repeats):  # interleaved
            samples["sdk"].append(_cpu_round(base[1], attrs, None))
            samples["ours"].append(_cpu_round(ours[1], attrs, ours[2]))
        sdk_thread, sdk_all = (statistics.median(s[i] for s in samples["sdk"]) for i in (0, 1))
        our_thread, our_all = (statistics.median(s[i] for s in samples["ours"]) for i in (0, 1))
        added = our_thread / sdk_thread - 1
        rows.append(
            Row(
                f"hot path, {label}",
                f"{added:+.1%} ({sdk_thread:.1f} -> {our_thread:.1f} us)",
                f"<= +{budget:.0%}",
                added <= budget,
            )
        )
        added_all = our_all / sdk_all - 1
        rows.append(
            Row(
                "  ... all threads, incl. counting",
                f"{added_all:+.1%} ({sdk_all:.1f} -> {our_all:.1f} us)",
                "(off the request path)",
                ok=True,
            )
        )
    rows.append(threads(ours[1], ours[2]))
    base[0].shutdown()
    ours[0].shutdown()
    return rows


def threads(tracer: Tracer, processor: OverspendProcessor | None, n_threads: int = 4) -> Row:
    """4 threads emitting together: no lost counts, per-span cost within 1.5x of one thread."""
    assert processor is not None
    per_thread = 4_000

    def one() -> None:
        emit(tracer, LLM_ATTRS, per_thread)
        processor.force_flush()  # the background counting is part of the cost

    def emit_only() -> None:
        emit(tracer, LLM_ATTRS, per_thread)

    def together() -> None:
        workers = [threading.Thread(target=emit_only) for _ in range(n_threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        processor.force_flush()

    def calls() -> float:
        snap = processor.snapshot()
        return sum(stats[0] for stats in snap.totals.values())

    before = calls()
    medians = interleaved(
        {
            "one": lambda: per_unit_us(one, per_thread),
            "four": lambda: per_unit_us(together, per_thread * n_threads),
        },
        repeats=5,
    )
    counted = calls() - before
    llm_per_round = (per_thread // CHILDREN) * (CHILDREN - 1)
    expected = 5 * llm_per_round * (1 + n_threads)
    ratio = medians["four"] / medians["one"]
    return Row(
        f"{n_threads} threads",
        f"x{ratio:.2f} per span, lost {expected - counted:.0f}",
        "<= x1.5, lost 0",
        ratio <= 1.5 and counted == expected,
    )


if __name__ == "__main__":
    from harness import print_table

    print_table(measure())
