"""The span hooks read the SDK's own spans by their fields, any other span by its properties,
and hold no ended span that has no LLM call in or below it."""

from __future__ import annotations

import time
import weakref
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext

from otel_overspend import Settings, step
from otel_overspend.accounting.ledger import CALLS, INPUT, OUTPUT
from otel_overspend.hooks import processor as processor_module
from otel_overspend.hooks import sdk as span_fields
from otel_overspend.hooks.sdk import (
    BOUNDED_ATTRIBUTES,
    DIRECT_ENDED,
    DIRECT_LIVE,
    SDK_ENDED,
    SDK_LIVE,
    held_step,
)

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


def test_the_sdk_span_classes_are_learned_as_read_directly() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    with step("rerank"), p.tracer.start_as_current_span("request") as root:
        pass
    assert isinstance(root, Span)
    assert type(root) in DIRECT_LIVE
    assert ReadableSpan in DIRECT_ENDED
    assert BOUNDED_ATTRIBUTES is BoundedAttributes
    p.provider.shutdown()


def test_ended_spans_without_an_llm_call_are_not_held_and_llm_spans_are_until_counted() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    queue = p.processor._queue
    queue._stopped = True  # no background thread: only a flush counts
    queue._event.set()
    keep = _KeepRefs()
    p.provider.add_span_processor(keep)
    with step("generate"), p.tracer.start_as_current_span("request"):
        with p.tracer.start_as_current_span("db query", attributes={"db.system": "postgresql"}):
            pass
        with p.tracer.start_as_current_span("chat", attributes=USAGE):
            pass
    assert keep.refs["db query"]() is None  # freed at once: only its id was queued
    assert keep.refs["chat"]() is not None  # queued whole, to be counted
    assert keep.refs["request"]() is not None  # an LLM call below it: it closes the request
    p.processor.force_flush()
    assert keep.refs["chat"]() is None
    assert keep.refs["request"]() is None
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
    assert _UsageInProperty not in DIRECT_ENDED
    snap = p.processor.snapshot()
    assert _sums(snap.totals) == (1.0, 120.0, 7.0)
    assert snap.requests_total == 1  # a root: its own request
    assert p.processor._dropped == {}
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
    assert _NameInProperty not in DIRECT_LIVE
    # Not the SDK's class: the step the rule named (on the property's name) is written on it.
    assert (span.attributes or {}).get("overspend.step") == "rerank"
    assert held_step(span) is None
    p.provider.shutdown()


def test_a_span_outside_any_step_leaves_nothing_behind_and_one_a_rule_names_only_while_open() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    queue = p.processor._queue
    queue._stopped = True  # no background thread: what the hooks queue stays queued
    queue._event.set()
    with p.tracer.start_as_current_span("GET /search"):
        with p.tracer.start_as_current_span("SELECT", attributes={"db.system": "postgresql"}) as db:
            assert held_step(db) is None  # no step, no baggage, no rule
        kind = {"openinference.span.kind": "RETRIEVER"}
        with p.tracer.start_as_current_span("rerank", attributes=kind) as r:
            assert held_step(r) == "retrieve"
            with p.tracer.start_as_current_span("score") as child:  # its parent's step, at its start
                assert held_step(child) == "retrieve"
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


def test_the_classes_probed_at_import_are_those_the_sdk_hands_to_processors() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    seen = _Classes()
    p.provider.add_span_processor(seen)
    with (
        step("rerank"),
        p.tracer.start_as_current_span("request"),
        p.tracer.start_as_current_span("chat", attributes=USAGE),
    ):
        pass
    assert seen.started == {SDK_LIVE}
    assert seen.ended == {SDK_ENDED}
    assert SDK_LIVE is not SDK_ENDED  # SDK 1.45 hands on_end a ReadableSpan copy, not the span
    p.provider.shutdown()


def test_no_class_is_read_by_its_fields_untested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(span_fields, "BOUNDED_ATTRIBUTES", type(None))
    assert span_fields._probe_classes() == (type(None), type(None))
    monkeypatch.undo()
    # As if the ended span did not share the started span's attributes (the held step).
    monkeypatch.setattr(span_fields._Keep, "on_start", lambda *_, **__: None)
    assert span_fields._probe_classes() == (type(None), type(None))
    monkeypatch.undo()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the tracer makes no SDK span at all
    assert span_fields._probe_classes() == (type(None), type(None))


def _seed_request(p: Any) -> None:
    # The GUIDE's Test 2 request: four frontier calls, each in its own step.
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


def test_spans_read_by_their_properties_are_counted_as_those_read_by_their_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counted = []
    for direct in (True, False):
        if not direct:  # as if the probe had found neither class readable by its fields
            monkeypatch.setattr(processor_module, "_SDK_LIVE", type(None))
            monkeypatch.setattr(processor_module, "_SDK_ENDED", type(None))
            DIRECT_LIVE.clear()
            DIRECT_ENDED.clear()
        p = make_pipeline(Settings(serve_metrics=False))
        with p.tracer.start_as_current_span("request"):
            _seed_request(p)
        p.processor.force_flush()
        snap = p.processor.snapshot()
        counted.append((_sums(snap.totals), {key[0] for key in snap.totals}, snap.requests_total))
        assert p.processor._dropped == {}
        p.provider.shutdown()
    assert SDK_LIVE in DIRECT_LIVE  # learned again through the properties
    assert SDK_ENDED in DIRECT_ENDED
    assert counted[0] == counted[1]
    assert counted[0][0] == (4.0, 19_700.0, 750.0)  # 200+12000+3500+4000 in, 50+200+400+100 out
    assert counted[0][1] == {"rewrite", "rerank", "generate", "faithfulness"}
    assert counted[0][2] == 1


def test_an_ended_sdk_class_span_without_context_or_bounded_attributes_is_still_read() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    now_ns = time.time_ns()
    no_context = SDK_ENDED(name="chat", context=None, attributes=USAGE, start_time=now_ns, end_time=now_ns)
    p.processor.on_end(no_context)  # nothing to key it by: left alone, not an error
    ctx = SpanContext(trace_id=0x1F, span_id=0x2E, is_remote=False)
    plain = SDK_ENDED(name="chat", context=ctx, attributes=dict(USAGE), start_time=now_ns, end_time=now_ns)
    assert type(plain._attributes) is dict  # not the BoundedAttributes the probe saw
    p.processor.on_end(plain)
    snap = p.processor.snapshot()
    assert _sums(snap.totals) == (1.0, 120.0, 7.0)
    assert p.processor._dropped == {}
    p.provider.shutdown()
