"""A local stand-in for the OpenAI and Anthropic HTTP APIs, for tests and demos.

It speaks enough of both APIs for the real ``openai`` and ``anthropic`` clients (and the
instrumentations wrapping them) to work unchanged, with ``base_url`` pointed at it:

- ``POST /v1/chat/completions``: plain, and ``stream: true`` as server-sent events (with a
  final usage chunk when ``stream_options.include_usage`` is true);
- ``POST /v1/embeddings``: float lists, or base64 when ``encoding_format`` is ``base64``;
- ``POST /v1/responses``: the Responses API, plain and streamed;
- ``POST /v1/messages``: Anthropic Messages, plain and streamed (usage in ``message_start``
  and ``message_delta``).

Usage is a pure function of the request, so expected tokens and dollars can be computed
by hand:

- input tokens = the number of characters of every text in the request: message contents
  (string or text parts), the Anthropic ``system`` prompt, the Responses ``instructions``
  and ``input``, the embedding ``input`` strings;
- cache-read tokens = the characters of the text parts that carry a ``cache_control`` key
  (Anthropic's marker; the fake honours it on both APIs). Each API reports them its own
  way: OpenAI inside ``prompt_tokens`` (``prompt_tokens_details.cached_tokens``),
  Anthropic outside ``input_tokens`` (``cache_read_input_tokens``);
- output tokens = the request's ``max_tokens`` / ``max_completion_tokens`` /
  ``max_output_tokens``, else :data:`DEFAULT_OUTPUT_TOKENS`; embeddings have none. A
  streamed Anthropic reply says ``output_tokens: 1`` in ``message_start`` and the total in
  ``message_delta``, as the real API does;
- no reasoning tokens are ever reported;
- the response names the model as the real API does: a dated snapshot for the aliases in
  :data:`DATED_MODELS`, else the requested name.

A model named ``error-500`` or ``error-429`` gets that HTTP status with the provider's JSON
error body. Retry-After is 0, but clients retry on both codes: use ``max_retries=0``.

Use it as a context manager (``with FakeProvider() as fake: OpenAI(base_url=fake.openai_url)``)
or run it: ``python examples/fake_provider.py --port 8089``. It binds 127.0.0.1 only, on an
ephemeral port unless one is given. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import Self

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

__all__ = (
    "DATED_MODELS",
    "DEFAULT_OUTPUT_TOKENS",
    "EMBEDDING_DIMENSIONS",
    "FakeProvider",
    "cache_read_tokens",
    "input_tokens",
    "output_tokens",
)

DEFAULT_OUTPUT_TOKENS: Final = 100
EMBEDDING_DIMENSIONS: Final = 8
#: Aliases the real APIs answer with a dated snapshot name.
DATED_MODELS: Final = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}
_ERROR_STATUS: Final = {
    "error-500": HTTPStatus.INTERNAL_SERVER_ERROR,
    "error-429": HTTPStatus.TOO_MANY_REQUESTS,
}
_CREATED: Final = 1_800_000_000
_CHUNKS: Final = 3


def _texts(value: Any, *, cached: bool = False) -> Iterator[str]:
    """Every text in a request value (strings, text parts, message contents, nested lists);
    with ``cached``, only the text parts marked with ``cache_control``."""
    if isinstance(value, str):
        if not cached:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, cached=cached)
    elif isinstance(value, dict):
        if isinstance(value.get("text"), str) and (not cached or "cache_control" in value):
            yield value["text"]
        if "content" in value:
            yield from _texts(value["content"], cached=cached)


def _count(body: dict[str, Any], *, cached: bool) -> int:
    parts = [body.get(key) for key in ("messages", "system", "instructions", "input")]
    return sum(len(text) for part in parts for text in _texts(part, cached=cached))


def input_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a request body, cache reads included: characters of all its texts."""
    return _count(body, cached=False)


def cache_read_tokens(body: dict[str, Any]) -> int:
    """Cache-read tokens of a request body: characters of its ``cache_control`` text parts."""
    return _count(body, cached=True)


def output_tokens(body: dict[str, Any]) -> int:
    """Output tokens the fake reports: the request's token limit, else the default."""
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_OUTPUT_TOKENS


def _reply_words(count: int) -> list[str]:
    """The reply text split in chunks; its content does not matter, only usage does."""
    words = ["ok"] * max(1, min(count, _CHUNKS))
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    lines = []
    for name, data in events:
        if name is not None:
            lines.append(f"event: {name}")
        lines.append("data: " + (data if isinstance(data, str) else json.dumps(data)))
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


# -- OpenAI -------------------------------------------------------------------------------------
def _openai_usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    # OpenAI counts cache reads inside prompt_tokens.
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _chat(body: dict[str, Any], model: str, request_id: str) -> tuple[str, bytes]:
    prompt, completion, cached = input_tokens(body), output_tokens(body), cache_read_tokens(body)
    words = _reply_words(completion)
    base = {"id": request_id, "created": _CREATED, "model": model, "system_fingerprint": "fp_fake"}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(words), "refusal": None}
        return "application/json", json.dumps(
            {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": _openai_usage(prompt, completion, cached),
                "service_tier": "default",
            }
        ).encode()
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunk = {**base, "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}

    def delta(payload: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": payload, "finish_reason": finish, "logprobs": None}
        return {**chunk, "choices": [choice], **extra}

    events: list[tuple[str | None, Any]] = [(None, delta({"role": "assistant", "content": ""}))]
    events += [(None, delta({"content": word})) for word in words]
    events.append((None, delta({}, "stop")))
    if include_usage:
        events.append((None, {**chunk, "choices": [], "usage": _openai_usage(prompt, completion, cached)}))
    events.append((None, "[DONE]"))
    return "text/event-stream", _sse(events)


def _embeddings(body: dict[str, Any], model: str) -> tuple[str, bytes]:
    raw = body.get("input")
    inputs = raw if isinstance(raw, list) else [raw]
    prompt = sum(len(text) for text in _texts(inputs))
    vector = [round(0.125 * (i + 1), 3) for i in range(EMBEDDING_DIMENSIONS)]
    as_base64 = body.get("encoding_format") == "base64"
    encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    data = [
        {"object": "embedding", "index": i, "embedding": encoded if as_base64 else vector}
        for i in range(len(inputs))
    ]
    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
    return "application/json", json.dumps(
        {"object": "list", "data": data, "model": model, "usage": usage}
    ).encode()


def _response_message(request_id: str, text: str, *, done: bool) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": f"msg_{request_id}",
        "status": "completed" if done else "in_progress",
        "role": "assistant",
        "content": [part] if done else [],
    }


def _response_object(body: dict[str, Any], model: str, request_id: str, *, done: bool) -> dict[str, Any]:
    prompt, completion = input_tokens(body), output_tokens(body)
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
    text = "".join(_reply_words(completion))
    return {
        "id": request_id,
        "object": "response",
        "created_at": _CREATED,
        "model": model,
        "status": "completed" if done else "in_progress",
        "output": [_response_message(request_id, text, done=True)] if done else [],
        "usage": usage if done else None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "temperature": body.get("temperature", 1.0),
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "error": None,
        "incomplete_details": None,
        "metadata": {},
    }


def _responses(body: dict[str, Any], model: str, request_id: str) -> tuple[str, bytes]:
    final = _response_object(body, model, request_id, done=True)
    if not body.get("stream"):
        return "application/json", json.dumps(final).encode()
    words = _reply_words(output_tokens(body))
    text = "".join(words)
    where = {"item_id": f"msg_{request_id}", "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    done_part = {**empty_part, "text": text}
    pending = _response_object(body, model, request_id, done=False)
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _response_message(request_id, "", done=False),
        },
        {"type": "response.content_part.added", **where, "part": empty_part},
        *({"type": "response.output_text.delta", **where, "delta": w, "logprobs": []} for w in words),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": done_part},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": _response_message(request_id, text, done=True),
        },
        {"type": "response.completed", "response": final},
    ]
    return "text/event-stream", _sse(
        [(p["type"], {**p, "sequence_number": i}) for i, p in enumerate(payloads)]
    )


# -- Anthropic ----------------------------------------------------------------------------------
def _anthropic_usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    # Anthropic counts cache reads outside input_tokens.
    return {
        "input_tokens": prompt - cached,
        "output_tokens": completion,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def _messages(body: dict[str, Any], model: str, request_id: str) -> tuple[str, bytes]:
    prompt, completion, cached = input_tokens(body), output_tokens(body), cache_read_tokens(body)
    words = _reply_words(completion)
    message = {
        "id": request_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    if not body.get("stream"):
        content = [{"type": "text", "text": "".join(words)}]
        return "application/json", json.dumps(
            {**message, "content": content, "usage": _anthropic_usage(prompt, completion, cached)}
        ).encode()
    start: dict[str, Any] = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": _anthropic_usage(prompt, 1, cached),
    }
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
        )
        for word in words
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": completion},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "text/event-stream", _sse(events)


# -- server -------------------------------------------------------------------------------------
_ROUTES: Final[dict[str, Callable[[dict[str, Any], str, str], tuple[str, bytes]]]] = {
    "/v1/chat/completions": _chat,
    "/v1/embeddings": lambda body, model, _id: _embeddings(body, model),
    "/v1/responses": _responses,
    "/v1/messages": _messages,
}


def _error_body(path: str, status: HTTPStatus) -> bytes:
    message = f"fake provider: simulated {status.value} {status.phrase}"
    if path == "/v1/messages":
        kind = "rate_limit_error" if status == HTTPStatus.TOO_MANY_REQUESTS else "api_error"
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    kind = "rate_limit_exceeded" if status == HTTPStatus.TOO_MANY_REQUESTS else "server_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": kind}}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send(HTTPStatus.BAD_REQUEST, "application/json", _error_body(path, HTTPStatus.BAD_REQUEST))
            return
        requested = str(body.get("model") or "")
        self.server.record(path, requested)
        route = _ROUTES.get(path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, "application/json", _error_body(path, HTTPStatus.NOT_FOUND))
            return
        status = _ERROR_STATUS.get(requested)
        if status is not None:
            self._send(status, "application/json", _error_body(path, status))
            return
        content_type, payload = route(body, DATED_MODELS.get(requested, requested), self.server.next_id())
        self._send(HTTPStatus.OK, content_type, payload)

    def _send(self, status: HTTPStatus, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", "req_fake")
        if status != HTTPStatus.OK:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, *, verbose: bool) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.verbose = verbose
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._ids = 0

    def record(self, path: str, model: str) -> None:
        with self._lock:
            self.requests.append((path, model))

    def next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"fake-{self._ids}"


class FakeProvider:
    """The fake API server on 127.0.0.1, serving from a background thread while open."""

    def __init__(self, port: int = 0, *, verbose: bool = False) -> None:
        self._server = _Server(port, verbose=verbose)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The Anthropic client's ``base_url`` (it appends ``/v1/messages`` itself)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """The OpenAI client's ``base_url``."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(path, requested model) of every request received so far."""
        with self._server._lock:  # noqa: SLF001 - the server is this class's own
            return list(self._server.requests)

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="fake-provider", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI and Anthropic API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    args = parser.parse_args(argv)
    fake = FakeProvider(args.port, verbose=True)
    print(f"OpenAI:    OPENAI_BASE_URL={fake.openai_url} OPENAI_API_KEY=fake", flush=True)
    print(f"Anthropic: ANTHROPIC_BASE_URL={fake.url} ANTHROPIC_API_KEY=fake", flush=True)
    with fake:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
