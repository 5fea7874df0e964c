"""A scripted OpenAI chat-completions server on loopback, for tests of every LLM/VLM client in the project.

Usage::

    server = FakeOpenAIServer().start()
    server.queue("plain text reply", ToolCallReply([("score", {"text": "effusion"})]), ErrorReply(500))
    ... point a client at server.base_url (http://127.0.0.1:PORT/v1) ...
    server.requests  # the JSON bodies received, in order
    server.stop()

Replies are served in order from the queue. A reply is a ``str`` (assistant text), a :class:`TextReply`,
a :class:`ToolCallReply` (``tool_calls`` with function name + JSON arguments) or an :class:`ErrorReply`
(an HTTP error status with an OpenAI-style error body). ``set_responder(fn)`` answers from a function of
the request body instead when the queue is empty. With nothing left to answer, the server replies
HTTP 400 "script exhausted" (not retried by clients, so the test fails fast). ``stream: true`` requests
get server-sent-event chunks (``data: {...}`` lines and ``data: [DONE]``), with a usage chunk when
``stream_options.include_usage`` is set.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass
class TextReply:
    """An assistant message with plain text content."""

    content: str
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None


@dataclass
class ToolCallReply:
    """An assistant message that calls tools: ``calls`` is a list of ``(function name, arguments dict)``."""

    calls: list[tuple[str, dict[str, Any]]]
    content: str | None = None
    usage: dict[str, int] | None = None


@dataclass
class ErrorReply:
    """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""

    status: int
    message: str = "scripted error"
    error_type: str = "server_error"


Reply = str | TextReply | ToolCallReply | ErrorReply


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def _count_tokens(value: Any) -> int:
    """A rough, deterministic token count (words) of every text in a request or reply."""
    if isinstance(value, str):
        return 0 if value.startswith("data:") else len(value.split())
    if isinstance(value, dict):
        return sum(_count_tokens(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_tokens(v) for v in value)
    return 0


class FakeOpenAIServer:
    """A loopback HTTP server that speaks the OpenAI chat-completions protocol from a script."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._replies: deque[Reply] = deque()
        self._responder: Callable[[dict[str, Any]], Reply] | None = None
        self._lock = threading.Lock()
        self.calls: list[RecordedRequest] = []
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- script ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The ephemeral port the server listens on."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """Base URL for OpenAI clients, ending in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def queue(self, *replies: Reply | Iterable[Reply]) -> FakeOpenAIServer:
        """Append replies (or iterables of replies) to the script; returns self."""
        with self._lock:
            for reply in replies:
                if isinstance(reply, str | TextReply | ToolCallReply | ErrorReply):
                    self._replies.append(reply)
                else:
                    self._replies.extend(reply)
        return self

    def set_responder(self, responder: Callable[[dict[str, Any]], Reply] | None) -> None:
        """Answer from ``responder(request_body)`` whenever the queue is empty (``None`` to remove)."""
        self._responder = responder

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        return len(self._replies)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the chat-completions requests received, in order."""
        return [c.body for c in self.calls if c.path in CHAT_PATHS]

    def reset(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self._replies.clear()
            self.calls.clear()
        self._responder = None

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        if self._responder is not None:
            return self._responder(body)
        return ErrorReply(400, "fake OpenAI server: script exhausted (no reply queued)", "invalid_request_error")

    # --- HTTP --------------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                server.calls.append(RecordedRequest("GET", self.path, dict(self.headers.items())))
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                path = self.path.split("?", 1)[0]
                server.calls.append(RecordedRequest("POST", path, dict(self.headers.items()), body))
                if path not in CHAT_PATHS:
                    self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                    return
                reply = server._next_reply(body)
                if isinstance(reply, ErrorReply):
                    self._send_json(
                        reply.status,
                        {"error": {"message": reply.message, "type": reply.error_type, "code": reply.status}},
                    )
                    return
                if isinstance(reply, str):
                    reply = TextReply(reply)
                if body.get("stream"):
                    self._send_stream(body, reply)
                else:
                    self._send_json(200, _completion(body, reply))

            def _send_stream(self, body: dict[str, Any], reply: TextReply | ToolCallReply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in _stream_chunks(body, reply):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def _usage(body: dict[str, Any], reply: TextReply | ToolCallReply) -> dict[str, int]:
    if reply.usage is not None:
        return dict(reply.usage)
    prompt_tokens = _count_tokens(body.get("messages", []))
    if isinstance(reply, TextReply):
        completion_tokens = _count_tokens(reply.content)
    else:
        completion_tokens = sum(1 + _count_tokens(json.dumps(args)) for _, args in reply.calls)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _tool_calls(reply: ToolCallReply) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{index}_{uuid.uuid4().hex[:8]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for index, (name, arguments) in enumerate(reply.calls)
    ]


def _completion(body: dict[str, Any], reply: TextReply | ToolCallReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if isinstance(reply, TextReply):
        message["content"] = reply.content
        finish = reply.finish_reason
    else:
        message["content"] = reply.content
        message["tool_calls"] = _tool_calls(reply)
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "fake-model")),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(body, reply),
    }


def _stream_chunks(body: dict[str, Any], reply: TextReply | ToolCallReply) -> list[dict[str, Any]]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": str(body.get("model", "fake-model")),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if isinstance(reply, TextReply):
        words = reply.content.split(" ")
        for index, word in enumerate(words):
            chunks.append(chunk({"content": word if index == 0 else " " + word}))
        finish = reply.finish_reason
    else:
        if reply.content:
            chunks.append(chunk({"content": reply.content}))
        for index, call in enumerate(_tool_calls(reply)):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [head]}))
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]})
            )
        finish = "tool_calls"
    chunks.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": _usage(body, reply)})
    return chunks
