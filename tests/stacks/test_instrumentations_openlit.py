"""OpenLIT: its own cost on the span, and the two ways it departs from the conventions.

Price precedence is user override > span cost > genai-prices > tier default. OpenLIT puts
its cost on the span (``gen_ai.usage.cost``, from its price list, here
instrumentation_support/openlit_prices.json at twice genai-prices' rates), so it beats
genai-prices and loses to the override. OpenLIT also writes a cost of 0 for a model its
price list lacks (for every model when it could not download the list: offline, every
call), and reports Anthropic's input tokens net of cache reads and writes; otel_overspend
reads a 0 from OpenLIT as no price and makes those input tokens gross
(otel_overspend/calls/conventions.py). The first tests read the real OpenLIT run (its own
virtualenv, .venv-openlit); the last ones need no OpenLIT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from instrumentation_support import runs
from instrumentation_support.expected import OPENLIT_COST_USD

from otel_overspend import Settings, step
from otel_overspend.calls.conventions import Usage, read_usage

from conftest import make_pipeline

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue


pytestmark = [pytest.mark.e2e]
RUNS_USED = ("openlit",)


@pytest.fixture(scope="module", autouse=True)
def _start_runs(request: pytest.FixtureRequest) -> None:
    runs.start_for(request.session)


def span_attributes(case: str) -> dict[str, Any]:
    (span,) = runs.llm_spans("openlit", case)
    attributes: dict[str, Any] = span["attributes"]
    return attributes


@pytest.mark.parametrize("case", ["chat", "messages"])
def test_openlit_cost_beats_genai_prices_and_the_user_override_beats_it(case: str) -> None:
    assert span_attributes(case)["gen_ai.usage.cost"] == pytest.approx(OPENLIT_COST_USD[case])
    # genai-prices would say 0.0045 (chat) and 0.0105 (messages): half of OpenLIT's price.
    assert runs.counted("openlit", case).cost_usd == pytest.approx(OPENLIT_COST_USD[case], rel=1e-9)
    # The overrides: 1,000 x 1 + 200 x 4 = 1,800 and 2,000 x 2 + 300 x 8 = 6,400 micro-USD.
    override = {"chat": 0.0018, "messages": 0.0064}[case]
    assert runs.counted("openlit", case, "override").cost_usd == pytest.approx(override, rel=1e-9)


def test_openlit_zero_cost_for_a_model_it_cannot_price_is_no_price() -> None:
    assert span_attributes("embeddings")["gen_ai.usage.cost"] == 0
    got = runs.counted("openlit", "embeddings")
    assert got.cost_usd == pytest.approx(0.00001, rel=1e-9)  # genai-prices: 500 x 0.02
    assert got.unpriced == {}


@pytest.mark.parametrize(("case", "writes"), [("messages_cached", 0), ("messages_cache_write_5m", 500)])
def test_openlit_anthropic_input_tokens_are_made_gross(case: str, writes: int) -> None:
    attributes = span_attributes(case)
    assert attributes["gen_ai.usage.input_tokens"] == 1200  # net of the 800 cache reads and the writes
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 800
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == writes
    got = runs.counted("openlit", case)
    assert (got.input_tokens, got.cache_read_tokens) == (2000 + writes, 800)


# -- the reading rules, on OpenLIT's attributes (no OpenLIT needed) --------------------------------
def openlit_anthropic(extra: dict[str, AttributeValue] | None = None) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {
        "telemetry.sdk.name": "openlit",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 100,
        "gen_ai.usage.cache_read.input_tokens": 800,
        "gen_ai.usage.cache_creation.input_tokens": 50,
        "gen_ai.usage.cost": 0.01068,
    }
    return {**attrs, **(extra or {})}


def usage(attrs: dict[str, AttributeValue]) -> Usage:
    found = read_usage(attrs)
    assert isinstance(found, Usage), found
    return found


def test_openlit_anthropic_input_is_made_gross_with_cache_reads_and_writes() -> None:
    got = usage(openlit_anthropic())
    assert (got.input_tokens, got.cache_read_tokens, got.span_cost_usd) == (2050, 800, 0.01068)


@pytest.mark.parametrize("sdk", ["opentelemetry", None])
def test_other_instrumentations_anthropic_input_is_already_gross(sdk: str | None) -> None:
    attrs = openlit_anthropic({"gen_ai.usage.input_tokens": 2000})
    if sdk is None:
        del attrs["telemetry.sdk.name"]
    else:
        attrs["telemetry.sdk.name"] = sdk
    assert usage(attrs).input_tokens == 2000


def test_openlit_openai_input_already_includes_cache_reads() -> None:
    attrs = openlit_anthropic({"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 1000})
    assert usage(attrs).input_tokens == 1000


def test_openlit_malformed_cache_writes_make_the_span_invalid_as_any_token_count() -> None:
    # As a malformed cache read or input count: a counted drop, never a guess.
    attrs = openlit_anthropic({"gen_ai.usage.cache_creation.input_tokens": "many"})
    assert read_usage(attrs) == "invalid_tokens"


def test_a_zero_cost_is_no_price_from_openlit_only() -> None:
    assert usage(openlit_anthropic({"gen_ai.usage.cost": 0.0})).span_cost_usd is None
    assert usage(openlit_anthropic({"gen_ai.usage.cost": 0})).span_cost_usd is None
    others = openlit_anthropic({"gen_ai.usage.cost": 0.0})
    del others["telemetry.sdk.name"]
    assert usage(others).span_cost_usd == 0.0


def test_an_openlit_span_with_only_a_zero_cost_is_not_an_llm_call() -> None:
    attrs: dict[str, AttributeValue] = {"telemetry.sdk.name": "openlit", "gen_ai.usage.cost": 0.0}
    assert read_usage(attrs) is None


def test_openlit_zero_cost_calls_are_priced_elsewhere_or_counted_unpriced() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    for model in ("gpt-4o", "acme-unknown-model"):
        attrs = {
            "telemetry.sdk.name": "openlit",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.usage.cost": 0.0,
        }
        with step("rerank"), p.tracer.start_as_current_span(f"chat {model}", attributes=attrs):
            pass
    labels = {"step": "rerank", "model": "gpt-4o", "tier": "frontier", "provider": "openai"}
    # genai-prices: 1,000 x 2.50 + 200 x 10 = 4,500 micro-USD, not $0.
    assert p.sample("overspend_llm_cost_usd_total", labels) == pytest.approx(0.0045, rel=1e-9)
    assert p.total("overspend_unpriced_llm_calls_total", model="acme-unknown-model") == 1.0
