"""Streaming beats batch: the aggregator against a pandas Test 3, same 20,000 calls.

Batch: Test 3, the counterfactual, as a one-off pandas script — a DataFrame of (request,
step, tokens in, tokens out), row-wise ``df.apply`` for the cost now and specialized,
``groupby`` by step, the totals.
Streaming: each call priced and added to the ledger as it happens; the diagnosis read
from a snapshot. The budget is on Test 3 itself: an up-to-date answer after one more call
(batch recomputes everything; streaming adds the call and reads a snapshot). The whole job
(ingest all 20k calls, then read Test 3) is printed beside it: ingesting is the cost each
span pays as it ends, which is the hot path's budget, not this one's.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from harness import Row

from otel_overspend.accounting.signals import diagnose
from otel_overspend.calls.conventions import Usage
from otel_overspend.config.components import Components
from otel_overspend.config.settings import Settings

if TYPE_CHECKING:
    from otel_overspend.calls.attribution import Call

REQUESTS = 5_000  # x 4 steps = 20,000 calls
# step, tokens in, jitter in, tokens out, jitter out: each volume is its base plus a uniform
# draw in [0, 2 x jitter]
STEPS = (
    ("rewrite", 200, 30, 50, 10),
    ("rerank", 11_000, 800, 200, 40),
    ("generate", 3_000, 500, 400, 60),
    ("faithfulness", 3_800, 300, 100, 20),
)
PRICES = {"frontier": (3.00, 15.00), "specialist": (0.02, 0.02)}
SPECIALIZE = {
    "rewrite": "specialist",
    "rerank": "specialist",
    "generate": "frontier",
    "faithfulness": "specialist",
}


def workload(seed: int = 42) -> list[tuple[int, str, int, int]]:
    rng = random.Random(seed)
    rows = []
    for request in range(REQUESTS):
        for name, tokens_in, jitter_in, tokens_out, jitter_out in STEPS:
            rows.append(
                (
                    request,
                    name,
                    tokens_in + rng.randint(0, 2 * jitter_in),
                    tokens_out + rng.randint(0, 2 * jitter_out),
                )
            )
    return rows


def batch(rows: list[tuple[int, str, int, int]]) -> float:
    import pandas as pd

    def cost_at(tier: str, tokens_in: int, tokens_out: int) -> float:
        price_in, price_out = PRICES[tier]
        return (tokens_in * price_in + tokens_out * price_out) / 1e6

    df = pd.DataFrame(rows, columns=["req", "step", "tok_in", "tok_out"])
    df["frontier_cost"] = df.apply(lambda r: cost_at("frontier", r.tok_in, r.tok_out), axis=1)
    df["specialized_cost"] = df.apply(lambda r: cost_at(SPECIALIZE[r.step], r.tok_in, r.tok_out), axis=1)
    agg = df.groupby("step").agg(
        cost_now=("frontier_cost", "sum"), cost_specialized=("specialized_cost", "sum")
    )
    return float(1 - agg["cost_specialized"].sum() / agg["cost_now"].sum())


def streaming_setup() -> Components:
    settings = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)
    return Components.from_settings(settings)


def ingest(parts: Components, rows: list[tuple[int, str, int, int]], now: float) -> None:
    attribute = parts.attributor.attribute
    add = parts.ledger.add_call
    for _request, name, tokens_in, tokens_out in rows:
        call: Call = attribute(Usage("acme-frontier", "acme", tokens_in, tokens_out, 0, 0, None), name)
        add(call, now)


def read(parts: Components) -> float:
    window = parts.ledger.snapshot().windows[-1]
    reduction = diagnose(window.calls, window.requests, bands=parts.bands).projected_reduction
    assert reduction is not None
    return reduction


def measure(repeats: int = 5) -> list[Row]:
    rows = workload()
    batch_s, stream_s, refresh_batch_s, refresh_stream_s = [], [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        expected = batch(rows)
        batch_s.append(time.perf_counter() - start)

        parts = streaming_setup()
        start = time.perf_counter()
        ingest(parts, rows, time.time())
        got = read(parts)
        stream_s.append(time.perf_counter() - start)
        assert abs(got - expected) < 1e-9, (got, expected)

        # One more call, then an up-to-date answer.
        start = time.perf_counter()
        ingest(parts, rows[:1], time.time())
        read(parts)
        refresh_stream_s.append(time.perf_counter() - start)
        refresh_batch_s.append(batch_s[-1])
    whole = min(batch_s) / min(stream_s)
    refresh = min(refresh_batch_s) / min(refresh_stream_s)
    return [
        Row(
            "streaming vs pandas Test 3, 20k calls",
            f"x{refresh:,.0f} ({min(refresh_stream_s) * 1e6:.0f} us vs {min(refresh_batch_s) * 1e3:.0f} ms)",
            ">= x100",
            refresh >= 100,
        ),
        Row(
            "  ... incl. ingesting every call",
            f"x{whole:.0f} ({min(stream_s) * 1e3:.0f} ms vs {min(batch_s) * 1e3:.0f} ms)",
            "(ingest: hot path)",
            ok=True,
        ),
    ]


if __name__ == "__main__":
    from harness import print_table

    print_table(measure())
