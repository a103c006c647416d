"""The OpenTelemetry metrics path: observable instruments read the same ledger."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_overspend import Settings, record_oracle_check, step

from conftest import make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pytest


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = [
                    (dict(p.attributes or {}), float(p.value))  # type: ignore[union-attr]
                    for p in metric.data.data_points
                ]
    return out


def test_otel_metrics_match_the_seed_fixture() -> None:
    reader = InMemoryMetricReader()
    settings = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)
    p = make_pipeline(settings, meter_provider=MeterProvider(metric_readers=[reader]))
    fixture = (
        ("rewrite", 200, 50),
        ("rerank", 12000, 200),
        ("generate", 3500, 400),
        ("faithfulness", 4000, 100),
    )
    for _ in range(10):
        with p.tracer.start_as_current_span("request"):
            for name, tokens_in, tokens_out in fixture:
                with step(name), p.tracer.start_as_current_span("chat") as span:
                    span.set_attributes(
                        {
                            "gen_ai.request.model": "acme-frontier",
                            "gen_ai.usage.input_tokens": tokens_in,
                            "gen_ai.usage.output_tokens": tokens_out,
                        }
                    )
    points = _points(reader)
    # Cost per request by hand: (200*3 + 50*15 + 12000*3 + 200*15 + 3500*3 + 400*15 + 4000*3 + 100*15) / 1e6
    # = (600 + 750 + 36000 + 3000 + 10500 + 6000 + 12000 + 1500) / 1e6 = 0.07035 USD.
    total = sum(value for _, value in points["overspend.llm.cost"])
    assert abs(total - 10 * 0.07035) < 1e-9
    # Fraction: (0.07035 - 0.0165) / 0.07035 = 0.765458...
    fractions = {attrs["window"]: v for attrs, v in points["overspend.specialist_eligible_fraction"]}
    assert set(fractions) == {"5m", "1h", "1d", "7d"}
    for value in fractions.values():
        assert abs(value - 0.053850 / 0.07035) < 1e-9
    levels = points["overspend.signal_level"]
    assert levels
    assert all(value == 2 for _, value in levels)
    tokens = {attrs["kind"]: 0.0 for attrs, _ in points["overspend.llm.tokens"]}
    for attrs, value in points["overspend.llm.tokens"]:
        tokens[attrs["kind"]] += value
    assert tokens["input"] == 10 * (200 + 12000 + 3500 + 4000)
    assert tokens["output"] == 10 * (50 + 200 + 400 + 100)


def test_otel_metrics_are_off_by_default() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    assert p.processor.otel_metrics is None


def _prometheus_name(family: str) -> str:
    """The OTel instrument a /metrics family is pushed as (see otel_overspend.exporters.otlp)."""
    own = {
        "overspend_llm_calls": "overspend.llm.calls",
        "overspend_llm_cost_usd": "overspend.llm.cost",
        "overspend_llm_specialized_cost_usd": "overspend.llm.specialized_cost",
        "overspend_llm_cost_without_counterfactual_usd": "overspend.llm.cost_without_counterfactual",
        "overspend_unpriced_llm_calls": "overspend.llm.unpriced_calls",
        "overspend_llm_tokens": "overspend.llm.tokens",
    }
    return own.get(family, family.replace("_", ".", 1))


def test_otlp_carries_every_family_of_the_metrics_endpoint_with_its_labels() -> None:
    reader = InMemoryMetricReader()
    p = make_pipeline(Settings(serve_metrics=False), meter_provider=MeterProvider(metric_readers=[reader]))
    with p.tracer.start_as_current_span("request"), step("rerank"):
        with p.tracer.start_as_current_span("chat") as span:
            span.set_attributes({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100})
        with p.tracer.start_as_current_span("chat") as span:
            span.set_attributes({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": -1})  # a drop
    record_oracle_check("rerank", agreed=False)  # the look-alike patterns' families too
    p.processor.observations.settle(everything=True)
    p.provider.force_flush()
    points = _points(reader)
    families = list(p.processor.collector.collect())
    assert len(families) > 20
    patterns = {"overspend_step_request_seconds", "overspend_oracle_checks", "overspend_pattern_info"}
    assert patterns <= {family.name for family in families if family.samples}
    for family in families:
        if family.type == "histogram":
            for part in ("bucket", "sum", "count"):
                name = f"{_prometheus_name(family.name)}.{part}"
                keys = {frozenset(s.labels) for s in family.samples if s.name == f"{family.name}_{part}"}
                assert {frozenset(attrs) for attrs, _ in points.get(name, [])} == keys, name
            continue
        name = _prometheus_name(family.name)
        assert name in points or not family.samples, family.name
        want = {
            (frozenset(s.labels.items()), s.value)
            for s in family.samples
            if s.name in (family.name, f"{family.name}_total")
        }
        got = {
            (frozenset((k, str(v)) for k, v in attrs.items()), value) for attrs, value in points.get(name, [])
        }
        assert got == want, family.name


def test_otlp_metrics_go_over_http_when_the_protocol_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf sends the metrics over HTTP (a real
    exporter to a real local server), not over gRPC."""
    from otel_overspend.exporters.otlp import default_meter_provider

    with _otlp_receiver() as (endpoint, posts):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        provider = default_meter_provider()
        p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False), meter_provider=provider)
        with (
            step("rerank"),
            p.tracer.start_as_current_span("chat", attributes={"gen_ai.usage.input_tokens": 5}),
        ):
            pass
        assert provider.force_flush()
        provider.shutdown()
        p.provider.shutdown()
    assert posts
    assert {post.path for post in posts} == {"/v1/metrics"}
    assert {post.content_type for post in posts} == {"application/x-protobuf"}


def test_shutdown_stops_what_the_processor_pushed_to_an_apps_meter_provider() -> None:
    reader = InMemoryMetricReader()
    p = make_pipeline(
        Settings(serve_metrics=False, use_genai_prices=False),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    with step("rerank"), p.tracer.start_as_current_span("chat", attributes={"gen_ai.usage.input_tokens": 5}):
        pass
    p.provider.force_flush()
    assert [value for _, value in _points(reader)["overspend.llm.calls"]] == [1.0]
    p.processor.shutdown()
    # The instruments stay on the app's provider; a stopped processor reports no series.
    assert reader.get_metrics_data() is None


def test_the_meter_provider_a_processor_made_pushes_last_at_shutdown_and_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``otlp_metrics`` the processor makes its own meter provider (a real OTLP/HTTP
    exporter to a local server here): shutdown() pushes the last counts and stops its thread."""

    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if "PeriodicExportingMetricReader" in t.name]

    before = readers()
    with _otlp_receiver() as (endpoint, posts):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        # The reader's own period is a minute: only shutdown() pushes within this test.
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
        p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False, otlp_metrics=True))
        assert len(readers()) == len(before) + 1
        with (
            step("rerank"),
            p.tracer.start_as_current_span("chat", attributes={"gen_ai.usage.input_tokens": 5}),
        ):
            pass
        assert posts == []
        p.processor.shutdown()
    assert readers() == before
    assert _pushed_calls(posts) == [1]


_NEVER_SHUT_DOWN = """
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step

provider = TracerProvider(shutdown_on_exit=False)  # nothing shuts the processor down
settings = Settings(serve_metrics=False, use_genai_prices=False, otlp_metrics=True)
provider.add_span_processor(OverspendProcessor(settings=settings, registry=CollectorRegistry()))
with step("rerank"), provider.get_tracer("app").start_as_current_span(
    "chat", attributes={"gen_ai.usage.input_tokens": 5}
):
    pass
"""


def test_an_app_that_never_shuts_the_processor_down_still_pushes_its_last_counts(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(_NEVER_SHUT_DOWN, encoding="utf-8")
    with _otlp_receiver() as (endpoint, posts):
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "60000",  # only the push at exit within the run
        }
        result = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 0, result.stderr
    assert _pushed_calls(posts) == [1]


def _pushed_calls(posts: list[_Post]) -> list[int | float]:
    request = ExportMetricsServiceRequest.FromString(b"".join(post.body for post in posts))
    return [
        point.as_int or point.as_double
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "overspend.llm.calls"
        for point in metric.sum.data_points
    ]


class _Post(NamedTuple):
    path: str
    content_type: str
    body: bytes


@contextlib.contextmanager
def _otlp_receiver() -> Iterator[tuple[str, list[_Post]]]:
    """A local OTLP/HTTP endpoint: its URL, and what was posted to it."""
    posts: list[_Post] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append(_Post(self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            del args

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts
    finally:
        server.shutdown()
        server.server_close()
