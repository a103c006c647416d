"""Scrape cost: one /metrics render with 50 models x 10 steps x 4 windows, after 10k and 1M calls.

The render time must not depend on how many spans were seen, only on how many series exist.
The ratio is the median over 201 pairs of renders back to back (the host's speed moves by
more between renders a few milliseconds apart than the budget allows, so the ratio of two
medians moved by +-0.1 between runs).
Calls go straight into the processor's ledger (the same objects the span path uses), spread
over the last hour so that every window holds every series.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import TYPE_CHECKING

from harness import Row, interleaved
from prometheus_client import CollectorRegistry, generate_latest

from otel_overspend import OverspendProcessor, Settings
from otel_overspend.calls.conventions import Usage
from otel_overspend.exporters.prometheus import render_registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.config.components import Components

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
    render_registry(registry, processor.collector)
    return (time.perf_counter() - start) * 1e3


def _render_registry(registry: CollectorRegistry) -> float:
    """The same through prometheus_client alone (an app serving the registry itself)."""
    start = time.perf_counter()
    generate_latest(registry)
    return (time.perf_counter() - start) * 1e3


def _paired_ratio(small: Callable[[], float], large: Callable[[], float], repeats: int) -> float:
    """The median over pairs of renders, one after the other in alternating order, of the
    large one's time over the small one's: the host's speed moves between pairs, not within
    one. Each render follows a full collection, as a scrape follows 15 s of the app's work:
    neither finds the other's data in the caches."""
    ratios = []
    for i in range(repeats):
        first, second = (small, large) if i % 2 else (large, small)
        gc.collect()
        t_first = first()
        gc.collect()
        t_second = second()
        ratios.append(t_second / t_first if i % 2 else t_first / t_second)
    return statistics.median(ratios)


def measure(repeats: int = 21, pairs: int = 201) -> list[Row]:
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
    ratio = _paired_ratio(lambda: _render(small, small_p), lambda: _render(large, large_p), pairs)
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
