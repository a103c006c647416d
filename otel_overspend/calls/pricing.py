"""Price schedules: what a call costs, in USD, from its token counts.

A :class:`PriceSchedule` is resolved once per model (from the user's override, from
genai-prices' bundled data, or from a tier default) and then applied to every call with
plain float arithmetic. Long-context prices are "cliff" tiers: when a call's input tokens
exceed a tier's start, every token of the call is charged at that tier's rate.

Units, as providers bill them: fresh input, cache reads, 5-minute and 1-hour cache writes,
output (reasoning included) and requests (a rerank call's searches).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.calls.catalog import FRONTIER, MID, MINI, SPECIALIST, Tier

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = (
    "DEFAULT_TIER_PRICES",
    "DEFAULT_TIER_SEARCH_PRICES",
    "PriceSchedule",
    "Rate",
    "genai_prices_schedule",
)

_log = logging.getLogger(__name__)

_PER_MTOK: Final = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per 1M tokens, with optional cliff tiers keyed on the call's input tokens."""

    base: float
    #: (start, rate) pairs in ascending start order; the rate applies when input > start.
    tiers: tuple[tuple[int, float], ...] = ()

    def at(self, input_tokens: int) -> float:
        for start, rate in reversed(self.tiers):
            if input_tokens > start:
                return rate
        return self.base


@dataclass(frozen=True, slots=True)
class PriceSchedule:
    """A model's prices, per billed unit.

    Rates a model has none of fall back as providers bill: a cache read or a cache write at
    the input rate, a 1-hour cache write at the (5-minute) cache-write rate. ``per_request``
    is USD per request (a call is one request; a rerank call is as many as its searches);
    ``per_search`` is USD per search for rerank calls, ``per_request`` when unset.
    """

    input: Rate
    output: Rate
    cache_read: Rate | None = None
    #: Where the schedule came from: ``override``, ``genai-prices`` or ``tier-default``.
    source: str = "override"
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    per_request_usd: float = 0.0
    per_search_usd: float | None = None
    #: (input, cache read, cache write, 1-hour cache write, output) base rates, USD per 1M
    #: tokens...
    _base: tuple[float, float, float, float, float] = field(init=False, repr=False, compare=False)
    #: ...which apply to every call with at most this many input tokens: the fast case.
    _base_up_to: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rates = self._rates_at(None)
        starts = [start for rate in self._all() for start, _ in rate.tiers]
        object.__setattr__(self, "_base", rates)
        object.__setattr__(self, "_base_up_to", min(starts) if starts else float("inf"))

    def _all(self) -> tuple[Rate, ...]:
        optional = (self.cache_read, self.cache_write, self.cache_write_1h)
        return (self.input, self.output, *(rate for rate in optional if rate is not None))

    def _rates_at(self, input_tokens: int | None) -> tuple[float, float, float, float, float]:
        def at(rate: Rate) -> float:
            return rate.base if input_tokens is None else rate.at(input_tokens)

        input_rate = at(self.input)
        write = input_rate if self.cache_write is None else at(self.cache_write)
        return (
            input_rate,
            input_rate if self.cache_read is None else at(self.cache_read),
            write,
            write if self.cache_write_1h is None else at(self.cache_write_1h),
            at(self.output),
        )

    @classmethod
    def flat(
        cls,
        input_usd_per_mtok: float,
        output_usd_per_mtok: float,
        cache_read_usd_per_mtok: float | None = None,
        *,
        cache_write_usd_per_mtok: float | None = None,
        cache_write_1h_usd_per_mtok: float | None = None,
        per_request_usd: float = 0.0,
        per_search_usd: float | None = None,
        source: str = "override",
    ) -> PriceSchedule:
        def rate(value: float | None) -> Rate | None:
            return None if value is None else Rate(value)

        return cls(
            Rate(input_usd_per_mtok),
            Rate(output_usd_per_mtok),
            rate(cache_read_usd_per_mtok),
            source,
            cache_write=rate(cache_write_usd_per_mtok),
            cache_write_1h=rate(cache_write_1h_usd_per_mtok),
            per_request_usd=per_request_usd,
            per_search_usd=per_search_usd,
        )

    def cost_usd(  # noqa: PLR0917 - once per call: positional arguments are cheaper
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        searches: int = 0,
    ) -> float:
        """Cost of one call. ``input_tokens`` is gross: it includes the cache reads and the
        cache writes; ``cache_write_tokens`` includes the 1-hour writes; ``output_tokens``
        includes reasoning. Long-context tiers are chosen by the gross input."""
        if input_tokens <= self._base_up_to:
            input_rate, read_rate, write_rate, write_1h_rate, output_rate = self._base
        else:
            input_rate, read_rate, write_rate, write_1h_rate, output_rate = self._rates_at(input_tokens)
        fresh = input_tokens - cache_read_tokens - cache_write_tokens
        tokens_usd = (
            fresh * input_rate
            + cache_read_tokens * read_rate
            + (cache_write_tokens - cache_write_1h_tokens) * write_rate
            + cache_write_1h_tokens * write_1h_rate
            + output_tokens * output_rate
        ) / _PER_MTOK
        if searches:
            per_search = self.per_request_usd if self.per_search_usd is None else self.per_search_usd
            return tokens_usd + searches * per_search
        return tokens_usd + self.per_request_usd

    @property
    def input_base_usd_per_mtok(self) -> float:
        return self.input.base

    @property
    def prices_searches(self) -> bool:
        """Whether a rerank call with no tokens costs anything here."""
        return bool(self.per_request_usd or self.per_search_usd)


#: Tier defaults in USD per 1M tokens (input, output): round prices of each tier, for a model
#: neither the settings nor genai-prices can price (the settings' ``tier_prices`` override them).
DEFAULT_TIER_PRICES: Final[Mapping[Tier, tuple[float, float]]] = {
    FRONTIER: (3.00, 15.00),
    MID: (0.30, 1.20),
    MINI: (0.05, 0.20),
    SPECIALIST: (0.02, 0.02),
}
#: USD per search of a rerank call at a tier with no price of its own: specialist rerankers
#: are billed per search (Cohere Rerank 3.5: $2.00 per 1,000 searches).
DEFAULT_TIER_SEARCH_PRICES: Final[Mapping[Tier, float]] = {SPECIALIST: 0.002}

# OpenTelemetry provider names (gen_ai.provider.name / gen_ai.system) -> genai-prices ids.
_PROVIDER_IDS: Final[Mapping[str, str]] = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "google": "google",
    "vertex_ai": "google",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "mistral": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
}


def _rate(value: Any) -> Rate | None:
    """Convert a genai-prices price (Decimal or TieredPrices) to a :class:`Rate`."""
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return Rate(float(value))
    return Rate(float(value.base), tuple((int(t.start), float(t.price)) for t in tiers))


#: genai-prices memoises every model name it is asked about; past this many, start over.
_MAX_LOOKUP_CACHE: Final = 4_096


def _bound_lookup_caches(snapshot: object) -> None:
    # Our ModelResolver caches what we need; genai-prices' own memo of lookups (private,
    # unbounded) would otherwise grow with every distinct model name an app sends.
    for name in ("_lookup_cache", "_provider_cache", "_provider_misses"):
        cache = getattr(snapshot, name, None)
        if isinstance(cache, (dict, set)) and len(cache) > _MAX_LOOKUP_CACHE:
            cache.clear()


def genai_prices_schedule(model: str, provider: str) -> PriceSchedule | None:
    """The model's schedule from genai-prices' bundled data (never the network), or ``None``."""
    try:
        from genai_prices import data_snapshot  # noqa: PLC0415 - heavy import, only when needed
    except ImportError:  # pragma: no cover - genai-prices is a dependency
        return None
    snapshot = data_snapshot.get_snapshot()
    _bound_lookup_caches(snapshot)
    provider_id = _PROVIDER_IDS.get(provider)
    candidates = [(model, provider_id)]
    if "/" in model:
        prefix, _, bare = model.partition("/")
        candidates.append((bare, _PROVIDER_IDS.get(prefix.lower(), provider_id)))
    for ref, pid in list(candidates):
        if pid is not None:
            candidates.append((ref, None))
    for ref, pid in candidates:
        try:
            _, info = snapshot.find_provider_model(ref, None, pid, None)
            prices = info.get_prices(datetime.now(tz=timezone.utc))
        except (LookupError, ValueError, TypeError, AttributeError):
            continue
        input_rate = _rate(getattr(prices, "input_mtok", None))
        output_rate = _rate(getattr(prices, "output_mtok", None))
        if input_rate is None and output_rate is None:
            continue
        requests_kcount = getattr(prices, "requests_kcount", None)
        return PriceSchedule(
            input=input_rate or Rate(0.0),
            output=output_rate or Rate(0.0),
            cache_read=_rate(getattr(prices, "cache_read_mtok", None)),
            cache_write=_rate(getattr(prices, "cache_write_mtok", None)),
            cache_write_1h=_rate(getattr(prices, "cache_write_1h_mtok", None)),
            per_request_usd=0.0 if requests_kcount is None else float(requests_kcount) / 1_000,
            source="genai-prices",
        )
    return None
