"""The offline report's throughput on three shapes of export, beside a batch pandas job.

    .venv/bin/python benchmarks/bench_report_shapes.py            # all three shapes
    .venv/bin/python benchmarks/bench_report_shapes.py --spans 100000 --prompt-spans 20000

- **collector batches**: the collector's file exporter, 100 requests of 6 spans a line (a
  root, a retrieval and 4 LLM calls: 67 % LLM spans), as in ``bench_report``;
- **a trace a line**: one request per line, each its own ``resourceSpans`` document, a root
  and 4 LLM calls (80 % LLM spans), as a trace backend's API answers one trace at a time;
- **prompts on the spans**: as the trace-a-line shape, each LLM span also carrying its
  prompt and completion as OpenLLMetry records them by default (``gen_ai.prompt.0.content``,
  ``gen_ai.prompt.1.content``, ``gen_ai.completion.0.content``): 10 to 50 KB of text a span,
  with the escapes (quotes, newlines) real prompts have.

Each shape is read twice: as JSON (the collector's file exporter's default) and as the
same spans in protobuf (its ``format: proto``: a 4-byte length, then a ``TracesData``).

Printed per shape and format: spans a second of CPU on one core (best of ``--repeat`` runs,
the package as installed), the megabytes a second that is, and for JSON the CPU seconds of
a batch pandas computation of the counterfactual (the seed's Test 3: a DataFrame of the
same calls, costed row-wise) beside the report's, run in the same process. For JSON, the
ceilings its bytes set on this host come next (:func:`byte_ceilings`): the spans a second
were the report only to read the lines, and only to check they are JSON. pandas is a
benchmark-only dependency (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from bench_report import (
    FRONTIER,
    RERANKER,
    RESOURCE,
    STEPS,
    WEEK_S,
    WEEK_START_S,
    _llm_span,
    _other_span,
    generate,
    pandas_test3,
    time_report,
)
from google.protobuf import json_format  # type: ignore[import-untyped]  # protobuf ships no type hints
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from otel_overspend.report.files import read_records

if TYPE_CHECKING:
    from collections.abc import Callable

Calls = list[tuple[int, str, int, int]]
#: Where extra attributes go in a span ``_llm_span`` writes.
_ATTRIBUTES_END = '],"status":{}'
_WORDS = (
    "the",
    "query",
    "document",
    "answer",
    "context",
    "retrieved",
    "passage",
    'said \\"yes\\"',
    "score:",
    "0.87",
    "\\n",
    "\\t-",
    "policy",
    "customer",
)


def _text(rng: random.Random, size: int) -> str:
    """About ``size`` bytes of prompt-like text, JSON-escaped."""
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _prompt_attributes(rng: random.Random, pool: list[str]) -> str:
    """A system prompt, a user prompt with its retrieved context and a completion: 10 to
    50 KB in all, drawn from ``pool``."""
    # Cut where no escape is split: a trailing backslash would escape the closing quote.
    system, completion = rng.choice(pool)[:2_000].rstrip("\\"), rng.choice(pool)[:4_000].rstrip("\\")
    user = rng.choice(pool)
    return (
        ',{"key":"gen_ai.prompt.0.role","value":{"stringValue":"system"}},'
        f'{{"key":"gen_ai.prompt.0.content","value":{{"stringValue":"{system}"}}}},'
        '{"key":"gen_ai.prompt.1.role","value":{"stringValue":"user"}},'
        f'{{"key":"gen_ai.prompt.1.content","value":{{"stringValue":"{user}"}}}},'
        '{"key":"gen_ai.completion.0.role","value":{"stringValue":"assistant"}},'
        f'{{"key":"gen_ai.completion.0.content","value":{{"stringValue":"{completion}"}}}}'
    )


def generate_per_trace(path: Path, spans: int, *, prompts: bool, seed: int = 11) -> Calls:
    """Write about ``spans`` spans to ``path``, one trace (a root and 4 LLM calls) a line;
    with ``prompts``, every LLM span carries 10-50 KB of prompt and completion. Returns
    every call as (request, step, tokens in, tokens out)."""
    rng = random.Random(seed)
    pool = [_text(rng, rng.randint(8_000, 44_000)) for _ in range(64)] if prompts else []
    per_request = 1 + len(STEPS)
    n = max(1, spans // per_request)
    gap_ns = WEEK_S * 1_000_000_000 // n
    calls: Calls = []
    with path.open("w") as out:
        for i in range(n):
            t0 = WEEK_START_S * 1_000_000_000 + i * gap_ns
            trace = f"{rng.getrandbits(128):032x}"
            root = f"{rng.getrandbits(64) | 1:016x}"
            parts: list[str] = []
            t = t0 + 1_000_000
            for step, tin, tout in STEPS:
                model = RERANKER if step == "rerank" and i >= n * 4 // 7 else FRONTIER
                tokens = (round(tin * rng.uniform(0.9, 1.1)), round(tout * rng.uniform(0.9, 1.1)))
                duration = rng.randint(200_000_000, 2_000_000_000)
                span = _llm_span(
                    (trace, f"{rng.getrandbits(64) | 1:016x}", root), step, model, tokens, (t, t + duration)
                )
                if prompts:
                    span = span.replace(_ATTRIBUTES_END, _prompt_attributes(rng, pool) + _ATTRIBUTES_END, 1)
                parts.append(span)
                calls.append((i, step, *tokens))
                t += duration + 1_000_000
            parts.append(_other_span(trace, root, "", t0, t + 1_000_000))
            out.write(RESOURCE + ",".join(parts) + "]}]}]}\n")
    return calls


def _ids_to_base64(node: object) -> None:
    """OTLP/JSON writes ids in hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId", "parentSpanId"):
            if node.get(key):
                node[key] = base64.b64encode(bytes.fromhex(node[key])).decode()
        for value in node.values():
            _ids_to_base64(value)
    elif isinstance(node, list):
        for value in node:
            _ids_to_base64(value)


def to_protobuf(source: Path, target: Path) -> None:
    """Each JSON line of ``source`` as the collector's ``format: proto`` writes it."""
    with source.open("rb") as lines, target.open("wb") as out:
        for line in lines:
            doc = json.loads(line)
            _ids_to_base64(doc)
            data = json_format.ParseDict(doc, TracesData()).SerializeToString()
            out.write(struct.pack(">I", len(data)) + data)


def byte_ceilings(path: Path, repeat: int) -> tuple[float, float]:
    """CPU seconds (best of ``repeat``) to read a JSON file's lines as the report does and
    (1) search each for a NUL byte, which valid JSON text does not hold (``memchr``: every
    byte brought through memory, nothing built); (2) check each is JSON with msgspec, building nothing
    (``msgspec.Raw``). No decoder of the text can go faster than (1); (2) is the fastest
    scan of JSON text the report's dependencies offer."""
    check = msgspec.json.Decoder(msgspec.Raw).decode

    def best(work: Callable[[bytes], object]) -> float:
        seconds = []
        for _ in range(repeat):
            started = time.process_time()
            for record in read_records(path):
                work(record.data)
            seconds.append(time.process_time() - started)
        return min(seconds)

    return best(lambda data: data.find(b"\0")), best(check)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=200_000, help="spans of the first two shapes")
    parser.add_argument("--prompt-spans", type=int, default=25_000, help="spans of the shape with prompts")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shapes: list[tuple[str, Path, Calls]] = []
        batches = Path(tmp) / "batches.json"
        batch_calls = [(i, step, tin, tout) for i, step, tin, tout in generate(batches, args.spans)]
        shapes.append(("collector batches (67 % LLM)", batches, batch_calls))
        per_trace = Path(tmp) / "per-trace.json"
        shapes.append(
            ("a trace a line (80 % LLM)", per_trace, generate_per_trace(per_trace, args.spans, prompts=False))
        )
        prompts = Path(tmp) / "prompts.json"
        shapes.append(
            (
                "a trace a line, 10-50 KB prompts",
                prompts,
                generate_per_trace(prompts, args.prompt_spans, prompts=True),
            )
        )
        for label, path, calls in shapes:
            timing, _ = time_report(path, args.repeat, profile=False)
            size_mb = path.stat().st_size / 1e6
            started = time.process_time()
            pandas_test3(calls)
            pandas_s = time.process_time() - started
            print(
                f"{label + ', JSON':<40} {timing.spans:>9,} spans, {size_mb:>6,.0f} MB: "
                f"{timing.best_rate:>9,.0f} spans/s a core ({size_mb / timing.best_cpu_s:,.0f} MB/s), "
                f"median {timing.median_rate:,.0f}; pandas Test 3 on its {len(calls):,} calls "
                f"{pandas_s:.2f} s CPU against the report's {timing.best_cpu_s:.2f} s",
                flush=True,
            )
            touched_s, checked_s = byte_ceilings(path, args.repeat)
            print(
                f"{'':<40} at most, were the report only to read its bytes: "
                f"{timing.spans / touched_s:,.0f} spans/s ({size_mb / touched_s:,.0f} MB/s); "
                f"only to check it is JSON (msgspec): {timing.spans / checked_s:,.0f} spans/s "
                f"({size_mb / checked_s:,.0f} MB/s)",
                flush=True,
            )
            proto = path.with_suffix(".pb")
            to_protobuf(path, proto)
            path.unlink()
            timing, _ = time_report(proto, args.repeat, profile=False)
            size_mb = proto.stat().st_size / 1e6
            print(
                f"{label + ', protobuf':<40} {timing.spans:>9,} spans, {size_mb:>6,.0f} MB: "
                f"{timing.best_rate:>9,.0f} spans/s a core ({size_mb / timing.best_cpu_s:,.0f} MB/s), "
                f"median {timing.median_rate:,.0f}",
                flush=True,
            )
            proto.unlink()


if __name__ == "__main__":
    main()
