"""Prometheus exposition: a custom collector that renders the ledger at scrape time.

Counters come from the ledger's cumulative totals, so ``sum(rate(...))`` across replicas
is the fleet-wide truth. The snapshot is taken under the ledger's lock; rendering happens
outside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from otel_overspend.ledger import CACHE_READ, CALLS, COST, INPUT, OUTPUT, REASONING, SPECIALIZED, UNPRICED

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from prometheus_client.metrics_core import Metric

    from otel_overspend.ledger import Histogram, Snapshot

__all__ = ("TOKEN_KINDS", "OverspendCollector", "Status")

_CALL_LABELS = ["step", "model", "tier", "provider"]
TOKEN_KINDS = (("input", INPUT), ("output", OUTPUT), ("cache_read", CACHE_READ), ("reasoning", REASONING))


class Status:
    """Counts that live outside the ledger: drops, label overflows, evictions."""

    def __init__(
        self,
        *,
        dropped: dict[str, int],
        label_overflow: dict[str, int],
        requests_evicted: dict[str, int],
    ) -> None:
        self.dropped = dropped
        self.label_overflow = label_overflow
        self.requests_evicted = requests_evicted


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*hist.bounds, float("inf")), hist.counts, strict=False):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.total)


class OverspendCollector(Collector):
    """Renders counters from a snapshot, plus whatever extra families ``extra`` yields."""

    def __init__(
        self,
        *,
        snapshot: Callable[[], tuple[Snapshot, Status]],
        extra: Callable[[Snapshot], Iterable[Metric]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._extra = extra

    def describe(self) -> Iterator[Metric]:
        # Names only, so that registering two collectors with one name fails at once.
        yield CounterMetricFamily("overspend_llm_calls", "", labels=_CALL_LABELS)

    def collect(self) -> Iterator[Metric]:
        snap, status = self._snapshot()
        calls = CounterMetricFamily(
            "overspend_llm_calls",
            "LLM calls, by pipeline step, model, tier and provider.",
            labels=_CALL_LABELS,
        )
        tokens = CounterMetricFamily(
            "overspend_llm_tokens",
            "LLM tokens by kind: input (cache reads included), output (reasoning included), "
            "cache_read, reasoning.",
            labels=[*_CALL_LABELS, "kind"],
        )
        cost = CounterMetricFamily(
            "overspend_llm_cost_usd", "LLM spend in USD (priced calls only).", labels=_CALL_LABELS
        )
        specialized = CounterMetricFamily(
            "overspend_llm_specialized_cost_usd",
            "What the same calls would cost in USD with each step at its specialization-map tier.",
            labels=_CALL_LABELS,
        )
        unpriced_by_model: dict[str, float] = {}
        for key, stats in snap.totals.items():
            labels = list(key)
            calls.add_metric(labels, stats[CALLS])
            for kind, index in TOKEN_KINDS:
                tokens.add_metric([*labels, kind], stats[index])
            cost.add_metric(labels, stats[COST])
            specialized.add_metric(labels, stats[SPECIALIZED])
            if stats[UNPRICED]:
                unpriced_by_model[key[1]] = unpriced_by_model.get(key[1], 0.0) + stats[UNPRICED]
        yield calls
        yield tokens
        yield cost
        yield specialized

        unpriced = CounterMetricFamily(
            "overspend_unpriced_llm_calls",
            "LLM calls no price source could price; their spend is missing from every cost metric.",
            labels=["model"],
        )
        for model, count in unpriced_by_model.items():
            unpriced.add_metric([model], count)
        yield unpriced
        yield _by_label("overspend_spans_dropped", "Spans not counted, by reason.", "reason", status.dropped)
        yield _by_label(
            "overspend_label_overflow",
            "Calls whose label value was replaced by 'other' because the label's cap was reached.",
            "label",
            status.label_overflow,
        )
        yield _by_label(
            "overspend_open_requests_evicted",
            "Open requests evicted before their root span ended, by reason (capacity, timeout).",
            "reason",
            status.requests_evicted,
        )
        requests = CounterMetricFamily(
            "overspend_requests", "Finished requests (local root spans) that made at least one LLM call."
        )
        requests.add_metric([], snap.requests_total)
        yield requests
        yield _histogram(
            "overspend_request_frontier_calls",
            "Frontier-tier LLM calls per request.",
            snap.frontier_calls_hist,
        )
        yield _histogram("overspend_request_tokens", "LLM tokens per request.", snap.tokens_hist)
        if self._extra is not None:
            yield from self._extra(snap)


def _by_label(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family
