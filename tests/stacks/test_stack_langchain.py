"""LangChain and LangGraph under OpenInference's and OpenLLMetry's LangChain instrumentations,
real packages against the local fake provider, steps named only by the framework.

The pipeline: 3 requests x rewrite, rerank, generate, faithfulness, one gpt-4o chat call each
(stack_support/langchain_pipeline.py):

- LangChain: each step is ``(prompt | llm).with_config(run_name=<step>)``;
- LangGraph: each request is one graph ``invoke`` whose nodes are named after the steps.

Every run must count 12 calls, 3 per step, $0.038625 in all (the hand computation is in
stack_support/runs.py): with and without an app span around each request, with and
without a client instrumentation on the same openai client (openai-v2, or the LangChain
instrumentation's own vendor's). Nothing calls ``otel_overspend.step``: the step comes from the run
or node name the framework records.

What the instrumentations put on spans (checked by the span tests below):

- OpenInference: a ``CHAIN`` span named after the run (``rerank``) or the node, under a
  ``LangGraph`` ``CHAIN`` span for a graph, with a ``ChatOpenAI`` ``LLM`` span inside carrying
  ``llm.token_count.*`` (and no response id). Its spans are not made current: a client
  instrumentation's span is not their child. Under an app span it is the app span's child; with
  none it is the root of a trace of its own, apart from the framework's.
- OpenLLMetry: the top-level run is ``<run>.workflow`` (``traceloop.span.kind=workflow``,
  ``traceloop.entity.name=<run>``, ``gen_ai.agent.name=<run>``); a graph is
  ``invoke_agent LangGraph`` > ``LangGraph.workflow`` > ``execute_task <node>``
  (``traceloop.span.kind=task``, ``traceloop.entity.name=<node>``); the LLM span
  ``ChatOpenAI.chat`` carries ``gen_ai.usage.*`` and ``traceloop.entity.path`` (the node in a
  graph, ``""`` in a plain chain). Its spans are current: a client span is a child of the
  workflow span. With OpenLLMetry's own openai instrumentation it suppresses the client span.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pytest
from stack_support.runs import (
    DUPLICATE,
    STEP_NAMES,
    TOTAL_COST_USD,
    Result,
    Run,
    Runs,
    assert_pinned_versions,
    assert_pipeline_counted,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT: Final = "langchain_pipeline.py"
OPENINFERENCE: Final = "openinference-langchain"
OPENLLMETRY: Final = "openllmetry-langchain"
OPENINFERENCE_SCOPE: Final = "openinference.instrumentation.langchain"
OPENLLMETRY_SCOPE: Final = "opentelemetry.instrumentation.langchain"
#: client instrumentation -> (its scope, its span name for a gpt-4o chat call).
CLIENTS: Final = {
    "openai-v2": ("opentelemetry.instrumentation.openai_v2", "chat gpt-4o"),
    "openinference-openai": ("openinference.instrumentation.openai", "ChatCompletion"),
    "openllmetry-openai": ("opentelemetry.instrumentation.openai.v1", "openai.chat"),
}
#: The client instrumentation of each LangChain instrumentation's own vendor.
SAME_VENDOR: Final = {OPENINFERENCE: "openinference-openai", OPENLLMETRY: "openllmetry-openai"}
#: The modules every run imports.
_MODULES: Final = ("langchain_openai", "langgraph", "openinference.instrumentation.langchain")


def _name(pipeline: str, framework: str, client: str | None, app_span: bool) -> str:
    return "-".join(
        part for part in (pipeline, framework, client or "alone", "app_span" if app_span else "bare") if part
    )


def _run(pipeline: str, framework: str, client: str | None, app_span: bool) -> Run:
    instrument = ",".join(name for name in (framework, client) if name)
    args = (f"--pipeline={pipeline}", f"--instrument={instrument}", *(("--app-span",) if app_span else ()))
    return Run(SCRIPT, args, modules=_MODULES)


#: (pipeline, LangChain instrumentation, client instrumentation or None, app span?)
MATRIX: Final = [
    *(
        ("langchain", framework, client, app_span)
        for framework in (OPENINFERENCE, OPENLLMETRY)
        for client in (None, "openai-v2", SAME_VENDOR[framework])
        for app_span in (False, True)
    ),
    *(
        ("langgraph", framework, client, app_span)
        for framework in (OPENINFERENCE, OPENLLMETRY)
        for client in (None, "openai-v2")
        for app_span in (False, True)
    ),
]
#: Chains without run names (LangChain names the run ``RunnableSequence``), under each LangChain
#: instrumentation with openai-v2: with and without an app span.
UNNAMED: Final = [
    ("langchain_unnamed", framework, "openai-v2", app_span)
    for framework in (OPENINFERENCE, OPENLLMETRY)
    for app_span in (False, True)
]
#: Run names that are not the steps (langchain_pipeline.RUN_NAMES), with openai-v2, no app span:
#: framework -> (run without step_aliases, run with them).
RENAMED: Final = {
    framework: (
        _name("langchain_renamed", framework, "openai-v2", False),
        _name("langchain_renamed", framework, "openai-v2", False) + "-aliases",
    )
    for framework in (OPENINFERENCE, OPENLLMETRY)
}
RUNS: Final = Runs(
    {
        **{_name(*case): _run(*case) for case in MATRIX + UNNAMED},
        **{
            plain: _run("langchain_renamed", framework, "openai-v2", False)
            for framework, (plain, _) in RENAMED.items()
        },
        **{
            aliased: Run(
                SCRIPT,
                (*_run("langchain_renamed", framework, "openai-v2", False).args, "--aliases"),
                _MODULES,
            )
            for framework, (_, aliased) in RENAMED.items()
        },
    }
)


@pytest.fixture(scope="module", autouse=True)
def _start_runs() -> None:
    RUNS.start()


def _recorded_twice(framework: str, client: str | None) -> bool:
    """Whether the call is on two spans: a client instrumentation records it too, except
    OpenLLMetry's openai under OpenLLMetry's LangChain instrumentation, which it switches off."""
    return client is not None and not (framework == OPENLLMETRY and client == SAME_VENDOR[OPENLLMETRY])


# -- what is counted --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pipeline", "framework", "client", "app_span"), MATRIX, ids=[_name(*c) for c in MATRIX]
)
def test_pipeline_counted_by_framework_step_with_exact_dollars(
    pipeline: str, framework: str, client: str | None, app_span: bool
) -> None:
    """12 calls, 3 per step, $0.038625; the client span of a call recorded twice is dropped as its
    duplicate (12), even when the two spans are in different traces (OpenInference, no app span)."""
    result = RUNS.result(_name(pipeline, framework, client, app_span))
    assert_pipeline_counted(result, duplicates=12 if _recorded_twice(framework, client) else 0)


@pytest.mark.parametrize(
    ("pipeline", "framework", "client", "app_span"), MATRIX, ids=[_name(*c) for c in MATRIX]
)
def test_requests_are_the_apps_not_the_instrumentations_traces(
    pipeline: str, framework: str, client: str | None, app_span: bool
) -> None:
    """A request is the trace an app span or a top-level framework run starts: 3 with an app span
    or a graph per request, 12 for bare chains (each run its own trace). The client span of a call
    in a trace of its own (OpenInference, no app span) is the same call, not another request."""
    result = RUNS.result(_name(pipeline, framework, client, app_span))
    assert result.requests() == (3.0 if app_span or pipeline == "langgraph" else 12.0)


@pytest.mark.parametrize(
    ("pipeline", "framework", "client", "app_span"), UNNAMED, ids=[_name(*c) for c in UNNAMED]
)
def test_runs_named_after_classes_count_each_call_once_unattributed(
    pipeline: str, framework: str, client: str, app_span: bool
) -> None:
    """Class names (``RunnableSequence``, ``ChatPromptTemplate``, ``ChatOpenAI``) are never steps:
    12 calls, all unattributed, each counted once although two instrumentations record it, in one
    trace (OpenLLMetry; OpenInference under an app span) or in two (OpenInference, no app span)."""
    result = RUNS.result(_name(pipeline, framework, client, app_span))
    assert result.calls_by_step() == {"unattributed": 12.0}
    assert sum(result.cost_by_step().values()) == pytest.approx(TOTAL_COST_USD, rel=1e-9)
    assert result.dropped() == {DUPLICATE: 12.0}
    chain = "RunnableSequence" if framework == OPENINFERENCE else "RunnableSequence.workflow"
    assert len(result.named(chain)) == 12


@pytest.mark.parametrize("framework", [OPENINFERENCE, OPENLLMETRY])
def test_run_names_that_are_step_names_are_steps_and_aliases_map_the_others(framework: str) -> None:
    """Run names QueryRewriter, score_docs, Answer, faithfulness_check (no app span, openai-v2
    too): with no configuration the two valid step names are steps of those names and the other
    two calls (rewrite, generate: 3 x $0.001 + 3 x $0.004875 = $0.017625) are unattributed; with
    ``step_aliases`` naming each, the pipeline is counted by its steps. Each call once."""
    plain, aliased = RENAMED[framework]
    result = RUNS.result(plain)
    assert result.calls_by_step() == {"score_docs": 3.0, "faithfulness_check": 3.0, "unattributed": 6.0}
    cost = result.cost_by_step()
    assert cost == pytest.approx({"score_docs": 0.015, "faithfulness_check": 0.006, "unattributed": 0.017625})
    assert result.dropped() == {DUPLICATE: 12.0}
    assert_pipeline_counted(RUNS.result(aliased), duplicates=12)


# -- what the instrumentations put on spans ---------------------------------------------------------
def _llm_spans(result: Result, framework: str) -> list[dict[str, Any]]:
    name, scope = (
        ("ChatOpenAI", OPENINFERENCE_SCOPE)
        if framework == OPENINFERENCE
        else ("ChatOpenAI.chat", OPENLLMETRY_SCOPE)
    )
    spans = [span for span in result.named(name) if span["scope"] == scope]
    assert len(spans) == 12
    return spans


def _client_spans(result: Result, client: str) -> list[dict[str, Any]]:
    scope, name = CLIENTS[client]
    spans = result.of_scope(scope)
    assert [span["name"] for span in spans] == [name] * 12
    return spans


@pytest.mark.parametrize("client", [None, "openai-v2"])
def test_openinference_names_the_chain_span_after_the_run(client: str | None) -> None:
    result = RUNS.result(_name("langchain", OPENINFERENCE, client, False))
    for llm in _llm_spans(result, OPENINFERENCE):
        attributes = llm["attributes"]
        assert attributes["openinference.span.kind"] == "LLM"
        assert (attributes["llm.token_count.prompt"], attributes["llm.token_count.completion"]) in {
            (200, 50),
            (1200, 200),
            (350, 400),
            (400, 100),
        }
        assert "gen_ai.response.id" not in attributes
        chain = result.parent(llm)
        assert chain is not None
        assert chain["parent"] is None  # no app span: the run is the root
        assert chain["attributes"]["openinference.span.kind"] == "CHAIN"
        assert [span["name"] for span in result.children(chain)] == ["ChatPromptTemplate", "ChatOpenAI"]
    chains = [span for span in result.roots() if span["scope"] == OPENINFERENCE_SCOPE]
    assert [span["name"] for span in chains] == list(STEP_NAMES) * 3


@pytest.mark.parametrize(
    ("pipeline", "client"),
    [("langchain", "openai-v2"), ("langchain", "openinference-openai"), ("langgraph", "openai-v2")],
)
def test_openinference_client_span_without_an_app_span_is_a_trace_of_its_own(
    pipeline: str, client: str
) -> None:
    """OpenInference does not make its spans current: the client instrumentation's span of the
    same call is a root, in a trace the framework's spans are not in."""
    result = RUNS.result(_name(pipeline, OPENINFERENCE, client, False))
    framework_traces = {span["trace"] for span in result.of_scope(OPENINFERENCE_SCOPE)}
    for span in _client_spans(result, client):
        assert span["parent"] is None
        assert span["trace"] not in framework_traces


@pytest.mark.parametrize("pipeline", ["langchain", "langgraph"])
def test_openinference_client_span_under_an_app_span_is_the_app_spans_child(pipeline: str) -> None:
    result = RUNS.result(_name(pipeline, OPENINFERENCE, "openai-v2", True))
    requests = {span["id"] for span in result.named("request")}
    assert len(requests) == 3
    for span in _client_spans(result, "openai-v2"):
        assert span["parent"] in requests


@pytest.mark.parametrize("client", [None, "openai-v2"])
def test_openllmetry_makes_the_run_a_workflow_named_after_it(client: str | None) -> None:
    result = RUNS.result(_name("langchain", OPENLLMETRY, client, False))
    workflows = result.roots()
    assert [span["name"] for span in workflows] == [f"{name}.workflow" for name in STEP_NAMES] * 3
    for workflow in workflows:
        run_name = workflow["name"].removesuffix(".workflow")
        attributes = workflow["attributes"]
        assert attributes["traceloop.span.kind"] == "workflow"
        assert attributes["traceloop.entity.name"] == run_name
        assert attributes["traceloop.workflow.name"] == run_name
        assert attributes["gen_ai.agent.name"] == run_name
        assert attributes["gen_ai.operation.name"] == "invoke_agent"
        children = result.children(workflow)
        expected = ["execute_task ChatPromptTemplate", "ChatOpenAI.chat"]
        if client is not None:
            expected.append(CLIENTS[client][1])  # current: the client span is the workflow's child
        assert [span["name"] for span in children] == expected
        llm = children[1]["attributes"]
        # The LLM span names no step: no entity name, an empty entity path, only the workflow's name.
        assert "traceloop.entity.name" not in llm
        assert llm["traceloop.entity.path"] == ""
        assert llm["traceloop.workflow.name"] == run_name
        assert llm["gen_ai.response.id"].startswith("fake-")


def test_openllmetry_langchain_switches_its_own_openai_instrumentation_off() -> None:
    result = RUNS.result(_name("langchain", OPENLLMETRY, "openllmetry-openai", True))
    assert result.of_scope(CLIENTS["openllmetry-openai"][0]) == []
    _llm_spans(result, OPENLLMETRY)


@pytest.mark.parametrize("framework", [OPENINFERENCE, OPENLLMETRY])
def test_langgraph_nodes_are_named_spans_under_the_graph(framework: str) -> None:
    result = RUNS.result(_name("langgraph", framework, None, True))
    for request in result.named("request"):
        (graph,) = result.children(request)
        if framework == OPENINFERENCE:
            assert graph["name"] == "LangGraph"
            assert graph["attributes"]["openinference.span.kind"] == "CHAIN"
            nodes = result.children(graph)
        else:
            assert graph["name"] == "invoke_agent LangGraph"
            assert graph["attributes"]["gen_ai.agent.name"] == "LangGraph"
            (workflow,) = result.children(graph)
            assert workflow["name"] == "LangGraph.workflow"
            assert workflow["attributes"]["traceloop.entity.name"] == "LangGraph"
            nodes = result.children(workflow)
        # No span for LangGraph's __start__: the nodes, in order, and nothing else.
        names = (
            [f"execute_task {name}" for name in STEP_NAMES] if framework == OPENLLMETRY else list(STEP_NAMES)
        )
        assert [node["name"] for node in nodes] == names
        for step_name, node in zip(STEP_NAMES, nodes, strict=True):
            (llm,) = result.children(node)
            attributes = node["attributes"]
            if framework == OPENINFERENCE:
                assert attributes["openinference.span.kind"] == "CHAIN"
                assert json.loads(attributes["metadata"])["langgraph_node"] == step_name
                assert json.loads(llm["attributes"]["metadata"])["langgraph_node"] == step_name
            else:
                assert attributes["traceloop.span.kind"] == "task"
                assert attributes["traceloop.entity.name"] == step_name
                assert attributes["traceloop.association.properties.langgraph_node"] == step_name
                assert llm["attributes"]["traceloop.entity.path"] == step_name


def test_the_runs_used_the_pinned_versions() -> None:
    assert_pinned_versions(
        RUNS.result(_name("langgraph", OPENINFERENCE, "openai-v2", False)),
        "constraints-instrumentations.txt",
        "langchain-core",
        "langchain-openai",
        "langgraph",
        "openinference-instrumentation-langchain",
        "opentelemetry-instrumentation-langchain",
        "opentelemetry-instrumentation-openai-v2",
        "openai",
    )
