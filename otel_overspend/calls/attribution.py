"""From one LLM span's usage and step to a priced, labelled :class:`Call`.

Cost, first match wins: the user's price override for the model; a cost the
instrumentation already put on the span; the model's schedule from genai-prices; the
tier's default price. A call none of these can price has ``cost_usd is None`` and is
counted as unpriced, never as $0.

The specialized cost is what the same units (tokens, cache reads and writes, searches)
would cost if the call's step ran at the tier the specialization map gives it — never more
than the call costs now. A call priced only by a cost on its span has no units to reprice:
its specialized cost is unknown (``None``), and the signals leave it out of the headroom.

Everything that depends only on (step, provider, model) — labels, tier, schedules — is
resolved once per series and cached, so a call costs a dict lookup and a few multiplies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final, NamedTuple

from otel_overspend.base.bounded import make_room
from otel_overspend.calls.catalog import FRONTIER
from otel_overspend.calls.conventions import UNNAMED
from otel_overspend.steps import GENERATE, UNATTRIBUTED

if TYPE_CHECKING:
    from collections.abc import Mapping

    from otel_overspend.base.labels import LabelCap
    from otel_overspend.calls.conventions import Usage
    from otel_overspend.calls.models import ModelResolver
    from otel_overspend.calls.pricing import PriceSchedule

__all__ = ("Attributor", "Call")

Key = tuple[str, str, str, str]

#: Steps the signals read by name: the step cap never folds them into ``other`` (else
#: generate spend would count as specialist-eligible).
_UNCAPPED_STEPS: Final = frozenset({GENERATE, UNATTRIBUTED})


class Call(NamedTuple):
    """One priced LLM call, with its (capped) label values."""

    step: str
    model: str
    tier: str
    provider: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    #: ``None``: nothing could price the call.
    cost_usd: float | None
    #: What the call would cost at its step's specialization target; ``None`` when the
    #: call is unpriced, or priced only by a cost on its span (no usage to reprice).
    specialized_cost_usd: float | None
    #: (step, model, tier, provider): the labels of its series.
    key: Key
    cache_write_tokens: int = 0
    #: Billed searches of a rerank call.
    searches: int = 0
    #: ``False`` for an LLM call whose span reported nothing billed (no usage, no cost):
    #: counted apart, as ``overspend_llm_calls_without_usage_total``.
    billed: bool = True

    @property
    def tokens(self) -> int:
        """Tokens of the call: input (cache reads and writes included) plus output
        (reasoning included)."""
        return self.input_tokens + self.output_tokens


#: Builds a :class:`Call` from one tuple in C (the generated ``__new__`` runs Python code).
_new_call: Final = partial(tuple.__new__, Call)


@dataclass(frozen=True, slots=True)
class _Series:
    key: Key
    schedule: PriceSchedule | None
    overridden: bool
    #: The specialization target's schedule; ``None`` keeps the call's own cost.
    target: PriceSchedule | None
    #: The caps that folded one of this series' labels into ``other``.
    folded: tuple[LabelCap, ...]


class Attributor:
    """Prices and labels calls. Built once from settings; :meth:`attribute` never raises on
    valid :class:`Usage`."""

    __slots__ = (
        "_frontier",
        "_lock",
        "_max_series",
        "_model_cap",
        "_provider_cap",
        "_resolver",
        "_series",
        "_specialize",
        "_step_cap",
        "_use_span_cost",
    )

    def __init__(
        self,
        *,
        resolver: ModelResolver,
        specialize: Mapping[str, str | None],
        use_span_cost: bool,
        model_cap: LabelCap,
        step_cap: LabelCap,
        provider_cap: LabelCap,
        max_series: int = 20_000,
    ) -> None:
        self._resolver = resolver
        # step -> target schedule (None: unchanged); "*" is the default target.
        self._specialize: dict[str, PriceSchedule | None] = {
            step: None if tier is None else resolver.tier_schedule(tier) for step, tier in specialize.items()
        }
        # Nothing is known of unattributed work: its counterfactual is its actual cost.
        self._specialize[UNATTRIBUTED] = None
        self._frontier = resolver.tier_schedule(FRONTIER)
        self._use_span_cost = use_span_cost
        self._model_cap = model_cap
        self._step_cap = step_cap
        self._provider_cap = provider_cap
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._max_series = max_series
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a forked child: new locks (a thread of the parent may have held one at the
        fork, and it does not exist in the child to release it). The caches stay valid."""
        self._lock = threading.Lock()
        self._resolver.after_fork()

    def _resolve(self, step: str, provider: str, model: str) -> _Series:
        info = self._resolver.resolve(provider, model)
        target = self._specialize[step] if step in self._specialize else self._specialize["*"]
        raw = (step, model or UNNAMED, provider)
        caps = (self._step_cap, self._model_cap, self._provider_cap)
        step_label, model_label, provider_label = (
            value if value in _UNCAPPED_STEPS and cap is self._step_cap else cap(value)
            for cap, value in zip(caps, raw, strict=True)
        )
        folded = tuple(
            cap
            for cap, value, label in zip(caps, raw, (step_label, model_label, provider_label), strict=True)
            if label != value
        )
        return _Series(
            key=(step_label, model_label, info.tier, provider_label),
            schedule=info.schedule,
            overridden=info.overridden,
            target=target,
            folded=folded,
        )

    def _series_for(self, step: str, provider: str, model: str) -> _Series:
        cache_key = (step, provider, model)
        series = self._series.get(cache_key)
        if series is None:
            series = self._resolve(step, provider, model)
            with self._lock:
                make_room(self._series, self._max_series)
                self._series[cache_key] = series
        return series

    def at_frontier_usd(self, call: Call) -> float | None:
        """What ``call``'s units (tokens, cache reads and writes, searches) cost at the
        frontier tier's price, as the specialized cost reprices at its target; ``None``
        without units or a frontier price. Cache writes are priced at the 5-minute rate."""
        if self._frontier is None or not (call.input_tokens or call.output_tokens or call.searches):
            return None
        return self._frontier.cost_usd(
            call.input_tokens,
            call.output_tokens,
            call.cache_read_tokens,
            call.cache_write_tokens,
            0,
            call.searches,
        )

    def attribute(self, usage: Usage, step: str) -> Call:
        (
            model,
            provider,
            tokens_in,
            tokens_out,
            cached,
            reasoning,
            span_cost,
            _,
            _,
            written,
            written_1h,
            searches,
            _,
            _,
        ) = usage
        series = self._series.get((step, provider, model))
        if series is None:
            series = self._series_for(step, provider, model)
        for cap in series.folded:
            cap.count_overflow()
        schedule = series.schedule
        # Only units are priced: searches alone with no price per search, or no units at
        # all, are unpriced, never $0.
        priceable = schedule is not None and bool(
            tokens_in or tokens_out or (searches and schedule.prices_searches)
        )
        cost: float | None
        if series.overridden and priceable:
            cost = schedule.cost_usd(tokens_in, tokens_out, cached, written, written_1h, searches)  # type: ignore[union-attr]
        elif span_cost is not None and self._use_span_cost:
            cost = span_cost
        elif priceable:
            cost = schedule.cost_usd(tokens_in, tokens_out, cached, written, written_1h, searches)  # type: ignore[union-attr]
        else:
            cost = None
        specialized = cost
        target = series.target
        if cost is not None and target is not None:
            if tokens_in or tokens_out or searches:
                specialized = min(
                    cost, target.cost_usd(tokens_in, tokens_out, cached, written, written_1h, searches)
                )
            else:
                specialized = None  # priced by its span alone: nothing to reprice
        key = series.key
        return _new_call(
            (
                key[0],
                key[1],
                key[2],
                key[3],
                tokens_in,
                tokens_out,
                cached,
                reasoning,
                cost,
                specialized,
                key,
                written,
                searches,
                True,
            )
        )
