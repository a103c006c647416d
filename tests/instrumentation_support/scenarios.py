"""Runs LLM calls through the real clients under real instrumentations; writes what
otel_overspend counted, as JSON. Runs in its own process (and, for OpenLIT, its own
virtualenv), so it imports neither pytest nor the test helpers.

    python scenarios.py --instrument openai-v2,openinference-openai --cases chat,embeddings --out r.json

Every case runs in its own trace (a ``request`` root span) inside ``step("rerank")``,
against ``examples/fake_provider.py``. Two processors count every span: one with default
settings, one with user price overrides (:data:`OVERRIDE_PRICES`). The result holds, per
case, the change of every ``*_total`` counter of each registry, the exception the client
raised (if any) and every span (the ``request`` root included), with its parent and the
attributes that are not message content, and its instrumentation scope (name and version).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anthropic
import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step
from otel_overspend.config.settings import Price

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from fake_provider import FakeProvider

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Tracer

#: The user price overrides of the second processor (token rates in USD per 1M tokens,
#: ``per_search`` in USD a search): they beat every other source.
OVERRIDE_RATES: Final[dict[str, dict[str, float]]] = {
    "gpt-4o*": {"input": 1.0, "output": 4.0, "cache_read": 0.5},
    "gpt-5*": {"input": 0.5, "output": 4.0, "cache_read": 0.05},
    "claude-sonnet-4-5*": {
        "input": 2.0,
        "output": 8.0,
        "cache_read": 0.2,
        "cache_write": 2.5,
        "cache_write_1h": 4.0,
    },
    "rerank-v3.5*": {"input": 0.0, "output": 0.0, "per_search": 0.001},
}
#: As ``Price`` objects. A rate this version of ``Price`` does not know is left out (the
#: cache-write and per-search rates are newer than the price model of some library
#: versions): the tests that need it then fail on its cost, not every run at once.
OVERRIDE_PRICES: Final = {
    pattern: Price(**{name: rate for name, rate in rates.items() if name in Price.model_fields})
    for pattern, rates in OVERRIDE_RATES.items()
}
#: Distributions whose versions the result reports.
DISTRIBUTIONS: Final = (
    "openai",
    "anthropic",
    "httpx",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "opentelemetry-instrumentation-openai",
    "opentelemetry-instrumentation-anthropic",
    "opentelemetry-instrumentation-langchain",
    "openinference-instrumentation-openai",
    "openinference-instrumentation-anthropic",
    "openinference-instrumentation-langchain",
    "langchain-openai",
    "cohere",
    "opentelemetry-instrumentation-cohere",
    "openinference-instrumentation-cohere",
    "openlit",
)
_SKIPPED_ATTRIBUTE_PARTS: Final = (
    "content",
    "message",
    "prompt.",
    "completion.",
    "input.value",
    "output.value",
)


class Calls:
    """The clients a case uses, pointed at the fake provider, without retries."""

    def __init__(self, fake: FakeProvider, tracer: Tracer) -> None:
        self.fake = fake
        self.tracer = tracer
        self.openai = openai.OpenAI(base_url=fake.openai_url, api_key="fake", max_retries=0)
        self.anthropic = anthropic.Anthropic(base_url=fake.url, api_key="fake", max_retries=0)

    def cohere(self, version: str = "v2") -> Any:
        """A cohere client (v1 ``Client`` or v2 ``ClientV2``), imported here: the OpenLIT
        environment has no cohere."""
        module = importlib.import_module("cohere")
        client = module.ClientV2 if version == "v2" else module.Client
        return client(api_key="fake", base_url=self.fake.cohere_url, timeout=30)


# -- the cases: the same calls for every instrumentation ------------------------------------------
# Usage is what the fake reports: input = characters of the texts, output = the token limit.
def chat(c: Calls) -> Any:
    return c.openai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "p" * 1000}], max_tokens=200
    )


def chat_stream(c: Calls) -> None:
    stream = c.openai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "p" * 1000}],
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass


def chat_cached(c: Calls) -> None:
    cached_system: Any = {"type": "text", "text": "s" * 800, "cache_control": {"type": "ephemeral"}}
    c.openai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": [cached_system]}, {"role": "user", "content": "p" * 200}],
        max_tokens=100,
    )


def embeddings(c: Calls) -> None:
    c.openai.embeddings.create(model="text-embedding-3-small", input=["a" * 300, "b" * 200])


def responses(c: Calls) -> None:
    c.openai.responses.create(model="gpt-4o", input="p" * 1000, max_output_tokens=200)


def responses_stream(c: Calls) -> None:
    for _ in c.openai.responses.create(model="gpt-4o", input="p" * 1000, max_output_tokens=200, stream=True):
        pass


def messages(c: Calls) -> None:
    c.anthropic.messages.create(
        model="claude-sonnet-4-5", max_tokens=300, messages=[{"role": "user", "content": "q" * 2000}]
    )


def messages_stream(c: Calls) -> None:
    stream = c.anthropic.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=300,
        messages=[{"role": "user", "content": "q" * 2000}],
        stream=True,
    )
    for _ in stream:
        pass


_CACHED_SYSTEM: Final[Any] = [{"type": "text", "text": "s" * 800, "cache_control": {"type": "ephemeral"}}]


def messages_cached(c: Calls) -> None:
    c.anthropic.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=_CACHED_SYSTEM,
        messages=[{"role": "user", "content": "q" * 1200}],
    )


def messages_cached_stream(c: Calls) -> None:
    stream = c.anthropic.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=_CACHED_SYSTEM,
        messages=[{"role": "user", "content": "q" * 1200}],
        stream=True,
    )
    for _ in stream:
        pass


def _stream(response: Any) -> None:
    for _ in response:
        pass


# Cache writes: a cache_control with a ttl is a write of that lifetime, one without a read.
def _cached_system(*writes: tuple[str, int]) -> Any:
    """An 800-character cache read, then a cache write of each (ttl, characters)."""
    parts: list[Any] = [{"type": "text", "text": "s" * 800, "cache_control": {"type": "ephemeral"}}]
    parts += [
        {"type": "text", "text": "w" * size, "cache_control": {"type": "ephemeral", "ttl": ttl}}
        for ttl, size in writes
    ]
    return parts


def _write_cache(c: Calls, *writes: tuple[str, int], stream: bool = False) -> Any:
    return c.anthropic.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system=_cached_system(*writes),
        messages=[{"role": "user", "content": "q" * 1200}],
        stream=stream,
    )


def messages_cache_write_5m(c: Calls) -> None:
    _write_cache(c, ("5m", 500))


def messages_cache_write_1h(c: Calls) -> None:
    _write_cache(c, ("1h", 500))


def messages_cache_write_stream(c: Calls) -> None:
    _stream(_write_cache(c, ("5m", 300), ("1h", 200), stream=True))


def _think(c: Calls, *, stream: bool = False) -> Any:
    return c.anthropic.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "q" * 2000}],
        stream=stream,
    )


def messages_thinking(c: Calls) -> None:
    _think(c)


def messages_thinking_stream(c: Calls) -> None:
    _stream(_think(c, stream=True))


# A reasoning model: half the output tokens are reasoning (the fake's rule).
_CACHED_PART: Final[Any] = {"type": "text", "text": "s" * 800, "cache_control": {"type": "ephemeral"}}


def chat_reasoning(c: Calls) -> None:
    c.openai.chat.completions.create(
        model="gpt-5",
        messages=[{"role": "system", "content": [_CACHED_PART]}, {"role": "user", "content": "p" * 200}],
        max_completion_tokens=400,
        reasoning_effort="low",
    )


def chat_reasoning_stream(c: Calls) -> None:
    _stream(
        c.openai.chat.completions.create(
            model="gpt-5",
            messages=[{"role": "system", "content": [_CACHED_PART]}, {"role": "user", "content": "p" * 200}],
            max_completion_tokens=400,
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
        )
    )


def _reason(c: Calls, *, stream: bool = False) -> Any:
    # cache_control is the fake's cache-read mark; the typed params have no such key.
    cached = {"type": "input_text", "text": "s" * 800, "cache_control": {"type": "ephemeral"}}
    message: Any = {"role": "user", "content": [cached, {"type": "input_text", "text": "p" * 200}]}
    return c.openai.responses.create(
        model="gpt-5",
        input=[message],
        max_output_tokens=400,
        reasoning={"effort": "low"},
        stream=stream,
    )


def responses_reasoning(c: Calls) -> None:
    _reason(c)


def responses_reasoning_stream(c: Calls) -> None:
    _stream(_reason(c, stream=True))


# Cohere rerank: billed per search unit (one per started 100 documents), no tokens.
def rerank(c: Calls) -> None:
    c.cohere().rerank(model="rerank-v3.5", query="q" * 50, documents=["d" * 100] * 3, top_n=2)


def rerank_v1(c: Calls) -> None:
    c.cohere("v1").rerank(model="rerank-v3.5", query="q" * 50, documents=["d" * 100] * 3, top_n=2)


def rerank_many(c: Calls) -> None:
    """150 documents: two search units."""
    c.cohere().rerank(model="rerank-v3.5", query="q" * 50, documents=["d" * 100] * 150, top_n=2)


def error_openai(c: Calls) -> None:
    c.openai.chat.completions.create(model="error-500", messages=[{"role": "user", "content": "x"}])


def error_anthropic(c: Calls) -> None:
    c.anthropic.messages.create(model="error-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def wrapped_chat(c: Calls) -> None:
    """A framework's LLM span around the client call, as the current span (so the client's
    span is its child), carrying the usage OpenInference's LangChain instrumentation puts on
    its LLM spans. Built by hand: the real framework instrumentations do not make their span
    current (see the ``langchain_chat`` case)."""
    with c.tracer.start_as_current_span("ChatOpenAI", attributes={"openinference.span.kind": "LLM"}) as span:
        response = chat(c)
        span.set_attributes(
            {
                "llm.provider": "openai",
                "llm.system": "openai",
                "llm.model_name": response.model,
                "llm.token_count.prompt": response.usage.prompt_tokens,
                "llm.token_count.completion": response.usage.completion_tokens,
                "llm.token_count.total": response.usage.total_tokens,
            }
        )


def langchain_chat(c: Calls) -> None:
    chat_openai = importlib.import_module("langchain_openai").ChatOpenAI
    model = chat_openai(
        model="gpt-4o", base_url=c.fake.openai_url, api_key="fake", max_retries=0, max_tokens=200
    )
    model.invoke("p" * 1000)


CASES: Final[dict[str, Callable[[Calls], Any]]] = {
    fn.__name__: fn
    for fn in (
        chat,
        chat_stream,
        chat_cached,
        embeddings,
        responses,
        responses_stream,
        messages,
        messages_stream,
        messages_cached,
        messages_cached_stream,
        messages_cache_write_5m,
        messages_cache_write_1h,
        messages_cache_write_stream,
        messages_thinking,
        messages_thinking_stream,
        chat_reasoning,
        chat_reasoning_stream,
        responses_reasoning,
        responses_reasoning_stream,
        rerank,
        rerank_v1,
        rerank_many,
        error_openai,
        error_anthropic,
        wrapped_chat,
        langchain_chat,
    )
}


# -- the instrumentations ---------------------------------------------------------------------------
def _instrumentor(module: str, name: str) -> Callable[[TracerProvider, Path], None]:
    def instrument(provider: TracerProvider, price_list: Path) -> None:
        del price_list
        getattr(importlib.import_module(module), name)().instrument(tracer_provider=provider)

    return instrument


def _openlit(provider: TracerProvider, price_list: Path) -> None:
    # OpenLIT reuses the global tracer provider; its price list is a local file (by default it
    # downloads one, and prices every call at $0 when it cannot).
    del provider
    importlib.import_module("openlit").init(
        disable_metrics=True, disable_events=True, pricing_json=str(price_list)
    )


INSTRUMENTATIONS: Final[dict[str, Callable[[TracerProvider, Path], None]]] = {
    "openai-v2": _instrumentor("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    "openllmetry-openai": _instrumentor("opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),
    "openllmetry-anthropic": _instrumentor(
        "opentelemetry.instrumentation.anthropic", "AnthropicInstrumentor"
    ),
    "openllmetry-langchain": _instrumentor(
        "opentelemetry.instrumentation.langchain", "LangchainInstrumentor"
    ),
    "openinference-openai": _instrumentor("openinference.instrumentation.openai", "OpenAIInstrumentor"),
    "openinference-anthropic": _instrumentor(
        "openinference.instrumentation.anthropic", "AnthropicInstrumentor"
    ),
    "openinference-langchain": _instrumentor(
        "openinference.instrumentation.langchain", "LangChainInstrumentor"
    ),
    "openllmetry-cohere": _instrumentor("opentelemetry.instrumentation.cohere", "CohereInstrumentor"),
    "openinference-cohere": _instrumentor("openinference.instrumentation.cohere", "CohereInstrumentor"),
    "openlit": _openlit,
}


# -- reading back -------------------------------------------------------------------------------------
def _counters(registry: CollectorRegistry) -> dict[str, float]:
    """Every ``*_total`` sample, keyed ``name{label=value,...}`` with labels sorted."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)
    }


def _span_attributes(attrs: Any) -> dict[str, Any]:
    return {
        key: value if isinstance(value, (bool, int, float, str)) else str(value)
        for key, value in sorted(attrs.items())
        if not any(part in key for part in _SKIPPED_ATTRIBUTE_PARTS)
        and not (isinstance(value, str) and len(value) > 120)
    }


def _span_id(context: SpanContext | None) -> str | None:
    return None if context is None else f"{context.span_id:016x}"


def _scope(span: ReadableSpan) -> str:
    scope = span.instrumentation_scope
    return "" if scope is None else f"{scope.name} {scope.version or ''}".strip()


def _versions() -> dict[str, str]:
    installed = {
        dist.metadata["Name"].lower().replace("_", "-"): dist.version
        for dist in importlib.metadata.distributions()
    }
    return {name: installed[name] for name in DISTRIBUTIONS if name in installed}


def run(instrument: list[str], cases: list[str], price_list: Path) -> dict[str, Any]:
    warnings.simplefilter("ignore")  # the clients warn of deprecated models; not our subject here
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    registries = {"default": CollectorRegistry(), "override": CollectorRegistry()}
    settings = {
        "default": Settings(serve_metrics=False),
        "override": Settings(serve_metrics=False, model_prices=OVERRIDE_PRICES),
    }
    for name, registry in registries.items():
        provider.add_span_processor(
            OverspendProcessor(settings=settings[name], registry=registry, serve_metrics=False)
        )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in instrument:
        INSTRUMENTATIONS[name](provider, price_list)
    tracer = provider.get_tracer("scenarios")
    results = []
    with FakeProvider() as fake:
        calls = Calls(fake, tracer)
        for case in cases:
            before = {name: _counters(registry) for name, registry in registries.items()}
            error = None
            with tracer.start_as_current_span("request"), step("rerank"):
                try:
                    CASES[case](calls)
                except (openai.APIError, anthropic.APIError) as exc:
                    error = type(exc).__name__
            spans = [
                {
                    "name": span.name,
                    "id": _span_id(span.context),
                    "parent": _span_id(span.parent),
                    "scope": _scope(span),
                    "attributes": _span_attributes(span.attributes or {}),
                }
                for span in exporter.get_finished_spans()
            ]
            exporter.clear()
            results.append(
                {
                    "case": case,
                    "error": error,
                    "counted": {
                        name: _delta(before[name], _counters(registry))
                        for name, registry in registries.items()
                    },
                    "spans": spans,
                }
            )
    return {"versions": _versions(), "cases": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--instrument", default="", help=f"comma-separated, of: {', '.join(INSTRUMENTATIONS)}"
    )
    parser.add_argument("--cases", required=True, help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--price-list", type=Path, required=True, help="OpenLIT's pricing JSON")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    instrument = [name for name in args.instrument.split(",") if name]
    result = run(instrument, args.cases.split(","), args.price_list)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
