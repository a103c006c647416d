"""The look-alike patterns' metrics on ``/metrics``: names documented, figures by hand."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from otel_overspend import Settings, record_oracle_check

from conftest import make_pipeline

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text(encoding="utf-8")


def test_every_family_is_documented() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    try:
        record_oracle_check("rerank", agreed=True)
        p.processor.observations.step_done("rerank", 1, 10.0, 10.1)
        p.processor.observations.settle(everything=True)
        names = {family.name for family in p.processor.collector.collect()}
    finally:
        p.provider.shutdown()
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", DOC, flags=re.MULTILINE))
    missing = {n for n in names if n not in documented and f"{n}_total" not in documented}
    assert not missing


def test_oracle_and_step_time_on_metrics() -> None:
    p = make_pipeline(Settings(serve_metrics=False))
    try:
        # Two checks of the faithfulness student, one agreeing: 0.5 in every window.
        record_oracle_check("faithfulness", student=0.9, teacher=0.85)
        record_oracle_check("faithfulness", student=0.9, teacher=0.2)
        # One request a second ago: rerank 0.0-0.4, generate 0.4-0.5: rerank adds 0.4 s of 0.5 s
        # (0.8). Its time is in the windows by its end, as calls are.
        t = time.time() - 1.0
        p.processor.observations.step_done("rerank", 5, t, t + 0.4)
        p.processor.observations.step_done("generate", 5, t + 0.4, t + 0.5)
        p.processor.observations.settle(everything=True)
        assert p.sample("overspend_oracle_checks_total", {"step": "faithfulness"}) == 2
        assert p.sample("overspend_oracle_agreements_total", {"step": "faithfulness"}) == 1
        ratio = p.sample("overspend_teacher_agreement_ratio", {"step": "faithfulness", "window": "1h"})
        assert ratio == 0.5
        assert p.sample("overspend_step_request_seconds_count", {"step": "rerank"}) == 1
        assert p.sample("overspend_step_request_seconds_bucket", {"step": "rerank", "le": "0.3"}) == 0
        assert p.sample("overspend_step_request_seconds_bucket", {"step": "rerank", "le": "0.5"}) == 1
        assert p.sample("overspend_step_request_wall_seconds_total", {"step": "rerank"}) == pytest.approx(0.5)
        share = p.sample("overspend_step_request_time_share", {"step": "rerank", "window": "5m"})
        assert share == pytest.approx(0.8)
        # rerank has no LLM call at specialist tier and is not configured: no placement pattern.
        # The agreement of 0.5 < 0.95 is distillation drift on faithfulness.
        info = p.sample(
            "overspend_pattern_info",
            {"pattern": "distillation_drift", "step": "faithfulness", "window": "1h"},
        )
        assert info == 1
        evidence = p.sample(
            "overspend_pattern_evidence",
            {"pattern": "distillation_drift", "figure": "agreement_ratio", "window": "1h"},
        )
        assert evidence == 0.5
    finally:
        p.provider.shutdown()
