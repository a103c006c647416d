"""Which tier a model lands in: the built-in catalog, and the user's overrides, read back as
the ``tier`` label of the calls a real pipeline counted."""

from __future__ import annotations

import pytest

from otel_overspend import Settings

from conftest import Pipeline, make_pipeline


def tier_of(model: str, settings: Settings | None = None) -> str:
    """Send one call of ``model`` through a fresh pipeline and read its tier label."""
    p = make_pipeline(settings or Settings(serve_metrics=False, use_genai_prices=False))
    with p.tracer.start_as_current_span(
        "chat",
        attributes={
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 1,
        },
    ):
        pass
    tiers = tiers_by_model(p)
    p.provider.shutdown()
    assert list(tiers) == [model]
    return tiers[model]


def tiers_by_model(p: Pipeline) -> dict[str, str]:
    return {
        sample.labels["model"]: sample.labels["tier"]
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == "overspend_llm_calls_total"
    }


CATALOG = [
    # OpenAI
    ("gpt-5", "frontier"),
    ("gpt-5.1", "frontier"),
    ("gpt-5-mini", "mini"),
    ("gpt-5-nano", "mini"),
    ("gpt-4.1", "frontier"),
    ("gpt-4.1-mini", "mini"),
    ("gpt-4.1-nano", "mini"),
    ("gpt-4o", "frontier"),
    ("gpt-4o-mini", "mini"),
    ("gpt-4-turbo", "frontier"),
    ("gpt-3.5-turbo", "mid"),
    ("gpt-oss-120b", "mid"),
    ("o1", "frontier"),
    ("o3", "frontier"),
    ("o3-pro", "frontier"),
    ("o1-mini", "mini"),
    ("o3-mini", "mini"),
    ("o4-mini", "mini"),
    # Anthropic
    ("claude-opus-4-1", "frontier"),
    ("claude-3-opus-20240229", "frontier"),
    ("claude-sonnet-4-5", "frontier"),
    ("claude-3-5-sonnet-20241022", "frontier"),
    ("claude-haiku-4-5", "mini"),
    ("claude-3-5-haiku-20241022", "mini"),
    # Google: "gemini" is one name part and never contains the part "mini".
    ("gemini-2.5-pro", "frontier"),
    ("gemini-1.5-pro", "frontier"),
    ("gemini-exp-1206", "frontier"),
    ("gemini-2.5-flash", "mid"),
    ("gemini-2.0-flash", "mid"),
    ("gemini-2.5-flash-lite", "mini"),
    ("gemini-2.0-flash-lite", "mini"),
    ("gemini-1.5-flash-8b", "mini"),
    ("gemini-embedding-001", "specialist"),
    # Llama, by size
    ("llama-3.1-405b-instruct", "frontier"),
    ("Meta-Llama-3.1-405B-Instruct-Turbo", "frontier"),
    ("llama-3.3-70b-versatile", "mid"),
    ("llama-4-maverick", "mid"),
    ("llama-3.1-8b-instant", "mini"),
    ("meta-llama/Llama-3.2-3B-Instruct", "mini"),
    ("llama-3.2-1b", "mini"),
    # Mistral
    ("mistral-large-latest", "frontier"),
    ("mistral-medium-latest", "mid"),
    ("mistral-small-latest", "mini"),
    ("ministral-8b-latest", "mini"),
    ("open-mistral-7b", "mini"),
    ("mixtral-8x7b-instruct", "mid"),
    ("codestral-latest", "mid"),
    ("mistral-embed", "specialist"),
    # DeepSeek
    ("deepseek-chat", "mid"),
    ("deepseek-reasoner", "mid"),
    ("deepseek-r1", "mid"),
    # Others
    ("grok-4", "frontier"),
    ("command-r-plus", "mid"),
    # Rerankers and embedders
    ("rerank-v3.5", "specialist"),
    ("rerank-english-v3.0", "specialist"),
    ("rerank-2.5-lite", "specialist"),
    ("bge-reranker-v2-m3", "specialist"),
    ("BAAI/bge-reranker-large", "specialist"),
    ("bge-m3", "specialist"),
    ("zerank-2", "specialist"),
    ("zerank-1-small", "specialist"),
    ("jina-reranker-v2-base-multilingual", "specialist"),
    ("text-embedding-3-small", "specialist"),
    ("text-embedding-3-large", "specialist"),
    ("text-embedding-ada-002", "specialist"),
    ("nomic-embed-text", "specialist"),
    # Dated names and provider prefixes
    ("gpt-4o-mini-2024-07-18", "mini"),
    ("gpt-4o-2024-08-06", "frontier"),
    ("gpt-4.1-mini-2025-04-14", "mini"),
    ("openai/gpt-4o", "frontier"),
    ("openai/gpt-4o-mini", "mini"),
    ("models/gemini-2.5-pro", "frontier"),
    ("vertex_ai/gemini-2.5-flash", "mid"),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "mini"),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "frontier"),
    ("GPT-4O-MINI", "mini"),
    # Nothing the catalog can place, and no price source on: unknown.
    ("acme-unknown-model", "unknown"),
    ("terminator", "unknown"),  # contains "mini" as a substring, not as a part
]


@pytest.mark.parametrize(("model", "tier"), CATALOG)
def test_catalog(model: str, tier: str) -> None:
    assert tier_of(model) == tier


@pytest.mark.parametrize(
    ("model", "tier"),
    [
        ("gpt-4o-mini", "mid"),  # glob beats the catalog's "mini"
        ("gpt-4o", "mid"),
        ("GPT-4O-2024-08-06", "mid"),  # globs ignore case
        ("gpt-4.1-nano", "mini"),  # the first matching pattern wins
        ("gpt-5", "mini"),
        ("acme-cross-scorer", "specialist"),  # a regex
        ("acme-cross-scorer-v2", "unknown"),  # ... anchored as written
        ("gemini-2.5-pro", "mid"),  # a regex is searched: it matches anywhere
        ("gemini-2.5-flash-lite", "mid"),
        ("Gemini-2.5-pro", "frontier"),  # ... and is case-sensitive as written
        ("claude-sonnet-4-5", "frontier"),  # no pattern: the catalog
    ],
)
def test_user_tiers_beat_the_catalog(model: str, tier: str) -> None:
    settings = Settings(
        serve_metrics=False,
        use_genai_prices=False,
        model_tiers={
            "gpt-4o*": "mid",
            "gpt-*": "mini",
            "re:^acme-.*-scorer$": "specialist",
            "re:gemini": "mid",
        },
    )
    assert tier_of(model, settings) == tier


def test_a_glob_matches_the_whole_name() -> None:
    settings = Settings(serve_metrics=False, use_genai_prices=False, model_tiers={"gpt-4o": "mid"})
    assert tier_of("gpt-4o", settings) == "mid"
    assert tier_of("gpt-4o-mini", settings) == "mini"
    assert tier_of("openai/gpt-4o", settings) == "frontier"


def test_a_user_tier_sets_the_default_price() -> None:
    # gpt-4o-mini moved to frontier, genai-prices off: $3/$15 per 1M.
    # 10,000 x 3 + 1,000 x 15 = 45,000 micro-dollars.
    p = make_pipeline(
        Settings(serve_metrics=False, use_genai_prices=False, model_tiers={"gpt-4o-mini": "frontier"})
    )
    with p.tracer.start_as_current_span(
        "chat",
        attributes={
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.output_tokens": 1_000,
        },
    ):
        pass
    labels = {"step": "unattributed", "model": "gpt-4o-mini", "tier": "frontier", "provider": "unknown"}
    assert p.sample("overspend_llm_cost_usd_total", labels) == pytest.approx(0.045, abs=1e-12)
