"""``otel-overspend report --jobs``: one process against two, side by side, on the same files.

    .venv/bin/python benchmarks/bench_report_jobs.py                  # 300k spans a shape
    .venv/bin/python benchmarks/bench_report_jobs.py --spans 1000000 --repeat 5
    .venv/bin/python benchmarks/bench_report_jobs.py --protobuf     # the same spans as protobuf too

Two shapes, written by ``bench_report``'s generator: collector batches (100 requests a
line, 600 spans, two thirds of them LLM calls) and one trace a line (a root and its four
LLM calls: 80 % LLM spans). For each, reports with ``jobs=1`` and ``jobs=2`` are run in
turn, ``--repeat`` times (with ``--protobuf``, the same spans written as the collector's
``format: proto`` too), in this process (settings, imports and price lookups paid
before), and the wall times printed with their ratio: the best of each, and the median of
the ratios of the runs taken side by side. The two reports are checked to be the same
(every field of the JSON rendering but the most spans held at once, which is per process).

The machine is shared: what two processes can get is measured in the same run, as the
ratio of two pure-Python loops run one after the other and then at once (``host``): the
``--jobs 2`` ratio cannot exceed it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench_report import (
    FRONTIER,
    RERANKER,
    STEPS,
    WEEK_S,
    WEEK_START_S,
    _llm_span,
    _other_span,
    generate,
    warm_up,
)
from bench_report import RESOURCE as RESOURCE_PREFIX
from bench_report_shapes import to_protobuf

from otel_overspend.config.settings import Settings
from otel_overspend.report.files import Problems
from otel_overspend.report.render import render
from otel_overspend.report.run import build_report

if TYPE_CHECKING:
    from otel_overspend.report.run import Report

_CLOSE = "]}]}]}\n"


def one_trace_a_line(path: Path, spans: int, *, seed: int = 11) -> None:
    """A root span and its four LLM calls a line (80 % LLM spans), requests spread over a week."""
    rng = random.Random(seed)
    n = max(1, spans // 5)
    gap_ns = WEEK_S * 1_000_000_000 // n
    with path.open("w") as out:
        for i in range(n):
            t0 = WEEK_START_S * 1_000_000_000 + i * gap_ns
            trace, root = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64) | 1:016x}"
            body, t = [], t0 + 1_000_000
            for step, tin, tout in STEPS:
                model = RERANKER if step == "rerank" and i >= n * 4 // 7 else FRONTIER
                end = t + rng.randint(200_000_000, 2_000_000_000)
                body.append(
                    _llm_span(
                        (trace, f"{rng.getrandbits(64) | 1:016x}", root),
                        step,
                        model,
                        (round(tin * rng.uniform(0.9, 1.1)), round(tout * rng.uniform(0.9, 1.1))),
                        (t, end),
                    )
                )
                t = end + 1_000_000
            body.append(_other_span(trace, root, "", t0, t + 1_000_000))
            out.write(RESOURCE_PREFIX + ",".join(body) + _CLOSE)


def _burn(n: int) -> float:
    started = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - started


def host_ratio(n: int = 15_000_000) -> float:
    """Serial over parallel wall time of two busy loops: what two processes get here now."""
    started = time.perf_counter()
    _burn(n)
    _burn(n)
    serial = time.perf_counter() - started
    with multiprocessing.get_context("fork").Pool(2) as pool:
        started = time.perf_counter()
        pool.map(_burn, [n, n])
        parallel = time.perf_counter() - started
    return serial / parallel


def _comparable(report: Report) -> str:
    doc = json.loads(render(report, "json"))
    doc["inputs"].pop("held_spans_peak")
    return json.dumps(doc, sort_keys=True)


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its children that have ended."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def compare(path: Path, settings: Settings, repeat: int) -> None:
    walls: dict[int, list[float]] = {1: [], 2: []}
    cpus: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    reports: dict[int, str] = {}
    hosts = []
    for _ in range(repeat):
        hosts.append(host_ratio())
        for jobs in (1, 2):
            started, (own, children) = time.perf_counter(), _cpu()
            report = build_report([path], settings=settings, period="day", problems=Problems(), jobs=jobs)
            walls[jobs].append(time.perf_counter() - started)
            own_after, children_after = _cpu()
            cpus[jobs].append((own_after - own, children_after - children))
            reports[jobs] = _comparable(report)
            spans = report.inputs.spans
    ratios = [one / two for one, two in zip(walls[1], walls[2], strict=True)]
    print(
        f"{path.name}: {spans:,} spans, {path.stat().st_size / 1e6:,.0f} MB; "
        f"jobs=1 best {min(walls[1]):.2f} s ({spans / min(walls[1]):,.0f} spans/s), "
        f"jobs=2 best {min(walls[2]):.2f} s ({spans / min(walls[2]):,.0f} spans/s); "
        f"ratio of bests {min(walls[1]) / min(walls[2]):.2f}x, median ratio {statistics.median(ratios):.2f}x "
        f"(runs: {', '.join(f'{r:.2f}' for r in ratios)}); host gave two processes "
        f"{statistics.median(hosts):.2f}x (runs: {', '.join(f'{h:.2f}' for h in hosts)}); "
        f"reports identical: {'yes' if reports[1] == reports[2] else 'NO'}",
        flush=True,
    )
    one_cpu = min(own + children for own, children in cpus[1])
    main_cpu, workers_cpu = min(cpus[2], key=sum)
    print(
        f"    CPU: jobs=1 {one_cpu:.2f} s; jobs=2 {main_cpu + workers_cpu:.2f} s in all "
        f"({main_cpu:.2f} s in the main process, {workers_cpu:.2f} s in the workers): on two free "
        f"cores about {one_cpu / (main_cpu + workers_cpu / 2):.2f}x (jobs=1 CPU over the main "
        "process's CPU plus half the workers'); load average now "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=300_000, help="spans a shape (default: 300000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--protobuf", action="store_true", help="each shape as protobuf records too")
    args = parser.parse_args()
    settings = Settings(serve_metrics=False)
    with tempfile.TemporaryDirectory() as tmp:
        batches, lines = Path(tmp) / "collector-batches.json", Path(tmp) / "one-trace-a-line.json"
        generate(batches, args.spans)
        one_trace_a_line(lines, args.spans)
        files = [batches, lines]
        if args.protobuf:
            for path in (batches, lines):
                files.append(path.with_suffix(".pb"))
                to_protobuf(path, files[-1])
        warm_up(batches, settings)
        for path in files:
            compare(path, settings, args.repeat)


if __name__ == "__main__":
    main()
