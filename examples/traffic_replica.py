"""One replica of the example RAG service: real spans, deterministic spend, a traffic mix you can change live.

Each request is rewrite -> retrieve -> rerank -> generate -> faithfulness, emitted as real
OpenTelemetry spans (GenAI semantic-convention attributes, one root span a request) through a
``TracerProvider`` with an :class:`~otel_overspend.OverspendProcessor`, which serves
``/metrics``. Token volumes are exactly ``LLM_STEPS`` of ``otel_overspend/demo.py``
(rewrite 200/50, rerank 12,000/200, generate 3,500/400, faithfulness 4,000/100 in/out; no
jitter), so every number on ``/metrics`` can be computed by hand: a rerank call costs
$0.039 on the frontier model (12,000 in / 200 out at $3 / $15 per 1M) and $0.000244 on the
specialist reranker.

The traffic mix is a JSON file, re-read within a second of any change (replace it atomically)::

    {"rerank_frontier": 0.25, "faithfulness_frontier": 1.0, "unpriced_every": 0, "unattributed_every": 0}

``rerank_frontier`` is the fraction of requests whose rerank runs on the frontier model (the
rest use the specialist reranker), spread evenly: 0.25 is every fourth request, not a coin
flip. ``faithfulness_frontier`` does the same for faithfulness (frontier vs a small judge).
Every ``unpriced_every``-th request adds a rewrite call to a self-hosted model no price source
knows, and every ``unattributed_every``-th a moderation call outside any step (0: never).
With ``oracle_agreement`` set, every request records one oracle check of the faithfulness
judge against its teacher, that share of them agreeing (spread evenly, as the fractions).
Neither changes the specialist-eligible fraction: the first costs nothing, the second is
left out of both sides. A missing file keeps the mix given on the command line; an invalid
one is reported on stderr and the previous mix stays.

Windows and everything else come from ``OVERSPEND_*`` (e.g. ``OVERSPEND_WINDOWS=1m,5m``).
With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set, spans are also exported
over OTLP (``OTEL_EXPORTER_OTLP_PROTOCOL``: ``grpc``, the default here, or ``http/protobuf``).

Standard output carries one JSON object a line: ``{"event": "ready", "port": ...}`` once
``/metrics`` is up, then ``{"event": "mix", ...}`` whenever a mix takes effect.

    python examples/traffic_replica.py --port 9464 --rate 20 --mix-file mix.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic import ValidationError

from otel_overspend import OverspendProcessor, Settings, record_oracle_check, step
from otel_overspend.demo import FRONTIER, JUDGE, LLM_STEPS, PIPELINE, RERANKER, Model

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.trace import Tracer

#: A self-hosted model that neither the catalog nor genai-prices knows: its calls are unpriced.
UNPRICED: Final = Model("house-rewriter-v2", "acme")
#: A moderation call made by middleware outside any pipeline step.
MODERATION: Final = Model("gpt-4o-mini", "openai")
_EXTRA_TOKENS: Final = (100, 10)
#: Simulated duration of one step, in ns (spans carry explicit times: nothing sleeps).
_STEP_NS: Final = 50_000_000
_MIX_POLL_S: Final = 1.0
_MAX_LAG_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Mix:
    """What share of requests run rerank and faithfulness on the frontier model, and the extras."""

    rerank_frontier: float = 1.0
    faithfulness_frontier: float = 1.0
    unpriced_every: int = 0
    unattributed_every: int = 0
    #: Share of oracle checks agreeing; ``None``: no oracle check.
    oracle_agreement: float | None = None

    def __post_init__(self) -> None:
        for name in ("rerank_frontier", "faithfulness_frontier", "oracle_agreement"):
            value = getattr(self, name)
            if value is None and name == "oracle_agreement":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
        for name in ("unpriced_every", "unattributed_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")

    @classmethod
    def from_json(cls, data: object) -> Mix:
        if not isinstance(data, dict):
            raise TypeError(f"a mix is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown mix keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


class Router:
    """Picks each request's models so that the mix's fractions hold exactly over any run of requests."""

    def __init__(self, mix: Mix) -> None:
        self.mix = mix
        self._credit = {"rerank": 0.0, "faithfulness": 0.0, "oracle": 0.0}
        self._seq = 0

    def set_mix(self, mix: Mix) -> None:
        self.mix = mix
        self._credit = dict.fromkeys(self._credit, 0.0)

    def _frontier(self, step_name: str, fraction: float) -> bool:
        credit = self._credit[step_name] + fraction
        # A tolerance so that 1/3 + 1/3 + 1/3 counts as one whole frontier request.
        hit = credit >= 1 - 1e-9
        self._credit[step_name] = credit - 1 if hit else credit
        return hit

    def oracle_check(self) -> bool | None:
        """Whether this request's oracle check agrees (``None``: no check)."""
        share = self.mix.oracle_agreement
        return None if share is None else self._frontier("oracle", share)

    def next_request(self) -> tuple[dict[str, Model], bool, bool]:
        """(model of each LLM step, add the unpriced call, add the unattributed call)."""
        self._seq += 1
        mix = self.mix
        route = dict.fromkeys(LLM_STEPS, FRONTIER)
        if not self._frontier("rerank", mix.rerank_frontier):
            route["rerank"] = RERANKER
        if not self._frontier("faithfulness", mix.faithfulness_frontier):
            route["faithfulness"] = JUDGE
        unpriced = mix.unpriced_every > 0 and self._seq % mix.unpriced_every == 0
        unattributed = mix.unattributed_every > 0 and self._seq % mix.unattributed_every == 0
        return route, unpriced, unattributed


def _llm_attributes(model: Model, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": model.provider,
        "gen_ai.request.model": model.name,
        "gen_ai.response.model": model.name,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }


def emit_request(
    tracer: Tracer,
    route: Mapping[str, Model],
    *,
    unpriced: bool = False,
    unattributed: bool = False,
    end_ns: int | None = None,
) -> None:
    """Emit one request's spans, with the fixture's token volumes exactly, ending at ``end_ns``."""
    calls = len(PIPELINE) + unpriced + unattributed
    end = time.time_ns() if end_ns is None else end_ns
    t = end - calls * _STEP_NS
    root = tracer.start_span(
        "POST /answer", kind=trace.SpanKind.SERVER, start_time=t, attributes={"http.route": "/answer"}
    )
    parent = trace.set_span_in_context(root)

    def call(name: str, attributes: Mapping[str, Any]) -> None:
        nonlocal t
        span = tracer.start_span(name, context=parent, kind=trace.SpanKind.CLIENT, start_time=t)
        span.set_attributes(attributes)
        span.end(end_time=t + _STEP_NS)
        t += _STEP_NS

    if unattributed:
        call(f"chat {MODERATION.name}", _llm_attributes(MODERATION, *_EXTRA_TOKENS))
    for name in PIPELINE:
        with step(name):
            if name not in LLM_STEPS:
                call(name, {"rag.documents": 50})
                continue
            model = route[name]
            call(f"chat {model.name}", _llm_attributes(model, *LLM_STEPS[name]))
            if name == "rewrite" and unpriced:
                call(f"chat {UNPRICED.name}", _llm_attributes(UNPRICED, *_EXTRA_TOKENS))
    root.end(end_time=end)


class MixFile:
    """Re-reads a JSON mix file when its identity (inode, size, mtime) changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    def poll(self) -> Mix | None:
        """The file's mix if it changed since the last call and is valid, else ``None``."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        if identity == self._seen:
            return None
        self._seen = identity
        try:
            return Mix.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            print(f"traffic_replica: ignoring {self.path}: {exc}", file=sys.stderr, flush=True)
            return None


def _event(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def _otlp_span_processor() -> SpanProcessor | None:
    """A batch OTLP exporter when an OTLP endpoint is configured in the environment, else ``None``."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        return BatchSpanProcessor(OTLPSpanExporter())
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as HttpSpanExporter,
        )

        return BatchSpanProcessor(HttpSpanExporter())
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: use grpc or http/protobuf")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traffic_replica.py",
        description="A replica of the example RAG service with deterministic spend and a live traffic mix.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="metrics host (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9464, help="metrics port, 0 for any free one (default 9464)"
    )
    parser.add_argument("--rate", type=_positive, default=20.0, help="requests a second (default 20)")
    parser.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--mix-file", type=Path, help="JSON traffic mix, re-read when it changes")
    parser.add_argument("--rerank-frontier", type=_fraction, default=1.0, help="initial mix (default 1)")
    parser.add_argument(
        "--faithfulness-frontier", type=_fraction, default=1.0, help="initial mix (default 1)"
    )
    return parser


class _Replica:
    def __init__(self, args: argparse.Namespace, tracer: Tracer) -> None:
        self.tracer = tracer
        self.rate = float(args.rate)
        self.duration = args.duration
        self.mix_file = None if args.mix_file is None else MixFile(args.mix_file)
        self.router = Router(
            Mix(rerank_frontier=args.rerank_frontier, faithfulness_frontier=args.faithfulness_frontier)
        )
        self.stop = threading.Event()

    def _poll_mix(self, *, first: bool = False) -> None:
        mix = None if self.mix_file is None else self.mix_file.poll()
        if mix is not None and mix != self.router.mix:
            self.router.set_mix(mix)
        elif not first:
            return
        _event("mix", **asdict(self.router.mix))

    def run(self) -> None:
        self._poll_mix(first=True)
        started = time.monotonic()
        end = math.inf if self.duration is None else started + self.duration
        interval = 1.0 / self.rate
        next_request = next_poll = started
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= end:
                return
            if now >= next_poll:
                next_poll = now + _MIX_POLL_S
                self._poll_mix()
            if now >= next_request:
                route, unpriced, unattributed = self.router.next_request()
                emit_request(self.tracer, route, unpriced=unpriced, unattributed=unattributed)
                agreed = self.router.oracle_check()
                if agreed is not None:
                    record_oracle_check("faithfulness", agreed=agreed)
                # Fall behind by at most a second rather than burst to catch up.
                next_request = max(next_request + interval, now - _MAX_LAG_S)
                continue
            self.stop.wait(max(0.0, min(next_request, next_poll, end) - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings(metrics_host=args.host, metrics_port=args.port)
        otlp = _otlp_span_processor()
    except (ValidationError, ValueError) as exc:
        print(f"traffic_replica: invalid settings: {exc}", file=sys.stderr)
        return 2
    processor = OverspendProcessor(settings=settings)
    server = processor.metrics_server
    if server is None:
        print(f"traffic_replica: cannot serve /metrics on {args.host}:{args.port}", file=sys.stderr)
        return 1
    service = os.environ.get("OTEL_SERVICE_NAME") or "rag-replica"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    if otlp is not None:
        provider.add_span_processor(otlp)
    replica = _Replica(args, provider.get_tracer("otel_overspend.examples.traffic_replica"))

    def handle(signum: int, frame: object) -> None:
        del signum, frame
        replica.stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    _event("ready", host=args.host, port=server.port, pid=os.getpid(), rate=args.rate)
    try:
        replica.run()
    finally:
        provider.shutdown()
    _event("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
