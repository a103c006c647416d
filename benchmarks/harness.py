"""Side-by-side timing: run variants interleaved, many times, and compare medians.

Absolute times drift on shared machines; ratios measured in one run hold.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from otel_overspend.accounting import recorder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    budget: str
    ok: bool


def interleaved(variants: Mapping[str, Callable[[], float]], *, repeats: int) -> dict[str, float]:
    """Median of each variant's result (a time per unit) over ``repeats`` interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            gc.collect()
            samples[name].append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def per_unit_cpu_us(fn: Callable[[], object], units: int) -> float:
    """CPU of every thread of the process per unit: what a host's load (another process
    on the core) adds to wall-clock time is left out."""
    start = time.process_time()
    fn()
    return (time.process_time() - start) / units * 1e6


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def build() -> str:
    """Which build of the package this process runs: the wheel's compiled modules
    (``setup.py``), or pure Python (an editable install, or a wheel that could not compile)."""
    compiled = recorder.__file__ is not None and not recorder.__file__.endswith(".py")
    return "compiled (mypyc)" if compiled else "pure Python"


def print_table(rows: list[Row]) -> None:
    print(f"# build: {build()}")
    width = max(len(r.figure) for r in rows)
    print(f"{'figure':<{width}}  {'measured':>28}  {'budget':>22}  ok")
    for r in rows:
        print(f"{r.figure:<{width}}  {r.measured:>28}  {r.budget:>22}  {'yes' if r.ok else 'NO'}")
