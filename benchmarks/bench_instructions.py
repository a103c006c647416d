"""Instructions, not seconds: the hot path and the offline report counted by callgrind.

    .venv/bin/python benchmarks/bench_instructions.py            # both (about 12 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_instructions.py report     # one of: hot-path, report, floor, llm

On a shared host the same code's CPU time moves by a factor of two or more within an hour
(the other figures are ratios measured side by side for that reason); the instructions a
piece of work executes do not. Each measurement runs in its own process under
``valgrind --tool=callgrind``, which counts only inside the one ``functools.reduce`` call
that does the work (``--toggle-collect``): imports, warm-up and other threads are left
out. What it cannot see is how long an instruction takes (cache misses, the host's load),
so it complements the timed figures of ``tasks.py bench``; it does not replace them.

A count also depends on where the interpreter's objects happen to lie in memory: CPython's
attribute cache is indexed by the addresses of the names looked up, so two layouts of the
same code differ by up to 1 % of a span (their collisions in that cache) while runs of one
layout agree exactly. The hot path is therefore counted under several layouts (the same
padding of the environment for each kind, which moves every later allocation) and each
figure is the median, over the layouts, of the ratio measured in that layout; the range is
printed beside it.

- Hot path: instructions of the app's thread per non-LLM span, in a ``step()`` and outside
  any, for the SDK pipeline alone, with an
  empty second processor, and with ``OverspendProcessor`` (spans as in ``bench_hot_path``,
  exported by a ``SimpleSpanProcessor``, so that no other thread's timing changes the
  count; the processor's background thread is held off, so what the hooks queue stays
  queued through the run as it does through a timed round: the garbage collector's cost of
  holding it is counted).
- Floor (only when asked for): the same non-LLM span in a ``step()`` with the least a
  step-attributing processor can do in each of two designs (``floor_processors``): what
  ``OverspendProcessor``'s own checks add over its design's floor, and what its design
  saves over a table of open spans.
- Report: instructions per span of ``build_report`` on a synthetic 30,000-span file (as in
  ``bench_report``), in one layout. Runs of the same code in the same layout agree within
  0.1 % on the report and 0.3 % on the hot path (``PYTHONHASHSEED=0``; a background thread
  still runs there).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace import SpanProcessor

HERE = Path(__file__).resolve().parent
#: The floor processors' names (``floor_processors``), imported only in their children.
FLOORS = ("table", "attributes")
SPANS_HOT = 2_000
SPANS_REPORT = 30_000
#: Lengths of the environment padding, one memory layout each (0: no padding variable).
LAYOUTS = (0, 50, 100, 200, 300, 500, 1_000, 2_000, 3_000, 7_000)
_COLLECTED = re.compile(rb"Collected : (\d+)")
#: LLM spans, counted with the processor's counting (done in the same thread, inside the
#: count): the minimal span of ``bench_hot_path`` and the span openai-v2 writes.
LLM_SHAPES: dict[str, Callable[[Any], Any]] = {
    "llm-minimal": lambda hot: hot.LLM_ATTRS,
    "llm-instrumented": lambda hot: hot.INSTRUMENTED_START,
    "llm-one-outside": lambda hot: hot.ONE_OUTSIDE,
    "llm-no-step": lambda hot: hot.LLM_ATTRS,
}
#: The LLM shapes emitted outside any ``step()`` (the one line alone): each call waits for
#: its request's root and is held for a twin; ``force_flush`` releases them inside the count.
NO_STEP = frozenset({"llm-no-step"})


def _hot_path(kind: str, where: str) -> None:
    import bench_hot_path as hot

    # Exported at once, in this thread: a batch processor's thread would make the count
    # depend on when it ran (by 3 % between runs).
    second: SpanProcessor | None = None
    if kind == "empty":
        second = hot._Empty()  # noqa: SLF001
    elif kind in FLOORS:
        import floor_processors

        second = floor_processors.TableFloor() if kind == "table" else floor_processors.AttributesFloor()
    if kind != "ours":
        # Built and shut down unused, so that every kind counts from the same process
        # state: the processor's settings put ``list`` in ``Sequence``'s ABC cache (as any
        # span with a list attribute does), which makes the SDK's own per-span
        # ``isinstance`` checks cost about 450 instructions more in that process.
        hot.pipeline(with_processor=True)[0].shutdown()
    provider, tracer, processor = hot.pipeline(
        with_processor=kind == "ours", second=second, export_at_once=True
    )
    # Warmed up with the shape counted: an app's first LLM span is of its own shape (one
    # with a response id, say), and what the counting keeps can depend on it.
    hot.emit(
        tracer,
        LLM_SHAPES[where](hot) if where in LLM_SHAPES else hot.LLM_ATTRS,
        400,
        in_step=where not in NO_STEP,
    )
    hot.emit(tracer, hot.PLAIN_ATTRS, 400)
    if processor is not None:
        queue = processor._queue  # noqa: SLF001 - hold the background thread off for the run
        queue._interval_s = 3_600.0  # noqa: SLF001
        queue._event.set()  # noqa: SLF001 - it wakes, counts the warm-up, then waits an hour
        # Until it has woken: a thread that wakes inside the count would count some of the
        # spans there, out of the count (runs 16,000 instructions a span short, now and then).
        while queue._event.is_set():  # noqa: SLF001
            time.sleep(0.001)
        processor.force_flush()
        time.sleep(0.05)  # and has gone back to its wait
    if where in LLM_SHAPES:
        attrs = LLM_SHAPES[where](hot)

        def llm_spans(_: object, __: object) -> None:
            hot.emit(tracer, attrs, SPANS_HOT, in_step=where not in NO_STEP)
            if processor is not None:
                processor.force_flush()  # the counting, in this thread: all of it is counted

        functools.reduce(llm_spans, range(1), None)
    else:
        in_step = where == "in-step"
        functools.reduce(
            lambda _, __: hot.emit(tracer, hot.PLAIN_ATTRS, SPANS_HOT, in_step=in_step), range(1), None
        )
    provider.shutdown()


def _report(path: str) -> None:
    import bench_report

    from otel_overspend.config.settings import Settings
    from otel_overspend.report.run import build_report

    settings = Settings(serve_metrics=False)
    bench_report.warm_up(Path(path), settings)
    build_report([Path(path)], settings=settings)
    functools.reduce(lambda _, __: build_report([Path(path)], settings=settings), range(1), None)


def _count(*args: str, padding: int = 0) -> int:
    """Instructions collected in the child ``bench_instructions.py --child ARGS``, its
    environment padded by ``padding`` characters (another memory layout)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if padding:
        env["OVERSPEND_BENCH_PADDING"] = "x" * padding
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=functools_reduce",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            *args,
        ],
        capture_output=True,
        check=True,
        env=env,
    )
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count: {done.stderr[-500:]!r}")
    return int(found.group(1))


def _counts(kind: str, where: str, layouts: tuple[int, ...]) -> dict[int, float]:
    """Instructions a span, by layout, two children at a time (one per core)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pad: pool.submit(_count, "hot-path", kind, where, padding=pad) for pad in layouts}
        return {pad: future.result() / SPANS_HOT for pad, future in futures.items()}


def hot_path(layouts: tuple[int, ...] = LAYOUTS) -> None:
    for where, label in (("in-step", "in a step()"), ("no-step", "outside any step()")):
        counts = {kind: _counts(kind, where, layouts) for kind in ("sdk", "empty", "ours")}
        sdk = counts["sdk"]
        print(
            f"hot path, non-LLM span {label}: SDK pipeline {statistics.median(sdk.values()):,.0f}"
            f" instructions a span (app thread; median of {len(layouts)} memory layouts)"
        )
        for kind in ("empty", "ours"):
            ratios = sorted(counts[kind][pad] / sdk[pad] - 1 for pad in layouts)
            print(
                f"  ... {kind:>5}: {statistics.median(counts[kind].values()):,.0f}"
                f" ({statistics.median(ratios):+.2%}; {ratios[0]:+.2%} to {ratios[-1]:+.2%} over the layouts)"
            )


def llm(layouts: tuple[int, ...] = LAYOUTS[:5]) -> None:
    """All the work per LLM span, the counting included (requests of a root and 7 LLM
    children, as in ``bench_hot_path``): ours against the SDK pipeline alone."""
    for shape in LLM_SHAPES:
        counts = {kind: _counts(kind, shape, layouts) for kind in ("sdk", "ours")}
        sdk = counts["sdk"]
        ratios = sorted(counts["ours"][pad] / sdk[pad] - 1 for pad in layouts)
        print(
            f"{shape}: SDK pipeline {statistics.median(sdk.values()):,.0f} instructions a span, ours"
            f" {statistics.median(counts['ours'].values()):,.0f} ({statistics.median(ratios):+.2%};"
            f" {ratios[0]:+.2%} to {ratios[-1]:+.2%} over {len(layouts)} layouts)"
        )


def floor(layouts: tuple[int, ...] = LAYOUTS) -> None:
    kinds = ["empty", "table", "attributes", "ours"]
    counts = {kind: _counts(kind, "in-step", layouts) for kind in ("sdk", *kinds)}
    sdk = counts["sdk"]
    print(f"design floors, non-LLM span in a step(): SDK pipeline {statistics.median(sdk.values()):,.0f}")
    for kind in kinds:
        ratios = sorted(counts[kind][pad] / sdk[pad] - 1 for pad in layouts)
        print(
            f"  ... {kind:>5}: {statistics.median(ratios):+.2%}"
            f" ({ratios[0]:+.2%} to {ratios[-1]:+.2%} over the layouts)"
        )


def report() -> None:
    import bench_report

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traces.json"
        bench_report.generate(path, SPANS_REPORT)
        total = _count("report", str(path))
    print(f"offline report: {total / SPANS_REPORT:,.0f} instructions a span ({SPANS_REPORT:,} spans)")


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    if argv[:1] == ["--child"]:
        if argv[1] == "hot-path":
            _hot_path(argv[2], argv[3])
        else:
            _report(argv[2])
        return
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (Debian's valgrind package)")
    which = argv or ["hot-path", "report"]
    if "hot-path" in which:
        hot_path()
    if "floor" in which:
        floor()
    if "llm" in which:
        llm()
    if "report" in which:
        report()


if __name__ == "__main__":
    main(sys.argv[1:])
