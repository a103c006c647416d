"""Live and offline count alike: random span trees through a real SDK and through the report.

Each example is a forest of spans (up to four levels, up to four traces, local roots and
roots under a remote parent, two of which may share the remote caller's trace) started
with explicit parent contexts, some inside ``step()``, with LLM usage under the conventions
in use (GenAI, its legacy names, OpenInference, OpenLLMetry), with and without a model,
with zero tokens, with a span cost, a framework span over a client span with the same
usage, sibling spans of one call from two instrumentations, the same call in two traces,
OpenInference span kinds and GenAI operations, usage or a rule's attribute written only
at the end, failed calls. Spans start and end in a random order the SDK allows: a child
ends before its parent, unless it is "detached" (started with an explicit parent context,
as a callback or a background task is): then it may end after its parent, and even start
after its parent ended. Span times are distinct, as the SDK's clock gives them.

The same spans go through an :class:`~otel_overspend.OverspendProcessor` on a real
``TracerProvider`` (with ``stamp_spans``, so that the exported spans carry the step each
started in; the SDK's fields read directly or through the public API) and, written as the
collector's file exporter writes them (one span a line, or batches of spans grouped by
scope), through :func:`~otel_overspend.report.run.build_report`. The property: equal
calls, unpriced calls, calls without usage, dollars, specialized dollars, requests and the
per-request figures, per-step calls and dollars, and drops by reason.

Explicit trees anchor it: the ones the property once failed on, and a few with their
figures worked out by hand (:data:`HAND`), so that "alike" is not "alike and wrong". Spans whose
only usage is cache reads, reasoning or search units on a span whose operation or kind is
no LLM call are calls in both (``test_usage_without_input_or_output_on_a_non_llm_span``),
and a counted call takes at most one twin from each other instrumentation
(``test_a_call_is_the_twin_of_one_parallel_call_only``).
"""

from __future__ import annotations

import math
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from prometheus_client import CollectorRegistry
from report_support import collector_json

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.config.settings import Price
from otel_overspend.report.files import Problems
from otel_overspend.report.run import build_report

from conftest import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Span

    from otel_overspend.accounting.signals import Diagnosis

T0_S = 1_800_000_000
T0_NS = T0_S * 1_000_000_000
FRONTIER, MINI, RERANKER, UNKNOWN = "acme-frontier", "acme-mini", "zerank-2", "mystery-model"
#: Prices in USD per 1M tokens, input / output (the hand-worked figures below use them).
SETTINGS = Settings(
    serve_metrics=False,
    use_genai_prices=False,
    stamp_spans=True,
    model_tiers={MINI: "mini", "zerank-*": "specialist", "acme-*": "frontier"},
    tier_prices={
        "frontier": Price(input=3.0, output=15.0),
        "mid": Price(input=0.30, output=1.20),
        "mini": Price(input=0.05, output=0.20),
        "specialist": Price(input=0.02, output=0.02),
    },
)
APP, CLIENT_A, CLIENT_B = "app", "client-a", "client-b"
FRAMEWORK = "openinference.instrumentation.langchain"
SCOPES = (APP, CLIENT_A, CLIENT_B, FRAMEWORK)
STEPS = (None, "rerank", "generate", "rewrite")
MODELS = (FRONTIER, None, MINI, RERANKER, UNKNOWN)
#: Two callers in other processes: a local root under one of them is in its trace.
REMOTE_PARENTS = (
    SpanContext(trace_id=0xA1, span_id=0xB1, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
    SpanContext(trace_id=0xA2, span_id=0xB2, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
)
MAX_DEPTH = 4
MAX_ROOTS = 4
RESOURCE = Resource.get_empty()  # else every provider detects one


# -- what a tree is ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """One LLM call's usage, written under one convention."""

    convention: str = "genai"
    model: str | None = FRONTIER
    input_tokens: int = 1_000
    output_tokens: int = 100
    #: The GenAI operation or OpenInference kind written beside it (``None``: none).
    operation: str | None = None
    response_id: str | None = None
    cost_usd: float | None = None

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if self.convention == "genai":
            model_key, in_key, out_key = (
                "gen_ai.response.model",
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
            )
        elif self.convention == "genai_legacy":
            model_key, in_key, out_key = (
                "gen_ai.request.model",
                "gen_ai.usage.prompt_tokens",
                "gen_ai.usage.completion_tokens",
            )
        elif self.convention == "openinference":
            model_key, in_key, out_key = (
                "llm.model_name",
                "llm.token_count.prompt",
                "llm.token_count.completion",
            )
        else:  # OpenLLMetry's own names
            model_key, in_key, out_key = (
                "llm.request.model_name",
                "llm.usage.prompt_tokens",
                "llm.usage.completion_tokens",
            )
        if self.model is not None:
            attrs[model_key] = self.model
        attrs[in_key] = self.input_tokens
        attrs[out_key] = self.output_tokens
        if self.operation is not None:
            attrs.update(_operation(self.operation))
        if self.response_id is not None:
            attrs["gen_ai.response.id"] = self.response_id
        if self.cost_usd is not None:
            attrs["gen_ai.usage.cost"] = self.cost_usd
        return attrs


def _operation(operation: str) -> dict[str, str]:
    """``LLM``, ``RERANKER``, ``CHAIN``: an OpenInference kind; else a GenAI operation."""
    if operation.isupper():
        return {"openinference.span.kind": operation}
    return {"gen_ai.operation.name": operation}


@dataclass(frozen=True)
class Node:
    parent: int | None = None
    #: For a root: the index of its remote parent in :data:`REMOTE_PARENTS` (``None``: a new trace).
    remote: int | None = None
    scope: str = APP
    step: str | None = None
    #: Attributes the span starts with, and those set on it just before it ends.
    start_attrs: Mapping[str, Any] = field(default_factory=dict)
    end_attrs: Mapping[str, Any] = field(default_factory=dict)
    #: May end after its parent (and start after its parent ended).
    detached: bool = False
    failed: bool = False


@dataclass(frozen=True)
class Tree:
    nodes: tuple[Node, ...]
    #: ("start" | "end", node index), in the order they happen.
    events: tuple[tuple[str, int], ...]
    #: Nanoseconds before each event.
    gaps_ns: tuple[int, ...]


def nested_order(nodes: Sequence[Node]) -> tuple[tuple[str, int], ...]:
    """Events as ``with`` blocks would order them: each span starts, its subtree runs, it ends."""
    children: dict[int | None, list[int]] = {}
    for i, node in enumerate(nodes):
        children.setdefault(node.parent, []).append(i)
    events: list[tuple[str, int]] = []

    def run(i: int) -> None:
        events.append(("start", i))
        for child in children.get(i, ()):
            run(child)
        events.append(("end", i))

    for root in children.get(None, ()):
        run(root)
    return tuple(events)


def tree(*nodes: Node, gap_ns: int = 1_000_000) -> Tree:
    events = nested_order(nodes)
    return Tree(nodes, events, (gap_ns,) * len(events))


# -- random trees ----------------------------------------------------------------------------------
usages = st.builds(
    Usage,
    convention=st.sampled_from(("genai", "genai_legacy", "openinference", "openllmetry")),
    model=st.sampled_from(MODELS),
    input_tokens=st.sampled_from((1_000, 0, 120, 12_000)),
    output_tokens=st.sampled_from((100, 0, 1, 101, 400)),
    operation=st.sampled_from((None, "chat", "LLM", "embeddings", "RERANKER", "execute_tool", "CHAIN")),
    response_id=st.sampled_from((None, "resp-1", "resp-2")),
    cost_usd=st.sampled_from((None, None, None, 0.01, 0.0)),
)
#: Spans that are no LLM call, or that are one without usage (a chat or a RERANKER kind).
plain_attributes = st.sampled_from(
    (
        {},
        {"http.route": "/answer"},
        {"openinference.span.kind": "CHAIN"},
        {"gen_ai.operation.name": "execute_tool"},
        {"gen_ai.operation.name": "invoke_agent"},
        {"openinference.span.kind": "RERANKER"},
        {"openinference.span.kind": "RETRIEVER"},
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": FRONTIER},
        {"llm.request.type": "rerank"},
    )
)
#: A span that is no call by its kind but carries some usage all the same.
stray_usage = st.sampled_from(
    (
        {"gen_ai.operation.name": "execute_tool", "gen_ai.usage.cache_read.input_tokens": 50},
        {"openinference.span.kind": "CHAIN", "llm.token_count.completion_details.reasoning": 20},
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.search_units": 2},
    )
)


@st.composite
def trees(draw: st.DrawFn, *, max_nodes: int = 10, stray: bool = True) -> Tree:
    """A forest of up to ``max_nodes`` spans in up to four traces (see the module docstring);
    ``stray``: some spans that are no call by their operation or kind carry usage all the
    same (see ``test_usage_without_input_or_output_on_a_non_llm_span``).

    Span times are distinct: spans of two traces that end in the same nanosecond (a coarse
    clock) are recorded live in the order they ended, which a trace file does not keep."""
    n = draw(st.integers(1, max_nodes))
    nodes: list[Node] = []
    depths: list[int] = []
    usage_of: dict[int, Usage] = {}
    roots = 0
    for i in range(n):
        parents: list[int | None] = [None] if roots < MAX_ROOTS else []
        parents += [j for j in range(i) if depths[j] < MAX_DEPTH]
        parent = draw(st.sampled_from(parents))
        remote = draw(st.sampled_from((None, 0, 1))) if parent is None else None
        kinds = ["plain", "llm", "copy", "zero"] if usage_of else ["plain", "llm", "zero"]
        if stray:
            kinds.append("stray")
        kind = draw(st.sampled_from(kinds))
        attrs: dict[str, Any] = {}
        if kind == "plain":
            attrs = dict(draw(plain_attributes))
        elif kind == "stray":
            attrs = dict(draw(stray_usage))
        else:
            if kind == "copy":
                # The same call again: a framework span and the client's (parent and child,
                # siblings, or two traces), written under its own convention, maybe counting
                # one output token more.
                source = draw(st.sampled_from(sorted(usage_of)))
                usage = replace(
                    usage_of[source],
                    convention=draw(usages).convention,
                    output_tokens=usage_of[source].output_tokens + draw(st.sampled_from((0, 1))),
                )
            else:
                usage = draw(usages)
                if kind == "zero":
                    usage = replace(usage, input_tokens=0, output_tokens=0, cost_usd=None)
            usage_of[i] = usage
            attrs = usage.attributes()
        start_attrs: dict[str, Any] = attrs
        end_attrs: dict[str, Any] = {}
        if len(attrs) > 0 and draw(st.booleans()):
            # A framework span writes its usage once the call returns.
            start_attrs, end_attrs = {}, attrs
        nodes.append(
            Node(
                parent=parent,
                remote=remote,
                scope=draw(st.sampled_from(SCOPES)),
                step=draw(st.sampled_from(STEPS)),
                start_attrs=start_attrs,
                end_attrs=end_attrs,
                detached=parent is not None and draw(st.booleans()),
                failed=kind != "plain" and draw(st.integers(0, 4)) == 0,
            )
        )
        depths.append(1 if parent is None else depths[parent] + 1)
        roots += parent is None
    events = draw(_orders(nodes))
    gaps = draw(
        st.lists(
            # 1.5 s: more than a held call waits for its twin, 2 s of span time, in two.
            st.sampled_from((1_000_000, 1_000, 1_500_000_000)),
            min_size=len(events),
            max_size=len(events),
        )
    )
    return Tree(tuple(nodes), events, tuple(gaps))


@st.composite
def _orders(draw: st.DrawFn, nodes: Sequence[Node]) -> tuple[tuple[str, int], ...]:
    """A random order of starts and ends the SDK allows: a span starts after its parent did;
    it ends after every child that is not detached; a detached child may start and end at
    any time after its parent started."""
    started: set[int] = set()
    ended: set[int] = set()
    events: list[tuple[str, int]] = []
    children: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        if node.parent is not None:
            children.setdefault(node.parent, []).append(i)

    def may_end(i: int) -> bool:
        return all(c in ended for c in children.get(i, ()) if not nodes[c].detached)

    def may_start(i: int) -> bool:
        parent = nodes[i].parent
        if parent is None:
            return True
        return parent in started and (parent not in ended or nodes[i].detached)

    while len(ended) < len(nodes):
        ready = [("start", i) for i in range(len(nodes)) if i not in started and may_start(i)]
        ready += [("end", i) for i in sorted(started - ended) if may_end(i)]
        chosen = ready[draw(st.integers(0, len(ready) - 1))]
        events.append(chosen)
        (started if chosen[0] == "start" else ended).add(chosen[1])
    return tuple(events)


# -- running a tree live and offline ---------------------------------------------------------------
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


def _figures(d: Diagnosis, dropped: Mapping[str, int]) -> Figures:
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


def play(t: Tree, *, sdk_fields: bool = True) -> tuple[Figures, list[ReadableSpan]]:
    """Run ``t`` through a real SDK with the processor: its live figures and the ended spans.

    The processor's clock stays at the first span's time: every span is in every window,
    and no call waits long enough for the clock to expire it (nor does the report's)."""
    registry = CollectorRegistry()
    processor = OverspendProcessor(
        settings=SETTINGS,
        registry=registry,
        serve_metrics=False,
        clock=FakeClock(float(T0_S)),
        sdk_fields=sdk_fields,
    )
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exported))
    try:
        spans: dict[int, Span] = {}
        now = T0_NS
        for (what, i), gap in zip(t.events, t.gaps_ns, strict=True):
            now += gap
            node = t.nodes[i]
            if what == "start":
                spans[i] = _start(provider, node, spans, now, i)
            else:
                span = spans[i]
                if node.end_attrs:
                    span.set_attributes(dict(node.end_attrs))
                if node.failed:
                    span.set_status(Status(StatusCode.ERROR))
                span.end(end_time=now)
        diagnosis = dict(processor.diagnoses())["7d"]
        dropped = {
            sample.labels["reason"]: int(sample.value)
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "overspend_spans_dropped_total"
        }
        return _figures(diagnosis, dropped), list(exported.get_finished_spans())
    finally:
        provider.shutdown()


def _start(provider: TracerProvider, node: Node, spans: Mapping[int, Span], now: int, i: int) -> Span:
    if node.parent is not None:
        context = set_span_in_context(spans[node.parent], Context())
    elif node.remote is not None:
        context = set_span_in_context(NonRecordingSpan(REMOTE_PARENTS[node.remote]), Context())
    else:
        context = Context()  # a new trace
    with step(node.step) if node.step is not None else nullcontext():
        return provider.get_tracer(node.scope).start_span(
            f"span-{i}", context=context, attributes=dict(node.start_attrs), start_time=now
        )


def replay(spans: Sequence[ReadableSpan], *, batch: int = 1) -> Figures:
    """The offline report's figures for ``spans`` written as the collector's file exporter
    writes them, ``batch`` spans a line in the order they ended (each line grouped by
    instrumentation scope, as OTLP encodes an export)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traces.json"
        path.write_bytes(
            b"".join(collector_json(spans[i : i + batch]) + b"\n" for i in range(0, len(spans), batch))
        )
        report = build_report([path], settings=SETTINGS, problems=Problems(shown=0))
    return _figures(report.diagnosis, report.inputs.dropped)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def assert_alike(live: Figures, offline: Figures) -> None:
    both = (live, offline)
    assert (live.calls, live.unpriced_calls, live.calls_without_usage, live.requests) == (
        offline.calls,
        offline.unpriced_calls,
        offline.calls_without_usage,
        offline.requests,
    ), both
    assert _close(live.cost_usd, offline.cost_usd), both
    assert _close(live.specialized_cost_usd, offline.specialized_cost_usd), both
    assert all(map(_close, live.per_request, offline.per_request)), both
    assert live.step_calls == offline.step_calls, both
    assert live.step_cost_usd.keys() == offline.step_cost_usd.keys(), both
    assert all(_close(cost, offline.step_cost_usd[name]) for name, cost in live.step_cost_usd.items()), both
    assert live.dropped == offline.dropped, both


def check(t: Tree, *, sdk_fields: bool = True, batch: int = 1) -> Figures:
    live, spans = play(t, sdk_fields=sdk_fields)
    assert_alike(live, replay(spans, batch=batch))
    return live


# -- explicit trees --------------------------------------------------------------------------------
def _llm(usage: Usage, **node: Any) -> Node:
    return Node(start_attrs=usage.attributes(), **node)


def _starts_then_ends(n: int, ends: Sequence[int]) -> tuple[tuple[str, int], ...]:
    return (*(("start", i) for i in range(n)), *(("end", i) for i in ends))


def _spaced(events: tuple[tuple[str, int], ...], gap_ns: int = 1_000_000) -> tuple[int, ...]:
    return (gap_ns,) * len(events)


#: Prices (USD per 1M tokens, in / out): frontier 3 / 15, mini 0.05 / 0.20. One call of
#: 1,000 in / 100 out on the frontier model: 3,000 + 1,500 = 4,500 micro-dollars.
CALL_USD = 0.0045
#: A framework span (OpenInference's names) over the client's span (GenAI's) of one call of
#: 1,000 in / 200 out on the frontier model, in generate: one call, 3,000 + 3,000 = $0.006;
#: the framework span is a duplicate.
FRAMEWORK_OVER_CLIENT = tree(
    Node(step="generate"),
    _llm(Usage("openinference", FRONTIER, 1_000, 200, "LLM"), parent=0, scope=FRAMEWORK),
    _llm(Usage("genai", FRONTIER, 1_000, 200, "chat"), parent=1, scope=CLIENT_A),
)
_SIBLING_EVENTS = (
    *(("start", 0), ("start", 1), ("start", 2), ("end", 1), ("end", 2)),
    *(("start", 3), ("start", 4), ("end", 3), ("end", 4), ("end", 0)),
)
#: Two instrumentations' sibling spans of one call, overlapping (the second counts one
#: output token more), then two alike parallel calls of one instrumentation, in rerank on
#: the mini model (1,000 x 0.05 + 100 x 0.20 = 70 micro-dollars a call): three calls.
SIBLINGS = Tree(
    (
        Node(step="rerank"),
        _llm(Usage("genai", MINI, 1_000, 100), parent=0, scope=CLIENT_A),
        _llm(Usage("genai_legacy", MINI, 1_000, 101), parent=0, scope=CLIENT_B),
        _llm(Usage("genai", MINI, 1_000, 100), parent=0, scope=CLIENT_A),
        _llm(Usage("genai", MINI, 1_000, 100), parent=0, scope=CLIENT_A),
    ),
    _SIBLING_EVENTS,
    _spaced(_SIBLING_EVENTS),
)
#: A client span reporting 0 tokens under a framework span that writes the call's usage
#: when it returns (12,000 in / 400 out, frontier, no step: unattributed): one call of
#: 36,000 + 6,000 = $0.042, and the client span is the same call without usage.
ZERO_UNDER_FRAMEWORK = tree(
    Node(),
    Node(
        parent=0,
        scope=FRAMEWORK,
        end_attrs=Usage("openinference", FRONTIER, 12_000, 400, "LLM").attributes(),
    ),
    _llm(Usage("genai", FRONTIER, 0, 0, "chat"), parent=1, scope=CLIENT_A),
)
#: Two requests from callers in other processes (remote parents), each with one call of
#: 120 in / 1 out on the frontier model in rewrite (360 + 15 = 375 micro-dollars), and a
#: span with a RERANKER kind and no usage: one search, on no model, unpriced, in its
#: parent's step (rewrite: a parent's step beats a rule on the span's own kind).
REMOTE_ROOTS = tree(
    Node(remote=0, step="rewrite"),
    _llm(Usage("genai", FRONTIER, 120, 1), parent=0),
    Node(remote=1, step="rewrite"),
    _llm(Usage("openllmetry", FRONTIER, 120, 1), parent=2),
    Node(parent=2, start_attrs={"openinference.span.kind": "RERANKER"}),
)
#: A call that ends after its request's root (a detached child): the root closes no
#: request (none is open), the call is counted and its request stays open.
LATE_CHILD = Tree(
    (Node(step="generate"), _llm(Usage(), parent=0, detached=True)),
    (("start", 0), ("start", 1), ("end", 0), ("end", 1)),
    (1_000_000,) * 4,
)
#: A failed framework call reporting nothing over the client's call: no LLM span at all
#: (the processor once counted it as a duplicate, the report as nothing). One call.
FAILED_OVER_CALL = tree(
    Node(step="generate"),
    Node(parent=0, scope=FRAMEWORK, start_attrs={"gen_ai.operation.name": "chat"}, failed=True),
    _llm(Usage(), parent=1, scope=CLIENT_A),
)
#: The same call in two traces (a framework span never made current, so in a trace of its
#: own; the client's span under the app's request): the client's span ends first and is
#: counted, with its own tokens (1,000 / 100), in its request; the framework's, ended
#: before the request's root, is the duplicate. The report once counted the framework's
#: (101 output tokens, and no request), as its trace's root arrived first.
TWO_TRACES = Tree(
    (
        Node(step="generate"),
        _llm(Usage(output_tokens=101), scope=FRAMEWORK, step="generate"),
        _llm(Usage(), parent=0, scope=CLIENT_A),
    ),
    (("start", 0), ("start", 1), ("start", 2), ("end", 2), ("end", 1), ("end", 0)),
    (1_000_000,) * 6,
)
#: No step at any start; the framework writes the call's usage and operation (embeddings:
#: the rule names embed) when it returns, and a retriever kind (the rule names retrieve)
#: lands on its parent as it ends. Live, the call's own final attributes name its step
#: first; the report, stamped spans in hand, no longer gives it its parent's.
RULES_AT_THE_END = tree(
    Node(),
    Node(parent=0, end_attrs={"openinference.span.kind": "RETRIEVER"}),
    Node(parent=1, scope=FRAMEWORK, end_attrs=Usage(operation="embeddings").attributes()),
)
_TWO_ROOT_EVENTS = (
    *(("start", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2)),
    *(("start", 3), ("end", 3), ("end", 0)),
)
#: Two requests from one caller's trace: a plain one (2) that ends while the other (0)
#: is open with a call (1), which then makes a second (3). The plain request closes
#: nothing: one request, 2 frontier calls and 2,200 tokens. (The report once closed the
#: open request at the plain root's end.)
TWO_ROOTS_ONE_TRACE = Tree(
    (
        Node(remote=0, step="generate"),
        _llm(Usage(), parent=0),
        Node(remote=0),
        _llm(Usage(), parent=0),
    ),
    _TWO_ROOT_EVENTS,
    _spaced(_TWO_ROOT_EVENTS),
)
_HELD_EVENTS = (*(("start", 0), ("end", 0), ("start", 1), ("start", 2), ("end", 1)), ("end", 2))
#: Two calls without a step, each its own request's root under one caller (held for a
#: twin from another trace), and a plain span of another trace that ends more than 2 s of
#: span time after the first: the processor never sees it, so it releases nothing.
HELD_PAST_A_PLAIN_SPAN = Tree(
    (_llm(Usage(), remote=1), Node(), _llm(Usage(), remote=1)),
    _HELD_EVENTS,
    (1_000_000, 1_000_000, 1_000_000, 1_000_000, 2_500_000_000, 1_000_000),
)

#: Name -> (tree, calls, unpriced calls, calls without usage, dollars, requests, calls by
#: step, drops), worked out by hand above.
HAND: dict[str, tuple[Tree, int, int, int, float, int, dict[str, int], dict[str, int]]] = {
    "framework_over_client": (
        FRAMEWORK_OVER_CLIENT,
        1,
        0,
        0,
        0.006,
        1,
        {"generate": 1},
        {"duplicate_llm_span": 1},
    ),
    "siblings": (SIBLINGS, 3, 0, 0, 3 * 0.00007, 1, {"rerank": 3}, {"duplicate_llm_span": 1}),
    "zero_under_framework": (ZERO_UNDER_FRAMEWORK, 1, 0, 1, 0.042, 1, {"unattributed": 1}, {}),
    "remote_roots": (REMOTE_ROOTS, 3, 1, 0, 2 * 0.000375, 2, {"rewrite": 3}, {}),
    "late_child": (LATE_CHILD, 1, 0, 0, CALL_USD, 0, {"generate": 1}, {}),
    "failed_over_call": (FAILED_OVER_CALL, 1, 0, 0, CALL_USD, 1, {"generate": 1}, {}),
    "two_traces": (TWO_TRACES, 1, 0, 0, CALL_USD, 1, {"generate": 1}, {"duplicate_llm_span": 1}),
    "rules_at_the_end": (RULES_AT_THE_END, 1, 0, 0, CALL_USD, 1, {"embed": 1}, {}),
    "two_roots_one_trace": (TWO_ROOTS_ONE_TRACE, 2, 0, 0, 2 * CALL_USD, 1, {"generate": 2}, {}),
}


@pytest.mark.parametrize("name", HAND)
def test_hand_worked_trees(name: str) -> None:
    t, calls, unpriced, without_usage, cost_usd, requests, by_step, dropped = HAND[name]
    live, spans = play(t)
    for figures in (live, replay(spans)):
        assert figures.calls == calls, figures
        assert figures.unpriced_calls == unpriced, figures
        assert figures.calls_without_usage == without_usage, figures
        assert math.isclose(figures.cost_usd, cost_usd, rel_tol=0, abs_tol=1e-12), figures
        assert figures.requests == requests, figures
        assert dict(figures.step_calls) == by_step, figures
        assert dict(figures.dropped) == dropped, figures
    if name == "two_roots_one_trace":
        assert live.per_request[0] == 2.0  # frontier calls per request
        assert live.per_request[2] == 2_200.0  # tokens per request


# -- the property ------------------------------------------------------------------------------------
def _with_examples(test: Callable[..., None]) -> Callable[..., None]:
    for t in (*(hand[0] for hand in HAND.values()), HELD_PAST_A_PLAIN_SPAN):
        test = example(t=t, sdk_fields=True, batch=1)(test)
    return example(t=TWO_TRACES, sdk_fields=False, batch=7)(test)


@_with_examples
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=trees(stray=False), sdk_fields=st.booleans(), batch=st.sampled_from((1, 7)))
def test_live_and_offline_count_random_trees_alike(t: Tree, sdk_fields: bool, batch: int) -> None:
    check(t, sdk_fields=sdk_fields, batch=batch)


@pytest.mark.slow
@settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=trees(max_nodes=16, stray=False), sdk_fields=st.booleans(), batch=st.sampled_from((1, 7, 50)))
def test_live_and_offline_count_larger_random_trees_alike(t: Tree, sdk_fields: bool, batch: int) -> None:
    check(t, sdk_fields=sdk_fields, batch=batch)


# -- what is still wrong -----------------------------------------------------------------------------
_STRAY = (
    {"gen_ai.operation.name": "execute_tool", "gen_ai.usage.cache_read.input_tokens": 50},
    {"openinference.span.kind": "CHAIN", "llm.token_count.completion_details.reasoning": 20},
    {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.search_units": 2},
)


def _stray_examples(test: Callable[..., None]) -> Callable[..., None]:
    for attrs in _STRAY:
        test = example(t=tree(Node(start_attrs=attrs)))(test)
    return test


@_stray_examples
@settings(phases=[Phase.explicit], deadline=None)
@given(t=trees(stray=True))
def test_usage_without_input_or_output_on_a_non_llm_span(t: Tree) -> None:
    check(t)


#: One trace: a client-a span (1) and two parallel client-b calls (2, 3), all alike and
#: overlapping. Client-b's calls are two calls; client-a's span is the twin of one of them:
#: two calls, 2 x $0.0045.
PARALLEL_CALLS_ONE_TWIN = Tree(
    (
        Node(step="generate"),
        _llm(Usage(), parent=0, scope=CLIENT_A),
        _llm(Usage(), parent=0, scope=CLIENT_B),
        _llm(Usage(), parent=0, scope=CLIENT_B),
    ),
    _starts_then_ends(4, (1, 2, 3, 0)),
    _spaced(_starts_then_ends(4, (1, 2, 3, 0))),
)


def test_a_call_is_the_twin_of_one_parallel_call_only() -> None:
    live = check(PARALLEL_CALLS_ONE_TWIN)
    assert live.calls == 2, live
    assert math.isclose(live.cost_usd, 2 * CALL_USD, rel_tol=0, abs_tol=1e-12), live
