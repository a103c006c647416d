"""The demo: its request function against hand-computed fractions, and the command end to end."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from otel_overspend import OverspendProcessor, Settings
from otel_overspend.demo import FRONTIER, JUDGE, RERANKER, emit_request, frontier_route

if TYPE_CHECKING:
    from collections.abc import Iterator


pytestmark = [pytest.mark.e2e]
# Hand arithmetic from the mean token volumes (USD per 1M tokens; amounts below in micro-USD,
# i.e. tokens x price):
#   claude-sonnet-4-5 $3 in / $15 out (genai-prices):
#     rewrite        200 x 3 +    50 x 15 =   600 +  750 =  1,350
#     rerank      12,000 x 3 +   200 x 15 = 36,000 + 3000 = 39,000
#     generate     3,500 x 3 +   400 x 15 = 10,500 + 6000 = 16,500
#     faithfulness 4,000 x 3 +   100 x 15 = 12,000 + 1500 = 13,500
#     total 70,350 ($0.07035 a request); fraction (70,350 - 16,500) / 70,350 = 53,850 / 70,350
#   rerank on zerank-2 at the specialist tier default $0.02 / $0.02:
#     rerank (12,000 + 200) x 0.02 = 244; total 1,350 + 244 + 16,500 + 13,500 = 31,594
#     fraction (31,594 - 16,500) / 31,594 = 15,094 / 31,594
#   faithfulness also on gpt-5-nano, $0.05 in / $0.40 out (genai-prices):
#     faithfulness 4,000 x 0.05 + 100 x 0.40 = 200 + 40 = 240; total 1,350 + 244 + 16,500 + 240
#     = 18,334; fraction (18,334 - 16,500) / 18,334 = 1,834 / 18,334
#   equal numbers of all-frontier and specialist-rerank requests in one window:
#     (53,850 + 15,094) / (70,350 + 31,594) = 68,944 / 101,944
ALL_FRONTIER = 53_850 / 70_350  # 0.7655: above 0.5, confirmed
RERANK_SPECIALIZED = 15_094 / 31_594  # 0.4777: suspect
JUDGE_TOO = 1_834 / 18_334  # 0.1000: healthy
MIXED = 68_944 / 101_944  # 0.6763
# Token counts vary uniformly by +-10 % around the means; over 200 requests the sums move by
# well under 1 %, and the fractions by less than 0.01.
TOLERANCE = 0.01
N = 200


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _fraction(registry: CollectorRegistry, window: str) -> float:
    value = registry.get_sample_value("overspend_specialist_eligible_fraction", {"window": window})
    assert value is not None
    return value


def test_request_function_moves_the_fraction_as_computed_by_hand() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    processor = OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry, clock=clock)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    rng = random.Random(1)
    route = frontier_route()

    def requests() -> None:
        for _ in range(N):
            clock.now += 0.05
            emit_request(tracer, route, rng, end_ns=int(clock.now * 1e9))

    try:
        requests()
        assert registry.get_sample_value("overspend_requests_total") == N
        assert _fraction(registry, "5m") == pytest.approx(ALL_FRONTIER, abs=TOLERANCE)
        assert _fraction(registry, "5m") > 0.5
        labels = {"step": "rerank", "model": FRONTIER.name, "tier": "frontier", "provider": "anthropic"}
        assert registry.get_sample_value("overspend_llm_calls_total", labels) == N

        clock.now += 600  # the all-frontier requests leave the 5m window, stay in the 1h one
        route["rerank"] = RERANKER
        requests()
        assert _fraction(registry, "5m") == pytest.approx(RERANK_SPECIALIZED, abs=TOLERANCE)
        assert _fraction(registry, "1h") == pytest.approx(MIXED, abs=TOLERANCE)
        labels = {"step": "rerank", "model": RERANKER.name, "tier": "specialist", "provider": "zeroentropy"}
        assert registry.get_sample_value("overspend_llm_calls_total", labels) == N

        clock.now += 600
        route["faithfulness"] = JUDGE
        requests()
        assert _fraction(registry, "5m") == pytest.approx(JUDGE_TOO, abs=TOLERANCE)
    finally:
        provider.shutdown()


# -- the command, end to end --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OVERSPEND_")}


def _demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "otel_overspend", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


Sample = tuple[str, frozenset[tuple[str, str]], float]


def _scrapes(port: int, process: subprocess.Popen[str]) -> Iterator[list[Sample]]:
    """Every successful scrape of the demo's /metrics while it runs."""
    url = f"http://127.0.0.1:{port}/metrics"
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
            continue
        yield [
            (s.name, frozenset(s.labels.items()), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
        time.sleep(0.25)


def _has(samples: list[Sample], name: str, **labels: str) -> bool:
    wanted = set(labels.items())
    return any(n == name and wanted <= lab for n, lab, _ in samples)


def _value(samples: list[Sample], name: str, **labels: str) -> float | None:
    wanted = set(labels.items())
    return next((v for n, lab, v in samples if n == name and wanted <= lab), None)


def test_demo_command_serves_metrics_and_prints_the_table() -> None:
    port = _free_port()
    process = _demo(
        *("--port", str(port), "--rate", "50", "--duration", "8"),
        *("--specialize-rerank-after", "4", "--report-every", "2", "--seed", "1"),
    )
    before: list[float] = []
    switched = False
    try:
        for samples in _scrapes(port, process):
            frontier = {"tier": "frontier", "model": FRONTIER.name, "provider": "anthropic"}
            if _has(samples, "overspend_llm_calls_total", model=RERANKER.name):
                assert _has(
                    samples,
                    "overspend_llm_cost_usd_total",
                    step="rerank",
                    model=RERANKER.name,
                    tier="specialist",
                    provider="zeroentropy",
                )
                switched = True
            elif all(
                _has(samples, name, step=step, **frontier)
                for name in ("overspend_llm_calls_total", "overspend_llm_cost_usd_total")
                for step in ("rewrite", "rerank", "generate", "faithfulness")
            ):
                fraction = _value(samples, "overspend_specialist_eligible_fraction", window="5m")
                assert fraction is not None
                before.append(fraction)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert before, "no scrape before the switch"
    assert min(before) > 0.5
    assert switched, "no zerank-2 series after the switch"
    assert f"curl http://127.0.0.1:{port}/metrics" in stdout
    assert "rerank now runs on zerank-2" in stdout
    assert stdout.count("specialist-eligible fraction") >= 3
    for step in ("rewrite", "rerank", "generate", "faithfulness"):
        assert f"   {step} " in stdout
    assert "otel-overspend demo: stopped" in stdout


def test_demo_keeps_running_on_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _demo("--port", str(port), "--duration", "1", "--report-every", "1")
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "cannot serve /metrics" in stderr
    assert f"is port {port} on 127.0.0.1 busy?" in stdout
    assert "specialist-eligible fraction" in stdout
