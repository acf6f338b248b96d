"""Who may use the page and what the browser may do with it.

- Bound to loopback, only requests whose Host is this loopback address are served (a page on
  another site cannot reach the memory through DNS rebinding).
- Bound to any other address, a token is required: ``?token=...`` once (it is then kept in an
  HttpOnly cookie), or an ``Authorization: Bearer ...`` header.
- Every form carries a per-server secret that a POST must return, so another site cannot make
  the browser edit or delete pamphlets (CSRF).
- No script runs on these pages at all (Content-Security-Policy ``script-src 'none'``), on top of
  escaping every pamphlet text.
- Each response says how long the server took: wall and process CPU milliseconds
  (``Server-Timing: app;dur=..., cpu;dur=...``).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from atlas.errors import ConfigError

TOKEN_COOKIE = "atlas_ui_token"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """Where the server listens and the token it wants (None: none, allowed on loopback only)."""

    host: str
    port: int
    token: str | None
    csrf: str

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"binding the web page to {self.host} exposes the memory to the network: pass --token SECRET "
                "(or set ATLAS_UI_TOKEN / ui.token), or bind to 127.0.0.1"
            )

    def allowed_hosts(self) -> set[str] | None:
        """Host headers accepted on loopback (None: any, the token guards)."""
        if not is_loopback(self.host):
            return None
        names = {self.host, "127.0.0.1", "localhost", "[::1]"}
        return {f"{name}:{self.port}" for name in names} | names

    def token_ok(self, offered: str | None) -> bool:
        return self.token is None or (offered is not None and hmac.compare_digest(offered.encode(), self.token.encode()))

    def csrf_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf.encode())


class GuardMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, access: Access) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started, cpu = time.perf_counter(), time.process_time()
        response = await self._guarded(request, call_next)
        wall_ms, cpu_ms = (time.perf_counter() - started) * 1e3, (time.process_time() - cpu) * 1e3
        response.headers["Server-Timing"] = f"app;dur={wall_ms:.1f}, cpu;dur={cpu_ms:.1f}"
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _guarded(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        allowed = self.access.allowed_hosts()
        if allowed is not None and request.headers.get("host", "") not in allowed:
            return PlainTextResponse("this page answers only on its loopback address", status_code=421)
        if self.access.token is None:
            return await call_next(request)
        from_query = request.query_params.get("token")
        if from_query is not None and self.access.token_ok(from_query):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)  # drop the token from the address bar
            redirect.set_cookie(TOKEN_COOKIE, self.access.token, httponly=True, samesite="strict")
            return redirect
        bearer = request.headers.get("authorization", "")
        offered = bearer[7:] if bearer.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
        if not self.access.token_ok(offered):
            return PlainTextResponse(
                "this page needs its token: open the address `atlas ui` printed (it ends in ?token=...), "
                "or send Authorization: Bearer TOKEN",
                status_code=401,
            )
        return await call_next(request)
