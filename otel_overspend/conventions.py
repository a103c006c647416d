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
#: Read only on OpenLIT's spans (see :func:`read_usage`).
SDK_NAME_KEY: Final = "telemetry.sdk.name"
CACHE_WRITE_KEY: Final = "gen_ai.usage.cache_creation.input_tokens"

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
    #: The span's own ``overspend.step`` attribute, unvalidated, if any.
    step: Any = None
    #: The provider's id of the response (``gen_ai.response.id``), if any.
    response_id: Any = None


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


def _tokens_or_zero(value: Any) -> int:
    try:
        return _tokens(value)
    except _Invalid:
        return 0


# Names already seen valid -> their cleaned form; bounded, most spans repeat a few names.
_CLEAN_NAMES: dict[str, str] = {}
_MAX_CLEAN_NAMES: Final = 4_096


def _name(value: Any, reason: str) -> str:
    if value is None:
        return ""
    clean = _CLEAN_NAMES.get(value) if type(value) is str else None
    if clean is not None:
        return clean
    if type(value) is not str or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise _Invalid(reason)
    clean = value.strip()
    if len(_CLEAN_NAMES) < _MAX_CLEAN_NAMES:
        _CLEAN_NAMES[value] = clean
    return clean


def _cost(value: Any) -> float | None:
    if type(value) is int and not 0 <= value <= MAX_COST_PER_CALL_USD:
        return None  # checked before float(), which raises on a huge int
    if type(value) is int or type(value) is float:
        cost = float(value)
        if math.isfinite(cost) and 0.0 <= cost <= MAX_COST_PER_CALL_USD:
            return cost
    return None


STEP_KEY: Final = "overspend.step"
RESPONSE_ID_KEY: Final = "gen_ai.response.id"
(_MODEL, _PROVIDER, _INPUT, _OUTPUT, _CACHE, _REASONING, _COST, _STEP, _RESPONSE_ID, _SDK, _CACHE_WRITE) = (
    range(11)
)
_FIELD_KEYS: Final = (
    MODEL_KEYS,
    PROVIDER_KEYS,
    INPUT_KEYS,
    OUTPUT_KEYS,
    CACHE_READ_KEYS,
    REASONING_KEYS,
    COST_KEYS,
    (STEP_KEY,),
    (RESPONSE_ID_KEY,),
    (SDK_NAME_KEY,),
    (CACHE_WRITE_KEY,),
)
_READ_KEYS: Final = _ALL_KEYS | {STEP_KEY, RESPONSE_ID_KEY, SDK_NAME_KEY, CACHE_WRITE_KEY}
# The keys a span carries -> which key to read for each field: instrumentations emit the
# same few key sets over and over, so the choice is made once per key set.
_PLANS: dict[frozenset[str], tuple[tuple[int, str], ...]] = {}
_MAX_PLANS: Final = 1_024


def _plan(present: frozenset[str]) -> tuple[tuple[int, str], ...]:
    plan = tuple(
        (field, next(key for key in keys if key in present))
        for field, keys in enumerate(_FIELD_KEYS)
        if not present.isdisjoint(keys)
    )
    if len(_PLANS) < _MAX_PLANS:
        _PLANS[present] = plan
    return plan


def read_usage(attrs: Mapping[str, Any]) -> Usage | str | None:
    """Read an LLM call's usage from span attributes.

    Returns ``None`` for a span that is not an LLM call, a drop reason (``str``) for an LLM
    span whose attributes are malformed, else the :class:`Usage`.
    """
    if LLM_MARKER_KEYS.isdisjoint(attrs):
        return None
    present = _READ_KEYS.intersection(attrs)
    plan = _PLANS.get(present) or _plan(present)
    found: list[Any] = [None] * 11
    for field, key in plan:
        found[field] = attrs[key]
    try:
        value = found[_INPUT]
        input_tokens = value if type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL else _tokens(value)
        value = found[_OUTPUT]
        output_tokens = value if type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL else _tokens(value)
        cache_read = 0 if found[_CACHE] is None else _tokens(found[_CACHE])
        reasoning = 0 if found[_REASONING] is None else _tokens(found[_REASONING])
        model = _name(found[_MODEL], "invalid_model")
        provider = _name(found[_PROVIDER], "invalid_provider").lower()
    except _Invalid as invalid:
        return invalid.reason
    span_cost = None if found[_COST] is None else _cost(found[_COST])
    if found[_SDK] == "openlit" and (span_cost == 0.0 or provider == "anthropic"):
        # OpenLIT reports Anthropic's input tokens as Anthropic does, net of cache reads and
        # writes; and it writes a cost of 0 for any model its price list lacks (for every
        # model when it could not download the list): a 0 from it is no price.
        if provider == "anthropic":
            input_tokens += cache_read + _tokens_or_zero(found[_CACHE_WRITE])
        if span_cost == 0.0:
            span_cost = None
    if input_tokens == output_tokens == 0 and span_cost is None:
        return None
    if cache_read > input_tokens:
        # Some instrumentations report input tokens net of cache reads; make it gross.
        input_tokens += cache_read
    if not provider and "/" in model:
        provider = model.split("/", 1)[0].lower()
    return Usage(
        model,
        provider or "unknown",
        input_tokens,
        output_tokens,
        cache_read,
        reasoning,
        span_cost,
        found[_STEP],
        found[_RESPONSE_ID],
    )
