"""The soak, shortened for CI: 30 s at 2,000 LLM spans/s with a scrape every second.

The full run is ``python benchmarks/soak.py`` (10 minutes); ``SOAK_SECONDS=600`` runs this
test for as long.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_soak() -> None:
    duration = float(os.environ.get("SOAK_SECONDS", "30"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERSPEND_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, str(SOAK), "--duration", str(duration), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["failures"] == [], report
    assert result.returncode == 0, result.stderr
    assert report["llm_spans_per_s"] >= 1_960
    assert report["counted_calls"] == report["calls"] > 0
    assert report["rss_growth_percent"] <= 5.0
