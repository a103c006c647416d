"""The four-step RAG request fixture, end to end through a real OpenTelemetry pipeline.

One request = rewrite 200/50, rerank 12000/200, generate 3500/400, faithfulness 4000/100
tokens (in/out), all on one frontier model priced $3 in / $15 out per 1M tokens. Every
expected number below is worked out by hand in the comments, never by the library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from otel_overspend import Settings, step

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator

MODEL = "acme-frontier-1"
PROVIDER = "acme"
REQUESTS = 1000
# (step, input tokens, output tokens) of each call of one request.
SEED = (
    ("rewrite", 200, 50),
    ("rerank", 12_000, 200),
    ("generate", 3_500, 400),
    ("faithfulness", 4_000, 100),
)
# Per-request cost in micro-dollars (tokens x USD per 1M tokens):
#   rewrite       200 x 3 +    50 x 15 =    600 +  750 =  1,350
#   rerank     12,000 x 3 +   200 x 15 = 36,000 + 3,000 = 39,000
#   generate    3,500 x 3 +   400 x 15 = 10,500 + 6,000 = 16,500
#   faithfulness 4,000 x 3 +  100 x 15 = 12,000 + 1,500 = 13,500
#   total                                                 70,350  -> $0.07035
COST_PER_REQUEST_USD = 0.07035
STEP_COST_USD = {"rewrite": 0.00135, "rerank": 0.039, "generate": 0.0165, "faithfulness": 0.0135}
# Specialized (every step but generate at the specialist $0.02/$0.02 per 1M):
#   rewrite       (200 + 50) x 0.02    =      5
#   rerank    (12,000 + 200) x 0.02    =    244
#   generate   unchanged               = 16,500
#   faithfulness (4,000 + 100) x 0.02  =     82
#   total                                16,831  -> $0.016831
SPECIALIZED_PER_REQUEST_USD = 0.016831
STEP_SPECIALIZED_USD = {"rewrite": 0.000005, "rerank": 0.000244, "generate": 0.0165, "faithfulness": 0.000082}


def _labels(name: str) -> dict[str, str]:
    return {"step": name, "model": MODEL, "tier": "frontier", "provider": PROVIDER}


def _value(p: Pipeline, metric: str, labels: dict[str, str]) -> float:
    value = p.sample(metric, labels)
    assert value is not None, f"no sample {metric}{labels}"
    return value


@pytest.fixture(scope="module")
def seeded() -> Iterator[Pipeline]:
    p = make_pipeline(
        Settings(serve_metrics=False, model_tiers={"acme-frontier-*": "frontier"}, use_genai_prices=False)
    )
    for _ in range(REQUESTS):
        with p.tracer.start_as_current_span("POST /answer"):
            for name, tokens_in, tokens_out in SEED:
                with (
                    step(name),
                    p.tracer.start_as_current_span(
                        f"chat {MODEL}",
                        attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.provider.name": PROVIDER,
                            "gen_ai.request.model": MODEL,
                            "gen_ai.usage.input_tokens": tokens_in,
                            "gen_ai.usage.output_tokens": tokens_out,
                        },
                    ),
                ):
                    pass
    yield p
    p.provider.shutdown()


def _total_cost(p: Pipeline, metric: str = "overspend_llm_cost_usd_total") -> float:
    return sum(_value(p, metric, _labels(name)) for name, _, _ in SEED)


def test_cost_per_request_is_seven_cents(seeded: Pipeline) -> None:
    assert _total_cost(seeded) / REQUESTS == pytest.approx(COST_PER_REQUEST_USD, abs=1e-9)


@pytest.mark.parametrize("name", [name for name, _, _ in SEED])
def test_cost_of_each_step(seeded: Pipeline, name: str) -> None:
    cost = _value(seeded, "overspend_llm_cost_usd_total", _labels(name))
    assert cost / REQUESTS == pytest.approx(STEP_COST_USD[name], abs=1e-12)


@pytest.mark.parametrize(
    ("name", "share_percent"),
    [
        ("rerank", 55.44),  # 39,000 / 70,350
        ("generate", 23.45),  # 16,500 / 70,350
        ("faithfulness", 19.19),  # 13,500 / 70,350
        ("rewrite", 1.92),  # 1,350 / 70,350
    ],
)
def test_step_shares(seeded: Pipeline, name: str, share_percent: float) -> None:
    share = _value(seeded, "overspend_llm_cost_usd_total", _labels(name)) / _total_cost(seeded)
    assert abs(share * 100 - share_percent) < 0.01


def test_specialist_eligible_fraction(seeded: Pipeline) -> None:
    # Everything but generate: (1,350 + 39,000 + 13,500) / 70,350 = 0.76546...
    generate = _value(seeded, "overspend_llm_cost_usd_total", _labels("generate"))
    assert abs(1 - generate / _total_cost(seeded) - 0.7655) < 0.0001


def test_specialized_cost_per_request(seeded: Pipeline) -> None:
    specialized = _total_cost(seeded, "overspend_llm_specialized_cost_usd_total") / REQUESTS
    assert specialized == pytest.approx(SPECIALIZED_PER_REQUEST_USD, abs=1e-9)
    # 1 - 16,831 / 70,350 = 0.76075 -> a 76.08 % reduction.
    assert abs((1 - specialized / COST_PER_REQUEST_USD) * 100 - 76.08) < 0.01


@pytest.mark.parametrize("name", [name for name, _, _ in SEED])
def test_specialized_cost_of_each_step(seeded: Pipeline, name: str) -> None:
    specialized = _value(seeded, "overspend_llm_specialized_cost_usd_total", _labels(name))
    assert specialized / REQUESTS == pytest.approx(STEP_SPECIALIZED_USD[name], abs=1e-12)


@pytest.mark.parametrize(("name", "tokens_in", "tokens_out"), SEED)
def test_calls_and_tokens_per_step(seeded: Pipeline, name: str, tokens_in: int, tokens_out: int) -> None:
    labels = _labels(name)
    assert _value(seeded, "overspend_llm_calls_total", labels) == REQUESTS
    tokens = "overspend_llm_tokens_total"
    assert _value(seeded, tokens, {**labels, "kind": "input"}) == tokens_in * REQUESTS
    assert _value(seeded, tokens, {**labels, "kind": "output"}) == tokens_out * REQUESTS
    assert _value(seeded, tokens, {**labels, "kind": "cache_read"}) == 0
    assert _value(seeded, tokens, {**labels, "kind": "reasoning"}) == 0


def test_nothing_is_unattributed_unpriced_or_dropped(seeded: Pipeline) -> None:
    names = {
        sample.name
        for metric in seeded.registry.collect()
        for sample in metric.samples
        if sample.name
        in {
            "overspend_unpriced_llm_calls_total",
            "overspend_spans_dropped_total",
            "overspend_label_overflow_total",
        }
        and sample.value
    }
    assert names == set()
    assert seeded.sample("overspend_llm_calls_total", _labels("unattributed")) is None


def test_requests_total(seeded: Pipeline) -> None:
    assert seeded.sample("overspend_requests_total") == REQUESTS


def test_frontier_calls_histogram(seeded: Pipeline) -> None:
    # Four frontier calls a request (confirmed: 3 or more): buckets are cumulative upper
    # bounds, so every request is above le="3.0" and inside le="5.0".
    bucket = "overspend_request_frontier_calls_bucket"
    assert seeded.sample(bucket, {"le": "3.0"}) == 0
    assert seeded.sample(bucket, {"le": "5.0"}) == REQUESTS
    assert seeded.sample(bucket, {"le": "+Inf"}) == REQUESTS
    assert seeded.sample("overspend_request_frontier_calls_count") == REQUESTS
    assert seeded.sample("overspend_request_frontier_calls_sum") == 4 * REQUESTS


def test_tokens_histogram(seeded: Pipeline) -> None:
    # 250 + 12,200 + 3,900 + 4,100 = 20,450 tokens a request, in the (15k, 25k] bucket.
    bucket = "overspend_request_tokens_bucket"
    assert seeded.sample(bucket, {"le": "15000.0"}) == 0
    assert seeded.sample(bucket, {"le": "25000.0"}) == REQUESTS
    assert seeded.sample("overspend_request_tokens_sum") == 20_450_000
