"""What instrumentations put on LLM spans, and how we read it.

Each quantity has an ordered tuple of attribute names (OpenTelemetry GenAI semantic
conventions first, then their legacy names, OpenLLMetry and OpenInference); the first
one present wins. A span is an LLM call when it carries token usage or a computed cost.
Reading never raises: a malformed value makes the span a counted drop, by reason.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "MAX_TOKENS_PER_CALL",
    "Usage",
    "read_usage",
)

MODEL_KEYS: Final = (
    "gen_ai.response.model",
    "llm.response.model_name",
    "gen_ai.request.model",
    "llm.model_name",
    "llm.request.model_name",
    "embedding.model_name",
    "reranker.model_name",
)
PROVIDER_KEYS: Final = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
OPERATION_KEYS: Final = ("gen_ai.operation.name", "llm.request.type")
INPUT_KEYS: Final = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_KEYS: Final = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
CACHE_READ_KEYS: Final = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
REASONING_KEYS: Final = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
COST_KEYS: Final = ("gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.total_cost")

#: A span carrying any of these is an LLM call.
LLM_MARKER_KEYS: Final = frozenset(INPUT_KEYS + OUTPUT_KEYS + COST_KEYS)
_ALL_KEYS: Final = frozenset(
    MODEL_KEYS + PROVIDER_KEYS + INPUT_KEYS + OUTPUT_KEYS + CACHE_READ_KEYS + REASONING_KEYS + COST_KEYS
)

#: No single call reads or writes more tokens than this; a larger count is a broken span.
MAX_TOKENS_PER_CALL: Final = 100_000_000
#: Longer model or provider names are not names: the span is dropped as invalid.
MAX_NAME_LENGTH: Final = 200
MAX_COST_PER_CALL_USD: Final = 1_000_000.0
_MAX_DIGITS: Final = 10


class Usage(NamedTuple):
    """The usage one LLM span reports. ``input_tokens`` includes cache reads."""

    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    #: A cost the instrumentation already computed, in USD, if any.
    span_cost_usd: float | None


class _Invalid(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tokens(value: Any) -> int:
    if value is None:
        return 0
    kind = type(value)
    if kind is int and 0 <= value <= MAX_TOKENS_PER_CALL:
        return int(value)
    if kind is int:
        count: int = value
    elif kind is float and math.isfinite(value) and value.is_integer():
        count = int(value)
    # isascii: str.isdigit() also accepts digits int() refuses, such as '²'.
    elif kind is str and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        count = int(value)
    else:
        raise _Invalid("invalid_tokens")
    if not 0 <= count <= MAX_TOKENS_PER_CALL:
        raise _Invalid("invalid_tokens")
    return count


def _name(value: Any, reason: str) -> str:
    if value is None:
        return ""
    if type(value) is not str or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise _Invalid(reason)
    return value.strip()


def _cost(value: Any) -> float | None:
    if type(value) is int and not 0 <= value <= MAX_COST_PER_CALL_USD:
        return None  # checked before float(), which raises on a huge int
    if type(value) is int or type(value) is float:
        cost = float(value)
        if math.isfinite(cost) and 0.0 <= cost <= MAX_COST_PER_CALL_USD:
            return cost
    return None


# key -> (field, priority): one pass over the span's keys finds the best name of each field.
_MODEL, _PROVIDER, _INPUT, _OUTPUT, _CACHE, _REASONING, _COST = range(7)
_FIELDS: Final = {
    key: (field, priority)
    for field, keys in enumerate(
        (MODEL_KEYS, PROVIDER_KEYS, INPUT_KEYS, OUTPUT_KEYS, CACHE_READ_KEYS, REASONING_KEYS, COST_KEYS)
    )
    for priority, key in enumerate(keys)
}


def read_usage(attrs: Mapping[str, Any]) -> Usage | str | None:
    """Read an LLM call's usage from span attributes.

    Returns ``None`` for a span that is not an LLM call, a drop reason (``str``) for an LLM
    span whose attributes are malformed, else the :class:`Usage`.
    """
    if not attrs or LLM_MARKER_KEYS.isdisjoint(attrs):
        return None
    found: list[Any] = [None] * 7
    rank = [99] * 7
    for key in _ALL_KEYS.intersection(attrs):
        field, priority = _FIELDS[key]
        if priority < rank[field]:
            rank[field] = priority
            found[field] = attrs[key]
    try:
        input_tokens = _tokens(found[_INPUT])
        output_tokens = _tokens(found[_OUTPUT])
        cache_read = _tokens(found[_CACHE])
        reasoning = _tokens(found[_REASONING])
        model = _name(found[_MODEL], "invalid_model")
        provider = _name(found[_PROVIDER], "invalid_provider").lower()
    except _Invalid as invalid:
        return invalid.reason
    span_cost = None if found[_COST] is None else _cost(found[_COST])
    if input_tokens == output_tokens == 0 and span_cost is None:
        return None
    if cache_read > input_tokens:
        # Some instrumentations report input tokens net of cache reads; make it gross.
        input_tokens += cache_read
    if not provider and "/" in model:
        provider = model.split("/", 1)[0].lower()
    return Usage(model, provider or "unknown", input_tokens, output_tokens, cache_read, reasoning, span_cost)
