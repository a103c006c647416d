"""LiteLLM with its OpenTelemetry callback, real package against the local fake provider.

The pipeline: 3 requests x rewrite, rerank, generate, faithfulness, one ``litellm.completion``
(``openai/gpt-4o``) each, marked with ``otel_overspend.step`` (LiteLLM names no steps itself);
stack_support/litellm_pipeline.py runs each scenario in a process of its own and
stack_support/runs.py holds the hand computation ($0.038625 in all).

What LiteLLM does (1.110, its default OpenTelemetry logger), checked by the span tests below:

- it writes its spans after the call, from its logging threads; a non-streamed call's callback
  runs in a copy of the caller's context, a synchronously streamed call's in none;
- with no span active it opens a root ``litellm_request`` span per call (scope ``litellm``);
- with a span active it opens none: it writes the call's usage (``gen_ai.usage.*``,
  ``gen_ai.cost.*``, ``litellm.call_id``, ``litellm.provider.model``, ``metadata.*`` ...) onto the
  active span, each call over the last. ``USE_OTEL_LITELLM_REQUEST_SPAN=true``, or the span
  passed as ``metadata={"litellm_parent_otel_span": span}``, makes it open its own
  ``litellm_request`` under that span instead;
- with message content captured (its default) it also opens a ``raw_gen_ai_request`` span per
  call under the span it wrote the usage to, carrying no ``gen_ai.usage.*``;
- a synchronously streamed call's span is a root of a trace of its own even under an app span:
  the step survives only through the recipe (a span opened inside ``step()`` and passed as
  ``litellm_parent_otel_span``).
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from stack_support.runs import (
    FAITHFULNESS_CALL_USD,
    STEP_NAMES,
    TOTAL_COST_USD,
    Result,
    Runs,
    assert_pinned_versions,
    assert_pipeline_counted,
    scenario,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT: Final = "litellm_pipeline.py"
REQUEST_SPAN_ENV: Final = {"USE_OTEL_LITELLM_REQUEST_SPAN": "true"}
RUNS: Final = Runs(
    {
        "no_app_span": scenario(SCRIPT, "no_app_span", ("litellm",)),
        "request_span": scenario(SCRIPT, "request_span", ("litellm",), env=REQUEST_SPAN_ENV),
        "step_spans": scenario(SCRIPT, "step_spans", ("litellm",)),
        "overwrite": scenario(SCRIPT, "overwrite", ("litellm",)),
        "stream_no_app_span": scenario(SCRIPT, "stream_no_app_span", ("litellm",)),
        "stream_request_span": scenario(SCRIPT, "stream_request_span", ("litellm",), env=REQUEST_SPAN_ENV),
        "stream_recipe": scenario(SCRIPT, "stream_recipe", ("litellm",)),
        "stream_recipe_request_span": scenario(SCRIPT, "stream_recipe_request_span", ("litellm",)),
    }
)
#: The instrumentation scope of LiteLLM's own spans (its tracer name, ``OTEL_TRACER_NAME``).
LITELLM_SCOPE: Final = "litellm"
#: LiteLLM's span per call, and its message-content child.
REQUEST_SPAN: Final = "litellm_request"
RAW_SPAN: Final = "raw_gen_ai_request"
#: Why a LiteLLM call whose usage a later call overwrote on the same span is not counted.
OVERWRITTEN: Final = "litellm_usage_overwritten"


@pytest.fixture(scope="module", autouse=True)
def _start_runs() -> None:
    RUNS.start()


def written_by_litellm(span: dict[str, Any]) -> bool:
    """The fingerprint of a span LiteLLM wrote a call's usage onto without opening it: not of
    LiteLLM's scope, and carrying the call id LiteLLM writes with every call's usage."""
    return span["scope"] != LITELLM_SCOPE and "litellm.call_id" in span["attributes"]


def usage(span: dict[str, Any]) -> tuple[int, int]:
    attributes = span["attributes"]
    return attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]


# -- what is counted --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "run",
    [
        "no_app_span",  # a litellm_request root per call, the step from step()
        "request_span",  # USE_OTEL_LITELLM_REQUEST_SPAN=true: litellm_request under the request
        "step_spans",  # one call's usage written onto each step's own app span
        "stream_recipe",  # streamed, the step span passed as litellm_parent_otel_span
        "stream_recipe_request_span",
    ],
)
def test_pipeline_counted_by_step_with_exact_dollars(run: str) -> None:
    result = RUNS.result(run)
    assert_pipeline_counted(result)
    assert result.dropped() == {}


def test_usage_overwritten_on_the_active_span_is_counted_as_dropped() -> None:
    """Without USE_OTEL_LITELLM_REQUEST_SPAN, under a request span, LiteLLM writes the four calls
    of a request onto the request span, each over the last: the span ends with the last call's
    usage (faithfulness: 400 in, 100 out, $0.002). That call is counted; the three calls it
    overwrote per request (9) are counted as dropped, not lost silently."""
    result = RUNS.result("overwrite")
    assert sum(result.calls_by_step().values()) == 3
    assert sum(result.cost_by_step().values()) == pytest.approx(3 * FAITHFULNESS_CALL_USD, rel=1e-9)
    assert result.dropped() == {OVERWRITTEN: 9.0}


@pytest.mark.parametrize("run", ["stream_no_app_span", "stream_request_span"])
def test_sync_streaming_without_the_recipe_loses_the_step_not_the_calls(run: str) -> None:
    """LiteLLM logs a synchronously streamed call without the caller's context: its span is a
    trace of its own, outside step() and outside any request span, so nothing can give it
    a step. Every call is still counted, at its price."""
    result = RUNS.result(run)
    assert result.calls_by_step() == {"unattributed": 12.0}
    assert sum(result.cost_by_step().values()) == pytest.approx(TOTAL_COST_USD, rel=1e-9)
    assert result.dropped() == {}


# -- what LiteLLM puts on spans ---------------------------------------------------------------------
def _calls(result: Result) -> list[dict[str, Any]]:
    calls = result.named(REQUEST_SPAN)
    assert len(calls) == 12
    return calls


def test_no_app_span_gives_a_root_span_per_call() -> None:
    result = RUNS.result("no_app_span")
    calls = _calls(result)
    assert {span["scope"] for span in calls} == {LITELLM_SCOPE}
    assert all(span["parent"] is None for span in calls)
    assert len({span["trace"] for span in calls}) == 12
    for span in calls:
        attributes = span["attributes"]
        assert attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
        assert attributes["litellm.provider.model"] == "openai/gpt-4o"
        assert attributes["gen_ai.cost.total_cost"] > 0
        assert not written_by_litellm(span)
        (raw,) = result.children(span)
        assert raw["name"] == RAW_SPAN
        assert "gen_ai.usage.input_tokens" not in raw["attributes"]
    assert sorted(usage(span) for span in calls) == sorted(
        [(200, 50), (1200, 200), (350, 400), (400, 100)] * 3
    )


def test_request_span_variable_opens_litellm_spans_under_the_request() -> None:
    result = RUNS.result("request_span")
    requests = result.named("request")
    assert len(requests) == 3
    for request in requests:
        assert not written_by_litellm(request)
        assert "gen_ai.usage.input_tokens" not in request["attributes"]
        children = result.children(request)
        assert [span["name"] for span in children] == [REQUEST_SPAN] * 4
        assert {span["trace"] for span in children} == {request["trace"]}


def test_active_span_gets_each_calls_usage_written_over_the_last() -> None:
    result = RUNS.result("overwrite")
    assert result.named(REQUEST_SPAN) == []
    requests = result.named("request")
    assert len(requests) == 3
    for request in requests:
        assert written_by_litellm(request)
        assert usage(request) == (400, 100)  # the last call of the request: faithfulness
        assert request["attributes"]["gen_ai.cost.total_cost"] == pytest.approx(FAITHFULNESS_CALL_USD)
        # One raw_gen_ai_request child per call written onto it: the count of what was overwritten.
        assert [span["name"] for span in result.children(request)] == [RAW_SPAN] * 4


def test_each_step_span_gets_one_calls_usage() -> None:
    result = RUNS.result("step_spans")
    assert result.named(REQUEST_SPAN) == []
    for request in result.named("request"):
        assert not written_by_litellm(request)
        step_spans = result.children(request)
        assert [span["name"] for span in step_spans] == list(STEP_NAMES)
        for span in step_spans:
            assert written_by_litellm(span)
            assert [child["name"] for child in result.children(span)] == [RAW_SPAN]
    assert {span["name"]: usage(span) for span in result.spans if written_by_litellm(span)} == {
        "rewrite": (200, 50),
        "rerank": (1200, 200),
        "generate": (350, 400),
        "faithfulness": (400, 100),
    }


@pytest.mark.parametrize("run", ["stream_no_app_span", "stream_request_span"])
def test_sync_streamed_call_is_a_trace_of_its_own(run: str) -> None:
    result = RUNS.result(run)
    calls = _calls(result)
    request_traces = {span["trace"] for span in result.named("request")}
    assert len(request_traces) == (3 if run == "stream_request_span" else 0)
    for span in calls:
        assert span["parent"] is None
        assert span["trace"] not in request_traces
        assert span["attributes"]["llm.is_streaming"] == "True"
        # A streamed reply is named after the request's model, not the dated one.
        assert span["attributes"]["gen_ai.response.model"] == "gpt-4o"


@pytest.mark.parametrize("run", ["stream_recipe", "stream_recipe_request_span"])
def test_stream_recipe_puts_litellm_span_under_the_step_span(run: str) -> None:
    result = RUNS.result(run)
    calls = _calls(result)
    by_id = {span["id"]: span for span in result.spans}
    parents = [by_id[span["parent"]] for span in calls]
    assert sorted(parent["name"] for parent in parents) == sorted(STEP_NAMES * 3)
    for span, parent in zip(calls, parents, strict=True):
        assert span["trace"] == parent["trace"]
        assert not written_by_litellm(parent)


def test_the_runs_used_the_pinned_versions() -> None:
    assert_pinned_versions(
        RUNS.result("no_app_span"), "constraints-instrumentations.txt", "litellm", "openai"
    )
