"""Label caps: the first N distinct values keep their name, the rest become ``other``."""

from __future__ import annotations

import pytest

from otel_overspend import Settings, step
from otel_overspend.config.settings import Price

from conftest import Pipeline, make_pipeline


def call(p: Pipeline, model: str, tokens_in: int, provider: str = "acme") -> None:
    with p.tracer.start_as_current_span(
        "chat",
        attributes={
            "gen_ai.request.model": model,
            "gen_ai.provider.name": provider,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": 0,
        },
    ):
        pass


def by_label(p: Pipeline, metric: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in p.registry.collect():
        for sample in family.samples:
            if sample.name == metric:
                value = sample.labels[label]
                out[value] = out.get(value, 0.0) + sample.value
    return out


def overflow(p: Pipeline, label: str) -> float | None:
    return p.sample("overspend_label_overflow_total", {"label": label})


MODELS = [f"acme-m{i}" for i in range(10)]


@pytest.fixture
def capped_models() -> Pipeline:
    # Model acme-m{i} costs $(i + 1) per 1M input tokens.
    return make_pipeline(
        Settings(
            serve_metrics=False,
            use_genai_prices=False,
            max_models=3,
            model_tiers={"acme-m*": "mid"},
            model_prices={model: Price(input=i + 1, output=0) for i, model in enumerate(MODELS)},
        )
    )


def test_models_beyond_the_cap_fold_into_other(capped_models: Pipeline) -> None:
    p = capped_models
    for model in MODELS:
        call(p, model, 1_000_000)
    assert by_label(p, "overspend_llm_calls_total", "model") == {
        "acme-m0": 1,
        "acme-m1": 1,
        "acme-m2": 1,
        "other": 7,
    }
    assert overflow(p, "model") == 7
    assert overflow(p, "step") == 0
    assert overflow(p, "provider") == 0


def test_overflow_counts_calls_not_models(capped_models: Pipeline) -> None:
    p = capped_models
    for _ in range(3):
        for model in MODELS:
            call(p, model, 1_000_000)
    # 7 folded models x 3 calls each.
    assert overflow(p, "model") == 21
    assert by_label(p, "overspend_llm_calls_total", "model")["other"] == 21
    assert by_label(p, "overspend_llm_calls_total", "model")["acme-m0"] == 3


def test_calls_in_other_are_priced_with_their_real_model(capped_models: Pipeline) -> None:
    p = capped_models
    for model in MODELS:
        call(p, model, 1_000_000)
    cost = by_label(p, "overspend_llm_cost_usd_total", "model")
    # 1M input tokens of acme-m{i} cost $(i + 1): m0..m2 keep $1, $2, $3;
    # other holds m3..m9: 4 + 5 + 6 + 7 + 8 + 9 + 10 = $49.
    assert cost == pytest.approx({"acme-m0": 1.0, "acme-m1": 2.0, "acme-m2": 3.0, "other": 49.0}, abs=1e-9)
    tokens = by_label(p, "overspend_llm_tokens_total", "model")
    assert tokens["other"] == 7_000_000  # input, the other kinds are 0
    assert set(by_label(p, "overspend_unpriced_llm_calls_total", "model").values()) == {0.0}


def test_a_model_seen_before_the_cap_filled_keeps_its_name(capped_models: Pipeline) -> None:
    p = capped_models
    for model in MODELS:
        call(p, model, 1_000)
    call(p, "acme-m1", 1_000)
    assert by_label(p, "overspend_llm_calls_total", "model")["acme-m1"] == 2
    assert overflow(p, "model") == 7


def test_steps_beyond_the_cap_fold_into_other() -> None:
    p = make_pipeline(
        Settings(
            serve_metrics=False, use_genai_prices=False, max_steps=2, specialize={"generate": "unchanged"}
        )
    )
    names = ["generate", "rerank", "rewrite", "judge", "route"]
    for name in names:
        for _ in range(2):
            with step(name):
                call(p, "gpt-4o", 10_000)
    # generate takes no slot (see below): rerank and rewrite fill the cap of 2.
    assert by_label(p, "overspend_llm_calls_total", "step") == {
        "generate": 2,
        "rerank": 2,
        "rewrite": 2,
        "other": 4,
    }
    assert overflow(p, "step") == 4
    assert overflow(p, "model") == 0
    # The specialized cost uses the real step: the two folded steps go to the specialist
    # default, 10,000 x 0.02 = 200 micro-dollars a call, 4 calls = 800.
    specialized = by_label(p, "overspend_llm_specialized_cost_usd_total", "step")
    assert specialized["other"] == pytest.approx(0.0008, abs=1e-12)
    # generate stays unchanged at frontier: 10,000 x 3 = 30,000 a call, 2 calls = 60,000.
    assert specialized["generate"] == pytest.approx(0.06, abs=1e-12)


def test_providers_beyond_the_cap_fold_into_other() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False, max_providers=1))
    call(p, "gpt-4o", 100, provider="openai")
    call(p, "gpt-4o", 100, provider="azure")
    call(p, "gpt-4o", 100, provider="groq")
    assert by_label(p, "overspend_llm_calls_total", "provider") == {"openai": 1, "other": 2}
    assert overflow(p, "provider") == 2


def test_generate_and_unattributed_are_never_folded() -> None:
    # The signals read these two steps by name: folding them into "other" would count
    # generate spend as specialist-eligible.
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False, max_steps=2))
    for name in ("rerank", "rewrite", "judge", "generate"):
        with step(name):
            call(p, "gpt-4o", 10_000)
    call(p, "gpt-4o", 10_000)  # no step: unattributed
    assert by_label(p, "overspend_llm_calls_total", "step") == {
        "rerank": 1,
        "rewrite": 1,
        "other": 1,
        "generate": 1,
        "unattributed": 1,
    }
    assert overflow(p, "step") == 1
