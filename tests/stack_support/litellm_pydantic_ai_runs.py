"""Starting the LiteLLM and Pydantic AI stack runs and reading back what otel_overspend counted.

A run is one scenario of ``litellm_pipeline.py`` or ``pydantic_ai_pipeline.py`` in a fresh process
(LiteLLM's callbacks and Pydantic AI's ``instrument_all`` are process-wide). A test module's runs
start together, so that they overlap on the machine's cores, and each is read when a test first
needs it. A run whose package is missing fails under ``CI=true`` and is skipped elsewhere.

The expected numbers, by hand. Every run drives 3 requests x 4 steps, one gpt-4o call each; the
fake provider reports input tokens = the prompt's characters, output tokens = max_tokens
(litellm_pydantic_ai_dump.STEPS); gpt-4o costs $2.50 per 1M input and $10.00 per 1M output tokens
(genai-prices, the same for the dated gpt-4o-2024-08-06 the fake answers with):

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
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from conftest import unavailable

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parents[1]
RUN_TIMEOUT_S: Final = 240.0

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
#: Settings of the parent environment that would change what the runs do.
_CLEARED_PREFIXES: Final = ("OTEL_", "LITELLM_", "USE_OTEL_", "LOGFIRE_", "TRACELOOP_")


@dataclass(frozen=True)
class Run:
    script: str
    scenario: str
    #: The Python modules the run needs.
    modules: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def missing(self) -> str | None:
        absent = [name for name in self.modules if importlib.util.find_spec(name) is None]
        if not absent:
            return None
        install = "pip install -c constraints-instrumentations.txt -e '.[instrumentations]'"
        return f"not installed: {', '.join(absent)} ({install})"


@dataclass(frozen=True)
class Result:
    """A run's JSON: ``versions``, ``samples`` (every ``*_total`` sample) and ``spans``."""

    raw: dict[str, Any]

    @property
    def versions(self) -> dict[str, str]:
        versions: dict[str, str] = self.raw["versions"]
        return versions

    @property
    def spans(self) -> list[dict[str, Any]]:
        spans: list[dict[str, Any]] = self.raw["spans"]
        return spans

    def _by(self, metric: str, label: str, **where: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for sample in self.raw["samples"]:
            labels = sample["labels"]
            if sample["name"] == metric and where.items() <= labels.items():
                out[labels[label]] += sample["value"]
        return {key: value for key, value in out.items() if value}

    def calls_by_step(self) -> dict[str, float]:
        return self._by("overspend_llm_calls_total", "step")

    def cost_by_step(self) -> dict[str, float]:
        return self._by("overspend_llm_cost_usd_total", "step")

    def tokens_by_step(self) -> dict[str, tuple[float, float]]:
        inputs = self._by("overspend_llm_tokens_total", "step", kind="input")
        outputs = self._by("overspend_llm_tokens_total", "step", kind="output")
        return {step: (inputs.get(step, 0.0), outputs.get(step, 0.0)) for step in inputs.keys() | outputs}

    def models(self) -> set[str]:
        return set(self._by("overspend_llm_calls_total", "model"))

    def dropped(self) -> dict[str, float]:
        return self._by("overspend_spans_dropped_total", "reason")

    def unpriced(self) -> float:
        return sum(self._by("overspend_unpriced_llm_calls_total", "model").values())

    def named(self, name: str) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["name"] == name]

    def children(self, span: dict[str, Any]) -> list[dict[str, Any]]:
        return [other for other in self.spans if other["parent"] == span["id"]]


def assert_pinned_versions(result: Result, *names: str) -> None:
    """The run used these distributions at the versions constraints-instrumentations.txt pins."""
    text = (ROOT / "constraints-instrumentations.txt").read_text()
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    pinned = dict(line.split("==", 1) for line in lines if "==" in line)
    assert {name: result.versions.get(name) for name in names} == {name: pinned.get(name) for name in names}


def assert_pipeline_counted(result: Result) -> None:
    """12 calls, 3 per step, with the hand-computed tokens and dollars; nothing unpriced."""
    assert result.calls_by_step() == CALLS_PER_STEP
    assert result.tokens_by_step() == TOKENS
    cost = result.cost_by_step()
    assert cost.keys() == COST_USD.keys()
    for name, usd in COST_USD.items():
        assert cost[name] == pytest.approx(usd, rel=1e-9), name
    assert sum(cost.values()) == pytest.approx(TOTAL_COST_USD, rel=1e-9)
    assert result.unpriced() == 0


class Runs:
    """The runs of one test module: started together, read back once each."""

    def __init__(self, runs: dict[str, Run]) -> None:
        self.runs = runs
        self._started: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self._results: dict[str, Result] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix="overspend-stacks-"))
        atexit.register(self._stop_all)

    def _stop_all(self) -> None:
        for process, _ in self._started.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def start(self, *names: str) -> None:
        for name in names or tuple(self.runs):
            run = self.runs[name]
            if name in self._started or run.missing() is not None:
                continue
            out = self._workdir / f"{name}.json"
            env = {key: value for key, value in os.environ.items() if not key.startswith(_CLEARED_PREFIXES)}
            env.update(run.env)
            env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network at import
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            command = [sys.executable, str(HERE / run.script), f"--scenario={run.scenario}", f"--out={out}"]
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
            )
            self._started[name] = (process, out)

    def result(self, name: str) -> Result:
        if name in self._results:
            return self._results[name]
        reason = self.runs[name].missing()
        if reason is not None:
            unavailable(f"the stack run {name!r} cannot start: {reason}")
        self.start(name)
        process, out = self._started[name]
        try:
            _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"run {name!r} took more than {RUN_TIMEOUT_S:.0f} s", pytrace=False)
        if process.returncode != 0:
            tail = stderr.decode(errors="replace")[-4000:]
            pytest.fail(f"run {name!r} failed (exit {process.returncode}):\n{tail}", pytrace=False)
        self._results[name] = Result(json.loads(out.read_text()))
        return self._results[name]
