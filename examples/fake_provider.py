"""A local stand-in for the OpenAI, Anthropic and Cohere rerank HTTP APIs, for tests and demos.

It speaks enough of these APIs for the real ``openai``, ``anthropic`` and ``cohere`` clients
(and the instrumentations wrapping them) to work unchanged, with ``base_url`` pointed at it:

- ``POST /v1/chat/completions``: plain, and ``stream: true`` as server-sent events (with a
  final usage chunk when ``stream_options.include_usage`` is true);
- ``POST /v1/embeddings``: float lists, or base64 when ``encoding_format`` is ``base64``;
- ``POST /v1/responses``: the Responses API, plain and streamed;
- ``POST /v1/messages``: Anthropic Messages, plain and streamed (usage in ``message_start``
  and ``message_delta``), with extended thinking;
- ``POST /v2/rerank`` and ``POST /v1/rerank``: Cohere rerank.

Usage is a pure function of the request, so expected tokens and dollars can be computed
by hand:

- input tokens = the number of characters of every text in the request: message contents
  (string or text parts), the Anthropic ``system`` prompt, the Responses ``instructions``
  and ``input``, the embedding ``input`` strings. Cache reads and writes are part of them;
- cache marks: a text part carrying ``cache_control`` (Anthropic's marker; the fake honours
  it on the OpenAI APIs too) is a cache READ when its ``cache_control`` has no ``ttl`` key,
  and a cache WRITE of that lifetime when it has one (``{"type": "ephemeral", "ttl": "5m"}``
  or ``"1h"``). The real API decides read or write by what is already cached; here the
  request says it. Each API reports them its own way:

  - Anthropic leaves both out of ``input_tokens``: ``input_tokens`` = input - reads -
    writes, ``cache_read_input_tokens`` = reads, ``cache_creation_input_tokens`` = writes
    (both lifetimes), ``cache_creation`` = ``{"ephemeral_5m_input_tokens": 5-minute
    writes, "ephemeral_1h_input_tokens": 1-hour writes}``;
  - OpenAI counts reads inside ``prompt_tokens`` (chat ``prompt_tokens_details.cached_tokens``,
    Responses ``input_tokens_details.cached_tokens``); it bills no cache writes, so a part
    marked as a write is plain input there;

- output tokens = the request's ``max_tokens`` / ``max_completion_tokens`` /
  ``max_output_tokens``, else :data:`DEFAULT_OUTPUT_TOKENS`; embeddings and reranks have
  none. A streamed Anthropic reply says ``output_tokens: 1`` in ``message_start`` and the
  total in ``message_delta``, as the real API does;
- reasoning tokens are part of the output tokens, as both providers bill them:

  - OpenAI, for a reasoning request (chat ``reasoning_effort`` or Responses ``reasoning``
    set, or a model named ``o<digit>...`` or ``gpt-5...``): half the output tokens, rounded
    down, in ``completion_tokens_details.reasoning_tokens`` (chat) or
    ``output_tokens_details.reasoning_tokens`` (Responses, whose output then starts with a
    ``reasoning`` item); 0 otherwise;
  - Anthropic, with ``thinking: {"type": "enabled", "budget_tokens": N}``: N of the output
    tokens (at most all of them) are thinking; the reply starts with a ``thinking`` block
    and its usage says ``output_tokens_details.thinking_tokens`` = N, as the API's current
    usage object does (``output_tokens`` stays the billed total);

- rerank: no tokens; ``meta.billed_units.search_units`` = one per started 100 documents
  (at least 1), Cohere's unit of billing; results are the documents in their order, with
  decreasing relevance scores, ``top_n`` of them when given;
- the response names the model as the real API does: a dated snapshot for the aliases in
  :data:`DATED_MODELS`, else the requested name (Cohere's rerank reply names none).

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
    "cache_write_tokens",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "search_units",
    "thinking_tokens",
)

DEFAULT_OUTPUT_TOKENS: Final = 100
EMBEDDING_DIMENSIONS: Final = 8
#: Aliases the real APIs answer with a dated snapshot name.
DATED_MODELS: Final = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-5": "gpt-5-2025-08-07",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}
_ERROR_STATUS: Final = {
    "error-500": HTTPStatus.INTERNAL_SERVER_ERROR,
    "error-429": HTTPStatus.TOO_MANY_REQUESTS,
}
_CREATED: Final = 1_800_000_000
_CHUNKS: Final = 3


#: The kinds of text :func:`_texts` can select: every text, or the parts with one cache mark.
_ALL: Final = "all"
_READ: Final = "read"
_WRITE_5M: Final = "5m"
_WRITE_1H: Final = "1h"


def _cache_mark(part: dict[str, Any]) -> str | None:
    """``read``, ``5m`` or ``1h`` for a part marked with ``cache_control``, else ``None``."""
    control = part.get("cache_control")
    if control is None:
        return None
    ttl = control.get("ttl") if isinstance(control, dict) else None
    return _READ if ttl is None else str(ttl)


def _texts(value: Any, kind: str = _ALL) -> Iterator[str]:
    """Every text in a request value (strings, text parts, message contents, nested lists);
    with a ``kind`` other than ``all``, only the text parts with that cache mark."""
    if isinstance(value, str):
        if kind == _ALL:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, kind)
    elif isinstance(value, dict):
        if isinstance(value.get("text"), str) and (kind == _ALL or _cache_mark(value) == kind):
            yield value["text"]
        if "content" in value:
            yield from _texts(value["content"], kind)


def _count(body: dict[str, Any], kind: str) -> int:
    parts = [body.get(key) for key in ("messages", "system", "instructions", "input")]
    return sum(len(text) for part in parts for text in _texts(part, kind))


def input_tokens(body: dict[str, Any]) -> int:
    """Input tokens of a request body, cache reads and writes included: characters of all
    its texts."""
    return _count(body, _ALL)


def cache_read_tokens(body: dict[str, Any]) -> int:
    """Cache-read tokens of a request body: characters of its text parts whose
    ``cache_control`` has no ``ttl``."""
    return _count(body, _READ)


def cache_write_tokens(body: dict[str, Any], ttl: str | None = None) -> int:
    """Cache-write tokens of a request body: characters of its text parts whose
    ``cache_control`` has this ``ttl`` (``5m`` or ``1h``; ``None``: either). Anthropic
    reports them; OpenAI bills no cache writes."""
    return sum(_count(body, kind) for kind in (_WRITE_5M, _WRITE_1H) if ttl in (None, kind))


def output_tokens(body: dict[str, Any]) -> int:
    """Output tokens the fake reports: the request's token limit, else the default."""
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_OUTPUT_TOKENS


def _is_reasoning(body: dict[str, Any]) -> bool:
    model = str(body.get("model") or "").rsplit("/", 1)[-1]
    named = (len(model) > 1 and model[0] == "o" and model[1].isdigit()) or model.startswith("gpt-5")
    return named or body.get("reasoning_effort") is not None or body.get("reasoning") is not None


def reasoning_tokens(body: dict[str, Any]) -> int:
    """Reasoning tokens of an OpenAI request, part of its output tokens: half of them
    (rounded down) for a reasoning request (``reasoning_effort`` or ``reasoning`` set, or a
    model named ``o<digit>...`` or ``gpt-5...``), else 0."""
    return output_tokens(body) // 2 if _is_reasoning(body) else 0


def thinking_tokens(body: dict[str, Any]) -> int:
    """Thinking tokens of an Anthropic request, part of its output tokens: the
    ``budget_tokens`` of an enabled ``thinking`` (at most the output tokens), else 0."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return 0
    budget = thinking.get("budget_tokens")
    return min(budget, output_tokens(body)) if isinstance(budget, int) and budget > 0 else 0


def search_units(body: dict[str, Any]) -> int:
    """Search units of a rerank request: one per started 100 documents, at least 1."""
    documents = body.get("documents")
    count = len(documents) if isinstance(documents, list) else 0
    return max(1, -(-count // 100))


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
def _openai_usage(body: dict[str, Any]) -> dict[str, Any]:
    # OpenAI counts cache reads inside prompt_tokens, reasoning inside completion_tokens.
    prompt, completion = input_tokens(body), output_tokens(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read_tokens(body), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens(body),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat(body: dict[str, Any], model: str, request_id: str) -> tuple[str, bytes]:
    words = _reply_words(output_tokens(body))
    base = {"id": request_id, "created": _CREATED, "model": model, "system_fingerprint": "fp_fake"}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(words), "refusal": None}
        return "application/json", json.dumps(
            {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": _openai_usage(body),
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
        events.append((None, {**chunk, "choices": [], "usage": _openai_usage(body)}))
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


def _response_reasoning(request_id: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": f"rs_{request_id}", "summary": []}


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
    # Cache reads inside input_tokens, reasoning inside output_tokens, as in chat.
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cache_read_tokens(body)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens(body)},
        "total_tokens": prompt + completion,
    }
    text = "".join(_reply_words(completion))
    output = [_response_message(request_id, text, done=True)]
    if _is_reasoning(body):
        output.insert(0, _response_reasoning(request_id))
    return {
        "id": request_id,
        "object": "response",
        "created_at": _CREATED,
        "model": model,
        "status": "completed" if done else "in_progress",
        "output": output if done else [],
        "usage": usage if done else None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "reasoning": body.get("reasoning"),
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
    index = 1 if _is_reasoning(body) else 0
    where = {"item_id": f"msg_{request_id}", "output_index": index, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    done_part = {**empty_part, "text": text}
    pending = _response_object(body, model, request_id, done=False)
    reasoning: list[dict[str, Any]] = [
        {"type": f"response.output_item.{event}", "output_index": 0, "item": _response_reasoning(request_id)}
        for event in ("added", "done")
    ]
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
        *(reasoning if index else []),
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": _response_message(request_id, "", done=False),
        },
        {"type": "response.content_part.added", **where, "part": empty_part},
        *({"type": "response.output_text.delta", **where, "delta": w, "logprobs": []} for w in words),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": done_part},
        {
            "type": "response.output_item.done",
            "output_index": index,
            "item": _response_message(request_id, text, done=True),
        },
        {"type": "response.completed", "response": final},
    ]
    return "text/event-stream", _sse(
        [(p["type"], {**p, "sequence_number": i}) for i, p in enumerate(payloads)]
    )


# -- Anthropic ----------------------------------------------------------------------------------
def _anthropic_usage(body: dict[str, Any], output: int) -> dict[str, Any]:
    # Anthropic counts cache reads and writes outside input_tokens, thinking inside output_tokens.
    reads, writes_5m, writes_1h = (
        cache_read_tokens(body),
        cache_write_tokens(body, _WRITE_5M),
        cache_write_tokens(body, _WRITE_1H),
    )
    usage: dict[str, Any] = {
        "input_tokens": input_tokens(body) - reads - writes_5m - writes_1h,
        "output_tokens": output,
        "cache_read_input_tokens": reads,
        "cache_creation_input_tokens": writes_5m + writes_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": writes_5m, "ephemeral_1h_input_tokens": writes_1h},
    }
    thinking = thinking_tokens(body)
    if thinking:
        usage["output_tokens_details"] = {"thinking_tokens": min(thinking, output)}
    return usage


_SIGNATURE: Final = "sig_fake"


def _messages(body: dict[str, Any], model: str, request_id: str) -> tuple[str, bytes]:
    completion, thinking = output_tokens(body), thinking_tokens(body)
    words = _reply_words(completion - thinking)
    thoughts = _reply_words(thinking) if thinking else []
    message = {
        "id": request_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    if not body.get("stream"):
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(words)}]
        if thoughts:
            content.insert(0, {"type": "thinking", "thinking": "".join(thoughts), "signature": _SIGNATURE})
        return "application/json", json.dumps(
            {**message, "content": content, "usage": _anthropic_usage(body, completion)}
        ).encode()
    start: dict[str, Any] = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": _anthropic_usage(body, 1),
    }
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if thoughts:
        deltas = [{"type": "thinking_delta", "thinking": word} for word in thoughts]
        deltas.append({"type": "signature_delta", "signature": _SIGNATURE})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": word} for word in words]))
    for index, (block, deltas) in enumerate(blocks):
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            for delta in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    final_usage: dict[str, Any] = {"output_tokens": completion}
    if thinking:
        final_usage["output_tokens_details"] = {"thinking_tokens": thinking}
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final_usage,
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "text/event-stream", _sse(events)


# -- Cohere rerank ------------------------------------------------------------------------------
def _rerank(body: dict[str, Any], request_id: str, version: str) -> tuple[str, bytes]:
    raw = body.get("documents")
    documents = raw if isinstance(raw, list) else []
    top_n = body.get("top_n")
    shown = len(documents) if not isinstance(top_n, int) or top_n <= 0 else min(top_n, len(documents))
    results: list[dict[str, Any]] = []
    for index in range(shown):
        result: dict[str, Any] = {"index": index, "relevance_score": round(0.9 / (index + 1), 6)}
        if body.get("return_documents"):
            document = documents[index]
            result["document"] = document if isinstance(document, dict) else {"text": str(document)}
        results.append(result)
    meta = {"api_version": {"version": version}, "billed_units": {"search_units": search_units(body)}}
    return "application/json", json.dumps({"id": request_id, "results": results, "meta": meta}).encode()


# -- server -------------------------------------------------------------------------------------
_ROUTES: Final[dict[str, Callable[[dict[str, Any], str, str], tuple[str, bytes]]]] = {
    "/v1/chat/completions": _chat,
    "/v1/embeddings": lambda body, model, _id: _embeddings(body, model),
    "/v1/responses": _responses,
    "/v1/messages": _messages,
    "/v1/rerank": lambda body, _model, request_id: _rerank(body, request_id, "1"),
    "/v2/rerank": lambda body, _model, request_id: _rerank(body, request_id, "2"),
}


def _error_body(path: str, status: HTTPStatus) -> bytes:
    message = f"fake provider: simulated {status.value} {status.phrase}"
    if path.endswith("/rerank"):
        return json.dumps({"message": message}).encode()
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
        """The server's root: the Anthropic client's ``base_url`` (it appends ``/v1/messages``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def cohere_url(self) -> str:
        """The Cohere client's ``base_url`` (it appends ``/v2/rerank`` itself)."""
        return self.url

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
    parser = argparse.ArgumentParser(
        description="Serve a fake OpenAI, Anthropic and Cohere rerank API on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    args = parser.parse_args(argv)
    fake = FakeProvider(args.port, verbose=True)
    print(f"OpenAI:    OPENAI_BASE_URL={fake.openai_url} OPENAI_API_KEY=fake", flush=True)
    print(f"Anthropic: ANTHROPIC_BASE_URL={fake.url} ANTHROPIC_API_KEY=fake", flush=True)
    print(f"Cohere:    CO_API_URL={fake.url} CO_API_KEY=fake", flush=True)
    with fake:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
