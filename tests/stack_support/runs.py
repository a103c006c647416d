"""Starting the stack runs and reading back what otel_overspend counted.

A run is one scenario of a pipeline script in a fresh process: ``langchain_pipeline.py``,
``litellm_pipeline.py`` and ``pydantic_ai_pipeline.py`` in ``.venv`` (this interpreter),
``traceloop_pipeline.py`` in ``.venv-traceloop`` (traceloop-sdk needs OpenTelemetry one release
behind ``.venv``'s, see constraints-traceloop.txt). Instrumentors patch LangChain and openai
process-wide, ``Traceloop.init`` sets the global tracer provider, LiteLLM's callbacks and Pydantic
AI's ``instrument_all`` are process-wide. A test module's runs are queued together and run a few
at a time (as many as the machine has cores), so that they overlap; each is read when a test first
needs it. A run whose environment is missing fails under ``CI=true`` and is skipped elsewhere.

The expected numbers, by hand. Every run drives 3 requests x 4 steps, one gpt-4o chat call each.
The fake provider reports input tokens = the characters of the prompt and output tokens =
max_tokens (dump.STEPS); genai-prices prices gpt-4o (and the dated gpt-4o-2024-08-06 the fake
answers with) at $2.50 per 1M input and $10.00 per 1M output tokens:

    rewrite       200 in x $2.50/1M = $0.000500 + 50 out x $10/1M  = $0.000500 -> $0.001000 a call
    rerank       1200 in            = $0.003000 + 200 out          = $0.002000 -> $0.005000
    generate      350 in            = $0.000875 + 400 out          = $0.004000 -> $0.004875
    faithfulness  400 in            = $0.001000 + 100 out          = $0.001000 -> $0.002000
                                                                       request:   $0.012875
    x 3 requests: rewrite $0.003, rerank $0.015, generate $0.014625, faithfulness $0.006;
    total $0.038625, 6,450 input and 2,250 output tokens.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from conftest import absent, unavailable

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parents[1]
#: traceloop-sdk's own environment (tasks.py creates it; constraints-traceloop.txt).
TRACELOOP_VENV: Final = ROOT / ".venv-traceloop"
TRACELOOP_PYTHON: Final = TRACELOOP_VENV / ("Scripts" if os.name == "nt" else "bin") / "python"
RUN_TIMEOUT_S: Final = 240.0
#: Runs at once: each is one busy Python process.
PARALLEL: Final = max(2, os.cpu_count() or 2)

STEP_NAMES: Final = ("rewrite", "rerank", "generate", "faithfulness")
CALLS_PER_STEP: Final = dict.fromkeys(STEP_NAMES, 3.0)
#: USD per step over the 3 requests (see the module docstring).
COST_USD: Final = {"rewrite": 0.003, "rerank": 0.015, "generate": 0.014625, "faithfulness": 0.006}
TOTAL_COST_USD: Final = 0.038625
#: (input, output) tokens per step over the 3 requests: 3 x the fake's usage of one call.
TOKENS: Final = {
    "rewrite": (600.0, 150.0),
    "rerank": (3600.0, 600.0),
    "generate": (1050.0, 1200.0),
    "faithfulness": (1200.0, 300.0),
}
#: One faithfulness call (400 in, 100 out): $0.001 + $0.001.
FAITHFULNESS_CALL_USD: Final = 0.002
#: Why the second span of a call two instrumentations recorded is not counted.
DUPLICATE: Final = "duplicate_llm_span"
#: Settings of the parent environment that would change what the runs do.
_CLEARED_PREFIXES: Final = (
    "OTEL_",
    "TRACELOOP_",
    "LANGCHAIN_",
    "LANGSMITH_",
    "OPENINFERENCE_",
    "LITELLM_",
    "USE_OTEL_",
    "LOGFIRE_",
)


@dataclass(frozen=True)
class Run:
    script: str
    args: tuple[str, ...]
    #: The Python modules the run needs (in this interpreter), or ``()`` for a Traceloop run.
    modules: tuple[str, ...] = ()
    traceloop: bool = False
    #: Set in the run's environment (after the parent's ``_CLEARED_PREFIXES`` settings are dropped).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return TRACELOOP_PYTHON if self.traceloop else Path(sys.executable)

    def missing(self) -> str | None:
        if self.traceloop:
            found = TRACELOOP_VENV.glob("lib*/python*/site-packages/traceloop/sdk/__init__.py")
            if TRACELOOP_PYTHON.exists() and next(found, None) is not None:
                return None
            return f"traceloop-sdk is not installed in {TRACELOOP_VENV.name} (python3 tasks.py test makes it)"
        missing = [name for name in self.modules if absent(name)]
        if not missing:
            return None
        install = "pip install -c constraints-instrumentations.txt -e '.[instrumentations]'"
        return f"not installed: {', '.join(missing)} ({install})"


def scenario(script: str, name: str, modules: tuple[str, ...], env: dict[str, str] | None = None) -> Run:
    """A run of ``script --scenario=name`` (the LiteLLM and Pydantic AI pipelines)."""
    return Run(script, (f"--scenario={name}",), modules, env=env or {})


@dataclass(frozen=True)
class Result:
    """A run's JSON: ``versions``, ``samples`` (every ``*_total`` sample), ``spans`` and ``notes``."""

    raw: dict[str, Any]

    @property
    def versions(self) -> dict[str, str]:
        versions: dict[str, str] = self.raw["versions"]
        return versions

    @property
    def notes(self) -> dict[str, Any]:
        notes: dict[str, Any] = self.raw["notes"]
        return notes

    @property
    def spans(self) -> list[dict[str, Any]]:
        spans: list[dict[str, Any]] = self.raw["spans"]
        return spans

    def by(self, metric: str, label: str, **where: str) -> dict[str, float]:
        """``metric``'s samples whose labels include ``where``, summed by ``label`` (zeros left out)."""
        out: dict[str, float] = defaultdict(float)
        for sample in self.raw["samples"]:
            labels = sample["labels"]
            if sample["name"] == metric and where.items() <= labels.items():
                out[labels.get(label, "")] += sample["value"]
        return {key: value for key, value in out.items() if value}

    def calls_by_step(self) -> dict[str, float]:
        return self.by("overspend_llm_calls_total", "step")

    def cost_by_step(self) -> dict[str, float]:
        return self.by("overspend_llm_cost_usd_total", "step")

    def tokens_by_step(self) -> dict[str, tuple[float, float]]:
        inputs = self.by("overspend_llm_tokens_total", "step", kind="input")
        outputs = self.by("overspend_llm_tokens_total", "step", kind="output")
        return {step: (inputs.get(step, 0.0), outputs.get(step, 0.0)) for step in inputs.keys() | outputs}

    def models(self) -> set[str]:
        return set(self.by("overspend_llm_calls_total", "model"))

    def dropped(self) -> dict[str, float]:
        return self.by("overspend_spans_dropped_total", "reason")

    def unpriced(self) -> float:
        return sum(self.by("overspend_unpriced_llm_calls_total", "model").values())

    def requests(self) -> float:
        return sum(self.by("overspend_requests_total", "").values())

    def named(self, name: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"] == name]

    def of_scope(self, scope: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["scope"] == scope]

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {span["id"]: span for span in self.spans}

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_id().get(span["parent"]) if span["parent"] is not None else None

    def children(self, span: dict[str, Any]) -> list[dict[str, Any]]:
        return sorted((other for other in self.spans if other["parent"] == span["id"]), key=_start)

    def roots(self) -> list[dict[str, Any]]:
        return sorted((span for span in self.spans if span["parent"] is None), key=_start)


def _start(span: dict[str, Any]) -> int:
    start: int = span["start"]
    return start


def pinned(constraints: str) -> dict[str, str]:
    text = (ROOT / constraints).read_text()
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return dict(line.split("==", 1) for line in lines if "==" in line)


def assert_pinned_versions(result: Result, constraints: str, *names: str) -> None:
    """The run used these distributions at the versions ``constraints`` pins."""
    pins = pinned(constraints)
    assert {name: result.versions.get(name) for name in names} == {name: pins.get(name) for name in names}


def assert_pipeline_counted(result: Result, *, duplicates: int | None = None) -> None:
    """12 calls, 3 per step, with the hand-computed tokens and dollars, nothing unpriced; given
    ``duplicates``, the only spans dropped are the ``duplicates`` second spans of calls two
    instrumentations recorded."""
    assert result.calls_by_step() == CALLS_PER_STEP
    assert result.tokens_by_step() == TOKENS
    cost = result.cost_by_step()
    assert cost.keys() == COST_USD.keys()
    for name, usd in COST_USD.items():
        assert cost[name] == pytest.approx(usd, rel=1e-9), name
    assert sum(cost.values()) == pytest.approx(TOTAL_COST_USD, rel=1e-9)
    assert result.unpriced() == 0
    if duplicates is not None:
        assert result.dropped() == ({DUPLICATE: float(duplicates)} if duplicates else {})


class Runs:
    """The runs of one test module: queued together, run :data:`PARALLEL` at a time, read back once
    each."""

    def __init__(self, runs: dict[str, Run]) -> None:
        self.runs = runs
        self._queued: list[str] = []
        self._started: dict[str, tuple[subprocess.Popen[bytes], Path, Path, float]] = {}
        self._results: dict[str, Result] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix="overspend-stacks-"))
        atexit.register(self._stop_all)

    def _stop_all(self) -> None:
        for process, *_ in self._started.values():
            if process.poll() is None:
                process.kill()
            process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def start(self) -> None:
        """Queue every run whose environment is there, and start the first few."""
        self._queued = [name for name, run in self.runs.items() if run.missing() is None]
        self._top_up()

    def _running(self) -> int:
        return sum(
            1
            for name, (process, *_) in self._started.items()
            if name not in self._results and process.poll() is None
        )

    def _top_up(self) -> None:
        while self._queued and self._running() < PARALLEL:
            self._launch(self._queued.pop(0))

    def _launch(self, name: str) -> None:
        if name in self._queued:
            self._queued.remove(name)
        run = self.runs[name]
        out = self._workdir / f"{name}.json"
        err = self._workdir / f"{name}.stderr"
        env = {key: value for key, value in os.environ.items() if not key.startswith(_CLEARED_PREFIXES)}
        env.update(run.env)
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network at LiteLLM's import
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        command = [str(run.python), str(HERE / run.script), *run.args, f"--out={out}"]
        with err.open("wb") as stderr:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
        self._started[name] = (process, out, err, time.monotonic())

    def result(self, name: str) -> Result:
        if name in self._results:
            return self._results[name]
        reason = self.runs[name].missing()
        if reason is not None:
            unavailable(f"the stack run {name!r} cannot start: {reason}")
        if name not in self._started:
            self._launch(name)
        process, out, err, started = self._started[name]
        try:
            process.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"run {name!r} took more than {RUN_TIMEOUT_S:.0f} s", pytrace=False)
        finally:
            self._top_up()
        if process.returncode != 0:
            tail = err.read_text(errors="replace")[-4000:]
            pytest.fail(f"run {name!r} failed (exit {process.returncode}):\n{tail}", pytrace=False)
        self._results[name] = Result(json.loads(out.read_text()))
        self._top_up()
        return self._results[name]
