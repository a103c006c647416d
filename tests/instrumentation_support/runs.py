"""Starting the scenario subprocesses and reading back what otel_overspend counted in them.

A run is one instrumentation set in one fresh process (instrumentations patch the clients
globally and some read their settings only once). Runs start together, so that they overlap
on the machine's cores, and each is read back when a test first needs it.

A run whose environment is missing fails in CI (``CI=true``) and is skipped elsewhere,
with the reason: ``python3 tasks.py test`` builds both environments.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from conftest import absent, unavailable

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parents[1]
SCENARIOS: Final = HERE / "scenarios.py"
#: OpenLIT's price list in the OpenLIT runs (USD per 1k tokens; see expected.py).
OPENLIT_PRICES: Final = HERE / "openlit_prices.json"
OPENLIT_VENV: Final = ROOT / ".venv-openlit"
OPENLIT_PYTHON: Final = OPENLIT_VENV / ("Scripts" if os.name == "nt" else "bin") / "python"
RUN_TIMEOUT_S: Final = 120.0

OPENAI_CASES: Final = (
    "chat",
    "chat_stream",
    "chat_cached",
    "embeddings",
    "responses",
    "responses_stream",
    "chat_reasoning",
    "chat_reasoning_stream",
    "responses_reasoning",
    "responses_reasoning_stream",
    "error_openai",
)
ANTHROPIC_CASES: Final = (
    "messages",
    "messages_stream",
    "messages_cached",
    "messages_cached_stream",
    "messages_cache_write_5m",
    "messages_cache_write_1h",
    "messages_cache_write_stream",
    "messages_thinking",
    "messages_thinking_stream",
    "error_anthropic",
)
#: Cohere rerank, for the instrumentations that have a cohere instrumentation (OpenLIT's
#: does not trace rerank).
RERANK_CASES: Final = ("rerank", "rerank_v1", "rerank_many")
#: The module each instrumentation needs (checked in this interpreter for the .venv runs).
MODULES: Final = {
    "openai-v2": "opentelemetry.instrumentation.openai_v2",
    "openllmetry-openai": "opentelemetry.instrumentation.openai",
    "openllmetry-anthropic": "opentelemetry.instrumentation.anthropic",
    "openllmetry-langchain": "opentelemetry.instrumentation.langchain",
    "openinference-openai": "openinference.instrumentation.openai",
    "openinference-anthropic": "openinference.instrumentation.anthropic",
    "openinference-langchain": "openinference.instrumentation.langchain",
    "openllmetry-cohere": "opentelemetry.instrumentation.cohere",
    "openinference-cohere": "openinference.instrumentation.cohere",
}


@dataclass(frozen=True)
class Run:
    name: str
    instrument: tuple[str, ...]
    cases: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: The anthropic SDK (2.x) traces its own calls to the global tracer provider; off in
    #: the other runs, so that they see one instrumentation at a time.
    anthropic_native: bool = False

    @property
    def python(self) -> Path:
        return OPENLIT_PYTHON if "openlit" in self.instrument else Path(sys.executable)

    def missing(self) -> str | None:
        """Why this run cannot start here, or ``None``."""
        if "openlit" in self.instrument:
            if not self.python.exists():
                return f"{OPENLIT_VENV.name} is missing (python3 tasks.py test builds it)"
            return None
        needed = ["openai", "anthropic", *(MODULES[name] for name in self.instrument)]
        if "langchain_chat" in self.cases:
            needed.append("langchain_openai")
        if any(case.startswith("rerank") for case in self.cases):
            needed.append("cohere")
        missing = [name for name in needed if absent(name)]
        if missing:
            install = "pip install -c constraints-instrumentations.txt -e '.[instrumentations]'"
            return f"not installed: {', '.join(missing)} ({install})"
        return None


def _runs(*runs: Run) -> dict[str, Run]:
    return {run.name: run for run in runs}


_LATEST: Final = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
RUNS: Final = _runs(
    # One instrumentation (or one vendor's pair) at a time.
    Run("openai-v2", ("openai-v2",), (*OPENAI_CASES, "wrapped_chat")),
    Run("openai-v2-latest", ("openai-v2",), OPENAI_CASES, env=_LATEST),
    Run(
        "openllmetry",
        ("openllmetry-openai", "openllmetry-anthropic", "openllmetry-cohere"),
        OPENAI_CASES + ANTHROPIC_CASES + RERANK_CASES,
    ),
    Run(
        "openinference",
        ("openinference-openai", "openinference-anthropic", "openinference-cohere"),
        OPENAI_CASES + ANTHROPIC_CASES + RERANK_CASES,
    ),
    Run("openlit", ("openlit",), OPENAI_CASES + ANTHROPIC_CASES),
    # Two instrumentations on the same client call.
    Run(
        "openai-v2+openinference",
        ("openai-v2", "openinference-openai"),
        ("chat", "chat_stream", "embeddings"),
    ),
    Run("openllmetry+openai-v2", ("openllmetry-openai", "openai-v2"), ("chat", "chat_stream", "embeddings")),
    # A framework's span and a client library's span for the same call.
    Run("langchain-openllmetry", ("openllmetry-langchain", "openllmetry-openai"), ("langchain_chat",)),
    Run("langchain-openllmetry+openai-v2", ("openllmetry-langchain", "openai-v2"), ("langchain_chat",)),
    Run("langchain-openinference", ("openinference-langchain", "openinference-openai"), ("langchain_chat",)),
    # The anthropic SDK's own spans, alone and under an instrumentation.
    Run("anthropic-native", (), ANTHROPIC_CASES, anthropic_native=True),
    Run(
        "anthropic-native+openinference",
        ("openinference-anthropic",),
        ("messages", "messages_stream"),
        anthropic_native=True,
    ),
    Run(
        "anthropic-native+openllmetry",
        ("openllmetry-anthropic",),
        ("messages", "messages_stream"),
        anthropic_native=True,
    ),
)


# -- starting and reading -------------------------------------------------------------------------
_started: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
_results: dict[str, dict[str, Any]] = {}
_workdir: list[Path] = []


def _stop_all() -> None:
    """At exit: end the runs no test read (a deselected or failed session), drop the files."""
    for process, _ in _started.values():
        if process.poll() is None:
            process.kill()
        process.communicate()
    for workdir in _workdir:
        shutil.rmtree(workdir, ignore_errors=True)


atexit.register(_stop_all)


def start_for(session: pytest.Session) -> None:
    """Start every run that the session's selected tests use (a test module lists its runs
    in ``RUNS_USED``), so that they all overlap."""
    modules = {item.module for item in session.items if isinstance(item, pytest.Function)}
    start(*sorted({name for module in modules for name in getattr(module, "RUNS_USED", ())}))


def start(*names: str) -> None:
    """Start these runs (those whose environment is there) in the background."""
    if not _workdir:
        _workdir.append(Path(tempfile.mkdtemp(prefix="overspend-instrumentations-")))
    for name in names:
        run = RUNS[name]
        if name in _started or run.missing() is not None:
            continue
        out = _workdir[0] / f"{name}.json"
        env = {key: value for key, value in os.environ.items() if key != "OTEL_SEMCONV_STABILITY_OPT_IN"}
        env.update(run.env)
        env["ANTHROPIC_OPEN_TELEMETRY"] = "true" if run.anthropic_native else "false"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        command = [
            str(run.python),
            str(SCENARIOS),
            f"--instrument={','.join(run.instrument)}",
            f"--cases={','.join(run.cases)}",
            f"--price-list={OPENLIT_PRICES}",
            f"--out={out}",
        ]
        _started[name] = (
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT),
            out,
        )


def result(name: str) -> dict[str, Any]:
    """The run's result (see scenarios.py), waiting for it; skips or fails if it cannot run."""
    if name in _results:
        return _results[name]
    reason = RUNS[name].missing()
    if reason is not None:
        unavailable(f"the instrumentation run {name!r} failed: {reason}")
    start(name)
    process, out = _started[name]
    try:
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"run {name!r} took more than {RUN_TIMEOUT_S:.0f} s", pytrace=False)
    if process.returncode != 0:
        tail = stderr.decode(errors="replace")[-4000:]
        pytest.fail(f"run {name!r} failed (exit {process.returncode}):\n{tail}", pytrace=False)
    _results[name] = json.loads(out.read_text())
    return _results[name]


def case(run: str, name: str) -> dict[str, Any]:
    """One case of a run: ``error``, ``counted`` (per registry) and ``spans``."""
    found: list[dict[str, Any]] = [c for c in result(run)["cases"] if c["case"] == name]
    assert len(found) == 1, f"run {run!r} has no case {name!r}"
    return found[0]


# -- reading the counters ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Counted:
    """What one registry counted for one case (changes of its ``*_total`` counters)."""

    #: (step, model, tier, provider) -> calls
    series: dict[tuple[str, str, str, str], float]
    input_tokens: float
    output_tokens: float
    cache_read_tokens: float
    #: Cache writes of either lifetime (part of ``input_tokens``; kind ``cache_write``).
    cache_write_tokens: float
    #: Reasoning tokens (part of ``output_tokens``).
    reasoning_tokens: float
    cost_usd: float
    dropped: dict[str, float]
    unpriced: dict[str, float]
    requests: float


def _parse(key: str) -> tuple[str, dict[str, str]]:
    name, _, rest = key.partition("{")
    labels = dict(item.split("=", 1) for item in rest.rstrip("}").split(",") if item)
    return name, labels


def counted(run: str, name: str, registry: str = "default") -> Counted:
    series: dict[tuple[str, str, str, str], float] = {}
    tokens = {"input": 0.0, "output": 0.0, "cache_read": 0.0, "cache_write": 0.0, "reasoning": 0.0}
    cost = requests = 0.0
    dropped: dict[str, float] = {}
    unpriced: dict[str, float] = {}
    for key, value in case(run, name)["counted"][registry].items():
        metric, labels = _parse(key)
        if metric == "overspend_llm_calls_total":
            series[(labels["step"], labels["model"], labels["tier"], labels["provider"])] = value
        elif metric == "overspend_llm_tokens_total" and labels["kind"] in tokens:
            tokens[labels["kind"]] += value
        elif metric == "overspend_llm_cost_usd_total":
            cost += value
        elif metric == "overspend_spans_dropped_total":
            dropped[labels["reason"]] = value
        elif metric == "overspend_unpriced_llm_calls_total":
            unpriced[labels["model"]] = value
        elif metric == "overspend_requests_total":
            requests += value
    return Counted(
        series,
        tokens["input"],
        tokens["output"],
        tokens["cache_read"],
        tokens["cache_write"],
        tokens["reasoning"],
        cost,
        dropped,
        unpriced,
        requests,
    )


def llm_spans(run: str, name: str) -> list[dict[str, Any]]:
    """The spans of a case that carry token usage or are a rerank call (which has no tokens),
    as the instrumentations emitted them (``name``, ``id``, ``parent``, ``scope``,
    ``attributes``), in end order."""
    usage_keys = (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
        "reranker.model_name",
    )
    return [
        span
        for span in case(run, name)["spans"]
        if any(key in span["attributes"] for key in usage_keys)
        or span["attributes"].get("llm.request.type") == "rerank"
    ]


def root_id(run: str, name: str) -> str:
    """The span id of the case's ``request`` root span."""
    (root,) = [span["id"] for span in case(run, name)["spans"] if span["parent"] is None]
    return str(root)
