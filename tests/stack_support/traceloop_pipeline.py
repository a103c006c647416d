"""The pipeline (3 requests x rewrite, rerank, generate, faithfulness) through Traceloop's SDK
(``@workflow`` / ``@task``, its OpenLLMetry openai instrumentation) and the openai client, against
examples/fake_provider.py; writes what otel_overspend counted and every span as JSON. Runs in
``.venv-traceloop`` (traceloop-sdk needs OpenTelemetry one release behind ``.venv``'s), one run per
process (``Traceloop.init`` sets the global tracer provider and instruments openai process-wide):

    .venv-traceloop/bin/python tests/stack_support/traceloop_pipeline.py --scenario workflow \
        --instrument openai-v2 --out r.json

The processor under test is handed to ``Traceloop.init(processor=[...])``, beside an exporter
keeping every span. Each step is a function decorated ``@task(name=<step>)`` making one
chat completion (gpt-4o); nothing says ``otel_overspend.step``. Scenarios:

- ``workflow``: each request is a ``@workflow(name="answer")`` calling the four tasks;
- ``tasks``: the four tasks called bare, no workflow and no app span (a script, a batch job);
- ``app_span``: the four tasks inside an app span ``request`` of the app's own tracer;
- ``stream_workflow`` / ``stream_tasks``: as ``workflow`` / ``tasks``, each task a generator that
  streams its completion (``stream_options.include_usage``) and yields the text as it comes,
  consumed by the caller (Traceloop keeps a generator task's span open until it is exhausted).

``--instrument``: a second client instrumentation on the same openai client (``openai-v2`` or
``openinference-openai``), on Traceloop's tracer provider.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

# Before the SDK is imported: no anonymous telemetry sent, nothing fetched.
os.environ["TRACELOOP_TELEMETRY"] = "false"
os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_provider import FakeProvider
from opentelemetry import trace

from stack_support.dump import REQUEST_SPAN, REQUESTS, STEPS, Recorder, max_tokens, prompt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: traceloop-sdk ships no type information mypy reads: its API, by name.
_sdk: Any = importlib.import_module("traceloop.sdk")
_decorators: Any = importlib.import_module("traceloop.sdk.decorators")
_instruments: Any = importlib.import_module("traceloop.sdk.instruments")
#: name -> (module, instrumentor class).
SECOND_INSTRUMENTORS: Final = {
    "openai-v2": ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    "openinference-openai": ("openinference.instrumentation.openai", "OpenAIInstrumentor"),
}


class Pipeline:
    def __init__(self, fake: FakeProvider) -> None:
        openai = importlib.import_module("openai")
        self.client = openai.OpenAI(base_url=fake.openai_url, api_key="fake", max_retries=0)
        task = _decorators.task
        self.tasks: dict[str, Callable[[], str]] = {name: task(name=name)(self._call(name)) for name in STEPS}
        self.streamed_tasks: dict[str, Callable[[], Iterator[str]]] = {
            name: task(name=name)(self._stream(name)) for name in STEPS
        }

    def _call(self, name: str) -> Callable[[], str]:
        def call() -> str:
            response = self.client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": prompt(name)}],
                max_tokens=max_tokens(name),
            )
            return str(response.choices[0].message.content)

        return call

    def _stream(self, name: str) -> Callable[[], Iterator[str]]:
        def stream() -> Iterator[str]:
            chunks = self.client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": prompt(name)}],
                max_tokens=max_tokens(name),
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

        return stream

    def steps(self) -> None:
        for call in self.tasks.values():
            call()

    def streamed_steps(self) -> None:
        for stream in self.streamed_tasks.values():
            "".join(stream())


def workflow(p: Pipeline) -> None:
    answer = _decorators.workflow(name="answer")(p.steps)
    for _ in range(REQUESTS):
        answer()


def tasks(p: Pipeline) -> None:
    for _ in range(REQUESTS):
        p.steps()


def app_span(p: Pipeline) -> None:
    tracer = trace.get_tracer("stack-app")
    for _ in range(REQUESTS):
        with tracer.start_as_current_span(REQUEST_SPAN):
            p.steps()


def stream_workflow(p: Pipeline) -> None:
    answer = _decorators.workflow(name="answer")(p.streamed_steps)
    for _ in range(REQUESTS):
        answer()


def stream_tasks(p: Pipeline) -> None:
    for _ in range(REQUESTS):
        p.streamed_steps()


SCENARIOS: Final[dict[str, Callable[[Pipeline], None]]] = {
    fn.__name__: fn for fn in (workflow, tasks, app_span, stream_workflow, stream_tasks)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--instrument", default="", choices=["", *SECOND_INSTRUMENTORS])
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # deprecation notices of the SDK are not the subject
    recorder = Recorder(attach=False)
    with contextlib.redirect_stdout(sys.stderr):  # its banner
        _sdk.Traceloop.init(
            app_name="stack",
            processor=recorder.processors,
            disable_batch=True,
            telemetry_enabled=False,
            instruments={_instruments.Instruments.OPENAI},
        )
    provider = trace.get_tracer_provider()
    if args.instrument:
        module, cls = SECOND_INSTRUMENTORS[args.instrument]
        getattr(importlib.import_module(module), cls)().instrument(tracer_provider=provider)
    with FakeProvider() as fake:
        SCENARIOS[args.scenario](Pipeline(fake))
    # Traceloop chains its own hook in by assigning each processor's on_start.
    notes = {"on_start_replaced": "on_start" in vars(recorder.processor)}
    recorder.write(args.out, provider=provider, notes=notes)  # type: ignore[arg-type]  # the SDK's provider


if __name__ == "__main__":
    main()
