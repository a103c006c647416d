"""Workloads with explicit span times for the streaming-diagnostics tests.

Prices are pinned here (USD per 1M tokens), so every expected number in the tests can be
worked out by hand from the table below and the token counts the tests write down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context

from otel_overspend import Settings, step
from otel_overspend.config.settings import Price

from conftest import FakeClock, Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from opentelemetry.trace import Span, Tracer

    from otel_overspend.calls.catalog import Tier

#: FakeClock's default start: a whole multiple of every bucket width of the default windows.
T0 = 1_800_000_000.0
WINDOWS = ("5m", "1h", "1d", "7d")
PROVIDER = "acme"
FRONTIER = "acme-frontier"  # $3 in / $15 out
MINI = "acme-mini"  # $0.05 in / $0.20 out
RERANKER = "zerank-2"  # $0.02 in / $0.02 out
UNKNOWN = "mystery-model"  # matches no tier pattern and no catalog rule: unpriced

TIER_PRICES: dict[Tier, Price] = {
    "frontier": Price(input=3.0, output=15.0),
    "mid": Price(input=0.30, output=1.20),
    "mini": Price(input=0.05, output=0.20),
    "specialist": Price(input=0.02, output=0.02),
}
MODEL_TIERS: dict[str, Tier] = {MINI: "mini", "zerank-*": "specialist", "acme-*": "frontier"}


def settings(**overrides: Any) -> Settings:
    """Settings with the pinned prices and tiers, no genai-prices, no HTTP server."""
    values: dict[str, Any] = {
        "model_tiers": MODEL_TIERS,
        "tier_prices": TIER_PRICES,
        "use_genai_prices": False,
        "serve_metrics": False,
    }
    values.update(overrides)
    return Settings(**values)


def pipeline(clock: FakeClock, **overrides: Any) -> Pipeline:
    return make_pipeline(settings(**overrides), clock=clock)


def ns(t_s: float) -> int:
    return round(t_s * 1e9)


@dataclass(frozen=True, slots=True)
class Call:
    """One LLM span. Times default to the enclosing request's start and end."""

    step: str | None
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    start_s: float | None = None
    end_s: float | None = None


def _attributes(call: Call) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": call.model,
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
    }
    if call.cost_usd is not None:
        attrs["gen_ai.usage.cost"] = call.cost_usd
    return attrs


def start_root(tracer: Tracer, start_s: float) -> Span:
    return tracer.start_span("POST /answer", context=Context(), start_time=ns(start_s))


def llm_span(tracer: Tracer, call: Call, *, parent: Span | None, start_s: float, end_s: float) -> None:
    """Start and end one LLM span (a root of its own when ``parent`` is ``None``)."""
    context = Context() if parent is None else trace.set_span_in_context(parent)
    begin = start_s if call.start_s is None else call.start_s
    end = end_s if call.end_s is None else call.end_s
    if call.step is None:
        span = tracer.start_span("llm", context=context, attributes=_attributes(call), start_time=ns(begin))
    else:
        with step(call.step):
            span = tracer.start_span(
                f"{call.step} llm", context=context, attributes=_attributes(call), start_time=ns(begin)
            )
    span.end(end_time=ns(end))


def request(tracer: Tracer, calls: Iterable[Call], *, start_s: float, end_s: float) -> None:
    """One request: a root span from ``start_s`` to ``end_s`` with ``calls`` as children."""
    root = start_root(tracer, start_s)
    for call in calls:
        llm_span(tracer, call, parent=root, start_s=start_s, end_s=end_s)
    root.end(end_time=ns(end_s))


def window_sample(p: Pipeline, name: str, window: str, **labels: str) -> float | None:
    return p.sample(name, {"window": window, **labels})


def samples_with(p: Pipeline, label: str, value: str) -> list[tuple[str, Mapping[str, str], float]]:
    """Every sample in the registry that carries ``label=value``."""
    return [
        (s.name, s.labels, s.value)
        for family in p.registry.collect()
        for s in family.samples
        if s.labels.get(label) == value
    ]
