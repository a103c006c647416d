"""A synthetic RAG service that shows the diagnosis move when one step is specialized.

Each request is rewrite -> retrieve -> rerank -> generate -> faithfulness. Every LLM call
is a real OpenTelemetry span with GenAI semantic-convention attributes, marked with
:class:`otel_overspend.step`, under one root span per request, through a real
``TracerProvider`` with an :class:`OverspendProcessor`. Token volumes are those of a
typical RAG request, where rerank reads the most (about $0.070 a request, all on one frontier
model), with a little random variation. Span durations are simulated with explicit start and
end times, so the demo runs at ``--rate`` requests a second without waiting on any model.

Mid-run, ``--specialize-rerank-after`` moves rerank to a specialist reranker (and
``--specialize-faithfulness-after`` moves faithfulness to a small judge): the table printed
every ``--report-every`` seconds, and the gauges on ``/metrics``, show the spend move.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_overspend.config.settings import ConfigError, Settings
from otel_overspend.processor import OverspendProcessor
from otel_overspend.steps import step

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.trace import Tracer
    from prometheus_client.registry import CollectorRegistry

    from otel_overspend.accounting.signals import Diagnosis

__all__ = (
    "FRONTIER",
    "JUDGE",
    "LLM_STEPS",
    "RERANKER",
    "Model",
    "add_arguments",
    "emit_request",
    "frontier_route",
    "run",
)


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    provider: str


#: The frontier model every LLM step starts on ($3 / $15 per 1M tokens in genai-prices).
FRONTIER: Final = Model("claude-sonnet-4-5", "anthropic")
#: A specialist reranker (unknown to genai-prices: priced at the specialist tier default).
RERANKER: Final = Model("zerank-2", "zeroentropy")
#: A small judge model for the faithfulness check.
JUDGE: Final = Model("gpt-5-nano", "openai")

#: Mean (input, output) tokens of each LLM step: rerank reads every retrieved passage, so most
#: of the spend is outside ``generate``.
LLM_STEPS: Final[Mapping[str, tuple[int, int]]] = {
    "rewrite": (200, 50),
    "rerank": (12_000, 200),
    "generate": (3_500, 400),
    "faithfulness": (4_000, 100),
}
#: The steps of one request, in order; ``retrieve`` makes no LLM call.
PIPELINE: Final = ("rewrite", "retrieve", "rerank", "generate", "faithfulness")

#: Mean simulated duration of a step on a model, in seconds.
_LATENCY_S: Final[Mapping[tuple[str, str], float]] = {
    ("rewrite", FRONTIER.name): 0.4,
    ("retrieve", ""): 0.05,
    ("rerank", FRONTIER.name): 1.5,
    ("rerank", RERANKER.name): 0.02,
    ("generate", FRONTIER.name): 2.0,
    ("faithfulness", FRONTIER.name): 0.8,
    ("faithfulness", JUDGE.name): 0.3,
}
_DEFAULT_LATENCY_S: Final = 0.5
#: Relative spread of token counts (uniform, symmetric: the means stay those of :data:`LLM_STEPS`).
TOKEN_JITTER: Final = 0.10
_LATENCY_JITTER: Final = 0.20
_GAP_NS: Final = 2_000_000  # application time between two steps


def frontier_route() -> dict[str, Model]:
    """Every LLM step on the frontier model: where a single-model pipeline starts."""
    return dict.fromkeys(LLM_STEPS, FRONTIER)


def _duration_ns(rng: random.Random, step_name: str, model: Model | None) -> int:
    mean = _LATENCY_S.get((step_name, "" if model is None else model.name), _DEFAULT_LATENCY_S)
    return int(mean * rng.uniform(1 - _LATENCY_JITTER, 1 + _LATENCY_JITTER) * 1e9)


def _tokens(rng: random.Random, mean: int) -> int:
    return max(1, round(mean * rng.uniform(1 - TOKEN_JITTER, 1 + TOKEN_JITTER)))


def emit_request(
    tracer: Tracer, route: Mapping[str, Model], rng: random.Random, *, end_ns: int | None = None
) -> int:
    """Emit the spans of one request ending at ``end_ns`` (default: now); return its duration in ns.

    ``route`` names the model of each LLM step (see :func:`frontier_route`).
    """
    plan: list[tuple[str, Model | None, int]] = []
    for name in PIPELINE:
        model = route[name] if name in LLM_STEPS else None
        plan.append((name, model, _duration_ns(rng, name, model)))
    wall_ns = sum(d for _, _, d in plan) + _GAP_NS * (len(plan) + 1)
    end = time.time_ns() if end_ns is None else end_ns
    start = end - wall_ns

    root = tracer.start_span(
        "POST /answer", kind=trace.SpanKind.SERVER, start_time=start, attributes={"http.route": "/answer"}
    )
    parent = trace.set_span_in_context(root)
    t = start + _GAP_NS
    for name, model, duration in plan:
        with step(name):
            if model is None:
                span = tracer.start_span(
                    name, context=parent, start_time=t, attributes={"rag.documents": rng.randint(40, 60)}
                )
            else:
                mean_in, mean_out = LLM_STEPS[name]
                span = tracer.start_span(
                    f"chat {model.name}",
                    context=parent,
                    kind=trace.SpanKind.CLIENT,
                    start_time=t,
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": model.provider,
                        "gen_ai.request.model": model.name,
                        "gen_ai.response.model": model.name,
                        "gen_ai.usage.input_tokens": _tokens(rng, mean_in),
                        "gen_ai.usage.output_tokens": _tokens(rng, mean_out),
                    },
                )
            span.end(end_time=t + duration)
        t += duration + _GAP_NS
    root.end(end_time=end)
    return wall_ns


# -- command line ------------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (also read: ``OVERSPEND_*`` environment variables, see Settings)."""
    parser.add_argument("--host", help="metrics host (default: OVERSPEND_METRICS_HOST or 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="metrics port, 0 for any free one (default: OVERSPEND_METRICS_PORT or 9464)"
    )
    parser.add_argument("--rate", type=_positive, default=20.0, help="requests a second (default: 20)")
    parser.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="stop after this long (default: until Ctrl-C)"
    )
    parser.add_argument(
        "--specialize-rerank-after",
        type=_non_negative,
        metavar="SECONDS",
        help=f"move rerank to the specialist reranker {RERANKER.name} after this long",
    )
    parser.add_argument(
        "--specialize-faithfulness-after",
        type=_non_negative,
        metavar="SECONDS",
        help=f"move faithfulness to the small judge {JUDGE.name} after this long",
    )
    parser.add_argument(
        "--report-every", type=_positive, default=5.0, metavar="SECONDS", help="print a table this often"
    )
    parser.add_argument("--seed", type=int, help="random seed for token volumes and latencies")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["metrics_host"] = args.host
    if args.port is not None:
        overrides["metrics_port"] = args.port
    return Settings(**overrides)  # type: ignore[arg-type]


def _metrics_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host  # noqa: S104
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/metrics"


def _level(d: Diagnosis, signal_name: str) -> str:
    level = d.levels.get(signal_name)
    return "" if level is None else f" {level.name.lower()}"


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_report(label: str, d: Diagnosis, elapsed_s: float) -> str:
    """The diagnosis of one window as a compact table (every number read from ``d``)."""
    head = (
        f"-- t={elapsed_s:5.1f}s  window {label}: {d.requests:,} requests, {d.calls:,} LLM calls "
        f"({d.unpriced_calls} unpriced), ${d.cost_usd:,.4f}"
    )
    lines = [head, f"   {'step':<14}{'calls':>8}{'tokens':>13}{'USD':>11}{'share':>8}"]
    lines += [
        f"   {line.step:<14}{line.calls:>8,}{line.tokens:>13,}{line.cost_usd:>11.4f}{_pct(line.share):>8}"
        for line in d.steps
    ]
    fraction = (
        f"   specialist-eligible fraction {_num(d.specialist_eligible_fraction, '.3f')}"
        f"{_level(d, 'specialist_eligible_fraction')}"
        f" | concentration {_num(d.model_concentration, '.3f')}{_level(d, 'model_concentration')}"
        f" (top {d.top_frontier_model or 'none'})"
    )
    headroom = (
        f"   headroom ${_num(d.headroom_usd, ',.4f')} | projected reduction {_pct(d.projected_reduction)}"
        f" | frontier calls/request {_num(d.frontier_calls_per_request, '.2f')}"
        f"{_level(d, 'frontier_calls_per_request')}"
        f" | tokens/request {_num(d.tokens_per_request, ',.0f')}{_level(d, 'tokens_per_request')}"
    )
    if d.next_step_to_specialize is None:
        nxt = "   next step to specialize: none"
    else:
        nxt = (
            f"   next step to specialize: {d.next_step_to_specialize}"
            f" (would have saved ${_num(d.next_step_savings_usd, ',.4f')} in this window)"
        )
    return "\n".join([*lines, fraction, headroom, nxt])


@dataclass(slots=True)
class _Switch:
    step: str
    model: Model
    after_s: float
    done: bool = False


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None]:
    """Let SIGINT and SIGTERM end the run loop; return a function restoring the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _announce(args: argparse.Namespace, settings: Settings, processor: OverspendProcessor) -> None:
    print(
        f"otel-overspend demo: a RAG service at {args.rate:g} requests/s "
        f"({' -> '.join(PIPELINE)}), every LLM step on {FRONTIER.name} ({FRONTIER.provider})",
        flush=True,
    )
    server = processor.metrics_server
    if server is not None:
        print(f"metrics: curl {_metrics_url(settings.metrics_host, server.port)}", flush=True)
    elif settings.serve_metrics:
        print(
            f"metrics: not served (is port {settings.metrics_port} on {settings.metrics_host} busy?); "
            "the demo keeps running. Pick another port with --port N or OVERSPEND_METRICS_PORT=N.",
            flush=True,
        )
    else:
        print("metrics: not served (OVERSPEND_SERVE_METRICS is false)", flush=True)


def run(args: argparse.Namespace, *, registry: CollectorRegistry | None = None) -> int:
    """Run the demo until ``--duration`` or Ctrl-C; return the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
    except ConfigError as exc:  # one line naming the variable, its value and the form expected
        print(f"otel-overspend demo: invalid settings: {exc}", file=sys.stderr)
        return 2
    processor = OverspendProcessor(settings=settings, registry=registry)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        _announce(args, settings, processor)
        _Loop(args, settings, processor, provider.get_tracer("otel_overspend.demo")).run()
    finally:
        provider.shutdown()
    print("otel-overspend demo: stopped", flush=True)
    return 0


class _Loop:
    """Paces requests in real time, switches models on schedule and prints the reports."""

    def __init__(
        self, args: argparse.Namespace, settings: Settings, processor: OverspendProcessor, tracer: Tracer
    ) -> None:
        self.args = args
        self.settings = settings
        self.processor = processor
        self.tracer = tracer
        self.route = frontier_route()
        self.rng = random.Random(args.seed)  # noqa: S311 - simulated traffic, not security
        self.switches = [
            _Switch(name, model, after)
            for name, model, after in (
                ("rerank", RERANKER, args.specialize_rerank_after),
                ("faithfulness", JUDGE, args.specialize_faithfulness_after),
            )
            if after is not None
        ]
        for switch in self.switches:
            print(f"   {switch.step} moves to {switch.model.name} after {switch.after_s:g}s", flush=True)
        self.started = time.monotonic()

    def report(self, now: float) -> None:
        label, d = self.processor.diagnoses()[0]
        print(format_report(label, d, now - self.started), flush=True)

    def switch(self, elapsed: float) -> None:
        for switch in self.switches:
            if not switch.done and elapsed >= switch.after_s:
                switch.done = True
                self.route[switch.step] = switch.model
                print(
                    f"== t={elapsed:5.1f}s  {switch.step} now runs on {switch.model.name} "
                    f"({switch.model.provider})",
                    flush=True,
                )

    def run(self) -> None:
        stop = threading.Event()
        restore = _install_stop_handlers(stop)
        args = self.args
        interval_s = 1.0 / args.rate
        end = None if args.duration is None else self.started + args.duration
        next_request = self.started
        next_report = self.started + args.report_every
        try:
            while not stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                self.switch(now - self.started)
                if now >= next_report:
                    next_report += args.report_every
                    self.report(now)
                if now >= next_request:
                    emit_request(self.tracer, self.route, self.rng)
                    # Fall behind by at most a second rather than burst to catch up.
                    next_request = max(next_request + interval_s, now - 1.0)
                    continue
                wake = min(next_request, next_report, end if end is not None else next_report)
                stop.wait(max(0.0, wake - time.monotonic()))
            self.report(time.monotonic())
        finally:
            restore()
