"""The direct reads of a baggage entry and of the current context answer what the API does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import TracerProvider

from otel_overspend.hooks import baggage as context_baggage
from otel_overspend.hooks.baggage import baggage_value

if TYPE_CHECKING:
    import pytest


def test_the_key_is_learned_and_the_direct_read_is_in_use() -> None:
    assert context_baggage.BAGGAGE_CONTEXT_KEY is not None  # the installed API keeps baggage as a dict
    assert baggage_value is not context_baggage._through_the_api


def test_the_direct_read_agrees_with_the_api_on_explicit_and_current_contexts() -> None:
    with_step = baggage.set_baggage("overspend.step", "rerank")
    other = baggage.set_baggage("tenant", "acme", context=with_step)
    cases: list[Context | None] = [Context(), with_step, other, context.set_value("unrelated", 1)]
    for ctx in cases:
        for name in ("overspend.step", "tenant", "missing"):
            assert baggage_value(name, ctx) == baggage.get_baggage(name, ctx)
    token = context.attach(other)
    try:
        assert baggage_value("overspend.step", None) == "rerank"
        assert baggage_value("tenant", None) == "acme"
        assert baggage_value("missing", None) is None
    finally:
        context.detach(token)
    assert baggage_value("overspend.step", None) is None


def test_a_value_under_the_key_that_is_no_dict_reads_as_no_baggage() -> None:
    key = context_baggage.BAGGAGE_CONTEXT_KEY
    assert key is not None
    odd = Context({key: ["not", "a", "dict"]})
    assert baggage_value("overspend.step", odd) is None
    assert baggage.get_baggage("overspend.step", odd) is None


def test_the_current_context_is_read_straight_off_the_apis_context_variable() -> None:
    assert context_baggage.current_context is not context.get_current  # the default runtime
    outer = context.get_current()
    assert context_baggage.current_context() is outer
    inner = context.set_value("unrelated", 1)
    token = context.attach(inner)
    try:
        assert context_baggage.current_context() is inner
        assert context_baggage.current_context() is context.get_current()
    finally:
        context.detach(token)
    assert context_baggage.current_context() is outer


def test_another_runtime_context_is_read_through_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    class Elsewhere(ContextVarsRuntimeContext):
        """A runtime context of another class (as OTEL_PYTHON_CONTEXT may load)."""

    monkeypatch.setattr(context, "_RUNTIME_CONTEXT", Elsewhere())
    assert context_baggage._learn_current() is context.get_current
    monkeypatch.undo()
    assert context_baggage._learn_current() is not context.get_current


def test_the_span_a_context_holds_is_read_by_its_key_as_the_api_reads_it() -> None:
    key = context_baggage.SPAN_CONTEXT_KEY
    assert key is not None  # the installed API keeps the span under one key
    span = TracerProvider().get_tracer("test").start_span("parent")
    remote = trace.NonRecordingSpan(trace.SpanContext(1, 2, is_remote=True))
    for held in (span, remote):
        ctx = trace.set_span_in_context(held, context.set_value("unrelated", 1))
        assert ctx.get(key) is held
        assert trace.get_current_span(ctx) is held
    assert Context().get(key) is None
    assert trace.get_current_span(Context()) is trace.INVALID_SPAN
    span.end()
