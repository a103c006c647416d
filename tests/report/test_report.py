"""The offline report gives the live processor's figures, from the spans it exported.

Each workload runs through a real TracerProvider with an OverspendProcessor while the same
spans are written in the collector file exporter's format; the report on that file must
equal ``processor.diagnoses()`` field by field. Expected numbers are worked out by hand
in the comments (prices in USD per 1M tokens: frontier 3 / 15, mini 0.05 / 0.20,
specialist 0.02 / 0.02).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from typing import TYPE_CHECKING, Any

import pytest
from diag_workloads import FRONTIER
from report_support import (
    T0,
    CollectorFileExporter,
    export_to,
    late_child_request,
    llm_attributes,
    mixed_request,
    pinned_settings,
    remote_parent_request,
    rules_request,
    seed_requests,
)

from otel_overspend import Settings, step
from otel_overspend.calls import conventions
from otel_overspend.report.files import Problems
from otel_overspend.report.otlp_json import attribute_keys
from otel_overspend.report.run import Limits, build_report

from conftest import make_pipeline

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from opentelemetry.trace import Tracer

    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.report.run import Report

SEED_SETTINGS = Settings(
    serve_metrics=False, model_tiers={"acme-frontier-*": "frontier"}, use_genai_prices=False, stamp_spans=True
)


def assert_same(offline: Diagnosis, live: Diagnosis) -> None:
    """Every field equal; sums of floats to 1e-9 (they are added in another order)."""
    for f in dataclasses.fields(offline):
        a, b = getattr(offline, f.name), getattr(live, f.name)
        if f.name == "steps":
            assert [x.step for x in a] == [y.step for y in b]
            for x, y in zip(a, b, strict=True):
                for g in dataclasses.fields(x):
                    assert _close(getattr(x, g.name), getattr(y, g.name)), (x, y)
        elif f.name == "step_shares":
            assert a.keys() == b.keys()
            assert all(math.isclose(a[k], b[k], abs_tol=1e-9) for k in a)
        else:
            assert _close(a, b), (f.name, a, b)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return bool(a == b)


def run_both(
    tmp_path: Path, settings: Settings, workload: Callable[[Tracer], None], **exporter: Any
) -> tuple[Report, Diagnosis]:
    """Run ``workload`` live while exporting it; return the report on the file and the live
    diagnosis of the 7-day window."""
    p = make_pipeline(settings)
    out = CollectorFileExporter(tmp_path / "traces.json", **exporter)
    export_to(p, out)
    try:
        workload(p.tracer)
    finally:
        out.flush()
        p.provider.shutdown()
    live = dict(p.processor.diagnoses())["7d"]
    report = build_report([out.path], settings=settings, problems=Problems(shown=0))
    return report, live


def _repeat(request: Callable[[Tracer], None], tracer: Tracer, n: int) -> None:
    for _ in range(n):
        request(tracer)


def test_seed_fixture_offline_equals_live(tmp_path: Path) -> None:
    report, live = run_both(tmp_path, SEED_SETTINGS, lambda t: seed_requests(t, 200))
    d = report.diagnosis
    assert_same(d, live)
    # $0.07035 a request (3 / 15 USD per 1M tokens, see test_seed_fixture.py), 200 requests.
    assert d.cost_usd == pytest.approx(200 * 0.07035, abs=1e-9)
    assert d.specialized_cost_usd == pytest.approx(200 * 0.016831, abs=1e-9)
    assert d.step_shares["rerank"] == pytest.approx(39_000 / 70_350, abs=1e-12)
    # Everything but generate: 1,350 + 39,000 + 13,500 = 53,850 of 70,350.
    assert d.specialist_eligible_fraction == pytest.approx(53_850 / 70_350, abs=1e-12)
    assert d.projected_reduction == pytest.approx(1 - 16_831 / 70_350, abs=1e-12)
    assert d.model_concentration == 1.0
    assert (d.requests, d.calls, d.frontier_calls_per_request, d.tokens_per_request) == (
        200,
        800,
        4.0,
        20_450.0,
    )
    # Test 3 per step: rerank 39,000 -> 244 micro-dollars.
    assert report.step_reductions["rerank"] == pytest.approx(1 - 244 / 39_000, abs=1e-12)
    assert report.step_reductions["generate"] == 0.0
    assert d.next_step_to_specialize == "rerank"
    assert report.inputs.spans == 1_000
    assert report.inputs.skipped == {}
    assert report.inputs.incomplete_traces == {}


# One mixed request, in micro-dollars:
#   rewrite       mini        1,000 x 0.05 + 100 x 0.20      =     70  -> specialist 1,100 x 0.02 = 22
#   rerank        specialist (10,000 + 10) x 0.02             =  200.2 -> 200.2
#   generate      frontier    2,000 x 3 + 500 x 15 (once)     = 13,500 -> unchanged
#   faithfulness  frontier    3,000 x 3 + 50 x 15             =  9,750 -> 3,050 x 0.02 = 61
#   unattributed  frontier      100 x 3 + 100 x 15            =  1,800 -> unchanged
#   classify      unknown model: unpriced
#   total 25,320.2, specialized 15,583.2
MIXED_COST = 25_320.2e-6
MIXED_SPECIALIZED = 15_583.2e-6


def test_mixed_workload_offline_equals_live(tmp_path: Path) -> None:
    settings = pinned_settings(stamp_spans=True)
    report, live = run_both(tmp_path, settings, lambda t: _repeat(mixed_request, t, 50))
    d = report.diagnosis
    assert_same(d, live)
    assert d.cost_usd == pytest.approx(50 * MIXED_COST, abs=1e-9)
    assert d.specialized_cost_usd == pytest.approx(50 * MIXED_SPECIALIZED, abs=1e-9)
    # Attributed spend 23,520.2, of which not generate 70 + 200.2 + 9,750 = 10,020.2.
    assert d.specialist_eligible_fraction == pytest.approx(10_020.2 / 23_520.2, abs=1e-12)
    # The classify step's spend is wholly unknown: no share of all spend can be told.
    assert d.model_concentration is None
    assert d.unattributed_share is None
    assert d.step_shares.keys() == {"rewrite", "rerank", "generate", "faithfulness", "unattributed"}
    # 6 calls a request (the framework span over the client span counts once), 1 unpriced.
    assert (d.calls, d.unpriced_calls, d.requests) == (300, 50, 50)
    # generate, faithfulness and the unattributed call are frontier calls.
    assert d.frontier_calls_per_request == 3.0
    # 1,100 + 10,010 + 2,500 + 3,050 + 200 + 550 tokens.
    assert d.tokens_per_request == 17_410.0
    # faithfulness saves 9,750 - 61 = 9,689 a request.
    assert d.next_step_to_specialize == "faithfulness"
    assert d.next_step_savings_usd == pytest.approx(50 * 9_689e-6, abs=1e-9)
    assert report.inputs.dropped == {"duplicate_llm_span": 50}


def test_steps_from_rules_and_attributes_offline_equal_live(tmp_path: Path) -> None:
    # No stamping: offline, the child of the RERANKER span inherits its rule's step.
    settings = pinned_settings()
    report, live = run_both(tmp_path, settings, lambda t: _repeat(rules_request, t, 20))
    d = report.diagnosis
    assert_same(d, live)
    # rerank 5,000 x 3 + 20 x 15 = 15,300; generate 1,000 x 3 + 300 x 15 = 7,500;
    # unattributed 100 x 3 + 10 x 15 = 450.
    assert d.step_shares["rerank"] == pytest.approx(15_300 / 23_250, abs=1e-12)
    assert d.step_shares["generate"] == pytest.approx(7_500 / 23_250, abs=1e-12)
    assert d.specialist_eligible_fraction == pytest.approx(15_300 / 22_800, abs=1e-12)


def test_remote_parents_and_late_children_offline_equal_live(tmp_path: Path) -> None:
    def workload(tracer: Tracer) -> None:
        for _ in range(10):
            mixed_request(tracer)
            remote_parent_request(tracer)
            late_child_request(tracer)

    report, live = run_both(tmp_path, pinned_settings(stamp_spans=True), workload)
    assert_same(report.diagnosis, live)
    # 10 mixed requests and 10 requests under a remote parent; the late child's root ended
    # before its only call, so that trace makes no request. Its call is held and released by
    # the spans' time, as live: no trace is left open at the end of the input.
    assert report.diagnosis.requests == 20
    assert report.inputs.incomplete_traces == {}


def test_protobuf_file_gives_the_same_figures(tmp_path: Path) -> None:
    report, live = run_both(tmp_path, SEED_SETTINGS, lambda t: seed_requests(t, 30), proto=True)
    assert_same(report.diagnosis, live)
    assert report.diagnosis.cost_usd == pytest.approx(30 * 0.07035, abs=1e-9)


def test_gzip_file_gives_the_same_figures(tmp_path: Path) -> None:
    report, live = run_both(tmp_path, SEED_SETTINGS, lambda t: seed_requests(t, 30), compress=True)
    assert_same(report.diagnosis, live)
    assert report.inputs.records == 3  # 150 spans, 50 an export


def test_standard_library_decoder_gives_the_same_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "otel_overspend.report.otlp_msgspec", None)  # as without msgspec
    report, live = run_both(
        tmp_path, pinned_settings(stamp_spans=True), lambda t: _repeat(mixed_request, t, 5)
    )
    assert_same(report.diagnosis, live)


def test_held_spans_are_bounded(tmp_path: Path) -> None:
    # Each trace is 5 spans, children first: the 4th overflows a 3-span buffer, so every
    # trace is replayed early. Its calls still count, and its root, arriving next, still
    # closes its request with them.
    p = make_pipeline(SEED_SETTINGS)
    out = CollectorFileExporter(tmp_path / "traces.json")
    export_to(p, out)
    seed_requests(p.tracer, 10)
    out.flush()
    p.provider.shutdown()
    live = dict(p.processor.diagnoses())["7d"]
    report = build_report([out.path], settings=SEED_SETTINGS, limits=Limits(max_spans=3))
    assert_same(report.diagnosis, live)
    assert report.inputs.incomplete_traces == {"buffer_full": 10}


def _span_json(trace: int, span: int, parent: int, end_s: float, **attrs: int | str) -> dict[str, Any]:
    values = [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
        for k, v in attrs.items()
    ]
    return {
        "traceId": f"{trace:032x}",
        "spanId": f"{span:016x}",
        "parentSpanId": f"{parent:016x}" if parent else "",
        "name": "chat acme-frontier",
        "startTimeUnixNano": str(int((end_s - 1) * 1e9)),
        "endTimeUnixNano": str(int(end_s * 1e9)),
        "attributes": values,
    }


def test_traces_held_past_the_request_timeout_are_replayed(tmp_path: Path) -> None:
    llm: dict[str, int | str] = {"gen_ai.request.model": "acme-frontier", "gen_ai.usage.input_tokens": 1_000}
    t0 = T0
    lines = [
        # A call whose parent never comes, then, 1,000 s later (past the 300 s time-out), a request.
        [_span_json(1, 11, 10, t0, **llm, **{"overspend.step": "rerank"})],
        [_span_json(2, 21, 20, t0 + 1_000, **llm, **{"overspend.step": "generate"})],
        [_span_json(2, 20, 0, t0 + 1_001)],
    ]
    path = tmp_path / "traces.json"
    path.write_text(
        "".join(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}) + "\n" for spans in lines)
    )
    report = build_report([path], settings=pinned_settings())
    assert report.inputs.incomplete_traces == {"held_too_long": 1}
    d = report.diagnosis
    # Both calls count (1,000 input tokens at $3 per 1M each). The first, whose parent was
    # never seen, is taken for a local root under a remote parent: a request of its own.
    assert (d.calls, d.requests) == (2, 2)
    assert d.frontier_calls_per_request == 1.0
    assert d.cost_usd == pytest.approx(2 * 0.003, abs=1e-12)
    assert d.step_shares == {"rerank": 0.5, "generate": 0.5}


def _resource_spans(service: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    attrs = [{"key": "service.name", "value": {"stringValue": service}}]
    return {"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]}


@pytest.mark.parametrize("flags", [0x300, 0])
def test_a_trace_across_two_services_makes_a_request_in_each(tmp_path: Path, flags: int) -> None:
    # Service "api" calls service "ranker" within one trace. The ranker's server span has a
    # remote parent: with the flags set it is a local root at once; without them (older
    # SDKs) it is taken for one when its trace's root never comes.
    t0 = T0
    llm: dict[str, int | str] = {"gen_ai.request.model": "acme-frontier", "gen_ai.usage.input_tokens": 1_000}
    ranker = [
        _span_json(7, 0x21, 0x20, t0 + 2, **llm, **{"overspend.step": "rerank"}),
        {**_span_json(7, 0x20, 0x11, t0 + 3), "flags": flags},
    ]
    api = [
        _span_json(7, 0x12, 0x10, t0 + 4, **llm, **{"overspend.step": "generate"}),
        _span_json(7, 0x11, 0x10, t0 + 4),  # the client span calling the ranker
        _span_json(7, 0x10, 0, t0 + 5),
    ]
    doc = {"resourceSpans": [_resource_spans("ranker", ranker), _resource_spans("api", api)]}
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(doc) + "\n")
    d = build_report([path], settings=pinned_settings()).diagnosis
    # One call and one request in each process, as the processors in each would count.
    assert (d.calls, d.requests, d.frontier_calls_per_request) == (2, 2, 1.0)


def test_sibling_spans_of_one_call_count_once_offline_as_live(tmp_path: Path) -> None:
    # Two client instrumentations that do not nest each write a span for the same call:
    # the recorder tells them apart by instrumentation scope (and by response id).
    def workload(tracer: Tracer) -> None:
        other = tracer_provider[0].get_tracer("second.instrumentation")
        for i in range(10):
            with tracer.start_as_current_span("POST /answer"), step("generate"):
                attrs = llm_attributes(FRONTIER, 1_000, 100)
                with (
                    tracer.start_as_current_span("chat", attributes=attrs),
                    other.start_as_current_span("chat again", context=None, attributes=attrs),
                ):
                    pass
                same_id = llm_attributes(FRONTIER, 2_000, 10, **{"gen_ai.response.id": f"resp-{i}"})
                for _ in range(2):
                    with other.start_as_current_span("chat", attributes=same_id):
                        pass

    tracer_provider: list[Any] = []
    p = make_pipeline(pinned_settings(stamp_spans=True))
    tracer_provider.append(p.provider)
    out = CollectorFileExporter(tmp_path / "traces.json")
    export_to(p, out)
    workload(p.tracer)
    out.flush()
    p.provider.shutdown()
    live = dict(p.processor.diagnoses())["7d"]
    report = build_report([out.path], settings=pinned_settings(stamp_spans=True))
    assert_same(report.diagnosis, live)
    assert report.diagnosis.calls == 20
    assert report.inputs.dropped == {"duplicate_llm_span": 20}


def test_every_attribute_the_attribution_reads_is_decoded() -> None:
    # The decoders keep only the attributes attribute_keys() names: one the conventions
    # module reads that is not there would be dropped silently.
    read = set()
    for name_in_module, value in vars(conventions).items():
        if name_in_module.startswith("__") or not name_in_module.endswith(("_KEY", "_KEYS")):
            continue
        names = value if isinstance(value, (tuple, frozenset)) else (value,)
        read |= {name for name in names if isinstance(name, str) and "." in name and " " not in name}
    assert read - attribute_keys(Settings()) == set()
