"""The span hooks read the SDK's own spans by their fields (once the probe has found the SDK
keeps the contract of otel_overspend.hooks.sdk), any other span by its properties, count
both alike, export nothing they were not asked to, and hold no ended span that has no LLM
call in or below it."""

from __future__ import annotations

import time
import weakref
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext

from otel_overspend import Settings, step
from otel_overspend.accounting.ledger import CALLS, INPUT, OUTPUT
from otel_overspend.hooks import sdk_probe
from otel_overspend.hooks.sdk import SdkSpans
from otel_overspend.hooks.sdk_probe import probe

from conftest import make_pipeline

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pytest

USAGE: dict[str, str | int] = {
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 7,
}


class _KeepRefs(SpanProcessor):
    """Keeps a weak reference to every ended span handed to the processors."""

    def __init__(self) -> None:
        self.refs: dict[str, weakref.ref[ReadableSpan]] = {}

    def on_end(self, span: ReadableSpan) -> None:
        self.refs[span.name] = weakref.ref(span)


def _sums(totals: Mapping[Any, Sequence[float]]) -> tuple[float, float, float]:
    return (
        sum(s[CALLS] for s in totals.values()),
        sum(s[INPUT] for s in totals.values()),
        sum(s[OUTPUT] for s in totals.values()),
    )


def _sdk_spans() -> SdkSpans:
    found = probe()
    assert isinstance(found, SdkSpans), found
    return found


def test_the_probe_finds_the_sdk_span_classes_and_the_metric_says_so() -> None:
    found = _sdk_spans()
    assert issubclass(found.live, Span)
    assert found.ended is ReadableSpan  # SDK 1.45 hands on_end a ReadableSpan copy
    p = make_pipeline(Settings(serve_metrics=False))
    assert p.processor.span_reading == ("sdk_fields", "")
    assert p.sample("overspend_span_reading_info", {"path": "sdk_fields"}) == 1.0
    p.provider.shutdown()


def test_no_ended_span_is_held_only_the_record_of_one_with_an_llm_call_in_or_below_it() -> None:
    p = make_pipeline(Settings(serve_metrics=False), count_in_background=False)
    keep = _KeepRefs()
    p.provider.add_span_processor(keep)
    with step("generate"), p.tracer.start_as_current_span("request"):
        with p.tracer.start_as_current_span("db query", attributes={"db.system": "postgresql"}):
            pass
        with p.tracer.start_as_current_span("chat", attributes=USAGE):
            pass
    # Every span is freed at its end: what is counted later is read off it then.
    assert [name for name, ref in keep.refs.items() if ref() is not None] == []
    queued = [record[3] for record in p.processor._queue.items]
    assert queued == ["chat", "request"]  # the call, and the root it closes the request of
    p.processor.force_flush()
    snap = p.processor.snapshot()
    assert _sums(snap.totals) == (1.0, 120.0, 7.0)
    assert snap.requests_total == 1
    assert p.processor._marks == {}
    p.provider.shutdown()


class _UsageInProperty(ReadableSpan):
    """An ended span whose ``attributes`` property is not its ``_attributes`` field."""

    @property
    def attributes(self) -> MappingProxyType[str, Any]:
        return MappingProxyType({**(self._attributes or {}), **USAGE})


def test_a_span_class_whose_properties_differ_from_its_fields_is_read_by_its_properties() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    ctx = SpanContext(trace_id=0x1F, span_id=0x2E, is_remote=False)
    now_ns = time.time_ns()
    span = _UsageInProperty(
        name="chat",
        context=ctx,
        attributes={"http.method": "POST"},
        start_time=now_ns - 1_000,
        end_time=now_ns,
    )
    p.processor.on_end(span)
    snap = p.processor.snapshot()
    assert _sums(snap.totals) == (1.0, 120.0, 7.0)
    assert snap.requests_total == 1  # a root: its own request
    assert p.sample("overspend_spans_dropped_total", {"reason": "internal_error"}) == 0
    p.provider.shutdown()


class _NameInProperty(Span):
    """A started span whose ``name`` property is not its ``_name`` field."""

    @property
    def name(self) -> str:
        return f"rerank {self._name}"


def test_a_started_span_class_whose_name_differs_from_its_field_is_read_by_its_properties() -> None:
    from otel_overspend.config.settings import StepRule

    p = make_pipeline(
        Settings(
            serve_metrics=False,
            use_genai_prices=False,
            step_rules=[StepRule(step="rerank", span_name="^rerank ")],
        )
    )
    ctx = SpanContext(trace_id=0x1F, span_id=0x2E, is_remote=False)
    span = _NameInProperty(name="documents", context=ctx)
    p.processor.on_start(span)  # outside any step(): the rules name its step
    # Not the SDK's class: the step the rule named (on the property's name) is held in the
    # processor's table of open spans, not written on the span.
    assert p.processor.step_of(span) == "rerank"
    assert "overspend.step" not in (span.attributes or {})
    p.processor.on_end(span)
    assert p.processor.step_of(span) is None  # no LLM call: forgotten at its end
    p.provider.shutdown()


def test_a_span_outside_any_step_leaves_nothing_behind_and_one_a_rule_names_only_while_open() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False), count_in_background=False)
    queue = p.processor._queue
    with p.tracer.start_as_current_span("GET /search"):
        with p.tracer.start_as_current_span("SELECT", attributes={"db.system": "postgresql"}) as db:
            assert p.processor.step_of(db) is None  # no step, no baggage, no rule
        kind = {"openinference.span.kind": "RETRIEVER"}
        with p.tracer.start_as_current_span("rerank", attributes=kind) as r:
            assert p.processor.step_of(r) == "retrieve"
            with p.tracer.start_as_current_span("score") as child:  # its parent's step, at its start
                assert p.processor.step_of(child) == "retrieve"
    assert "overspend.step" not in (getattr(r, "attributes", None) or {})  # held beside them
    assert len(queue.items) == 0  # no LLM call: nothing queued
    p.provider.shutdown()


class _Classes(SpanProcessor):
    """Notes the class of every span handed to ``on_start`` and ``on_end``."""

    def __init__(self) -> None:
        self.started: set[type[Any]] = set()
        self.ended: set[type[Any]] = set()

    def on_start(self, span: Span, parent_context: object = None) -> None:
        self.started.add(type(span))

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.add(type(span))


def test_the_classes_probed_are_those_the_sdk_hands_to_processors() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    seen = _Classes()
    p.provider.add_span_processor(seen)
    with (
        step("rerank"),
        p.tracer.start_as_current_span("request"),
        p.tracer.start_as_current_span("chat", attributes=USAGE),
    ):
        pass
    found = _sdk_spans()
    assert seen.started == {found.live}
    assert seen.ended == {found.ended}
    p.provider.shutdown()


def test_the_probe_says_why_the_contract_does_not_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the ended span did not share the started span's attributes (the held step).
    monkeypatch.setattr(
        sdk_probe._Keep, "on_start", lambda keep, span, parent_context=None: keep.started.append(span)
    )
    assert sdk_probe._check() == "the ended span does not share the started span's attributes"
    monkeypatch.undo()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the tracer makes no SDK span at all
    assert "does not start the SDK's spans" in str(sdk_probe._check())
    monkeypatch.undo()
    assert isinstance(sdk_probe._check(), SdkSpans)


def test_without_the_fast_path_it_warns_once_and_the_metric_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    probe.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="otel_overspend"):
            p = make_pipeline(Settings(serve_metrics=False))
            q = make_pipeline(Settings(serve_metrics=False))
    finally:
        probe.cache_clear()
    assert p.processor.span_reading[0] == "public_api"
    assert "does not start the SDK's spans" in p.processor.span_reading[1]
    assert p.sample("overspend_span_reading_info", {"path": "public_api"}) == 1.0
    assert len([r for r in caplog.records if "public API" in r.getMessage()]) == 2  # once a processor
    p.provider.shutdown()
    q.provider.shutdown()


def _seed_request(p: Any) -> None:
    # The four-step RAG request: four frontier calls, each in its own step.
    for name, tokens_in, tokens_out in (
        ("rewrite", 200, 50),
        ("rerank", 12_000, 200),
        ("generate", 3_500, 400),
        ("faithfulness", 4_000, 100),
    ):
        attrs = {
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
        }
        with (
            step(name),
            p.tracer.start_as_current_span(name),
            p.tracer.start_as_current_span(f"chat {name}", attributes=attrs),
        ):
            pass


def test_spans_read_by_their_properties_are_counted_as_those_read_by_their_fields() -> None:
    counted = []
    for sdk_fields in (True, False):
        p = make_pipeline(Settings(serve_metrics=False), sdk_fields=sdk_fields)
        exported = InMemorySpanExporter()
        p.provider.add_span_processor(SimpleSpanProcessor(exported))
        with p.tracer.start_as_current_span("request"):
            _seed_request(p)
        p.processor.force_flush()
        snap = p.processor.snapshot()
        counted.append((_sums(snap.totals), {key[0] for key in snap.totals}, snap.requests_total))
        assert p.sample("overspend_spans_dropped_total", {"reason": "internal_error"}) == 0
        # Nothing the user did not ask for: no step attribute on any exported span.
        assert all("overspend.step" not in (s.attributes or {}) for s in exported.get_finished_spans())
        p.provider.shutdown()
    assert counted[0] == counted[1]
    assert counted[0][0] == (4.0, 19_700.0, 750.0)  # 200+12000+3500+4000 in, 50+200+400+100 out
    assert counted[0][1] == {"rewrite", "rerank", "generate", "faithfulness"}
    assert counted[0][2] == 1


def test_an_ended_sdk_class_span_without_context_or_bounded_attributes_is_still_read() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    now_ns = time.time_ns()
    no_context = ReadableSpan(name="chat", context=None, attributes=USAGE, start_time=now_ns, end_time=now_ns)
    p.processor.on_end(no_context)  # nothing to key it by: left alone, not an error
    ctx = SpanContext(trace_id=0x1F, span_id=0x2E, is_remote=False)
    plain = ReadableSpan(name="chat", context=ctx, attributes=dict(USAGE), start_time=now_ns, end_time=now_ns)
    p.processor.on_end(plain)
    snap = p.processor.snapshot()
    assert _sums(snap.totals) == (1.0, 120.0, 7.0)
    assert p.sample("overspend_spans_dropped_total", {"reason": "internal_error"}) == 0
    p.provider.shutdown()
