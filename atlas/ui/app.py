"""`atlas ui`: the web app (Starlette) for the memory and the run folders."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from atlas.errors import AtlasError, user_message
from atlas.ui.guard import Access, GuardMiddleware
from atlas.ui.pamphlet_pages import PamphletPages
from atlas.ui.render import Renderer
from atlas.ui.run_pages import RunPages
from memory.errors import ConcurrentEdit, MemoryStoreError, PamphletNotFound
from memory.store import MemoryStore

STATIC = Path(__file__).with_name("static")


def create_app(memory: MemoryStore, runs_root: Path, host: str = "127.0.0.1", port: int = 8765,
               token: str | None = None, page_size: int = 100) -> Starlette:
    """The app over one open store. A non-loopback ``host`` without a ``token`` is refused here,
    before anything is served."""
    access = Access(host=host, port=port, token=token, csrf=secrets.token_urlsafe(24))
    renderer = Renderer(store_name=memory.target, csrf=access.csrf)
    pamphlets = PamphletPages(memory, access, renderer, page_size)
    run_pages = RunPages(runs_root, renderer)

    async def home(request: Request) -> Response:
        return RedirectResponse("/pamphlets", status_code=303)

    async def user_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, PamphletNotFound) else 409 if isinstance(exc, ConcurrentEdit) else 400
        return renderer.error(user_message(exc) or str(exc), status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return renderer.error(message, exc.status_code)

    routes = [
        Route("/", home),
        Route("/pamphlets", pamphlets.list),
        Route("/pamphlets/purge-deleted", pamphlets.purge_deleted, methods=["POST"]),
        Route("/pamphlets/{pamphlet_id:int}", pamphlets.show),
        Route("/pamphlets/{pamphlet_id:int}/edit", pamphlets.edit, methods=["GET", "POST"]),
        Route("/pamphlets/{pamphlet_id:int}/delete", pamphlets.delete, methods=["POST"]),
        Route("/pamphlets/{pamphlet_id:int}/restore", pamphlets.restore, methods=["POST"]),
        Route("/pamphlets/{pamphlet_id:int}/purge", pamphlets.purge, methods=["POST"]),
        Route("/runs", run_pages.index),
        Route("/runs/view", run_pages.view),
        Route("/runs/file", run_pages.file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {MemoryStoreError: user_error, AtlasError: user_error, ValidationError: user_error, HTTPException: http_error}
    return Starlette(routes=routes, middleware=[Middleware(GuardMiddleware, access=access)], exception_handlers=handlers)


def serve(app: Starlette, host: str, port: int) -> None:
    """Serve until Ctrl-C."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning")
