"""Steps from what frameworks already record, and through the spans they wrap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import wrapt
from opentelemetry import context, trace

from otel_overspend import Settings, step

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue


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
    assert p.processor.step_of(child) == "rerank"
    child.end()
    chain.end()
    p.provider.force_flush()


def _calls_by_step(p: Pipeline) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in p.registry.collect():
        for sample in family.samples:
            if sample.name == "overspend_llm_calls_total" and sample.value:
                step_name = sample.labels["step"]
                found[step_name] = found.get(step_name, 0.0) + sample.value
    return found


USAGE: dict[str, AttributeValue] = {
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1_000,
    "gen_ai.usage.output_tokens": 100,
}


def test_a_traceloop_task_names_the_step_it_sets_after_its_start() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    sdk = p.provider.get_tracer("traceloop.tracer")
    client = p.provider.get_tracer("opentelemetry.instrumentation.openai.v1")
    with sdk.start_as_current_span("pipeline.workflow") as workflow:
        workflow.set_attributes({"traceloop.span.kind": "workflow", "traceloop.entity.name": "pipeline"})
        for task in ("rewrite", "score_docs"):
            with sdk.start_as_current_span(f"{task}.task") as span:
                with client.start_as_current_span("openai.chat", attributes=USAGE):
                    pass
                # As Traceloop does: the entity name is set after the span started.
                span.set_attributes({"traceloop.span.kind": "task", "traceloop.entity.name": task})
    p.provider.force_flush()
    # score_docs is a step name too; it is what the task is called.
    assert _calls_by_step(p) == {"rewrite": 1.0, "score_docs": 1.0}


def test_aliases_map_framework_names_onto_steps_and_class_names_are_never_steps() -> None:
    p = make_pipeline(Settings(serve_metrics=False, step_aliases={"score_docs": "rerank"}))
    framework = p.provider.get_tracer("openinference.instrumentation.langchain")
    client = p.provider.get_tracer("openinference.instrumentation.openai")
    chain = {"openinference.span.kind": "CHAIN"}
    with p.tracer.start_as_current_span("POST /answer"):
        for run_name in ("score_docs", "RunnableSequence"):
            with (
                framework.start_as_current_span(run_name, attributes=chain),
                framework.start_as_current_span("ChatOpenAI", attributes={"openinference.span.kind": "LLM"}),
                client.start_as_current_span("ChatCompletion", attributes=USAGE),
            ):
                pass
    p.provider.force_flush()
    assert _calls_by_step(p) == {"rerank": 1.0, "unattributed": 1.0}


def test_a_framework_span_and_a_client_span_in_two_traces_count_once_with_the_step() -> None:
    # OpenInference's LangChain spans are not made current: with no app span, the client
    # span of the same call is the root of another trace.
    p = make_pipeline(Settings(serve_metrics=False))
    framework = p.provider.get_tracer("openinference.instrumentation.langchain")
    client = p.provider.get_tracer("openinference.instrumentation.openai")
    llm_usage: dict[str, AttributeValue] = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o",
        "llm.token_count.prompt": 1_000,
        "llm.token_count.completion": 100,
    }
    for _ in range(3):
        chain = framework.start_span("rerank", attributes={"openinference.span.kind": "CHAIN"})
        llm = framework.start_span("ChatOpenAI", context=trace.set_span_in_context(chain))
        with client.start_as_current_span("ChatCompletion", attributes=USAGE, context=context.Context()):
            pass
        llm.set_attributes(llm_usage)
        llm.end()
        chain.end()
    p.provider.force_flush()
    assert _calls_by_step(p) == {"rerank": 3.0}
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 3.0
    # gpt-4o: 3 x (1,000 x 2.50 + 100 x 10) = 3 x 3,500 micro-dollars.
    assert p.total("overspend_llm_cost_usd_total") == pytest.approx(0.0105, abs=1e-12)


def test_calls_without_a_step_under_an_app_span_count_once_it_ends() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    with p.tracer.start_as_current_span("POST /answer"):
        with p.tracer.start_as_current_span("chat", attributes=USAGE):
            pass
        # Its step may yet come from the app span's final attributes: not counted yet.
        assert _calls_by_step(p) == {}
    p.processor.force_flush()
    assert _calls_by_step(p) == {"unattributed": 1.0}
    assert p.sample("overspend_requests_total") == 1.0


def test_two_instrumentations_in_two_traces_inside_a_step_count_once() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    framework = p.provider.get_tracer("openinference.instrumentation.langchain")
    client = p.provider.get_tracer("openinference.instrumentation.openai")
    with step("generate"):
        llm = framework.start_span("ChatOpenAI", attributes={"openinference.span.kind": "LLM"})
        with client.start_as_current_span("ChatCompletion", attributes=USAGE):
            pass
        llm.set_attributes(
            {"llm.model_name": "gpt-4o", "llm.token_count.prompt": 1_000, "llm.token_count.completion": 100}
        )
        llm.end()
    p.provider.force_flush()
    assert _calls_by_step(p) == {"generate": 1.0}
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 1.0
