"""What otel_overspend must count for each case, worked out by hand.

Tokens are what examples/fake_provider.py reports: input = characters of the texts, gross
(cache reads and cache writes included, whatever the provider's own ``input_tokens`` says);
output = the request's token limit, reasoning and thinking included; reasoning = half the
output of a reasoning request (OpenAI), the thinking budget (Anthropic). Costs are the
provider's true bill in USD, from the providers' price sheets (USD per 1M tokens):

- gpt-4o: 2.50 in / 1.25 cache read / 10 out;
- gpt-5: 1.25 in / 0.125 cache read / 10 out (reasoning billed as output);
- claude-sonnet-4-5, at most 200k input tokens: 3 in / 0.30 cache read / 3.75 5-minute
  cache write (1.25x) / 6 1-hour cache write (2x) / 15 out (thinking billed as output);
- text-embedding-3-small: 0.02 in;
- Cohere rerank-v3.5: $2.00 per 1,000 searches, $0.002 a search (one search = a query with
  up to 100 documents); genai-prices has no rerank model, so this is the library's
  per-search default for specialist rerankers;

and from the user overrides of scenarios.OVERRIDE_PRICES (gpt-4o* 1 / 0.5 cache read / 4;
gpt-5* 0.5 / 0.05 / 4; claude-sonnet-4-5* 2 / 0.2 / 2.5 5-minute write / 4 1-hour write /
8; rerank-v3.5* $0.001 a search).

Where an instrumentation does not report what the provider did, the departure is listed
with its reason and its own hand computation in :data:`DEPARTURES`; everything else must
agree across instrumentations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

STEP: Final = "rerank"
GPT_4O: Final = "gpt-4o-2024-08-06"  # the fake answers with the dated name, as the real API does
GPT_5: Final = "gpt-5-2025-08-07"
SONNET: Final = "claude-sonnet-4-5-20250929"
EMBEDDING: Final = "text-embedding-3-small"
RERANK: Final = "rerank-v3.5"  # Cohere's rerank reply names no model: the requested name


@dataclass(frozen=True)
class Expected:
    """One counted call (``model is None``: nothing counted) and what the client raised."""

    model: str | None
    provider: str = ""
    tier: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    override_cost_usd: float = 0.0
    error: str | None = None
    #: Spans skipped as the same call counted twice (``duplicate_llm_span``).
    duplicates: int = 0
    #: Reasoning (thinking) tokens, part of ``output_tokens``.
    reasoning_tokens: int = 0
    #: Cache writes of either lifetime (part of ``input_tokens``), and of them the 1-hour ones.
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: Billed rerank searches.
    searches: int = 0


# gpt-4o, 1,000 in / 200 out: 1,000 x 2.50 + 200 x 10 = 4,500 micro-USD; override 1,000 + 800 = 1,800.
_GPT_4O_CALL: Final = Expected(GPT_4O, "openai", "frontier", 1000, 200, 0, 0.0045, 0.0018)
NOTHING: Final = Expected(None)
# gpt-5, 1,000 in of which 800 cache reads, 400 out of which 200 reasoning:
# 200 fresh x 1.25 + 800 reads x 0.125 + 400 out x 10 = 250 + 100 + 4,000 = 4,350 micro-USD;
# override 200 x 0.5 + 800 x 0.05 + 400 x 4 = 100 + 40 + 1,600 = 1,740.
_GPT_5_CALL: Final = Expected(
    GPT_5, "openai", "frontier", 1000, 400, 800, 0.00435, 0.00174, reasoning_tokens=200
)
# claude-sonnet-4-5, 1,200 fresh + 800 cache reads + 500 cache writes in (2,500 gross), 100 out.
# 5-minute writes: 1,200 x 3 + 800 x 0.30 + 500 x 3.75 + 100 x 15 = 3,600 + 240 + 1,875 + 1,500
# = 7,215 micro-USD; override 1,200 x 2 + 800 x 0.2 + 500 x 2.5 + 100 x 8 = 2,400 + 160 + 1,250
# + 800 = 4,610.
_SONNET_WRITE_5M: Final = Expected(
    SONNET, "anthropic", "frontier", 2500, 100, 800, 0.007215, 0.00461, cache_write_tokens=500
)
# 1-hour writes: 3,600 + 240 + 500 x 6 + 1,500 = 8,340; override 2,400 + 160 + 500 x 4 + 800 = 5,360.
_SONNET_WRITE_1H: Final = dataclasses.replace(
    _SONNET_WRITE_5M, cost_usd=0.00834, override_cost_usd=0.00536, cache_write_1h_tokens=500
)
# Extended thinking: 2,000 in, 2,000 out of which 1,024 thinking: 2,000 x 3 + 2,000 x 15 = 6,000
# + 30,000 = 36,000 micro-USD; override 2,000 x 2 + 2,000 x 8 = 4,000 + 16,000 = 20,000.
_SONNET_THINKING: Final = Expected(
    SONNET, "anthropic", "frontier", 2000, 2000, 0, 0.036, 0.02, reasoning_tokens=1024
)
# One rerank search (3 documents): 1 x $2.00 / 1,000 = $0.002; override 1 x $0.001.
_RERANK_CALL: Final = Expected(RERANK, "cohere", "specialist", 0, 0, 0, 0.002, 0.001, searches=1)

CASES: Final = {
    "chat": _GPT_4O_CALL,
    "chat_stream": _GPT_4O_CALL,
    # 1,000 in of which 800 cache reads, 100 out: 200 x 2.50 + 800 x 1.25 + 100 x 10 = 2,500;
    # override 200 x 1 + 800 x 0.5 + 100 x 4 = 1,000.
    "chat_cached": Expected(GPT_4O, "openai", "frontier", 1000, 100, 800, 0.0025, 0.001),
    # 300 + 200 characters: 500 x 0.02 = 10 micro-USD; no override for it.
    "embeddings": Expected(EMBEDDING, "openai", "specialist", 500, 0, 0, 0.00001, 0.00001),
    "responses": _GPT_4O_CALL,
    "responses_stream": _GPT_4O_CALL,
    # 2,000 in / 300 out: 2,000 x 3 + 300 x 15 = 10,500; override 4,000 + 2,400 = 6,400.
    "messages": Expected(SONNET, "anthropic", "frontier", 2000, 300, 0, 0.0105, 0.0064),
    "messages_stream": Expected(SONNET, "anthropic", "frontier", 2000, 300, 0, 0.0105, 0.0064),
    # 800 cache reads + 1,200 in, 100 out: 1,200 x 3 + 800 x 0.30 + 100 x 15 = 5,340;
    # override 1,200 x 2 + 800 x 0.2 + 100 x 8 = 3,360.
    "messages_cached": Expected(SONNET, "anthropic", "frontier", 2000, 100, 800, 0.00534, 0.00336),
    "messages_cached_stream": Expected(SONNET, "anthropic", "frontier", 2000, 100, 800, 0.00534, 0.00336),
    "messages_cache_write_5m": _SONNET_WRITE_5M,
    "messages_cache_write_1h": _SONNET_WRITE_1H,
    # Streamed, 300 5-minute + 200 1-hour writes: 3,600 + 240 + 300 x 3.75 + 200 x 6 + 1,500
    # = 3,600 + 240 + 1,125 + 1,200 + 1,500 = 7,665; override 2,400 + 160 + 300 x 2.5 + 200 x 4
    # + 800 = 2,400 + 160 + 750 + 800 + 800 = 4,910.
    "messages_cache_write_stream": dataclasses.replace(
        _SONNET_WRITE_5M, cost_usd=0.007665, override_cost_usd=0.00491, cache_write_1h_tokens=200
    ),
    "messages_thinking": _SONNET_THINKING,
    "messages_thinking_stream": _SONNET_THINKING,
    "chat_reasoning": _GPT_5_CALL,
    "chat_reasoning_stream": _GPT_5_CALL,
    "responses_reasoning": _GPT_5_CALL,
    "responses_reasoning_stream": _GPT_5_CALL,
    "rerank": _RERANK_CALL,
    "rerank_v1": _RERANK_CALL,
    # 150 documents, two searches: 2 x $0.002 = $0.004; override 2 x $0.001.
    "rerank_many": dataclasses.replace(_RERANK_CALL, cost_usd=0.004, override_cost_usd=0.002, searches=2),
    "error_openai": Expected(None, error="InternalServerError"),
    "error_anthropic": Expected(None, error="RateLimitError"),
    "wrapped_chat": dataclasses.replace(_GPT_4O_CALL, duplicates=1),
    "langchain_chat": _GPT_4O_CALL,
}

# OpenLIT's own cost (gen_ai.usage.cost) from openlit_prices.json, in USD per 1k tokens (twice
# the providers' rates): gpt-4o 0.005 in / 0.0025 cache read / 0.02 out; gpt-5 0.0025 /
# 0.00025 / 0.02; claude-sonnet-4-5 0.006 / 0.0006 / 0.0075 cache write (OpenLIT has one write
# rate, "cacheCreationPrice") / 0.03; no embedding model (OpenLIT then writes a cost of 0).
# It beats genai-prices, not the override.
OPENLIT_COST_USD: Final = {
    "chat": 0.009,  # 1,000 x 0.005 + 200 x 0.02 = 5 + 4 milli-USD
    "chat_stream": 0.009,
    "chat_cached": 0.005,  # 200 x 0.005 + 800 x 0.0025 + 100 x 0.02 = 1 + 2 + 2
    "responses": 0.009,
    "responses_stream": 0.009,
    "messages": 0.021,  # 2,000 x 0.006 + 300 x 0.03 = 12 + 9
    "messages_stream": 0.021,
    "messages_cached": 0.01068,  # 1,200 x 0.006 + 800 x 0.0006 + 100 x 0.03 = 7.2 + 0.48 + 3
    "messages_cached_stream": 0.0102,  # it loses the cache reads: 1,200 x 0.006 + 100 x 0.03
    # 1,200 x 0.006 + 800 x 0.0006 + 500 x 0.0075 + 100 x 0.03 = 7.2 + 0.48 + 3.75 + 3
    "messages_cache_write_5m": 0.01443,
    "responses_reasoning": 0.0087,  # 200 x 0.0025 + 800 x 0.00025 + 400 x 0.02 = 0.5 + 0.2 + 8
    "responses_reasoning_stream": 0.0087,
}

_OPENAI_V2_NO_CACHE = (
    "openai-v2 does not record prompt_tokens_details.cached_tokens: cache reads are priced as "
    "input (1,000 x 2.50 + 100 x 10 = 3,500; override 1,000 + 400 = 1,400)"
)
_OPENLLMETRY_STREAM = (
    "OpenLLMetry adds message_start's output_tokens (1) to message_delta's running total: "
    "one output token too many (+15 micro-USD; override +8)"
)
_OPENAI_V2_NO_REASONING = (
    "openai-v2 records neither prompt_tokens_details.cached_tokens nor "
    "completion_tokens_details.reasoning_tokens: the cache reads are priced as input "
    "(1,000 x 1.25 + 400 x 10 = 5,250; override 1,000 x 0.5 + 400 x 4 = 2,100), no reasoning counted"
)
_NO_1H = (
    "{} reports the cache writes as one total, not by lifetime: the 1-hour writes are priced "
    "as 5-minute ones (1,200 x 3 + 800 x 0.30 + 500 x 3.75 + 100 x 15 = 7,215; override 4,610)"
)
_NO_THINKING = "{} reports no thinking tokens (output_tokens_details.thinking_tokens): reasoning 0, same cost"
_COHERE_NO_PROVIDER = (
    "OpenInference's cohere spans (RERANKER) name no provider (no llm.provider / llm.system)"
)
_NO_SEARCH_UNITS = (
    "no instrumentation reports meta.billed_units.search_units: one search a call is counted, "
    "not the two billed (1 x $0.002; override 1 x $0.001)"
)
_SONNET_THINKING_STREAM_PLUS_1: Final = dataclasses.replace(
    # 2,000 x 3 + 2,001 x 15 = 6,000 + 30,015 = 36,015; override 4,000 + 2,001 x 8 = 20,008.
    _SONNET_THINKING,
    output_tokens=2001,
    cost_usd=0.036015,
    override_cost_usd=0.020008,
    reasoning_tokens=0,
)
#: (instrumentation, case) -> (the expectation, why it departs from CASES).
DEPARTURES: Final[dict[tuple[str, str], tuple[Expected, str]]] = {
    ("openai-v2", "chat_cached"): (
        Expected(GPT_4O, "openai", "frontier", 1000, 100, 0, 0.0035, 0.0014),
        _OPENAI_V2_NO_CACHE,
    ),
    ("openai-v2", "responses"): (NOTHING, "openai-v2 2.4b0 does not instrument the Responses API"),
    ("openai-v2", "responses_stream"): (NOTHING, "openai-v2 2.4b0 does not instrument the Responses API"),
    ("openllmetry", "messages_stream"): (
        Expected(SONNET, "anthropic", "frontier", 2000, 301, 0, 0.010515, 0.006408),
        _OPENLLMETRY_STREAM,
    ),
    ("openllmetry", "messages_cached_stream"): (
        Expected(SONNET, "anthropic", "frontier", 2000, 101, 800, 0.005355, 0.003368),
        _OPENLLMETRY_STREAM,
    ),
    ("openlit", "messages_cached_stream"): (
        # override: 1,200 x 2 + 100 x 8 = 3,200
        Expected(SONNET, "anthropic", "frontier", 1200, 100, 0, 0.0102, 0.0032),
        "OpenLIT drops cache_read_input_tokens from a streamed Anthropic reply (input 1,200, cache 0)",
    ),
    # -- reasoning models -------------------------------------------------------------------------
    **{
        ("openai-v2", case): (
            Expected(GPT_5, "openai", "frontier", 1000, 400, 0, 0.00525, 0.0021),
            _OPENAI_V2_NO_REASONING,
        )
        for case in ("chat_reasoning", "chat_reasoning_stream")
    },
    ("openai-v2", "responses_reasoning"): (NOTHING, "openai-v2 2.4b0 does not instrument the Responses API"),
    ("openai-v2", "responses_reasoning_stream"): (
        NOTHING,
        "openai-v2 2.4b0 does not instrument the Responses API",
    ),
    ("openllmetry", "chat_reasoning_stream"): (
        dataclasses.replace(_GPT_5_CALL, reasoning_tokens=0),
        (
            "OpenLLMetry records no reasoning tokens from a streamed chat completion's usage chunk "
            "(it does for plain ones and for Responses): reasoning 0, same cost"
        ),
    ),
    **{
        ("openlit", case): (
            # OpenLIT's own cost: 200 x 0.0025 + 800 x 0.00025 + 400 x 0.02 = 8.7 milli-USD.
            dataclasses.replace(_GPT_5_CALL, cost_usd=0.0087, reasoning_tokens=0),
            (
                "OpenLIT records reasoning tokens for the Responses API only, not for chat "
                "completions: reasoning 0; the cost is its own"
            ),
        )
        for case in ("chat_reasoning", "chat_reasoning_stream")
    },
    # -- Anthropic cache writes -------------------------------------------------------------------
    ("openllmetry", "messages_cache_write_1h"): (
        dataclasses.replace(_SONNET_WRITE_5M, cache_write_1h_tokens=0),
        _NO_1H.format("OpenLLMetry (gen_ai.usage.cache_creation.input_tokens)"),
    ),
    ("openllmetry", "messages_cache_write_stream"): (
        # 3,600 + 240 + 500 x 3.75 + 101 x 15 = 3,600 + 240 + 1,875 + 1,515 = 7,230;
        # override 2,400 + 160 + 500 x 2.5 + 101 x 8 = 2,400 + 160 + 1,250 + 808 = 4,618.
        dataclasses.replace(
            _SONNET_WRITE_5M, output_tokens=101, cost_usd=0.00723, override_cost_usd=0.004618
        ),
        _NO_1H.format("OpenLLMetry") + "; " + _OPENLLMETRY_STREAM,
    ),
    ("openinference", "messages_cache_write_1h"): (
        dataclasses.replace(_SONNET_WRITE_5M, cache_write_1h_tokens=0),
        _NO_1H.format("OpenInference (llm.token_count.prompt_details.cache_write)"),
    ),
    ("openinference", "messages_cache_write_stream"): (
        dataclasses.replace(_SONNET_WRITE_5M, cache_write_1h_tokens=0),
        _NO_1H.format("OpenInference"),
    ),
    ("openlit", "messages_cache_write_1h"): (
        # OpenLIT's own cost prices the write at its one write rate (0.0075 per 1k): 7.2 + 0.48 + 3.75
        # + 3 = 14.43 milli-USD. Override, the 1-hour writes unseen: 4,610 micro-USD.
        dataclasses.replace(_SONNET_WRITE_5M, cost_usd=0.01443, cache_write_1h_tokens=0),
        _NO_1H.format("OpenLIT (gen_ai.usage.cache_creation.input_tokens)")
        + "; its own cost has a single cache-write rate",
    ),
    ("openlit", "messages_cache_write_stream"): (
        # OpenLIT: 1,200 x 0.006 + 100 x 0.03 = 10.2 milli-USD; override 1,200 x 2 + 100 x 8 = 3,200 micro.
        Expected(SONNET, "anthropic", "frontier", 1200, 100, 0, 0.0102, 0.0032),
        (
            "OpenLIT drops cache_read_input_tokens and cache_creation_input_tokens from a streamed "
            "Anthropic reply, and reports input net of them: input 1,200, no cache tokens"
        ),
    ),
    # -- extended thinking ------------------------------------------------------------------------
    ("openllmetry", "messages_thinking"): (
        dataclasses.replace(_SONNET_THINKING, reasoning_tokens=0),
        _NO_THINKING.format("OpenLLMetry"),
    ),
    ("openllmetry", "messages_thinking_stream"): (
        _SONNET_THINKING_STREAM_PLUS_1,
        _NO_THINKING.format("OpenLLMetry") + "; " + _OPENLLMETRY_STREAM,
    ),
    **{
        ("openlit", case): (
            # OpenLIT's own cost: 2,000 x 0.006 + 2,000 x 0.03 = 12 + 60 = 72 milli-USD.
            dataclasses.replace(_SONNET_THINKING, cost_usd=0.072, reasoning_tokens=0),
            _NO_THINKING.format("OpenLIT") + "; the cost is its own",
        )
        for case in ("messages_thinking", "messages_thinking_stream")
    },
    # -- Cohere rerank ----------------------------------------------------------------------------
    ("openinference", "rerank"): (dataclasses.replace(_RERANK_CALL, provider="unknown"), _COHERE_NO_PROVIDER),
    ("openinference", "rerank_v1"): (
        NOTHING,
        "OpenInference's cohere instrumentation wraps the v2 client (ClientV2) only: no span",
    ),
    ("openinference", "rerank_many"): (
        dataclasses.replace(_RERANK_CALL, provider="unknown"),
        _COHERE_NO_PROVIDER + "; " + _NO_SEARCH_UNITS,
    ),
    ("openllmetry", "rerank_many"): (
        NOTHING,
        (
            "OpenLLMetry writes two prompt attributes per document first; past the SDK's 128-attribute "
            "limit the oldest are evicted: gen_ai.system, llm.request.type and gen_ai.request.model "
            "are gone and the span is no LLM call (and no instrumentation reports search units)"
        ),
    ),
}


def expected(run_family: str, case: str) -> tuple[Expected, str | None]:
    """What ``run_family`` (openai-v2, openllmetry, openinference, openlit) must count for
    ``case``, and the reason when it departs from the provider's numbers."""
    departure = DEPARTURES.get((run_family, case))
    if departure is not None:
        return departure
    base = CASES[case]
    if run_family == "openlit" and base.model is not None:
        # OpenLIT's own cost beats genai-prices; its 0 for an unknown model is no price.
        return dataclasses.replace(base, cost_usd=OPENLIT_COST_USD.get(case, base.cost_usd)), None
    return base, None
