"""Prometheus exposition: a custom collector that renders the ledger at scrape time.

Counters come from the ledger's cumulative totals, so ``sum(rate(...))`` across replicas
is the fleet-wide truth. The snapshot is taken under the ledger's lock; rendering happens
outside it.

Two renderings of the same families: :meth:`OverspendCollector.collect` yields
prometheus_client metric families (for any registry and any exposition format), and
:meth:`OverspendCollector.render_chunks` writes the text format directly, with each series'
label string built once and cached: the per-series counters are most of a scrape, and
prometheus_client spends several microseconds a sample formatting them. The endpoint this
package serves uses the fast path; an app that serves the registry itself gets the same
samples through ``collect``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from operator import itemgetter
from typing import TYPE_CHECKING, Final, cast

from prometheus_client import utils as _client_utils
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from otel_overspend.accounting.ledger import (
    CACHE_READ,
    CACHE_WRITE,
    CALLS,
    COST,
    COST_WITHOUT_COUNTERFACTUAL,
    INPUT,
    OUTPUT,
    REASONING,
    SPECIALIZED,
    UNPRICED,
    WITHOUT_USAGE,
)
from otel_overspend.accounting.purposes import PURPOSES
from otel_overspend.accounting.status import DROP_REASONS, EVICTION_REASONS, INFERRED_USAGE, OVERFLOW_LABELS

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator

    from prometheus_client.metrics_core import Metric

    from otel_overspend.accounting.ledger import Histogram, Key, Snapshot
    from otel_overspend.accounting.status import Status

__all__ = ("TOKEN_KINDS", "OverspendCollector", "render_registry")

_CALL_LABELS = ["step", "model", "tier", "provider"]
TOKEN_KINDS: Final = (
    ("input", INPUT),
    ("output", OUTPUT),
    ("cache_read", CACHE_READ),
    ("cache_write", CACHE_WRITE),
    ("reasoning", REASONING),
)
# The per-series counters: (name, help, index into the stats); tokens are one family by kind.
_CALL_COUNTERS: Final = (
    ("overspend_llm_calls", "LLM calls, by pipeline step, model, tier and provider.", CALLS),
    ("overspend_llm_cost_usd", "LLM spend in USD (priced calls only).", COST),
    (
        "overspend_llm_specialized_cost_usd",
        (
            "What the same calls would cost in USD with each step at its specialization-map tier "
            "(calls whose counterfactual is known)."
        ),
        SPECIALIZED,
    ),
    (
        "overspend_llm_cost_without_counterfactual_usd",
        (
            "LLM spend in USD priced only by a cost on the span (no usage to reprice): in "
            "overspend_llm_cost_usd_total, not in the specialized cost."
        ),
        COST_WITHOUT_COUNTERFACTUAL,
    ),
    (
        "overspend_unpriced_llm_calls",
        "LLM calls no price source could price; their spend is missing from every cost metric.",
        UNPRICED,
    ),
)
_TOKENS_NAME: Final = "overspend_llm_tokens"
_TOKENS_HELP: Final = (
    "LLM tokens by kind: input (cache reads and writes included), output (reasoning included), "
    "cache_read, cache_write, reasoning."
)
_MAX_CACHED_LABELS: Final = 100_000
# prometheus_client's float formatting (+Inf, NaN, Go's exponent style), typed.
_go_float = cast("Callable[[float], str]", _client_utils.floatToGoString)


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*hist.bounds, float("inf")), hist.counts, strict=False):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.total)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _header(name: str, doc: str, kind: str) -> str:
    doc = doc.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


#: One piece of the per-series text: a family's header (no column), or the lines of series
#: ``first`` to ``last`` with a ``%r`` for each one's value in ``column``.
_Piece = tuple[str, "itemgetter[float] | None", int, int]
#: Lines of one rendered piece: a piece stays below the size malloc serves from fresh pages.
_CHUNK_LINES: Final = 512
#: The per-series lines: (the family's header, or "" for more lines of the same family; the
#: start of each line up to its labels; the index of its value in the stats).
_SERIES_LINES: Final = tuple(
    (_header(f"{name}_total", doc, "counter"), f"{name}_total{{", index)
    for name, doc, index in _CALL_COUNTERS
) + tuple(
    (
        _header(f"{_TOKENS_NAME}_total", _TOKENS_HELP, "counter") if i == 0 else "",
        f'{_TOKENS_NAME}_total{{kind="{kind}",',
        index,
    )
    for i, (kind, index) in enumerate(TOKEN_KINDS)
)


def _family_text(family: Metric) -> str:
    """One of this package's families in the text format: no exemplars, no timestamps."""
    name = f"{family.name}_total" if family.type == "counter" else family.name
    lines = [_header(name, family.documentation, family.type)]
    for sample in family.samples:
        value = _go_float(sample.value)
        if sample.labels:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            lines.append(f"{sample.name}{{{labels}}} {value}\n")
        else:
            lines.append(f"{sample.name} {value}\n")
    return "".join(lines)


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
        self._muted = threading.local()
        # series key -> 'model="...",provider="...",step="...",tier="..."}': labels sorted by
        # name as prometheus_client writes them, opening brace left to the line (kind sorts first)
        self._labels: dict[tuple[str, str, str, str], str] = {}
        # The series (in the snapshot's order) and the text written for them, swapped as one
        # (two scrapes may render at once): per line family and piece of series, the piece's
        # text with each value a '%r', the column it reads and the piece's series.
        self._text: tuple[tuple[Key, ...], list[_Piece]] = ((), [])
        self._write_text(())  # no series yet: the families' headers only

    def describe(self) -> Iterator[Metric]:
        # Names only, so that registering two collectors with one name fails at once.
        yield CounterMetricFamily("overspend_llm_calls", "", labels=_CALL_LABELS)

    @contextmanager
    def muted(self) -> Generator[None, None, None]:
        """While active in this thread, :meth:`collect` yields nothing (see :meth:`render_chunks`)."""
        self._muted.on = True
        try:
            yield
        finally:
            self._muted.on = False

    def collect(self) -> Iterator[Metric]:
        if getattr(self._muted, "on", False):
            return
        snap, status = self._snapshot()
        for name, doc, index in _CALL_COUNTERS:
            family = CounterMetricFamily(name, doc, labels=_CALL_LABELS)
            for key, stats in snap.totals.items():
                family.add_metric(list(key), stats[index])
            yield family
        tokens = CounterMetricFamily(_TOKENS_NAME, _TOKENS_HELP, labels=[*_CALL_LABELS, "kind"])
        for key, stats in snap.totals.items():
            for kind, index in TOKEN_KINDS:
                tokens.add_metric([*key, kind], stats[index])
        yield tokens
        yield from self._others(snap, status)

    def render_chunks(self) -> list[bytes]:
        """The text exposition format (0.0.4) of everything :meth:`collect` yields, in pieces
        of at most :data:`_CHUNK_LINES` lines. Small pieces come from buffers the allocator
        reuses; one body of several hundred KB was page-faulted in afresh on every scrape.
        The per-series lines are written by one ``%`` format per piece, from text laid out
        while the series stay the same, not as a string each: faster, most of all in a heap
        that has seen a million spans, where each new string comes from memory scattered
        over it (benchmarks/RESULTS.md has the figures)."""
        snap, status = self._snapshot()
        totals = snap.totals
        layout = tuple(totals)
        written, pieces = self._text
        if layout != written:
            pieces = self._write_text(layout)
        stats = list(totals.values())
        chunks: list[bytes] = []
        for text, column, first, last in pieces:
            if column is None:
                chunks.append(text.encode())  # a family's header
            else:
                chunks.append((text % tuple(map(column, stats[first:last]))).encode())
        chunks.append("".join(_family_text(family) for family in self._others(snap, status)).encode())
        return chunks

    def _write_text(self, layout: tuple[Key, ...]) -> list[_Piece]:
        labels = self._labels
        if len(labels) > _MAX_CACHED_LABELS:
            labels.clear()
        series = []
        for key in layout:
            label = labels.get(key)
            if label is None:
                step, model, tier, provider = key
                label = labels[key] = (
                    f'model="{_escape(model)}",provider="{_escape(provider)}",'
                    f'step="{_escape(step)}",tier="{_escape(tier)}"}}'
                )
            series.append(label.replace("%", "%%"))
        pieces: list[_Piece] = []
        for header, start, index in _SERIES_LINES:
            if header:
                pieces.append((header, None, 0, 0))
            # Stats are finite, non-negative floats: repr is the text format's float (and
            # what prometheus_client writes: 1.0 for a count of one).
            start_text = start.replace("%", "%%")
            for first in range(0, len(series), _CHUNK_LINES):
                piece = series[first : first + _CHUNK_LINES]
                text = "".join(f"{start_text}{label} %r\n" for label in piece)
                pieces.append((text, itemgetter(index), first, first + len(piece)))
        self._text = (layout, pieces)
        return pieces

    def _others(self, snap: Snapshot, status: Status) -> Iterator[Metric]:
        without_usage = CounterMetricFamily(
            "overspend_llm_calls_without_usage",
            "LLM calls (by operation or span kind) whose span reports no usage and no cost: "
            "their spend is missing from every cost metric.",
            labels=["step", "model"],
        )
        by_step_model: dict[tuple[str, str], float] = {}
        for (step, model, _, _), stats in snap.totals.items():
            count = stats[WITHOUT_USAGE]
            if count:
                by_step_model[step, model] = by_step_model.get((step, model), 0.0) + count
        for (step, model), count in sorted(by_step_model.items()):
            without_usage.add_metric([step, model], count)
        yield without_usage
        yield _by_label(
            "overspend_spans_dropped", "Spans not counted, by reason.", "reason", status.dropped, DROP_REASONS
        )
        yield _by_label(
            "overspend_usage_inferred",
            "LLM calls whose usage was read by the last-resort rule: input found net of its cache "
            "(net_input_inferred) or output net of its reasoning (net_output_inferred).",
            "what",
            status.usage_inferred,
            INFERRED_USAGE,
        )
        yield _by_label(
            "overspend_label_overflow",
            "Calls whose label value was replaced by 'other' because the label's cap was reached.",
            "label",
            status.label_overflow,
            OVERFLOW_LABELS,
        )
        yield _by_label(
            "overspend_open_requests_evicted",
            "Open requests evicted before their root span ended, by reason (capacity, timeout).",
            "reason",
            status.requests_evicted,
            EVICTION_REASONS,
        )
        reading = GaugeMetricFamily(
            "overspend_span_reading_info",
            "How the span hooks read spans: sdk_fields (the SDK's own spans by their fields) or "
            "public_api (every span through the public API: the SDK installed does not keep "
            "the fields' contract, and each span costs a little more).",
            labels=["path"],
        )
        reading.add_metric([status.span_reading], 1.0)
        yield reading
        yield GaugeMetricFamily(
            "overspend_open_requests",
            "Requests with a counted LLM call whose local root span has not ended yet (at most "
            "max_open_requests: the oldest beyond are evicted).",
            value=status.open_requests,
        )
        yield GaugeMetricFamily(
            "overspend_undecided_llm_calls",
            "LLM calls ended but not counted yet, waiting for an ancestor span to end and name "
            "their step (at most 10,000).",
            value=status.undecided_calls,
        )
        requests = CounterMetricFamily(
            "overspend_requests", "Finished requests (local root spans) that made at least one LLM call."
        )
        requests.add_metric([], snap.requests_total)
        yield requests
        by_purpose = CounterMetricFamily(
            "overspend_purpose_cost_usd",
            "Priced LLM spend of finished requests by purpose: request (serving a request), eval "
            "(evaluation: an eval job, or an eval step of any request) or batch (a root no request "
            "started), in USD.",
            labels=["purpose"],
        )
        for purpose in PURPOSES:
            by_purpose.add_metric([purpose], snap.purpose_cost_usd.get(purpose, 0.0))
        yield by_purpose
        yield _histogram(
            "overspend_request_frontier_calls",
            "Frontier-tier LLM calls per request.",
            snap.frontier_calls_hist,
        )
        yield _histogram("overspend_request_tokens", "LLM tokens per request.", snap.tokens_hist)
        if self._extra is not None:
            yield from self._extra(snap)


def _by_label(
    name: str, doc: str, label: str, values: dict[str, int], known: tuple[str, ...]
) -> CounterMetricFamily:
    """One sample per value counted, and a 0 for every ``known`` value not counted yet: a
    counter that starts at 0 shows its first increase to ``rate()`` and ``increase()``."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted((dict.fromkeys(known, 0) | values).items()):
        family.add_metric([value], count)
    return family


def render_registry(registry: Collector, collector: OverspendCollector) -> list[bytes]:
    """The text format of ``registry``, which holds ``collector``, in pieces to be written one
    after the other: its own families through the fast path, every other collector's through
    prometheus_client."""
    with collector.muted():
        others = generate_latest(registry)
    return [others, *collector.render_chunks()]
