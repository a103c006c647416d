"""Steps from what frameworks already record, and through the spans they wrap."""

from __future__ import annotations

import wrapt
from opentelemetry import context, trace

from otel_overspend import Settings, step
from otel_overspend.span_fields import held_step

from conftest import make_pipeline


def test_a_child_inherits_the_step_held_on_a_span_behind_a_proxy() -> None:
    # OpenInference's tracer returns (and makes current) a wrapt.ObjectProxy around the
    # SDK's span; the step the processor held on the span must still reach its children.
    p = make_pipeline(Settings(serve_metrics=False))
    with step("rerank"):
        chain = p.tracer.start_span("RunnableSequence")
    proxy: trace.Span = wrapt.ObjectProxy(chain)  # type: ignore[assignment]  # a Span in all but name
    token = context.attach(trace.set_span_in_context(proxy))
    try:
        child = p.tracer.start_span("ChatOpenAI")
    finally:
        context.detach(token)
    assert held_step(child) == "rerank"
    child.end()
    chain.end()
    p.provider.shutdown()
