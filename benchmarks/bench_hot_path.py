"""Hot path: added cost of OverspendProcessor over the same SDK pipeline without it.

Pipeline: TracerProvider + BatchSpanProcessor to a no-op exporter; LLM spans carry six
GenAI attributes; a step context is active; each request is a root span with children.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from harness import Row, interleaved, per_unit_us
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

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


def _round(tracer: Tracer, attrs: Attrs) -> Callable[[], float]:
    return lambda: per_unit_us(lambda: emit(tracer, attrs, SPANS_PER_ROUND), SPANS_PER_ROUND)


def measure(repeats: int = 15) -> list[Row]:
    base = pipeline(with_processor=False)
    ours = pipeline(with_processor=True)
    for tracer in (base[1], ours[1]):  # warm caches (price resolution, series)
        emit(tracer, LLM_ATTRS, 400)
    rows = []
    for label, attrs, budget in (("LLM span", LLM_ATTRS, 0.15), ("non-LLM span", PLAIN_ATTRS, 0.03)):
        medians = interleaved(
            {"sdk": _round(base[1], attrs), "ours": _round(ours[1], attrs)}, repeats=repeats
        )
        added = medians["ours"] / medians["sdk"] - 1
        rows.append(
            Row(
                f"hot path, {label}",
                f"{added:+.1%} ({medians['sdk']:.1f} -> {medians['ours']:.1f} us)",
                f"<= +{budget:.0%}",
                added <= budget,
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

    def together() -> None:
        workers = [threading.Thread(target=one) for _ in range(n_threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

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
