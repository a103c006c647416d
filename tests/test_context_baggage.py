"""The direct read of a baggage entry answers what ``opentelemetry.baggage.get_baggage`` does."""

from __future__ import annotations

from opentelemetry import baggage, context
from opentelemetry.context import Context

from otel_overspend import context_baggage
from otel_overspend.context_baggage import baggage_value


def test_the_key_is_learned_and_the_direct_read_is_in_use() -> None:
    assert context_baggage._KEY is not None  # the installed API keeps baggage as a dict
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
    key = context_baggage._KEY
    assert key is not None
    odd = Context({key: ["not", "a", "dict"]})
    assert baggage_value("overspend.step", odd) is None
    assert baggage.get_baggage("overspend.step", odd) is None
