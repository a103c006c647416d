"""Nothing reaches the app: 100,000 spans with hostile attributes, through a real
TracerProvider and straight into the hooks, never raise; every rejected span is counted
by reason; the app's own spans still export; and a broken price file fails at start-up.

Each hypothesis example draws pools of valid and hostile values (wrong types, NaN, ±inf,
negative and enormous token counts, sequences, bytes, 10,000-character names, lone
surrogates, control characters) and a seeded ``Random`` combines them into a batch of
spans. Every span's expected fate (counted, dropped and why, or not an LLM call) follows
from which pools its values came from, so the test knows the exact counts to expect.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.calls.conventions import (
    CACHE_READ_KEYS,
    COST_KEYS,
    INPUT_KEYS,
    MAX_TOKENS_PER_CALL,
    MODEL_KEYS,
    OUTPUT_KEYS,
    PROVIDER_KEYS,
    REASONING_KEYS,
    ZERO_MEANS_UNPRICED_COST_KEYS,
)
from otel_overspend.config.settings import MAX_USD_PER_MTOK, Price

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


pytestmark = [pytest.mark.slow]
BATCH = 500
SDK_EXAMPLES = 150
DIRECT_EXAMPLES = 50
SPECIALIST_USD_PER_MTOK = 0.02  # the specialist tier's default price, input and output
SPECIALIST_USD_PER_SEARCH = 0.002  # and its default price of a rerank call's search
RESOURCE = Resource.get_empty()  # else each ReadableSpan detects one (a millisecond each)
#: Shrinking a 500-span batch takes minutes: a failure reports its pools and seed as drawn.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
#: Each example is a batch of 500 spans, on purpose.
SLOW_AND_LARGE = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example)

# -- value pools, each with a known fate ------------------------------------------------------
_MAX = MAX_TOKENS_PER_CALL
valid_tokens = st.one_of(
    st.integers(0, _MAX), st.integers(0, _MAX).map(float), st.integers(0, _MAX).map(str), st.just(0)
)


def _is_valid_text_count(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= _MAX


def _is_valid_float_count(value: float) -> bool:
    return math.isfinite(value) and value.is_integer() and 0 <= value <= _MAX


# Hostile token counts an OpenTelemetry attribute can carry (the SDK accepts them).
hostile_tokens = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=_MAX + 1),
    st.sampled_from([10**40, -(10**40), _MAX + 1, -1]),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, -1.0, 1e300, 1e8 + 1]),
    st.floats().filter(lambda v: not _is_valid_float_count(v)),
    st.booleans(),
    st.text(max_size=12).filter(lambda v: not _is_valid_text_count(v)),
    st.sampled_from(["-5", "1e3", "\u00b2", " 12", "", "99999999999", "100000001", "\uff11"]),
    st.lists(st.integers(0, 10), max_size=3).map(tuple),
    st.lists(st.text(max_size=3), max_size=2).map(tuple),
    st.lists(st.floats(), min_size=1, max_size=2).map(tuple),
)
# Values only a non-SDK source can hand the processor: the SDK would refuse or convert them.
raw_hostile = st.one_of(
    st.binary(max_size=8),
    st.binary(max_size=8).map(bytearray),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object),
    st.sampled_from(
        [Decimal(5), Decimal("NaN"), complex(1, 1), frozenset({1}), [1, "a", None], ((1,), (2,))]
    ),
)
_PRINTABLE = st.characters(categories=("L", "M", "N", "P", "S"), include_characters=" ")
valid_names = st.one_of(
    st.text(_PRINTABLE, min_size=1, max_size=40),
    st.sampled_from(["acme-1", "openai/gpt-4o", "gpt-4o-mini-2024-07-18", "  spaced  ", "modèle-日本-😀"]),
    st.integers(150, 200).map(lambda n: "m" * n),
)
_BAD_CHARACTERS = st.one_of(
    st.characters(categories=["Cs"]),  # lone surrogates: not UTF-8 encodable
    st.characters(categories=("Cc", "Cf", "Zl", "Zp")),
    st.sampled_from(["\x00", "\udcff", "\ud800", "\n", "\u2028", "\u3000"]),
)
hostile_names = st.one_of(
    st.tuples(valid_names, _BAD_CHARACTERS, valid_names).map("".join),
    st.integers(201, 10_000).map(lambda n: "x" * n),
    st.tuples(st.integers(5_000, 10_000), _BAD_CHARACTERS).map(lambda t: "y" * t[0] + t[1]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(valid_names, min_size=1, max_size=2).map(tuple),
)
valid_costs = st.one_of(st.floats(0, 1_000_000), st.integers(0, 1_000_000))
hostile_costs = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.01, 1e300, 10**400, True, "0.5"]),
    st.floats(max_value=-1e-9),
    st.integers(min_value=1_000_001),
    st.lists(st.floats(0, 1), min_size=1, max_size=2).map(tuple),
)
step_values = st.one_of(
    st.sampled_from(["rerank", "generate", "x.y-z_1"]),
    st.sampled_from(["Bad Step", "", "a" * 64, 7, 1.5, True, ("rerank",), "r\udcff"]),
)
span_names = st.one_of(st.text(max_size=30), st.integers(201, 10_000).map(lambda n: "n\udcff" * n))


@dataclass(frozen=True)
class Pools:
    valid_tokens: list[Any]
    hostile_tokens: list[Any]
    valid_names: list[Any]
    hostile_names: list[Any]
    valid_costs: list[Any]
    hostile_costs: list[Any]
    steps: list[Any]
    span_names: list[str]
    raw_hostile: list[Any]


def _pool(values: st.SearchStrategy[Any], size: int = 6) -> st.SearchStrategy[list[Any]]:
    return st.lists(values, min_size=1, max_size=size)


pools = st.builds(
    Pools,
    valid_tokens=_pool(valid_tokens),
    hostile_tokens=_pool(hostile_tokens),
    valid_names=_pool(valid_names),
    hostile_names=_pool(hostile_names),
    valid_costs=_pool(valid_costs),
    hostile_costs=_pool(hostile_costs),
    steps=_pool(step_values),
    span_names=_pool(span_names, 3),
    raw_hostile=_pool(raw_hostile),
)
#: None: every model at the specialist tier's price; a number: a price override for every model.
price_overrides = st.one_of(
    st.none(),
    st.sampled_from([MAX_USD_PER_MTOK, 0.0, 5e-324, 123.456]),
    st.floats(0, MAX_USD_PER_MTOK),
)


# -- one span, and what must become of it -------------------------------------------------------
@dataclass
class Expected:
    counted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


_USAGE_KEYS = frozenset(
    (*INPUT_KEYS, *OUTPUT_KEYS, *CACHE_READ_KEYS, *REASONING_KEYS, *COST_KEYS, *MODEL_KEYS, *PROVIDER_KEYS)
)


class _Exploding(dict[str, Any]):
    """A mapping from a broken source: reading a usage attribute raises."""

    def __getitem__(self, key: str) -> Any:
        if key in _USAGE_KEYS:
            raise RuntimeError("broken attribute mapping")
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in _USAGE_KEYS and key in self:
            raise RuntimeError("broken attribute mapping")
        return super().get(key, default)

    def copy(self) -> dict[str, Any]:
        raise RuntimeError("broken attribute mapping")


_TOKEN_FIELDS = (
    ("input", INPUT_KEYS),
    ("output", OUTPUT_KEYS),
    ("cache", CACHE_READ_KEYS),
    ("reasoning", REASONING_KEYS),
)


def _add_tokens(rnd: random.Random, p: Pools, attrs: dict[str, Any], *, raw: bool) -> dict[str, int] | None:
    """Token counts under random keys of each field; ``None`` if one of them is hostile."""
    tokens: dict[str, int] | None = {}
    for name, keys in _TOKEN_FIELDS:
        roll = rnd.random()
        if roll < 0.25:
            continue
        index = rnd.randrange(len(keys))
        if roll < 0.96:
            value = None if raw and rnd.random() < 0.05 else rnd.choice(p.valid_tokens)  # None reads as 0
            if tokens is not None:
                tokens[name] = 0 if value is None else int(value)
        else:
            value = rnd.choice(p.raw_hostile if raw and rnd.random() < 0.3 else p.hostile_tokens)
            tokens = None
        attrs[keys[index]] = value
        if index + 1 < len(keys) and rnd.random() < 0.1:  # a lower-priority key: ignored
            attrs[keys[rnd.randrange(index + 1, len(keys))]] = rnd.choice(p.hostile_tokens)
    return tokens


def _add_names(rnd: random.Random, p: Pools, attrs: dict[str, Any], *, raw: bool) -> list[str]:
    """A model and a provider name; the drop reasons of the hostile ones, model first."""
    reasons = []
    for reason, keys in (("invalid_model", MODEL_KEYS), ("invalid_provider", PROVIDER_KEYS)):
        roll = rnd.random()
        if roll < 0.1:
            continue
        index = rnd.randrange(len(keys))
        if roll < 0.93:
            attrs[keys[index]] = rnd.choice(p.valid_names)
        else:
            attrs[keys[index]] = rnd.choice(p.hostile_names)
            if raw and rnd.random() < 0.3:
                attrs[keys[index]] = rnd.choice([b"gpt-4o", bytearray(b"m"), ["gpt-4o"], {"m": 1}])
            reasons.append(reason)
        if index + 1 < len(keys) and rnd.random() < 0.1:
            attrs[keys[rnd.randrange(index + 1, len(keys))]] = rnd.choice(p.hostile_names)
    return reasons


def _add_cost(rnd: random.Random, p: Pools, attrs: dict[str, Any]) -> tuple[float | None, str | None, bool]:
    """A cost the instrumentation computed, or garbage in its place: the valid cost, if any,
    the key it is under (``None`` when no cost attribute was written), and whether it is garbage."""
    roll = rnd.random()
    if roll >= 0.3:
        return None, None, False
    key = rnd.choice(COST_KEYS)
    if roll < 0.15:
        attrs[key] = rnd.choice(p.valid_costs)
        return float(attrs[key]), key, False
    attrs[key] = rnd.choice(p.hostile_costs)
    return None, key, True


def _span_attributes(
    rnd: random.Random, p: Pools, price: float | None, expected: Expected, *, raw: bool, too_old: bool = False
) -> Mapping[str, Any]:
    """One span's attributes; records its fate in ``expected`` (``too_old``: it ended before every window)."""
    attrs: dict[str, Any] = {}
    tokens = _add_tokens(rnd, p, attrs, raw=raw)
    invalid_names = _add_names(rnd, p, attrs, raw=raw)
    span_cost, cost_key, hostile_cost = _add_cost(rnd, p, attrs)
    if rnd.random() < 0.2:
        attrs["overspend.step"] = rnd.choice(p.steps)
    kind = None
    if rnd.random() < 0.2:
        kind = attrs["openinference.span.kind"] = rnd.choice(["RERANKER", "LLM", 3, ("EMBEDDING",)])
    if rnd.random() < 0.3:
        attrs["gen_ai.input.messages"] = rnd.choice(p.span_names)

    # Any billed key makes a span worth reading, cache reads and reasoning alone included.
    usage_keys = any(
        key in attrs for key in (*INPUT_KEYS, *OUTPUT_KEYS, *COST_KEYS, *CACHE_READ_KEYS, *REASONING_KEYS)
    )
    if raw and usage_keys and rnd.random() < 0.01:
        expected.drop("internal_error")
        return _Exploding(attrs)
    if not usage_keys and kind not in ("RERANKER", "LLM"):
        return attrs  # not an LLM call
    if tokens is None:
        expected.drop("invalid_tokens")
        return attrs
    if invalid_names:
        expected.drop(invalid_names[0])
        return attrs
    tokens_in, tokens_out = tokens.get("input", 0), tokens.get("output", 0)
    cache, reasoning = tokens.get("cache", 0), tokens.get("reasoning", 0)
    searches = 1 if kind == "RERANKER" else 0  # a rerank call is one search
    billed = bool(tokens_in or tokens_out or searches or cache or reasoning)
    if span_cost == 0.0 and cost_key in ZERO_MEANS_UNPRICED_COST_KEYS:
        span_cost = None  # LiteLLM's 0 is "no price"
    if not billed and span_cost is None:
        return attrs  # no usage: an LLM call without usage (kind LLM), counted apart
    if hostile_cost:
        expected.drop("invalid_span_cost")  # counted, and the call priced as if it had none
    if cache > tokens_in:
        tokens_in += cache  # reported net of cache reads: made gross
    if reasoning > tokens_out:
        tokens_out += reasoning  # reported net of reasoning: made gross
    if too_old:
        expected.drop("too_old")
        return attrs
    expected.counted += 1
    expected.input_tokens += tokens_in
    expected.output_tokens += tokens_out
    if price is not None and (tokens_in or tokens_out):
        expected.cost_usd += (tokens_in * price + tokens_out * price) / 1e6
    elif span_cost is not None:  # the override cannot price searches alone; the span's cost can
        expected.cost_usd += span_cost
    elif price is None:
        expected.cost_usd += (tokens_in + tokens_out) * SPECIALIST_USD_PER_MTOK / 1e6
        expected.cost_usd += searches * SPECIALIST_USD_PER_SEARCH
    return attrs


# -- the pipeline under test ----------------------------------------------------------------------
@dataclass
class Harness:
    processor: OverspendProcessor
    registry: CollectorRegistry
    provider: TracerProvider
    exporter: InMemorySpanExporter


def _harness(price: float | None) -> Harness:
    registry = CollectorRegistry()
    if price is None:
        config = Settings(serve_metrics=False, use_genai_prices=False, model_tiers={"*": "specialist"})
    else:
        config = Settings(
            serve_metrics=False, use_genai_prices=False, model_prices={"*": Price(input=price, output=price)}
        )
    processor = OverspendProcessor(settings=config, registry=registry)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # the app's own exporter
    return Harness(processor, registry, provider, exporter)


def _check(h: Harness, expected: Expected) -> None:
    body = generate_latest(h.registry).decode()  # every label value encodes: the scrape works
    assert body
    samples = [s for family in h.registry.collect() for s in family.samples]

    def total(name: str, **match: str) -> float:
        return sum(
            s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in match.items())
        )

    dropped = {
        s.labels["reason"]: s.value for s in samples if s.name == "overspend_spans_dropped_total" and s.value
    }
    assert dropped == expected.dropped
    assert total("overspend_llm_calls_total") == expected.counted
    assert total("overspend_llm_tokens_total", kind="input") == expected.input_tokens
    assert total("overspend_llm_tokens_total", kind="output") == expected.output_tokens
    cost = total("overspend_llm_cost_usd_total")
    assert math.isfinite(cost)
    assert cost == pytest.approx(expected.cost_usd, rel=1e-9, abs=1e-12)
    for s in samples:
        assert not math.isnan(s.value), s
        for value in s.labels.values():
            assert len(value) <= 200, s.labels
            assert value.isprintable(), s.labels


@dataclass
class Tally:
    spans: int = 0


@pytest.fixture
def tally() -> Tally:
    return Tally()


def _run_through_sdk(tally: Tally) -> None:
    @settings(
        max_examples=SDK_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=SLOW_AND_LARGE,
        phases=NO_SHRINK,
    )
    @given(p=pools, price=price_overrides, seed=st.integers(0, 2**64))
    def run(p: Pools, price: float | None, seed: int) -> None:
        rnd = random.Random(seed)  # combines the pools into a batch (reproducible from the seed)
        h = _harness(price)
        tracer = h.provider.get_tracer("hostile")
        expected = Expected()
        steps = [step("rerank"), step("generate"), None]
        with tracer.start_as_current_span("request"):
            for _ in range(BATCH):
                attrs = _span_attributes(rnd, p, price, expected, raw=False)
                marker = rnd.choice(steps)
                name = rnd.choice(p.span_names)
                if marker is None:
                    with tracer.start_as_current_span(name, attributes=attrs):
                        pass
                else:
                    with marker, tracer.start_as_current_span(name, attributes=attrs):
                        pass
        assert len(h.exporter.get_finished_spans()) == BATCH + 1  # the app's spans all exported
        _check(h, expected)
        h.provider.shutdown()
        tally.spans += BATCH

    run()


def _run_directly(tally: Tally) -> None:
    @settings(
        max_examples=DIRECT_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=SLOW_AND_LARGE,
        phases=NO_SHRINK,
    )
    @given(p=pools, price=price_overrides, seed=st.integers(0, 2**64))
    def run(p: Pools, price: float | None, seed: int) -> None:
        rnd = random.Random(seed)  # combines the pools into a batch (reproducible from the seed)
        h = _harness(price)
        expected = Expected()
        trace_id = rnd.getrandbits(128) | 1
        root = ReadableSpan(
            name="request",
            context=SpanContext(trace_id, rnd.getrandbits(64) | 1, is_remote=False),
            resource=RESOURCE,
        )
        h.processor.on_start(root)  # type: ignore[arg-type] # a span from some other SDK
        for _ in range(BATCH):
            # No end time, the epoch, now, or the far future (counted now).
            end_ns = rnd.choice([None, 0, time.time_ns(), 2**63])
            attrs = _span_attributes(rnd, p, price, expected, raw=True, too_old=not end_ns)
            span = ReadableSpan(
                name=rnd.choice(p.span_names),
                context=SpanContext(trace_id, rnd.getrandbits(64) | 1, is_remote=False),
                parent=root.context,
                attributes=attrs,  # hostile on purpose
                start_time=rnd.choice([None, 0, 1, 2**63]),
                end_time=end_ns,
                resource=RESOURCE,
            )
            h.processor.on_start(span)  # type: ignore[arg-type]
            h.processor.on_end(span)
        h.processor.on_end(root)
        _check(h, expected)
        h.provider.shutdown()
        tally.spans += BATCH

    run()


def test_100k_hostile_spans_never_raise_and_every_drop_is_counted(tally: Tally) -> None:
    _run_through_sdk(tally)
    _run_directly(tally)
    assert tally.spans >= 100_000


# -- a broken price file ----------------------------------------------------------------------------
@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("OVERSPEND_"):
            monkeypatch.delenv(name)
    path = tmp_path / "overspend.toml"
    monkeypatch.setenv("OVERSPEND_CONFIG", str(path))
    return path


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"metrics_port = \n[model_prices\n", ["OVERSPEND_CONFIG", "overspend.toml", "line 1"]),
        (b"\xff\xfe garbage", ["OVERSPEND_CONFIG", "overspend.toml"]),
        (b'tier_prices = "cheap"\n', ["tier_prices", "cheap"]),
        (b'[model_prices."gpt-*"]\ninput = -3\noutput = 1\n', ["model_prices", "-3"]),
        (b'[model_prices."gpt-*"]\ninput = 1e12\noutput = 1\n', ["model_prices", "1000000"]),
        (b'[model_prices."gpt-*"]\ninput = nan\noutput = 1\n', ["model_prices", "nan"]),
        (b'[model_prices."re:("]\ninput = 1\noutput = 1\n', ["model_prices", "re:("]),
        (b'[model_tiers]\n"gpt-*" = "huge"\n', ["model_tiers", "huge"]),
    ],
)
def test_a_broken_price_file_fails_at_construction(
    config_file: Path, content: bytes, shown: list[str]
) -> None:
    config_file.write_bytes(content)
    with pytest.raises(ValueError) as info:
        OverspendProcessor(serve_metrics=False, registry=CollectorRegistry())
    for text in shown:
        assert text in str(info.value)


def test_prices_above_the_limit_are_refused() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1000000"):
        Price(input=MAX_USD_PER_MTOK * 10, output=1)
