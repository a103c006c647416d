"""One call seen by two instrumentations is counted once.

otel_overspend counts the innermost of nested LLM spans and skips the others as
``duplicate_llm_span`` (otel_overspend/accounting/recorder.py). That covers two client
instrumentations on the same openai call (they nest), an instrumentation over the anthropic
SDK's own spans when the instrumentation makes its span current, and a framework span made
current over the client's span. The real LangChain instrumentations (OpenInference and
OpenLLMetry) and OpenLLMetry's anthropic instrumentation do not make their span current:
the two spans of one call are siblings, which ancestry cannot see: the recorder recognises
them within the trace by response id, or by matching tokens and overlapping time from
another instrumentation scope.
"""

from __future__ import annotations

import pytest
from instrumentation_support import runs
from instrumentation_support.expected import CASES, STEP

pytestmark = [pytest.mark.e2e]

NESTED = (
    ("openai-v2+openinference", "chat"),
    ("openai-v2+openinference", "chat_stream"),
    ("openai-v2+openinference", "embeddings"),
    ("openllmetry+openai-v2", "chat"),
    ("openllmetry+openai-v2", "chat_stream"),
    ("openllmetry+openai-v2", "embeddings"),
    ("anthropic-native+openinference", "messages"),
    ("anthropic-native+openinference", "messages_stream"),
)
SIBLINGS = (
    ("langchain-openinference", "langchain_chat"),
    ("langchain-openllmetry+openai-v2", "langchain_chat"),
    ("anthropic-native+openllmetry", "messages"),
    ("anthropic-native+openllmetry", "messages_stream"),
)
RUNS_USED = ("openai-v2", "langchain-openllmetry", *{run for run, _ in NESTED + SIBLINGS})


@pytest.fixture(scope="module", autouse=True)
def _start_runs(request: pytest.FixtureRequest) -> None:
    runs.start_for(request.session)


def assert_counted_once(run: str, case: str, *, duplicates: int) -> None:
    want = CASES[case]
    got = runs.counted(run, case)
    assert got.series == {(STEP, want.model, want.tier, want.provider): 1.0}
    assert (got.input_tokens, got.output_tokens) == (want.input_tokens, want.output_tokens)
    assert got.cost_usd == pytest.approx(want.cost_usd, rel=1e-9)
    assert got.dropped == ({"duplicate_llm_span": duplicates} if duplicates else {})


@pytest.mark.parametrize(("run", "case"), NESTED, ids=[f"{r}-{c}" for r, c in NESTED])
def test_two_nested_instrumentations_count_the_call_once(run: str, case: str) -> None:
    spans = runs.llm_spans(run, case)
    assert len(spans) == 2
    nested = [span for span in spans if span["parent"] in {other["id"] for other in spans}]
    assert len(nested) == 1, "one instrumentation's span is the other's child"
    assert_counted_once(run, case, duplicates=1)


def test_openllmetry_langchain_suppresses_its_own_client_span() -> None:
    """OpenLLMetry's LangChain instrumentation turns its openai instrumentation off inside
    the framework call: one span, counted once."""
    assert len(runs.llm_spans("langchain-openllmetry", "langchain_chat")) == 1
    assert_counted_once("langchain-openllmetry", "langchain_chat", duplicates=0)


def test_a_framework_span_made_current_over_the_client_span_is_counted_once() -> None:
    """A hand-built framework LLM span (OpenInference's attributes) around a real openai call
    instrumented by openai-v2: the client's span is its child, and is the one counted."""
    spans = runs.llm_spans("openai-v2", "wrapped_chat")
    assert [span["name"] for span in spans] == ["chat gpt-4o", "ChatOpenAI"]
    assert spans[0]["parent"] == spans[1]["id"]
    assert_counted_once("openai-v2", "wrapped_chat", duplicates=1)


@pytest.mark.parametrize(("run", "case"), SIBLINGS, ids=[f"{r}-{c}" for r, c in SIBLINGS])
def test_the_two_spans_of_one_call_are_siblings_here(run: str, case: str) -> None:
    root = runs.root_id(run, case)
    spans = runs.llm_spans(run, case)
    assert len(spans) == 2
    assert [span["parent"] for span in spans] == [root, root]


@pytest.mark.parametrize(("run", "case"), SIBLINGS, ids=[f"{r}-{c}" for r, c in SIBLINGS])
def test_sibling_spans_of_one_call_count_it_once(run: str, case: str) -> None:
    assert_counted_once(run, case, duplicates=1)
