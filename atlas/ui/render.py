"""Pages from templates, with every value escaped (Jinja autoescape), and reports from Markdown
with raw HTML shown as text. No JavaScript anywhere, so no build step."""

from __future__ import annotations

import html
import posixpath
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from markdown_it import MarkdownIt
from starlette.responses import HTMLResponse


def _query(current: dict[str, Any], **changes: Any) -> str:
    """The list page's query string with some parameters changed (empty ones dropped)."""
    merged = {**current, **changes}
    pairs = []
    for key, value in merged.items():
        if isinstance(value, list):
            value = ",".join(value)
        if value in (None, "") or (key == "page" and value == 1):
            continue
        pairs.append((key, value))
    return "?" + urlencode(pairs) if pairs else "?"


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else "-"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def pamphlet_rows(rows: Sequence[Any], searched: bool) -> Markup:
    """The list table's body, escaped cell by cell with ``html.escape``. Built in Python because
    10,000 rows through per-cell template escaping take several times longer."""
    e = html.escape
    tag_links: dict[str, str] = {}  # tags repeat across rows: build each link once
    out = []
    for row in rows:
        p, record = row.pamphlet, row.record
        links = []
        for t in p.tags:
            link = tag_links.get(t)
            if link is None:
                link = tag_links[t] = f'<a class="tag" href="/pamphlets?tags={quote(t, safe="")}">{e(t)}</a>'
            links.append(link)
        score = f"<td>{_number(row.score)}</td>" if searched else ""
        badge = ' <span class="badge">deleted</span>' if p.deleted else ""
        css = ' class="deleted"' if p.deleted else ""
        updated = p.updated_at.isoformat(sep=" ", timespec="seconds")[:19]
        out.append(
            f'<tr{css} data-id="{p.id}"><td><a href="/pamphlets/{p.id}">{p.id}</a></td>{score}<td>{e(p.audience)}</td>'
            f'<td>{" ".join(links)}</td><td class="text">{e(_short(p.text))}{badge}</td><td>{p.version}</td><td>{record.uses}</td>'
            f"<td>{_number(record.mean_reward)}</td><td>{updated}</td></tr>\n"
        )
    return Markup("".join(out))


def make_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("atlas.ui", "templates"), autoescape=True, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(short=_short, when=_when, number=_number, size=_size, urlquote=lambda s: quote(str(s), safe=""))
    env.globals.update(query=_query, pamphlet_rows=pamphlet_rows)
    return env


class Renderer:
    """One Jinja environment and the values every page shows (the store, the CSRF secret)."""

    def __init__(self, store_name: str, csrf: str) -> None:
        self.env = make_environment()
        self.common = {"store_name": store_name, "csrf": csrf}

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**self.common, **context)
        return HTMLResponse(html, status_code=status)

    def error(self, message: str, status: int, back: str = "/pamphlets") -> HTMLResponse:
        return self.page("error.html", status=status, message=message, back=back)


def render_markdown(text: str, folder: str) -> str:
    """A report as HTML: raw HTML stays text, and images or links to files beside the report
    point at the page's file route (only files under the runs folder are served)."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def local(src: str) -> str:
        parts = urlsplit(src)
        if parts.scheme or parts.netloc or src.startswith(("/", "#")):
            return src
        return "/runs/file?" + urlencode({"path": posixpath.normpath(posixpath.join(folder, parts.path))})

    def rewrite(tokens: list[Any]) -> None:
        for token in tokens:
            if token.type == "image" and token.attrGet("src"):
                token.attrSet("src", local(str(token.attrGet("src"))))
            elif token.type == "link_open" and token.attrGet("href"):
                token.attrSet("href", local(str(token.attrGet("href"))))
            if token.children:
                rewrite(token.children)

    tokens = md.parse(text)
    rewrite(tokens)
    return md.renderer.render(tokens, md.options, {})
