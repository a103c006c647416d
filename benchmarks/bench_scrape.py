"""Scrape cost: one /metrics render with 50 models x 10 steps x 4 windows, after 10k and 1M calls.

The render time must not depend on how many spans were seen, only on how many series exist.
Calls go straight into the processor's ledger (the same objects the span path uses), spread
over the last hour so that every window holds every series.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from harness import Row, interleaved
from prometheus_client import CollectorRegistry, generate_latest

from otel_overspend import OverspendProcessor, Settings
from otel_overspend.conventions import Usage
from otel_overspend.exposition import render_registry

if TYPE_CHECKING:
    from otel_overspend.components import Components

MODELS = [f"acme-model-{i}" for i in range(50)]
STEPS = [
    "rewrite",
    "retrieve",
    "rerank",
    "generate",
    "faithfulness",
    "route",
    "classify",
    "embed",
    "judge",
    "plan",
]


def _loaded(calls: int) -> tuple[CollectorRegistry, OverspendProcessor]:
    registry = CollectorRegistry()
    settings = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)
    processor = OverspendProcessor(settings=settings, registry=registry)
    parts: Components = processor._parts  # noqa: SLF001 - feed the ledger directly, without 1M spans
    attribute, add = parts.attributor.attribute, parts.ledger.add_call
    now = time.time()
    series = [(m, s) for m in MODELS for s in STEPS]
    for i in range(calls):
        model, step = series[i % len(series)]
        add(attribute(Usage(model, "acme", 1_000, 100, 0, 0, None), step), now - 3_000 * (i / calls))
    return registry, processor


def _render(registry: CollectorRegistry, processor: OverspendProcessor) -> float:
    """One render of what /metrics serves: the registry, this package's families fast."""
    start = time.perf_counter()
    render_registry(registry, processor._collector)  # noqa: SLF001 - what the endpoint calls
    return (time.perf_counter() - start) * 1e3


def _render_registry(registry: CollectorRegistry) -> float:
    """The same through prometheus_client alone (an app serving the registry itself)."""
    start = time.perf_counter()
    generate_latest(registry)
    return (time.perf_counter() - start) * 1e3


def measure(repeats: int = 21) -> list[Row]:
    small, small_p = _loaded(10_000)
    large, large_p = _loaded(1_000_000)
    medians = interleaved(
        {
            "10k": lambda: _render(small, small_p),
            "1M": lambda: _render(large, large_p),
            "registry": lambda: _render_registry(large),
        },
        repeats=repeats,
    )
    ratio = medians["1M"] / medians["10k"]
    worst = max(medians["10k"], medians["1M"])
    return [
        Row(
            "scrape, 500 series x 4 windows",
            f"{medians['10k']:.2f} ms after 10k, {medians['1M']:.2f} after 1M",
            "<= 5 ms",
            worst <= 5.0,
        ),
        Row("  ... 1M / 10k spans", f"x{ratio:.2f}", "<= x1.2", ratio <= 1.2),
        Row(
            "  ... via prometheus_client alone",
            f"{medians['registry']:.2f} ms",
            "(an app serving the registry)",
            ok=True,
        ),
    ]


if __name__ == "__main__":
    from harness import print_table

    print_table(measure())
