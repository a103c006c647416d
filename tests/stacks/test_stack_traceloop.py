"""Traceloop's SDK (``@workflow`` / ``@task``), real package against the local fake provider, steps
named only by ``@task(name=...)``.

The pipeline: 3 requests x rewrite, rerank, generate, faithfulness, one gpt-4o chat completion
each, in a function decorated ``@task(name=<step>)`` (stack_support/traceloop_pipeline.py, run in
``.venv-traceloop``: traceloop-sdk needs OpenTelemetry one release behind ``.venv``'s). The
processor is handed to ``Traceloop.init(processor=[...])``; Traceloop instruments openai with
OpenLLMetry's instrumentation. Every run must count 12 calls, 3 per step, $0.038625 in all (the hand
computation is in stack_support/runs.py): plain and streamed, each request in a
``@workflow``, in an app span or in nothing, with and without a second client instrumentation
(openai-v2, OpenInference's openai).

What Traceloop puts on spans (checked by the span tests below):

- a task is a span ``<name>.task`` of scope ``traceloop.tracer``, made current;
  ``traceloop.span.kind=task`` and ``traceloop.entity.name=<name>`` are set after it started
  (an ancestor's start attributes never show them); it carries no ``traceloop.entity.path``;
- a workflow is ``<name>.workflow`` (``traceloop.span.kind=workflow``); spans inside it carry
  ``traceloop.workflow.name``;
- every span started inside a task, by any instrumentation on Traceloop's tracer provider, gets
  ``traceloop.entity.path=<task name>`` from Traceloop's own ``on_start`` hook;
- a generator task (streamed) keeps its span open until the caller has drained it;
- ``Traceloop.init(processor=...)`` replaces each processor's ``on_start`` by an instance
  attribute that calls the original and then Traceloop's hook.
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from stack_support.runs import (
    STEP_NAMES,
    Result,
    Run,
    Runs,
    assert_pinned_versions,
    assert_pipeline_counted,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT: Final = "traceloop_pipeline.py"
TRACELOOP_SCOPE: Final = "traceloop.tracer"
#: client instrumentation -> (its scope, its span name for a gpt-4o chat call).
CLIENTS: Final = {
    "openllmetry-openai": ("opentelemetry.instrumentation.openai.v1", "openai.chat"),
    "openai-v2": ("opentelemetry.instrumentation.openai_v2", "chat gpt-4o"),
    "openinference-openai": ("openinference.instrumentation.openai", "ChatCompletion"),
}
#: (scenario, second client instrumentation or None)
MATRIX: Final = [
    ("workflow", None),
    ("tasks", None),
    ("app_span", None),
    ("stream_workflow", None),
    ("stream_tasks", None),
    ("workflow", "openai-v2"),
    ("tasks", "openai-v2"),
    ("tasks", "openinference-openai"),
    ("app_span", "openinference-openai"),
    ("stream_workflow", "openinference-openai"),
    ("stream_tasks", "openai-v2"),
]
#: The scenarios whose requests are one trace each (a workflow or an app span around the tasks).
ONE_TRACE_A_REQUEST: Final = {"workflow", "app_span", "stream_workflow"}


def _name(scenario: str, second: str | None) -> str:
    return f"{scenario}+{second}" if second else scenario


RUNS: Final = Runs(
    {
        _name(scenario, second): Run(
            SCRIPT, (f"--scenario={scenario}", f"--instrument={second or ''}"), traceloop=True
        )
        for scenario, second in MATRIX
    }
)
IDS: Final = [_name(*case) for case in MATRIX]


@pytest.fixture(scope="module", autouse=True)
def _start_runs() -> None:
    RUNS.start()


# -- what is counted --------------------------------------------------------------------------------
@pytest.mark.parametrize(("scenario", "second"), MATRIX, ids=IDS)
def test_pipeline_counted_by_task_name_with_exact_dollars(scenario: str, second: str | None) -> None:
    """12 calls, 3 per step, $0.038625; with a second client instrumentation each call is on two
    spans, and one of them is dropped as the other's duplicate (12)."""
    assert_pipeline_counted(RUNS.result(_name(scenario, second)), duplicates=12 if second else 0)


@pytest.mark.parametrize(("scenario", "second"), MATRIX, ids=IDS)
def test_requests_are_workflows_app_spans_or_bare_tasks(scenario: str, second: str | None) -> None:
    result = RUNS.result(_name(scenario, second))
    assert result.requests() == (3.0 if scenario in ONE_TRACE_A_REQUEST else 12.0)


# -- what Traceloop puts on spans -------------------------------------------------------------------
def _tasks(result: Result) -> list[dict[str, Any]]:
    tasks = sorted(result.of_scope(TRACELOOP_SCOPE), key=lambda span: span["start"])
    tasks = [span for span in tasks if span["name"].endswith(".task")]
    assert [span["name"] for span in tasks] == [f"{name}.task" for name in STEP_NAMES] * 3
    return tasks


@pytest.mark.parametrize("scenario", ["workflow", "tasks", "app_span", "stream_workflow", "stream_tasks"])
def test_a_task_names_itself_and_the_client_span_inside_it(scenario: str) -> None:
    result = RUNS.result(scenario)
    in_workflow = scenario.endswith("workflow")
    for task in _tasks(result):
        step_name = task["name"].removesuffix(".task")
        attributes = task["attributes"]
        assert attributes["traceloop.span.kind"] == "task"
        assert attributes["traceloop.entity.name"] == step_name
        assert "traceloop.entity.path" not in attributes
        assert attributes.get("traceloop.workflow.name") == ("answer" if in_workflow else None)
        parent = result.parent(task)
        if in_workflow:
            assert parent is not None
            assert parent["name"] == "answer.workflow"
            assert parent["attributes"]["traceloop.span.kind"] == "workflow"
            assert parent["attributes"]["traceloop.entity.name"] == "answer"
        elif scenario == "app_span":
            assert parent is not None
            assert parent["name"] == "request"
        else:
            assert parent is None
        (client,) = result.children(task)
        assert (client["scope"], client["name"]) == CLIENTS["openllmetry-openai"]
        client_attributes = client["attributes"]
        assert client_attributes["traceloop.entity.path"] == step_name
        assert client_attributes["gen_ai.is_streaming"] is scenario.startswith("stream")
        assert client_attributes["gen_ai.usage.input_tokens"] > 0
        assert client_attributes["gen_ai.response.id"].startswith("fake-")
        # The client span ends inside its task, streamed or not.
        assert task["start"] <= client["start"] <= client["end"] <= task["end"]


@pytest.mark.parametrize(
    ("scenario", "second"), [case for case in MATRIX if case[1]], ids=[_name(*c) for c in MATRIX if c[1]]
)
def test_two_client_instrumentations_nest_inside_the_task(scenario: str, second: str) -> None:
    """openai-v2 wraps the client outermost (its span is the task's child, OpenLLMetry's its
    child); OpenInference's span is OpenLLMetry's child. Traceloop stamps the entity path on both."""
    result = RUNS.result(_name(scenario, second))
    for task in _tasks(result):
        step_name = task["name"].removesuffix(".task")
        (outer,) = result.children(task)
        (inner,) = result.children(outer)
        names = [(span["scope"], span["name"]) for span in (outer, inner)]
        if second == "openai-v2":
            assert names == [CLIENTS["openai-v2"], CLIENTS["openllmetry-openai"]]
        else:
            assert names == [CLIENTS["openllmetry-openai"], CLIENTS["openinference-openai"]]
        for span in (outer, inner):
            assert span["attributes"]["traceloop.entity.path"] == step_name


def test_traceloop_init_replaces_the_processors_on_start() -> None:
    assert RUNS.result("workflow").notes == {"on_start_replaced": True}


def test_the_runs_used_the_pinned_versions() -> None:
    assert_pinned_versions(
        RUNS.result("workflow+openai-v2"),
        "constraints-traceloop.txt",
        "traceloop-sdk",
        "openai",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-openai",
        "opentelemetry-instrumentation-openai-v2",
    )
