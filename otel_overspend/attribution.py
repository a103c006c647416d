"""From one LLM span's usage and step to a priced, labelled :class:`Call`.

Cost, first match wins: the user's price override for the model; a cost the
instrumentation already put on the span; the model's schedule from genai-prices; the
tier's default price. A call none of these can price has ``cost_usd is None`` and is
counted as unpriced, never as $0.

The specialized cost is what the same tokens would cost if the call's step ran at the
tier the specialization map gives it — never more than the call costs now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_overspend.steps import UNATTRIBUTED

if TYPE_CHECKING:
    from collections.abc import Mapping

    from otel_overspend.conventions import Usage
    from otel_overspend.labels import LabelCap
    from otel_overspend.models import ModelResolver
    from otel_overspend.pricing import PriceSchedule

__all__ = ("Attributor", "Call")


@dataclass(frozen=True, slots=True)
class Call:
    step: str
    model: str
    tier: str
    provider: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    specialized_cost_usd: float | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.step, self.model, self.tier, self.provider)

    @property
    def tokens(self) -> int:
        """Tokens of the call: input (cache reads included) plus output (reasoning included)."""
        return self.input_tokens + self.output_tokens


class Attributor:
    """Prices and labels calls. Built once from settings; :meth:`attribute` never raises on
    valid :class:`Usage`."""

    __slots__ = ("_model_cap", "_provider_cap", "_resolver", "_specialize", "_step_cap", "_use_span_cost")

    def __init__(
        self,
        *,
        resolver: ModelResolver,
        specialize: Mapping[str, str | None],
        use_span_cost: bool,
        model_cap: LabelCap,
        step_cap: LabelCap,
        provider_cap: LabelCap,
    ) -> None:
        self._resolver = resolver
        # step -> target schedule (None: unchanged); "*" is the default target.
        self._specialize: dict[str, PriceSchedule | None] = {
            step: None if tier is None else resolver.tier_schedule(tier) for step, tier in specialize.items()
        }
        self._specialize[UNATTRIBUTED] = None
        self._use_span_cost = use_span_cost
        self._model_cap = model_cap
        self._step_cap = step_cap
        self._provider_cap = provider_cap

    def attribute(self, usage: Usage, step: str) -> Call:
        info = self._resolver.resolve(usage.provider, usage.model)
        schedule = info.schedule
        tokens_in, tokens_out, cached = usage.input_tokens, usage.output_tokens, usage.cache_read_tokens
        cost: float | None
        if info.overridden and schedule is not None:
            cost = schedule.cost_usd(tokens_in, tokens_out, cached)
        elif self._use_span_cost and usage.span_cost_usd is not None:
            cost = usage.span_cost_usd
        elif schedule is not None:
            cost = schedule.cost_usd(tokens_in, tokens_out, cached)
        else:
            cost = None
        specialized = cost
        if cost is not None:
            target = self._specialize[step] if step in self._specialize else self._specialize["*"]
            if target is not None:
                specialized = min(cost, target.cost_usd(tokens_in, tokens_out, cached))
        return Call(
            step=self._step_cap(step),
            model=self._model_cap(usage.model or "unknown"),
            tier=info.tier,
            provider=self._provider_cap(usage.provider),
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cache_read_tokens=cached,
            reasoning_tokens=usage.reasoning_tokens,
            cost_usd=cost,
            specialized_cost_usd=specialized,
        )
