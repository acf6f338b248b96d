"""Pages for run folders: the list, one run (its report, its results.json figures, its plots and
trace files) and the files themselves, served only from under the runs folder."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from atlas.ui import runs
from atlas.ui.render import Renderer, render_markdown


class RunPages:
    def __init__(self, root: Path, renderer: Renderer) -> None:
        self.root = root
        self.render = renderer

    async def index(self, request: Request) -> Response:
        return self.render.page("runs.html", root=str(self.root), runs=runs.find_runs(self.root))

    async def view(self, request: Request) -> Response:
        relative = request.query_params.get("path", "")
        try:
            run = runs.open_run(self.root, relative)
        except runs.RunPathError as exc:
            return self.render.error(str(exc), 404, back="/runs")
        folder = runs.resolve_inside(self.root, run.path)
        report = cut = None
        if run.has_report:
            text, cut = runs.read_text(folder / "report.md")
            report = render_markdown(text, run.path)
        results, problem = (runs.load_results(folder / "results.json") if run.has_results else (None, None))
        raw = json.dumps(results, indent=2)[:200_000] if results is not None else None
        return self.render.page("run.html", run=run, report=report, report_cut=cut, figures=runs.figures(results) if results is not None else [],
                                results_problem=problem, results_json=raw)

    async def file(self, request: Request) -> Response:
        relative = request.query_params.get("path", "")
        try:
            path, media_type = runs.run_file(self.root, relative)
        except runs.RunPathError as exc:
            return self.render.error(str(exc), 404, back="/runs")
        if media_type == "image/png":
            return FileResponse(path, media_type=media_type)
        text, cut = runs.read_text(path)
        note = f"\n\n[cut at {runs.MAX_TEXT_BYTES:,} bytes]" if cut else ""
        return PlainTextResponse(text + note, media_type="text/plain; charset=utf-8")
