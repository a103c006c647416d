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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from fake_provider import DATED_MODELS, FakeProvider

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "fake_provider.py"


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
    }
    assert content_type == "text/event-stream"
    events = [json.loads(line[6:]) for line in stream.decode().splitlines() if line.startswith("data: ")]
    assert events[0]["message"]["usage"]["output_tokens"] == 1
    assert [e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta"] == [9]


@pytest.mark.parametrize(("model", "status"), [("error-500", 500), ("error-429", 429)])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_an_error_model_gets_the_status_and_a_json_error_body(model: str, status: int, path: str) -> None:
    with FakeProvider() as fake:
        code, content_type, raw = post(f"{fake.url}{path}", {"model": model, "messages": []})
    assert (code, content_type) == (status, "application/json")
    assert "error" in json.loads(raw)


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
