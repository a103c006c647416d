"""Price sources and their precedence: user override > span cost > genai-prices > tier default.

Every expected cost is worked out by hand in micro-dollars (tokens x USD per 1M tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from otel_overspend import Settings, step
from otel_overspend.config.settings import Price

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue


def call(
    p: Pipeline,
    model: str,
    tokens_in: int,
    tokens_out: int,
    *,
    provider: str | None = None,
    extra: dict[str, AttributeValue] | None = None,
) -> None:
    attrs: dict[str, AttributeValue] = {
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
    }
    if provider is not None:
        attrs["gen_ai.provider.name"] = provider
    attrs.update(extra or {})
    with p.tracer.start_as_current_span(f"chat {model}", attributes=attrs):
        pass


def only(p: Pipeline, metric: str) -> tuple[dict[str, str], float]:
    """The one series of ``metric``: its labels and value."""
    found = [
        (sample.labels, sample.value)
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == metric
    ]
    assert len(found) == 1, found
    return found[0]


def cost(p: Pipeline) -> float:
    return only(p, "overspend_llm_cost_usd_total")[1]


def tier(p: Pipeline) -> str:
    return only(p, "overspend_llm_calls_total")[0]["tier"]


def unpriced(p: Pipeline) -> dict[str, float]:
    """Unpriced calls by model (the counter is per series: summed over step, tier, provider)."""
    by_model: dict[str, float] = {}
    for family in p.registry.collect():
        for sample in family.samples:
            if sample.name == "overspend_unpriced_llm_calls_total" and sample.value:
                model = sample.labels["model"]
                by_model[model] = by_model.get(model, 0.0) + sample.value
    return by_model


def pipeline(**settings: object) -> Pipeline:
    return make_pipeline(Settings(serve_metrics=False, **settings))  # type: ignore[arg-type]


# -- (a) the user's override beats everything -----------------------------------------------------
def test_override_beats_span_cost_and_genai_prices() -> None:
    p = pipeline(model_prices={"gpt-4o": Price(input=1.0, output=2.0)})
    call(p, "gpt-4o", 1_000, 500, provider="openai", extra={"gen_ai.usage.cost": 9.99})
    # 1,000 x 1 + 500 x 2 = 2,000
    assert cost(p) == pytest.approx(0.002, abs=1e-12)
    assert unpriced(p) == {}


def test_override_with_a_cache_read_price() -> None:
    p = pipeline(model_prices={"re:^acme-": Price(input=1.0, output=2.0, cache_read=0.5)})
    call(p, "acme-chat", 1_000, 500, extra={"gen_ai.usage.cache_read.input_tokens": 400})
    # 600 uncached x 1 + 400 cached x 0.5 + 500 x 2 = 600 + 200 + 1,000 = 1,800
    assert cost(p) == pytest.approx(0.0018, abs=1e-12)


def test_override_without_a_cache_read_price_charges_cache_reads_as_input() -> None:
    p = pipeline(model_prices={"acme-*": Price(input=1.0, output=2.0)})
    call(p, "acme-chat", 1_000, 500, extra={"gen_ai.usage.cache_read.input_tokens": 400})
    # 1,000 x 1 + 500 x 2 = 2,000
    assert cost(p) == pytest.approx(0.002, abs=1e-12)


# -- (b) a cost on the span beats genai-prices ------------------------------------------------------
@pytest.mark.parametrize("key", ["gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.total_cost"])
def test_span_cost_beats_genai_prices(key: str) -> None:
    p = pipeline()
    call(p, "gpt-4o", 1_000, 500, provider="openai", extra={key: 0.123})
    assert cost(p) == pytest.approx(0.123, abs=1e-12)


def test_span_cost_alone_makes_a_priced_call() -> None:
    p = pipeline()
    with p.tracer.start_as_current_span(
        "chat", attributes={"gen_ai.request.model": "acme-unknown-model", "llm.cost.total": 0.25}
    ):
        pass
    assert cost(p) == pytest.approx(0.25, abs=1e-12)
    assert unpriced(p) == {}


def test_span_cost_can_be_ignored() -> None:
    p = pipeline(use_span_cost=False)
    call(p, "gpt-4o", 1_000, 500, provider="openai", extra={"gen_ai.usage.cost": 0.123})
    # genai-prices: 1,000 x 2.50 + 500 x 10 = 2,500 + 5,000 = 7,500
    assert cost(p) == pytest.approx(0.0075, abs=1e-12)


@pytest.mark.parametrize(
    "value",
    [-1.0, float("nan"), float("inf"), "0.5", True, 2_000_000.0, 10**30],
    ids=["negative", "nan", "inf", "string", "bool", "above-limit", "huge-int"],
)
def test_an_unusable_span_cost_is_ignored(value: AttributeValue) -> None:
    p = pipeline()
    call(p, "gpt-4o", 1_000, 500, provider="openai", extra={"gen_ai.usage.cost": value})
    # genai-prices: 7,500 as above; the span is still counted.
    assert cost(p) == pytest.approx(0.0075, abs=1e-12)
    assert p.sample("overspend_spans_dropped_total", {"reason": "internal_error"}) == 0


# -- (c) genai-prices' bundled data beats the tier default --------------------------------------------
def test_genai_prices_with_cache_reads() -> None:
    p = pipeline()
    call(p, "gpt-4o", 10_000, 1_000, provider="openai", extra={"gen_ai.usage.cache_read.input_tokens": 4_000})
    # 6,000 x 2.50 + 4,000 x 1.25 + 1,000 x 10 = 15,000 + 5,000 + 10,000 = 30,000
    assert cost(p) == pytest.approx(0.03, abs=1e-12)
    assert tier(p) == "frontier"


@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        ("gpt-4o", None, 0.0075),  # no provider attribute
        ("openai/gpt-4o", None, 0.0075),  # a provider prefix
        ("gpt-4o", "az.ai.openai", 0.0075),  # an OTel provider name mapped to genai-prices'
        # 1,000 x 0.15 + 500 x 0.60 = 150 + 300 = 450
        ("gpt-4o-mini-2024-07-18", "openai", 0.00045),
    ],
)
def test_genai_prices_names(model: str, provider: str | None, expected: float) -> None:
    p = pipeline()
    call(p, model, 1_000, 500, provider=provider)
    assert cost(p) == pytest.approx(expected, abs=1e-12)


def test_long_context_prices_apply_to_every_token_of_the_call() -> None:
    p = pipeline()
    with step("long"):
        call(p, "claude-sonnet-4-5", 250_000, 1_000, provider="anthropic")
    with step("short"):
        call(p, "claude-sonnet-4-5", 200_000, 1_000, provider="anthropic")
    base = {"model": "claude-sonnet-4-5", "tier": "frontier", "provider": "anthropic"}
    # Above 200k input tokens: 250,000 x 6 + 1,000 x 22.50 = 1,500,000 + 22,500 = 1,522,500
    long_cost = p.sample("overspend_llm_cost_usd_total", {**base, "step": "long"})
    assert long_cost == pytest.approx(1.5225, abs=1e-12)
    # At 200k, not above: 200,000 x 3 + 1,000 x 15 = 600,000 + 15,000 = 615,000
    short_cost = p.sample("overspend_llm_cost_usd_total", {**base, "step": "short"})
    assert short_cost == pytest.approx(0.615, abs=1e-12)


def test_genai_prices_can_be_switched_off() -> None:
    p = pipeline(use_genai_prices=False)
    call(p, "gpt-4o", 1_000, 500, provider="openai")
    # the frontier default: 1,000 x 3 + 500 x 15 = 3,000 + 7,500 = 10,500
    assert cost(p) == pytest.approx(0.0105, abs=1e-12)


# -- (d) the tier default ---------------------------------------------------------------------------
def test_tier_default_for_a_catalog_model_genai_prices_does_not_know() -> None:
    p = pipeline()
    call(p, "zerank-2", 10_000, 1_000)
    # specialist $0.02 / $0.02: 11,000 x 0.02 = 220
    assert cost(p) == pytest.approx(0.00022, abs=1e-12)
    assert tier(p) == "specialist"


def test_tier_prices_setting() -> None:
    p = pipeline(tier_prices={"specialist": Price(input=0.1, output=0.3)})
    call(p, "zerank-2", 10_000, 1_000)
    # 10,000 x 0.1 + 1,000 x 0.3 = 1,000 + 300 = 1,300
    assert cost(p) == pytest.approx(0.0013, abs=1e-12)


# -- nothing can price it ---------------------------------------------------------------------------
def test_an_unpriceable_model_is_visible_and_adds_no_cost() -> None:
    p = pipeline()
    call(p, "acme-unknown-model", 1_000, 200)
    call(p, "acme-unknown-model", 3_000, 100)
    labels = {"step": "unattributed", "model": "acme-unknown-model", "tier": "unknown", "provider": "unknown"}
    assert unpriced(p) == {"acme-unknown-model": 2}
    assert p.sample("overspend_llm_calls_total", labels) == 2
    assert p.sample("overspend_llm_tokens_total", {**labels, "kind": "input"}) == 4_000
    assert p.sample("overspend_llm_tokens_total", {**labels, "kind": "output"}) == 300
    assert p.sample("overspend_llm_cost_usd_total", labels) == 0
    assert p.sample("overspend_llm_specialized_cost_usd_total", labels) == 0


def test_a_call_without_a_model_is_unpriced() -> None:
    p = pipeline()
    with p.tracer.start_as_current_span("chat", attributes={"gen_ai.usage.input_tokens": 10}):
        pass
    assert unpriced(p) == {"unknown": 1}
    assert tier(p) == "unknown"


# -- price bands: a model the catalog does not name, priced by genai-prices --------------------------
@pytest.mark.parametrize(
    ("model", "expected_tier", "expected_cost"),
    [
        # $3.00 in (>= $1.00): 1,000 x 3 + 1,000 x 15 = 18,000
        ("kimi-k3", "frontier", 0.018),
        # $0.20 in (exactly the mid floor): 1,000 x 0.20 + 1,000 x 2.00 = 2,200
        ("moonshot-v1-8k", "mid", 0.0022),
        # $0.15 in (>= $0.04): 1,000 x 0.15 + 1,000 x 0.15 = 300
        ("pixtral-12b", "mini", 0.0003),
        # $0.014 in (< $0.04): 1,000 x 0.014 + 1,000 x 0.014 = 28
        ("GLM-4-FlashX-250414", "specialist", 0.000028),
    ],
)
def test_price_bands(model: str, expected_tier: str, expected_cost: float) -> None:
    p = pipeline()
    call(p, model, 1_000, 1_000)
    assert tier(p) == expected_tier
    assert cost(p) == pytest.approx(expected_cost, abs=1e-12)


def test_price_band_models_are_unknown_without_genai_prices() -> None:
    p = pipeline(use_genai_prices=False)
    call(p, "kimi-k3", 1_000, 1_000)
    assert tier(p) == "unknown"
    assert unpriced(p) == {"kimi-k3": 1}


# -- the specialized counterfactual -------------------------------------------------------------------
def test_specialized_cost_by_step() -> None:
    p = pipeline(use_genai_prices=False, specialize={"generate": "unchanged", "rewrite": "mini"})
    for name in ("generate", "rerank", "rewrite"):
        with step(name):
            call(p, "gpt-4o", 10_000, 1_000)
    call(p, "gpt-4o", 10_000, 1_000)  # unattributed
    base = {"model": "gpt-4o", "tier": "frontier", "provider": "unknown"}

    def specialized(name: str) -> float | None:
        return p.sample("overspend_llm_specialized_cost_usd_total", {**base, "step": name})

    # actual: 10,000 x 3 + 1,000 x 15 = 45,000
    assert specialized("generate") == pytest.approx(0.045, abs=1e-12)  # unchanged
    assert specialized("unattributed") == pytest.approx(0.045, abs=1e-12)  # nothing known: unchanged
    # specialist by default: 11,000 x 0.02 = 220
    assert specialized("rerank") == pytest.approx(0.00022, abs=1e-12)
    # mini: 10,000 x 0.05 + 1,000 x 0.20 = 500 + 200 = 700
    assert specialized("rewrite") == pytest.approx(0.0007, abs=1e-12)


def test_specialized_cost_is_never_above_the_actual_cost() -> None:
    p = pipeline(specialize_default="frontier")
    with step("rerank"):
        call(p, "zerank-2", 10_000, 1_000)
    labels = {"step": "rerank", "model": "zerank-2", "tier": "specialist", "provider": "unknown"}
    # actual 220; at frontier it would be 45,000: the counterfactual keeps 220.
    assert p.sample("overspend_llm_specialized_cost_usd_total", labels) == pytest.approx(0.00022, abs=1e-12)
