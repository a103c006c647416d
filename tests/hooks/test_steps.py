"""Every way an LLM span gets its step, through a real TracerProvider."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, cast

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_overspend import Settings, current_step, step
from otel_overspend import steps as steps_module
from otel_overspend.config.settings import StepRule

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Generator, Iterator, Mapping

    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def p() -> Iterator[Pipeline]:
    pipeline = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    yield pipeline
    pipeline.provider.shutdown()


def llm(
    p: Pipeline,
    name: str = "chat gpt-4o",
    attributes: Mapping[str, AttributeValue] | None = None,
    context: Context | None = None,
) -> None:
    """One finished LLM span with usage."""
    attrs: dict[str, AttributeValue] = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
    }
    attrs.update(attributes or {})
    p.tracer.start_span(name, context=context, attributes=attrs).end()


def calls_by_step(p: Pipeline) -> dict[str, float]:
    """``overspend_llm_calls_total`` summed by step, read from the registry."""
    out: dict[str, float] = {}
    for metric in p.registry.collect():
        for sample in metric.samples:
            if sample.name == "overspend_llm_calls_total":
                out[sample.labels["step"]] = out.get(sample.labels["step"], 0.0) + sample.value
    return out


def dropped(p: Pipeline, reason: str) -> float | None:
    return p.sample("overspend_spans_dropped_total", {"reason": reason})


# -- marking code -------------------------------------------------------------------------------
def test_with_step(p: Pipeline) -> None:
    with step("rerank"):
        assert current_step() == "rerank"
        llm(p)
    assert current_step() is None
    llm(p)
    assert calls_by_step(p) == {"rerank": 1, "unattributed": 1}


def test_async_with_step(p: Pipeline) -> None:
    async def main() -> None:
        async with step("rerank"):
            await asyncio.sleep(0)
            llm(p)
        assert current_step() is None

    asyncio.run(main())
    assert calls_by_step(p) == {"rerank": 1}


def test_nested_steps_innermost_wins(p: Pipeline) -> None:
    with step("retrieve"):
        with step("rerank"):
            llm(p)
            assert current_step() == "rerank"
        assert current_step() == "retrieve"
        llm(p)
        llm(p)
    assert calls_by_step(p) == {"rerank": 1, "retrieve": 2}


def test_step_is_popped_when_the_body_raises(p: Pipeline) -> None:
    with pytest.raises(KeyError), step("rerank"):
        raise KeyError
    assert current_step() is None
    llm(p)
    assert calls_by_step(p) == {"unattributed": 1}


def test_decorated_function(p: Pipeline) -> None:
    @step("rerank")
    def rerank(n: int) -> int:
        assert current_step() == "rerank"
        llm(p)
        return n * 2

    assert rerank(21) == 42
    assert rerank.__name__ == "rerank"
    assert current_step() is None
    llm(p)
    assert calls_by_step(p) == {"rerank": 1, "unattributed": 1}


def test_decorated_coroutine(p: Pipeline) -> None:
    @step("rerank")
    async def rerank() -> str:
        await asyncio.sleep(0)
        assert current_step() == "rerank"
        llm(p)
        return "done"

    async def main() -> None:
        assert await rerank() == "done"
        assert current_step() is None
        llm(p)

    asyncio.run(main())
    assert calls_by_step(p) == {"rerank": 1, "unattributed": 1}


def test_decorated_generator_step_is_active_in_the_body_only(p: Pipeline) -> None:
    @step("rerank")
    def ranked() -> Iterator[int]:
        for i in range(3):
            assert current_step() == "rerank"
            llm(p)
            yield i

    seen = []
    for item in ranked():
        assert current_step() is None  # the consumer, between yields
        llm(p)
        seen.append(item)
    assert seen == [0, 1, 2]
    assert calls_by_step(p) == {"rerank": 3, "unattributed": 3}


def test_decorated_generator_consumed_inside_another_step(p: Pipeline) -> None:
    @step("rerank")
    def ranked() -> Iterator[int]:
        llm(p)
        yield 1
        llm(p)
        yield 2

    with step("generate"):
        for _ in ranked():
            assert current_step() == "generate"
            llm(p)
        assert current_step() == "generate"
    assert current_step() is None
    assert calls_by_step(p) == {"rerank": 2, "generate": 2}


def test_decorated_generator_with_a_step_held_across_a_yield(p: Pipeline) -> None:
    @step("rerank")
    def ranked() -> Iterator[int]:
        with step("score"):
            yield 1
            assert current_step() == "score"  # the body's own step survives the yield
            llm(p)
        assert current_step() == "rerank"
        llm(p)
        yield 2

    for _ in ranked():
        assert current_step() is None  # neither "score" nor "rerank" leaks to the consumer
        llm(p)
    assert current_step() is None
    assert calls_by_step(p) == {"score": 1, "rerank": 1, "unattributed": 2}


def test_decorated_generator_send_throw_and_return(p: Pipeline) -> None:
    @step("rerank")
    def echo() -> Generator[str, str, str]:
        received = yield "ready"
        try:
            yield f"got {received} in {current_step()}"
        except ValueError as exc:
            llm(p)
            yield f"caught {exc} in {current_step()}"
        return "finished"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x in rerank"
    assert gen.throw(ValueError("boom")) == "caught boom in rerank"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "finished"
    assert current_step() is None
    assert calls_by_step(p) == {"rerank": 1}


def test_decorated_generator_closed_early(p: Pipeline) -> None:
    closed_in: list[str | None] = []

    @step("rerank")
    def ranked() -> Generator[int, None, None]:
        try:
            yield 1
            yield 2
        finally:
            closed_in.append(current_step())

    gen = ranked()
    assert next(gen) == 1
    gen.close()
    assert closed_in == ["rerank"]
    assert current_step() is None


def test_decorated_async_generator_step_is_active_in_the_body_only(p: Pipeline) -> None:
    @step("rerank")
    async def ranked() -> AsyncIterator[int]:
        for i in range(2):
            await asyncio.sleep(0)
            assert current_step() == "rerank"
            llm(p)
            yield i

    @step("judge")
    async def judged() -> AsyncIterator[int]:
        with step("score"):
            yield 1
            assert current_step() == "score"
            llm(p)
        yield 2

    async def main() -> None:
        async for _ in ranked():
            assert current_step() is None
            llm(p)
        async for _ in judged():
            assert current_step() is None
        assert current_step() is None

    asyncio.run(main())
    assert calls_by_step(p) == {"rerank": 2, "unattributed": 2, "score": 1}


# -- isolation ------------------------------------------------------------------------------------
def test_step_does_not_leak_into_other_threads(p: Pipeline) -> None:
    seen: list[str | None] = []

    def work() -> None:
        seen.append(current_step())
        llm(p)

    with step("rerank"):
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
    assert seen == [None]
    assert calls_by_step(p) == {"unattributed": 1}


def test_concurrent_threads_keep_their_own_steps(p: Pipeline) -> None:
    names = ("rewrite", "rerank", "judge")
    barrier = threading.Barrier(len(names))

    def work(name: str) -> None:
        with step(name):
            barrier.wait()  # every thread is inside its step before any span starts
            for _ in range(5):
                llm(p)
                assert current_step() == name

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls_by_step(p) == dict.fromkeys(names, 5)


def test_asyncio_tasks_keep_their_own_steps(p: Pipeline) -> None:
    names = ("rewrite", "rerank", "judge")

    async def work(name: str) -> None:
        with step(name):
            for _ in range(3):
                await asyncio.sleep(0)  # let the other tasks enter their steps
                assert current_step() == name
                llm(p)

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(work(name)) for name in names))
        assert current_step() is None
        llm(p)

    asyncio.run(main())
    assert calls_by_step(p) == {"rewrite": 3, "rerank": 3, "judge": 3, "unattributed": 1}


# -- baggage --------------------------------------------------------------------------------------
def test_baggage_on_a_remote_parent_names_the_step(p: Pipeline) -> None:
    ctx = PROPAGATOR.extract({"traceparent": TRACEPARENT, "baggage": "overspend.step=rerank"})
    assert trace.get_current_span(ctx).get_span_context().is_remote
    llm(p, context=ctx)
    assert calls_by_step(p) == {"rerank": 1}
    assert p.sample("overspend_requests_total") == 1  # a remote parent: the span is a local root


def test_a_local_step_beats_baggage(p: Pipeline) -> None:
    ctx = PROPAGATOR.extract({"traceparent": TRACEPARENT, "baggage": "overspend.step=rerank"})
    with step("generate"):
        llm(p, context=ctx)
    assert calls_by_step(p) == {"generate": 1}


@pytest.mark.parametrize("header", ["overspend.step=Re%20Rank", "overspend.step=", "overspend.step=9lives"])
def test_invalid_baggage_is_ignored_and_counted(p: Pipeline, header: str) -> None:
    ctx = PROPAGATOR.extract({"traceparent": TRACEPARENT, "baggage": header})
    llm(p, context=ctx)
    assert calls_by_step(p) == {"unattributed": 1}
    assert dropped(p, "invalid_baggage_step") == 1


def test_non_string_baggage_is_ignored_and_counted(p: Pipeline) -> None:
    llm(p, context=baggage.set_baggage("overspend.step", 42))
    assert calls_by_step(p) == {"unattributed": 1}
    assert dropped(p, "invalid_baggage_step") == 1


def test_step_with_baggage_writes_and_removes_it(p: Pipeline) -> None:
    carrier: dict[str, str] = {}
    assert baggage.get_baggage("overspend.step") is None
    with step("rerank", baggage=True):
        assert baggage.get_baggage("overspend.step") == "rerank"
        with step("score", baggage=True):
            assert baggage.get_baggage("overspend.step") == "score"
        assert baggage.get_baggage("overspend.step") == "rerank"
        PROPAGATOR.inject(carrier)
    assert baggage.get_baggage("overspend.step") is None
    assert "overspend.step=rerank" in carrier["baggage"]

    # A downstream service, with no step() of its own, attributes its call to "rerank".
    downstream = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    llm(downstream, context=PROPAGATOR.extract(carrier))
    assert calls_by_step(downstream) == {"rerank": 1}
    downstream.provider.shutdown()


def test_step_without_baggage_writes_none() -> None:
    with step("rerank"):
        assert baggage.get_baggage("overspend.step") is None


def test_decorated_generator_with_baggage(p: Pipeline) -> None:
    @step("rerank", baggage=True)
    def ranked() -> Iterator[object]:
        yield baggage.get_baggage("overspend.step")
        yield baggage.get_baggage("overspend.step")

    seen = []
    for item in ranked():
        seen.append(item)
        assert baggage.get_baggage("overspend.step") is None
    assert seen == ["rerank", "rerank"]


# -- inheritance and rules ---------------------------------------------------------------------------
def test_child_inherits_the_parent_spans_step(p: Pipeline) -> None:
    with step("rerank"):
        parent = p.tracer.start_span("rerank batch")
    assert current_step() is None
    with trace.use_span(parent, end_on_exit=True):
        llm(p)
        with p.tracer.start_as_current_span("tool call"):
            llm(p)  # a grandchild: the step passes through the intermediate span
    llm(p)  # outside the parent
    assert calls_by_step(p) == {"rerank": 2, "unattributed": 1}


def test_a_child_that_outlives_its_parent_keeps_the_parents_step() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False), count_in_background=False)
    with step("rerank"):
        parent = p.tracer.start_span("rerank batch")
    child = p.tracer.start_span(
        "chat gpt-4o",
        context=trace.set_span_in_context(parent),
        attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100},
    )
    parent.end()  # before the child's start is counted: its step is no longer in any table
    child.end()
    assert calls_by_step(p) == {"rerank": 1}
    p.provider.shutdown()


def test_a_thread_given_the_context_inherits_the_parents_step_without_the_step_frame(p: Pipeline) -> None:
    # What executors' context propagation does: the OTel context is attached in the worker
    # thread, the step() frame (a ContextVar of this library's) is not carried.
    with step("rerank"), p.tracer.start_as_current_span("rerank batch"):
        ctx = otel_context.get_current()
    seen: list[str | None] = []

    def work() -> None:
        token = otel_context.attach(ctx)
        try:
            seen.append(current_step())
            llm(p)
        finally:
            otel_context.detach(token)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [None]
    assert calls_by_step(p) == {"rerank": 1}


def test_a_parent_started_elsewhere_passes_only_a_step_it_carries() -> None:
    ahead_s = [0.0]
    p = make_pipeline(Settings(serve_metrics=False), clock=lambda: time.time() + ahead_s[0])
    other = TracerProvider().get_tracer("no overspend here")  # its spans hold no step
    plain = other.start_span("outer")
    tagged = other.start_span("outer", attributes={"overspend.step": "faithfulness"})
    for parent in (plain, tagged):
        llm(p, context=trace.set_span_in_context(parent))
        parent.end()
    # The call under the plain parent waits for an ancestor to name its step; this
    # processor never sees that parent end, so it is counted, unattributed, once it has
    # waited longer than the request time-out.
    assert calls_by_step(p) == {"faithfulness": 1}
    ahead_s[0] = Settings().request_timeout_seconds + 1
    assert calls_by_step(p) == {"unattributed": 1, "faithfulness": 1}
    assert p.sample("overspend_label_overflow_total", {"label": "step_wait"}) == 1
    assert dropped(p, "internal_error") == 0


def test_a_remote_parent_passes_no_step(p: Pipeline) -> None:
    ctx = PROPAGATOR.extract({"traceparent": TRACEPARENT})
    llm(p, context=ctx)
    assert calls_by_step(p) == {"unattributed": 1}


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"openinference.span.kind": "RERANKER"}, "rerank"),
        ({"openinference.span.kind": "EMBEDDING"}, "embed"),
        ({"openinference.span.kind": "RETRIEVER"}, "retrieve"),
        ({"openinference.span.kind": "EVALUATOR"}, "evaluate"),
        ({"openinference.span.kind": "GUARDRAIL"}, "guardrail"),
        ({"gen_ai.operation.name": "embeddings"}, "embed"),
        ({"gen_ai.operation.name": "retrieval"}, "retrieve"),
        ({"llm.request.type": "rerank"}, "rerank"),
        ({"llm.request.type": "embedding"}, "embed"),
        # No hint about the step: never guessed to be generate.
        ({"openinference.span.kind": "LLM"}, "unattributed"),
        ({"gen_ai.operation.name": "chat"}, "unattributed"),
        ({"llm.request.type": "chat"}, "unattributed"),
        ({}, "unattributed"),
    ],
)
def test_default_rules(p: Pipeline, attributes: dict[str, AttributeValue], expected: str) -> None:
    llm(p, attributes=attributes)
    assert calls_by_step(p) == {expected: 1}


def test_rules_read_attributes_set_after_start(p: Pipeline) -> None:
    span = p.tracer.start_span("embed")
    span.set_attributes(
        {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small"}
    )
    span.set_attribute("gen_ai.usage.input_tokens", 500)
    span.end()
    assert calls_by_step(p) == {"embed": 1}


def test_a_rule_matched_parent_passes_its_step_to_children(p: Pipeline) -> None:
    with p.tracer.start_as_current_span("reranker", attributes={"openinference.span.kind": "RERANKER"}):
        llm(p, attributes={"openinference.span.kind": "LLM"})
    assert calls_by_step(p) == {"rerank": 1}


def test_an_explicit_step_beats_the_rules(p: Pipeline) -> None:
    with step("generate"):
        llm(p, attributes={"openinference.span.kind": "RERANKER"})
    assert calls_by_step(p) == {"generate": 1}


def test_default_rules_can_be_switched_off() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False, default_step_rules=False))
    llm(p, attributes={"openinference.span.kind": "RERANKER"})
    assert calls_by_step(p) == {"unattributed": 1}


@pytest.fixture
def ruled() -> Iterator[Pipeline]:
    pipeline = make_pipeline(
        Settings(
            serve_metrics=False,
            use_genai_prices=False,
            step_rules=[
                StepRule(step="rerank", span_name=r"^cohere\.rerank"),
                StepRule(step="judge", attribute="app.task", equals="faithfulness"),
                StepRule(step="route", attribute="app.task", matches=r"^rout"),
                StepRule(step="classify", span_name=r"^guard", attribute="app.tier", equals="1"),
                StepRule(step="guard", attribute="openinference.span.kind", equals="RERANKER"),
            ],
        )
    )
    yield pipeline
    pipeline.provider.shutdown()


@pytest.mark.parametrize(
    ("name", "attributes", "expected"),
    [
        ("cohere.rerank v3.5", {}, "rerank"),
        ("my cohere.rerank", {}, "unattributed"),  # the regex is anchored
        ("chat", {"app.task": "faithfulness"}, "judge"),
        ("chat", {"app.task": "faithfulness-v2"}, "unattributed"),  # equals is exact
        ("chat", {"app.task": "router"}, "route"),
        ("guard check", {"app.tier": 1}, "classify"),  # a non-string value compares as text
        ("guard check", {"app.tier": 2}, "unattributed"),
        ("chat", {"app.tier": 1}, "unattributed"),  # every condition must hold
        ("chat", {"openinference.span.kind": "RERANKER"}, "guard"),  # user rules first
        ("chat", {"openinference.span.kind": "EMBEDDING"}, "embed"),  # then the defaults
    ],
)
def test_user_rules(ruled: Pipeline, name: str, attributes: dict[str, AttributeValue], expected: str) -> None:
    llm(ruled, name=name, attributes=attributes)
    assert calls_by_step(ruled) == {expected: 1}


# -- names ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Re Rank!", "", "rerank ", "1st", "_x", "rerank/v2", "a" * 64, "ré"])
def test_invalid_step_name_raises_at_the_call_site(name: str) -> None:
    with pytest.raises(ValueError, match="invalid step name"):
        step(name)
    with pytest.raises(ValueError, match="invalid step name"):
        step(name, baggage=True)


def test_non_string_step_name_raises() -> None:
    with pytest.raises(ValueError, match="invalid step name"):
        step(cast("str", 42))


@pytest.mark.parametrize("name", ["rerank", "a", "faithfulness_check", "step-2", "v1.rerank", "a" * 63])
def test_valid_step_names(p: Pipeline, name: str) -> None:
    with step(name):
        llm(p)
    assert calls_by_step(p) == {name: 1}


# -- the span's own attribute ------------------------------------------------------------------------
def test_a_span_attribute_names_the_step(p: Pipeline) -> None:
    llm(p, attributes={"overspend.step": "rerank"})
    with step("generate"):
        llm(p, attributes={"overspend.step": "judge"})  # set on the span itself: it wins
        llm(p, attributes={"overspend.step": "Not A Step"})  # invalid: ignored
    assert calls_by_step(p) == {"rerank": 1, "judge": 1, "generate": 1}


def test_stamped_spans_carry_their_step_to_exporters() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False, stamp_spans=True))
    exporter = InMemorySpanExporter()
    p.provider.add_span_processor(SimpleSpanProcessor(exporter))
    with step("rerank"), p.tracer.start_as_current_span("rerank batch"):
        llm(p)
    llm(p)
    stamped = [
        (span.name, (span.attributes or {}).get("overspend.step")) for span in exporter.get_finished_spans()
    ]
    assert stamped == [("chat gpt-4o", "rerank"), ("rerank batch", "rerank"), ("chat gpt-4o", None)]
    assert calls_by_step(p) == {"rerank": 1, "unattributed": 1}


def test_step_names_are_checked_once_and_no_long_string_is_kept() -> None:
    assert steps_module.is_step_name("rerank")
    assert steps_module.is_step_name("a" * 63)  # the longest a label value may be here
    for bad in ("Rerank", "re rank", "", "1st", "a" * 64, 5, None, b"rerank"):
        assert not steps_module.is_step_name(bad)
    # A baggage entry can be 8 KB: thousands of distinct long values keep nothing in memory.
    before = len(steps_module._CHECKED_NAMES)
    for i in range(1_000):
        assert not steps_module.is_step_name(f"{i:08d}" + "x" * 8_000)
    assert len(steps_module._CHECKED_NAMES) == before


def test_steps_with_baggage_keep_no_memory_per_use() -> None:
    before = len(contextvars.copy_context())
    for i in range(10_000):
        with step(f"s{i % 7}", baggage=True), step("inner", baggage=True):
            assert baggage.get_baggage("overspend.step") == "inner"
        assert baggage.get_baggage("overspend.step") is None
    assert len(contextvars.copy_context()) <= before + 1  # one variable for all of them


def test_importing_step_loads_neither_the_sdk_nor_the_processor() -> None:
    code = (
        "import sys\n"
        "from otel_overspend import step\n"
        "with step('rerank'):\n"
        "    pass\n"
        "heavy = ['opentelemetry.sdk', 'pydantic', 'prometheus_client', 'otel_overspend.processor']\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "from otel_overspend import OverspendProcessor\n"
        "print(OverspendProcessor.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["[]", "OverspendProcessor"]
