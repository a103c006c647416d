"""Turn validated :class:`Settings` into the plain, fast objects the span path uses.

The live processor and the offline report both build their pipeline here, so they share
one attribution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_overspend.accounting.ledger import Ledger
from otel_overspend.base.labels import LabelCap
from otel_overspend.base.patterns import compile_pattern
from otel_overspend.calls.attribution import Attributor
from otel_overspend.calls.catalog import UNCHANGED
from otel_overspend.calls.framework_steps import FrameworkSteps
from otel_overspend.calls.models import ModelResolver
from otel_overspend.calls.pricing import PriceSchedule
from otel_overspend.calls.step_rules import DEFAULT_RULES, Rule, StepRules
from otel_overspend.thresholds import BANDS, Band

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.config.settings import Price, Settings

__all__ = ("Components",)


def _schedule(price: Price, source: str) -> PriceSchedule:
    return PriceSchedule.flat(
        price.input,
        price.output,
        price.cache_read,
        cache_write_usd_per_mtok=price.cache_write,
        cache_write_1h_usd_per_mtok=price.cache_write_1h,
        per_request_usd=price.per_request,
        per_search_usd=price.per_search,
        source=source,
    )


def _rules(settings: Settings) -> StepRules:
    import re  # noqa: PLC0415

    user = tuple(
        Rule(
            step=r.step,
            span_name=None if r.span_name is None else re.compile(r.span_name),
            attribute=r.attribute,
            equals=r.equals,
            matches=None if r.matches is None else re.compile(r.matches),
        )
        for r in settings.step_rules
    )
    framework = FrameworkSteps(aliases=settings.step_aliases, enabled=settings.framework_steps)
    return StepRules(user + (DEFAULT_RULES if settings.default_step_rules else ()), framework=framework)


@dataclass(frozen=True, slots=True)
class Components:
    settings: Settings
    rules: StepRules
    attributor: Attributor
    ledger: Ledger
    caps: tuple[LabelCap, ...]
    bands: dict[str, Band]

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> Components:
        resolver = ModelResolver(
            tier_overrides=tuple(
                (compile_pattern(p, field="model_tiers"), tier) for p, tier in settings.model_tiers.items()
            ),
            price_overrides=tuple(
                (compile_pattern(p, field="model_prices"), _schedule(price, "override"))
                for p, price in settings.model_prices.items()
            ),
            tier_prices={
                tier: _schedule(price, "tier-default") for tier, price in settings.tier_prices.items()
            },
            use_genai_prices=settings.use_genai_prices,
        )
        specialize: dict[str, str | None] = {
            step: None if target == UNCHANGED else target for step, target in settings.specialize.items()
        }
        default = settings.specialize_default
        specialize["*"] = None if default == UNCHANGED else default
        caps = (
            LabelCap("step", settings.max_steps),
            LabelCap("model", settings.max_models),
            LabelCap("provider", settings.max_providers),
        )
        attributor = Attributor(
            resolver=resolver,
            specialize=specialize,
            use_span_cost=settings.use_span_cost,
            step_cap=caps[0],
            model_cap=caps[1],
            provider_cap=caps[2],
        )
        ledger = Ledger(window_seconds=settings.window_seconds, clock=clock)
        bands = {
            name: Band(band.suspect, band.confirmed, BANDS[name].higher_is_worse)
            for name, band in settings.bands.items()
        }
        return cls(
            settings=settings,
            rules=_rules(settings),
            attributor=attributor,
            ledger=ledger,
            caps=caps,
            bands=bands,
        )
