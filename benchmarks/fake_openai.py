"""A small OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks through the real `openai` client.

Replies come from a function of the request (a `Replier` of the messages, or a `Responder` of the
whole request, which may answer with native tool calls). The server meters prompt tokens with a
pluggable counter, honours `max_tokens` (a longer reply is cut and says `finish_reason: length`),
can refuse prompts over a context size like a real server (HTTP 400 `context_length_exceeded`), can
pretend not to support tools or `response_format`, and adds a fixed latency per call if asked.

Faults are queued and consumed by the next requests in order: an HTTP status, a delay, a raw body,
or a change to the reply (tool call as text, a reasoning block, two objects, cut off, overflow).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Replier = Callable[[list[dict[str, Any]]], str]
FaultMode = Literal["tool_as_text", "think", "two_objects", "truncate", "overflow"]


@dataclass
class Reply:
    """What the model says: text, and/or tool calls as (name, arguments) pairs."""

    content: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finish_reason: str | None = None


Responder = Callable[[dict[str, Any]], "Reply | str"]


@dataclass
class Fault:
    status: int = 200
    delay_s: float = 0.0
    body: str | None = None  # raw body to send instead of a proper completion
    headers: dict[str, str] = field(default_factory=dict)
    mode: FaultMode | None = None  # a change to the reply itself


def echo_replier(messages: list[dict[str, Any]]) -> str:
    return "echo: " + content_text(messages[-1].get("content"))


def word_count(text: str) -> int:
    return len(text.split())


def content_text(content: Any) -> str:
    """A message's text: its string content, or the text parts of a multi-part content."""
    if isinstance(content, list):
        return "\n".join(str(part.get("text") or "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return content or ""


def _text_of(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    parts = [content_text(m.get("content")) for m in messages]
    parts += [json.dumps(c) for m in messages for c in m.get("tool_calls") or []]
    parts += [json.dumps(t) for t in tools or []]
    return "\n".join(parts)


OVERFLOW_ERROR = {
    "error": {
        "message": "This model's maximum context length is {limit} tokens. However, your messages resulted in {used} tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


class FakeOpenAIServer:
    def __init__(
        self,
        replier: Replier = echo_replier,
        api_key: str = "test-key",
        responder: Responder | None = None,
        count_tokens: Callable[[str], int] = word_count,
        context_limit: int | None = None,
        latency_s: float = 0.0,
        supports_tools: bool = True,
        supports_response_format: bool = True,
    ) -> None:
        self.replier = replier
        self.responder = responder
        self.api_key = api_key
        self.count_tokens = count_tokens
        self.context_limit = context_limit
        self.latency_s = latency_s
        self.supports_tools = supports_tools
        self.supports_response_format = supports_response_format
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self.prompt_tokens: list[int] = []  # per answered chat request, as metered
        self.calls: list[tuple[str, int, int]] = []  # (model, prompt tokens, completion tokens) per answered request
        self.top_logprobs: dict[str, float] | None = None  # served for logprobs requests
        self.in_flight = 0  # requests inside their latency wait now, and the most at once so far
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: the address is (str, int), never bytes
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def queue(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _reply(self, request: dict[str, Any]) -> Reply:
        answer = self.responder(request) if self.responder is not None else self.replier(request["messages"])
        return answer if isinstance(answer, Reply) else Reply(content=answer)

    def refusal(self, request: dict[str, Any], prompt_tokens: int) -> tuple[int, dict[str, Any]] | None:
        """An HTTP error a real server would give for this request, if any."""
        if request.get("tools") and not self.supports_tools:
            return 400, {"error": {"message": "tools are not supported by this server", "type": "invalid_request_error"}}
        if request.get("response_format") and not self.supports_response_format:
            return 400, {"error": {"message": "response_format is not supported", "type": "invalid_request_error"}}
        if self.context_limit is not None and prompt_tokens > self.context_limit:
            error = json.loads(json.dumps(OVERFLOW_ERROR))
            error["error"]["message"] = error["error"]["message"].format(limit=self.context_limit, used=prompt_tokens)
            return 400, error
        return None

    def completion(self, request: dict[str, Any], mode: FaultMode | None = None) -> dict[str, Any]:
        reply = self._reply(request)
        prompt_tokens = self.count_tokens(_text_of(request["messages"], request.get("tools")))
        reply = _apply(mode, reply)
        cap = request.get("max_tokens") or request.get("max_completion_tokens")
        text = reply.content
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        calls: list[dict[str, Any]] = [{"id": f"call_{len(self.requests)}_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}} for n, (name, args) in enumerate(reply.tool_calls)]
        if cap and self.count_tokens(text) > cap:
            text, finish = " ".join(text.split()[:cap]), "length"
        message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        if request.get("logprobs"):
            top = self.top_logprobs or {text.split()[0] if text.split() else "": -0.1}
            first = max(top, key=top.__getitem__)
            choice["logprobs"] = {
                "content": [
                    {
                        "token": first,
                        "logprob": top[first],
                        "bytes": None,
                        "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()],
                    }
                ]
            }
        completion_tokens = self.count_tokens(text) + sum(self.count_tokens(c["function"]["arguments"]) for c in calls)
        with self._lock:
            self.prompt_tokens.append(prompt_tokens)
            self.calls.append((str(request.get("model", "")), prompt_tokens, completion_tokens))
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "unknown"),
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real servers: a client reuses its connections
            # headers and body go out in two writes: with Nagle's algorithm on, the body waits for the client's
            # delayed ACK of the headers (~40 ms on Linux), which made every call ~40 ms slower than its work
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                return

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                error = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}
                self._send(401, json.dumps(error))
                return False

            def _fault(self, fault: Fault | None) -> bool:
                if fault is None:
                    return False
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                if fault.status == 200 and fault.body is None:
                    return False
                body = fault.body if fault.body is not None else json.dumps({"error": {"message": f"injected {fault.status}", "type": "server_error"}})
                self._send(fault.status, body, fault.headers)
                return True

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "tests"}]}))
                else:
                    self._send(404, json.dumps({"error": {"message": "not found"}}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(request)
                if server.latency_s:
                    with server._lock:
                        server.in_flight += 1
                        server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                    time.sleep(server.latency_s)
                    with server._lock:
                        server.in_flight -= 1
                if not self._authorised():
                    return
                fault = server._next_fault()
                if self._fault(fault):
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": "not found"}}))
                    return
                mode = fault.mode if fault is not None else None
                tokens = server.count_tokens(_text_of(request.get("messages", []), request.get("tools")))
                refused = (400, _overflow(tokens)) if mode == "overflow" else server.refusal(request, tokens)
                try:
                    if refused is not None:
                        self._send(refused[0], json.dumps(refused[1]))
                    else:
                        self._send(200, json.dumps(server.completion(request, mode)))
                except BrokenPipeError:  # the client gave up (timeout tests)
                    return

        return Handler


def _overflow(tokens: int) -> dict[str, Any]:
    error = json.loads(json.dumps(OVERFLOW_ERROR))
    error["error"]["message"] = error["error"]["message"].format(limit=max(1, tokens // 2), used=tokens)
    return error


def _apply(mode: FaultMode | None, reply: Reply) -> Reply:
    """A well-formed reply made into one of the shapes real models produce."""
    if mode is None:
        return reply
    if mode == "tool_as_text" and reply.tool_calls:
        name, args = reply.tool_calls[0]
        return Reply(content=f"I'll do that.\n```json\n{json.dumps({'action': name, 'arguments': args})}\n```")
    if mode == "think":
        return Reply(content="<think>Let me reason about {the task} first.</think>\n" + reply.content, tool_calls=reply.tool_calls)
    if mode == "two_objects":
        if reply.tool_calls:
            return Reply(content=reply.content, tool_calls=reply.tool_calls * 2)
        return Reply(content=f"{reply.content}\n{reply.content}")
    if mode == "truncate":
        if reply.tool_calls:
            name, args = reply.tool_calls[0]
            text = json.dumps(args)
            return Reply(content=f'{{"action": "{name}", "arguments": {text[: len(text) // 2]}', finish_reason="length")
        return Reply(content=reply.content[: max(1, len(reply.content) // 2)], finish_reason="length")
    return reply
