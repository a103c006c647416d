"""The fast text rendering says exactly what prometheus_client's rendering says."""

from __future__ import annotations

import gzip
import re
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.accounting.status import DROP_REASONS, EVICTION_REASONS, INFERRED_USAGE, OVERFLOW_LABELS
from otel_overspend.exporters.prometheus import render_registry

from conftest import FakeClock, make_pipeline

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue


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
    tricky = 'acme-"quoted"\\model-100%'
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
    collector = p.processor.collector
    reference = generate_latest(p.registry)
    fast = b"".join(render_registry(p.registry, collector))
    assert _samples(fast) == _samples(reference)
    # A series that appears after a scrape is in the next one (the text is laid out anew).
    with step("judge"), p.tracer.start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.request.model": "acme-c", "gen_ai.usage.input_tokens": 3})
    later = b"".join(render_registry(p.registry, collector))
    assert _samples(later) == _samples(generate_latest(p.registry))
    assert len(_samples(later)) > len(_samples(fast))
    assert (
        "overspend_llm_calls_total",
        (("model", tricky), ("provider", "unknown"), ("step", "rerank"), ("tier", "frontier")),
    ) in _samples(fast)
    # Every family appears once, with its help and type.
    families = [f.name for f in text_string_to_metric_families(fast.decode())]
    assert len(families) == len(set(families))
    assert "app_requests" in families


def test_a_scrape_of_many_series_plain_or_gzipped_says_what_the_registry_says() -> None:
    # 700 series: each per-series family is written in more than one piece.
    settings = Settings(
        serve_metrics=False, max_models=1_000, model_tiers={"acme-*": "frontier"}, use_genai_prices=False
    )
    p = make_pipeline(settings)
    for i in range(700):
        with p.tracer.start_as_current_span("chat") as span:
            span.set_attributes(
                {
                    "gen_ai.request.model": f"acme-{i}",
                    "gen_ai.usage.input_tokens": 100 + i,
                    "gen_ai.usage.output_tokens": 7,
                }
            )
    p.processor.force_flush()
    assert len(render_registry(p.registry, p.processor.collector)) > 2 * 7
    server = p.processor.start_metrics_server(port=0)
    assert server is not None
    reference = _samples(generate_latest(p.registry))
    assert len(reference) > 7 * 700
    try:
        with urllib.request.urlopen(server.url, timeout=5) as response:
            plain = response.read()
            assert int(response.headers["Content-Length"]) == len(plain)
        request = urllib.request.Request(server.url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            compressed = response.read()
            assert int(response.headers["Content-Length"]) == len(compressed)
    finally:
        p.processor.shutdown()
    assert _samples(plain) == reference
    assert _samples(gzip.decompress(compressed)) == reference
    assert len(compressed) < len(plain) / 4


def test_muted_collector_yields_nothing_only_while_muted() -> None:
    registry = CollectorRegistry()
    processor = OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    collector = processor.collector
    with collector.muted():
        assert list(collector.collect()) == []
    assert list(collector.collect())


def test_a_scrape_before_any_call_names_every_family() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    fast = b"".join(render_registry(p.registry, p.processor.collector)).decode()
    reference = generate_latest(p.registry).decode()
    assert [f.name for f in text_string_to_metric_families(fast)] == [
        f.name for f in text_string_to_metric_families(reference)
    ]
    assert "# TYPE overspend_llm_calls_total counter" in fast


STATUS_FAMILIES = (
    ("overspend_spans_dropped_total", "reason", DROP_REASONS),
    ("overspend_usage_inferred_total", "what", INFERRED_USAGE),
    ("overspend_label_overflow_total", "label", OVERFLOW_LABELS),
    ("overspend_open_requests_evicted_total", "reason", EVICTION_REASONS),
)


@pytest.mark.parametrize(("name", "label", "known"), STATUS_FAMILIES)
def test_every_status_family_starts_at_0_for_every_known_value(
    name: str, label: str, known: tuple[str, ...]
) -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    for text in (b"".join(render_registry(p.registry, p.processor.collector)), generate_latest(p.registry)):
        found = {labels: value for (sample, labels), value in _samples(text).items() if sample == name}
        assert found == {((label, value),): 0.0 for value in known}


def test_a_counted_reason_is_shown_beside_the_zeros() -> None:
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    with p.tracer.start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.request.model": "acme-x", "gen_ai.usage.input_tokens": -5})
    samples = _samples(b"".join(render_registry(p.registry, p.processor.collector)))
    dropped = {
        dict(labels)["reason"]: value for (name, labels), value in samples.items() if "dropped" in name
    }
    assert dropped == dict.fromkeys(DROP_REASONS, 0.0) | {"invalid_tokens": 1.0}


@pytest.mark.parametrize(("name", "label", "known"), STATUS_FAMILIES)
def test_docs_metrics_lists_every_known_value(name: str, label: str, known: tuple[str, ...]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == f"`{label}`"
    assert set(re.findall(r"`([a-z_]+)`", cells[2])) == set(known)


def test_open_requests_and_calls_waiting_for_a_step_are_shown_until_counted() -> None:
    clock = FakeClock(start=time.time())
    p = make_pipeline(
        Settings(serve_metrics=False, use_genai_prices=False, request_timeout_seconds=60), clock=clock
    )
    usage: dict[str, AttributeValue] = {"gen_ai.request.model": "acme", "gen_ai.usage.input_tokens": 10}

    def call(root: Span) -> None:
        p.tracer.start_span("chat", attributes=usage, context=trace.set_span_in_context(root)).end()

    def gauges() -> tuple[float | None, float | None]:
        return p.sample("overspend_open_requests"), p.sample("overspend_undecided_llm_calls")

    assert gauges() == (0, 0)
    stepped, outside, lost = (p.tracer.start_span(name) for name in ("stepped", "outside", "lost"))
    with step("rerank"):
        call(stepped)  # counted at once: its request is open until its root ends
    call(outside)  # outside any step(): each waits for its root, which may name one
    call(outside)
    call(lost)
    assert gauges() == (1, 3)
    stepped.end()
    outside.end()
    assert gauges() == (0, 1)
    # A root that never ends: its call is counted, unattributed, after the time-out.
    clock.advance(61)
    assert gauges() == (0, 0)
    assert p.total("overspend_llm_calls_total", step="rerank") == 1
    assert p.total("overspend_llm_calls_total", step="unattributed") == 3
