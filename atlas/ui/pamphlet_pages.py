"""Pages for pamphlets: list, search, filter and sort; one pamphlet with its provenance, track
record and history; edit with a diff; delete, restore, purge. Every write goes through the
public store API; the handlers are async on purpose, so store calls never run concurrently."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atlas.errors import user_message
from atlas.pamphlet_input import parse_plan, parse_tags
from atlas.ui.diff import changes
from atlas.ui.guard import Access
from atlas.ui.listing import ListQuery, PamphletSnapshot, build_listing
from atlas.ui.render import Renderer
from memory.errors import ConcurrentEdit, MemoryStoreError
from memory.schema import Pamphlet, PamphletIn
from memory.store import SNAPSHOT_FIELDS, MemoryStore

CHANGED_BY = "ui"
NOTICES = {
    "deleted": "deleted; it left search at once, and Restore brings it back",
    "restored": "restored",
    "unchanged": "nothing changed",
}


def snapshot(pamphlet: Pamphlet) -> dict[str, Any]:
    return {**pamphlet.model_dump(mode="json", include=set(SNAPSHOT_FIELDS)), "deleted": pamphlet.deleted}


async def checked_form(request: Request, access: Access, renderer: Renderer) -> dict[str, str] | Response:
    """The posted form, or a refusal when it does not carry this server's CSRF secret."""
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    if not access.csrf_ok(fields.get("csrf")):
        return renderer.error("this form did not come from this page (missing or stale form key); reload the page and try again", 403)
    return fields


class PamphletPages:
    def __init__(self, memory: MemoryStore, access: Access, renderer: Renderer, page_size: int) -> None:
        self.memory = memory
        self.access = access
        self.render = renderer
        self.page_size = page_size
        self.snapshot = PamphletSnapshot(memory)

    # ------------------------------------------------------------------ reading
    async def list(self, request: Request) -> Response:
        raw: dict[str, Any] = dict(request.query_params)
        if "tags" in raw:
            raw["tags"] = request.query_params.getlist("tags")
        try:
            query = ListQuery.model_validate(raw)
            listing = build_listing(self.memory, query, self.page_size, self.snapshot)
        except (ValidationError, MemoryStoreError) as exc:
            return self.render.error(user_message(exc) or str(exc), 400)
        current = query.model_dump(exclude={"page"})
        notice = f"purged {int(request.query_params['purged'])} pamphlet(s) for good" if request.query_params.get("purged", "").isdigit() else None
        return self.render.page("pamphlets.html", listing=listing, q=query, current=current, notice=notice,
                                deleted_count=self.memory.stats()["deleted"] if query.status != "live" else None)

    async def show(self, request: Request) -> Response:
        pamphlet_id = request.path_params["pamphlet_id"]
        pamphlet = self.memory.get(pamphlet_id)
        versions = self.memory.history(pamphlet_id)
        history = []
        for n, version in enumerate(versions):
            before = versions[n - 1].snapshot if n else None
            history.append((version, changes(before, version.snapshot)))
        done = request.query_params.get("done", "")
        saved = request.query_params.get("saved", "")
        notice = f"saved as version {int(saved)}" if saved.isdigit() else NOTICES.get(done)
        return self.render.page(
            "pamphlet.html", p=pamphlet, record=self.memory.track_record(pamphlet_id),
            uses=list(reversed(self.memory.uses(pamphlet_id)))[:50], history=list(reversed(history)), notice=notice,
        )

    # ------------------------------------------------------------------ editing
    async def edit(self, request: Request) -> Response:
        pamphlet_id = request.path_params["pamphlet_id"]
        current = self.memory.get(pamphlet_id)
        if current.deleted:
            return self.render.error(f"pamphlet {pamphlet_id} is deleted; restore it before editing", 409, back=f"/pamphlets/{pamphlet_id}")
        if request.method == "GET":
            return self._edit_form(current, _form_of(current), version=current.version)
        form = await checked_form(request, self.access, self.render)
        if isinstance(form, Response):
            return form
        proposed, problem = _proposed(form, current)
        started_from = form.get("version", "")
        if not started_from.isdigit():
            return self.render.error("the edit form lost its version field; open the pamphlet and edit it again", 400)
        conflict = None
        if int(started_from) != current.version:
            conflict = _conflict_message(pamphlet_id, int(started_from), current.version)
        if problem or conflict or form.get("action") != "save":
            return self._edit_form(current, form, proposed=proposed, problem=problem, conflict=conflict, version=current.version,
                                   status=409 if conflict else 400 if problem else 200)
        assert proposed is not None
        self.snapshot.invalidate()
        try:
            updated = self.memory.update(
                pamphlet_id, text=proposed.text, audience=proposed.audience, tags=proposed.tags, cue=proposed.cue,
                plan=proposed.plan, changed_by=CHANGED_BY,
            )
        except ConcurrentEdit:  # another process wrote between our read and our write
            latest = self.memory.get(pamphlet_id)
            return self._edit_form(latest, form, proposed=proposed, conflict=_conflict_message(pamphlet_id, current.version, latest.version),
                                   version=latest.version, status=409)
        except MemoryStoreError as exc:
            return self._edit_form(current, form, proposed=proposed, problem=str(exc), version=current.version, status=400)
        if updated.version == current.version:
            return RedirectResponse(f"/pamphlets/{pamphlet_id}?done=unchanged", status_code=303)
        return RedirectResponse(f"/pamphlets/{pamphlet_id}?saved={updated.version}", status_code=303)

    def _edit_form(
        self, current: Pamphlet, form: dict[str, str], *, version: int, proposed: PamphletIn | None = None,
        problem: str | None = None, conflict: str | None = None, status: int = 200,
    ) -> Response:
        diff = None
        if proposed is not None:
            after = {**snapshot(current), **proposed.model_dump(mode="json", include={"text", "audience", "tags", "cue", "plan"})}
            diff = changes(snapshot(current), after)
        return self.render.page("edit.html", status=status, p=current, form=form, version=version, diff=diff,
                                problem=problem, conflict=conflict)

    # ------------------------------------------------------------------ delete, restore, purge
    async def delete(self, request: Request) -> Response:
        return await self._act(request, lambda i: self.memory.delete(i, changed_by=CHANGED_BY), "deleted")

    async def restore(self, request: Request) -> Response:
        return await self._act(request, lambda i: self.memory.restore(i, changed_by=CHANGED_BY), "restored")

    async def _act(self, request: Request, action: Any, done: str) -> Response:
        form = await checked_form(request, self.access, self.render)
        if isinstance(form, Response):
            return form
        pamphlet_id = request.path_params["pamphlet_id"]
        self.snapshot.invalidate()
        action(pamphlet_id)
        return RedirectResponse(f"/pamphlets/{pamphlet_id}?done={done}", status_code=303)

    async def purge(self, request: Request) -> Response:
        form = await checked_form(request, self.access, self.render)
        if isinstance(form, Response):
            return form
        pamphlet_id = request.path_params["pamphlet_id"]
        if form.get("confirm") != "yes":
            return self.render.error("tick “purge for good” to confirm; nothing was purged", 400, back=f"/pamphlets/{pamphlet_id}")
        self.snapshot.invalidate()
        count = self.memory.purge([pamphlet_id])
        return RedirectResponse(f"/pamphlets?status=deleted&purged={count}", status_code=303)

    async def purge_deleted(self, request: Request) -> Response:
        form = await checked_form(request, self.access, self.render)
        if isinstance(form, Response):
            return form
        if form.get("confirm") != "yes":
            return self.render.error("tick “purge for good” to confirm; nothing was purged", 400, back="/pamphlets?status=deleted")
        self.snapshot.invalidate()
        count = self.memory.purge(None)
        return RedirectResponse(f"/pamphlets?status=deleted&purged={count}", status_code=303)


def _form_of(pamphlet: Pamphlet) -> dict[str, str]:
    return {
        "text": pamphlet.text, "audience": pamphlet.audience, "tags": ", ".join(pamphlet.tags), "cue": pamphlet.cue,
        "plan": json.dumps(pamphlet.plan, indent=2) if pamphlet.plan is not None else "",
    }


def _proposed(form: dict[str, str], current: Pamphlet) -> tuple[PamphletIn | None, str | None]:
    """The pamphlet the form asks for, or why it cannot be (the CLI's words)."""
    try:
        fields = {
            "text": form.get("text", "").replace("\r\n", "\n"), "audience": form.get("audience", ""),
            "tags": parse_tags(form.get("tags", "")), "cue": form.get("cue", ""),
            "plan": parse_plan(form.get("plan", "")), "provenance": current.provenance.model_dump(),
        }
        return PamphletIn.model_validate(fields), None
    except (MemoryStoreError, ValidationError) as exc:
        return None, user_message(exc)


def _conflict_message(pamphlet_id: int, started_from: int, now: int) -> str:
    return (
        f"pamphlet {pamphlet_id} changed in another process since you opened it (you started from version "
        f"{started_from}; it is now version {now}): nothing was written. Your edit is kept below, compared with "
        f"the current version; save again to apply it over version {now}."
    )
