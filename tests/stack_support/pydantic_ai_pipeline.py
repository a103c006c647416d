"""The pipeline (3 requests x rewrite, rerank, generate, faithfulness) as four Pydantic AI agents
named after the steps, on an OpenAI chat model pointed at examples/fake_provider.py, instrumented
with ``Agent.instrument_all(InstrumentationSettings(tracer_provider=...))``; writes what
otel_overspend counted and every span as JSON. One scenario per process:

    python tests/stack_support/pydantic_ai_pipeline.py --scenario no_app_span --out r.json

No ``step()`` anywhere: the agents' names (``gen_ai.agent.name``) are the only step markers.

Scenarios:

- ``no_app_span``: ``agent.run_sync`` with no span of the app's (each run is a trace of its own);
- ``app_span``: each request in an app span ``request``;
- ``stream``: ``agent.run_stream_sync``, no app span;
- ``usage_on_agent_span``: ``use_aggregated_usage_attribute_names=False``, so that the agent-run
  span carries its run's usage as ``gen_ai.usage.*`` too (above its chat span), in an app span;
- ``client_instrumented``: OpenLLMetry's openai instrumentation as well (its span of each call
  nests under Pydantic AI's chat span), in an app span.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_provider import FakeProvider
from pydantic_ai import Agent
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from stack_support.dump import REQUESTS, STEPS, Recorder, max_tokens, prompt

if TYPE_CHECKING:
    from collections.abc import Callable


class Pipeline:
    def __init__(self, recorder: Recorder, fake: FakeProvider, *, stream: bool = False) -> None:
        self.recorder = recorder
        self.stream = stream
        model = OpenAIChatModel("gpt-4o", provider=OpenAIProvider(base_url=fake.openai_url, api_key="fake"))
        self.agents = {name: Agent(model, name=name) for name in STEPS}

    def run(self, *, app_span: bool) -> None:
        for _ in range(REQUESTS):
            tracer = self.recorder.tracer
            with tracer.start_as_current_span("request") if app_span else contextlib.nullcontext():
                for name, agent in self.agents.items():
                    settings = ModelSettings(max_tokens=max_tokens(name))
                    if self.stream:
                        with agent.run_stream_sync(prompt(name), model_settings=settings) as result:
                            for _ in result.stream_text():
                                pass
                    else:
                        agent.run_sync(prompt(name), model_settings=settings)


def _instrument(recorder: Recorder, *, aggregated_names: bool = True) -> None:
    Agent.instrument_all(
        InstrumentationSettings(
            tracer_provider=recorder.provider, use_aggregated_usage_attribute_names=aggregated_names
        )
    )


def no_app_span(recorder: Recorder, fake: FakeProvider) -> None:
    _instrument(recorder)
    Pipeline(recorder, fake).run(app_span=False)


def app_span(recorder: Recorder, fake: FakeProvider) -> None:
    _instrument(recorder)
    Pipeline(recorder, fake).run(app_span=True)


def stream(recorder: Recorder, fake: FakeProvider) -> None:
    _instrument(recorder)
    Pipeline(recorder, fake, stream=True).run(app_span=False)


def usage_on_agent_span(recorder: Recorder, fake: FakeProvider) -> None:
    _instrument(recorder, aggregated_names=False)
    Pipeline(recorder, fake).run(app_span=True)


def client_instrumented(recorder: Recorder, fake: FakeProvider) -> None:
    _instrument(recorder)
    instrumentor = importlib.import_module("opentelemetry.instrumentation.openai").OpenAIInstrumentor
    instrumentor().instrument(tracer_provider=recorder.provider)
    Pipeline(recorder, fake).run(app_span=True)


SCENARIOS: Final[dict[str, Callable[[Recorder, FakeProvider], None]]] = {
    fn.__name__: fn for fn in (no_app_span, app_span, stream, usage_on_agent_span, client_instrumented)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    recorder = Recorder(mask_content=False)
    with FakeProvider() as fake:
        SCENARIOS[args.scenario](recorder, fake)
    recorder.write(args.out)


if __name__ == "__main__":
    main()
