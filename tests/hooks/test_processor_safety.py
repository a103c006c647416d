"""The processor never breaks the app: hooks never raise, a busy port only warns, and a
served endpoint answers on loopback."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.base.forks import start_worker_servers
from otel_overspend.calls.attribution import Attributor
from otel_overspend.calls.step_rules import StepRules

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.util.types import AttributeValue

USAGE: dict[str, AttributeValue] = {
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
}


@pytest.fixture
def exported() -> Iterator[tuple[Pipeline, InMemorySpanExporter]]:
    """A pipeline with an exporter registered after the overspend processor."""
    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    exporter = InMemorySpanExporter()
    p.provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield p, exporter
    p.provider.shutdown()


def dropped(p: Pipeline, reason: str) -> float | None:
    return p.sample("overspend_spans_dropped_total", {"reason": reason})


def calls(p: Pipeline) -> float:
    return sum(
        sample.value
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == "overspend_llm_calls_total"
    )


def boom(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError("resolver exploded")


def test_hostile_attributes_never_raise(exported: tuple[Pipeline, InMemorySpanExporter]) -> None:
    p, exporter = exported
    hostile: list[dict[str, AttributeValue]] = [
        {"gen_ai.usage.input_tokens": -5, "gen_ai.request.model": "gpt-4o"},
        {"gen_ai.usage.input_tokens": "\u00b2", "gen_ai.request.model": "gpt-4o"},
        {"gen_ai.usage.input_tokens": 10**40, "gen_ai.usage.cost": 10**400},
        {"gen_ai.usage.output_tokens": float("nan"), "llm.cost.total": float("-inf")},
        {"gen_ai.usage.input_tokens": 1, "gen_ai.request.model": "\x00" * 500},
        {"gen_ai.usage.input_tokens": 1, "gen_ai.request.model": ["a", "b"], "gen_ai.system": [True]},
        {"gen_ai.usage.input_tokens": 1, "gen_ai.usage.cost": 10**400},  # counted, the cost ignored
        {"gen_ai.usage.input_tokens": [1.5, 2.5], "openinference.span.kind": ["RERANKER"]},
        {"overspend.step": 7, "gen_ai.usage.input_tokens": 1, "llm.request.type": 3},
    ]
    for attributes in hostile:
        with step("rerank"), p.tracer.start_as_current_span("\udcff hostile \x00", attributes=attributes):
            pass
    assert len(exporter.get_finished_spans()) == len(hostile)
    assert dropped(p, "internal_error") == 0
    assert dropped(p, "invalid_tokens") == 5
    assert dropped(p, "invalid_model") == 2
    assert calls(p) == 2


@pytest.mark.pure_python
def test_a_failing_attributor_is_counted_and_the_span_still_exports(
    exported: tuple[Pipeline, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    p, exporter = exported
    monkeypatch.setattr(Attributor, "attribute", boom)
    with caplog.at_level(logging.ERROR, logger="otel_overspend"):
        for _ in range(3):
            with p.tracer.start_as_current_span("chat", attributes=USAGE):
                pass
    assert [span.name for span in exporter.get_finished_spans()] == ["chat"] * 3
    assert dropped(p, "internal_error") == 3
    assert calls(p) == 0
    # Logged once (counting runs off the span's thread, after on_end), not once per span.
    failures = [r for r in caplog.records if r.name == "otel_overspend" and "count failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None

    monkeypatch.undo()
    with p.tracer.start_as_current_span("chat", attributes=USAGE):
        pass
    assert calls(p) == 1  # the processor keeps working once the fault is gone


@pytest.mark.pure_python  # compiled code calls StepRules.match directly: the patch is not seen
def test_a_failing_on_start_is_counted_and_the_span_still_exports(
    exported: tuple[Pipeline, InMemorySpanExporter], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, exporter = exported
    monkeypatch.setattr(StepRules, "match", boom)
    kind = {"openinference.span.kind": "CHAIN"}  # an attribute the rules read: they are tried
    with (
        p.tracer.start_as_current_span("chat", attributes=kind),
        p.tracer.start_as_current_span("inner", attributes=kind),
    ):
        pass
    assert [span.name for span in exporter.get_finished_spans()] == ["inner", "chat"]
    assert dropped(p, "internal_error") == 2


def test_a_busy_port_logs_one_warning_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="otel_overspend"):
            processor = OverspendProcessor(
                settings=Settings(metrics_port=port, serve_metrics=True, use_genai_prices=False),
                registry=CollectorRegistry(),
            )
        try:
            assert processor.metrics_server is None
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert str(port) in warnings[0].getMessage()
            # The processor still counts: the registry is there to be served some other way.
            provider = TracerProvider()
            provider.add_span_processor(processor)
            with provider.get_tracer("t").start_as_current_span("chat", attributes=USAGE):
                pass
            assert processor.snapshot().totals
        finally:
            processor.shutdown()


def test_metrics_served_on_an_ephemeral_port() -> None:
    registry = CollectorRegistry()
    processor = OverspendProcessor(
        settings=Settings(metrics_port=0, serve_metrics=True, use_genai_prices=False), registry=registry
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        server = processor.metrics_server
        assert server is not None
        assert server.port > 0
        with step("rerank"), provider.get_tracer("t").start_as_current_span("chat", attributes=USAGE):
            pass
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            assert response.status == 200
            body = response.read().decode()
    finally:
        provider.shutdown()
    assert processor.metrics_server is None  # shut down with the provider
    labels = 'model="gpt-4o",provider="unknown",step="rerank",tier="frontier"'
    assert f"overspend_llm_calls_total{{{labels}}} 1.0" in body
    assert f'overspend_llm_tokens_total{{kind="input",{labels}}} 100.0' in body
    # The frontier default for gpt-4o with genai-prices off: 100 x 3 + 10 x 15 = 450 micro-dollars.
    assert f"overspend_llm_cost_usd_total{{{labels}}} 0.00045" in body
    assert "overspend_requests_total 1.0" in body


def test_shutdown_twice_and_force_flush_are_harmless() -> None:
    processor = OverspendProcessor(
        settings=Settings(metrics_port=0, serve_metrics=True, use_genai_prices=False),
        registry=CollectorRegistry(),
    )
    assert processor.force_flush() is True
    processor.shutdown()
    processor.shutdown()
    assert processor.metrics_server is None


def test_the_endpoint_stops_at_once_and_frees_its_port() -> None:
    """An app's exit stops the endpoint: ten in a row take well under a second (polling for
    the stop twice a second, as socketserver's serve_forever does, took 2.5 s on average)."""
    ports: list[int] = []
    began = time.perf_counter()
    for _ in range(10):
        processor = OverspendProcessor(
            settings=Settings(metrics_port=0, serve_metrics=True, use_genai_prices=False),
            registry=CollectorRegistry(),
        )
        server = processor.metrics_server
        assert server is not None
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert b"overspend_requests_total" in response.read()
        ports.append(server.port)
        processor.shutdown()
    assert time.perf_counter() - began < 1.0
    assert [t for t in threading.enumerate() if t.name == "otel-overspend-metrics"] == []
    for port in ports:  # closed: nothing listens there any more
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


def test_a_shut_down_processor_takes_no_forked_workers_port() -> None:
    """An app that replaced its processor (the old one shut down, still referenced) forks a
    worker: only the live processor serves the worker's port."""
    settings = Settings(metrics_port=0, serve_metrics=True, use_genai_prices=False)
    old = OverspendProcessor(settings=settings, registry=CollectorRegistry())
    old.shutdown()
    new = OverspendProcessor(settings=settings, registry=CollectorRegistry())
    start_worker_servers(1)  # what gunicorn's post_fork runs in a worker
    assert old.metrics_server is None
    assert new.metrics_server is not None


def test_a_second_processor_on_one_registry_fails_clearly() -> None:
    registry = CollectorRegistry()
    OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    with pytest.raises(ValueError, match="already registered"):
        OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)


def test_a_processor_refused_a_taken_registry_leaves_nothing_running() -> None:
    first = make_pipeline(Settings(serve_metrics=False))
    registry = first.registry
    counting = [t for t in threading.enumerate() if t.name == "otel-overspend-counter"]
    with pytest.raises(ValueError, match="already registered"):
        OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    assert [t for t in threading.enumerate() if t.name == "otel-overspend-counter"] == counting
    # The first processor keeps its registration and counts on.
    with first.tracer.start_as_current_span("chat", attributes=USAGE):
        pass
    first.provider.force_flush()
    assert first.total("overspend_llm_calls_total") == 1.0


def test_shutdown_unregisters_so_a_new_processor_takes_the_registry() -> None:
    registry = CollectorRegistry()
    first = OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    with pytest.raises(ValueError, match="already registered"):
        OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    first.shutdown()
    assert registry.get_sample_value("overspend_requests_total") is None  # shutdown unregistered it
    second = OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry)
    provider = TracerProvider()
    provider.add_span_processor(second)
    with provider.get_tracer("t").start_as_current_span("chat", attributes=USAGE):
        pass
    provider.force_flush()
    assert (
        sum(s.value for f in registry.collect() for s in f.samples if s.name == "overspend_llm_calls_total")
        == 1.0
    )
    provider.shutdown()
    assert list(registry.collect()) == []
