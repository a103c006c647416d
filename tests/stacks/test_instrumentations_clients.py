"""The real openai and anthropic clients under each instrumentation, one at a time.

Each instrumentation runs the same calls against examples/fake_provider.py inside
``step("rerank")``, in its own process (OpenLIT in its own virtualenv, .venv-openlit). What
otel_overspend counted is read back from a Prometheus CollectorRegistry and compared with
the numbers worked out by hand in instrumentation_support/expected.py: the same step,
model, tier, provider, tokens and cost for the same call, whichever instrumentation saw it,
except where an instrumentation does not report what the provider did (listed there).

The costs are the providers' true bills: cache reads, 5-minute and 1-hour cache writes
each at their own rate, reasoning inside the output tokens (never billed twice), a rerank
call per search.
"""

from __future__ import annotations

import pytest
from instrumentation_support import runs
from instrumentation_support.expected import CASES, DEPARTURES, STEP, expected

pytestmark = [pytest.mark.e2e]

SINGLE = ("openai-v2", "openai-v2-latest", "openllmetry", "openinference", "openlit", "anthropic-native")
RUNS_USED = SINGLE


def family(run: str) -> str:
    return "openai-v2" if run.startswith("openai-v2") else run


@pytest.fixture(scope="module", autouse=True)
def _start_runs(request: pytest.FixtureRequest) -> None:
    runs.start_for(request.session)


@pytest.mark.parametrize(
    ("run", "case"),
    [pytest.param(run, case, id=f"{run}-{case}") for run in SINGLE for case in runs.RUNS[run].cases],
)
def test_each_call_is_counted_with_its_step_model_tier_tokens_and_cost(run: str, case: str) -> None:
    want, why = expected(family(run), case)
    got = runs.counted(run, case)
    note = f"; departure: {why}" if why else ""
    assert runs.case(run, case)["error"] == want.error
    if want.model is None:
        # A failed call (or one nothing instrumented) counts nothing and drops nothing.
        assert (got.series, got.dropped, got.cost_usd, got.requests) == ({}, {}, 0.0, 0.0), note
        return
    assert got.series == {(STEP, want.model, want.tier, want.provider): 1.0}, note
    tokens = (got.input_tokens, got.output_tokens, got.cache_read_tokens, got.reasoning_tokens)
    wanted = (want.input_tokens, want.output_tokens, want.cache_read_tokens, want.reasoning_tokens)
    assert tokens == wanted, note
    assert got.cache_write_tokens == want.cache_write_tokens, note
    assert got.cost_usd == pytest.approx(want.cost_usd, rel=1e-9, abs=1e-15), note
    assert got.unpriced == {}
    assert got.dropped == ({"duplicate_llm_span": want.duplicates} if want.duplicates else {})
    assert got.requests == 1.0
    override = runs.counted(run, case, "override")
    assert override.cost_usd == pytest.approx(want.override_cost_usd, rel=1e-9, abs=1e-15), note


def reported_alike(case: str) -> int:
    """How many of the single runs report ``case`` as the provider did (no departure)."""
    return sum(case in runs.RUNS[r].cases and (family(r), case) not in DEPARTURES for r in SINGLE)


@pytest.mark.parametrize("case", [c for c in CASES if reported_alike(c) > 1])
def test_every_instrumentation_counts_the_same_call_alike(case: str) -> None:
    """Step, model, tier, provider, tokens and the user-override cost agree across every
    instrumentation that reports the call as the provider did (OpenLIT's own cost beats
    genai-prices, so the genai-prices cost is compared without it)."""
    seen: dict[str, tuple[object, ...]] = {}
    priced: dict[str, float] = {}
    for run in SINGLE:
        if case not in runs.RUNS[run].cases or (family(run), case) in DEPARTURES:
            continue
        got = runs.counted(run, case)
        override = runs.counted(run, case, "override")
        tokens = (
            got.input_tokens,
            got.output_tokens,
            got.cache_read_tokens,
            got.cache_write_tokens,
            got.reasoning_tokens,
        )
        seen[run] = (tuple(sorted(got.series.items())), tokens, round(override.cost_usd, 12))
        if run != "openlit":
            priced[run] = round(got.cost_usd, 12)
    assert len(set(seen.values())) == 1, seen
    assert len(set(priced.values())) <= 1, priced


def test_openai_v2_reads_the_stability_opt_in_at_instrument_time() -> None:
    """By default openai-v2 names the provider ``gen_ai.system``; with
    OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental, ``gen_ai.provider.name``.
    Both count the same (the other tests), so both attribute sets are read."""
    (default,) = runs.llm_spans("openai-v2", "chat")
    (latest,) = runs.llm_spans("openai-v2-latest", "chat")
    assert default["attributes"]["gen_ai.system"] == "openai"
    assert "gen_ai.provider.name" not in default["attributes"]
    assert latest["attributes"]["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in latest["attributes"]


# The attribute names each instrumentation put on its spans, that otel_overspend reads: a
# rename upstream fails here first.
EMITTED = {
    ("openai-v2", "chat"): {
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.operation.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    },
    ("openai-v2-latest", "chat"): {
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    },
    ("openllmetry", "chat_cached"): {
        "gen_ai.provider.name",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.reasoning_tokens",
    },
    ("openllmetry", "messages_cached"): {
        "gen_ai.provider.name",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
    },
    ("openinference", "chat_cached"): {
        "openinference.span.kind",
        "llm.system",
        "llm.model_name",
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.completion_details.reasoning",
    },
    ("openinference", "embeddings"): {
        "openinference.span.kind",
        "embedding.model_name",
        "llm.token_count.prompt",
    },
    ("openinference", "messages_cached"): {
        "llm.provider",
        "llm.response.model_name",
        "llm.token_count.prompt",
        "llm.token_count.prompt_details.cache_read",
    },
    ("openlit", "messages_cached"): {
        "telemetry.sdk.name",
        "gen_ai.provider.name",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cost",
    },
    # Cache writes, by lifetime where the emitter splits them.
    ("anthropic-native", "messages_cache_write_stream"): {
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "anthropic.usage.cache_creation.ephemeral_5m_input_tokens",
        "anthropic.usage.cache_creation.ephemeral_1h_input_tokens",
    },
    ("openllmetry", "messages_cache_write_5m"): {"gen_ai.usage.cache_creation.input_tokens"},
    ("openinference", "messages_cache_write_5m"): {
        "llm.token_count.prompt_details.cache_read",
        "llm.token_count.prompt_details.cache_write",
    },
    ("openlit", "messages_cache_write_5m"): {"gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cost"},
    # Reasoning, inside the output tokens.
    ("openllmetry", "chat_reasoning"): {"gen_ai.usage.reasoning_tokens"},
    ("openllmetry", "responses_reasoning"): {"gen_ai.usage.reasoning_tokens"},
    ("openinference", "chat_reasoning"): {"llm.token_count.completion_details.reasoning"},
    ("openinference", "responses_reasoning"): {"llm.token_count.completion_details.reasoning"},
    ("openlit", "responses_reasoning"): {"gen_ai.usage.reasoning_tokens"},
    ("anthropic-native", "messages_thinking"): {"gen_ai.usage.reasoning.output_tokens"},
    ("openinference", "messages_thinking"): {"llm.token_count.completion_details.reasoning"},
    # Rerank: no tokens, and no search units either.
    ("openllmetry", "rerank"): {"gen_ai.system", "llm.request.type", "gen_ai.request.model"},
    ("openinference", "rerank"): {"openinference.span.kind", "reranker.model_name"},
}


@pytest.mark.parametrize(("run", "case"), list(EMITTED), ids=[f"{r}-{c}" for r, c in EMITTED])
def test_the_attributes_each_instrumentation_emits(run: str, case: str) -> None:
    (span,) = runs.llm_spans(run, case)
    missing = EMITTED[run, case] - set(span["attributes"])
    assert not missing, f"{run} no longer emits {sorted(missing)}; it emitted {sorted(span['attributes'])}"


# How each emitter counts input tokens next to cache reads and writes (the fake's truth for
# messages_cache_write_stream: 1,200 fresh + 800 reads + 500 writes = 2,500 gross), and the
# output tokens next to reasoning (chat_reasoning: 400 out of which 200 reasoning;
# messages_thinking: 2,000 out of which 1,024 thinking). An upstream change of convention
# fails here first.
AS_EMITTED = {
    ("anthropic-native", "messages_cache_write_5m"): {
        "gen_ai.usage.input_tokens": 2500,  # gross: the SDK adds the cache reads and writes
        "gen_ai.usage.cache_read.input_tokens": 800,
        "gen_ai.usage.cache_write.input_tokens": 500,
        "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 500,
        "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 0,
    },
    ("anthropic-native", "messages_cache_write_1h"): {
        "gen_ai.usage.cache_write.input_tokens": 500,
        "anthropic.usage.cache_creation.ephemeral_5m_input_tokens": 0,
        "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 500,
    },
    ("openllmetry", "messages_cache_write_1h"): {
        "gen_ai.usage.input_tokens": 2500,  # gross
        "gen_ai.usage.cache_read.input_tokens": 800,
        "gen_ai.usage.cache_creation.input_tokens": 500,  # both lifetimes, not split
    },
    ("openinference", "messages_cache_write_1h"): {
        "llm.token_count.prompt": 2500,  # gross
        "llm.token_count.prompt_details.cache_read": 800,
        "llm.token_count.prompt_details.cache_write": 500,  # both lifetimes, not split
    },
    ("openlit", "messages_cache_write_1h"): {
        "gen_ai.usage.input_tokens": 1200,  # net of the cache reads and writes
        "gen_ai.usage.cache_read.input_tokens": 800,
        "gen_ai.usage.cache_creation.input_tokens": 500,  # both lifetimes, not split
    },
    ("openllmetry", "chat_reasoning"): {
        "gen_ai.usage.input_tokens": 1000,  # gross of the 800 cache reads
        "gen_ai.usage.output_tokens": 400,  # reasoning included
        "gen_ai.usage.reasoning_tokens": 200,
    },
    ("openinference", "responses_reasoning"): {
        "llm.token_count.prompt": 1000,
        "llm.token_count.prompt_details.cache_read": 800,
        "llm.token_count.completion": 400,
        "llm.token_count.completion_details.reasoning": 200,
    },
    ("anthropic-native", "messages_thinking"): {
        "gen_ai.usage.output_tokens": 2000,  # thinking included
        "gen_ai.usage.reasoning.output_tokens": 1024,
    },
    ("openinference", "messages_thinking"): {
        "llm.token_count.completion": 2000,
        "llm.token_count.completion_details.reasoning": 1024,
    },
}


@pytest.mark.parametrize(("run", "case"), list(AS_EMITTED), ids=[f"{r}-{c}" for r, c in AS_EMITTED])
def test_how_each_emitter_counts_cache_and_reasoning_tokens(run: str, case: str) -> None:
    (span,) = runs.llm_spans(run, case)
    got = {key: span["attributes"].get(key) for key in AS_EMITTED[run, case]}
    assert got == AS_EMITTED[run, case]


def pins(path: str) -> dict[str, str]:
    lines = (line.split("#", 1)[0].strip() for line in (runs.ROOT / path).read_text().splitlines())
    return dict(line.split("==", 1) for line in lines if "==" in line)


@pytest.mark.parametrize("run", SINGLE)
def test_the_runs_used_the_pinned_versions(run: str) -> None:
    """The constraints files list the versions these tests ran against."""
    pinned = pins("constraints-openlit.txt" if run == "openlit" else "constraints-instrumentations.txt")
    used = runs.result(run)["versions"]
    assert {"openai", "anthropic"} <= used.keys()
    differ = {
        name: (version, pinned[name])
        for name, version in used.items()
        if pinned.get(name, version) != version
    }
    assert not differ, f"(used, pinned): {differ}"
