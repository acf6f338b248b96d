"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests, driven by the real `openai` client.

Replies come from a function of the request's messages. Faults are queued as actions that the
next requests consume in order: an HTTP status, a delay, or a malformed body.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Replier = Callable[[list[dict[str, str]]], str]


@dataclass
class Fault:
    status: int = 200
    delay_s: float = 0.0
    body: str | None = None  # raw body to send instead of a proper completion
    headers: dict[str, str] = field(default_factory=dict)


def echo_replier(messages: list[dict[str, str]]) -> str:
    return "echo: " + messages[-1]["content"]


class FakeOpenAIServer:
    def __init__(self, replier: Replier = echo_replier, api_key: str = "test-key") -> None:
        self.replier = replier
        self.api_key = api_key
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self.top_logprobs: dict[str, float] | None = None  # served for logprobs requests
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def queue(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = request["messages"]
        text = self.replier(messages)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if request.get("logprobs"):
            top = self.top_logprobs or {text.split()[0] if text.split() else "": -0.1}
            first = max(top, key=top.get)
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
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "unknown"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt_tokens + len(text.split()),
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
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

            def _fault(self) -> bool:
                fault = server._next_fault()
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
                if not self._authorised() or self._fault():
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": "not found"}}))
                    return
                try:
                    self._send(200, json.dumps(server.completion(request)))
                except BrokenPipeError:  # the client gave up (timeout tests)
                    return

        return Handler
