"""What instrumentations put on LLM spans, and how we read it.

Each quantity has an ordered tuple of attribute names (OpenTelemetry GenAI semantic
conventions first, then their legacy names, OpenLLMetry and OpenInference); the first
one present wins. A span is an LLM call when it carries token usage or a computed cost,
or when its operation or span kind says so (then it may carry no usage at all).

What was billed is read gross and whole: input with its cache reads and writes, output
with its reasoning, a rerank call's searches. Whether an instrumentation reports input net
of the cache is decided from who made the span and for which provider
(:func:`input_reporting`); only when that is not known does a cached count larger than the
input tell, and that guess is noted. ``docs/pricing.md`` has the table.
Reading never raises: a malformed value makes the span a counted drop, by reason.
"""

from __future__ import annotations

import math
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from otel_overspend.base.bounded import make_room
from otel_overspend.steps import BAGGAGE_KEY, CASCADE_STAGE_KEY

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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
#: The operation a span performs (GenAI conventions; OpenLLMetry's legacy request type).
OPERATION_KEYS: Final = ("gen_ai.operation.name", "llm.request.type")
#: OpenInference's span kind (LLM, EMBEDDING, RERANKER, CHAIN, TOOL, ...).
SPAN_KIND_KEY: Final = "openinference.span.kind"
INPUT_KEYS: Final = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
)
OUTPUT_KEYS: Final = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
)
CACHE_READ_KEYS: Final = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
#: Cache writes of every lifetime (the 1-hour ones included).
CACHE_WRITE_KEYS: Final = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.cache_creation_input_tokens",
)
#: The anthropic SDK's own tracing splits cache writes by lifetime (billed 1.25x and 2x input).
CACHE_WRITE_5M_KEY: Final = "anthropic.usage.cache_creation.ephemeral_5m_input_tokens"
CACHE_WRITE_1H_KEY: Final = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"
REASONING_KEYS: Final = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "llm.usage.reasoning_tokens",
)
#: Billed search units of a rerank call, where an instrumentation reports them.
SEARCH_KEYS: Final = ("gen_ai.usage.search_units", "llm.usage.search_units")
COST_KEYS: Final = ("gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.total_cost", "litellm.cost.total")
#: Emitters that write a cost of 0 for a model they have no price for: a 0 from them, on a
#: call that used tokens, is no price. OpenLIT is told by its SDK name; LiteLLM by its keys.
ZERO_MEANS_UNPRICED_COST_KEYS: Final = frozenset({"gen_ai.cost.total_cost", "litellm.cost.total"})
OPENLIT: Final = "openlit"
#: LiteLLM's id of a call: on a span not made by LiteLLM (scope ``litellm``), LiteLLM wrote
#: its usage onto another span, the active one, overwriting any call's before it.
LITELLM_CALL_KEY: Final = "litellm.call_id"
LITELLM_SCOPE: Final = "litellm"
#: The raw response LiteLLM records, one ``raw_gen_ai_request`` span per call (while it
#: captures message content, its default) as a child of the span it wrote usage onto: how
#: many calls were written there, and so how many were overwritten.
LITELLM_RAW_USAGE_KEYS: Final = frozenset({"llm.openai.usage", "llm.anthropic.usage", "llm.azure.usage"})
#: Read only on OpenLIT's spans (see :func:`read_usage`).
SDK_NAME_KEY: Final = "telemetry.sdk.name"
#: A failed call: the GenAI conventions' error type, or the span status the trace readers
#: and the processor put there.
STATUS_KEY: Final = "otel.status_code"
STATUS_ERROR: Final = "ERROR"
ERROR_KEYS: Final = ("error.type", STATUS_KEY)
RESPONSE_ID_KEY: Final = "gen_ai.response.id"

#: A span carrying any of these reports usage: a call counted, or a call's duplicate. Every
#: key :func:`read_usage` bills is here: a span with cache reads, reasoning or searches alone
#: is a call whatever its operation says.
USAGE_KEYS: Final = frozenset(
    INPUT_KEYS
    + OUTPUT_KEYS
    + COST_KEYS
    + CACHE_READ_KEYS
    + CACHE_WRITE_KEYS
    + (CACHE_WRITE_5M_KEY, CACHE_WRITE_1H_KEY)
    + REASONING_KEYS
    + SEARCH_KEYS
)
#: A span carrying any of these may be an LLM call (by its usage, its operation or its
#: kind); :func:`read_usage` decides on the values.
LLM_MARKER_KEYS: Final = USAGE_KEYS | frozenset((*OPERATION_KEYS, SPAN_KIND_KEY)) | LITELLM_RAW_USAGE_KEYS
#: Operations and span kinds that are an LLM call (with or without usage on the span).
LLM_OPERATIONS: Final = frozenset(
    {
        "chat",
        "text_completion",
        "completion",
        "generate_content",
        "embeddings",
        "embedding",
        "rerank",
        # LiteLLM's request types.
        "acompletion",
        "aembedding",
    }
)
LLM_SPAN_KINDS: Final = frozenset({"LLM", "EMBEDDING", "RERANKER"})
RERANK: Final = "rerank"
RERANKER_KIND: Final = "RERANKER"

#: No single call reads or writes more tokens than this; a larger count is a broken span.
MAX_TOKENS_PER_CALL: Final = 100_000_000
#: Longer model or provider names are not names: the span is dropped as invalid.
MAX_NAME_LENGTH: Final = 200
MAX_COST_PER_CALL_USD: Final = 1_000_000.0
_MAX_DIGITS: Final = 10


class Usage(NamedTuple):
    """What one LLM span says was billed, gross: ``input_tokens`` includes cache reads and
    cache writes, ``cache_write_tokens`` the 1-hour writes, ``output_tokens`` reasoning.

    A span that is an LLM call by its operation or kind but reports nothing billed (no
    tokens, no searches, no cost) reads as a usage with all of them zero: see
    :attr:`reported`.
    """

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
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: Billed searches of a rerank call (0 for other calls).
    searches: int = 0
    #: What was noticed while reading, to be counted beside the call: a span cost that
    #: could not be read (``invalid_span_cost``), input or output found net and made gross
    #: by the last-resort rule (``net_input_inferred``, ``net_output_inferred``).
    notes: tuple[str, ...] = ()
    #: The span's ``overspend.cascade.stage`` attribute, unvalidated, if any.
    cascade_stage: Any = None

    @property
    def reported(self) -> bool:
        """Whether the span reports anything billed (tokens, searches or a cost)."""
        return (
            bool(self.input_tokens or self.output_tokens or self.searches) or self.span_cost_usd is not None
        )


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


#: The bound as a whole number: a huge int is compared as an int (compiled code turns an
#: int compared with a float into a float first, which raises on it).
_MAX_WHOLE_COST: Final = int(MAX_COST_PER_CALL_USD)


def _cost(value: Any) -> float | None:
    if type(value) is int and not 0 <= value <= _MAX_WHOLE_COST:
        return None  # checked before float(), which raises on a huge int
    if type(value) is int or type(value) is float:
        cost = float(value)
        if math.isfinite(cost) and 0.0 <= cost <= MAX_COST_PER_CALL_USD:
            return cost
    return None


_FIELD_KEYS: Final = (
    MODEL_KEYS,
    PROVIDER_KEYS,
    INPUT_KEYS,
    OUTPUT_KEYS,
    CACHE_READ_KEYS,
    REASONING_KEYS,
    COST_KEYS,
    (BAGGAGE_KEY,),
    (RESPONSE_ID_KEY,),
    (SDK_NAME_KEY,),
    CACHE_WRITE_KEYS,
    (CACHE_WRITE_5M_KEY,),
    (CACHE_WRITE_1H_KEY,),
    SEARCH_KEYS,
    OPERATION_KEYS,
    (SPAN_KIND_KEY,),
    ERROR_KEYS,
    (CASCADE_STAGE_KEY,),
)
#: The index of the cost among :data:`_FIELD_KEYS`.
COST_FIELD: Final = 6
#: Every attribute :func:`read_usage` may read (the offline readers keep these).
READ_KEYS: Final = frozenset(key for names in _FIELD_KEYS for key in names)
#: The keys a span carries, in their order -> how to read its fields (:class:`_Plan`), or
#: ``None`` for a span that is no LLM call. Instrumentations emit the same few key
#: sequences over and over, so the choice is made once per sequence.
_PLANS: dict[tuple[str, ...], _Plan | None] = {}
_MAX_PLANS: Final = 4_096


class _Plan(NamedTuple):
    """How to read the fields of a span carrying one sequence of keys: ``present`` takes the
    values of the keys it has (one C call), and ``fields`` spreads them, ``None`` appended,
    over :data:`_FIELD_KEYS` (one more: ``None`` for each field it does not carry)."""

    present: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    fields: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    #: The key its cost is read from (``""``: none).
    cost_key: str


#: What :data:`_PLANS` answers for a key sequence not seen yet (one lookup, not two).
_UNPLANNED: Final = _Plan(tuple, tuple, "")


def _plan(keys: tuple[str, ...]) -> _Plan | None:
    present_keys = frozenset(keys)
    plan = None
    chosen = [next((key for key in names if key in present_keys), None) for names in _FIELD_KEYS]
    read = [key for key in chosen if key is not None]
    # A span with none of the fields (LiteLLM's raw usage alone, say) reads as no call.
    if read and not LLM_MARKER_KEYS.isdisjoint(present_keys):
        # Twice the last key: itemgetter of one key would return the value, not a tuple.
        present = itemgetter(*read, read[-1])
        spread = itemgetter(*(read.index(key) if key is not None else len(read) + 1 for key in chosen))
        plan = _Plan(present, spread, chosen[COST_FIELD] or "")
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


#: Providers whose API reports input tokens net of cache reads and writes (Anthropic's
#: ``input_tokens``, Bedrock's ``inputTokens``); OpenAI's and Gemini's include cached tokens.
NET_INPUT_PROVIDERS: Final = frozenset({"anthropic", "aws.bedrock", "bedrock"})
#: Providers whose API reports reasoning apart from the answer's output tokens (Gemini's
#: ``thoughtsTokenCount`` beside ``candidatesTokenCount``); both are billed as output.
NET_OUTPUT_PROVIDERS: Final = frozenset(
    {"gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai", "gemini", "google", "vertex_ai", "google_genai"}
)
#: Instrumentations known (from their sources, and from the recorded fixtures of the
#: tests) to make a net-input provider's input gross before writing it.
GROSS_INPUT_SCOPES: Final = frozenset(
    {
        "opentelemetry.instrumentation.anthropic",  # OpenLLMetry
        "openinference.instrumentation.anthropic",  # OpenInference
        "com.anthropic.sdk.python",  # the anthropic SDK's own tracing
    }
)
NET: Final = "net"
GROSS: Final = "gross"
UNKNOWN: Final = "unknown"
#: The label value of a provider or model a span does not name.
UNNAMED: Final = "unknown"


def input_reporting(scope: str, sdk: Any, provider: str) -> str:
    """Whether a span's input tokens are ``net`` of cache reads and writes, ``gross``, or
    ``unknown`` (then the last-resort rule in :func:`read_usage` decides)."""
    if provider not in NET_INPUT_PROVIDERS:
        return GROSS
    if sdk == OPENLIT:
        return NET  # OpenLIT writes Anthropic's usage as the API reports it
    if scope in GROSS_INPUT_SCOPES:
        return GROSS
    return UNKNOWN


_OPERATION, _LEGACY_OPERATION = OPERATION_KEYS
_has_no_usage_keys: Final = USAGE_KEYS.isdisjoint


def may_be_llm_call(attrs: Mapping[str, Any]) -> bool:
    """Whether a span carrying some of :data:`LLM_MARKER_KEYS` is worth reading: it reports
    usage, or its operation or kind is an LLM call (not a tool, chain or retriever span)."""
    get = attrs.get
    return (
        not _has_no_usage_keys(attrs)
        or not LITELLM_RAW_USAGE_KEYS.isdisjoint(attrs)
        or get(_OPERATION) in LLM_OPERATIONS
        or get(SPAN_KIND_KEY) in LLM_SPAN_KINDS
        or get(_LEGACY_OPERATION) in LLM_OPERATIONS
    )


#: ``otel.status_code`` values that are no failure.
_NOT_ERRORS: Final = frozenset({"OK", "UNSET"})


def _operation_is_llm(operation: Any, kind: Any) -> bool:
    return operation in LLM_OPERATIONS or kind in LLM_SPAN_KINDS


def _span_cost(cost: Any, key: str, sdk: Any) -> tuple[float | None, tuple[str, ...]]:
    """A span's own cost and what is to be noted of it: an unreadable one is none, counted;
    a 0 from an emitter that writes 0 for "no price" is none."""
    span_cost = _cost(cost)
    if span_cost is None:
        return None, ("invalid_span_cost",)
    if span_cost == 0.0 and (sdk == OPENLIT or key in ZERO_MEANS_UNPRICED_COST_KEYS):
        return None, ()
    return span_cost, ()


def _gross(  # noqa: PLR0917 - one call per span, internal
    input_tokens: int, output_tokens: int, cached: int, reasoning: int, reporting: str, provider: str
) -> tuple[int, int, tuple[str, ...]]:
    """Input with its cache reads and writes, output with its reasoning, and what had to be
    inferred to get there (see the module docstring)."""
    notes: tuple[str, ...] = ()
    if cached:
        if reporting == NET:
            input_tokens += cached
        elif cached > input_tokens:
            # The last resort: a gross count cannot be smaller than its own cached part.
            input_tokens += cached
            notes = ("net_input_inferred",)
    if reasoning:
        if provider in NET_OUTPUT_PROVIDERS:
            output_tokens += reasoning
        elif reasoning > output_tokens:
            output_tokens += reasoning
            notes = (*notes, "net_output_inferred")
    return input_tokens, output_tokens, notes


def read_usage(attrs: Mapping[str, Any], scope: str = "") -> Usage | str | None:
    """Read what an LLM call was billed from its span's attributes.

    Returns ``None`` for a span that is not an LLM call (nor a failed one), a drop reason
    (``str``) for an LLM span whose attributes are malformed, else the :class:`Usage`,
    gross (see the class). ``scope`` is the instrumentation scope that made the span.
    """
    found = attrs if type(attrs) is dict else _as_dict(attrs)
    keys = tuple(found)
    plan = _PLANS.get(keys, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _plan(keys)
    if plan is None:
        return None
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
        cache_write_5m,
        cache_write_1h,
        searches,
        operation,
        kind,
        error,
        stage,
    ) = plan.fields((*plan.present(found), None))
    try:
        if not (type(input_tokens) is int and 0 <= input_tokens <= MAX_TOKENS_PER_CALL):
            input_tokens = _tokens(input_tokens)
        if not (type(output_tokens) is int and 0 <= output_tokens <= MAX_TOKENS_PER_CALL):
            output_tokens = _tokens(output_tokens)
        cache_read = 0 if cache_read is None else _tokens(cache_read)
        reasoning = 0 if reasoning is None else _tokens(reasoning)
        cache_write = 0 if cache_write is None else _tokens(cache_write)
        cache_write_1h = 0 if cache_write_1h is None else _tokens(cache_write_1h)
        if cache_write_5m is not None or cache_write_1h:
            # The lifetimes add up to the writes; a span with only the split has no total.
            cache_write = max(cache_write, _tokens(cache_write_5m) + cache_write_1h)
        searches = 0 if searches is None else _tokens(searches)
        clean = _CLEAN_NAMES.get(model) if type(model) is str else None
        model = clean if clean is not None else _name(model, "invalid_model", _CLEAN_NAMES)
        clean = _CLEAN_PROVIDERS.get(provider) if type(provider) is str else None
        provider = (
            clean if clean is not None else _name(provider, "invalid_provider", _CLEAN_PROVIDERS, lower=True)
        )
    except _Invalid as invalid:
        return invalid.reason
    if not searches and (operation == RERANK or kind == RERANKER_KIND):
        searches = 1  # a rerank call is one search unless its span counts them
    billed = bool(input_tokens or output_tokens or searches or cache_read or cache_write or reasoning)
    span_cost, notes = (None, ()) if cost is None else _span_cost(cost, plan.cost_key, sdk)
    failed = error is not None and error not in _NOT_ERRORS
    if not billed and span_cost is None and (failed or not _operation_is_llm(operation, kind)):
        return None  # no usage: a failed call, or a span that is no call
    if not provider and "/" in model:
        provider = model.split("/", 1)[0].lower()
    cached = cache_read + cache_write
    if cached or reasoning:
        input_tokens, output_tokens, inferred = _gross(
            input_tokens,
            output_tokens,
            cached,
            reasoning,
            input_reporting(scope, sdk, provider) if cached else GROSS,
            provider,
        )
        notes += inferred
    cache_write_1h = min(cache_write_1h, cache_write)
    return _new_usage(
        (
            model,
            provider or UNNAMED,
            input_tokens,
            output_tokens,
            cache_read,
            reasoning,
            span_cost,
            step,
            response_id,
            cache_write,
            cache_write_1h,
            searches,
            notes,
            stage,
        )
    )
