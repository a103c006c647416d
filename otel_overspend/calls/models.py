"""Resolving a (provider, model) pair to its tier and price schedule, once, then from a cache.

Tier: the user's ``model_tiers`` pattern, else the built-in catalog, else the band the
model's known price falls in, else ``unknown``. Schedule: the user's ``model_prices``
pattern, else genai-prices' bundled data, else the tier's default price, else none (the
call is then unpriced unless its span already carries a cost).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from otel_overspend.base.bounded import make_room
from otel_overspend.calls.catalog import FRONTIER, MID, MINI, SPECIALIST, UNKNOWN_TIER, Tier, catalog_tier
from otel_overspend.calls.pricing import PriceSchedule, genai_prices_schedule

if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Mapping

__all__ = ("ModelInfo", "ModelResolver", "tier_from_price")

# Input price per 1M tokens at or above which a model the catalog does not name is placed
# in a tier; below the last one it is a specialist.
_PRICE_BANDS: Final = ((FRONTIER, 1.00), (MID, 0.20), (MINI, 0.04))


def tier_from_price(input_usd_per_mtok: float) -> Tier:
    for tier, floor in _PRICE_BANDS:
        if input_usd_per_mtok >= floor:
            return tier
    return SPECIALIST


@dataclass(frozen=True, slots=True)
class ModelInfo:
    tier: str
    #: ``None`` when nothing can price the model.
    schedule: PriceSchedule | None
    #: ``True`` when the user's price override applies: it beats a cost found on the span.
    overridden: bool


class ModelResolver:
    """Thread-safe, bounded cache in front of the (slow) resolution of a model."""

    def __init__(
        self,
        *,
        tier_overrides: tuple[tuple[re.Pattern[str], str], ...] = (),
        price_overrides: tuple[tuple[re.Pattern[str], PriceSchedule], ...] = (),
        tier_prices: Mapping[str, PriceSchedule],
        use_genai_prices: bool = True,
        max_cached: int = 20_000,
        lookup: Callable[[str, str], PriceSchedule | None] = genai_prices_schedule,
    ) -> None:
        self._tier_overrides = tier_overrides
        self._price_overrides = price_overrides
        self._tier_prices = dict(tier_prices)
        self._lookup = lookup if use_genai_prices else None
        self._max_cached = max_cached
        self._cache: dict[tuple[str, str], ModelInfo] = {}
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: a new lock (a thread of the parent may have held it at the fork)."""
        self._lock = threading.Lock()

    def resolve(self, provider: str, model: str) -> ModelInfo:
        key = (provider, model)
        info = self._cache.get(key)
        if info is not None:
            return info
        info = self._resolve(provider, model)
        with self._lock:
            make_room(self._cache, self._max_cached)  # an evicted model resolves again
            self._cache[key] = info
        return info

    def _resolve(self, provider: str, model: str) -> ModelInfo:
        schedule: PriceSchedule | None = None
        overridden = False
        for pattern, price in self._price_overrides:
            if pattern.search(model) is not None:
                schedule, overridden = price, True
                break
        tier = self._override_tier(model) or (catalog_tier(model) if model else None)
        if schedule is None and self._lookup is not None and model:
            schedule = self._lookup(model, provider)
        if tier is None and schedule is not None:
            tier = tier_from_price(schedule.input_base_usd_per_mtok)
        if tier is None:
            tier = UNKNOWN_TIER
        if schedule is None:
            schedule = self._tier_prices.get(tier)
        return ModelInfo(tier=tier, schedule=schedule, overridden=overridden)

    def _override_tier(self, model: str) -> str | None:
        for pattern, tier in self._tier_overrides:
            if pattern.search(model) is not None:
                return tier
        return None

    def tier_schedule(self, tier: str) -> PriceSchedule | None:
        return self._tier_prices.get(tier)
