"""The HTTP side: Starlette routes for `/v1/chat/completions`, `/v1/models` and
`/v1/cascade/stats`, the token and Host checks, OpenAI-shaped errors, and the lifespan that
saves the state on an interval and at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from atlas.endpoint.config import EndpointConfig, is_loopback
from atlas.endpoint.protocol import EndpointError, completion, parse_request, text_to_classify
from atlas.endpoint.service import CascadeEndpoint

log = logging.getLogger(__name__)


class Guard:
    """Off loopback every request needs ``Authorization: Bearer TOKEN`` (the `openai` client's
    api_key); on loopback a token is checked if one was set, and only loopback Host names are
    answered (a web page cannot reach the endpoint through DNS rebinding)."""

    def __init__(self, app: ASGIApp, config: EndpointConfig) -> None:
        self.app = app
        self.token = config.token.get_secret_value().encode() if config.token else None
        names = {config.host, "127.0.0.1", "localhost", "[::1]"}
        self.hosts = ({f"{name}:{config.port}".encode() for name in names} | {n.encode() for n in names}) if is_loopback(config.host) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = None
        if self.hosts is not None and headers.get(b"host", b"") not in self.hosts:
            refusal = EndpointError(421, "this endpoint answers only on its loopback address", code="misdirected_request")
        elif self.token is not None:
            offered = headers.get(b"authorization", b"")
            if not (offered[:7].lower() == b"bearer " and hmac.compare_digest(offered[7:], self.token)):
                refusal = EndpointError(401, "this endpoint needs its token: pass it as the API key (Authorization: Bearer TOKEN)",
                                        code="invalid_api_key")
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Any) -> None:
            if message["type"] == "http.response.start":  # the whole app's time, up to the answer being ready
                elapsed = f"app;dur={(time.perf_counter() - started) * 1e3:.2f}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", elapsed)]}
            await send(message)

        await self.app(scope, receive, timed)


def create_app(endpoint: CascadeEndpoint) -> Starlette:
    config = endpoint.config
    served = {config.served_name, config.model}

    async def chat(request: Request) -> Response:
        started = time.perf_counter()
        parsed = parse_request(await request.body())
        if parsed.model not in served:
            raise EndpointError(404, f"model {parsed.model!r} is not served here: ask for {config.served_name!r} (the cascade in front of "
                                     f"{config.model!r})", code="model_not_found", param="model")
        text = text_to_classify(parsed)
        answer = await endpoint.answer(text, [m.to_openai() for m in parsed.messages])
        body = completion(endpoint.totals.requests, config.served_name, answer.label, answer.usage())
        headers = answer.headers()
        headers["server-timing"] = f"cascade;dur={(time.perf_counter() - started) * 1e3:.2f}"  # the handler (Guard adds the whole app's)
        return JSONResponse(body, headers=headers)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": config.served_name, "object": "model", "created": 0, "owned_by": "atlas-cascade"}]})

    async def stats(request: Request) -> Response:
        return JSONResponse(endpoint.stats())

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EndpointError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return EndpointError(404, f"no route {request.url.path}: this endpoint serves POST /v1/chat/completions, GET /v1/models and "
                                      "GET /v1/cascade/stats", code="not_found").response()
        if exc.status_code == 405:
            return EndpointError(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed").response()
        return EndpointError(exc.status_code, str(exc.detail)).response()

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("cascade endpoint: unexpected error on %s", request.url.path)
        return EndpointError(500, f"the cascade endpoint failed ({type(exc).__name__}); see its log", "server_error", "internal_error").response()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        saver = asyncio.create_task(_save_periodically(endpoint))
        try:
            yield
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
            try:
                await endpoint.drain()
                if endpoint.dirty or endpoint.saved_at is None:
                    endpoint.save()
            finally:
                await endpoint.upstream.close()

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/cascade/stats", stats, methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {EndpointError: refused, HTTPException: http_error, Exception: crashed}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(Guard, config=config)
    return app


async def _save_periodically(endpoint: CascadeEndpoint) -> None:
    """Every ``save_every_s``, if anything changed: the snapshot is taken on the loop (consistent),
    the file written in a worker thread (the loop keeps answering)."""
    path = endpoint.config.state
    if path is None:
        return
    while True:
        await asyncio.sleep(endpoint.config.save_every_s)
        if not endpoint.dirty:
            continue
        endpoint.dirty = False
        try:
            await anyio.to_thread.run_sync(endpoint.write, endpoint.snapshot(), path)
        except OSError as error:
            endpoint.dirty = True
            log.error("cascade endpoint: could not save the state to %s (%s); retrying in %.0f s", path, error, endpoint.config.save_every_s)


def serve(app: Starlette, host: str, port: int) -> None:
    """Serve until Ctrl-C or SIGTERM (both save the state on the way out)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
