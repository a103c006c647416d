"""Exact under concurrency: 8 threads, and 1,000 asyncio tasks each in its own step, give
totals equal to the sum of the generated costs, computed here by hand from known prices;
no step leaks across threads or tasks."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from otel_overspend import Settings, step
from otel_overspend.config.settings import Price

from conftest import Pipeline, make_pipeline

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.trace import Tracer
    from opentelemetry.util.types import AttributeValue

#: USD per 1M tokens (input, output): whole numbers, so a call's cost is a whole number of
#: micro-dollars and the expected totals are exact integers.
PRICES = {"acme-a": (1, 2), "acme-b": (3, 15)}
THREADS = 8
CALLS_PER_THREAD = 3_000
CALLS_PER_REQUEST = 3
TASKS = 1_000
CALLS_PER_TASK = 3


def _pipeline(max_steps: int) -> Pipeline:
    return make_pipeline(
        Settings(
            serve_metrics=False,
            use_genai_prices=False,
            use_span_cost=False,
            max_steps=max_steps,
            model_tiers={"acme-*": "frontier"},
            model_prices={model: Price(input=i, output=o) for model, (i, o) in PRICES.items()},
        )
    )


def _micro_usd(model: str, tokens_in: int, tokens_out: int) -> int:
    price_in, price_out = PRICES[model]
    return tokens_in * price_in + tokens_out * price_out


def _by_step(p: Pipeline) -> tuple[Counter[str], dict[str, float], Counter[str]]:
    calls: Counter[str] = Counter()
    cost: dict[str, float] = {}
    tokens: Counter[str] = Counter()
    for family in p.registry.collect():
        for sample in family.samples:
            label = sample.labels.get("step", "")
            if sample.name == "overspend_llm_calls_total":
                calls[label] += int(sample.value)
            elif sample.name == "overspend_llm_cost_usd_total":
                cost[label] = cost.get(label, 0.0) + sample.value
            elif sample.name == "overspend_llm_tokens_total" and sample.labels["kind"] == "input":
                tokens[label] += int(sample.value)
    return calls, cost, tokens


def _call(tracer: Tracer, model: str, tokens_in: int, tokens_out: int) -> None:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
        # The instrumentation's own cost is ignored here (use_span_cost=False): a wrong
        # value on the span must not leak into the totals.
        "gen_ai.usage.cost": 999.0,
    }
    with tracer.start_as_current_span("chat", attributes=attributes):
        pass


def _assert_exact(p: Pipeline, calls: Counter[str], micro: Counter[str], tokens: Counter[str]) -> None:
    got_calls, got_cost, got_tokens = _by_step(p)
    assert got_calls == calls  # no step leaked: every call under the step that made it
    assert got_tokens == tokens
    for name, expected_micro in micro.items():
        expected = expected_micro / 1e6
        assert round(got_cost[name], 2) == round(expected, 2)  # to the cent
        assert abs(got_cost[name] - expected) < 1e-9 * max(1.0, expected)  # and much closer
    total = sum(micro.values()) / 1e6
    assert abs(sum(got_cost.values()) - total) < 0.005


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Switch threads every few bytecodes instead of every 5 ms: races show up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.slow  # 24,000 calls with a thread switch every microsecond: seconds
@pytest.mark.usefixtures("frequent_switches")
def test_eight_threads_count_exactly() -> None:
    p = _pipeline(max_steps=THREADS * 3)
    tracer = p.tracer
    calls: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    micro: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    tokens: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()

    def work(t: int) -> None:
        try:
            start.wait()
            outer = step(f"thread-{t}")
            inner = step(f"thread-{t}-inner")
            for j in range(CALLS_PER_THREAD):
                model = "acme-a" if (t + j) % 2 else "acme-b"
                tokens_in, tokens_out = 100 + 7 * t + j % 50, 10 + j % 13
                name = outer.name if j % 3 else inner.name
                with outer:
                    if j % 3:
                        _call(tracer, model, tokens_in, tokens_out)
                    else:
                        with inner:
                            _call(tracer, model, tokens_in, tokens_out)
                calls[t][name] += 1
                micro[t][name] += _micro_usd(model, tokens_in, tokens_out)
                tokens[t][name] += tokens_in
        except BaseException as exc:
            errors.append(exc)

    def scrape() -> None:  # reads the ledger all along, under the same lock the threads write
        while not done.is_set():
            p.registry.collect()
            p.processor.snapshot()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    scraper = threading.Thread(target=scrape)
    for thread in (*threads, scraper):
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    done.set()
    scraper.join()
    assert errors == []
    _assert_exact(p, sum(calls, Counter()), sum(micro, Counter()), sum(tokens, Counter()))
    # Each call is its own root span here: one request each.
    assert p.processor.snapshot().requests_total == THREADS * CALLS_PER_THREAD
    assert p.processor.status()[1].dropped == {}


@pytest.mark.usefixtures("frequent_switches")
def test_requests_under_threads_are_exact() -> None:
    p = _pipeline(max_steps=4)
    tracer = p.tracer
    per_thread = 500

    def work(t: int) -> None:
        for j in range(per_thread):
            with tracer.start_as_current_span("request"), step("rerank"):
                for _ in range(CALLS_PER_REQUEST):
                    _call(tracer, "acme-b", 1000 + t, 10 + j % 5)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = p.processor.snapshot()
    assert snap.requests_total == THREADS * per_thread
    # Every request made exactly 3 frontier calls: all in the "3" bucket of the histogram.
    bounds = snap.frontier_calls_hist.bounds
    assert snap.frontier_calls_hist.counts[bounds.index(3.0)] == THREADS * per_thread
    assert p.sample("overspend_open_requests_evicted_total", {"reason": "capacity"}) == 0


def test_a_thousand_asyncio_tasks_each_in_its_own_step() -> None:
    p = _pipeline(max_steps=TASKS)
    tracer = p.tracer

    async def task(i: int) -> None:
        async with step(f"task-{i}"):
            with tracer.start_as_current_span("request"):
                for k in range(CALLS_PER_TASK):
                    attributes: dict[str, AttributeValue] = {
                        "gen_ai.request.model": "acme-a" if i % 2 else "acme-b",
                        "gen_ai.usage.input_tokens": 1_000 + i,
                        "gen_ai.usage.output_tokens": i % 100 + k,
                    }
                    with tracer.start_as_current_span("chat", attributes=attributes):
                        await asyncio.sleep(0)  # every other task runs while this call is open
                    await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(TASKS)))

    asyncio.run(main())
    calls: Counter[str] = Counter()
    micro: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for i in range(TASKS):
        name = f"task-{i}"
        model = "acme-a" if i % 2 else "acme-b"
        for k in range(CALLS_PER_TASK):
            calls[name] += 1
            micro[name] += _micro_usd(model, 1_000 + i, i % 100 + k)
            tokens[name] += 1_000 + i
    _assert_exact(p, calls, micro, tokens)
    assert p.processor.snapshot().requests_total == TASKS
    assert p.sample("overspend_label_overflow_total", {"label": "step"}) == 0
