"""The report is the same whatever the order of the spans in its files.

The live processor sees a process's spans in end order, children before their parents.
Files keep no order: exporters write children first, trace backends sort by start time
(root first), files interleave traces or split one over several. Each example is a few
traces (roots, some under a remote caller, two of which may share the caller's trace;
spans nested up to three levels, overlapping siblings, LLM calls with usage, a framework
span over its client's span of the same call, a call that ends after its root) run
through a real SDK with the processor and exported in end order. The same spans are then
written in another order — root first, root last, shuffled within each trace, traces
interleaved, all shuffled — one a line or in collector batches, in one to three files.

The property: the report on them equals the report on the end-ordered file and the live
processor's figures (calls, unpriced calls, calls without usage, dollars within 1e-9,
requests, per-request figures, per-step calls and dollars, drops), with no span out of
end order. Steps come from ``step()`` stamped on the spans, or, without stamps, from an
``overspend.step`` attribute that a span's descendants inherit (the report needs the whole
trace for those).

``test_traces_far_apart_in_any_order`` spreads the traces over clusters more than the
reorder window apart, so that traces close while the files are read; the disorder stays
within a cluster (and a file split falls between clusters, as rotation splits), which is
what the window allows.
"""

from __future__ import annotations

import math
import random
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from prometheus_client import CollectorRegistry
from report_support import MODEL, SEED, llm_attributes, pinned_settings, write_collector_lines

from otel_overspend import OverspendProcessor, step
from otel_overspend.report.files import Problems
from otel_overspend.report.run import Limits, build_report

from conftest import FakeClock

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span

    from otel_overspend import Settings
    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.report.run import Report

T0_S = 1_800_000_000
T0_NS = T0_S * 1_000_000_000
MS = 1_000_000
#: Clusters of traces start this far apart: more than the 300 s reorder window.
CLUSTER_GAP_MS = 1_000_000
FRONTIER, MINI, RERANKER, UNKNOWN = "acme-frontier", "acme-mini", "zerank-2", "mystery-model"
MODELS = (FRONTIER, FRONTIER, MINI, RERANKER, UNKNOWN)
STEPS = (None, None, "rerank", "generate", "rewrite")
APP, CLIENT, FRAMEWORK = "app", "client-a", "openinference.instrumentation.langchain"
MAX_DEPTH = 3
RESOURCE = Resource.get_empty()  # else every provider detects one
#: The other orders, beside the exporter's end order.
ORDERS = ("start", "reverse", "shuffled", "traces_shuffled", "interleaved")


# -- what a forest is ----------------------------------------------------------------------------
def remote_parent(index: int) -> SpanContext:
    """A caller in another process: the roots under one share its trace."""
    flags = TraceFlags(TraceFlags.SAMPLED)
    return SpanContext(trace_id=0xA0 + index, span_id=0xB0 + index, is_remote=True, trace_flags=flags)


@dataclass(frozen=True)
class Node:
    parent: int | None
    #: For a root: its remote parent (see :func:`remote_parent`; ``None``: a new trace).
    remote: int | None
    scope: str
    step: str | None
    attrs: Mapping[str, Any]
    start_ns: int
    end_ns: int


def _framework_attributes(model: str, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    """A framework's span of one call, under OpenInference's names."""
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": model,
        "llm.token_count.prompt": tokens_in,
        "llm.token_count.completion": tokens_out,
    }


class _Forest:
    """Spans drawn one subtree at a time; times in ms, made distinct in ns."""

    def __init__(self, draw: st.DrawFn, *, late: bool) -> None:
        self.draw = draw
        self.late = late
        self.nodes: list[Node | None] = []
        self._tick = 0

    def ns(self, ms: int) -> int:
        """``ms`` in ns, plus a count that keeps every time distinct (and orders ties)."""
        self._tick += 1
        return T0_NS + ms * MS + self._tick

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def grow(self, parent: int | None, remote: int | None, start_ms: int, depth: int) -> int:
        """A span starting at ``start_ms`` and its subtree; returns the span's end (ms)."""
        draw = self.draw
        kind = draw(st.sampled_from(("plain", "plain", "llm", "framework")))
        index = len(self.nodes)
        self.nodes.append(None)  # filled once its end is known
        start_ns = self.ns(start_ms)
        scope, attrs = APP, {}
        end_ms = start_ms + draw(st.integers(1, 50))
        if kind == "plain":
            children = draw(st.integers(0, 3)) if depth < MAX_DEPTH else 0
            for _ in range(children):
                child_start = start_ms + draw(st.integers(1, 400))  # siblings may overlap
                end_ms = max(end_ms, self.grow(index, None, child_start, depth + 1))
            end_ms += draw(st.integers(1, 300))
            if self.late and depth < MAX_DEPTH and draw(st.integers(0, 5)) == 0:
                # A call started inside this span that ends after it (a detached callback).
                self.late_call(index, draw(st.integers(start_ms + 1, end_ms - 1)), end_ms)
        else:
            model = draw(st.sampled_from(MODELS))
            tokens = draw(st.sampled_from(((1_000, 100), (12_000, 200), (120, 1), (0, 0))))
            if kind == "llm":
                attrs = llm_attributes(model, *tokens)
                scope = CLIENT
            else:  # the framework's span over the client's span of the same call
                attrs = _framework_attributes(model, *tokens)
                scope = FRAMEWORK
                client_start = start_ms + draw(st.integers(1, 20))
                client_end = client_start + draw(st.integers(1, 300))
                self.add(
                    Node(
                        index,
                        None,
                        CLIENT,
                        draw(st.sampled_from(STEPS)),
                        llm_attributes(model, *tokens),
                        self.ns(client_start),
                        self.ns(client_end),
                    )
                )
                end_ms = client_end + draw(st.integers(1, 20))
        self.nodes[index] = Node(
            parent, remote, scope, draw(st.sampled_from(STEPS)), attrs, start_ns, self.ns(end_ms)
        )
        return end_ms

    def late_call(self, parent: int, start_ms: int, parent_end_ms: int) -> None:
        end_ms = parent_end_ms + self.draw(st.integers(1, 2_000))
        self.add(
            Node(
                parent,
                None,
                CLIENT,
                self.draw(st.sampled_from(STEPS)),
                llm_attributes(FRONTIER, 1_000, 100),
                self.ns(start_ms),
                self.ns(end_ms),
            )
        )


@st.composite
def forests(
    draw: st.DrawFn, *, clusters: int = 1, max_traces: int = 4, late: bool = True
) -> tuple[Node, ...]:
    """Up to ``max_traces`` traces in each of ``clusters`` clusters :data:`CLUSTER_GAP_MS` apart;
    the traces of a cluster start within 3 s of each other (they overlap), some under one of
    two callers of the cluster. ``late``: some calls end after their request's root, leaving
    it open.

    Nothing open or held spans clusters (no late calls there, and each cluster has callers
    of its own): the report does what a scrape does live every 75 s of the spans' time (it
    counts the calls held for a twin, times out open requests), and the processor here is
    never scraped."""
    forest = _Forest(draw, late=late)
    for cluster in range(clusters):
        for _ in range(draw(st.integers(1, max_traces))):
            start_ms = cluster * CLUSTER_GAP_MS + draw(st.integers(0, 3_000))
            caller = draw(st.sampled_from((None, None, 0, 1)))
            forest.grow(None, None if caller is None else 2 * cluster + caller, start_ms, 1)
    nodes = tuple(node for node in forest.nodes if node is not None)
    assert len(nodes) == len(forest.nodes)
    return nodes


# -- live, and written in any order -----------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    calls: int
    unpriced_calls: int
    calls_without_usage: int
    cost_usd: float
    specialized_cost_usd: float
    requests: int
    #: Frontier calls, heavy requests, tokens, generate share, LLM-time share: per request.
    per_request: tuple[float | None, ...]
    step_calls: Mapping[str, int]
    step_cost_usd: Mapping[str, float]
    dropped: Mapping[str, int]


def figures(d: Diagnosis, dropped: Mapping[str, int]) -> Figures:
    return Figures(
        calls=d.calls,
        unpriced_calls=d.unpriced_calls,
        calls_without_usage=d.calls_without_usage,
        cost_usd=d.cost_usd,
        specialized_cost_usd=d.specialized_cost_usd,
        requests=d.requests,
        per_request=(
            d.frontier_calls_per_request,
            d.heavy_request_share,
            d.tokens_per_request,
            d.generate_share_per_request,
            d.llm_time_share_per_request,
        ),
        step_calls={line.step: line.calls for line in d.steps if line.calls},
        step_cost_usd={line.step: line.cost_usd for line in d.steps if line.cost_usd},
        dropped={reason: n for reason, n in dropped.items() if n},
    )


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def assert_same(a: Figures, b: Figures) -> None:
    both = (a, b)
    assert (a.calls, a.unpriced_calls, a.calls_without_usage, a.requests) == (
        b.calls,
        b.unpriced_calls,
        b.calls_without_usage,
        b.requests,
    ), both
    assert _close(a.cost_usd, b.cost_usd), both
    assert _close(a.specialized_cost_usd, b.specialized_cost_usd), both
    assert all(map(_close, a.per_request, b.per_request)), both
    assert a.step_calls == b.step_calls, both
    assert a.step_cost_usd.keys() == b.step_cost_usd.keys(), both
    assert all(_close(cost, b.step_cost_usd[name]) for name, cost in a.step_cost_usd.items()), both
    assert a.dropped == b.dropped, both


def order_settings(*, stamped: bool) -> Settings:
    return pinned_settings(stamp_spans=stamped)


def play(nodes: Sequence[Node], settings: Settings) -> tuple[Figures, list[ReadableSpan]]:
    """Run ``nodes`` through a real SDK with the processor, each span started and ended at
    its time: the live figures and the spans as the exporter got them (in end order).
    Stamped settings take a span's step from ``step()`` at its start, else from an
    ``overspend.step`` attribute. The processor's clock stays put: no request expires."""
    registry = CollectorRegistry()
    processor = OverspendProcessor(
        settings=settings, registry=registry, serve_metrics=False, clock=FakeClock(float(T0_S))
    )
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    events = sorted(
        [(node.start_ns, i) for i, node in enumerate(nodes)]
        + [(node.end_ns, ~i) for i, node in enumerate(nodes)]
    )
    try:
        spans: dict[int, Span] = {}
        for time_ns, i in events:
            if i < 0:
                spans[~i].end(end_time=time_ns)
                continue
            node = nodes[i]
            if node.parent is not None:
                context = set_span_in_context(spans[node.parent], Context())
            elif node.remote is not None:
                context = set_span_in_context(NonRecordingSpan(remote_parent(node.remote)), Context())
            else:
                context = Context()  # a new trace
            attrs = dict(node.attrs)
            stamped = settings.stamp_spans
            if not stamped and node.step is not None:
                attrs["overspend.step"] = node.step
            with step(node.step) if stamped and node.step is not None else nullcontext():
                spans[i] = provider.get_tracer(node.scope).start_span(
                    f"span-{i}", context=context, attributes=attrs, start_time=time_ns
                )
        diagnosis = dict(processor.diagnoses())["7d"]
        dropped = {
            sample.labels["reason"]: int(sample.value)
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "overspend_spans_dropped_total"
        }
        return figures(diagnosis, dropped), list(exported.get_finished_spans())
    finally:
        provider.shutdown()


def _by_trace(spans: Sequence[ReadableSpan]) -> list[list[ReadableSpan]]:
    traces: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        traces.setdefault(span.context.trace_id, []).append(span)
    return list(traces.values())


def arrange(spans: Sequence[ReadableSpan], order: str, rng: random.Random) -> list[ReadableSpan]:
    """``spans`` (in end order) in ``order``."""
    if order == "end":
        return list(spans)
    if order == "start":  # as trace backends sort them: each root before its children
        return sorted(spans, key=lambda span: span.start_time or 0)
    if order == "reverse":  # every root before its children, the last trace first
        return list(reversed(spans))
    if order == "shuffled":
        return rng.sample(list(spans), len(spans))
    traces = [rng.sample(trace, len(trace)) for trace in _by_trace(spans)]
    if order == "traces_shuffled":  # one trace after another, each in any order
        rng.shuffle(traces)
        return [span for trace in traces for span in trace]
    assert order == "interleaved"  # traces merged at random, each in any order
    out: list[ReadableSpan] = []
    while traces:
        trace = traces[rng.randrange(len(traces))]
        out.append(trace.pop())
        traces = [trace for trace in traces if trace]
    return out


def split(spans: list[ReadableSpan], files: int, how: str, rng: random.Random) -> list[list[ReadableSpan]]:
    """``spans`` over ``files`` files: ``contiguous`` (cut in pieces, as rotation cuts) or
    ``scattered`` (each span to any file, in the order given)."""
    if how == "contiguous":
        cuts = sorted(rng.randint(0, len(spans)) for _ in range(files - 1))
        return [spans[a:b] for a, b in zip([0, *cuts], [*cuts, len(spans)], strict=True)]
    parts: list[list[ReadableSpan]] = [[] for _ in range(files)]
    for span in spans:
        parts[rng.randrange(files)].append(span)
    return parts


def report_on(
    parts: Sequence[Sequence[ReadableSpan]], settings: Settings, *, batch: int, **limits: Any
) -> Report:
    """The report on ``parts`` written as files of collector lines, ``batch`` spans a line."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [
            write_collector_lines(Path(tmp) / f"traces-{i}.json", part, batch=batch)
            for i, part in enumerate(parts)
        ]
        return build_report(paths, settings=settings, problems=Problems(shown=0), limits=Limits(**limits))


@dataclass(frozen=True)
class Layout:
    """How an example's spans are written: stamped or not, in which order, how many a line,
    over how many files, cut how (see :func:`split`)."""

    stamped: bool
    order: str
    batch: int
    files: int
    how: str
    rng: random.Random


def layouts(
    *, batches: Sequence[int] = (1, 3, 50), hows: Sequence[str] = ("contiguous", "scattered")
) -> st.SearchStrategy[Layout]:
    return st.builds(
        Layout,
        stamped=st.booleans(),
        order=st.sampled_from(ORDERS),
        batch=st.sampled_from(batches),
        files=st.integers(1, 3),
        how=st.sampled_from(hows),
        rng=st.randoms(use_true_random=False),
    )


def check(nodes: Sequence[Node], layout: Layout, *, by_cluster: bool = False) -> None:
    """The property (see the module docstring); ``by_cluster``: the disorder stays within
    each cluster of traces, the clusters in time order."""
    settings = order_settings(stamped=layout.stamped)
    live, spans = play(nodes, settings)
    reference = report_on([spans], settings, batch=layout.batch)
    rng = layout.rng
    if by_cluster:
        clusters: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            clusters.setdefault(((span.start_time or 0) - T0_NS) // (CLUSTER_GAP_MS * MS), []).append(span)
        arranged = [span for _, part in sorted(clusters.items()) for span in arrange(part, layout.order, rng)]
    else:
        arranged = arrange(spans, layout.order, rng)
    report = report_on(split(arranged, layout.files, layout.how, rng), settings, batch=layout.batch)
    ours = figures(report.diagnosis, report.inputs.dropped)
    assert_same(ours, figures(reference.diagnosis, reference.inputs.dropped))
    if layout.stamped:
        assert_same(ours, live)
    assert report.inputs.spans == reference.inputs.spans == len(spans)
    assert report.inputs.reorder == {}, report.inputs
    assert report.inputs.incomplete_traces == reference.inputs.incomplete_traces
    if by_cluster and layout.batch == 1 and len(clusters) > 1:
        # A cluster's traces are closed and recorded once the reading is past them.
        assert report.inputs.held_spans_peak < len(spans), report.inputs


# -- the property ------------------------------------------------------------------------------------
@pytest.mark.slow  # hundreds of examples: several seconds
@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=forests(), layout=layouts())
def test_any_order_gives_the_same_report(nodes: tuple[Node, ...], layout: Layout) -> None:
    check(nodes, layout)


@pytest.mark.slow  # hundreds of examples: several seconds
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=forests(clusters=3, max_traces=3, late=False), layout=layouts(batches=(1, 50), hows=("contiguous",))
)
def test_traces_far_apart_in_any_order(nodes: tuple[Node, ...], layout: Layout) -> None:
    # Files cut from the whole, as rotation cuts them: a cut may fall inside a cluster.
    check(nodes, layout, by_cluster=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=forests(),
    max_spans=st.integers(1, 12),
    max_traces=st.integers(1, 4),
    batch=st.sampled_from((1, 3, 50)),
)
def test_bounds_keep_a_file_in_end_order_exact(
    nodes: tuple[Node, ...], max_spans: int, max_traces: int, batch: int
) -> None:
    # Held to a few spans and traces, the report closes traces early, and records waiting
    # spans out of order with the open ones': in end order that changes no figure (steps
    # stamped: a trace closed before its root has no parent's step to give).
    settings = order_settings(stamped=True)
    live, spans = play(nodes, settings)
    report = report_on([spans], settings, batch=batch, max_spans=max_spans, max_traces=max_traces)
    assert_same(figures(report.diagnosis, report.inputs.dropped), live)
    assert report.inputs.held_spans_peak <= max_spans


@pytest.mark.slow
@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=forests(max_traces=8), layout=layouts())
def test_larger_forests_in_any_order(nodes: tuple[Node, ...], layout: Layout) -> None:
    check(nodes, layout)


@pytest.mark.slow
@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=forests(clusters=4, max_traces=5, late=False), layout=layouts(hows=("contiguous",)))
def test_larger_forests_far_apart_in_any_order(nodes: tuple[Node, ...], layout: Layout) -> None:
    check(nodes, layout, by_cluster=True)


# -- explicit files ------------------------------------------------------------------------------------
def test_two_local_roots_of_one_trace_closed_early_for_room_keep_their_requests() -> None:
    """Found by ``test_bounds_keep_a_file_in_end_order_exact``, the spans as it drew them: a
    trace with two local roots (a service called twice in one trace), whose first root's
    call, undecided, is held for a twin. Closed early for room, another trace's root call
    was recorded (and held) ahead of it, out of end order; the held calls were released
    oldest held first, stopping at the first not due, so the first root's call stayed held
    past its due time, and the second root's request closed with it: 2 requests, not 3."""
    usage = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "acme",
        "gen_ai.request.model": "acme-frontier",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 100,
    }
    t = T0_S * 1_000_000_000
    nodes = (
        Node(None, 0, "app", "rerank", {}, t + 2_082_000_001, t + 2_088_000_012),
        Node(0, None, "app", None, {}, t + 2_083_000_002, t + 2_087_000_009),
        Node(1, None, "app", None, {}, t + 2_084_000_003, t + 2_086_000_004),
        Node(1, None, "client-a", None, usage, t + 2_084_000_005, t + 2_085_000_006),
        Node(1, None, "app", None, {}, t + 2_084_000_007, t + 2_086_000_008),
        Node(0, None, "client-a", None, usage, t + 2_083_000_010, t + 2_084_000_011),
        Node(None, 0, "client-a", None, usage, t + 13, t + 1_000_014),  # the trace's first local root
        Node(None, None, "client-a", None, usage, t + 34_000_015, t + 84_000_016),  # another trace
    )
    settings = order_settings(stamped=True)
    live, spans = play(nodes, settings)
    assert live.requests == 3  # one a local root: the two of the first trace and the other
    unbounded = report_on([spans], settings, batch=1)
    assert_same(figures(unbounded.diagnosis, unbounded.inputs.dropped), live)
    bounded = report_on([spans], settings, batch=1, max_spans=2, max_traces=2)
    assert_same(figures(bounded.diagnosis, bounded.inputs.dropped), live)


def test_ends_nanoseconds_apart_keep_their_order_in_any_order_of_the_file() -> None:
    """Span ends a few nanoseconds apart, which a double does not tell apart this far from
    1970 (its step there is 256 ns), are recorded in their order: a call that ends after
    its root, and another trace's root ending 2 ns after that root."""
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "acme",
        "gen_ai.request.model": FRONTIER,
        "gen_ai.usage.input_tokens": 1_000,
        "gen_ai.usage.output_tokens": 100,
    }
    nodes = (
        Node(None, None, APP, None, {}, T0_NS + 1, T0_NS + 2 * MS + 4),
        Node(0, None, CLIENT, None, chat, T0_NS + MS + 2, T0_NS + 3 * MS + 3),
        Node(None, None, APP, None, {}, T0_NS + 5, T0_NS + 2 * MS + 6),
    )
    for order in ORDERS:
        for batch in (1, 50):
            check(nodes, Layout(False, order, batch, 1, "contiguous", random.Random(7)))


def _seed_spans(requests: int, *, gap_s: float = 0.0) -> tuple[Figures, list[ReadableSpan]]:
    """``requests`` of the four-step fixture (a root, four calls one after another), one
    every ``gap_s`` seconds (0: at once, each after the last), live and as exported."""
    nodes: list[Node] = []
    for r in range(requests):
        t = T0_NS + int(r * gap_s * 1e9) + r * 20 * MS
        root = len(nodes)
        nodes.append(Node(None, None, APP, None, {}, t + 1, t + 10 * MS + 1))
        for i, (name, tokens_in, tokens_out) in enumerate(SEED):
            start = t + (2 * i + 1) * MS
            attrs = llm_attributes(MODEL, tokens_in, tokens_out)
            nodes.append(Node(root, None, CLIENT, name, attrs, start + 2, start + MS + 2))
    return play(nodes, order_settings(stamped=True))


def test_a_file_root_first_counts_every_request() -> None:
    # As trace backends export: sorted by start time, every root before its calls. The
    # report once said "0 requests" and "traces replayed without their root" for it.
    live, spans = _seed_spans(10)
    root_first = sorted(spans, key=lambda span: span.start_time or 0)
    assert root_first[0].parent is None
    report = report_on([root_first], order_settings(stamped=True), batch=1)
    assert_same(figures(report.diagnosis, report.inputs.dropped), live)
    assert (report.diagnosis.requests, report.diagnosis.calls) == (10, 40)
    assert (report.inputs.incomplete_traces, report.inputs.reorder) == ({}, {})


def test_memory_holds_the_open_traces_only() -> None:
    # 200 requests a minute apart: in end order or root first, a trace is held until the
    # reading is the window (300 s) past it: about five requests' spans at once.
    live, spans = _seed_spans(200, gap_s=60.0)
    settings = order_settings(stamped=True)
    for ordered in (spans, sorted(spans, key=lambda span: span.start_time or 0)):
        report = report_on([ordered], settings, batch=1)
        assert_same(figures(report.diagnosis, report.inputs.dropped), live)
        assert report.inputs.held_spans_peak <= 6 * 5 + 1, report.inputs
        assert report.inputs.reorder == {}
        # A window of 30 s holds one request.
        report = report_on([ordered], settings, batch=1, window_s=30.0)
        assert_same(figures(report.diagnosis, report.inputs.dropped), live)
        assert report.inputs.held_spans_peak <= 5 + 1, report.inputs


def test_spans_later_than_the_window_are_counted_and_still_count() -> None:
    # All shuffled over 200 minutes, with a window of 300 s: most spans come too late for
    # their place. Every call still counts; requests do not survive (a trace's calls that
    # came apart from their root are taken for requests of their own).
    live, spans = _seed_spans(200, gap_s=60.0)
    shuffled = random.Random(25).sample(spans, len(spans))
    report = report_on([shuffled], order_settings(stamped=True), batch=1)
    d = report.diagnosis
    assert d.calls == live.calls
    assert d.cost_usd == pytest.approx(live.cost_usd, abs=1e-9)
    assert d.requests != live.requests
    assert report.inputs.reorder["out_of_order"] > 0
    # With a window as long as the traces cover, the same figures as live.
    report = report_on([shuffled], order_settings(stamped=True), batch=1, window_s=4 * 3_600.0)
    assert_same(figures(report.diagnosis, report.inputs.dropped), live)
    assert report.inputs.reorder == {}


def test_a_bound_closes_the_trace_that_ended_first_and_counts_it() -> None:
    live, spans = _seed_spans(20)
    report = report_on([spans], order_settings(stamped=True), batch=1, max_spans=3)
    assert_same(figures(report.diagnosis, report.inputs.dropped), live)
    assert report.inputs.reorder["closed_early"] > 0
    assert report.inputs.held_spans_peak == 3
