"""Faults around the processor never reach the app: busy ports, scrapers that hang up, an
unreachable OTLP collector, a downstream span exporter that raises or hangs, shutdown and
flush under load, and a wall clock that jumps."""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, OverspendSpanExporter, Settings, step
from otel_overspend.hooks import processor as processor_module

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util.types import AttributeValue
    from typing_extensions import Self

USAGE: dict[str, AttributeValue] = {
    "gen_ai.request.model": "acme-1",
    "gen_ai.usage.input_tokens": 1_000,
    "gen_ai.usage.output_tokens": 100,
}
# 1,000 input and 100 output tokens at the frontier default ($3 / $15 per 1M): $0.0045.
CALL_MICRO_USD = 4_500
SETTINGS = Settings(serve_metrics=False, use_genai_prices=False, model_tiers={"acme-*": "frontier"})


def _calls(processor: OverspendProcessor) -> int:
    return int(sum(stats[0] for stats in processor.snapshot().totals.values()))


def _cost(processor: OverspendProcessor) -> float:
    from otel_overspend.accounting.ledger import COST

    return sum(stats[COST] for stats in processor.snapshot().totals.values())


# -- the endpoint -------------------------------------------------------------------------------
def _busy(n: int) -> tuple[int, list[socket.socket]]:
    """``n`` consecutive ports held by this test."""
    for _ in range(100):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        base = first.getsockname()[1]
        held = [first]
        try:
            for port in range(base + 1, base + n):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in held:
                sock.close()
            continue
        for sock in held:
            sock.listen()
        return base, held
    pytest.fail("no consecutive free ports")


def test_a_busy_port_moves_to_the_next_of_the_range(caplog: pytest.LogCaptureFixture) -> None:
    base, held = _busy(1)
    try:
        with caplog.at_level(logging.WARNING, logger="otel_overspend"):
            processor = OverspendProcessor(
                settings=Settings(metrics_port=base, metrics_port_range=3, use_genai_prices=False),
                registry=CollectorRegistry(),
            )
        assert processor.metrics_server is not None
        assert base < processor.metrics_server.port <= base + 2  # the next free one of the range
        assert not caplog.records
        processor.shutdown()
    finally:
        for sock in held:
            sock.close()


def test_a_busy_range_logs_one_warning_and_the_app_runs(caplog: pytest.LogCaptureFixture) -> None:
    base, held = _busy(3)
    try:
        with caplog.at_level(logging.WARNING, logger="otel_overspend"):
            processor = OverspendProcessor(
                settings=Settings(metrics_port=base, metrics_port_range=3, use_genai_prices=False),
                registry=CollectorRegistry(),
            )
        assert processor.metrics_server is None
        assert len(caplog.records) == 1
        assert f"{base}-{base + 2}" in caplog.records[0].getMessage()
        provider = TracerProvider()
        provider.add_span_processor(processor)
        with provider.get_tracer("t").start_as_current_span("chat", attributes=USAGE):
            pass
        assert _calls(processor) == 1
        provider.shutdown()
    finally:
        for sock in held:
            sock.close()


def test_scrapers_that_hang_up_do_not_disturb_the_endpoint(capfd: pytest.CaptureFixture[str]) -> None:
    processor = OverspendProcessor(
        settings=Settings(metrics_port=0, use_genai_prices=False), registry=CollectorRegistry()
    )
    server = processor.metrics_server
    assert server is not None
    for payload in (
        b"",
        b"GET /metrics HTTP/1.1\r\n",
        b"\x16\x03\x01garbage",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(payload)
                # Hang up without reading: a reset for the server's reply.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert b"overspend_llm_calls" in response.read()
    processor.shutdown()
    assert "Traceback" not in capfd.readouterr().err


# -- OTLP metrics push to nowhere ------------------------------------------------------------------
OTLP_APP = textwrap.dedent(
    """
    import json, time

    from opentelemetry.sdk.trace import TracerProvider

    from otel_overspend import OverspendProcessor, Settings

    processor = OverspendProcessor(settings=Settings(serve_metrics=False, use_genai_prices=False))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    attributes = {
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1
    }
    started = time.monotonic()
    spans = 0
    slowest = 0.0
    while time.monotonic() - started < 1.5:  # several push intervals, every push failing
        t = time.perf_counter()
        with tracer.start_as_current_span("chat", attributes=attributes):
            pass
        slowest = max(slowest, time.perf_counter() - t)
        spans += 1
    counted = sum(stats[0] for stats in processor.snapshot().totals.values())
    print(json.dumps({"spans": spans, "counted": counted, "slowest_s": slowest}), flush=True)
    """
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_unreachable_collector_costs_the_app_nothing(tmp_path: Path, protocol: str) -> None:
    import json

    script = tmp_path / "app.py"
    script.write_text(OTLP_APP, encoding="utf-8")
    port = _closed_port()
    path = "/v1/metrics" if protocol.startswith("http") else ""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERSPEND_", "OTEL_"))}
    env |= {
        "OVERSPEND_OTLP_METRICS": "true",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{port}{path}",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_METRIC_EXPORT_TIMEOUT": "1000",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counted"] == report["spans"] > 0
    assert report["slowest_s"] < 0.5  # a failing push never blocks the span path
    assert elapsed < 20, f"exit took {elapsed:.1f} s with the collector down"


# -- downstream span exporters that fail ---------------------------------------------------------
class _Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("collector exploded")

    def shutdown(self) -> None:
        pass


class _Hanging(SpanExporter):
    HANG_S = 60.0

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(self.HANG_S)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


class _Slow(InMemorySpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        time.sleep(0.002)
        return super().export(spans)


def _emit(tracer: trace.Tracer, threads: int, per_thread: int) -> float:
    """Spans from ``threads`` threads; the slowest ``span.end()`` seen, in seconds."""
    slowest = [0.0] * threads
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            with step("rerank"):
                for _ in range(per_thread):
                    span = tracer.start_span("chat", attributes=USAGE)
                    started = time.perf_counter()
                    span.end()
                    slowest[t] = max(slowest[t], time.perf_counter() - started)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return max(slowest)


@pytest.mark.parametrize("batch", [True, False])
def test_a_raising_downstream_exporter_never_reaches_the_app(batch: bool) -> None:
    processor = OverspendProcessor(settings=SETTINGS, registry=CollectorRegistry())
    provider = TracerProvider()
    provider.add_span_processor(processor)
    wrapped = OverspendSpanExporter(_Raising(), processor=processor)
    provider.add_span_processor(BatchSpanProcessor(wrapped) if batch else SimpleSpanProcessor(wrapped))
    logging.getLogger("opentelemetry").disabled = True  # the SDK logs each failed export
    try:
        _emit(provider.get_tracer("t"), threads=4, per_thread=500)
        assert provider.force_flush(5_000)
        assert _calls(processor) == 2_000
        provider.shutdown()
    finally:
        logging.getLogger("opentelemetry").disabled = False
    assert _cost(processor) == pytest.approx(2_000 * CALL_MICRO_USD / 1e6)


def test_a_hanging_downstream_exporter_never_blocks_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor_module, "MAX_ANNOTATIONS", 1_000)
    processor = OverspendProcessor(settings=SETTINGS, registry=CollectorRegistry())
    hanging = _Hanging()
    batch = BatchSpanProcessor(
        OverspendSpanExporter(hanging, processor=processor),
        max_queue_size=256,
        max_export_batch_size=64,
        schedule_delay_millis=10,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch)
    logging.getLogger("opentelemetry").disabled = True  # "queue full, dropping span", once a span
    try:
        tracer = provider.get_tracer("t")
        tracer.start_span("first").end()
        assert hanging.entered.wait(5)  # the exporter is stuck before the app's spans begin
        slowest = _emit(tracer, threads=4, per_thread=2_000)
    finally:
        logging.getLogger("opentelemetry").disabled = False
    assert hanging.exported == 0  # still stuck: no span's end waited for it to return,
    assert slowest < _Hanging.HANG_S / 30  # or that end would have taken the whole hang
    assert _calls(processor) == 8_000  # every call counted, whatever the exporter does
    # Attributions waiting for an exporter that never asks stay within their bound.
    assert processor._annotations is not None
    assert len(processor._annotations) <= 1_000 + 4  # checked without a lock: one extra per thread at most
    started = time.monotonic()
    assert processor.force_flush(100) is True
    processor.shutdown()
    assert time.monotonic() - started < 1
    hanging.release.set()
    started = time.monotonic()
    provider.shutdown()
    assert time.monotonic() - started < 10
    assert hanging.exported > 0


# -- shutdown and flush under load ------------------------------------------------------------------
class _Load:
    """4 app threads making LLM spans, and a scraper, until stopped."""

    def __init__(self, tracer: trace.Tracer, url: str) -> None:
        self.tracer = tracer
        self.url = url
        self.stop = threading.Event()
        self.emitted = [0] * 4
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self.emit, args=(t,)) for t in range(4)]
        self.threads.append(threading.Thread(target=self.scrape))

    def emit(self, t: int) -> None:
        try:
            with step("rerank"):
                while not self.stop.is_set():
                    for _ in range(20):  # about 2,000 spans/s a thread: a busy app, not a tight loop
                        with self.tracer.start_as_current_span("chat", attributes=USAGE):
                            pass
                        self.emitted[t] += 1
                    self.stop.wait(0.01)
        except BaseException as exc:
            self.errors.append(exc)

    def _scraped(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                response.read()
        except (OSError, urllib.error.URLError):
            return False  # the endpoint is gone: shut down
        return True

    def scrape(self) -> None:
        while not self.stop.is_set() and self._scraped():
            pass

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_shutdown_and_force_flush_under_load_return_in_time() -> None:
    processor = OverspendProcessor(
        settings=Settings(metrics_port=0, use_genai_prices=False, model_tiers={"acme-*": "frontier"}),
        registry=CollectorRegistry(),
    )
    exporter = _Slow()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(BatchSpanProcessor(OverspendSpanExporter(exporter, processor=processor)))
    server = processor.metrics_server
    assert server is not None
    with _Load(provider.get_tracer("t"), server.url) as load:
        time.sleep(0.3)
        flushed, provider_flush_s = _timed(lambda: provider.force_flush(5_000))
        assert flushed is True
        flushed, processor_flush_s = _timed(lambda: processor.force_flush(1_000))
        assert flushed is True
        _, processor_shutdown_s = _timed(processor.shutdown)
        _, provider_shutdown_s = _timed(provider.shutdown)  # the app threads still make spans
        time.sleep(0.1)
    assert load.errors == []
    assert processor_flush_s < 0.1
    assert processor_shutdown_s < 2
    # The SDK's BatchSpanProcessor.force_flush exports until its queue is empty whatever its
    # time-out (opentelemetry-python #4568): within it here, as the exporter keeps up.
    assert provider_flush_s < 5.5
    assert provider_shutdown_s < 10
    assert processor.metrics_server is None
    assert _calls(processor) == sum(load.emitted)  # every span counted, before and after shutdown
    assert len(exporter.get_finished_spans()) > 0


# -- a clock that jumps ----------------------------------------------------------------------------------
class _JumpingClock:
    """Wall time plus an offset the test changes: what the app's clock reads after an NTP step."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def ns(self) -> int:
        return int(self() * 1e9)


def _counters(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in registry.collect():
        if family.type not in {"counter", "histogram"}:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_created",)):
                continue
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture
def jumping() -> Iterator[tuple[_JumpingClock, OverspendProcessor, TracerProvider, InMemorySpanExporter]]:
    clock = _JumpingClock()
    processor = OverspendProcessor(settings=SETTINGS, registry=CollectorRegistry(), clock=clock)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield clock, processor, provider, exporter
    provider.shutdown()


def test_a_clock_that_jumps_changes_no_count(
    jumping: tuple[_JumpingClock, OverspendProcessor, TracerProvider, InMemorySpanExporter],
) -> None:
    clock, processor, provider, exporter = jumping
    tracer = provider.get_tracer("t")
    registry = processor.registry
    day, hour = 86_400.0, 3_600.0
    requests = calls = spans = 0
    previous = _counters(registry)

    def request(n_calls: int, *, jump_to: float | None = None) -> None:
        """One request of ``n_calls`` calls; the clock jumps to ``jump_to`` before its last call ends."""
        nonlocal requests, calls, spans
        root = tracer.start_span("request", start_time=clock.ns())
        context = trace.set_span_in_context(root)
        for k in range(n_calls):
            span = tracer.start_span("chat", attributes=USAGE, context=context, start_time=clock.ns())
            if jump_to is not None and k == n_calls - 1:
                clock.offset_s = jump_to
            span.end(end_time=clock.ns())
        root.end(end_time=clock.ns())
        requests += 1
        calls += n_calls
        spans += n_calls + 1

    def check() -> None:
        nonlocal previous
        snap = processor.snapshot()
        assert _calls(processor) == calls  # nothing lost, nothing counted twice
        assert round(_cost(processor), 6) == round(calls * CALL_MICRO_USD / 1e6, 6)
        assert snap.requests_total == requests
        current = _counters(registry)
        for key, value in previous.items():
            assert current.get(key, 0.0) >= value, key  # counters never go down
        previous = current
        for family in registry.collect():
            for sample in family.samples:
                assert math.isfinite(sample.value) or sample.labels.get("le") == "+Inf", sample
        for window in snap.windows:
            assert sum(stats[0] for stats in window.calls.values()) <= calls
        assert len(exporter.get_finished_spans()) == spans  # the app's spans all exported

    for offset in (0.0, 2 * day, 2 * day - hour, 0.0, -hour):
        clock.offset_s = offset
        for _ in range(20):
            request(3)
        check()
        # A request that straddles the next jump: its calls end on both sides of it.
        request(3, jump_to=offset + 2 * day)
        check()
        clock.offset_s = offset
        request(3, jump_to=offset - hour)
        check()
