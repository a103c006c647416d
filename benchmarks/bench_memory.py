"""Memory: RSS growth over 2M spans carrying 10k distinct model names and 200k distinct traces.

Spans go through the processor's hooks (``on_start`` / ``on_end``) as the SDK would call them;
each request is a root span with two LLM children. Growth is measured after a warm-up that
has already seen every distinct model name once, so it shows what the bounded tables keep,
not one-time imports.
"""

from __future__ import annotations

import gc
import random
import time

from harness import Row, rss_bytes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step

SPANS = 2_000_000
MODELS = 10_000
TRACES = 200_000
SPANS_PER_TRACE = SPANS // TRACES  # 1 root + 9 LLM children
RESOURCE = Resource.get_empty()  # one for all spans, as in an app


def _span(
    name: str, trace_id: int, span_id: int, *, parent: SpanContext | None, attrs: dict[str, object], t: int
) -> ReadableSpan:
    ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1))
    return ReadableSpan(
        name=name,
        context=ctx,
        parent=parent,
        resource=RESOURCE,
        attributes=attrs,  # type: ignore[arg-type]
        start_time=t - 1_000_000,
        end_time=t,
    )


def run(processor: OverspendProcessor, traces: range, rng: random.Random) -> None:
    now_ns = time.time_ns()
    with step("rerank"):
        for trace in traces:
            trace_id = trace + 1
            root = _span("request", trace_id, trace_id << 8, parent=None, attrs={}, t=now_ns)
            processor.on_start(root)  # type: ignore[arg-type]
            children = []
            for child in range(1, SPANS_PER_TRACE):
                model = f"acme-model-{rng.randrange(MODELS)}"
                attrs = {
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 1_000,
                    "gen_ai.usage.output_tokens": 100,
                }
                span = _span(
                    "chat", trace_id, (trace_id << 8) + child, parent=root.context, attrs=attrs, t=now_ns
                )
                processor.on_start(span)  # type: ignore[arg-type]
                children.append(span)
            for span in children:
                processor.on_end(span)
            processor.on_end(root)


def measure() -> list[Row]:
    settings = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)
    processor = OverspendProcessor(settings=settings, registry=CollectorRegistry())
    rng = random.Random(7)
    warm = TRACES // 10
    run(processor, range(warm), rng)  # sees (nearly) every model name once
    gc.collect()
    before = rss_bytes()
    run(processor, range(warm, TRACES), rng)
    processor.snapshot()
    gc.collect()
    growth_mb = (rss_bytes() - before) / 2**20
    counted = sum(stats[0] for stats in processor.snapshot().totals.values())
    expected = TRACES * (SPANS_PER_TRACE - 1)
    return [
        Row(
            "memory, 2M spans / 10k models / 200k traces",
            f"+{growth_mb:.1f} MB RSS, lost {expected - counted:.0f}",
            "<= 20 MB",
            growth_mb <= 20 and counted == expected,
        )
    ]


if __name__ == "__main__":
    from harness import print_table

    print_table(measure())
