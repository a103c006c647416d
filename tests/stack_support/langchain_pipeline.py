"""The pipeline (3 requests x rewrite, rerank, generate, faithfulness) through LangChain or
LangGraph, under a LangChain instrumentation and optionally a client one, against
examples/fake_provider.py; writes what otel_overspend counted and every span as JSON. One run per
process (instrumentors patch LangChain and openai process-wide):

    python tests/stack_support/langchain_pipeline.py --pipeline langchain \
        --instrument openinference-langchain,openai-v2 --app-span --out r.json

The steps are marked only with the framework's own names, never with ``otel_overspend.step``:

- ``langchain``: each step is ``(prompt | llm).with_config(run_name=<step>)``, a
  ``ChatPromptTemplate`` of one human message and a ``ChatOpenAI`` (gpt-4o, the step's
  ``max_tokens``), invoked with the step's text;
- ``langgraph``: each request is one ``invoke`` of a compiled ``StateGraph`` whose nodes, named
  rewrite, rerank, generate and faithfulness, run in that order, each invoking the step's
  ``ChatOpenAI`` on the step's text.

Two more, on how names become steps:

- ``langchain_unnamed``: the same chains without ``with_config(run_name=...)``: LangChain names
  each run after its class (``RunnableSequence``), which is no step;
- ``langchain_renamed``: run names that are not the steps (:data:`RUN_NAMES`), given to the
  processor as ``step_aliases`` with ``--aliases`` (without it, the names that are valid step
  names become steps of those names, the others none).

``--app-span``: each request runs inside an app span ``request`` (made current); without it
nothing of the app's is around the calls, as in a script or a batch job.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_provider import FakeProvider

from stack_support.dump import REQUEST_SPAN, REQUESTS, STEPS, Recorder, max_tokens, prompt

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.sdk.trace import TracerProvider

#: name -> (module, instrumentor class).
INSTRUMENTORS: Final = {
    "openinference-langchain": ("openinference.instrumentation.langchain", "LangChainInstrumentor"),
    "openllmetry-langchain": ("opentelemetry.instrumentation.langchain", "LangchainInstrumentor"),
    "openai-v2": ("opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
    "openinference-openai": ("openinference.instrumentation.openai", "OpenAIInstrumentor"),
    "openllmetry-openai": ("opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),
}


#: step -> the run name of ``langchain_renamed``: CamelCase names, which are no step names, and
#: lower-case ones, which are.
RUN_NAMES: Final = {
    "rewrite": "QueryRewriter",
    "rerank": "score_docs",
    "generate": "Answer",
    "faithfulness": "faithfulness_check",
}


class State(TypedDict):
    text: str


def instrument(names: list[str], provider: TracerProvider) -> None:
    for name in names:
        module, cls = INSTRUMENTORS[name]
        getattr(importlib.import_module(module), cls)().instrument(tracer_provider=provider)


def chat_models(fake: FakeProvider) -> dict[str, Any]:
    """One ``ChatOpenAI`` per step (its ``max_tokens``), pointed at the fake, without retries."""
    chat_openai = importlib.import_module("langchain_openai").ChatOpenAI
    return {
        name: chat_openai(
            model="gpt-4o",
            base_url=fake.openai_url,
            api_key="fake",
            max_retries=0,
            max_tokens=max_tokens(name),
        )
        for name in STEPS
    }


def _chains(fake: FakeProvider, run_names: dict[str, str] | None) -> dict[str, Any]:
    """step -> ``prompt | llm``, named ``run_names[step]`` (``None``: left unnamed)."""
    template = importlib.import_module("langchain_core.prompts").ChatPromptTemplate
    llms = chat_models(fake)
    chains = {name: template.from_messages([("human", "{text}")]) | llms[name] for name in STEPS}
    if run_names is None:
        return chains
    return {name: chain.with_config(run_name=run_names[name]) for name, chain in chains.items()}


def _requests(chains: dict[str, Any]) -> Callable[[], None]:
    def one_request() -> None:
        for name, chain in chains.items():
            chain.invoke({"text": prompt(name)})

    return one_request


def langchain_pipeline(fake: FakeProvider) -> Callable[[], None]:
    return _requests(_chains(fake, {name: name for name in STEPS}))


def langchain_unnamed(fake: FakeProvider) -> Callable[[], None]:
    return _requests(_chains(fake, None))


def langchain_renamed(fake: FakeProvider) -> Callable[[], None]:
    return _requests(_chains(fake, RUN_NAMES))


def langgraph_pipeline(fake: FakeProvider) -> Callable[[], None]:
    graph_module = importlib.import_module("langgraph.graph")
    llms = chat_models(fake)

    def node(name: str) -> Callable[[State], State]:
        def run(state: State) -> State:
            reply = llms[name].invoke(prompt(name))
            return {"text": f"{state['text']}|{name}:{len(reply.content)}"}

        return run

    builder = graph_module.StateGraph(State)
    previous = graph_module.START
    for name in STEPS:
        builder.add_node(name, node(name))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, graph_module.END)
    graph = builder.compile()

    def one_request() -> None:
        graph.invoke({"text": ""})

    return one_request


PIPELINES: Final[dict[str, Callable[[FakeProvider], Callable[[], None]]]] = {
    "langchain": langchain_pipeline,
    "langchain_unnamed": langchain_unnamed,
    "langchain_renamed": langchain_renamed,
    "langgraph": langgraph_pipeline,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--pipeline", required=True, choices=sorted(PIPELINES))
    parser.add_argument(
        "--instrument", required=True, help=f"comma-separated, of: {', '.join(INSTRUMENTORS)}"
    )
    parser.add_argument("--app-span", action="store_true", help="each request inside an app span")
    parser.add_argument("--aliases", action="store_true", help="step_aliases: RUN_NAMES' names -> steps")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # deprecation notices of the frameworks are not the subject
    aliases = {run: name for name, run in RUN_NAMES.items()} if args.aliases else {}
    recorder = Recorder(step_aliases=aliases)
    instrument([name for name in args.instrument.split(",") if name], recorder.provider)
    with FakeProvider() as fake:
        one_request = PIPELINES[args.pipeline](fake)
        for _ in range(REQUESTS):
            around = (
                recorder.provider.get_tracer("stack-app").start_as_current_span(REQUEST_SPAN)
                if args.app_span
                else contextlib.nullcontext()
            )
            with around:
                one_request()
    recorder.write(args.out)


if __name__ == "__main__":
    main()
