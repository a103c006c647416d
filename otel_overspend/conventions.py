"""What instrumentations put on LLM spans, and how we read it.

Each quantity has an ordered tuple of attribute names (OpenTelemetry GenAI semantic
conventions first, then their legacy names, OpenLLMetry and OpenInference); the first
one present wins. A span is an LLM call when it carries token usage or a computed cost.
Reading never raises: a malformed value makes the span a counted drop, by reason.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from otel_overspend.bounded import make_room

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


#: Builds a :class:`Usage` from one tuple in C (the generated ``__new__`` runs Python code).
_new_usage: Final = partial(tuple.__new__, Usage)


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


# Names already seen valid -> their cleaned form (providers also lower-cased); bounded,
# most spans repeat a few names.
_CLEAN_NAMES: dict[str, str] = {}
_CLEAN_PROVIDERS: dict[str, str] = {}
_MAX_CLEAN_NAMES: Final = 4_096


def _name(value: Any, reason: str, seen: dict[str, str], *, lower: bool = False) -> str:
    if value is None:
        return ""
    if type(value) is not str or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise _Invalid(reason)
    clean = value.strip().lower() if lower else value.strip()
    if len(seen) < _MAX_CLEAN_NAMES:
        seen[value] = clean
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
#: Stands for a field the span does not carry: no attribute has an empty name.
_ABSENT: Final = ""
#: The keys a span carries, in their order -> the key to read for each field (``_ABSENT``
#: when none), or ``None`` for a span that is no LLM call. Instrumentations emit the same
#: few key sequences over and over, so the choice is made once per sequence.
_PLANS: dict[tuple[str, ...], tuple[str, ...] | None] = {}
#: What :data:`_PLANS` answers for a key sequence not seen yet (one lookup, not two).
_UNPLANNED: Final = ("",)
_MAX_PLANS: Final = 4_096


def _plan(keys: tuple[str, ...]) -> tuple[str, ...] | None:
    present = frozenset(keys)
    plan = (
        None
        if LLM_MARKER_KEYS.isdisjoint(present)
        else tuple(next((key for key in names if key in present), _ABSENT) for names in _FIELD_KEYS)
    )
    if len(_PLANS) >= _MAX_PLANS:
        make_room(_PLANS, _MAX_PLANS)
    _PLANS[keys] = plan
    return plan


def _as_dict(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` as a plain dict, copied in C when it is the SDK's (read-only) attributes."""
    if type(attrs) is dict:
        return attrs
    copy = getattr(attrs, "copy", None)  # MappingProxyType over the SDK's BoundedAttributes
    if copy is not None:
        copied = copy()
        if type(copied) is dict:
            return copied
    return dict(attrs)


def read_usage(attrs: Mapping[str, Any]) -> Usage | str | None:
    """Read an LLM call's usage from span attributes.

    Returns ``None`` for a span that is not an LLM call, a drop reason (``str``) for an LLM
    span whose attributes are malformed, else the :class:`Usage`.
    """
    found = attrs if type(attrs) is dict else _as_dict(attrs)
    keys = tuple(found)
    plan = _PLANS.get(keys, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _plan(keys)
    if plan is None:
        return None
    get = found.get
    (
        model,
        provider,
        input_tokens,
        output_tokens,
        cache_read,
        reasoning,
        cost,
        step,
        response_id,
        sdk,
        cache_write,
    ) = map(get, plan)
    try:
        if not (type(input_tokens) is int and 0 <= input_tokens <= MAX_TOKENS_PER_CALL):
            input_tokens = _tokens(input_tokens)
        if not (type(output_tokens) is int and 0 <= output_tokens <= MAX_TOKENS_PER_CALL):
            output_tokens = _tokens(output_tokens)
        cache_read = 0 if cache_read is None else _tokens(cache_read)
        reasoning = 0 if reasoning is None else _tokens(reasoning)
        clean = _CLEAN_NAMES.get(model) if type(model) is str else None
        model = clean if clean is not None else _name(model, "invalid_model", _CLEAN_NAMES)
        clean = _CLEAN_PROVIDERS.get(provider) if type(provider) is str else None
        provider = (
            clean if clean is not None else _name(provider, "invalid_provider", _CLEAN_PROVIDERS, lower=True)
        )
    except _Invalid as invalid:
        return invalid.reason
    span_cost = None if cost is None else _cost(cost)
    if sdk == "openlit" and (span_cost == 0.0 or provider == "anthropic"):
        # OpenLIT reports Anthropic's input tokens as Anthropic does, net of cache reads and
        # writes; and it writes a cost of 0 for any model its price list lacks (for every
        # model when it could not download the list): a 0 from it is no price.
        if provider == "anthropic":
            input_tokens += cache_read + _tokens_or_zero(cache_write)
        if span_cost == 0.0:
            span_cost = None
    if input_tokens == output_tokens == 0 and span_cost is None:
        return None
    if cache_read > input_tokens:
        # Some instrumentations report input tokens net of cache reads; make it gross.
        input_tokens += cache_read
    if not provider and "/" in model:
        provider = model.split("/", 1)[0].lower()
    return _new_usage(
        (
            model,
            provider or "unknown",
            input_tokens,
            output_tokens,
            cache_read,
            reasoning,
            span_cost,
            step,
            response_id,
        )
    )
