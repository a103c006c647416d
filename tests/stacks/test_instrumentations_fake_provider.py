"""examples/fake_provider.py on its own: usage as documented, errors, and the command line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from fake_provider import DATED_MODELS, FakeProvider

pytestmark = [pytest.mark.e2e]

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "fake_provider.py"


def post(url: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_chat_usage_is_characters_in_and_the_token_limit_out() -> None:
    cached = {"type": "text", "text": "s" * 30, "cache_control": {"type": "ephemeral"}}
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": [cached]}, {"role": "user", "content": "hello"}],
    }
    with FakeProvider() as fake:
        status, _, raw = post(f"{fake.openai_url}/chat/completions", {**body, "max_tokens": 7})
        assert fake.requests == [("/v1/chat/completions", "gpt-4o")]
    reply = json.loads(raw)
    assert status == 200
    assert reply["model"] == DATED_MODELS["gpt-4o"]
    assert reply["usage"]["prompt_tokens"] == 35
    assert reply["usage"]["completion_tokens"] == 7
    assert reply["usage"]["prompt_tokens_details"]["cached_tokens"] == 30


def test_anthropic_reports_cache_reads_outside_input_tokens_and_streams_usage() -> None:
    cached = {"type": "text", "text": "s" * 30, "cache_control": {"type": "ephemeral"}}
    body = {
        "model": "claude-x",
        "max_tokens": 9,
        "system": [cached],
        "messages": [{"role": "user", "content": "hi"}],
    }
    with FakeProvider() as fake:
        _, _, raw = post(f"{fake.url}/v1/messages", body)
        _, content_type, stream = post(f"{fake.url}/v1/messages", {**body, "stream": True})
    assert json.loads(raw)["usage"] == {
        "input_tokens": 2,
        "output_tokens": 9,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }
    assert content_type == "text/event-stream"
    events = sse_events(stream)
    assert events[0]["message"]["usage"]["output_tokens"] == 1
    assert [e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta"] == [9]


def sse_events(stream: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in stream.decode().splitlines() if line.startswith("data: {")]


def test_a_cache_control_with_a_ttl_is_a_cache_write_of_that_lifetime() -> None:
    def part(text: str, **control: str) -> dict[str, Any]:
        return {"type": "text", "text": text, "cache_control": {"type": "ephemeral", **control}}

    body = {
        "model": "claude-x",
        "max_tokens": 9,
        "system": [part("r" * 30), part("w" * 20, ttl="5m"), part("h" * 10, ttl="1h")],
        "messages": [{"role": "user", "content": "hi"}],
    }
    with FakeProvider() as fake:
        _, _, raw = post(f"{fake.url}/v1/messages", body)
        _, _, stream = post(f"{fake.url}/v1/messages", {**body, "stream": True})
        _, _, chat = post(f"{fake.openai_url}/chat/completions", body)
    usage = {
        "input_tokens": 2,  # net of the cache reads and writes, as Anthropic reports it
        "output_tokens": 9,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 30,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
    }
    assert json.loads(raw)["usage"] == usage
    assert sse_events(stream)[0]["message"]["usage"] == {**usage, "output_tokens": 1}
    # OpenAI bills no cache writes: they are plain input there.
    assert json.loads(chat)["usage"]["prompt_tokens"] == 62
    assert json.loads(chat)["usage"]["prompt_tokens_details"]["cached_tokens"] == 30


def test_anthropic_thinking_is_part_of_the_output_tokens() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 50,
        "thinking": {"type": "enabled", "budget_tokens": 20},
        "messages": [{"role": "user", "content": "hi"}],
    }
    with FakeProvider() as fake:
        _, _, raw = post(f"{fake.url}/v1/messages", body)
        _, _, stream = post(f"{fake.url}/v1/messages", {**body, "stream": True})
    reply = json.loads(raw)
    assert [block["type"] for block in reply["content"]] == ["thinking", "text"]
    assert reply["usage"]["output_tokens"] == 50
    assert reply["usage"]["output_tokens_details"] == {"thinking_tokens": 20}
    events = sse_events(stream)
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text"]
    (delta,) = [e["usage"] for e in events if e["type"] == "message_delta"]
    assert delta == {"output_tokens": 50, "output_tokens_details": {"thinking_tokens": 20}}


@pytest.mark.parametrize(
    ("model", "effort", "reasoning"),
    [("gpt-4o", None, 0), ("gpt-4o", "low", 20), ("o4-mini", None, 20), ("gpt-5-mini", None, 20)],
)
def test_openai_reasoning_is_half_the_output_tokens_of_a_reasoning_request(
    model: str, effort: str | None, reasoning: int
) -> None:
    cached = {"type": "text", "text": "s" * 30, "cache_control": {"type": "ephemeral"}}
    chat_body: dict[str, Any] = {
        "model": model,
        "max_tokens": 41,
        "messages": [{"role": "user", "content": [cached, {"type": "text", "text": "hi"}]}],
    }
    responses_body: dict[str, Any] = {
        "model": model,
        "max_output_tokens": 41,
        "input": [{"role": "user", "content": [{**cached, "type": "input_text"}]}],
    }
    if effort is not None:
        chat_body["reasoning_effort"] = effort
        responses_body["reasoning"] = {"effort": effort}
    with FakeProvider() as fake:
        _, _, chat = post(f"{fake.openai_url}/chat/completions", chat_body)
        _, _, response = post(f"{fake.openai_url}/responses", responses_body)
    usage = json.loads(chat)["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (32, 41)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 30
    assert usage["completion_tokens_details"]["reasoning_tokens"] == reasoning
    reply = json.loads(response)
    assert reply["usage"]["input_tokens"] == 30
    assert reply["usage"]["input_tokens_details"] == {"cached_tokens": 30}
    assert reply["usage"]["output_tokens"] == 41
    assert reply["usage"]["output_tokens_details"] == {"reasoning_tokens": reasoning}
    kinds = [item["type"] for item in reply["output"]]
    assert kinds == (["reasoning", "message"] if reasoning else ["message"])


@pytest.mark.parametrize(("documents", "units"), [(0, 1), (3, 1), (100, 1), (101, 2), (250, 3)])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_rerank_bills_a_search_unit_per_started_hundred_documents(
    version: str, documents: int, units: int
) -> None:
    body = {"model": "rerank-v3.5", "query": "q", "documents": ["d"] * documents, "top_n": 2}
    with FakeProvider() as fake:
        status, _, raw = post(f"{fake.cohere_url}/{version}/rerank", body)
    reply = json.loads(raw)
    assert status == 200
    assert reply["meta"]["billed_units"] == {"search_units": units}
    assert [r["index"] for r in reply["results"]] == list(range(min(2, documents)))


@pytest.mark.parametrize(("model", "status"), [("error-500", 500), ("error-429", 429)])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v2/rerank"])
def test_an_error_model_gets_the_status_and_a_json_error_body(model: str, status: int, path: str) -> None:
    with FakeProvider() as fake:
        code, content_type, raw = post(f"{fake.url}{path}", {"model": model, "messages": []})
    assert (code, content_type) == (status, "application/json")
    body = json.loads(raw)
    assert "message" in body.get("error", body)  # Cohere's error body is the message alone


def test_runs_from_the_command_line_on_the_given_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(SCRIPT), "--port", str(port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        try:
            assert process.stdout is not None
            assert f"127.0.0.1:{port}/v1" in process.stdout.readline().decode()
            deadline = time.monotonic() + 10
            while True:
                try:
                    status, _, _ = post(
                        f"http://127.0.0.1:{port}/v1/embeddings", {"model": "m", "input": "abc"}
                    )
                    break
                except urllib.error.URLError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            assert status == 200
        finally:
            process.terminate()
