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

Then the failure modes specializing creates, each switched on after so many seconds: a
cheap-then-expensive cascade on a ``route`` step (``--cascade-after``) that saturates
(``--saturate-cascade-after``: escalations from 10 % to 40 %); a faithfulness student that
drifts from its teacher (``--drift-student-after``: once faithfulness runs on the small
judge, every request checks it against the teacher, all agreeing until then, 7 in 10
after); a specialist reranker that sits on the request path (``--slow-reranker-after``:
450 ms instead of 20 ms); an eval job re-scoring with the frontier model
(``--eval-job-after``). Each report ends with the probable pattern and its evidence.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_overspend.accounting.observations import record_oracle_check, record_step_time
from otel_overspend.accounting.purposes import EVAL, PURPOSE_KEY, REQUEST_PATH
from otel_overspend.config.settings import ConfigError, Settings
from otel_overspend.processor import OverspendProcessor
from otel_overspend.steps import mark_cascade_stage, step

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.trace import Tracer
    from prometheus_client.registry import CollectorRegistry

    from otel_overspend.accounting.patterns import Verdict
    from otel_overspend.accounting.signals import Diagnosis

__all__ = (
    "CASCADE_STEP",
    "EVAL_STEP",
    "FRONTIER",
    "JUDGE",
    "LLM_STEPS",
    "RERANKER",
    "Model",
    "Trouble",
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
#: The cascade's step (a small router, escalating to the frontier model when unsure) and its
#: tokens; the eval job's step and its tokens (a frontier judge re-scoring an answer).
CASCADE_STEP: Final = "route"
CASCADE_TOKENS: Final = (300, 20)
EVAL_STEP: Final = "eval"
EVAL_TOKENS: Final = (4_000, 100)
#: The slow reranker's simulated latency, in seconds.
SLOW_RERANKER_S: Final = 0.45

#: Mean simulated duration of a step on a model, in seconds.
_LATENCY_S: Final[Mapping[tuple[str, str], float]] = {
    ("rewrite", FRONTIER.name): 0.4,
    ("retrieve", ""): 0.05,
    ("rerank", FRONTIER.name): 1.5,
    ("rerank", RERANKER.name): 0.02,
    ("generate", FRONTIER.name): 2.0,
    ("faithfulness", FRONTIER.name): 0.8,
    ("faithfulness", JUDGE.name): 0.3,
    (CASCADE_STEP, JUDGE.name): 0.01,
    (CASCADE_STEP, FRONTIER.name): 0.6,
}
_DEFAULT_LATENCY_S: Final = 0.5
#: Relative spread of token counts (uniform, symmetric: the means stay those of :data:`LLM_STEPS`).
TOKEN_JITTER: Final = 0.10
_LATENCY_JITTER: Final = 0.20
_GAP_NS: Final = 2_000_000  # application time between two steps


@dataclass(slots=True)
class Trouble:
    """The failure modes switched on (see the module docstring); the defaults add none."""

    #: Share of the cascade's cases escalated to the frontier model (``None``: no cascade).
    escalation: float | None = None
    #: Share of oracle checks of the faithfulness judge agreeing (``None``: no check).
    agreement: float | None = None
    slow_reranker: bool = False
    eval_job: bool = False
    #: Running credits that spread the shares evenly (0.1: every tenth request).
    credit: dict[str, float] = field(default_factory=lambda: {"escalation": 0.0, "agreement": 0.0})

    def every(self, name: str, share: float) -> bool:
        credit = self.credit[name] + share
        hit = credit >= 1 - 1e-9
        self.credit[name] = credit - 1 if hit else credit
        return hit


def _llm_attributes(rng: random.Random, model: Model, tokens: tuple[int, int]) -> dict[str, object]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": model.provider,
        "gen_ai.request.model": model.name,
        "gen_ai.response.model": model.name,
        "gen_ai.usage.input_tokens": _tokens(rng, tokens[0]),
        "gen_ai.usage.output_tokens": _tokens(rng, tokens[1]),
    }


def frontier_route() -> dict[str, Model]:
    """Every LLM step on the frontier model: where a single-model pipeline starts."""
    return dict.fromkeys(LLM_STEPS, FRONTIER)


def _duration_ns(rng: random.Random, step_name: str, model: Model | None) -> int:
    mean = _LATENCY_S.get((step_name, "" if model is None else model.name), _DEFAULT_LATENCY_S)
    return int(mean * rng.uniform(1 - _LATENCY_JITTER, 1 + _LATENCY_JITTER) * 1e9)


def _tokens(rng: random.Random, mean: int) -> int:
    return max(1, round(mean * rng.uniform(1 - TOKEN_JITTER, 1 + TOKEN_JITTER)))


def emit_request(
    tracer: Tracer,
    route: Mapping[str, Model],
    rng: random.Random,
    *,
    end_ns: int | None = None,
    trouble: Trouble | None = None,
) -> int:
    """Emit the spans of one request ending at ``end_ns`` (default: now); return its duration in ns.

    ``route`` names the model of each LLM step (see :func:`frontier_route`); ``trouble`` adds
    the failure modes switched on. Each step's simulated time is recorded as its step time.
    """
    trouble = trouble if trouble is not None else Trouble()
    plan: list[tuple[str, Model | None, int, tuple[int, int] | None]] = []
    if trouble.escalation is not None:
        plan.append((CASCADE_STEP, JUDGE, _duration_ns(rng, CASCADE_STEP, JUDGE), CASCADE_TOKENS))
        if trouble.every("escalation", trouble.escalation):
            plan.append((CASCADE_STEP, FRONTIER, _duration_ns(rng, CASCADE_STEP, FRONTIER), CASCADE_TOKENS))
    for name in PIPELINE:
        model = route[name] if name in LLM_STEPS else None
        duration = _duration_ns(rng, name, model)
        if name == "rerank" and model == RERANKER and trouble.slow_reranker:
            duration = int(SLOW_RERANKER_S * rng.uniform(1 - _LATENCY_JITTER, 1 + _LATENCY_JITTER) * 1e9)
        plan.append((name, model, duration, LLM_STEPS.get(name)))
    wall_ns = sum(d for _, _, d, _ in plan) + _GAP_NS * (len(plan) + 1)
    end = time.time_ns() if end_ns is None else end_ns
    start = end - wall_ns

    root = tracer.start_span(
        "POST /answer", kind=trace.SpanKind.SERVER, start_time=start, attributes={"http.route": "/answer"}
    )
    trace_id = root.get_span_context().trace_id
    parent = trace.set_span_in_context(root)
    t = start + _GAP_NS
    for name, model, duration, tokens in plan:
        with step(name):
            if model is None or tokens is None:
                span = tracer.start_span(
                    name, context=parent, start_time=t, attributes={"rag.documents": rng.randint(40, 60)}
                )
            else:
                span = tracer.start_span(
                    f"chat {model.name}",
                    context=parent,
                    kind=trace.SpanKind.CLIENT,
                    start_time=t,
                    attributes=_llm_attributes(rng, model, tokens),  # type: ignore[arg-type]
                )
                if name == CASCADE_STEP:  # the router's own spans say which stage they are
                    mark_cascade_stage("expensive" if model == FRONTIER else "cheap", span=span)
            span.end(end_time=t + duration)
            record_step_time(name, started_s=t / 1e9, ended_s=(t + duration) / 1e9, trace_id=trace_id)
        t += duration + _GAP_NS
    root.end(end_time=end)
    if trouble.agreement is not None and route["faithfulness"] == JUDGE:
        record_oracle_check("faithfulness", agreed=trouble.every("agreement", trouble.agreement))
    if trouble.eval_job:
        _emit_eval(tracer, rng, end)
    return wall_ns


def _emit_eval(tracer: Tracer, rng: random.Random, end_ns: int) -> None:
    """One call of an eval job re-scoring an answer with the frontier model: a root of its own
    that says what it is for (``overspend.purpose``), in the eval step."""
    duration = _duration_ns(rng, "faithfulness", FRONTIER)
    job = tracer.start_span("eval job", start_time=end_ns - duration, attributes={PURPOSE_KEY: EVAL})
    with step(EVAL_STEP):
        span = tracer.start_span(
            f"chat {FRONTIER.name}",
            context=trace.set_span_in_context(job),
            kind=trace.SpanKind.CLIENT,
            start_time=end_ns - duration,
            attributes=_llm_attributes(rng, FRONTIER, EVAL_TOKENS),  # type: ignore[arg-type]
        )
        span.end(end_time=end_ns)
    job.end(end_time=end_ns)


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
    for option, what in TROUBLE_OPTIONS:
        parser.add_argument(option, type=_non_negative, metavar="SECONDS", help=f"{what} after this long")
    parser.add_argument(
        "--windows",
        help="the rolling windows, e.g. 1m,10m (default: OVERSPEND_WINDOWS or 5m,1h,1d,7d); the report "
        "shows the first, the longest is the cascade's baseline",
    )
    parser.add_argument(
        "--report-every", type=_positive, default=5.0, metavar="SECONDS", help="print a table this often"
    )
    parser.add_argument("--seed", type=int, help="random seed for token volumes and latencies")


#: The failure-mode switches: option, what it does (see the module docstring).
TROUBLE_OPTIONS: Final = (
    ("--cascade-after", f"add a {CASCADE_STEP} step: {JUDGE.name}, escalating 10%% to {FRONTIER.name}"),
    ("--saturate-cascade-after", "raise the cascade's escalations to 40%%"),
    ("--drift-student-after", "let the faithfulness judge agree with its teacher on 7 checks in 10"),
    ("--slow-reranker-after", f"make {RERANKER.name} take {SLOW_RERANKER_S * 1000:.0f} ms"),
    ("--eval-job-after", f"run an eval job re-scoring each answer with {FRONTIER.name}"),
)


def apply_trouble(trouble: Trouble, option: str) -> str:
    """Switch on the failure mode of ``option`` (one of :data:`TROUBLE_OPTIONS`); say what changed."""
    if option == "--cascade-after":
        trouble.escalation = 0.1
        return f"a {CASCADE_STEP} step runs on {JUDGE.name}, escalating 10% of cases to {FRONTIER.name}"
    if option == "--saturate-cascade-after":
        trouble.escalation = 0.4
        return f"the {CASCADE_STEP} cascade now escalates 40% of cases"
    if option == "--drift-student-after":
        trouble.agreement = 0.7
        return "the faithfulness judge now agrees with its teacher on 7 checks in 10"
    if option == "--slow-reranker-after":
        trouble.slow_reranker = True
        return f"{RERANKER.name} now takes {SLOW_RERANKER_S * 1000:.0f} ms on the request path"
    if option == "--eval-job-after":
        trouble.eval_job = True
        return f"an eval job re-scores every answer with {FRONTIER.name}"
    raise ValueError(f"unknown failure mode {option!r}")


def format_pattern(verdict: Verdict) -> str:
    """The probable pattern with its evidence, one line."""
    where = f" ({verdict.step})" if verdict.step else ""
    evidence = ", ".join(f"{name} {value:.4g}" for name, value in verdict.evidence.items())
    also = f"; also {', '.join(verdict.also)}" if verdict.also else ""
    return f"   probable pattern: {verdict.pattern}{where}: {evidence or 'no evidence'}{also}"


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "windows", None) is not None:
        overrides["windows"] = args.windows
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
    purposes = d.purpose_cost_usd
    if any(usd for purpose, usd in purposes.items() if purpose != REQUEST_PATH):
        split = " | ".join(f"{purpose} ${usd:,.4f}" for purpose, usd in purposes.items())
        nxt += f"\n   spend by purpose: {split} | eval / the rest {_num(d.eval_share, '.3f')}"
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
        self.trouble = Trouble()
        self.troubles = [
            [option, after, False]
            for option, _ in TROUBLE_OPTIONS
            if (after := getattr(args, option[2:].replace("-", "_"), None)) is not None
        ]
        self.started = time.monotonic()

    def report(self, now: float) -> None:
        label, d = self.processor.diagnoses()[0]
        lines = [format_report(label, d, now - self.started)]
        _, f, verdict = self.processor.patterns()[0]
        if f.has_data:
            lines.append(format_pattern(verdict))
        print("\n".join(lines), flush=True)

    def switch(self, elapsed: float) -> None:
        for switch in self.switches:
            if not switch.done and elapsed >= switch.after_s:
                switch.done = True
                self.route[switch.step] = switch.model
                if switch.step == "faithfulness" and self.trouble.agreement is None:
                    self.trouble.agreement = 1.0  # the teacher stays as the oracle
                print(
                    f"== t={elapsed:5.1f}s  {switch.step} now runs on {switch.model.name} "
                    f"({switch.model.provider})",
                    flush=True,
                )
        for entry in self.troubles:
            option, after, done = entry
            if not done and elapsed >= after:
                entry[2] = True
                print(f"== t={elapsed:5.1f}s  {apply_trouble(self.trouble, str(option))}", flush=True)

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
                    emit_request(self.tracer, self.route, self.rng, trouble=self.trouble)
                    # Fall behind by at most a second rather than burst to catch up.
                    next_request = max(next_request + interval_s, now - 1.0)
                    continue
                wake = min(next_request, next_report, end if end is not None else next_report)
                stop.wait(max(0.0, wake - time.monotonic()))
            self.report(time.monotonic())
        finally:
            restore()
