"""Two sibling spans of one call (two instrumentations that do not nest) count it once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_overspend import Settings, step

from conftest import make_pipeline

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from conftest import Pipeline

SETTINGS = Settings(serve_metrics=False, model_tiers={"acme-*": "frontier"}, use_genai_prices=False)
LABELS = {"step": "rerank", "model": "acme-frontier", "tier": "frontier", "provider": "unknown"}
T0 = 1_900_000_000_000_000_000


def _call(
    tracer: Tracer,
    start: int,
    end: int,
    *,
    tokens_out: int = 100,
    response_id: str | None = None,
    tokens_in: int = 1_000,
) -> None:
    attrs: dict[str, str | int] = {
        "gen_ai.request.model": "acme-frontier",
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
    }
    if response_id is not None:
        attrs["gen_ai.response.id"] = response_id
    tracer.start_span("chat", attributes=attrs, start_time=start).end(end_time=end)


def test_siblings_from_two_instrumentations_count_once() -> None:
    p = make_pipeline(SETTINGS)
    client, native = p.provider.get_tracer("client-instr"), p.provider.get_tracer("sdk-own-tracing")
    with step("rerank"), p.tracer.start_as_current_span("request"):
        _call(client, T0, T0 + 900)
        _call(native, T0 + 10, T0 + 1_000, tokens_out=101)  # one instrumentation counts one more
    assert p.sample("overspend_llm_calls_total", LABELS) == 1
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 1
    # 1,000 x $3/M + 100 x $15/M = $0.0045, counted once.
    assert p.sample("overspend_llm_cost_usd_total", LABELS) == 0.0045


def test_parallel_identical_calls_of_one_instrumentation_all_count() -> None:
    p = make_pipeline(SETTINGS)
    with step("rerank"), p.tracer.start_as_current_span("request"):
        for _ in range(3):
            _call(p.tracer, T0, T0 + 1_000)
    assert p.sample("overspend_llm_calls_total", LABELS) == 3
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 0


def test_response_ids_decide_when_both_spans_have_one() -> None:
    p = make_pipeline(SETTINGS)
    a, b = p.provider.get_tracer("a"), p.provider.get_tracer("b")
    with step("rerank"), p.tracer.start_as_current_span("request"):
        _call(a, T0, T0 + 1_000, response_id="resp-1")
        _call(b, T0, T0 + 1_000, response_id="resp-1")  # the same response: one call
        _call(b, T0, T0 + 1_000, response_id="resp-2")  # alike, but another response
    assert p.sample("overspend_llm_calls_total", LABELS) == 2


def test_siblings_that_do_not_overlap_in_time_are_two_calls() -> None:
    p = make_pipeline(SETTINGS)
    a, b = p.provider.get_tracer("a"), p.provider.get_tracer("b")
    with step("rerank"), p.tracer.start_as_current_span("request"):
        _call(a, T0, T0 + 1_000)
        _call(b, T0 + 2_000, T0 + 3_000)
    assert p.sample("overspend_llm_calls_total", LABELS) == 2


def test_a_second_instrumentation_finds_its_twin_in_another_trace_among_earlier_calls() -> None:
    # No app span: each span is a trace of its own. The first instrumentation's calls are
    # only indexed for a twin once a second instrumentation appears; the second's span of
    # the first call must still be found among them.
    p = make_pipeline(SETTINGS)
    client, native = p.provider.get_tracer("client-instr"), p.provider.get_tracer("sdk-own-tracing")
    with step("rerank"):
        for i in range(10):
            _call(client, T0 + i * 10_000, T0 + i * 10_000 + 900)
        _call(native, T0 + 10, T0 + 1_000, tokens_out=101)  # the first call, seen by the other
        _call(native, T0 + 500_000, T0 + 501_000)  # a call of its own
    assert p.sample("overspend_llm_calls_total", LABELS) == 11
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 1


def test_a_held_call_gives_way_to_its_twin_counted_later_with_a_step() -> None:
    # No app span: a framework's span of each call is a trace of its own, with no step, so
    # each is held a moment after it ends (HOLD_NS of span time), for a twin from another
    # trace. The client's span of the third call, in a step, is that twin: the call is
    # counted once, in its step, even when more calls than the recorder remembers across
    # traces are counted before the held ones are released (they are all within the hold).
    p = make_pipeline(SETTINGS)
    framework, client = p.provider.get_tracer("framework"), p.provider.get_tracer("client-instr")
    for i in range(5):
        _call(framework, T0 + i * 10, T0 + 1_000 + i * 10, tokens_in=1_000 + i)
    with step("rerank"):
        _call(client, T0 + 25, T0 + 1_015, tokens_in=1_002)
        for i in range(9_000):  # calls of their own, other token counts
            _call(client, T0 + 2_000 + i, T0 + 3_000 + i, tokens_in=2_000 + i)
    p.processor.force_flush()
    assert p.sample("overspend_llm_calls_total", LABELS) == 9_001
    # The other held calls have no twin: counted unattributed when released.
    assert p.sample("overspend_llm_calls_total", {**LABELS, "step": "unattributed"}) == 4
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 1


def test_siblings_held_without_a_step_count_once() -> None:
    # No step anywhere: both spans of each call wait for the request's root, are held when
    # it ends, and are told apart when released (by likeness, and by response id).
    p = make_pipeline(SETTINGS)
    client, native = p.provider.get_tracer("client-instr"), p.provider.get_tracer("sdk-own-tracing")
    with p.tracer.start_as_current_span("request"):
        _call(client, T0, T0 + 900)
        _call(native, T0 + 10, T0 + 1_000, tokens_out=101)  # the same call
        _call(client, T0 + 2_000, T0 + 3_000, tokens_in=500, response_id="resp-1")
        _call(native, T0 + 2_000, T0 + 3_000, tokens_in=520, response_id="resp-1")  # the same
        _call(client, T0 + 5_000, T0 + 6_000)  # alike the first, but later: a call of its own
    p.processor.force_flush()
    unattributed = {**LABELS, "step": "unattributed"}
    assert p.sample("overspend_llm_calls_total", unattributed) == 3
    assert p.sample("overspend_spans_dropped_total", {"reason": "duplicate_llm_span"}) == 2
    # 1,000 x $3/M + 100 x $15/M twice, and 500 x $3/M + 100 x $15/M: $0.0120.
    assert p.sample("overspend_llm_cost_usd_total", unattributed) == 0.012


def test_held_calls_released_early_are_overflows_only_once_a_twin_could_come() -> None:
    # No step, no app span: each call is its own trace, held 2 s of span time for a twin.
    # 3,000 calls 0.1 ms apart overflow the 1,000 held: each call past the 1,000th releases
    # the oldest early, counted unattributed as it would be anyway.
    def calls(p: Pipeline, tracer: Tracer) -> None:
        for i in range(3_000):
            start = T0 + i * 100_000
            _call(tracer, start, start + 90_000, tokens_in=1_000 + i)
        p.processor.force_flush()

    one = make_pipeline(SETTINGS)
    calls(one, one.provider.get_tracer("client-instr"))
    assert one.sample("overspend_llm_calls_total", {**LABELS, "step": "unattributed"}) == 3_000
    # One instrumentation: no twin can come, so nothing is lost by releasing early.
    assert one.sample("overspend_label_overflow_total", {"label": "step_wait"}) == 0

    two = make_pipeline(SETTINGS)
    with step("rerank"):  # another instrumentation's call, counted first
        _call(two.provider.get_tracer("sdk-own-tracing"), T0 - 10**9, T0 - 10**9 + 1_000, tokens_in=5)
    calls(two, two.provider.get_tracer("client-instr"))
    assert two.sample("overspend_llm_calls_total", {**LABELS, "step": "unattributed"}) == 3_000
    # Now a twin could have come for each call released early: 3,000 - 1,000 of them.
    assert two.sample("overspend_label_overflow_total", {"label": "step_wait"}) == 2_000
