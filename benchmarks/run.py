"""Every performance figure next to its budget, in one run: ``python3 tasks.py bench``.

Each figure is a ratio or a bound measured side by side in this run (medians over
interleaved repeats), because absolute times drift on shared machines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_hot_path
import bench_memory
import bench_report
import bench_scrape
import bench_streaming
from harness import Row, print_table


def main() -> int:
    rows: list[Row] = []
    for module in (bench_hot_path, bench_streaming, bench_scrape, bench_memory, bench_report):
        start = time.perf_counter()
        rows += module.measure()
        print(f"# {module.__name__}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
