"""The fast text rendering says exactly what prometheus_client's rendering says."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.exposition import render_registry

from conftest import make_pipeline


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_fast_text_equals_the_registry_rendering() -> None:
    settings = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)
    p = make_pipeline(settings)
    other = Counter("app_requests", "An app's own counter.", registry=p.registry)
    other.inc(3)
    tricky = 'acme-"quoted"\\model'
    with p.tracer.start_as_current_span("request"):
        for name, model in (("rerank", "acme-a"), ("generate", "acme-b"), ("rerank", tricky)):
            with step(name), p.tracer.start_as_current_span("chat") as span:
                span.set_attributes(
                    {
                        "gen_ai.request.model": model,
                        "gen_ai.usage.input_tokens": 1_000,
                        "gen_ai.usage.output_tokens": 7,
                    }
                )
        with p.tracer.start_as_current_span("chat") as span:
            span.set_attributes({"gen_ai.request.model": "mystery", "gen_ai.usage.input_tokens": 5})
    collector = p.processor._collector
    reference = generate_latest(p.registry)
    fast = render_registry(p.registry, collector)
    assert _samples(fast) == _samples(reference)
    assert (
        "overspend_llm_calls_total",
        (("model", tricky), ("provider", "unknown"), ("step", "rerank"), ("tier", "frontier")),
    ) in _samples(fast)
    # Every family appears once, with its help and type.
    families = [f.name for f in text_string_to_metric_families(fast.decode())]
    assert len(families) == len(set(families))
    assert "app_requests" in families


def test_muted_collector_yields_nothing_only_while_muted() -> None:
    registry = CollectorRegistry()
    processor = OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    collector = processor._collector
    with collector.muted():
        assert list(collector.collect()) == []
    assert list(collector.collect())
