"""The pipeline (3 requests x rewrite, rerank, generate, faithfulness) through ``litellm.completion``
with LiteLLM's OpenTelemetry callback, against examples/fake_provider.py; writes what
otel_overspend counted and every span as JSON. One scenario per process:

    python tests/stack_support/litellm_pipeline.py --scenario no_app_span --out r.json

LiteLLM (its default, "legacy" OpenTelemetry logger; ``LITELLM_OTEL_V2`` unset) writes its spans
after the call, from its logging thread pool: a non-streamed call's callback runs in a copy of
the caller's context, a synchronously streamed call's in none. A run waits for each call's
callback before it goes on (:class:`Logged`), so that what lands on which span is deterministic.

Scenarios (every call marked with ``otel_overspend.step``: LiteLLM names no steps itself):

- ``no_app_span``: no span of the app's; LiteLLM opens a ``litellm_request`` root span per call.
- ``request_span``: each request in an app span ``request``, with
  ``USE_OTEL_LITELLM_REQUEST_SPAN=true`` (the test sets it): LiteLLM opens its own
  ``litellm_request`` span under the active one.
- ``step_spans``: each request in an app span, each step in an app span of its own (started
  inside ``step()``), the variable unset: LiteLLM writes each call's usage onto its step's span.
- ``overwrite``: each request in an app span, steps marked with ``step()`` only, the variable
  unset: LiteLLM writes all four calls' usage onto the request span, each over the last.
- ``stream_no_app_span`` / ``stream_request_span``: streamed (``stream_options.include_usage``)
  inside ``step()`` alone, without and with a request span around: the callback runs without
  the caller's context, so LiteLLM's span is a root of a trace of its own and the step is lost.
- ``stream_recipe`` / ``stream_recipe_request_span``: the recipe for a step on a synchronously
  streamed call: open a span inside ``step()`` and hand it to LiteLLM as
  ``metadata={"litellm_parent_otel_span": span}``; without and with a request span around.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_provider import FakeProvider

from otel_overspend import step
from stack_support.dump import REQUESTS, STEPS, Recorder, max_tokens, prompt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from opentelemetry.trace import Span

# Offline: LiteLLM fetches its model cost map from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
#: Imported by name: litellm's own type hints are 200 MB of source for mypy to follow.
litellm: Any = importlib.import_module("litellm")
_CustomLogger: Any = importlib.import_module("litellm.integrations.custom_logger").CustomLogger
_OpenTelemetry: Any = importlib.import_module("litellm.integrations.opentelemetry").OpenTelemetry
CALLBACK_TIMEOUT_S: Final = 30.0


def _logged_class() -> Any:
    """A LiteLLM callback that counts the calls LiteLLM has finished logging. Registered after
    the OpenTelemetry callback: LiteLLM runs a call's callbacks one after the other, in order,
    so when this one has seen a call, that call's spans are written."""

    def init(self: Any) -> None:
        _CustomLogger.__init__(self)
        self.seen = 0
        self.changed = threading.Condition()

    def log_success_event(self: Any, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        with self.changed:
            self.seen += 1
            self.changed.notify_all()

    def wait_for(self: Any, count: int) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.seen >= count, timeout=CALLBACK_TIMEOUT_S):
                msg = f"LiteLLM logged {self.seen} calls in {CALLBACK_TIMEOUT_S:.0f} s, not {count}"
                raise TimeoutError(msg)

    # Built with type(): a class statement over litellm's class would need its types.
    return type(
        "Logged",
        (_CustomLogger,),
        {"__init__": init, "log_success_event": log_success_event, "wait_for": wait_for},
    )


class Pipeline:
    def __init__(self, recorder: Recorder, fake: FakeProvider) -> None:
        self.recorder = recorder
        self.fake = fake
        self.logged = _logged_class()()
        self.calls = 0
        # The callback's documented injection point: this run's provider, not the global one.
        litellm.callbacks = [_OpenTelemetry(tracer_provider=recorder.provider), self.logged]

    def call(self, name: str, *, stream: bool = False, parent: Span | None = None) -> None:
        """One LLM call of step ``name``, then wait until LiteLLM has logged it."""
        extra: dict[str, Any] = {}
        if stream:
            extra["stream_options"] = {"include_usage": True}
        if parent is not None:
            extra["metadata"] = {"litellm_parent_otel_span": parent}
        response = litellm.completion(
            model="openai/gpt-4o",
            api_base=self.fake.openai_url,
            api_key="fake",
            messages=[{"role": "user", "content": prompt(name)}],
            max_tokens=max_tokens(name),
            stream=stream,
            num_retries=0,
            **extra,
        )
        if stream:
            for _ in response:
                pass
        self.calls += 1
        self.logged.wait_for(self.calls)

    def request(self, *, span: bool) -> contextlib.AbstractContextManager[object]:
        if span:
            return self.recorder.tracer.start_as_current_span("request")
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def step_span(self, name: str) -> Iterator[Span]:
        """``step(name)`` with an app span of that name opened inside it (so it holds the step)."""
        with step(name), self.recorder.tracer.start_as_current_span(name) as span:
            yield span


def no_app_span(p: Pipeline) -> None:
    for _ in range(REQUESTS):
        for name in STEPS:
            with step(name):
                p.call(name)


def request_span(p: Pipeline) -> None:
    for _ in range(REQUESTS):
        with p.request(span=True):
            for name in STEPS:
                with step(name):
                    p.call(name)


def step_spans(p: Pipeline) -> None:
    for _ in range(REQUESTS):
        with p.request(span=True):
            for name in STEPS:
                with p.step_span(name):
                    p.call(name)


def overwrite(p: Pipeline) -> None:
    request_span(p)


def _stream(p: Pipeline, *, app_span: bool) -> None:
    for _ in range(REQUESTS):
        with p.request(span=app_span):
            for name in STEPS:
                with step(name):
                    p.call(name, stream=True)


def stream_no_app_span(p: Pipeline) -> None:
    _stream(p, app_span=False)


def stream_request_span(p: Pipeline) -> None:
    _stream(p, app_span=True)


def _stream_recipe(p: Pipeline, *, app_span: bool) -> None:
    for _ in range(REQUESTS):
        with p.request(span=app_span):
            for name in STEPS:
                with p.step_span(name) as span:
                    p.call(name, stream=True, parent=span)


def stream_recipe(p: Pipeline) -> None:
    _stream_recipe(p, app_span=False)


def stream_recipe_request_span(p: Pipeline) -> None:
    _stream_recipe(p, app_span=True)


SCENARIOS: Final[dict[str, Callable[[Pipeline], None]]] = {
    fn.__name__: fn
    for fn in (
        no_app_span,
        request_span,
        step_spans,
        overwrite,
        stream_no_app_span,
        stream_request_span,
        stream_recipe,
        stream_recipe_request_span,
    )
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    recorder = Recorder(mask_content=False)
    with FakeProvider() as fake:
        SCENARIOS[args.scenario](Pipeline(recorder, fake))
    notes = {"USE_OTEL_LITELLM_REQUEST_SPAN": os.environ.get("USE_OTEL_LITELLM_REQUEST_SPAN", "")}
    recorder.write(args.out, notes=notes)


if __name__ == "__main__":
    main()
