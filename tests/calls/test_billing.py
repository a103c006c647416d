"""Every dollar as the provider bills it, live and offline alike.

Each case is one LLM span shaped the way a real instrumentation writes it (attribute names,
gross or net input, where the cache writes and reasoning go: see docs/pricing.md), made by
a tracer named for that instrumentation's scope. The expected dollars are worked out by
hand from the providers' published price sheets, in micro-dollars (tokens x USD per 1M
tokens), never from the code under test:

- claude-sonnet-4-5, up to 200k input tokens: input 3, output 15, cache read 0.30, 5-minute
  cache write 3.75 (1.25x input), 1-hour cache write 6 (2x input); above 200k input tokens
  every token of the call at 6 / 22.50 / 0.60 / 7.50 / 12;
- gpt-5: input 1.25, cached input 0.125, output 10 (reasoning billed as output);
- gemini-2.5-pro, up to 200k: input 1.25, output 10 (thinking billed as output);
- Cohere rerank: $2.00 per 1,000 searches, the specialist tier's default per search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.trace import Status, StatusCode
from report_support import CollectorFileExporter, export_to

from otel_overspend import Settings, step
from otel_overspend.config.settings import Price
from otel_overspend.report.files import Problems
from otel_overspend.report.run import build_report

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from pathlib import Path

SONNET = "claude-sonnet-4-5-20250929"
OPENLLMETRY_ANTHROPIC = "opentelemetry.instrumentation.anthropic"
ANTHROPIC_SDK = "com.anthropic.sdk.python"
OPENLIT_ANTHROPIC = "openlit.instrumentation.anthropic"


@dataclass(frozen=True)
class Case:
    scope: str
    attrs: dict[str, Any]
    #: What the provider bills, in USD (``None``: the call must be unpriced).
    cost_usd: float | None
    step: str = "rerank"
    #: ``overspend_spans_dropped_total`` / ``overspend_usage_inferred_total`` it adds.
    dropped: dict[str, int] = field(default_factory=dict)
    inferred: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)


def _anthropic(**usage: Any) -> dict[str, Any]:
    return {"gen_ai.provider.name": "anthropic", "gen_ai.response.model": SONNET, **usage}


CASES: dict[str, Case] = {
    # OpenLLMetry writes input gross: 1,200 fresh + 800 cache reads + 500 cache writes.
    # 1,200 x 3 + 800 x 0.30 + 500 x 3.75 + 100 x 15 = 3,600 + 240 + 1,875 + 1,500 = 7,215.
    "openllmetry_cache_write": Case(
        OPENLLMETRY_ANTHROPIC,
        _anthropic(
            **{
                "gen_ai.usage.input_tokens": 2_500,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.usage.cache_read.input_tokens": 800,
                "gen_ai.usage.cache_creation.input_tokens": 500,
            }
        ),
        0.007215,
        tokens={"input": 2_500, "cache_read": 800, "cache_write": 500, "output": 100},
    ),
    # The anthropic SDK's own tracing: gross input, writes split by lifetime (300 of 5
    # minutes, 200 of an hour). 1,200 x 3 + 800 x 0.30 + 300 x 3.75 + 200 x 6 + 100 x 15
    # = 3,600 + 240 + 1,125 + 1,200 + 1,500 = 7,665.
    "anthropic_sdk_1h_writes": Case(
        ANTHROPIC_SDK,
        _anthropic(
            **{
                "gen_ai.usage.input_tokens": 2_500,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.usage.cache_read.input_tokens": 800,
                "gen_ai.usage.cache_write.input_tokens": 500,
                "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 300,
                "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 200,
            }
        ),
        0.007665,
    ),
    # OpenLIT writes Anthropic's input as the API does, net of reads and writes, with
    # fewer reads than fresh tokens: the same call as the first case, 7,215.
    "openlit_net_input": Case(
        OPENLIT_ANTHROPIC,
        _anthropic(
            **{
                "telemetry.sdk.name": "openlit",
                "gen_ai.usage.input_tokens": 1_200,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.usage.cache_read.input_tokens": 800,
                "gen_ai.usage.cache_creation.input_tokens": 500,
            }
        ),
        0.007215,
        tokens={"input": 2_500, "cache_read": 800, "cache_write": 500, "output": 100},
    ),
    # Net input above 200k once the cache is added back (50,000 fresh + 200,000 reads): the
    # long-context rates apply to the whole call. 50,000 x 6 + 200,000 x 0.60 + 1,000 x 22.50
    # = 300,000 + 120,000 + 22,500 = 442,500.
    "openlit_net_long_context": Case(
        OPENLIT_ANTHROPIC,
        _anthropic(
            **{
                "telemetry.sdk.name": "openlit",
                "gen_ai.usage.input_tokens": 50_000,
                "gen_ai.usage.output_tokens": 1_000,
                "gen_ai.usage.cache_read.input_tokens": 200_000,
            }
        ),
        0.4425,
    ),
    # An emitter nothing is known of, whose input (300) is smaller than its own cache reads
    # (800): it can only be net, and the guess is counted. 300 x 3 + 800 x 0.30 + 100 x 15
    # = 900 + 240 + 1,500 = 2,640.
    "unknown_emitter_net_input": Case(
        "acme.homegrown",
        _anthropic(
            **{
                "gen_ai.usage.input_tokens": 300,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.usage.cache_read.input_tokens": 800,
            }
        ),
        0.00264,
        inferred={"net_input_inferred": 1},
    ),
    # OpenAI counts reasoning inside output and cached tokens inside input (OpenInference's
    # names). 200 x 1.25 + 800 x 0.125 + 400 x 10 = 250 + 100 + 4,000 = 4,350.
    "openai_reasoning": Case(
        "openinference.instrumentation.openai",
        {
            "llm.system": "openai",
            "llm.model_name": "gpt-5",
            "llm.token_count.prompt": 1_000,
            "llm.token_count.completion": 400,
            "llm.token_count.prompt_details.cache_read": 800,
            "llm.token_count.completion_details.reasoning": 200,
        },
        0.00435,
        tokens={"input": 1_000, "cache_read": 800, "output": 400, "reasoning": 200},
    ),
    # Gemini reports thinking apart from the answer's tokens and bills both as output:
    # 1,000 x 1.25 + (200 + 800) x 10 = 1,250 + 10,000 = 11,250.
    "gemini_thinking": Case(
        "opentelemetry.instrumentation.google_genai",
        {
            "gen_ai.provider.name": "gcp.gemini",
            "gen_ai.request.model": "gemini-2.5-pro",
            "gen_ai.usage.input_tokens": 1_000,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.usage.reasoning.output_tokens": 800,
        },
        0.01125,
        tokens={"input": 1_000, "output": 1_000, "reasoning": 800},
    ),
    # OpenLLMetry's Cohere rerank span: no tokens, one search at $0.002.
    "openllmetry_rerank": Case(
        "opentelemetry.instrumentation.cohere",
        {"gen_ai.system": "Cohere", "llm.request.type": "rerank", "gen_ai.request.model": "rerank-v3.5"},
        0.002,
    ),
    # OpenInference's: a RERANKER span naming its model, nothing else.
    "openinference_rerank": Case(
        "openinference.instrumentation.cohere",
        {"openinference.span.kind": "RERANKER", "reranker.model_name": "rerank-v3.5"},
        0.002,
    ),
    # A cost that cannot be read is counted and the call priced by its tokens instead:
    # 1,000 x 3 + 100 x 15 = 4,500.
    "invalid_span_cost": Case(
        OPENLLMETRY_ANTHROPIC,
        _anthropic(
            **{"gen_ai.usage.input_tokens": 1_000, "gen_ai.usage.output_tokens": 100, "llm.cost.total": "1.5"}
        ),
        0.0045,
        dropped={"invalid_span_cost": 1},
    ),
    # LiteLLM writes 0 for a model it has no price for: no price, so genai-prices prices it.
    "litellm_zero_cost": Case(
        "litellm",
        _anthropic(
            **{
                "gen_ai.usage.input_tokens": 1_000,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.cost.total_cost": 0.0,
            }
        ),
        0.0045,
    ),
    # A rerank call with no price per search and nothing else to price: unpriced, not $0.
    "unpriceable_rerank": Case(
        "opentelemetry.instrumentation.cohere",
        {"llm.request.type": "rerank", "gen_ai.request.model": "acme-ranker-unknown"},
        None,
    ),
}


def _emit(p: Pipeline, case: Case) -> None:
    tracer = p.provider.get_tracer(case.scope)
    with (
        p.tracer.start_as_current_span("request"),
        step(case.step),
        tracer.start_as_current_span("call") as span,
    ):
        for key, value in case.attrs.items():
            span.set_attribute(key, value)


def _samples(p: Pipeline, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == name
    ]


def _by(p: Pipeline, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for labels, value in _samples(p, name):
        if value:
            found[labels[label]] = found.get(labels[label], 0.0) + value
    return found


@pytest.mark.parametrize("name", CASES)
def test_live_and_offline_dollars_equal_the_providers_bill(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    settings = Settings(serve_metrics=False, stamp_spans=True)
    p = make_pipeline(settings)
    out = CollectorFileExporter(tmp_path / "traces.json")
    export_to(p, out)
    _emit(p, case)
    out.flush()
    p.provider.force_flush()

    live = dict(p.processor.diagnoses())["7d"]
    offline = build_report([out.path], settings=settings, problems=Problems(shown=0))
    assert live.calls == offline.diagnosis.calls == 1
    if case.cost_usd is None:
        assert live.unpriced_calls == offline.diagnosis.unpriced_calls == 1
        assert live.cost_usd == offline.diagnosis.cost_usd == 0.0
        assert live.step_shares == offline.diagnosis.step_shares == {}
    else:
        assert live.unpriced_calls == offline.diagnosis.unpriced_calls == 0
        assert math.isclose(live.cost_usd, case.cost_usd, rel_tol=0, abs_tol=1e-9), live.cost_usd
        assert math.isclose(offline.diagnosis.cost_usd, case.cost_usd, rel_tol=0, abs_tol=1e-9)
        assert math.isclose(
            p.sample("overspend_llm_cost_usd_total", _only_labels(p)) or 0.0, case.cost_usd, abs_tol=1e-9
        )
    assert _by(p, "overspend_spans_dropped_total", "reason") == case.dropped
    assert dict(offline.inputs.dropped) == case.dropped
    assert _by(p, "overspend_usage_inferred_total", "what") == case.inferred
    assert dict(offline.inputs.usage_inferred) == case.inferred
    tokens = _by(p, "overspend_llm_tokens_total", "kind")
    for kind, count in case.tokens.items():
        assert tokens.get(kind, 0.0) == count, (kind, tokens)


def _only_labels(p: Pipeline) -> dict[str, str]:
    ((labels, _),) = _samples(p, "overspend_llm_calls_total")
    return labels


def test_a_call_priced_only_by_its_span_has_no_counterfactual(tmp_path: Path) -> None:
    settings = Settings(serve_metrics=False, stamp_spans=True)
    p = make_pipeline(settings)
    out = CollectorFileExporter(tmp_path / "traces.json")
    export_to(p, out)
    # rerank: $0.05 from the span alone, nothing to reprice; generate: gpt-5, 1,000 in /
    # 100 out = 1,250 + 1,000 = 2,250 micro-dollars, unchanged by the specialization map.
    # rewrite: gpt-5, 10,000 in / 100 out = 12,500 + 1,000 = 13,500; at the specialist's
    # 0.02 / 0.02: 200 + 2 = 202. Headroom 13,298 out of 15,750 repriceable dollars.
    with p.tracer.start_as_current_span("request"):
        with step("rerank"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes({"gen_ai.request.model": "acme-ranker", "gen_ai.usage.cost": 0.05})
        with step("generate"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes(
                {
                    "gen_ai.request.model": "gpt-5",
                    "gen_ai.usage.input_tokens": 1_000,
                    "gen_ai.usage.output_tokens": 100,
                }
            )
        with step("rewrite"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes(
                {
                    "gen_ai.request.model": "gpt-5",
                    "gen_ai.usage.input_tokens": 10_000,
                    "gen_ai.usage.output_tokens": 100,
                }
            )
    out.flush()
    p.provider.force_flush()
    offline = build_report([out.path], settings=settings, problems=Problems(shown=0)).diagnosis
    for d in (dict(p.processor.diagnoses())["7d"], offline):
        assert d.cost_usd == pytest.approx(0.05 + 0.00225 + 0.0135, abs=1e-12)
        assert d.cost_without_counterfactual_usd == pytest.approx(0.05, abs=1e-12)
        assert d.headroom_usd == pytest.approx(0.013298, abs=1e-12)
        assert d.projected_reduction == pytest.approx(0.013298 / 0.01575, abs=1e-12)
        rerank = next(line for line in d.steps if line.step == "rerank")
        assert rerank.savings_usd == 0.0
    assert _by(p, "overspend_llm_cost_without_counterfactual_usd_total", "step") == {"rerank": 0.05}


def test_llm_calls_without_usage_are_counted_and_failed_ones_not(tmp_path: Path) -> None:
    settings = Settings(serve_metrics=False, stamp_spans=True)
    p = make_pipeline(settings)
    out = CollectorFileExporter(tmp_path / "traces.json")
    export_to(p, out)
    client = p.provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    framework = p.provider.get_tracer("openinference.instrumentation.langchain")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    with p.tracer.start_as_current_span("request"), step("rewrite"):
        # A stream without include_usage, under a framework span that has no usage either:
        # one call without usage.
        with (
            framework.start_as_current_span("ChatOpenAI", attributes={"openinference.span.kind": "LLM"}),
            client.start_as_current_span("chat gpt-4o", attributes=chat),
        ):
            pass
        # A failed call billed nothing.
        with client.start_as_current_span("chat gpt-4o", attributes=chat) as failed:
            failed.set_status(Status(StatusCode.ERROR))
        # A framework span with usage over a client span with none: the framework's usage
        # counts (the client span is reported without usage too: it ended first).
        with framework.start_as_current_span("ChatOpenAI") as outer:
            with client.start_as_current_span("chat gpt-4o", attributes=chat):
                pass
            outer.set_attributes(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o",
                    "llm.token_count.prompt": 1_000,
                    "llm.token_count.completion": 200,
                }
            )
    out.flush()
    p.provider.force_flush()
    assert _samples(p, "overspend_llm_calls_without_usage_total") == [
        ({"step": "rewrite", "model": "gpt-4o"}, 2.0)
    ]
    assert _by(p, "overspend_llm_calls_total", "step") == {"rewrite": 1.0}
    # gpt-4o: 1,000 x 2.50 + 200 x 10 = 4,500 micro-dollars.
    assert _by(p, "overspend_llm_cost_usd_total", "step") == pytest.approx({"rewrite": 0.0045}, abs=1e-12)
    report = build_report([out.path], settings=settings, problems=Problems(shown=0))
    assert dict(report.inputs.calls_without_usage) == {"rewrite gpt-4o": 2}
    assert report.diagnosis.calls == 1
    assert report.diagnosis.cost_usd == pytest.approx(0.0045, abs=1e-12)


def test_an_unpriced_generate_step_leaves_no_share_and_no_fraction() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    with p.tracer.start_as_current_span("request"):
        with step("rerank"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes({"gen_ai.request.model": "gpt-5", "gen_ai.usage.input_tokens": 1_000})
        with step("generate"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes(
                {"gen_ai.request.model": "acme-unknown-9", "gen_ai.usage.input_tokens": 1_000}
            )
    p.provider.force_flush()
    d = dict(p.processor.diagnoses())["5m"]
    assert d.unpriced_calls == 1
    assert d.generate_share is None
    assert d.specialist_eligible_fraction is None
    assert "generate_cost_share" not in d.levels
    assert "specialist_eligible_fraction" not in d.levels
    assert p.sample("overspend_generate_cost_share", {"window": "5m"}) is None
    assert p.sample("overspend_specialist_eligible_fraction", {"window": "5m"}) is None


def test_overrides_price_every_unit_and_the_counterfactual_reprices_the_same_units() -> None:
    p = make_pipeline(
        Settings(
            serve_metrics=False,
            model_prices={
                "claude-*": Price(input=2.0, output=8.0, cache_read=0.2, cache_write=2.5, cache_write_1h=4.0),
                "acme-ranker": Price(input=0.0, output=0.0, per_search=0.001),
            },
        )
    )
    _emit(p, CASES["anthropic_sdk_1h_writes"])
    with (
        p.tracer.start_as_current_span("request"),
        step("rerank"),
        p.tracer.start_as_current_span("call") as span,
    ):
        span.set_attributes(
            {
                "llm.request.type": "rerank",
                "gen_ai.request.model": "acme-ranker",
                "gen_ai.usage.search_units": 3,
            }
        )
    p.provider.force_flush()
    cost = {labels["model"]: value for labels, value in _samples(p, "overspend_llm_cost_usd_total")}
    # 1,200 x 2 + 800 x 0.2 + 300 x 2.5 + 200 x 4 + 100 x 8 = 2,400 + 160 + 750 + 800 + 800 = 4,910.
    assert cost[SONNET] == pytest.approx(0.00491, abs=1e-12)
    # 3 searches x $0.001.
    assert cost["acme-ranker"] == pytest.approx(0.003, abs=1e-12)
    specialized = {
        labels["model"]: value for labels, value in _samples(p, "overspend_llm_specialized_cost_usd_total")
    }
    # At the specialist tier's defaults (0.02 / 0.02, no cache rates of its own, $0.002 a
    # search): (2,500 + 100) x 0.02 = 52 micro-dollars; the reranker: min(3 x 0.002, 0.003).
    assert specialized[SONNET] == pytest.approx(0.000052, abs=1e-12)
    assert specialized["acme-ranker"] == pytest.approx(0.003, abs=1e-12)


def test_a_generate_step_seen_only_without_usage_leaves_no_share_and_no_fraction() -> None:
    # Streamed generate calls without include_usage: their spend is unknown, not $0.
    p = make_pipeline(Settings(serve_metrics=False))
    with p.tracer.start_as_current_span("request"):
        with step("rerank"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes({"gen_ai.request.model": "gpt-5", "gen_ai.usage.input_tokens": 1_000})
        with step("generate"), p.tracer.start_as_current_span("call") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5"})
    p.provider.force_flush()
    d = dict(p.processor.diagnoses())["5m"]
    assert (d.calls, d.calls_without_usage) == (1, 1)
    assert d.generate_share is None
    assert d.specialist_eligible_fraction is None
    assert d.model_concentration is None
    assert p.total("overspend_llm_calls_without_usage_total", step="generate") == 1.0
