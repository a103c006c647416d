"""What otel_overspend must count for each case, worked out by hand.

Tokens are what examples/fake_provider.py reports (input = characters of the texts, cache
reads included; output = the request's token limit). Costs are in USD, from genai-prices
(USD per 1M tokens: gpt-4o 2.50 in / 1.25 cache read / 10 out; claude-sonnet-4-5 3 / 0.30 /
15 below 200k input tokens; text-embedding-3-small 0.02 in), and from the user overrides of
scenarios.OVERRIDE_PRICES (gpt-4o* 1 / 0.5 / 4; claude-sonnet-4-5* 2 / 0.2 / 8).

Where an instrumentation does not report what the provider did, the departure is listed
with its reason in :data:`DEPARTURES`; everything else must agree across instrumentations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

STEP: Final = "rerank"
GPT_4O: Final = "gpt-4o-2024-08-06"  # the fake answers with the dated name, as the real API does
SONNET: Final = "claude-sonnet-4-5-20250929"
EMBEDDING: Final = "text-embedding-3-small"


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


# gpt-4o, 1,000 in / 200 out: 1,000 x 2.50 + 200 x 10 = 4,500 micro-USD; override 1,000 + 800 = 1,800.
_GPT_4O_CALL: Final = Expected(GPT_4O, "openai", "frontier", 1000, 200, 0, 0.0045, 0.0018)
NOTHING: Final = Expected(None)

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
    "error_openai": Expected(None, error="InternalServerError"),
    "error_anthropic": Expected(None, error="RateLimitError"),
    "wrapped_chat": dataclasses.replace(_GPT_4O_CALL, duplicates=1),
    "langchain_chat": _GPT_4O_CALL,
}

# OpenLIT's own cost (gen_ai.usage.cost) from openlit_prices.json, in USD per 1k tokens:
# gpt-4o 0.005 in / 0.0025 cache read / 0.02 out; claude-sonnet-4-5 0.006 / 0.0006 / 0.03;
# no embedding model (OpenLIT then writes a cost of 0). It beats genai-prices, not the override.
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
}

_OPENAI_V2_NO_CACHE = (
    "openai-v2 does not record prompt_tokens_details.cached_tokens: cache reads are priced as "
    "input (1,000 x 2.50 + 100 x 10 = 3,500; override 1,000 + 400 = 1,400)"
)
_OPENLLMETRY_STREAM = (
    "OpenLLMetry adds message_start's output_tokens (1) to message_delta's running total: "
    "one output token too many (+15 micro-USD; override +8)"
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
