"""Every model, provider and token attribute name instrumentations write (the key tuples of
otel_overspend/calls/conventions.py), read off real spans and back from the registry."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from otel_overspend import Settings

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from opentelemetry.util.types import AttributeValue


@pytest.fixture
def p() -> Iterator[Pipeline]:
    pipeline = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    yield pipeline
    pipeline.provider.shutdown()


def emit(p: Pipeline, attributes: Mapping[str, AttributeValue], name: str = "chat") -> None:
    with p.tracer.start_as_current_span(name, attributes=attributes):
        pass


def series(p: Pipeline, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``metric``, keyed by its sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == metric
    }


def calls_by(p: Pipeline, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in series(p, "overspend_llm_calls_total").items():
        key = dict(labels)[label]
        out[key] = out.get(key, 0.0) + value
    return out


def tokens_by_kind(p: Pipeline) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in series(p, "overspend_llm_tokens_total").items():
        kind = dict(labels)["kind"]
        out[kind] = out.get(kind, 0.0) + value
    return out


def dropped(p: Pipeline) -> dict[str, float]:
    """The reasons counted (every known reason is exported from 0)."""
    return {dict(k)["reason"]: v for k, v in series(p, "overspend_spans_dropped_total").items() if v}


USAGE: dict[str, AttributeValue] = {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}


# -- model ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attributes", "model"),
    [
        (
            {"gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.request.model": "gpt-4o"},
            "gpt-4o-2024-08-06",
        ),
        ({"gen_ai.request.model": "gpt-4o"}, "gpt-4o"),
        ({"gen_ai.request.model": "gpt-4o", "llm.model_name": "gpt-4o-mini"}, "gpt-4o"),
        ({"llm.model_name": "gpt-4o-mini"}, "gpt-4o-mini"),
        (
            {
                "llm.response.model_name": "claude-sonnet-4-5-20250929",
                "llm.request.model_name": "claude-sonnet-4-5",
            },
            "claude-sonnet-4-5-20250929",
        ),
        ({"llm.request.model_name": "claude-sonnet-4-5"}, "claude-sonnet-4-5"),
        ({"embedding.model_name": "text-embedding-3-small"}, "text-embedding-3-small"),
        ({"reranker.model_name": "rerank-v3.5"}, "rerank-v3.5"),
        ({"gen_ai.request.model": "  gpt-4o  "}, "gpt-4o"),
        ({}, "unknown"),
    ],
)
def test_model(p: Pipeline, attributes: dict[str, AttributeValue], model: str) -> None:
    emit(p, {**USAGE, **attributes})
    assert calls_by(p, "model") == {model: 1}


# -- provider -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attributes", "provider"),
    [
        ({"gen_ai.provider.name": "openai", "gen_ai.system": "az.ai.openai"}, "openai"),
        ({"gen_ai.system": "OpenAI"}, "openai"),
        ({"llm.provider": "anthropic"}, "anthropic"),
        ({"llm.system": "Cohere"}, "cohere"),
        ({"gen_ai.request.model": "openai/gpt-4o"}, "openai"),  # from the model's prefix
        ({"gen_ai.request.model": "mistral/mistral-large", "llm.provider": "azure"}, "azure"),
        ({"gen_ai.request.model": "gpt-4o"}, "unknown"),
    ],
)
def test_provider(p: Pipeline, attributes: dict[str, AttributeValue], provider: str) -> None:
    emit(p, {**USAGE, **attributes})
    assert calls_by(p, "provider") == {provider: 1}


# -- tokens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("input_key", "output_key", "cache_key", "reasoning_key"),
    [
        pytest.param(
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.reasoning.output_tokens",
            id="otel",
        ),
        pytest.param(
            "gen_ai.usage.prompt_tokens",
            "gen_ai.usage.completion_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "gen_ai.usage.reasoning_tokens",
            id="otel-legacy",
        ),
        pytest.param(
            "llm.token_count.prompt",
            "llm.token_count.completion",
            "llm.token_count.prompt_details.cache_read",
            "llm.token_count.completion_details.reasoning",
            id="openinference",
        ),
    ],
)
def test_token_names(
    p: Pipeline, input_key: str, output_key: str, cache_key: str, reasoning_key: str
) -> None:
    emit(
        p,
        {
            "gen_ai.request.model": "gpt-4o",
            input_key: 1000,
            output_key: 300,
            cache_key: 400,
            reasoning_key: 120,
        },
    )
    assert tokens_by_kind(p) == {
        "input": 1000,
        "output": 300,
        "cache_read": 400,
        "cache_write": 0,
        "reasoning": 120,
    }
    assert calls_by(p, "model") == {"gpt-4o": 1}


def test_new_names_beat_legacy_ones(p: Pipeline) -> None:
    emit(
        p,
        {
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.prompt_tokens": 11,
            "llm.token_count.prompt": 12,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.completion_tokens": 21,
            "llm.token_count.completion": 22,
            "gen_ai.usage.cache_read.input_tokens": 3,
            "gen_ai.usage.cache_read_input_tokens": 4,
            "gen_ai.usage.reasoning.output_tokens": 5,
            "gen_ai.usage.reasoning_tokens": 6,
        },
    )
    assert tokens_by_kind(p) == {"input": 10, "output": 20, "cache_read": 3, "cache_write": 0, "reasoning": 5}


def test_output_only_and_input_only_spans_are_calls(p: Pipeline) -> None:
    emit(p, {"gen_ai.usage.output_tokens": 7})
    emit(p, {"llm.token_count.prompt": 9})
    assert calls_by(p, "model") == {"unknown": 2}
    assert tokens_by_kind(p)["input"] == 9
    assert tokens_by_kind(p)["output"] == 7


def test_input_net_of_cache_reads_is_made_gross(p: Pipeline) -> None:
    # 100 uncached input tokens reported next to 300 cache reads: 400 input tokens in all.
    emit(p, {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 300})
    assert tokens_by_kind(p)["input"] == 400
    assert tokens_by_kind(p)["cache_read"] == 300


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0},
        # LiteLLM's raw response alone (its usage is read off the call's own span).
        {"llm.openai.usage": '{"prompt_tokens": 10, "completion_tokens": 2}'},
    ],
)
def test_a_span_without_usage_is_not_a_call(p: Pipeline, attributes: dict[str, AttributeValue]) -> None:
    emit(p, attributes)
    assert series(p, "overspend_llm_calls_total") == {}
    assert p.sample("overspend_requests_total") == 0
    assert dropped(p) == {}


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ({"gen_ai.usage.cache_read.input_tokens": 50}, "cache_read"),
        ({"gen_ai.usage.reasoning_tokens": 50}, "reasoning"),
    ],
)
def test_a_span_billed_only_cache_reads_or_reasoning_is_a_call(
    p: Pipeline, attributes: dict[str, AttributeValue], kind: str
) -> None:
    # Billed tokens make a call whatever else the span lacks, live as in the offline report.
    emit(p, attributes)
    assert sum(series(p, "overspend_llm_calls_total").values()) == 1
    assert tokens_by_kind(p)[kind] == 50
    assert dropped(p) == {}


@pytest.mark.parametrize(
    ("value", "tokens"),
    [(250, 250), (250.0, 250), ("250", 250), ("0250", 250), (0.0, 0), (100_000_000, 100_000_000)],
)
def test_token_values_that_are_read(p: Pipeline, value: AttributeValue, tokens: int) -> None:
    emit(p, {"gen_ai.usage.input_tokens": value, "gen_ai.usage.output_tokens": 5})
    assert tokens_by_kind(p)["input"] == tokens
    assert dropped(p) == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-1.0, id="negative-float"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(12.5, id="fraction"),
        pytest.param(True, id="bool"),
        pytest.param([1, 2], id="list"),
        pytest.param(["1"], id="list-of-str"),
        pytest.param("-1", id="negative-str"),
        pytest.param("1e3", id="exponent-str"),
        pytest.param(" 12", id="padded-str"),
        pytest.param("12.0", id="decimal-str"),
        pytest.param("", id="empty-str"),
        pytest.param("ten", id="word"),
        pytest.param("\u00b2", id="superscript-digit"),
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("12345678901", id="eleven-digits"),
        pytest.param(100_000_001, id="over-the-per-call-limit"),
        pytest.param(10**30, id="huge"),
    ],
)
@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.prompt_details.cache_read",
        "gen_ai.usage.reasoning.output_tokens",
    ],
)
def test_malformed_token_values_drop_the_span(p: Pipeline, key: str, value: AttributeValue) -> None:
    # The other quantity is valid and under a name of its own, so that the span is a call.
    other = (
        "gen_ai.usage.output_tokens" if key == "gen_ai.usage.input_tokens" else "gen_ai.usage.input_tokens"
    )
    emit(p, {"gen_ai.request.model": "gpt-4o", other: 5, key: value})
    assert dropped(p) == {"invalid_tokens": 1}
    assert series(p, "overspend_llm_calls_total") == {}


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"gen_ai.request.model": "x" * 201}, "invalid_model"),
        ({"gen_ai.request.model": "gpt-4o\x00"}, "invalid_model"),
        ({"gen_ai.request.model": "gpt-4o\n"}, "invalid_model"),
        ({"gen_ai.request.model": ["gpt-4o"]}, "invalid_model"),
        ({"gen_ai.request.model": 4}, "invalid_model"),
        ({"gen_ai.provider.name": True}, "invalid_provider"),
        ({"gen_ai.system": "open\tai"}, "invalid_provider"),
    ],
)
def test_malformed_names_drop_the_span(
    p: Pipeline, attributes: dict[str, AttributeValue], reason: str
) -> None:
    emit(p, {**USAGE, **attributes})
    assert dropped(p) == {reason: 1}
    assert series(p, "overspend_llm_calls_total") == {}


def test_a_model_name_of_200_characters_is_kept(p: Pipeline) -> None:
    emit(p, {**USAGE, "gen_ai.request.model": "m" * 200})
    assert calls_by(p, "model") == {"m" * 200: 1}


def test_framework_and_client_spans_of_one_call_count_once(p: Pipeline) -> None:
    usage: dict[str, AttributeValue] = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
    }
    # LangChain's span carries the usage, and so does the openai client span inside it.
    with (
        p.tracer.start_as_current_span("ChatOpenAI", attributes={"openinference.span.kind": "LLM", **usage}),
        p.tracer.start_as_current_span("retry"),
    ):
        emit(p, {**usage, "gen_ai.response.model": "gpt-4o-2024-08-06"}, name="chat gpt-4o")
    # The innermost span is counted (it carries the response model), its ancestor is not.
    assert calls_by(p, "model") == {"gpt-4o-2024-08-06": 1}
    assert tokens_by_kind(p)["input"] == 100
    assert dropped(p) == {"duplicate_llm_span": 1}
    assert p.sample("overspend_requests_total") == 1


def test_sibling_llm_spans_are_separate_calls(p: Pipeline) -> None:
    with p.tracer.start_as_current_span("agent"):
        emit(p, USAGE)
        emit(p, USAGE)
    assert calls_by(p, "model") == {"unknown": 2}
    assert dropped(p) == {}


def test_a_chat_span_without_usage_is_a_call_without_usage(p: Pipeline) -> None:
    emit(p, {"gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat"})
    assert set(series(p, "overspend_llm_calls_total").values()) == {0.0}  # no call counted
    assert p.total("overspend_llm_calls_without_usage_total", model="gpt-4o") == 1.0
    assert p.sample("overspend_requests_total") == 0
    assert dropped(p) == {}
