"""Pydantic AI agents, real package against the local fake provider.

The pipeline: 3 requests x four agents named rewrite, rerank, generate and faithfulness
(``Agent(model, name=...)``), one gpt-4o chat call each, instrumented with
``Agent.instrument_all(InstrumentationSettings(tracer_provider=...))``. No ``step()``: the agent
name (``gen_ai.agent.name``) is the only step marker. stack_support/pydantic_ai_pipeline.py runs
each scenario in a process of its own; stack_support/runs.py holds the hand
computation ($0.038625 in all).

What Pydantic AI (2.x, instrumentation format version 5) puts on spans, checked below: an
``invoke_agent <name>`` span per run carrying ``gen_ai.agent.name`` and the run's usage summed
as ``gen_ai.aggregated_usage.*`` (``gen_ai.usage.*`` only with
``use_aggregated_usage_attribute_names=False``), and under it a ``chat gpt-4o`` span per model
request that carries ``gen_ai.agent.name`` too, and the call's ``gen_ai.usage.*``.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from stack_support.runs import (
    STEP_NAMES,
    Result,
    Runs,
    assert_pinned_versions,
    assert_pipeline_counted,
    scenario,
)

pytestmark = [pytest.mark.e2e]

SCRIPT: Final = "pydantic_ai_pipeline.py"
MODULES: Final = ("pydantic_ai", "openai")
RUNS: Final = Runs(
    {
        "no_app_span": scenario(SCRIPT, "no_app_span", MODULES),
        "app_span": scenario(SCRIPT, "app_span", MODULES),
        "stream": scenario(SCRIPT, "stream", MODULES),
        "usage_on_agent_span": scenario(SCRIPT, "usage_on_agent_span", MODULES),
        "client_instrumented": scenario(
            SCRIPT, "client_instrumented", (*MODULES, "opentelemetry.instrumentation.openai")
        ),
    }
)
AGENT_SCOPE: Final = "pydantic-ai"
CHAT_SPAN: Final = "chat gpt-4o"
#: (input, output) tokens of each agent's one call (the fake's usage).
CALL_USAGE: Final = {
    "rewrite": (200, 50),
    "rerank": (1200, 200),
    "generate": (350, 400),
    "faithfulness": (400, 100),
}


@pytest.fixture(scope="module", autouse=True)
def _start_runs() -> None:
    RUNS.start()


@pytest.mark.parametrize(
    ("run", "duplicates"),
    [
        ("no_app_span", 0),
        ("app_span", 0),
        ("stream", 0),
        # The agent-run span carries gen_ai.usage.* too, above its chat span: one call, once.
        ("usage_on_agent_span", 12),
        # OpenLLMetry's span of each call nests under Pydantic AI's chat span: one call, once.
        ("client_instrumented", 12),
    ],
)
def test_pipeline_counted_by_agent_name_with_exact_dollars(run: str, duplicates: int) -> None:
    result = RUNS.result(run)
    assert_pipeline_counted(result)
    assert result.dropped() == ({"duplicate_llm_span": float(duplicates)} if duplicates else {})


def _agent_runs(result: Result) -> list[dict[str, Any]]:
    runs = [span for span in result.spans if span["name"].startswith("invoke_agent ")]
    assert sorted(span["name"] for span in runs) == sorted(f"invoke_agent {name}" for name in STEP_NAMES * 3)
    return runs


@pytest.mark.parametrize("run", ["no_app_span", "app_span", "stream"])
def test_agent_run_span_and_chat_span_both_carry_the_agent_name(run: str) -> None:
    result = RUNS.result(run)
    requests = result.named("request")
    for agent_run in _agent_runs(result):
        name = agent_run["attributes"]["gen_ai.agent.name"]
        assert agent_run["name"] == f"invoke_agent {name}"
        assert agent_run["scope"] == AGENT_SCOPE
        assert agent_run["attributes"]["gen_ai.operation.name"] == "invoke_agent"
        # The run's usage, summed, under names no usage reader takes for a call's.
        assert (
            agent_run["attributes"]["gen_ai.aggregated_usage.input_tokens"],
            agent_run["attributes"]["gen_ai.aggregated_usage.output_tokens"],
        ) == CALL_USAGE[name]
        assert "gen_ai.usage.input_tokens" not in agent_run["attributes"]
        (chat,) = result.children(agent_run)
        assert chat["name"] == CHAT_SPAN
        assert chat["kind"] == "CLIENT"
        attributes = chat["attributes"]
        assert attributes["gen_ai.agent.name"] == name
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
        assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
            CALL_USAGE[name]
        )
        if run == "app_span":
            (request,) = [span for span in requests if span["id"] == agent_run["parent"]]
            assert request["trace"] == agent_run["trace"]
        else:
            assert requests == []
            assert agent_run["parent"] is None  # each agent run is a trace of its own
    if run != "app_span":
        assert len({span["trace"] for span in _agent_runs(result)}) == 12


def test_usage_attribute_names_option_puts_the_run_usage_on_the_agent_span() -> None:
    result = RUNS.result("usage_on_agent_span")
    for agent_run in _agent_runs(result):
        (chat,) = result.children(agent_run)
        for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
            assert agent_run["attributes"][key] == chat["attributes"][key]


def test_client_instrumentation_span_nests_under_the_chat_span() -> None:
    result = RUNS.result("client_instrumented")
    chats = result.named(CHAT_SPAN)
    assert len(chats) == 12
    for chat in chats:
        (client,) = result.children(chat)
        assert client["name"] == "openai.chat"
        assert client["attributes"]["gen_ai.response.id"] == chat["attributes"]["gen_ai.response.id"]


def test_the_runs_used_the_pinned_versions() -> None:
    assert_pinned_versions(
        RUNS.result("no_app_span"), "constraints-instrumentations.txt", "pydantic-ai-slim", "openai"
    )
    assert_pinned_versions(
        RUNS.result("client_instrumented"),
        "constraints-instrumentations.txt",
        "opentelemetry-instrumentation-openai",
    )
